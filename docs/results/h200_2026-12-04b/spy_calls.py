"""One cold run_sweep call, then (after touching /tmp/spy_ready and waiting for /tmp/spy_go)
``calls`` warm calls: ``python spy_calls.py <repo> <calls> [frames]``."""

import os
import sys
import time
from pathlib import Path

repo, calls = Path(sys.argv[1]), int(sys.argv[2])
frames = int(sys.argv[3]) if len(sys.argv) > 3 else 512
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

run = cuda_sweep_args(frames=frames)
s = bench_run_sweep(run)
print(f"cold: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
Path("/tmp/spy_ready").write_text(str(os.getpid()))
while not os.path.exists("/tmp/spy_go"):
    time.sleep(0.05)
time.sleep(0.5)
for i in range(calls):
    s = bench_run_sweep(run)
    print(f"warm {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
