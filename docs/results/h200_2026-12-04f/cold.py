"""``python cold.py <repo> <mode> [frames]``: the first run_sweep call of a fresh process (the
issue-16 CUDA setting), ``mode`` ``profile`` (cProfile of the sweep's thread, cumulative) or
``phases`` (bench_sweep's phase timers), then one warm call for comparison."""
import sys
import time
from pathlib import Path

t_start = time.perf_counter()
repo, mode = Path(sys.argv[1]), sys.argv[2]
frames = int(sys.argv[3]) if len(sys.argv) > 3 else 512
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_phases, bench_run_sweep, cuda_sweep_args  # noqa: E402

print(f"imports {time.perf_counter() - t_start:.2f} s", flush=True)
run = cuda_sweep_args(frames=frames)
t0 = time.perf_counter()
if mode == "profile":
    s = bench_run_sweep(run, profile=70)
    print(f"cold call: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s")
else:
    each = []
    for name, thread, n, total, first, last in bench_phases(run, each):
        print(f"  {name:16s} {thread:10s} {n:4d}x {total:7.2f} s  {first:6.2f} .. {last:6.2f} s")
    for name, thread, a, b in each:
        print(f"    {name:20s} {thread:10s} {a:6.3f} .. {b:6.3f} s")
    print(f"cold call {time.perf_counter() - t0:.2f} s")
s = bench_run_sweep(run)
print(f"warm call: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s")
