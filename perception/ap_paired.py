"""The difference of two APs on the same frames, with its paired bootstrap interval.

Two methods scored on the same frames share the frames' difficulty: their APs move together
from one resample to the next, so their difference varies far less than either AP. Comparing
the two marginal intervals (overlap or not) ignores that and is the wrong test in both
directions. The paired bootstrap draws the same resamples of the frames (or of whole sequences)
for both accumulators, takes the difference on each, and reports its percentile interval: a
difference whose interval holds 0 is not a finding.
"""

from __future__ import annotations

import math

import numpy as np

from v2x.perception.ap_quantiles import resampled_difference_quantiles
from v2x.perception.ap_resample import flat_rows
from v2x.perception.average_precision import APAccumulator

__all__ = ["paired_difference"]


def paired_difference(
    a: APAccumulator,
    b: APAccumulator,
    group: str,
    threshold: float,
    resamples: int,
    seed: int = 0,
    bootstrap_unit: str = "auto",
    sort: str | None = None,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """``AP(a) − AP(b)`` of ``group`` at IoU ``threshold`` and its paired percentile interval.

    Args:
        a, b: accumulators that saw the same frames in the same order (checked: the same number
            of frames, the same sequences, and in ``group`` the same ground-truth count per
            frame), e.g. two fusions of one evaluation.
        group, threshold: as for ``APAccumulator.bootstrap_distribution``.
        resamples: bootstrap resamples (> 0); both accumulators get the very same draws.
        seed, bootstrap_unit, sort: as for ``APAccumulator.compute`` (the unit is resolved
            once, from ``a``).
        confidence: coverage of the percentile interval.

    Returns:
        ``(difference, lo, hi)`` in AP units; ``lo``/``hi`` NaN when no resample holds GT.
    """
    if resamples <= 0 or not 0.0 < confidence < 1.0:
        raise ValueError(
            f"paired_difference: expected resamples > 0 and 0 < confidence < 1, got "
            f"resamples={resamples}, confidence={confidence}"
        )
    _check_same_frames(a, b, group)
    unit = a.bootstrap_unit(bootstrap_unit)
    sort = a.config.sort if sort is None else sort
    ap_a, ap_b = (acc.compute(sort=sort)["ap"][group][_threshold(acc, threshold)] for acc in (a, b))
    quantiles = [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0]
    procedures = {a.config.procedure, b.config.procedure}
    if sort == "per_frame" and procedures == {"opencood"}:
        # np.quantile of the resampled differences below, bit for bit, from both exact APs of
        # only the resamples that can hold those percentiles (ap_quantiles)
        draws = flat_rows(a._draws(group, resamples, seed, unit))
        first, second = (_tp_and_lengths(acc, group, threshold) for acc in (a, b))
        frame_gt = np.asarray(a._store(group).frame_gt, dtype=np.int64)
        lo, hi = resampled_difference_quantiles(first, second, frame_gt, draws, quantiles)
        return float(ap_a - ap_b), float(lo), float(hi)
    on_a, on_b = (
        acc.bootstrap_distribution(group, threshold, resamples, seed, unit, sort) for acc in (a, b)
    )
    # the same draws and the same ground truth: the same resamples are skipped (no GT) in both
    if on_a.shape != on_b.shape:
        raise ValueError(
            f"paired_difference: {on_a.size} and {on_b.size} resamples of group {group!r} hold "
            "ground truth; the accumulators did not see the same frames"
        )
    if not on_a.size:
        return float(ap_a - ap_b), math.nan, math.nan
    lo, hi = np.quantile(on_a - on_b, quantiles)
    return float(ap_a - ap_b), float(lo), float(hi)


def _tp_and_lengths(acc: APAccumulator, group: str, threshold: float) -> tuple[np.ndarray, ...]:
    """``[D]`` TP flags of ``group``'s records at IoU ``threshold`` and ``[F]`` detections per
    record (``APAccumulator._records``)."""
    ti = acc.thresholds.tolist().index(_threshold(acc, threshold))
    tp, _, lengths = acc._records(acc._store(group), ti)
    return tp, lengths


def _threshold(acc: APAccumulator, threshold: float) -> float:
    """The configured threshold equal to ``threshold`` (``compute``'s key)."""
    for t in acc.thresholds.tolist():
        if math.isclose(t, threshold):
            return t
    raise ValueError(f"threshold: expected one of {acc.thresholds.tolist()}, got {threshold}")


def _check_same_frames(a: APAccumulator, b: APAccumulator, group: str) -> None:
    """``ValueError`` unless ``a`` and ``b`` hold the same frames (count, sequences, and the
    per-frame ground-truth counts and records of ``group``)."""
    for acc, name in ((a, "first"), (b, "second")):
        if group not in acc._groups:
            raise ValueError(
                f"paired_difference: group {group!r} is not in the {name} accumulator "
                f"(it has {list(acc._groups)})"
            )
    if a.num_frames != b.num_frames or a._sequences != b._sequences:
        raise ValueError(
            f"paired_difference: the accumulators hold different frames ({a.num_frames} and "
            f"{b.num_frames} frames, or other sequences): a paired interval needs the same frames"
        )
    sa, sb = a._store(group), b._store(group)
    if sa.frame_gt != sb.frame_gt or sa.frame_index != sb.frame_index:
        raise ValueError(
            f"paired_difference: group {group!r} has other ground truth per frame in the two "
            "accumulators: a paired interval needs the same frames"
        )
