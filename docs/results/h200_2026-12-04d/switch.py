"""``python switch.py <repo> <rounds> [frames]``: warm run_sweep calls of the issue-16 CUDA
setting, alternating Python's thread switch interval (5 ms, the default; 1 ms; 0.5 ms;
0.2 ms): the device's thread re-takes the GIL sooner from the frame-reading, batch-preparing and
scoring threads; prints each call's rate and each group's seconds on the device's thread."""

import sys
import time
from pathlib import Path

repo, rounds = Path(sys.argv[1]), int(sys.argv[2])
frames = int(sys.argv[3]) if len(sys.argv) > 3 else 512
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep as sweep  # noqa: E402

spans = []
_run_group = sweep._run_group


def timed(plan, group, *a, **k):
    t0 = time.perf_counter()
    out = _run_group(plan, group, *a, **k)
    spans.append((f"{group.fusion}/{group.codec}", time.perf_counter() - t0))
    return out


sweep._run_group = timed
run = cuda_sweep_args(frames=frames)
bench_run_sweep(run)  # first call
for _r in range(rounds):
    for interval in (0.005, 0.001, 0.0005, 0.0002):
        sys.setswitchinterval(interval)
        spans.clear()
        s = bench_run_sweep(run)
        parts = " ".join(f"{n} {t:.3f}" for n, t in spans)
        groups = sum(t for _, t in spans)
        print(
            f"{interval * 1e3:4.1f} ms {s['fc_per_s']:7.1f} fc/s {s['wall_s']:.2f} s | groups {groups:.3f} s | {parts}",
            flush=True,
        )
sys.setswitchinterval(0.005)
