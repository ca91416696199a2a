"""GPU idle time by host function in a warm run_sweep of the cheap groups (ego-only, late, max/identity)."""
import sys
from pathlib import Path

repo = Path(sys.argv[1])
frames = int(sys.argv[2])
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

run = cuda_sweep_args(frames=frames, codecs=["identity"])
for i in range(2):
    s = bench_run_sweep(run)
    print(f"call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
bench_run_sweep(run, trace="/tmp/gaps.json", gaps=True)
