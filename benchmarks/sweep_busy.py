"""How busy the device is while the sweep's device thread runs each of its functions: one warm
``run_sweep`` (bench_sweep's H200 setting) under ``torch.profiler`` (host and CUDA, no Python
stacks), with ``record_function`` ranges around ``TARGETS``.

    python benchmarks/sweep_busy.py                    # needs CUDA
    python benchmarks/sweep_busy.py --frames 64 --trace busy.json

Per function on the device's thread (the thread that runs ``GroupRun.step``): calls, wall
milliseconds, and the milliseconds the device was busy meanwhile (the union of its kernels,
copies and memsets, ``trace_idle.idle_intervals``); ``GroupRun.step`` is split by group
(one group at a time or in lockstep). A group
whose busy share is low is paced by the host: its Python, its host syncs, or another thread of
the process holding the GIL (see ``pyspy_summary.py --by-thread`` on a ``py-spy record --gil``
recording). Busy time is counted only between the trace's first and last device events: the
steps before the device starts (planning, loading) read as fully busy. The profiler slows the
host; compare shares, not rates.
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweep import add_setting_options, bench_run_sweep, setting_of  # noqa: E402
from trace_idle import IdleClock, idle_intervals  # noqa: E402

#: (module, function or Class.method) wrapped in a ``record_function`` range, where they are
#: looked up (a function imported by name is patched in the importing module).
TARGETS = (
    ("v2x.sweep", "plan_sweep"),
    ("v2x.sweep", "prepare_device"),
    ("v2x.sweep_batches", "load_model"),
    ("v2x.sweep_batches", "feature_cache_bytes"),
    ("v2x.sweep_group", "GroupRun.step"),
    ("v2x.sweep_group", "evaluate_batch"),
    ("v2x.sweep_group", "_Scheduler.__call__"),
    ("v2x.execution", "run_with_known_drops"),
    ("v2x.execution", "remove_late_payloads"),
    ("v2x.sweep", "_resolved"),
    ("v2x.execution", "run_conditions"),
    ("v2x.pipeline", "CooperativePipeline.run"),
    ("v2x.pipeline", "send"),
    ("v2x.pipeline", "_distinct_conditions"),
    ("v2x.pipeline", "run_late"),
    ("v2x.pipeline", "CooperativePipeline._ego_alone"),
    ("v2x.pipeline", "CooperativePipeline._run_features"),
    ("v2x.pipeline", "fuse_at_ego"),
    ("v2x.perception.detector", "CoopDetector.postprocess"),
    ("v2x.perception.detector", "CoopDetector.encode"),
    ("v2x.sweep_batches", "PreparedBatches.__getitem__"),
)
PREFIX = "sweep_busy:"


#: The group whose step the device's thread is in (``wrap_targets``' labels name it).
_CURRENT = {"group": ""}


def wrap_targets() -> None:
    """Put every ``TARGETS`` function behind a ``record_function`` range of its name; within a
    group's step, the name ends with the group's ``[fusion/codec]``."""
    for module_name, path in TARGETS:
        owner = importlib.import_module(module_name)
        *owners, name = path.split(".")
        for part in owners:
            owner = getattr(owner, part)
        original = getattr(owner, name)

        def ranged(*a, _f=original, _name=path, **k):
            if _name != "GroupRun.step":
                group = _CURRENT["group"]
                with torch.profiler.record_function(PREFIX + _name + (f" [{group}]" * bool(group))):
                    return _f(*a, **k)
            _CURRENT["group"] = f"{a[0].group.fusion}/{a[0].group.codec}"
            try:
                with torch.profiler.record_function(f"{PREFIX}{_name} {_CURRENT['group']}"):
                    return _f(*a, **k)
            finally:
                _CURRENT["group"] = ""

        setattr(owner, name, functools.wraps(original)(ranged))


def busy_table(events: list[dict]) -> str:
    """The report of a trace's events (module docstring)."""
    idle, busy, span = idle_intervals(events)
    clock = IdleClock(idle)
    ranges = [
        e for e in events
        if e.get("cat") == "user_annotation" and str(e.get("name", "")).startswith(PREFIX)
    ]  # fmt: skip
    groups = collections.Counter(e["tid"] for e in ranges if "GroupRun.step" in e["name"])
    if not groups:
        raise SystemExit("sweep_busy: no GroupRun.step range in the trace")
    tid = groups.most_common(1)[0][0]
    rows: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for e in ranges:
        if e["tid"] == tid:
            row = rows[e["name"][len(PREFIX) :]]
            row[0] += 1
            row[1] += e["dur"]
            row[2] += e["dur"] - clock.within(e["ts"], e["ts"] + e["dur"])
    out = [
        f"device busy {busy / 1e3:.0f} ms of a {span / 1e3:.0f} ms span (first to last device event)",
        f"{'function (device thread)':64s} {'calls':>6s} {'wall ms':>9s} {'busy ms':>9s} {'busy %':>7s}",
    ]
    for name, (n, wall, on) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
        share = 100 * on / max(wall, 1e-9)
        out.append(f"{name:64s} {n:6d} {wall / 1e3:9.1f} {on / 1e3:9.1f} {share:7.1f}")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_setting_options(p, frames=128, batch_size=16)
    p.add_argument("--trace", help="also keep the Chrome trace here")
    args = p.parse_args()
    if not torch.cuda.is_available():
        p.error("needs a CUDA device")
    run = setting_of(args)
    for _ in range(2):  # warm-up: imports, compilation, the worker processes
        bench_run_sweep(run)
    wrap_targets()
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as traced:
        done = bench_run_sweep(run)
    print(f"profiled run_sweep: {done['fc_per_s']:.1f} frame-conditions/s ({done['wall_s']:.2f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        path = args.trace or str(Path(tmp) / "trace.json")
        traced.export_chrome_trace(path)
        with open(path, encoding="utf-8") as f:
            events = json.load(f)["traceEvents"]
    print(busy_table(events))


if __name__ == "__main__":
    main()
