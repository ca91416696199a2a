"""The matching of ``v2x.perception.average_precision``: OpenCOOD's per-frame greedy matching
(``greedy_match``, one frame's problems), the same for many frames side by side
(``greedy_match_batched``: element for element what ``greedy_match`` gives one frame at a time,
with a Python loop as long as the longest frame's list of detections that can match, instead of
as all frames' together), and DAIR-V2X's matching from the ground-truth side
(``gt_side_match_batched``), the same loop with the roles exchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["greedy_match", "greedy_match_batched", "gt_side_match_batched"]


def greedy_match(
    iou: np.ndarray,
    thresholds: np.ndarray,
    det_in: np.ndarray | None = None,
    gt_in: np.ndarray | None = None,
) -> np.ndarray:
    """OpenCOOD's per-frame greedy matching, for many independent problems at once.

    Problem ``p`` uses threshold ``thresholds[p]``, the detections ``det_in[p]`` and the GT
    ``gt_in[p]``. Detections are visited in row order (the caller sorts them by score); each is
    matched to the remaining GT of its problem with the largest IoU (first index on ties) iff
    that IoU is ``>= thresholds[p]``; a matched GT is removed.

    Args:
        iou: ``[D, G]`` IoU of score-sorted detections with GT.
        thresholds: ``[P]`` thresholds.
        det_in: ``[P, D]`` bool (``None``: all).
        gt_in: ``[P, G]`` bool (``None``: all).

    Returns:
        ``[P, D]`` int64: the matched GT index, or -1 (false positive, or not in the problem).
    """
    d, g = iou.shape
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    p = thresholds.size
    det_in = np.ones((p, d), dtype=bool) if det_in is None else np.asarray(det_in, dtype=bool)
    avail = np.ones((p, g), dtype=bool) if gt_in is None else np.array(gt_in, dtype=bool)
    matched = np.full((p, d), -1, dtype=np.int64)
    if d == 0 or g == 0:
        return matched
    rows = np.arange(p)
    iou = np.asarray(iou, dtype=np.float64)
    # a detection below every threshold with every GT matches nothing and removes nothing
    reach = (iou >= thresholds.min()).any(axis=1) if p else np.zeros(d, dtype=bool)
    for i in np.flatnonzero(reach).tolist():
        active = det_in[:, i]
        if not active.any():
            continue
        masked = np.where(avail, iou[i][None, :], -1.0)
        best = masked.argmax(axis=1)
        hit = active & (masked[rows, best] >= thresholds)
        matched[hit, i] = best[hit]
        avail[rows[hit], best[hit]] = False
    return matched


def greedy_match_batched(
    ious: Sequence[np.ndarray],
    thresholds: Sequence[np.ndarray],
    det_in: Sequence[np.ndarray],
    gt_in: Sequence[np.ndarray],
) -> list[np.ndarray]:
    """``greedy_match`` of many frames at once: ``[greedy_match(*args) for args in zip(...)]``,
    element for element.

    Frames are independent, so the sequential visit runs over the frames' detections side by
    side: step ``t`` visits the ``t``-th detection of every frame that can match anything (IoU
    ``>=`` the frame's smallest threshold with some GT; the others match nothing and remove
    nothing, as in ``greedy_match``). Frames, problems, detections and GT are padded (padding
    takes part in no problem and is never available), so the same maxima, first-index ties and
    ``>=`` tests decide every match; the Python loop has as many steps as the longest frame
    has such detections, not as all frames together.

    Args:
        ious: per frame ``[D_f, G_f]`` IoU of score-sorted detections with GT.
        thresholds: per frame ``[P_f]`` thresholds of its problems.
        det_in: per frame ``[P_f, D_f]`` bool.
        gt_in: per frame ``[P_f, G_f]`` bool.

    Returns:
        per frame ``[P_f, D_f]`` int64: the matched GT index, or -1.
    """
    n = len(ious)
    shapes = [np.shape(iou) for iou in ious]
    p_f = [np.size(t) for t in thresholds]
    out = [np.full((p, d), -1, dtype=np.int64) for p, (d, _) in zip(p_f, shapes, strict=True)]
    busy = [f for f in range(n) if shapes[f][0] and shapes[f][1] and p_f[f]]
    if not busy:
        return out
    dm = max(shapes[f][0] for f in busy)
    gm = max(shapes[f][1] for f in busy)
    pm = max(p_f[f] for f in busy)
    m = len(busy)
    iou = np.zeros((m, dm, gm), dtype=np.float64)
    thr = np.full((m, pm), np.inf)
    active_in = np.zeros((m, pm, dm), dtype=bool)
    avail = np.zeros((m, pm, gm), dtype=bool)
    reach_rows = []
    for bi, f in enumerate(busy):
        d, g = shapes[f]
        p = p_f[f]
        iou[bi, :d, :g] = ious[f]
        t = np.asarray(thresholds[f], dtype=np.float64).reshape(-1)
        thr[bi, :p] = t
        active_in[bi, :p, :d] = det_in[f]
        avail[bi, :p, :g] = gt_in[f]
        reach_rows.append(np.flatnonzero((iou[bi, :d, :g] >= t.min()).any(axis=1)))
    steps = max(len(r) for r in reach_rows)
    if steps == 0:
        return out
    visit = np.full((m, steps), -1, dtype=np.int64)  # the t-th reaching detection per frame
    for bi, rows in enumerate(reach_rows):
        visit[bi, : len(rows)] = rows
    matched = np.full((m, pm, dm), -1, dtype=np.int64)
    active_at = np.ascontiguousarray(active_in.transpose(0, 2, 1))  # [m, dm, pm]
    frames = np.arange(m)
    fi = np.repeat(frames, pm)  # [m * pm]
    pi = np.tile(np.arange(pm), m)
    for step in range(steps):
        di = visit[:, step]  # [m]
        here = di >= 0
        dsafe = np.where(here, di, 0)
        active = active_at[frames, dsafe] & here[:, None]  # [m, pm]
        masked = np.where(avail, iou[frames, dsafe][:, None, :], -1.0)  # [m, pm, gm]
        best = masked.argmax(axis=2)  # [m, pm]
        value = masked.max(axis=2)  # the value at ``best``
        hit = (active & (value >= thr)).reshape(-1)
        rows_f, rows_p, best_g = fi[hit], pi[hit], best.reshape(-1)[hit]
        matched[rows_f, rows_p, dsafe[rows_f]] = best_g
        avail[rows_f, rows_p, best_g] = False
    for bi, f in enumerate(busy):
        out[f] = matched[bi, : p_f[f], : shapes[f][0]].copy()
    return out


def gt_side_match_batched(
    ious: Sequence[np.ndarray],
    thresholds: Sequence[np.ndarray],
    det_in: Sequence[np.ndarray],
    gt_in: Sequence[np.ndarray],
) -> list[np.ndarray]:
    """DAIR-V2X's matching from the ground-truth side, many frames at once.

    DAIR-V2X ``v2x/v2x_utils/eval_utils.py``, ``compute_type``: each GT in turn (input order)
    takes, among the detections not yet taken (in score order), the one of largest IoU
    ``>=`` the threshold, ties to the **later** one (its test is ``iou >= mx``); that detection
    is a true positive and leaves the pool; every detection left over is a false positive.

    This is ``greedy_match_batched`` with the roles of detections and GT exchanged (GT rows
    visit detection columns, so the same maxima and ``>=`` tests decide) and the detection
    columns reversed (its first index on ties is then the later detection).

    Args:
        ious: per frame ``[D_f, G_f]`` IoU of score-sorted detections with GT.
        thresholds: per frame ``[P_f]`` thresholds of its problems.
        det_in: per frame ``[P_f, D_f]`` bool.
        gt_in: per frame ``[P_f, G_f]`` bool.

    Returns:
        per frame ``[P_f, D_f]`` int64: the GT index each detection was taken by, or -1.
    """
    flipped = greedy_match_batched(
        [np.asarray(iou, dtype=np.float64).T[:, ::-1] for iou in ious],
        thresholds,
        gt_in,
        [np.asarray(m, dtype=bool)[:, ::-1] for m in det_in],
    )
    out = []
    for iou, taken in zip(ious, flipped, strict=True):
        d = np.shape(iou)[0]
        matched = np.full((taken.shape[0], d), -1, dtype=np.int64)
        p, g = np.nonzero(taken >= 0)
        matched[p, d - 1 - taken[p, g]] = g
        out.append(matched)
    return out
