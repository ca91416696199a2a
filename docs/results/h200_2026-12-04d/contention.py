"""``python contention.py <repo> <rounds> [frames]``: warm run_sweep calls of the issue-16 CUDA
setting, alternating "normal" and "prepfirst" (every frame read and every batch prepared before
the first group starts, so no other thread of the process holds the GIL while the device's
thread runs the groups); prints each call's rate and each group's seconds on the device's thread."""

import sys
import time
from pathlib import Path

repo, rounds = Path(sys.argv[1]), int(sys.argv[2])
frames = int(sys.argv[3]) if len(sys.argv) > 3 else 512
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep as sweep  # noqa: E402
import v2x.sweep_batches as sb  # noqa: E402

MODE = {"prepfirst": False}
spans = []
_init = sb.PreparedBatches.__init__


def init(self, *a, **k):
    _init(self, *a, **k)
    if MODE["prepfirst"]:
        t0 = time.perf_counter()
        for f in self._futures:
            f.result()
        spans.append(("prepare", time.perf_counter() - t0))


sb.PreparedBatches.__init__ = init
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
    for mode in ("normal", "prepfirst"):
        MODE["prepfirst"] = mode == "prepfirst"
        spans.clear()
        s = bench_run_sweep(run)
        parts = " ".join(f"{n} {t:.3f}" for n, t in spans)
        groups = sum(t for n, t in spans if n != "prepare")
        print(
            f"{mode:9s} {s['fc_per_s']:7.1f} fc/s {s['wall_s']:.2f} s | groups {groups:.3f} s | {parts}",
            flush=True,
        )
