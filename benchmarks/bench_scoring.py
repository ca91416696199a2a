"""Host-side scoring of a sweep (matching + AP + bootstrap intervals), replayed from a recording.

    # record the evaluator's inputs of one run_sweep (CPU, shipped detector; a few minutes):
    python benchmarks/bench_scoring.py record /tmp/scoring.pt --frames 8
    # replay them: time the matching (accumulate) and the APs with intervals (compute)
    python benchmarks/bench_scoring.py replay /tmp/scoring.pt --repeat 16 [--profile 25]
    # a cell's rows at 512 frames, this code against every resample computed exactly:
    python benchmarks/bench_scoring.py replay /tmp/scoring.pt --repeat 64 --rows-ab 5

``record`` runs ``run_sweep`` once (``--codecs``, ``--fusions``, 7 SNRs, ``eval.bootstrap``
1000 as in the sweep's defaults, 4 frames per sequence) and saves what the sweep hands the
evaluator: each frame batch's detections of all ``K`` conditions with the batch's ground truth
(``v2x.sweep_scoring.GroupScoring.add``'s arguments: ``v2x.evaluation.ScoredArrays``), grouped by sweep setting, and the bootstrap
settings of ``compute_ap``.

``replay`` feeds the recorded batches to fresh accumulators, ``--repeat`` times (each repeat
with its own sequence names: ``--repeat 16`` of 8 recorded frames scores 128 frames in 32
sequences, like the 128-frame H200 benchmark's 13 of 10), then computes every cell's APs and
intervals as the sweep does (``v2x.sweep_rows``: once per distinct accumulator state, where
the code has that; else ``compute_ap`` per cell). It prints the seconds of both phases and a
SHA-256 digest of every AP and interval (their float64 bits): equal digests, equal numbers.
Frame-conditions per second count scored frames times conditions.

``--rows-ab N`` then times each distinct cell's rows as an AP worker computes them
(``v2x.sweep_rows.compute_ap`` on the cell's sealed accumulator: unpickled, APs, six bootstrap
intervals) ``N`` times with this code and ``N`` times with the reference — every resample's
exact AP, then ``np.quantile`` (``_reference_quantiles``: the intervals before
``v2x.perception.ap_quantiles``) — alternating which goes first, in this process; it prints
each variant's seconds per cell and per repeat (median and range), their ratio, and whether
the two give the same digest.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import hashlib
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch


def record(args: argparse.Namespace) -> None:
    """One ``run_sweep`` with ``v2x.sweep_scoring.GroupScoring.add`` and ``compute_ap``
    wrapped to save their inputs."""
    import v2x.sweep as sweep
    import v2x.sweep_rows as sweep_rows
    import v2x.sweep_scoring as sweep_scoring

    groups: dict[int, dict[str, Any]] = {}
    original_add, original_compute = sweep_scoring.GroupScoring.add, sweep_rows.compute_ap

    def add(self, scored):
        entry = groups.setdefault(id(self), {"config": self.config, "k": self.k, "batches": []})
        entry["batches"].append(scored)
        return original_add(self, scored)

    def compute_ap(acc, bootstrap, seed, unit="auto"):
        for entry in groups.values():
            entry.setdefault("bootstrap", {"bootstrap": bootstrap, "seed": seed, "unit": unit})
        return original_compute(acc, bootstrap, seed, unit)

    sweep_scoring.GroupScoring.add, sweep_rows.compute_ap = add, compute_ap
    with tempfile.TemporaryDirectory() as tmp:
        sweep.run_sweep(
            {
                "checkpoint": args.checkpoint,
                "device": args.device,
                "data": {"num_frames": args.frames, "frames_per_sequence": 4, "seed": 0},
                "batch_size": args.batch_size,
                "grid": {"codecs": args.codecs, "fusions": args.fusions},
                "output_dir": tmp,
                "quiet": True,
                "plots": False,
                "table": False,
            }
        )
    torch.save(list(groups.values()), args.path)
    n = sum(len(e["batches"]) for e in groups.values())
    print(f"recorded {len(groups)} settings, {n} frame batches -> {args.path}")


def _renamed(scored: Any, suffix: str) -> Any:
    """``scored`` with ``suffix`` appended to its frames' sequences (a repeat of the set)."""
    sequences = scored.sequences
    return dataclasses.replace(
        scored, sequences=None if sequences is None else [s + suffix for s in sequences]
    )


