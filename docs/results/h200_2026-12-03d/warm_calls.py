"""Warm ``run_sweep`` calls in bench_sweep's issue-16 setting, the GIL's switch interval set
first: ``python warm_calls.py <repo> <switch interval s, 0: the default> <calls>``."""

import sys
from pathlib import Path

repo, interval, calls = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
if interval > 0:
    sys.setswitchinterval(interval)
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

run = cuda_sweep_args()
rates = []
ms = sys.getswitchinterval() * 1e3
for i in range(calls + 1):  # call 0: the warm-up
    s = bench_run_sweep(run)
    if i:
        rates.append(s["fc_per_s"])
    print(f"switch {ms:.3f} ms call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
mean = sum(rates) / len(rates)
print(f"switch {ms:.3f} ms warm: " + " ".join(f"{r:.0f}" for r in rates) + f" mean {mean:.0f}")
