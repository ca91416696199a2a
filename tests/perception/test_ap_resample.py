"""Resampled APs computed all at once equal ``ap_from_flags`` on each resample, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from v2x.perception import ap_resample
from v2x.perception.ap_curve import ap_from_flags
from v2x.perception.ap_resample import resampled_aps


def _records(rng: np.random.Generator, frames: int, ties: bool):
    lengths = rng.integers(0, 40, frames)
    lengths[rng.random(frames) < 0.2] = 0  # frames without detections
    frame_gt = rng.integers(0, 12, frames)
    frame_gt[rng.random(frames) < 0.3] = 0  # frames without GT
    d = int(lengths.sum())
    tp = (rng.random(d) < 0.6).astype(np.int8)
    scores = rng.random(d)
    if ties:
        scores = np.round(scores, 1)  # many exact ties: the stable order decides
    return tp, scores, lengths, frame_gt


def _oracle(tp, scores, lengths, frame_gt, draws, sort):
    """The bootstrap's former loop: one ``ap_from_flags`` per resample."""
    offsets = np.cumsum(lengths) - lengths
    out = []
    for idx in draws:
        num_gt = int(frame_gt[idx].sum())
        if num_gt == 0:
            continue
        pos = np.concatenate([np.arange(offsets[i], offsets[i] + lengths[i]) for i in idx])
        pos = pos.astype(np.int64)
        out.append(ap_from_flags(tp[pos], scores[pos], num_gt, sort)["ap"])
    return np.asarray(out, dtype=np.float64)


@pytest.mark.parametrize("sort", ["per_frame", "global"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resampled_aps_equal_one_ap_from_flags_per_resample_bitwise(sort, seed, monkeypatch):
    rng = np.random.default_rng(seed)
    tp, scores, lengths, frame_gt = _records(rng, 30, ties=seed == 2)
    draws = np.sort(rng.integers(0, 30, size=(300, 30)), axis=1)
    draws[:3] = np.flatnonzero(frame_gt == 0)[:1]  # resamples with no GT are skipped
    want = _oracle(tp, scores, lengths, frame_gt, draws, sort)
    assert 250 < want.size < 300
    got = resampled_aps(tp, scores, lengths, frame_gt, draws, sort)
    assert got.tobytes() == want.tobytes()
    # chunked over the resamples (small chunks), same bits
    monkeypatch.setattr(ap_resample, "CHUNK_ELEMENTS", 500)
    assert resampled_aps(tp, scores, lengths, frame_gt, draws, sort).tobytes() == want.tobytes()


def test_ragged_resamples_and_nan_scores_equal_the_loop():
    rng = np.random.default_rng(7)
    tp, scores, lengths, frame_gt = _records(rng, 20, ties=False)
    scores[::7] = np.nan
    rows = [np.sort(rng.integers(0, 20, int(rng.integers(1, 30)))) for _ in range(100)]
    for sort in ("per_frame", "global"):
        want = _oracle(tp, scores, lengths, frame_gt, rows, sort)
        got = resampled_aps(tp, scores, lengths, frame_gt, rows, sort)
        assert got.tobytes() == want.tobytes()


def test_no_detections_and_bad_sort():
    got = resampled_aps(np.zeros(0), np.zeros(0), np.zeros(3, np.int64), np.array([1, 0, 2]),
                        np.array([[0, 1, 2], [1, 1, 1]]))  # fmt: skip
    assert got.tolist() == [0.0]  # the GT-less resample is skipped; AP 0 without detections
    with pytest.raises(ValueError, match="sort"):
        resampled_aps(
            np.zeros(0), np.zeros(0), np.zeros(1, np.int64), np.ones(1), np.zeros((1, 1)), "x"
        )


@pytest.mark.parametrize("sort", ["per_frame", "global"])
def test_full_recall_and_more_hits_than_gt_equal_the_loop(sort):
    """Every GT found (recall reaches exactly 1: no appended term) and, as an edge, more true
    positives than GT in some frames."""
    rng = np.random.default_rng(4)
    tp, scores, lengths, frame_gt = _records(rng, 25, ties=False)
    offsets = np.cumsum(lengths) - lengths
    hits = np.array([int(tp[o : o + n].sum()) for o, n in zip(offsets, lengths)])
    for gt in (hits, np.maximum(hits - 1, 0)):
        draws = np.sort(rng.integers(0, 25, size=(200, 25)), axis=1)
        want = _oracle(tp, scores, lengths, gt, draws, sort)
        assert resampled_aps(tp, scores, lengths, gt, draws, sort).tobytes() == want.tobytes()
