"""``python contention2.py <repo> <rounds> [frames]``: warm run_sweep calls of the issue-16 CUDA
setting, alternating "normal", "readfirst" (every frame read before the first group starts; the
batches prepared beside the groups as usual) and "prepfirst" (every frame read and every batch
prepared first); prints each call's rate and each group's seconds on the device's thread."""

import sys
import time
from pathlib import Path

repo, rounds = Path(sys.argv[1]), int(sys.argv[2])
frames = int(sys.argv[3]) if len(sys.argv) > 3 else 512
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep as sweep  # noqa: E402
import v2x.sweep_batches as sb  # noqa: E402

MODE = {"mode": "normal"}
spans = []
_init = sb.PreparedBatches.__init__


def init(self, *a, **k):
    _init(self, *a, **k)
    t0 = time.perf_counter()
    if MODE["mode"] == "readfirst":
        stream = a[0]
        stream[len(stream) - 1]  # waits for every frame (a FrameStream)
        spans.append(("read", time.perf_counter() - t0))
    elif MODE["mode"] == "prepfirst":
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
    for mode in ("normal", "readfirst", "prepfirst"):
        MODE["mode"] = mode
        spans.clear()
        s = bench_run_sweep(run)
        parts = " ".join(f"{n} {t:.3f}" for n, t in spans)
        groups = sum(t for n, t in spans if n not in ("prepare", "read"))
        print(
            f"{mode:9s} {s['fc_per_s']:7.1f} fc/s {s['wall_s']:.2f} s | groups {groups:.3f} s | {parts}",
            flush=True,
        )
