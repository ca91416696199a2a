"""AP of many resamplings of a frame set at once (the bootstrap of ``APAccumulator.compute``).

``resampled_aps`` gives, for each resample (a sorted list of frame indices, with repeats), the
AP that ``ap_from_flags`` returns on the drawn frames' detections concatenated frame after frame
— bit for bit: the cumulative sums, recall, precision and the VOC envelope are computed for all
resamples in a few array operations on a padded ``[R, L]`` matrix with the same element-wise
arithmetic, and each resample's sum of ``Δrecall · precision`` terms is taken by ``np.sum`` on
exactly the terms ``voc_ap`` sums, in the same order (numpy's pairwise summation depends on the
array's length, so padding is never summed). The per-resample Python work is that one ``np.sum``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Elements of one padded ``[R, L]`` chunk (bounds the memory: ~10 float64 arrays of this size).
CHUNK_ELEMENTS = 1 << 21

__all__ = ["CHUNK_ELEMENTS", "resampled_aps"]


def resampled_aps(
    tp: np.ndarray,
    scores: np.ndarray,
    lengths: np.ndarray,
    frame_gt: np.ndarray,
    draws: np.ndarray | Sequence[np.ndarray],
    sort: str = "per_frame",
) -> np.ndarray:
    """AP of each resample that has ground truth, as ``ap_from_flags`` would compute it.

    Args:
        tp: ``[D]`` int TP flags of every frame's counted detections, frame after frame.
        scores: ``[D]`` their scores.
        lengths: ``[F]`` int64 detections of each frame record (``sum == D``).
        frame_gt: ``[F]`` int64 GT boxes of each frame record.
        draws: ``[R, n]`` int frame records of each resample, or ``R`` such rows of different
            lengths (a cluster bootstrap); each row in the order its frames' detections are
            concatenated.
        sort: ``"per_frame"`` or ``"global"`` (see ``ap_from_flags``).

    Returns:
        ``[R']`` float64 APs of the resamples whose drawn frames hold GT (``R' <= R``), in
        resample order (the others are skipped, as the bootstrap skips them).
    """
    if sort not in ("per_frame", "global"):
        raise ValueError(f"sort: expected 'per_frame' or 'global', got {sort!r}")
    tp = np.asarray(tp, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    frame_gt = np.asarray(frame_gt, dtype=np.int64).reshape(-1)
    rows = [np.asarray(d, dtype=np.int64).reshape(-1) for d in draws]
    num_gt = np.asarray([int(frame_gt[d].sum()) for d in rows], dtype=np.int64)
    rows = [d for d, g in zip(rows, num_gt) if g > 0]
    num_gt = num_gt[num_gt > 0]
    offsets = np.cumsum(lengths) - lengths
    per_row = np.asarray([int(lengths[d].sum()) for d in rows], dtype=np.int64)
    # Padding sorts after every detection by a key of +inf, which NaN scores would not respect:
    # then one resample per chunk (no padding at all).
    one_by_one = sort == "global" and not bool(np.isfinite(scores).all())
    out = np.empty(len(rows), dtype=np.float64)
    start = 0
    while start < len(rows):
        width = int(per_row[start:].max()) + 2
        stop = start + (1 if one_by_one else max(1, CHUNK_ELEMENTS // width))
        out[start:stop] = _chunk_aps(
            tp, scores, lengths, offsets, rows[start:stop], num_gt[start:stop], sort
        )
        start = stop
    return out


def _chunk_aps(
    tp: np.ndarray,
    scores: np.ndarray,
    lengths: np.ndarray,
    offsets: np.ndarray,
    rows: Sequence[np.ndarray],
    num_gt: np.ndarray,
    sort: str,
) -> np.ndarray:
    """``resampled_aps`` of a chunk of resamples that all have GT."""
    r = len(rows)
    drawn = np.concatenate(rows)
    n_det = lengths[drawn]
    ends = np.cumsum(n_det)
    total = int(ends[-1]) if ends.size else 0
    # the drawn frames' detections, frame after frame and resample after resample
    pos = np.arange(total) + np.repeat(offsets[drawn] - (ends - n_det), n_det)
    frames_per_row = np.asarray([len(d) for d in rows], dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum(frames_per_row)])
    per_row = np.concatenate([[0], ends])[bounds[1:]] - np.concatenate([[0], ends])[bounds[:-1]]
    row = np.repeat(np.arange(r), per_row)
    col = np.arange(total) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    width = int(per_row.max()) if r else 0
    flags = np.zeros((r, width), dtype=np.int64)
    flags[row, col] = tp[pos]
    if sort == "global":
        keys = np.full((r, width), np.inf)  # padding (-score = +inf) after every detection
        keys[row, col] = -scores[pos]
        flags = np.take_along_axis(flags, np.argsort(keys, axis=1, kind="stable"), axis=1)
    ctp = np.cumsum(flags, axis=1)
    cfp = np.cumsum(1 - flags, axis=1)
    recall = ctp / num_gt.astype(np.float64)[:, None]
    precision = ctp / np.maximum(ctp + cfp, 1)
    # voc_ap's mrec = [0, recall, 1] and mpre = [0, precision, 0], padded past each row's end
    # with mrec = 1 (no change, no term) and mpre = 0 (leaves the right-to-left maximum alone).
    inside = np.arange(width)[None, :] < per_row[:, None]
    mrec = np.ones((r, width + 2))
    mrec[:, 0] = 0.0
    mrec[:, 1:-1] = np.where(inside, recall, 1.0)
    mpre = np.zeros((r, width + 2))
    mpre[:, 1:-1] = np.where(inside, precision, 0.0)
    mpre = np.maximum.accumulate(mpre[:, ::-1], axis=1)[:, ::-1]
    change = mrec[:, 1:] != mrec[:, :-1]
    terms = ((mrec[:, 1:] - mrec[:, :-1]) * mpre[:, 1:])[change]
    counts = change.sum(axis=1)
    stops = np.cumsum(counts)
    return np.fromiter(
        (float(np.sum(terms[a:b])) for a, b in zip((stops - counts).tolist(), stops.tolist())),
        dtype=np.float64,
        count=r,
    )