def replay(args: argparse.Namespace) -> None:
    """Score the recording: accumulate every batch, then every cell's APs with intervals."""
    import v2x.sweep_rows as sweep_rows
    from v2x.evaluation import accumulate_arrays
    from v2x.perception.average_precision import APAccumulator

    groups = torch.load(args.path, weights_only=False)
    ab_cells: dict[str, tuple[Any, tuple]] = {}
    profiler = cProfile.Profile() if args.profile else None
    digest = hashlib.sha256()
    t_match = t_ap = 0.0
    frame_conditions = cells = cells_computed = 0
    for entry in groups:
        accs = [APAccumulator(entry["config"]) for _ in range(entry["k"])]
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        for r in range(args.repeat):
            for scored in entry["batches"]:
                accumulate_arrays(_renamed(scored, f"#{r}"), accs)
                frame_conditions += entry["k"] * scored.gt_boxes.shape[0]
        t1 = time.perf_counter()
        boot = entry.get("bootstrap", {"bootstrap": 1000, "seed": 0, "unit": "auto"})
        args_ap = (boot["bootstrap"], boot["seed"], boot["unit"])
        if hasattr(sweep_rows, "_distinct_results"):  # as group_rows: identical cells once
            keys = [acc.state_digest() for acc in accs]
            computed = sweep_rows._distinct_results(dict(zip(keys, accs)), *args_ap)
        else:  # before that: every cell
            keys = list(range(len(accs)))
            computed = {i: sweep_rows.compute_ap(acc, *args_ap) for i, acc in enumerate(accs)}
        results = [computed[key] for key in keys]
        if args.rows_ab:  # each distinct cell once, sealed as the scoring process sends it
            from v2x.sweep_scoring import _sealed

            for sealed in _sealed(accs):
                ab_cells.setdefault(sealed.state_digest(), (sealed, args_ap))
        cells_computed += len(computed)
        cells += len(accs)
        if profiler:
            profiler.disable()
        t2 = time.perf_counter()
        t_match, t_ap = t_match + t1 - t0, t_ap + t2 - t1
        _update_digest(digest, results)
    total = t_match + t_ap
    print(
        f"{len(groups)} settings, {frame_conditions} frame-conditions: matching {t_match:.2f} s, "
        f"APs + intervals {t_ap:.2f} s, total {total:.2f} s "
        f"({frame_conditions / total:.0f} frame-conditions/s); {cells_computed} of {cells} "
        f"cells computed (the others equal one of them)\ndigest {digest.hexdigest()}"
    )
    if profiler:
        for order in ("cumulative", "tottime"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(args.profile)
            print(text.getvalue())
    if args.rows_ab:
        rows_ab(list(ab_cells.values()), args.rows_ab)


def _reference_quantiles(
    tp: np.ndarray,
    scores: np.ndarray,
    lengths: np.ndarray,
    frame_gt: np.ndarray,
    draws: Any,
    quantiles: Sequence[float],
    sort: str = "per_frame",
    procedure: str = "opencood",
) -> np.ndarray:
    """The reference interval: every resample's exact AP (``resampled_aps``), then
    ``np.quantile`` (NaN without a resample with GT)."""
    from v2x.perception.ap_resample import resampled_aps

    values = resampled_aps(tp, scores, lengths, frame_gt, draws, sort, procedure)
    return np.quantile(values, quantiles) if values.size else np.full(len(quantiles), np.nan)


@contextlib.contextmanager
def _variant(name: str) -> Iterator[None]:
    """``"new"``: this code; ``"reference"``: ``_reference_quantiles`` in its place."""
    import v2x.perception.ap_bootstrap as ap_bootstrap

    if name == "new":
        yield
        return
    kept = ap_bootstrap.resampled_ap_quantiles
    ap_bootstrap.resampled_ap_quantiles = _reference_quantiles
    try:
        yield
    finally:
        ap_bootstrap.resampled_ap_quantiles = kept


def _results_digest(results: Sequence[dict]) -> str:
    """SHA-256 of every AP and interval of ``results`` (float64 bits)."""
    digest = hashlib.sha256()
    _update_digest(digest, results)
    return digest.hexdigest()


def _update_digest(digest: Any, results: Sequence[dict]) -> None:
    """Feed every AP and interval of ``results`` (float64 bits, sorted keys) to ``digest``."""
    for res in results:
        for group in sorted(res["ap"]):
            for thr, value in sorted(res["ap"][group].items()):
                digest.update(f"{group}@{thr}={float(value).hex()};".encode())
        for group in sorted(res.get("ci", {})):
            for thr, (lo, hi) in sorted(res["ci"][group].items()):
                digest.update(f"ci {group}@{thr}={lo.hex()},{hi.hex()};".encode())


def rows_ab(cells: Sequence[tuple[Any, tuple]], repeats: int) -> None:
    """Time ``compute_ap`` of each sealed cell (``(sealed, (bootstrap, seed, unit))``) with this
    code and the reference, alternating, ``repeats`` times each; print medians, ranges, ratio."""
    import statistics

    from v2x.sweep_rows import compute_ap

    seconds: dict[str, list[list[float]]] = {"new": [], "reference": []}
    digests: dict[str, set[str]] = {"new": set(), "reference": set()}
    for r in range(repeats):
        for name in ("new", "reference") if r % 2 == 0 else ("reference", "new"):
            times, results = [], []
            with _variant(name):
                for sealed, args_ap in cells:
                    t0 = time.perf_counter()
                    results.append(compute_ap(sealed, *args_ap))
                    times.append(time.perf_counter() - t0)
            seconds[name].append(times)
            digests[name].add(_results_digest(results))
            print(f"repeat {r} {name:9s} cells {sum(times):.3f} s "
                  f"({', '.join(f'{t:.3f}' for t in times)})", flush=True)  # fmt: skip
    summary = {}
    for name, runs in seconds.items():
        per_cell = [t for run in runs for t in run]
        totals = [sum(run) for run in runs]
        summary[name] = statistics.median(per_cell)
        print(
            f"{name:9s}: per cell median {statistics.median(per_cell):.3f} s "
            f"(range {min(per_cell):.3f}–{max(per_cell):.3f}), {len(cells)} cells per repeat "
            f"median {statistics.median(totals):.3f} s (range {min(totals):.3f}–{max(totals):.3f})"
        )
    same = len(digests["new"]) == 1 and digests["new"] == digests["reference"]
    print(
        f"ratio reference / new (median per cell): {summary['reference'] / summary['new']:.2f}x; "
        f"digests {'equal' if same else 'DIFFER'}: {sorted(digests['new'])[0][:16]}"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run one sweep and save the evaluator's inputs")
    rec.add_argument("path")
    rec.add_argument("--frames", type=int, default=8)
    rec.add_argument("--batch-size", type=int, default=4)
    rec.add_argument("--checkpoint", default="shipped")
    rec.add_argument("--device", default="cpu", help="run_sweep's device (cpu, cuda)")
    rec.add_argument("--codecs", nargs="+", default=["identity", "analog", "deepjscc"])
    rec.add_argument("--fusions", nargs="+", default=["none", "late", "max"])
    rep = sub.add_parser("replay", help="time the scoring of a recording")
    rep.add_argument("path")
    rep.add_argument("--repeat", type=int, default=16)
    rep.add_argument("--profile", type=int, default=0, metavar="N")
    rep.add_argument("--rows-ab", type=int, default=0, metavar="N",
                     help="then time each distinct cell's rows, this code against the "
                     "reference, N times each, alternating")  # fmt: skip
    args = p.parse_args()
    record(args) if args.command == "record" else replay(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
