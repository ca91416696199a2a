"""``python calls_bs.py <repo> <calls> <frames> <batch_size>``: warm run_sweep rates of the
issue-16 CUDA setting at a given frame batch size (first call, then <calls> warm calls)."""

import sys
from pathlib import Path

repo, calls, frames, bs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

run = cuda_sweep_args(frames=frames, batch_size=bs)
rates = []
for i in range(calls + 1):
    s = bench_run_sweep(run)
    if i:
        rates.append(s["fc_per_s"])
    print(f"batch {bs} call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
print(
    f"batch {bs} warm: "
    + " ".join(f"{r:.0f}" for r in rates)
    + f" mean {sum(rates) / len(rates):.0f}"
)
print(f"peak device memory {torch.cuda.max_memory_allocated() / 1e9:.1f} GB")
