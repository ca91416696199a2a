"""Where the device waits on the host: a torch.profiler Chrome trace's GPU idle time, attributed
to the Python functions the host's main thread was running meanwhile.

    python benchmarks/profile_digital_payload.py --device cuda ... --profile 30 --trace t.json
    python benchmarks/trace_idle.py t.json --top 40 --children harq_decode_blocks,reconstruct

The trace must hold the Python call stack (``profile(..., with_stack=True)``; ``--trace`` of
``profile_digital_payload.py`` records it). Device busy time is the union of kernels, copies
and memsets; idle time the gaps between them from the first to the last. Printed: the span,
busy and idle milliseconds; per function the idle time while it was on the main thread's stack
(inclusive, counted once per outermost call) and while its own code ran (self: not inside a
Python function it called, so C calls it makes, such as tensor operators and host syncs, count
here); by the innermost project function on the stack (the deepest whose file is under
``v2x/`` or a ``bench_``/``profile_`` script: where in the project the host was); with
``--children``, the inclusive idle time of the direct callees of each function whose name
contains one of the given strings. Names drop object addresses (``at 0x…``).
Then the device's own time by what launched it: each kernel, copy and memset is matched to
the host call that queued it (the runtime or driver event of the same ``correlation``) and
charged to the innermost project function on that thread's stack at that moment, split by
kind (kernels; each copy direction and memory kind, e.g. ``Memcpy DtoH (Device -> Pageable)``):
which function's copies fill a device's time.
``benchmarks/bench_sweep.py --idle-gaps`` prints this report for a traced ``run_sweep``.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import gzip
import json
import re

_DEVICE_EVENTS = ("kernel", "gpu_memcpy", "gpu_memset")
#: Host events that queue device work (their ``args.correlation`` is the device event's).
_LAUNCH_EVENTS = ("cuda_runtime", "cuda_driver")
#: Parts of a Python event's name that make it a project function.
PROJECT = ("v2x/", "bench_", "profile_")
OUTSIDE = "(outside the project)"


def idle_intervals(events: list[dict]) -> tuple[list[tuple[float, float]], float, float]:
    """``(idle [(start, end)] µs, busy µs, span µs)`` of the trace's device events."""
    device = sorted(
        (e for e in events if e.get("cat") in _DEVICE_EVENTS and "dur" in e),
        key=lambda e: e["ts"],
    )
    busy: list[list[float]] = []
    for e in device:
        start, end = e["ts"], e["ts"] + e["dur"]
        if busy and start <= busy[-1][1]:
            busy[-1][1] = max(busy[-1][1], end)
        else:
            busy.append([start, end])
    if not busy:
        raise SystemExit("trace_idle: the trace has no device events (profile with CUDA)")
    idle = [(busy[i][1], busy[i + 1][0]) for i in range(len(busy) - 1)]
    return idle, sum(b - a for a, b in busy), busy[-1][1] - busy[0][0]


class IdleClock:
    """Idle time inside any ``[a, b)``: a binary search over the sorted idle intervals."""

    def __init__(self, idle: list[tuple[float, float]]) -> None:
        self.idle = idle
        self.starts = [a for a, _ in idle]

    def within(self, a: float, b: float) -> float:
        i = max(bisect.bisect_right(self.starts, a) - 1, 0)
        total = 0.0
        while i < len(self.idle) and self.idle[i][0] < b:
            s, f = self.idle[i]
            total += max(0.0, min(f, b) - max(s, a))
            i += 1
        return total


def attribute(events: list[dict], clock: IdleClock) -> dict[str, collections.Counter]:
    """Idle µs per Python function of the busiest thread: ``inclusive``, ``self``, ``calls``,
    ``project`` (a function's own idle time charged to the innermost project function among it
    and its callers, ``PROJECT``) and ``children`` (keyed ``(caller, callee)``)."""
    py = [e for e in events if e.get("cat") == "python_function" and "dur" in e]
    if not py:
        raise SystemExit("trace_idle: no Python events (profile with with_stack=True)")
    tid = collections.Counter(e["tid"] for e in py).most_common(1)[0][0]
    py = sorted((e for e in py if e["tid"] == tid), key=lambda e: (e["ts"], -e["dur"]))
    kinds = ("inclusive", "self", "calls", "project", "children")
    out = {k: collections.Counter() for k in kinds}
    # open calls: end, name, start, callees' intervals, innermost project function so far
    stack: list[tuple[float, str, float, list[tuple[float, float]], str]] = []

    def close(end: float, name: str, start: float, kids: list, owner: str) -> None:
        own, cur = 0.0, start
        for ks, kf in sorted(kids):
            if ks > cur:
                own += clock.within(cur, ks)
            cur = max(cur, kf)
        if end > cur:
            own += clock.within(cur, end)
        out["self"][name] += own
        out["project"][owner] += own

    for e in py:
        start, end = e["ts"], e["ts"] + e["dur"]
        while stack and stack[-1][0] <= start:
            close(*stack.pop())
        name = re.sub(r" at 0x[0-9a-f]+", "", e["name"])
        if stack:
            stack[-1][3].append((start, end))
            out["children"][(stack[-1][1], name)] += clock.within(start, end)
        if all(item[1] != name for item in stack):  # outermost call of this name
            out["inclusive"][name] += clock.within(start, end)
        out["calls"][name] += 1
        owner = name if any(m in name for m in PROJECT) else (stack[-1][4] if stack else OUTSIDE)
        stack.append((end, name, start, [], owner))
    while stack:
        close(*stack.pop())
    return out


