"""``python contention3.py <repo> <rounds> [frames]``: warm run_sweep calls of the issue-16 CUDA
setting, alternating "normal" and "confined" (the sweep's worker processes, which read the
frames and score the cells, kept off the logical CPUs of two physical cores, where the
scheduler then runs the sweep's own threads; ``os.sched_setaffinity`` on the workers between
calls); prints the CPU topology, each call's rate and each group's seconds on the device's thread."""

import glob
import os
import sys
import time
from pathlib import Path

repo, rounds = Path(sys.argv[1]), int(sys.argv[2])
frames = int(sys.argv[3]) if len(sys.argv) > 3 else 512
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep as sweep  # noqa: E402
import v2x.sweep_rows as sweep_rows  # noqa: E402
import v2x.sweep_scoring as sweep_scoring  # noqa: E402

siblings = sorted(
    {
        tuple(int(x) for x in Path(p).read_text().strip().replace("-", ",").split(","))
        for p in glob.glob("/sys/devices/system/cpu/cpu*/topology/thread_siblings_list")
    }
)
print(f"logical CPUs {os.cpu_count()}, physical cores {len(siblings)}: {siblings}")
ALL = set(os.sched_getaffinity(0))
RESERVED = {c for core in siblings[:2] for c in core}
spans = []
_run_group = sweep._run_group


def timed(plan, group, *a, **k):
    t0 = time.perf_counter()
    out = _run_group(plan, group, *a, **k)
    spans.append((f"{group.fusion}/{group.codec}", time.perf_counter() - t0))
    return out


def workers():
    pids = []
    for pool in [*sweep_rows._POOL, *[p for p in sweep_scoring._POOLS if p is not None]]:
        pids.extend((pool._processes or {}).keys())
    return pids


def confine(on):
    mask = (ALL - RESERVED) if on else ALL
    for pid in workers():
        try:
            os.sched_setaffinity(pid, mask)
        except OSError as exc:
            print("affinity", pid, exc)


sweep._run_group = timed
run = cuda_sweep_args(frames=frames)
bench_run_sweep(run)  # first call (the pools start)
print(f"workers {len(workers())}, reserved CPUs {sorted(RESERVED)}")
for _r in range(rounds):
    for mode in ("normal", "confined"):
        confine(mode == "confined")
        spans.clear()
        s = bench_run_sweep(run)
        parts = " ".join(f"{n} {t:.3f}" for n, t in spans)
        groups = sum(t for _, t in spans)
        print(
            f"{mode:9s} {s['fc_per_s']:7.1f} fc/s {s['wall_s']:.2f} s | groups {groups:.3f} s | {parts}",
            flush=True,
        )
