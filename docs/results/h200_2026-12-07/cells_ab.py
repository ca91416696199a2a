"""``python cells_ab.py <repo> <rounds> <frames> <batch> A B``: warm issue-16 run_sweep calls
(fp16 / fp16, 1e11 Hz: every payload on time) alternating ``v2x.sweep_rows.CELL_PROCESSES`` A
and B AP worker processes in one process (the pool shut down and forked again at each switch,
one unmeasured call after it); prints each measured call and the means."""
import sys
from pathlib import Path

repo, rounds, frames, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
counts = [int(x) for x in sys.argv[5:7]]
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep_rows as sweep_rows  # noqa: E402

run = cuda_sweep_args(frames=frames, batch_size=batch, bandwidth_hz=1e11, precision="fp16",
                      codec_precision="fp16")
rates = {n: [] for n in counts}
bench_run_sweep(run)  # first call: imports, kernels
for r in range(rounds):
    for n in counts if r % 2 == 0 else counts[::-1]:
        for pool in sweep_rows._POOL:
            pool.shutdown(wait=True)
        sweep_rows._POOL.clear()
        sweep_rows.CELL_PROCESSES = n
        bench_run_sweep(run)  # the new workers forked and warm
        s = bench_run_sweep(run)
        rates[n].append(s["fc_per_s"])
        print(f"round {r} cells {n}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
for n, rs in rates.items():
    print(f"cells {n}: " + " ".join(f"{x:.0f}" for x in rs) + f" mean {sum(rs) / len(rs):.0f}")
