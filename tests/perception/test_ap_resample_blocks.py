"""The per-frame bootstrap's padded row blocks (``ap_resample._true_positive_aps``) against a
plain per-resample loop of OpenCOOD's ``calculate_ap`` / ``voc_ap``, bit for bit.

The oracle is written here from the published algorithm with Python lists and scalars (no
code of ``v2x``): concatenate the drawn frames' TP flags, cumulative TP / FP counts, recall
``tp / G``, precision ``tp / (tp + fp)``, ``mrec = [0, recall, 1]``, ``mpre = [0, precision,
0]`` made non-increasing from the right, and the terms ``(mrec[i] − mrec[i − 1]) · mpre[i]``
where recall changes. The terms are summed with ``np.sum`` (the project's ``voc_ap`` does so,
where OpenCOOD adds them one by one in Python; the order of the terms is the same).
"""

from __future__ import annotations

import numpy as np
import pytest

from v2x.perception import ap_resample
from v2x.perception.ap_resample import resampled_aps


def _voc_loop(tp, lengths, frame_gt, draws):
    """AP of each resample with GT, by the published algorithm, one resample at a time."""
    offsets = np.cumsum(lengths) - lengths
    out = []
    for row in draws:
        num_gt = sum(int(frame_gt[i]) for i in row)
        if num_gt == 0:
            continue
        flags = [int(tp[o]) for i in row for o in range(offsets[i], offsets[i] + lengths[i])]
        rec, prec, ctp, cfp = [], [], 0, 0
        for f in flags:
            ctp, cfp = ctp + (f > 0), cfp + (f <= 0)
            rec.append(ctp / float(num_gt))
            prec.append(ctp / max(ctp + cfp, 1))
        mrec = [0.0, *rec, 1.0]
        mpre = [0.0, *prec, 0.0]
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        terms = [(mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec))
                 if mrec[i] != mrec[i - 1]]  # fmt: skip
        out.append(float(np.sum(np.asarray(terms, dtype=np.float64))))
    return np.asarray(out, dtype=np.float64)


@pytest.mark.parametrize("chunk", [1, 4, 64])
@pytest.mark.parametrize("block", [1, 64, 1000, 1 << 16])
@pytest.mark.parametrize("seed", [0, 1])
def test_row_blocks_equal_the_published_voc_ap_per_resample(block, seed, chunk, monkeypatch):
    """Long rows (hundreds of terms: numpy's pairwise sum splits them), frames without
    detections or without TPs, rows without TPs, rows without GT, ragged rows; blocks of one
    row up to all rows; the envelope's chunks of one cell (every chunk's envelope is the
    maximum after it or its own cell) up to chunks wider than most rows."""
    rng = np.random.default_rng(seed)
    frames = 30
    lengths = rng.integers(0, 60, frames)
    lengths[rng.random(frames) < 0.2] = 0
    tp = (rng.random(int(lengths.sum())) < rng.random()).astype(np.int8)
    frame_gt = rng.integers(0, 30, frames)
    frame_gt[rng.random(frames) < 0.3] = 0
    offsets = np.cumsum(lengths) - lengths
    tp[offsets[0] : offsets[0] + lengths[0]] = 0  # a frame without TPs
    draws = [np.sort(rng.integers(0, frames, int(rng.integers(1, 40)))) for _ in range(60)]
    draws += [np.array([0, 0]), np.full(3, int(np.argmin(frame_gt)))]  # no TPs; maybe no GT
    hits = np.array([int(tp[o : o + n].sum()) for o, n in zip(offsets, lengths)])
    monkeypatch.setattr(ap_resample, "BLOCK_ELEMENTS", block)
    monkeypatch.setattr(ap_resample, "ENVELOPE_CHUNK", chunk)
    scores = rng.random(tp.size)
    for gt in (frame_gt, hits):  # hits: full recall, no appended term
        want = _voc_loop(tp, lengths, gt, draws)
        got = resampled_aps(tp, scores, lengths, gt, draws, "per_frame")
        assert got.tobytes() == want.tobytes()
        square = np.sort(rng.integers(0, frames, size=(50, frames)), axis=1)
        want = _voc_loop(tp, lengths, gt, square)
        got = resampled_aps(tp, scores, lengths, gt, square, "per_frame")
        assert got.tobytes() == want.tobytes()
