"""The bootstrap's percentiles from bounds and a few exact APs (``ap_quantiles``) against
``np.quantile`` of every resample's AP by the published algorithm, bit for bit.

The oracle (``_voc_loop``, shared with ``test_ap_resample_blocks``) is written from OpenCOOD's ``calculate_ap`` / ``voc_ap`` with Python lists and
scalars (no code of ``v2x``): concatenate the drawn frames' TP flags, cumulative TP / FP
counts, recall ``tp / G``, precision ``tp / (tp + fp)``, ``mrec = [0, recall, 1]``,
``mpre = [0, precision, 0]`` made non-increasing from the right, and the terms
``(mrec[i] − mrec[i − 1]) · mpre[i]`` where recall changes, summed with ``np.sum`` (as the
project's ``voc_ap``); then ``np.quantile`` of the resamples that hold GT.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.perception.test_ap_resample_blocks import _voc_loop
from v2x.perception import ap_quantiles
from v2x.perception.ap_quantiles import resampled_ap_quantiles
from v2x.perception.ap_resample import _flat_rows, flat_rows, resampled_aps
from v2x.perception.average_precision import APAccumulator


def _records(rng: np.random.Generator, frames: int):
    """Frame records with frames without detections, without TPs and without GT, TPs mostly
    first in each frame (as a detector's sorted boxes) and interleaved with FPs."""
    lengths = rng.integers(0, 50, frames)
    lengths[rng.random(frames) < 0.15] = 0
    parts = []
    for n in lengths:
        # TP probability falling along the frame's score order
        parts.append((rng.random(n) < np.linspace(0.95, 0.2, n) * rng.random()).astype(np.int8))
    tp = np.concatenate(parts)
    frame_gt = rng.integers(0, 30, frames)
    frame_gt[rng.random(frames) < 0.2] = 0
    return tp, rng.random(tp.size), lengths, frame_gt


def _sequence_draws(rng: np.random.Generator, frames: int, per_sequence: int, resamples: int):
    """Ragged rows as the sequence bootstrap draws them: whole runs of consecutive frames."""
    starts = np.arange(0, frames, per_sequence)
    rows = []
    for _ in range(resamples):
        picks = np.sort(rng.integers(0, starts.size, starts.size))
        rows.append(
            np.concatenate([np.arange(s, min(s + per_sequence, frames)) for s in starts[picks]])
        )
    return rows


QUANTILES = [
    [0.025, 0.975],
    [0.0, 1.0],
    [0.5],
    [0.05, 0.25, 0.75, 0.95],
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("quantiles", QUANTILES)
def test_percentiles_equal_the_published_ap_of_every_resample(seed, quantiles):
    """Equal-length rows (the frame bootstrap) and ragged rows (the sequence bootstrap), with
    rows without GT; the GT counts as drawn, and equal to the hits (full recall: no appended
    term), and below them (recall above 1)."""
    rng = np.random.default_rng(seed)
    frames = 60
    tp, scores, lengths, frame_gt = _records(rng, frames)
    offsets = np.cumsum(lengths) - lengths
    hits = np.array([int(tp[o : o + n].sum()) for o, n in zip(offsets, lengths)])
    square = np.sort(rng.integers(0, frames, size=(300, frames)), axis=1)
    square[:5] = np.flatnonzero(frame_gt == 0)[0]  # rows without GT are left out
    ragged = _sequence_draws(rng, frames, 4, 250)
    for gt in (frame_gt, hits, np.maximum(hits // 2, 0)):
        for draws in (square, ragged):
            values = _voc_loop(tp, lengths, gt, draws)
            want = np.quantile(values, quantiles)
            got = resampled_ap_quantiles(tp, scores, lengths, gt, draws, quantiles)
            assert got.tobytes() == want.tobytes()


def test_ties_at_the_percentiles_and_identical_resamples():
    """Many resamples with the very same AP (repeated rows), so that the order statistics the
    percentiles read are ties among many candidates."""
    rng = np.random.default_rng(5)
    tp, scores, lengths, frame_gt = _records(rng, 40)
    base = np.sort(rng.integers(0, 40, size=(20, 40)), axis=1)
    draws = base[rng.integers(0, 20, 400)]
    values = _voc_loop(tp, lengths, frame_gt, draws)
    for q in QUANTILES:
        got = resampled_ap_quantiles(tp, scores, lengths, frame_gt, draws, q)
        assert got.tobytes() == np.quantile(values, q).tobytes()


def test_few_or_no_resamples_with_gt_and_no_true_positives():
    rng = np.random.default_rng(3)
    tp, scores, lengths, frame_gt = _records(rng, 30)
    none = np.zeros_like(frame_gt)
    got = resampled_ap_quantiles(tp, scores, lengths, none, np.zeros((100, 3), np.int64), [0.5])
    assert np.isnan(got).all() and got.shape == (1,)
    draws = np.sort(rng.integers(0, 30, size=(10, 30)), axis=1)  # fewer than MIN_BOUNDED_ROWS
    want = np.quantile(_voc_loop(tp, lengths, frame_gt, draws), [0.1, 0.9])
    got = resampled_ap_quantiles(tp, scores, lengths, frame_gt, draws, [0.1, 0.9])
    assert got.tobytes() == want.tobytes()
    misses = np.zeros_like(tp)  # no TP at all: every AP 0
    draws = np.sort(rng.integers(0, 30, size=(200, 30)), axis=1)
    want = np.quantile(_voc_loop(misses, lengths, frame_gt, draws), [0.025, 0.975])
    got = resampled_ap_quantiles(misses, scores, lengths, frame_gt, draws, [0.025, 0.975])
    assert got.tobytes() == want.tobytes()
    few = np.zeros_like(tp)  # TPs in one frame only: many resamples without any
    few[: lengths[0]] = 1
    want = np.quantile(_voc_loop(few, lengths, frame_gt, draws), [0.025, 0.5, 0.975])
    got = resampled_ap_quantiles(few, scores, lengths, frame_gt, draws, [0.025, 0.5, 0.975])
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("runs", [False, True])
def test_bounds_hold_every_exact_ap_and_meet_for_runs(runs):
    """Each row's exact AP (the sweep's bits) lies within its bounds; with one piece per run
    of true positives the bounds are the AP in exact arithmetic (only rounding apart)."""
    rng = np.random.default_rng(11)
    tp, scores, lengths, frame_gt = _records(rng, 80)
    draws = _sequence_draws(rng, 80, 3, 200)
    exact = resampled_aps(tp, scores, lengths, frame_gt, draws, "per_frame")
    drawn, frames_per_row = _flat_rows(draws)
    num_gt = ap_quantiles._row_sums(frame_gt[drawn], frames_per_row)
    keep = num_gt > 0
    drawn = drawn[np.repeat(keep, frames_per_row)]
    pieces = ap_quantiles._pieces(tp.astype(np.int64), lengths, runs=runs)
    lo, hi = ap_quantiles._ap_bounds(pieces, drawn, frames_per_row[keep], num_gt[keep])
    assert (lo <= exact).all() and (exact <= hi).all()
    if runs:
        assert (hi - lo).max() < 1e-9
    else:
        assert (hi - lo).max() > 1e-6  # records: looser, hence the runs for candidates


def _count_exact_aps(monkeypatch) -> list[int]:
    """The rows of every exact-AP call ``ap_quantiles`` makes from now on, appended per call."""
    computed: list[int] = []
    exact = ap_quantiles._true_positive_aps

    def counted(tp, lengths, drawn, frames_per_row, num_gt):
        computed.append(frames_per_row.size)
        return exact(tp, lengths, drawn, frames_per_row, num_gt)

    monkeypatch.setattr(ap_quantiles, "_true_positive_aps", counted)
    return computed


def test_only_the_candidates_get_an_exact_ap(monkeypatch):
    """The point of the bounds: far fewer exact APs than resamples (counted, not timed)."""
    rng = np.random.default_rng(2)
    tp, scores, lengths, frame_gt = _records(rng, 120)
    draws = np.sort(rng.integers(0, 120, size=(1000, 120)), axis=1)
    computed = _count_exact_aps(monkeypatch)
    got = resampled_ap_quantiles(tp, scores, lengths, frame_gt, draws, [0.025, 0.975])
    want = np.quantile(_voc_loop(tp, lengths, frame_gt, draws), [0.025, 0.975])
    assert got.tobytes() == want.tobytes()
    assert sum(computed) < 100
    computed.clear()  # every AP 0 (no TP): all tie, none needs its exact AP
    misses = np.zeros_like(tp)
    got = resampled_ap_quantiles(misses, scores, lengths, frame_gt, draws, [0.025, 0.975])
    assert got.tobytes() == np.zeros(2).tobytes() and sum(computed) == 0


@pytest.mark.parametrize("unit", ["frame", "sequence"])
def test_compute_intervals_are_the_percentiles_of_the_bootstrap_distribution(unit):
    """``APAccumulator.compute``'s intervals equal ``np.quantile`` of
    ``bootstrap_distribution`` (every resample's AP), in every group and threshold."""
    rng = np.random.default_rng(4)
    acc = APAccumulator(iou_thresholds=(0.3, 0.7))
    for f in range(48):
        gt = np.zeros((int(rng.integers(1, 8)), 7))
        gt[:, 0] = np.arange(gt.shape[0]) * 6.0
        gt[:, 3:6] = (4.0, 2.0, 1.5)
        det = gt[rng.random(gt.shape[0]) < 0.8].copy()
        det[:, 0] += rng.normal(0, 0.6, det.shape[0])
        extra = np.zeros((int(rng.integers(0, 4)), 7))
        extra[:, 0], extra[:, 3:6] = 100.0 + 6 * np.arange(extra.shape[0]), (4.0, 2.0, 1.5)
        det = np.concatenate([det, extra])
        acc.add_frame(det, rng.random(det.shape[0]), None, gt, sequence=f // 4)
    result = acc.compute(bootstrap=300, seed=1, bootstrap_unit=unit, confidence=0.95)
    percentiles = [(1.0 - 0.95) / 2.0, (1.0 + 0.95) / 2.0]  # compute's (0.025 + 2.2e-17)
    for name, by_threshold in result["ci"].items():
        for thr, (lo, hi) in by_threshold.items():
            values = acc.bootstrap_distribution(name, thr, 300, 1, unit)
            want = np.quantile(values, percentiles) if values.size else [math.nan] * 2
            assert np.array([lo, hi]).tobytes() == np.asarray(want, np.float64).tobytes()


@pytest.mark.parametrize(
    ("sort", "procedure"),
    [("per_frame", "opencood"), ("global", "opencood"), ("global", "dair_v2x")],
)
def test_draws_joined_once_are_the_same_draws(sort, procedure):
    """``flat_rows`` (the bootstrap joins a group's draws once for all its thresholds) gives
    every resample's AP and the percentiles of the rows it joined, in every order."""
    rng = np.random.default_rng(8)
    tp, scores, lengths, frame_gt = _records(rng, 40)
    draws = _sequence_draws(rng, 40, 3, 120)
    joined = flat_rows(draws)
    want = resampled_aps(tp, scores, lengths, frame_gt, draws, sort, procedure)
    got = resampled_aps(tp, scores, lengths, frame_gt, joined, sort, procedure)
    assert got.tobytes() == want.tobytes()
    q = [0.025, 0.975]
    got = resampled_ap_quantiles(tp, scores, lengths, frame_gt, joined, q, sort, procedure)
    assert got.tobytes() == np.quantile(want, q).tobytes()


def test_row_sums_with_empty_rows():
    values = np.array([3, 1, 4, 1, 5], dtype=np.int64)
    counts = np.array([0, 2, 0, 3, 0], dtype=np.int64)
    assert ap_quantiles._row_sums(values, counts).tolist() == [0, 4, 0, 10, 0]
    assert ap_quantiles._row_sums(values[:0], np.zeros(2, np.int64)).tolist() == [0, 0]


def _paired_records(rng: np.random.Generator, frames: int, flip: float):
    """Two methods' records on the same frames: the second method's TP flags are the first's
    with a share ``flip`` of them toggled (paired outcomes, as two fusions of one scene)."""
    tp, scores, lengths, frame_gt = _records(rng, frames)
    other = tp.copy()
    toggled = rng.random(tp.size) < flip
    other[toggled] = 1 - other[toggled]
    return (tp, lengths), (other, lengths), scores, frame_gt


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("flip", [0.0, 0.05, 0.5])
def test_difference_percentiles_equal_those_of_every_resamples_difference(seed, flip):
    """``resampled_difference_quantiles`` against the published AP of each resample of each
    method (``_voc_loop``), differenced and fed to ``np.quantile``: bit for bit, with equal
    and ragged rows, rows without GT, identical methods (every difference 0: all tie) and
    a method with other records lengths (the second drops every frame's last detection)."""
    from v2x.perception.ap_quantiles import resampled_difference_quantiles

    rng = np.random.default_rng(seed)
    frames = 60
    first, second, _, frame_gt = _paired_records(rng, frames, flip)
    square = np.sort(rng.integers(0, frames, size=(300, frames)), axis=1)
    square[:5] = np.flatnonzero(frame_gt == 0)[0]
    ragged = _sequence_draws(rng, frames, 4, 250)
    tp, lengths = second
    keep = np.ones(tp.size, dtype=bool)
    keep[(np.cumsum(lengths) - 1)[lengths > 0]] = False  # each frame's last detection dropped
    shorter = (tp[keep], np.maximum(lengths - 1, 0))
    for other in (second, first, shorter):
        for draws in (square, ragged):
            values = _voc_loop(*first, frame_gt, draws) - _voc_loop(*other, frame_gt, draws)
            for q in QUANTILES:
                got = resampled_difference_quantiles(first, other, frame_gt, draws, q)
                assert got.tobytes() == np.quantile(values, q).tobytes(), (flip, q)


def test_difference_percentiles_need_few_exact_aps(monkeypatch):
    """Far fewer exact APs than two per resample (counted, not timed); no resample with GT:
    NaN."""
    from v2x.perception.ap_quantiles import resampled_difference_quantiles

    rng = np.random.default_rng(7)
    first, second, _, frame_gt = _paired_records(rng, 120, 0.1)
    draws = np.sort(rng.integers(0, 120, size=(1000, 120)), axis=1)
    computed = _count_exact_aps(monkeypatch)
    got = resampled_difference_quantiles(first, second, frame_gt, draws, [0.025, 0.975])
    want = _voc_loop(*first, frame_gt, draws) - _voc_loop(*second, frame_gt, draws)
    assert got.tobytes() == np.quantile(want, [0.025, 0.975]).tobytes()
    assert sum(computed) < 200
    none = np.zeros_like(frame_gt)
    got = resampled_difference_quantiles(first, second, none, draws, [0.025, 0.975])
    assert np.isnan(got).all()
