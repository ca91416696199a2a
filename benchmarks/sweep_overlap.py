"""What the threads beside the device's thread cost a warm ``run_sweep``: the sweep timed as it
is (``base``) and with one of their jobs taken away, one variant per process (alternate them).

    python benchmarks/sweep_overlap.py base --calls 2          # bench_sweep's H200 setting
    python benchmarks/sweep_overlap.py nobook --calls 2 --frames 512 --batch-size 32
    python benchmarks/sweep_overlap.py rowsafter --calls 2
    python benchmarks/sweep_overlap.py inline --calls 2

A diagnostic, not a sweep: the variants' results are **not valid** (``nobook`` scores one batch
per group), only their times are read.

* ``base``: the sweep as it is.
* ``nobook``: each group books (scores and writes ledger rows for) its first frame batch only;
  the other batches' booking (``v2x.sweep_rows.book_batch``: the detections copied to the
  host, pickled to a scoring process, the ledger rows built), which runs on the scorer thread
  beside the device's thread and shares its GIL, is skipped.
* ``rowsafter``: the groups' results rows (sealing, APs, bootstrap intervals) are computed after
  the device's last group instead of on row threads while the next groups run.
* ``inline``: every batch is booked on the device's thread right after its step (no scorer
  thread): the booking's own time is added to the device's thread, but no thread beside it
  takes the GIL at the moments the device's thread gives it up (results valid).
* ``pyswitch``: the sweep at Python's own GIL switch interval (5 ms) instead of the sweep's
  0.5 ms on a GPU (``v2x.gil_switch``): a thread that wants the GIL back waits at most that
  long for the one holding it.
* ``fastswitch``: the sweep at a 0.1 ms switch interval.

Per call: frame-conditions per second, the wall time, the device thread's span (first group's
start to last group's end) and each group's time on it. If ``nobook`` or ``rowsafter`` shortens
the device thread's span by much more than the work it removes, that thread was waiting for the
GIL the other threads held. Needs CUDA (runs on the CPU for a smoke test).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweep import add_setting_options, bench_run_sweep, setting_of  # noqa: E402

VARIANTS = ("base", "nobook", "rowsafter", "inline", "pyswitch", "fastswitch")
#: the GIL switch interval (seconds) of the pyswitch and fastswitch variants
SWITCH_S = {"pyswitch": 0.005, "fastswitch": 0.0001}


class _Inline:
    """An executor that runs what it is given at once, on the caller's thread (``inline``)."""

    def submit(self, fn, *args, **kwargs) -> Future:  # noqa: ANN001
        done: Future = Future()
        done.set_result(fn(*args, **kwargs))
        return done

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class _Deferred:
    """A group's rows, computed when the sweep asks for them (``rowsafter``)."""

    def __init__(self, rows) -> None:  # noqa: ANN001 - GroupRun._rows
        self.rows = rows


def install(variant: str, spans: list[tuple[str, float, float]]) -> None:
    """Patch the sweep's modules for ``variant``; ``spans`` receives ``(group, start, end)``
    of every group the device's thread runs."""
    import v2x.gil_switch as gil_switch
    import v2x.sweep as sweep
    import v2x.sweep_group as sweep_group

    def timed(run, label):  # noqa: ANN001, ANN202 - the device thread's call, into spans
        def call(plan, what, *args, **kwargs):  # noqa: ANN001, ANN202
            start = time.perf_counter()
            try:
                return run(plan, what, *args, **kwargs)
            finally:
                spans.append((label(what), start, time.perf_counter()))

        return call

    sweep._run_group = timed(sweep._run_group, lambda g: f"{g.fusion}/{g.codec}")
    sweep._run_lockstep = timed(  # a wave of groups in lockstep (where features do not fit)
        sweep._run_lockstep, lambda wave: "+".join(f"{g.fusion}/{g.codec}" for g, _ in wave)
    )
    if variant == "nobook":
        book_batch, first = sweep_group.book_batch, {}

        def first_batch_only(on_host, item, scoring, cells, group):  # noqa: ANN001, ANN202
            if id(scoring) not in first:
                first[id(scoring)] = book_batch(on_host, item, scoring, cells, group)
            return first[id(scoring)]

        sweep_group.book_batch = first_batch_only
    elif variant == "inline":

        def executor(max_workers=None, thread_name_prefix=""):  # noqa: ANN001, ANN202
            if thread_name_prefix == "v2x-score":
                return _Inline()
            return ThreadPoolExecutor(max_workers, thread_name_prefix=thread_name_prefix)

        sweep.ThreadPoolExecutor = executor
    elif variant in SWITCH_S:
        gil_switch.SWEEP_SWITCH_INTERVAL_S = SWITCH_S[variant]
    elif variant == "rowsafter":
        ready, resolved = sweep._ready, sweep._resolved
        sweep_group.GroupRun.finish = lambda self, pool=None: _Deferred(self._rows)
        sweep._ready = lambda done: not isinstance(done, _Deferred) and ready(done)

        def resolve(item):  # noqa: ANN001, ANN202
            group, snrs, done, seconds = item
            done = done.rows() if isinstance(done, _Deferred) else done
            return resolved((group, snrs, done, seconds))

        sweep._resolved = resolve
        sweep.ROW_THREADS = 1 << 20  # (no group waits for another's rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variant", choices=VARIANTS)
    p.add_argument("--calls", type=int, default=2, help="warm calls after the first")
    add_setting_options(p, frames=512, batch_size=32)
    p.add_argument("--cuda-graph", action="store_true", help="the sweep's cuda_graph: true")
    args = p.parse_args()
    spans: list[tuple[str, float, float]] = []
    install(args.variant, spans)
    run = setting_of(args)
    run.cuda_graph = args.cuda_graph
    if not torch.cuda.is_available():
        run.device = "cpu"
    rates = []
    for call in range(args.calls + 1):
        spans.clear()
        s = bench_run_sweep(run)
        if call:
            rates.append(s["fc_per_s"])
        span = spans[-1][2] - spans[0][1] if spans else float("nan")
        groups = ", ".join(f"{name} {end - start:.2f}" for name, start, end in spans)
        print(f"{args.variant} ({args.precision}, codec {args.codec_precision}"
              f"{', graph' if args.cuda_graph else ''}) call "
              f"{call}: {s['fc_per_s']:.1f} frame-conditions/s, "
              f"{s['wall_s']:.2f} s; device thread {span:.2f} s ({groups})", flush=True)  # fmt: skip
    if rates:
        print(f"{args.variant} warm: " + " ".join(f"{r:.0f}" for r in rates)
              + f", mean {sum(rates) / len(rates):.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
