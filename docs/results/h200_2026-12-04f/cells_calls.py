"""``CELLS=N python cells_calls.py <repo> <calls> [frames] [batch]``: warm run_sweep calls of
the issue-16 CUDA setting with ``v2x.sweep_rows.CELL_PROCESSES = N`` AP worker processes (set
before the pool starts; unset: the code's own count), in one process; the sweep's group log of
the last call."""
import logging
import os
import sys
from pathlib import Path

repo, calls = Path(sys.argv[1]), int(sys.argv[2])
frames = int(sys.argv[3]) if len(sys.argv) > 3 else 512
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 16
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep_rows as sweep_rows  # noqa: E402

if "CELLS" in os.environ:
    sweep_rows.CELL_PROCESSES = int(os.environ["CELLS"])
print("v2x from", sweep_rows.__file__, "cell processes", sweep_rows.CELL_PROCESSES, flush=True)
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("    %(message)s"))
log = logging.getLogger("v2x.sweep")
run = cuda_sweep_args(frames=frames, batch_size=batch)
rates = []
for i in range(calls + 1):
    if i == calls:  # the last call's group log
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    s = bench_run_sweep(run)
    if i:
        rates.append(s["fc_per_s"])
    print(f"call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
print("warm: " + " ".join(f"{r:.0f}" for r in rates) + f" mean {sum(rates) / len(rates):.0f}")