def _kind(event: dict) -> str:
    """A device event's kind: ``kernels``, a copy's own name (direction and memory kind), or
    ``memsets``."""
    if event["cat"] == "kernel":
        return "kernels"
    return "memsets" if event["cat"] == "gpu_memset" else str(event.get("name", "memcpy"))


def launched_by(events: list[dict]) -> collections.Counter:
    """Device µs per ``(innermost project function at the launch, kind)``: each device event
    charged, through its ``correlation``, to the host call that queued it, and from there to
    the innermost project function (``PROJECT``) on that thread's Python stack at that moment
    (``OUTSIDE`` when none; ``(launch not in the trace)`` when no host event has its
    correlation). Needs a trace with the Python stack, as ``attribute``."""
    launches = {
        e["args"]["correlation"]: e
        for e in events
        if e.get("cat") in _LAUNCH_EVENTS and "correlation" in e.get("args", {})
    }
    py_by_tid: dict = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "python_function" and "dur" in e:
            py_by_tid[e.get("tid")].append(e)
    device_by_tid: dict = collections.defaultdict(list)  # tid -> [(launch ts, device event)]
    out: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") not in _DEVICE_EVENTS or "dur" not in e:
            continue
        launch = launches.get(e.get("args", {}).get("correlation"))
        if launch is None:
            out[("(launch not in the trace)", _kind(e))] += e["dur"]
        else:
            device_by_tid[launch.get("tid")].append((launch["ts"], e))
    for tid, queued in device_by_tid.items():
        py = sorted(py_by_tid.get(tid, []), key=lambda e: (e["ts"], -e["dur"]))
        stack: list[tuple[float, str]] = []  # open calls: end, innermost project function
        i = 0
        for ts, e in sorted(queued, key=lambda x: x[0]):
            while i < len(py) and py[i]["ts"] <= ts:
                start, end = py[i]["ts"], py[i]["ts"] + py[i]["dur"]
                while stack and stack[-1][0] <= start:
                    stack.pop()
                name = re.sub(r" at 0x[0-9a-f]+", "", py[i]["name"])
                outer = stack[-1][1] if stack else OUTSIDE
                stack.append((end, name if any(m in name for m in PROJECT) else outer))
                i += 1
            while stack and stack[-1][0] <= ts:
                stack.pop()
            out[(stack[-1][1] if stack else OUTSIDE, _kind(e))] += e["dur"]
    return out


def report(path: str, top: int = 40, children: str = "") -> None:
    """Print the idle report of the Chrome trace at ``path`` (``.json`` or ``.json.gz``)."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt") as f:
            trace = json.load(f)
        events = trace["traceEvents"] if isinstance(trace, dict) else trace
        if not isinstance(events, list):
            raise TypeError(f"its events are a {type(events).__name__}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(
            f"trace_idle: {path} is not a Chrome trace (a JSON list or {{'traceEvents': [...]}}, "
            f"as torch.profiler writes): {exc!r}"
        ) from None
    idle, busy, span = idle_intervals(events)
    got = attribute(events, IdleClock(idle))
    print(
        f"span {span / 1e3:.1f} ms, device busy {busy / 1e3:.1f} ms, "
        f"idle {sum(b - a for a, b in idle) / 1e3:.1f} ms"
    )
    for kind in ("inclusive", "self", "project"):
        title = "innermost project function" if kind == "project" else kind
        print(f"\n== device idle, {title} (ms, calls) ==")
        for name, us in got[kind].most_common(top):
            print(f"{us / 1e3:8.1f} {got['calls'][name]:6d}  {name[:110]}")
    for want in filter(None, children.split(",")):
        print(f"\n== device idle under the callees of *{want}* (inclusive, ms) ==")
        rows = [(us, callee) for (caller, callee), us in got["children"].items() if want in caller]
        for us, callee in sorted(rows, reverse=True)[:top]:
            print(f"{us / 1e3:8.1f}  {callee[:110]}")
    print("\n== device time by the innermost project function that queued it (ms, kind) ==")
    for (owner, kind), us in launched_by(events).most_common(top):
        print(f"{us / 1e3:8.1f}  {kind[:34]:34s}  {owner[:100]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("trace", help="Chrome trace JSON (or .json.gz) from torch.profiler")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--children", default="", help="comma-separated parts of function names")
    args = p.parse_args()
    report(args.trace, args.top, args.children)


if __name__ == "__main__":
    main()
