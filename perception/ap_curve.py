"""AP from true/false-positive flags (``ap_from_flags``): the cumulative recall and precision
of the detections in score order and their area, VOC's all-point interpolation (``voc_ap``,
OpenCOOD) or DAIR-V2X's published sum (``dair_ap``); ``v2x.perception.average_precision``'s
module docstring gives both procedures.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from v2x.perception.ap_config import PROCEDURES, _check_sort

__all__ = ["ap_from_flags", "dair_ap", "voc_ap"]


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """VOC all-point interpolated AP (OpenCOOD's ``voc_ap``).

    Args:
        recall: ``[K]`` cumulative recall (non-decreasing).
        precision: ``[K]`` cumulative precision.

    Returns:
        ``(ap, mrec [K + 2], mpre [K + 2])``: mrec = [0, recall, 1]; mpre = [0, precision, 0]
        made non-increasing from the right.
    """
    mrec = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    ap = float(np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx]))
    return ap, mrec, mpre


def dair_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray]:
    """DAIR-V2X's AP (``v2x/v2x_utils/eval_utils.py``, ``compute_ap``), exactly as published.

    Precision is made non-increasing from the right, and AP is the sum of
    ``(recall[i + 1] - recall[i]) * precision[i + 1]`` over the ``i`` where recall changes.
    There is **no (0, 0) start point**: the recall reached at the first detection adds
    nothing (one GT found by one perfect detection: AP 0; VOC's ``voc_ap`` gives 1), and there
    is no appended end point.

    Args:
        recall: ``[K]`` cumulative recall (non-decreasing), detections in global score order.
        precision: ``[K]`` cumulative precision.

    Returns:
        ``(ap, envelope [K])``; ``ap`` is 0 for ``K <= 1``.
    """
    recall = np.asarray(recall, dtype=np.float64)
    envelope = np.maximum.accumulate(np.asarray(precision, dtype=np.float64)[::-1])[::-1]
    index = np.flatnonzero(recall[1:] != recall[:-1])
    ap = float(np.sum((recall[index + 1] - recall[index]) * envelope[index + 1]))
    return ap, envelope


def ap_from_flags(
    tp: np.ndarray,
    scores: np.ndarray,
    num_gt: int,
    sort: str = "per_frame",
    procedure: str = "opencood",
) -> dict[str, Any]:
    """AP from TP flags accumulated over frames (OpenCOOD's ``calculate_ap``, or DAIR-V2X's
    ``compute_ap``).

    Args:
        tp: ``[K]`` bool/int, 1 = true positive, 0 = false positive, in per-frame order (frames in
            order, each frame's detections by descending score; for ``"dair_v2x"`` true
            positives first among a frame's equal scores, as ``compute_type`` lists them).
        scores: ``[K]`` detection scores, same order.
        num_gt: number of (non-ignored) GT boxes.
        sort: ``"per_frame"`` (use the given order) or ``"global"`` (stable sort by score first;
            the only sort of ``"dair_v2x"``).
        procedure: ``"opencood"`` (``voc_ap``) or ``"dair_v2x"`` (``dair_ap``).

    Returns:
        dict with ``ap`` (nan if ``num_gt == 0``), ``recall [K]``, ``precision [K]``,
        ``num_gt``, ``num_det``, ``num_tp``, ``num_fp``, ``sort``.
    """
    tp = np.asarray(tp, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if tp.shape != scores.shape:
        raise ValueError(f"tp {tp.shape} and scores {scores.shape} must have the same length")
    if procedure not in PROCEDURES:
        raise ValueError(f"procedure: expected one of {', '.join(PROCEDURES)}, got {procedure!r}")
    _check_sort(sort, procedure, "sort")
    if sort == "global":
        order = np.argsort(-scores, kind="stable")
        tp = tp[order]
    elif sort != "per_frame":
        raise ValueError(f"sort: expected 'per_frame' or 'global', got {sort!r}")
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1 - tp)
    out: dict[str, Any] = {
        "sort": sort,
        "num_gt": int(num_gt),
        "num_det": int(tp.size),
        "num_tp": int(ctp[-1]) if tp.size else 0,
        "num_fp": int(cfp[-1]) if tp.size else 0,
    }
    if num_gt <= 0:
        out.update(ap=math.nan, recall=np.zeros(0), precision=np.zeros(0))
        return out
    recall = ctp / float(num_gt)
    precision = ctp / np.maximum(ctp + cfp, 1)
    ap = voc_ap(recall, precision)[0] if procedure == "opencood" else dair_ap(recall, precision)[0]
    out.update(ap=ap, recall=recall, precision=precision)
    return out
