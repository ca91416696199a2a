"""Warm run_sweep calls (bench_sweep's issue-16 setting), then optionally one with its steps timed:
``python calls.py <repo> <calls> <threads: 0 = torch's default> <phases 0|1> [frames]``."""

import sys
from pathlib import Path

repo, calls, threads, phases = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
frames = int(sys.argv[5]) if len(sys.argv) > 5 else 128
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402

if threads:
    torch.set_num_threads(threads)
import v2x  # noqa: E402

print("v2x from", v2x.__file__, "threads", torch.get_num_threads(), flush=True)
from bench_sweep import EACH_CALL, bench_phases, bench_run_sweep, cuda_sweep_args  # noqa: E402

run = cuda_sweep_args(frames=frames)
import os  # noqa: E402

import v2x.sweep  # noqa: E402

run.feature_cache_gb = os.environ.get("CACHE_GB", "auto")
if hasattr(v2x.sweep, "FIRST_WAVE"):
    v2x.sweep.FIRST_WAVE = int(os.environ.get("FW", "1"))
print("cache", run.feature_cache_gb, "first wave", getattr(v2x.sweep, "FIRST_WAVE", None), flush=True)
rates = []
for i in range(calls + 1):  # call 0: the warm-up
    s = bench_run_sweep(run)
    if i:
        rates.append(s["fc_per_s"])
    print(f"call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
print("warm: " + " ".join(f"{r:.0f}" for r in rates) + f" mean {sum(rates) / len(rates):.0f}")
if phases:
    each = []
    for name, thread, n, total, first, last in bench_phases(run, each):
        print(f"  {name:16s} {thread:10s} {n:4d}x {total:7.2f} s  {first:6.2f} .. {last:6.2f} s")
    print("  every call of " + ", ".join(EACH_CALL) + ":")
    for name, thread, a, b in each:
        print(f"    {name:20s} {thread:10s} {a:6.3f} .. {b:6.3f} s")
