"""Detection evaluation reproducing the OpenCOOD procedure, with the field's variants as options
(and DAIR-V2X's official evaluator as ``procedure="dair_v2x"``, below).

The procedure (OpenCOOD ``opencood/utils/eval_utils.py``: ``caluclate_tp_fp``, ``calculate_ap``,
``voc_ap``), applied independently at each IoU threshold (0.3 / 0.5 / 0.7 by default):

1. **Per frame**, detections are sorted by score, descending (stable here; OpenCOOD's
   ``np.argsort`` is not stable, so exact score ties may be ordered differently there).
2. Each detection in turn is compared with the ground truth (GT) boxes **not yet matched in this
   frame**; it is a true positive iff the largest IoU is ``>= threshold`` (OpenCOOD's test is
   ``np.max(ious) < iou_thresh`` -> false positive, so an IoU exactly at the threshold is a TP),
   and the GT with the largest IoU (first in input order on ties, like ``np.argmax``) is removed.
   Otherwise it is a false positive and nothing is removed.
3. TP/FP flags and scores are accumulated over frames. ``sort="per_frame"`` (OpenCOOD's default)
   takes the cumulative sums in frame order (score order inside each frame only);
   ``sort="global"`` (OpenCOOD's ``global_sort_detections``, always on in HEAL/CoAlign) sorts
   all detections of all frames by score first. The two can differ a lot; every AP this module
   reports carries the convention it was computed with.
4. ``recall = cumTP / num_gt``, ``precision = cumTP / (cumTP + cumFP)``; AP is the VOC
   all-point interpolation (``voc_ap``): prepend 0 / append 1 to recall, prepend 0 / append 0
   to precision, make precision non-increasing from the right, and sum
   ``(recall[i] - recall[i-1]) * precision[i]`` over the indices where recall changes.

**DAIR-V2X's official evaluator** (``EvalConfig.procedure="dair_v2x"``; AIR-THU/DAIR-V2X
``v2x/v2x_utils/eval_utils.py``: ``compute_type``, ``compute_ap``, driven by ``Evaluator``
from ``v2x/eval.py``) differs in the matching and in the AP sum; reproduced exactly here:

a. Matching from the **ground-truth side**, per frame: detections are sorted by score
   (stable); each GT in input order takes, among the detections not yet taken, the one of
   largest IoU ``>= threshold``, **ties to the later one** in score order (its test is
   ``iou >= mx``, ``mx`` starting at the threshold): of two identical detections of one object
   the *lower*-scored one is the TP and the higher-scored one a FP. Detections left over are
   false positives. (OpenCOOD's greedy order gives the higher-scored one; results differ
   whenever a detection could serve two GT or a GT two detections.)
b. All detections of all frames are sorted by score, stable, from each frame's list of its
   true positives followed by its false positives; so ``sort`` must be ``"global"`` (other
   values are refused), and among equal scores a frame's TPs come before its FPs.
c. ``recall = cumTP / num_gt``, ``precision = cumTP / rank``, precision made non-increasing
   from the right, and ``AP = sum((recall[i+1] - recall[i]) * precision[i+1])`` over the ``i``
   where recall changes (``dair_ap``). There is **no (0, 0) start point** (and no end point):
   the recall reached at the first detection in score order adds nothing. One GT found by one
   perfect detection gives AP **0** (VOC: 1); two GT found by the two best detections give
   0.5 (VOC: 1). The quirk is DAIR-V2X's published definition and is kept as such.

What ``procedure`` does not change (set them with the other fields): DAIR-V2X evaluates per
super-class (``config.py``: ``car`` = car, van, truck, bus; ``cyclist``; ``pedestrian``; the
rest ignored) with thresholds ``car`` 0.3 / 0.5 / 0.7, ``cyclist`` and ``pedestrian`` 0.25 / 0.5
(``iou_threshold_dict``), in both ``"3d"`` and ``"bev"`` IoU (``box3d_iou``: BEV polygon
intersection x z-overlap over the union volume, the definitions used here); here that is a
``class_groups`` entry per super-class and the thresholds. Its range filter (``RectFilter`` on
``extended_range``, default x in [-10, 79.12], y in [-49.68, 49.68], z in [-3, 1] m in the
vehicle LiDAR frame) keeps a GT or predicted box when *any* of its 8 corners is inside the 3D
range: ``range_mode="any_corner"`` with ``eval_range=(-10, -49.68, -3, 79.12, 49.68, 1)``.
Ignored GT and subsets (below) apply to its matching as to OpenCOOD's: DAIR-V2X has none.
IoU is float64 here; DAIR's polygon clipping returns 0 for boxes that merely touch (an
exception caught there), which no threshold > 0 can tell apart.

Additions, all optional and all reported by name:

* ``iou_mode="3d"``: 3D IoU (BEV intersection x z-overlap / union volume) instead of BEV IoU.
* **Evaluation range** ``eval_range = (x_min, y_min, x_max, y_max)`` in the ego frame (or
  ``(x_min, y_min, z_min, x_max, y_max, z_max)`` in 3D): GT and detections outside are dropped
  before matching. ``range_mode="corners"`` (OpenCOOD: ``mask_boxes_outside_range_numpy`` for
  GT, ``get_mask_for_boxes_within_range_torch`` for detections) keeps a box iff all four BEV
  corners are inside (bounds inclusive; all 8 corners for a 3D range); ``"centre"`` tests the
  centre only; ``"any_corner"`` is DAIR-V2X's ``RectFilter`` (``range_mask``).
* **Classes.** ``class_aware=True``: a detection can only match GT of its own label (the
  ``overall`` AP then pools all classes with class-aware matching); ``False`` (OpenCOOD,
  single-class): labels are ignored for ``overall``. Per-class AP (``class/<name>``) always
  evaluates detections and GT of that class only; ``mAP`` is their mean over classes with GT.
* **Distance bins** ``distance/<lo>-<hi>``: BEV distance of the box centre from the ego origin,
  half-open ``[lo, hi)``; GT *and* detections outside the bin are excluded before matching
  (a bin is a smaller evaluation range, not a filter of the overall matching).
* **Class groups** ``class_groups={"vehicle": (0, 1)}``: ``group/vehicle`` matches detections
  and GT whose labels are in the group class-agnostically among themselves (OpenCOOD's vehicle
  AP: a truck detected as a car counts); ``group/vehicle/<subset>`` does so on each GT subset.
* **Bootstrap intervals** ``compute(bootstrap=N, seed=S, bootstrap_unit=U)``: the resampling
  units are drawn with replacement ``N`` times (each resample in dataset order: per-frame-sorted
  AP depends on the order of the frames) and the AP recomputed on each resample; the interval
  is the percentile interval (2.5 % / 97.5 % for 95 %). Units (``BOOTSTRAP_UNITS``):
  ``"frame"`` resamples frames; ``"sequence"`` (the cluster or block bootstrap) resamples whole
  sequences — the ``sequence`` given to ``add_frame`` (town, scene), each drawn sequence bringing
  all its frames — which is the honest interval when frames of one sequence are correlated (the
  frame bootstrap treats them as independent and is too narrow); ``"auto"`` (the default) is
  ``"sequence"`` when every frame has a sequence, there are two sequences or more and some
  sequence holds several frames, else ``"frame"``. The unit used is reported. With one frame
  per sequence the two units make the same draws and give the same interval. Same seed, same
  interval, in any process. Few sequences give a coarse interval (with m sequences a resample
  is one of at most C(2m−1, m) multisets).
* **Ignored GT and GT subsets.** ``gt_ignore_mask`` (True = ignore, everywhere) and named
  ``gt_subsets`` (True = member; e.g. ``ego_invisible``: objects the ego alone cannot see).
  Convention: ignored GT *take part in the matching exactly like other GT* (so the matching is
  the same for every subset), then a detection matched to an ignored GT is dropped (neither TP
  nor FP), unmatched detections stay false positives, and only non-ignored GT count in
  ``num_gt``. For ``subset/<name>``, GT outside the subset are ignored. This is the
  "don't care" rule of KITTI/nuScenes-style evaluators applied to OpenCOOD's greedy matching:
  a correct detection of a visible object neither helps nor hurts the invisible-subset AP.

IoU is computed in float64 from float64 corners. OpenCOOD builds its corners in float32
(``rotate_points_along_z`` casts to float) and stores the shapely IoUs as float32 before the
comparison, so the two can disagree for IoUs within float32 rounding of a threshold (~1e-7 near
the origin, more far from it). One such case is exact: an IoU of exactly 0.7 is a TP here and a
FP in OpenCOOD under NumPy 1.x (``float32(0.7) = 0.69999999 < 0.7``; NumPy 2 compares in float32
and agrees with us); 0.3 and 0.5 agree. Exact score ties: both of OpenCOOD's sorts
(``np.argsort``) are unstable, ours are stable (frame order, then input order), so AP on
tied scores can differ (measured: up to 0.028 on frame sets with scores rounded to 0.1; none on
tie-free sets, nor with a stable sort in OpenCOOD's code).

No GT in a group: AP is ``nan`` (OpenCOOD and DAIR-V2X would divide by zero). GT but no
detections: AP 0 (under either procedure).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from v2x.perception.ap_match import greedy_match_batched, gt_side_match_batched
from v2x.perception.ap_quantiles import resampled_ap_quantiles
from v2x.perception.ap_resample import flat_rows, resampled_aps
from v2x.perception.boxes import boxes_to_corners_bev, iou_3d, rotated_iou_bev

__all__ = [
    "EvalConfig",
    "APAccumulator",
    "add_frame_sets",
    "average_precision",
    "voc_ap",
    "dair_ap",
    "ap_from_flags",
    "greedy_match",
    "greedy_match_batched",
    "range_mask",
    "format_results",
    "visibility_subsets",
    "BOOTSTRAP_UNITS",
    "PROCEDURES",
]

#: Resampling units of ``APAccumulator.compute(bootstrap_unit=...)`` (module docstring).
BOOTSTRAP_UNITS = ("auto", "sequence", "frame")

SortMode = Literal["per_frame", "global"]

#: Matching and AP procedures of ``EvalConfig.procedure`` (module docstring).
PROCEDURES = ("opencood", "dair_v2x")

#: What each procedure does, as ``EvalConfig.convention()`` reports it (``"procedure"``, ``"ap"``).
_PROCEDURE_CONVENTION = {
    "opencood": {
        "procedure": "opencood-greedy (TP iff max IoU >= thr, best remaining GT removed)",
        "ap": "voc-all-point",
    },
    "dair_v2x": {
        "procedure": "dair-v2x (GT-side: each GT takes the remaining detection of largest IoU "
        ">= thr, ties to the later; the rest FP)",
        "ap": "dair-v2x (sum of d(recall) * precision envelope, no (0, 0) start point)",
    },
}


@dataclass
class EvalConfig:
    """Evaluation settings (usable as a Hydra structured config).

    Attributes:
        iou_thresholds: IoU thresholds, each in (0, 1].
        iou_mode: ``"bev"`` (rotated BEV IoU, OpenCOOD) or ``"3d"``.
        sort: ``"per_frame"`` (OpenCOOD default) or ``"global"`` (HEAL/CoAlign).
        class_aware: whether the ``overall`` matching requires equal labels.
        eval_range: ``(x_min, y_min, x_max, y_max)`` in metres in the ego frame, ``(x_min,
            y_min, z_min, x_max, y_max, z_max)`` (3D), or ``None``.
        range_mode: ``"corners"`` (all corners inside, OpenCOOD), ``"centre"`` or
            ``"any_corner"`` (DAIR-V2X's filter; 3D range only). See ``range_mask``.
        distance_bins: ``[lo, hi)`` bins in metres from the ego origin (BEV distance of centres).
        class_names: label -> name for result keys (labels without a name use the integer).
        per_class: whether to compute ``class/<name>`` groups.
        class_groups: name -> labels matched class-agnostically among themselves, reported as
            ``group/<name>`` (and ``group/<name>/<subset>`` for every GT subset); e.g.
            ``{"vehicle": (0, 1)}``: cars and trucks, OpenCOOD's vehicle AP. ``None``: none.
        procedure: ``"opencood"`` (greedy from the detections' side, VOC AP; the default) or
            ``"dair_v2x"`` (DAIR-V2X's official evaluator: matching from the GT side, its own
            AP sum; needs ``sort="global"``). See the module docstring.
    """

    iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7)
    iou_mode: str = "bev"
    sort: str = "per_frame"
    class_aware: bool = False
    eval_range: Sequence[float] | None = None
    range_mode: str = "corners"
    distance_bins: Sequence[Sequence[float]] = ((0.0, 30.0), (30.0, 50.0), (50.0, 100.0))
    class_names: Mapping[int, str] | None = None
    per_class: bool = True
    class_groups: Mapping[str, Sequence[int]] | None = None
    procedure: str = "opencood"

    def validate(self, name: str = "EvalConfig.{}") -> EvalConfig:
        """Check every field, raising ``ValueError`` naming the field; returns ``self``.

        ``name`` formats a field's name for the messages: the default gives
        ``EvalConfig.sort``; a sweep passes ``"sweep: field 'eval.{}'"``, the key its user types.
        """
        for flag in ("class_aware", "per_class"):
            if not isinstance(getattr(self, flag), bool | np.bool_):
                raise ValueError(
                    f"{name.format(flag)}: expected true or false, got {getattr(self, flag)!r}"
                )
        thr = _floats(name.format("iou_thresholds"), self.iou_thresholds)
        if not thr or any(not (0.0 < t <= 1.0) for t in thr) or len(set(thr)) < len(thr):
            raise ValueError(
                f"{name.format('iou_thresholds')}: expected distinct values in (0, 1], got {thr}"
            )
        if self.iou_mode not in ("bev", "3d"):
            raise ValueError(
                f"{name.format('iou_mode')}: expected 'bev' or '3d', got {self.iou_mode!r}"
            )
        if self.procedure not in PROCEDURES:
            raise ValueError(
                f"{name.format('procedure')}: expected one of {', '.join(PROCEDURES)}, "
                f"got {self.procedure!r}"
            )
        if self.sort not in ("per_frame", "global"):
            raise ValueError(
                f"{name.format('sort')}: expected 'per_frame' or 'global', got {self.sort!r}"
            )
        _check_sort(self.sort, self.procedure, name.format("sort"))
        if self.range_mode not in RANGE_MODES:
            raise ValueError(
                f"{name.format('range_mode')}: expected one of {', '.join(RANGE_MODES)}, "
                f"got {self.range_mode!r}"
            )
        if self.eval_range is not None:
            r = _floats(name.format("eval_range"), self.eval_range)
            axes = len(r) // 2
            if len(r) not in (4, 6) or any(r[i] >= r[i + axes] for i in range(axes)):
                raise ValueError(
                    f"{name.format('eval_range')}: expected (x_min, y_min, x_max, y_max) or "
                    "(x_min, y_min, z_min, x_max, y_max, z_max) with each minimum below its "
                    f"maximum, got {list(self.eval_range)}"
                )
        if self.range_mode == "any_corner" and (self.eval_range is None or len(r) != 6):
            raise ValueError(
                f"{name.format('range_mode')}: 'any_corner' tests the 8 box corners in 3D and "
                "needs a 3D eval_range (x_min, y_min, z_min, x_max, y_max, z_max), got "
                f"{self.eval_range if self.eval_range is None else list(self.eval_range)}"
            )
        for b in self.distance_bins:
            bins = _floats(name.format("distance_bins"), b)
            if len(bins) != 2 or not (0.0 <= bins[0] < bins[1]):
                raise ValueError(
                    f"{name.format('distance_bins')}: expected [lo, hi) pairs with "
                    f"0 <= lo < hi, got {b}"
                )
        for group, labels in (self.class_groups or {}).items():
            if not str(group) or "/" in str(group) or not list(labels):
                raise ValueError(
                    f"{name.format('class_groups')}: expected {{name: [labels...]}} with a "
                    f"non-empty name without '/' and at least one label, got {group!r}: {labels!r}"
                )
        return self

    def convention(self) -> dict[str, Any]:
        """The settings that change AP values, for printing next to every number."""
        return {
            "procedure": _PROCEDURE_CONVENTION[self.procedure]["procedure"],
            "sort": self.sort,
            "iou_mode": self.iou_mode,
            "class_aware": bool(self.class_aware),
            "eval_range": None if self.eval_range is None else [float(v) for v in self.eval_range],
            "range_mode": self.range_mode,
            "ap": _PROCEDURE_CONVENTION[self.procedure]["ap"],
        }


def _check_sort(sort: str, procedure: str, name: str) -> None:
    """``ValueError`` naming ``name`` when ``procedure`` cannot run with ``sort``: DAIR-V2X's
    evaluator sorts every detection of every frame by score (``compute_ap``)."""
    if procedure == "dair_v2x" and sort != "global":
        raise ValueError(
            f"{name}: procedure 'dair_v2x' sorts all detections by score globally (DAIR-V2X "
            f"compute_ap); expected 'global', got {sort!r}"
        )


def _floats(name: str, values: Any) -> list[float]:
    """``values`` as floats; ``ValueError`` naming the field (``name``) and the value."""
    try:
        if isinstance(values, str | bytes):
            raise TypeError
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a list of numbers, got {values!r}") from None


# --------------------------------------------------------------------------------------------
# AP from TP/FP flags
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Matching and filtering
# --------------------------------------------------------------------------------------------


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


RANGE_MODES = ("corners", "centre", "any_corner")


def range_mask(
    boxes: torch.Tensor, eval_range: Sequence[float], mode: str = "corners"
) -> torch.Tensor:
    """Boxes inside a BEV or 3D range (bounds inclusive, but ``"any_corner"``'s ``z_max``).

    Args:
        boxes: ``[N, 7]`` boxes in the ego frame.
        eval_range: ``(x_min, y_min, x_max, y_max)`` in metres (BEV), or ``(x_min, y_min,
            z_min, x_max, y_max, z_max)`` (3D: the order of OpenCOOD's ``cav_lidar_range`` and
            DAIR-V2X's ``extended_range``).
        mode: ``"corners"``: every corner inside (the 4 BEV corners, OpenCOOD; the 8 box
            corners for a 3D range); ``"centre"``: the centre; ``"any_corner"`` (3D range only):
            at least one of the 8 corners with ``x_min <= x <= x_max``, ``y_min <= y <= y_max``
            and ``z_min <= z < z_max`` (DAIR-V2X's ``RectFilter``: a corner is in its range box
            when it lies above the bottom face's plane and not above the top face's).

    Returns:
        ``[N]`` bool.
    """
    bounds = [float(v) for v in eval_range]
    axes = len(bounds) // 2
    if mode == "centre":
        pts = boxes[:, None, :axes]
    else:
        pts = boxes_to_corners_bev(boxes)
        if axes == 3:  # the 4 BEV corners at the bottom, then at the top: [N, 8, 3]
            half = 0.5 * boxes[:, None, 5:6].expand(-1, 4, 1)
            z = boxes[:, None, 2:3].expand(-1, 4, 1)
            pts = torch.cat([torch.cat([pts, z - half], -1), torch.cat([pts, z + half], -1)], 1)
    inside = torch.ones(pts.shape[:-1], dtype=torch.bool, device=pts.device)
    for axis in range(axes):
        low, high, values = bounds[axis], bounds[axis + axes], pts[..., axis]
        below_top = values < high if mode == "any_corner" and axis == 2 else values <= high
        inside &= (values >= low) & below_top
    return inside.any(dim=-1) if mode == "any_corner" else inside.all(dim=-1)


def _flags(
    matched: np.ndarray,
    det_mask: np.ndarray,
    scores: np.ndarray,
    ignore: np.ndarray,
    tp_first: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per threshold, the int8 TP flags and the scores of a group's counted detections:
    those in ``det_mask [D]`` not matched (``matched [T, D]``: GT index or -1) to a GT that
    ``ignore [G]`` marks; a detection matched to an ignored GT is neither TP nor FP.

    In score order (``scores`` descending); ``tp_first``: true positives before false
    positives of equal score, as DAIR-V2X's ``compute_type`` lists a frame's detections (its
    true positives, then the rest), which its stable global sort keeps."""
    hit = matched >= 0
    counted = (
        det_mask[None, :] & ~(hit & ignore[np.where(hit, matched, 0)])
        if ignore.size
        else np.broadcast_to(det_mask[None, :], hit.shape)
    )
    tp = [hit[ti][counted[ti]].astype(np.int8) for ti in range(hit.shape[0])]
    kept = [scores[counted[ti]] for ti in range(hit.shape[0])]
    if tp_first:
        order = [np.lexsort((1 - f, -s)) for f, s in zip(tp, kept, strict=True)]
        tp = [f[o] for f, o in zip(tp, order, strict=True)]
        kept = [s[o] for s, o in zip(kept, order, strict=True)]
    return tp, kept


def _gt_in_range(gt_boxes: torch.Tensor, eval_range: Sequence[float], mode: str) -> torch.Tensor:
    """``range_mask`` of a frame's GT boxes, computed once per distinct CPU box set (every
    condition of a sweep scores the same GT): ``[G]`` bool."""
    if gt_boxes.device.type != "cpu" or not gt_boxes.is_contiguous() or not gt_boxes.numel():
        return range_mask(gt_boxes, eval_range, mode)  # the same kernels as a cached call
    key = gt_boxes.numpy().tobytes()
    return _cached_range_mask(key, tuple(float(v) for v in eval_range), mode)


@functools.lru_cache(maxsize=4096)
def _cached_range_mask(boxes: bytes, eval_range: tuple[float, ...], mode: str) -> torch.Tensor:
    """``range_mask`` of ``[G, 7]`` float64 boxes given by their bytes (a read-only result)."""
    data = torch.frombuffer(bytearray(boxes), dtype=torch.float64).reshape(-1, 7)
    return range_mask(data, eval_range, mode)


def _as_tensor(x: Any, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except Exception as exc:  # noqa: BLE001 - re-raised with the field name
            raise ValueError(f"{name}: cannot convert {type(x).__name__} to a tensor") from exc
    return t if dtype is None else t.to(dtype)


def _host_array(x: Any, name: str) -> np.ndarray:
    """``_as_tensor(x, name).cpu().numpy()``, with no torch call for a numeric numpy array
    (the same array: what that round trip returns)."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        return x
    return _as_tensor(x, name).cpu().numpy()


def _distances(boxes: torch.Tensor) -> np.ndarray:
    """``[N]`` float64 BEV distance of ``[N, 7]`` box centres from the origin (``torch.hypot``,
    whose CPU kernel this keeps: numpy's may differ in the last bit)."""
    if boxes.device.type == "cpu" and boxes.dtype == torch.float64:
        return torch.hypot(boxes[:, 0], boxes[:, 1]).numpy()
    return torch.hypot(boxes[:, 0], boxes[:, 1]).double().cpu().numpy()


# --------------------------------------------------------------------------------------------
# Accumulator
# --------------------------------------------------------------------------------------------


@dataclass
class _GroupStore:
    """Per-threshold TP flags, scores and GT counts of one result group."""

    tp: list[list[np.ndarray]] = field(default_factory=list)  # [threshold][frame] -> [k] int8
    scores: list[list[np.ndarray]] = field(default_factory=list)
    num_gt: int = 0
    frame_gt: list[int] = field(default_factory=list)  # [record] -> non-ignored GT count
    frame_index: list[int] = field(default_factory=list)  # [record] -> accumulator frame index

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with each threshold's records as one array and their lengths
        (``_packed``): a sweep sends its cells' accumulators between processes, and thousands
        of small arrays pickle one by one (≈ 40 ms per accumulator of 128 frames, with the
        sending process's GIL held) where one array is a copy."""
        return {
            **self.__dict__,
            "tp": [_packed(parts) for parts in self.tp],
            "scores": [_packed(parts) for parts in self.scores],
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """The records as they were: the same values, dtypes and lengths (views of one array
        per threshold; records are never modified, ``_record``)."""
        self.__dict__.update(
            {
                **state,
                "tp": [_unpacked(parts) for parts in state["tp"]],
                "scores": [_unpacked(parts) for parts in state["scores"]],
            }
        )


def _packed(parts: list[np.ndarray]) -> Any:
    """``(values, lengths)`` of 1-D arrays of one dtype (``parts`` itself otherwise)."""
    if not parts or any(a.ndim != 1 or a.dtype != parts[0].dtype for a in parts):
        return parts
    return np.concatenate(parts), np.array([len(a) for a in parts], dtype=np.int64)


def _unpacked(packed: Any) -> list[np.ndarray]:
    """The arrays ``_packed`` joined, as views of its one array (what ``np.split`` returns,
    whose Python loop took 12 µs per array: unpickling a 512-frame group's partial
    accumulators when a sweep joins them took 0.32–0.40 s with it, 0.23–0.25 s sliced here,
    on the 2-core VM)."""
    if isinstance(packed, list):
        return packed
    values, lengths = packed
    ends = list(itertools.accumulate(lengths.tolist()))
    return [values[a:b] for a, b in zip([0, *ends[:-1]], ends)]


@dataclass
class _Frame:
    """One validated, range-filtered frame with detections in descending score order."""

    det_boxes: torch.Tensor  # [D, 7] float64
    gt_boxes: torch.Tensor  # [G, 7] float64
    scores: np.ndarray  # [D]
    det_lab: np.ndarray  # [D] int64
    gt_lab: np.ndarray  # [G] int64
    ignore: np.ndarray  # [G] bool
    subsets: dict[str, np.ndarray]  # name -> [G] bool
    labelled: bool = False  # labels were given
    sequence: Any = None  # the frame's sequence (town, scene: the bootstrap unit), or None


def _padding(batch: int, n: int, x_m: float, device: torch.device) -> torch.Tensor:
    """``[batch, n, 7]`` unit boxes at ``(x_m, 0, 0)``."""
    pad = torch.zeros(batch, n, 7, dtype=torch.float64, device=device)
    pad[..., 0] = x_m
    pad[..., 3:6] = 1.0
    return pad


class APAccumulator:
    """Accumulates frames and computes OpenCOOD-style AP (see the module docstring).

    Groups in the result: ``overall``; ``class/<name>`` (if ``per_class`` and labels are given:
    give labels for every frame or for none); ``group/<name>`` and ``group/<name>/<subset>``
    for every ``class_groups`` entry (labels matched class-agnostically within the group);
    ``distance/<lo>-<hi>`` per bin; ``subset/<name>`` for every ``gt_subsets`` key.

    Example:
        >>> acc = APAccumulator(EvalConfig(sort="global"))
        >>> acc.add_frame(det_boxes, det_scores, None, gt_boxes, None)  # doctest: +SKIP
        >>> print(format_results(acc.compute()))  # doctest: +SKIP
    """

    def __init__(self, config: EvalConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = EvalConfig(**overrides)
        elif overrides:
            raise ValueError("APAccumulator: pass either a config or keyword overrides, not both")
        self.config = config.validate()
        self.thresholds = np.array([float(t) for t in config.iou_thresholds], dtype=np.float64)
        self._groups: dict[str, _GroupStore] = {}
        self._subset_names: tuple[str, ...] | None = None
        self._classes: set[int] = set()
        self._labelled: bool | None = None  # whether frames give labels (else no class/*)
        self.num_frames = 0
        self._sequences: list[Any] = []  # [frame] -> sequence id (None: not given)

    # ----------------------------------------------------------------------------------------
    def _store(self, name: str) -> _GroupStore:
        store = self._groups.get(name)
        if store is None:
            t = len(self.thresholds)
            store = _GroupStore(tp=[[] for _ in range(t)], scores=[[] for _ in range(t)])
            self._groups[name] = store
        return store

    def _class_name(self, label: int) -> str:
        names = self.config.class_names
        return str(names[label]) if names is not None and label in names else str(label)

    def add_frame(
        self,
        det_boxes: torch.Tensor | np.ndarray,
        det_scores: torch.Tensor | np.ndarray,
        det_labels: torch.Tensor | np.ndarray | None,
        gt_boxes: torch.Tensor | np.ndarray,
        gt_labels: torch.Tensor | np.ndarray | None = None,
        gt_ignore_mask: torch.Tensor | np.ndarray | None = None,
        gt_subsets: Mapping[str, torch.Tensor | np.ndarray] | None = None,
        sequence: Any = None,
    ) -> None:
        """Add one frame (all boxes in the ego frame).

        Args:
            det_boxes: ``[D, 7]`` detections (x, y, z, l, w, h, yaw).
            det_scores: ``[D]`` confidences.
            det_labels: ``[D]`` integer classes, or ``None`` (all class 0).
            gt_boxes: ``[G, 7]`` ground truth.
            gt_labels: ``[G]`` integer classes, or ``None`` (all class 0).
            gt_ignore_mask: ``[G]`` bool, True = ignored GT ("don't care"), or ``None``.
            gt_subsets: name -> ``[G]`` bool membership (e.g. ``{"ego_invisible": mask}``); the
                same names must be given for every frame.
            sequence: the frame's sequence (its town or scene, any hashable id; frames of one
                sequence are correlated): the unit of ``compute(bootstrap_unit="sequence")``.
        """
        frame = self._prepare(
            det_boxes, det_scores, det_labels, gt_boxes, gt_labels, gt_ignore_mask, gt_subsets
        )
        frame.sequence = sequence
        self._match(frame, self._iou([frame])[0])

    def add_frames(
        self,
        frames: Iterable[Mapping[str, Any]],
        chunk: int = 256,
        replicas: Sequence[APAccumulator] = (),
    ) -> None:
        """Add many frames; IoUs of up to ``chunk`` frames are computed in one batched call.

        Args:
            frames: each a mapping with :meth:`add_frame`'s argument names as keys
                (``det_boxes``, ``det_scores``, ``gt_boxes`` required; the rest optional).
            chunk: frames per batched IoU call.
            replicas: other accumulators with the same configuration that receive the very
                same frames (e.g. sweep conditions whose detections are identical): the frames
                are validated, range-filtered, sorted and matched once and recorded in each.

        Results are identical to calling :meth:`add_frame` on each frame in order, on this
        accumulator and on every replica.
        """
        targets = [self, *replicas]
        self._check_replicas(replicas)
        frames = list(frames)
        pending: list[_Frame] = []
        for item, keep_d in zip(frames, self._det_range_masks(frames), strict=True):
            pending.append(self._prepare_item(item, replicas, keep_d))
            if len(pending) >= chunk:
                self._flush(pending, targets)
                pending = []
        self._flush(pending, targets)

    def _check_replicas(self, replicas: Sequence[APAccumulator]) -> None:
        for acc in replicas:
            if acc is self or not isinstance(acc, APAccumulator):
                raise ValueError("add_frames: 'replicas' must be other APAccumulator objects")
            if acc.config != self.config:
                raise ValueError(
                    "add_frames: every replica needs the same EvalConfig as the accumulator"
                )

    def _prepare_item(
        self,
        item: Mapping[str, Any],
        replicas: Sequence[APAccumulator] = (),
        keep_d: torch.Tensor | None = None,
    ) -> _Frame:
        """``_prepare`` of one ``add_frames`` item, admitted in every replica (``keep_d``: its
        detections' range mask, from ``_det_range_masks``)."""
        frame = self._prepare(
            item["det_boxes"],
            item["det_scores"],
            item.get("det_labels"),
            item["gt_boxes"],
            item.get("gt_labels"),
            item.get("gt_ignore_mask"),
            item.get("gt_subsets"),
            keep_d=keep_d,
        )
        frame.sequence = item.get("sequence")
        for acc in replicas:
            acc._admit(frame)
        return frame

    def _det_range_masks(self, items: Sequence[Mapping[str, Any]]) -> list[torch.Tensor | None]:
        """Each item's detection ``range_mask`` from one call on all of them (an element-wise
        test: what ``_prepare`` computes frame by frame), or ``None`` per item where there is no
        range or an item is not a CPU float ``[D, 7]`` tensor or array (``_prepare`` then
        validates and computes it)."""
        cfg = self.config
        none: list[torch.Tensor | None] = [None] * len(items)
        if cfg.eval_range is None or len(items) < 2:
            return none
        boxes = []
        for item in items:
            b = item["det_boxes"]
            if isinstance(b, np.ndarray) and b.dtype.kind == "f":
                b = torch.from_numpy(b)
            ok = isinstance(b, torch.Tensor) and b.ndim == 2 and b.shape[1] == 7
            if not ok or not b.is_floating_point() or b.device.type != "cpu":
                return none
            boxes.append(b.detach().to(torch.float64))
        mask = range_mask(torch.cat(boxes), cfg.eval_range, cfg.range_mode)
        return list(mask.split([b.shape[0] for b in boxes]))

    def _admit(self, frame: _Frame) -> None:
        """The state checks and updates ``_prepare`` makes, for a frame prepared elsewhere."""
        if self._labelled is None:
            self._labelled = frame.labelled
        elif frame.labelled != self._labelled:
            raise ValueError(
                "det_labels/gt_labels: give labels for every frame or for none "
                f"(earlier frames: {'with' if self._labelled else 'without'} labels)"
            )
        names = tuple(sorted(frame.subsets))
        self._admit_subset_names(names)
        self._classes.update(int(c) for c in np.unique(frame.gt_lab))
        self._classes.update(int(c) for c in np.unique(frame.det_lab))

    def _flush(self, frames: list[_Frame], targets: Sequence[APAccumulator] | None = None) -> None:
        self._match_frames(frames, self._iou(frames), targets)

    def _iou(self, frames: list[_Frame]) -> list[np.ndarray]:
        """``[D_f, G_f]`` float64 IoU per frame, from one batched (padded) IoU call."""
        out = [np.zeros((f.det_boxes.shape[0], f.gt_boxes.shape[0])) for f in frames]
        busy = [i for i, f in enumerate(frames) if f.det_boxes.shape[0] and f.gt_boxes.shape[0]]
        if not busy:
            return out
        iou_fn = rotated_iou_bev if self.config.iou_mode == "bev" else iou_3d
        if len(busy) == 1:
            f = frames[busy[0]]
            out[busy[0]] = iou_fn(f.det_boxes, f.gt_boxes).cpu().numpy()
            return out
        device = frames[busy[0]].det_boxes.device
        dmax = max(frames[i].det_boxes.shape[0] for i in busy)
        gmax = max(frames[i].gt_boxes.shape[0] for i in busy)
        # padding: unit boxes far away on opposite sides, never candidates for any pair
        on_host = all(
            t.device.type == "cpu" for i in busy for t in (frames[i].det_boxes, frames[i].gt_boxes)
        )
        if on_host:  # filled in numpy (plain copies, no torch call per frame)
            det_np = _padding(len(busy), dmax, 1e7, device).numpy()
            gt_np = _padding(len(busy), gmax, -1e7, device).numpy()
            for k, i in enumerate(busy):
                det_np[k, : frames[i].det_boxes.shape[0]] = frames[i].det_boxes.numpy()
                gt_np[k, : frames[i].gt_boxes.shape[0]] = frames[i].gt_boxes.numpy()
            det, gt = torch.from_numpy(det_np), torch.from_numpy(gt_np)
        else:
            det = _padding(len(busy), dmax, 1e7, device)
            gt = _padding(len(busy), gmax, -1e7, device)
            for k, i in enumerate(busy):
                det[k, : frames[i].det_boxes.shape[0]] = frames[i].det_boxes.to(device)
                gt[k, : frames[i].gt_boxes.shape[0]] = frames[i].gt_boxes.to(device)
        iou = iou_fn(det, gt).cpu().numpy()
        for k, i in enumerate(busy):
            out[i] = iou[k, : frames[i].det_boxes.shape[0], : frames[i].gt_boxes.shape[0]]
        return out

    def _prepare(
        self,
        det_boxes: torch.Tensor | np.ndarray,
        det_scores: torch.Tensor | np.ndarray,
        det_labels: torch.Tensor | np.ndarray | None,
        gt_boxes: torch.Tensor | np.ndarray,
        gt_labels: torch.Tensor | np.ndarray | None = None,
        gt_ignore_mask: torch.Tensor | np.ndarray | None = None,
        gt_subsets: Mapping[str, torch.Tensor | np.ndarray] | None = None,
        keep_d: torch.Tensor | None = None,
    ) -> _Frame:
        """Validate one frame, apply the range filter and sort detections by score
        (``keep_d``: the detections' ``range_mask``, when already computed)."""
        cfg = self.config
        numeric = (det_boxes, det_scores, gt_boxes)
        if all(isinstance(x, np.ndarray) and x.dtype.kind in "biuf" for x in numeric):
            # numpy in, numpy through (no torch call): the same tests and values
            return self._prepare_host(
                det_boxes, det_scores, det_labels, gt_boxes, gt_labels, gt_ignore_mask,
                gt_subsets, keep_d,
            )  # fmt: skip
        det_boxes = _as_tensor(det_boxes, "det_boxes")
        gt_boxes = _as_tensor(gt_boxes, "gt_boxes")
        if det_boxes.numel() == 0:
            det_boxes = det_boxes.reshape(0, 7)
        if gt_boxes.numel() == 0:
            gt_boxes = gt_boxes.reshape(0, 7)
        if det_boxes.ndim != 2 or det_boxes.shape[1] != 7:
            raise ValueError(f"det_boxes: expected [D, 7], got {tuple(det_boxes.shape)}")
        if gt_boxes.ndim != 2 or gt_boxes.shape[1] != 7:
            raise ValueError(f"gt_boxes: expected [G, 7], got {tuple(gt_boxes.shape)}")
        d, g = det_boxes.shape[0], gt_boxes.shape[0]
        # IoU in float64 (like shapely), so TP decisions at the threshold do not depend on the
        # detector's dtype
        det_boxes = det_boxes.to(torch.float64)
        gt_boxes = gt_boxes.to(dtype=torch.float64, device=det_boxes.device)
        scores = _as_tensor(det_scores, "det_scores", torch.float64).reshape(-1).cpu()
        if scores.shape[0] != d:
            raise ValueError(f"det_scores: expected [D] = [{d}], got {tuple(scores.shape)}")
        on_host = det_boxes.device.type == "cpu"  # then numpy: the same tests, fewer torch calls
        det_np = det_boxes.numpy() if on_host else None
        gt_np = gt_boxes.numpy() if on_host else None
        scores_np = scores.numpy()
        if on_host:
            finite = np.isfinite(det_np).all() and np.isfinite(scores_np).all()
        else:
            finite = torch.isfinite(det_boxes).all() and torch.isfinite(scores).all()
        if not finite:
            raise ValueError("det_boxes/det_scores: contain non-finite values")
        if not (np.isfinite(gt_np).all() if on_host else torch.isfinite(gt_boxes).all()):
            raise ValueError("gt_boxes: contains non-finite values")
        labelled, det_lab, gt_lab, ignore, subsets = self._annotations(
            det_labels, gt_labels, gt_ignore_mask, gt_subsets, d, g
        )

        # evaluation range: drop boxes outside before anything else
        if cfg.eval_range is not None:
            if keep_d is None:
                keep_d = range_mask(det_boxes, cfg.eval_range, cfg.range_mode)
            keep_g = _gt_in_range(gt_boxes, cfg.eval_range, cfg.range_mode)
            keep_d_np, keep_g = keep_d.cpu().numpy(), keep_g.cpu().numpy()
            if on_host:
                det_np, gt_np = det_np[keep_d_np], gt_np[keep_g]
            else:
                det_boxes, gt_boxes = det_boxes[keep_d], gt_boxes[keep_g]
            scores_np, det_lab = scores_np[keep_d_np], det_lab[keep_d_np]
            gt_lab, ignore = gt_lab[keep_g], ignore[keep_g]
            subsets = {k: v[keep_g] for k, v in subsets.items()}

        # per-frame score order (stable, descending; the order of torch's stable argsort)
        order = np.argsort(-scores_np, kind="stable")
        scores_np = scores_np[order]
        if on_host:
            det_boxes, gt_boxes = torch.from_numpy(det_np[order]), torch.from_numpy(gt_np)
        else:
            det_boxes = det_boxes[torch.from_numpy(order).to(det_boxes.device)]
        det_lab = det_lab[order]
        self._classes.update(gt_lab.tolist())  # int64 arrays: Python ints
        self._classes.update(det_lab.tolist())

        return _Frame(det_boxes, gt_boxes, scores_np, det_lab, gt_lab, ignore, subsets, labelled)

    def _annotations(
        self,
        det_labels: Any,
        gt_labels: Any,
        gt_ignore_mask: Any,
        gt_subsets: Mapping[str, Any] | None,
        d: int,
        g: int,
    ) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """A frame's labels, ignore mask and GT subsets, checked (``D`` detections, ``G`` GT
        boxes): ``(labelled, det_labels [D], gt_labels [G], ignore [G] bool, subsets)``; labels
        must be given for every frame or for none."""
        labelled = det_labels is not None or gt_labels is not None
        if self._labelled is None:
            self._labelled = labelled
        elif labelled != self._labelled:
            raise ValueError(
                "det_labels/gt_labels: give labels for every frame or for none "
                f"(earlier frames: {'with' if self._labelled else 'without'} labels)"
            )
        det_lab = self._labels(det_labels, d, "det_labels")
        gt_lab = self._labels(gt_labels, g, "gt_labels")
        ignore = np.zeros(g, dtype=bool)
        if gt_ignore_mask is not None:
            ignore = _host_array(gt_ignore_mask, "gt_ignore_mask").astype(bool)
            if ignore.shape != (g,):
                raise ValueError(f"gt_ignore_mask: expected [G] = [{g}], got {ignore.shape}")
        return labelled, det_lab, gt_lab, ignore, self._subsets(gt_subsets, g)

    def _prepare_host(
        self,
        det_boxes: np.ndarray,
        det_scores: np.ndarray,
        det_labels: Any,
        gt_boxes: np.ndarray,
        gt_labels: Any,
        gt_ignore_mask: Any,
        gt_subsets: Mapping[str, Any] | None,
        keep_d: torch.Tensor | np.ndarray | None,
    ) -> _Frame:
        """``_prepare`` of numeric numpy boxes and scores, in numpy: the same checks in the
        same order with the same messages, the same float64 values, range masks (torch's,
        ``range_mask``) and stable score order."""
        cfg = self.config
        if det_boxes.size == 0:
            det_boxes = det_boxes.reshape(0, 7)
        if gt_boxes.size == 0:
            gt_boxes = gt_boxes.reshape(0, 7)
        if det_boxes.ndim != 2 or det_boxes.shape[1] != 7:
            raise ValueError(f"det_boxes: expected [D, 7], got {tuple(det_boxes.shape)}")
        if gt_boxes.ndim != 2 or gt_boxes.shape[1] != 7:
            raise ValueError(f"gt_boxes: expected [G, 7], got {tuple(gt_boxes.shape)}")
        d, g = det_boxes.shape[0], gt_boxes.shape[0]
        det_np = det_boxes.astype(np.float64, copy=False)
        gt_np = gt_boxes.astype(np.float64, copy=False)
        scores_np = det_scores.astype(np.float64, copy=False).reshape(-1)
        if scores_np.shape[0] != d:
            raise ValueError(f"det_scores: expected [D] = [{d}], got {tuple(scores_np.shape)}")
        if not (np.isfinite(det_np).all() and np.isfinite(scores_np).all()):
            raise ValueError("det_boxes/det_scores: contain non-finite values")
        if not np.isfinite(gt_np).all():
            raise ValueError("gt_boxes: contains non-finite values")
        labelled, det_lab, gt_lab, ignore, subsets = self._annotations(
            det_labels, gt_labels, gt_ignore_mask, gt_subsets, d, g
        )
        if cfg.eval_range is not None:
            if keep_d is None:
                keep_d = range_mask(torch.from_numpy(det_np), cfg.eval_range, cfg.range_mode)
            keep_d_np = keep_d.numpy() if isinstance(keep_d, torch.Tensor) else keep_d
            if g:  # the cached mask of this GT set (every condition scores the same GT)
                rng = tuple(float(v) for v in cfg.eval_range)
                key = np.ascontiguousarray(gt_np).tobytes()
                keep_g = _cached_range_mask(key, rng, cfg.range_mode).numpy()
            else:
                keep_g = np.zeros(0, dtype=bool)
            det_np, gt_np = det_np[keep_d_np], gt_np[keep_g]
            scores_np, det_lab = scores_np[keep_d_np], det_lab[keep_d_np]
            gt_lab, ignore = gt_lab[keep_g], ignore[keep_g]
            subsets = {k: v[keep_g] for k, v in subsets.items()}
        order = np.argsort(-scores_np, kind="stable")
        scores_np, det_lab = scores_np[order], det_lab[order]
        det_t = torch.from_numpy(np.ascontiguousarray(det_np[order]))
        gt_t = torch.from_numpy(np.ascontiguousarray(gt_np))
        self._classes.update(gt_lab.tolist())
        self._classes.update(det_lab.tolist())
        return _Frame(det_t, gt_t, scores_np, det_lab, gt_lab, ignore, subsets, labelled)

    def _match(
        self, frame: _Frame, iou: np.ndarray, targets: Sequence[APAccumulator] | None = None
    ) -> None:
        """Greedy matching of one prepared frame for every group and threshold; records flags
        in ``targets`` (default: this accumulator)."""
        self._match_frames([frame], [iou], targets)

    def _match_frames(
        self,
        frames: Sequence[_Frame],
        ious: Sequence[np.ndarray],
        targets: Sequence[APAccumulator] | None = None,
    ) -> None:
        """``_match`` of each frame in order, the greedy matching of all of them in one
        ``greedy_match_batched`` call (frames are matched independently; records are made in
        frame order)."""
        setups = [self._match_problems(frame, iou) for frame, iou in zip(frames, ious, strict=True)]
        if not setups:
            return
        match = (
            greedy_match_batched if self.config.procedure == "opencood" else gt_side_match_batched
        )
        matched = match(*zip(*(setup[1] for setup in setups), strict=True))
        for frame, (groups, _), m in zip(frames, setups, matched, strict=True):
            self._record_frame(frame, groups, m, targets)

    def _match_problems(
        self, frame: _Frame, iou: np.ndarray
    ) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], tuple]:
        """A frame's matching problems: its groups ``(name, det mask [D], gt mask [G])`` and
        ``greedy_match``'s arguments for every group and threshold."""
        cfg = self.config
        det_boxes, gt_boxes = frame.det_boxes, frame.gt_boxes
        det_lab, gt_lab = frame.det_lab, frame.gt_lab
        d, g = det_boxes.shape[0], gt_boxes.shape[0]
        det_dist, gt_dist = _distances(det_boxes), _distances(gt_boxes)

        # groups of independent matching problems: (name, det mask [D], gt mask [G]). A class
        # with no box in this frame has empty masks: it is matched nowhere and recorded empty.
        groups: list[tuple[str, np.ndarray, np.ndarray]] = []
        all_d, all_g = np.ones(d, dtype=bool), np.ones(g, dtype=bool)
        groups.append(("overall", all_d, all_g))
        frame_classes = sorted({int(c) for c in det_lab} | {int(c) for c in gt_lab})
        if cfg.per_class and frame.labelled:
            for c in frame_classes:
                groups.append((f"class/{c}", det_lab == c, gt_lab == c))
        for gname, glabels in (cfg.class_groups or {}).items():
            members = np.asarray(list(glabels), dtype=np.int64)
            groups.append((f"group/{gname}", np.isin(det_lab, members), np.isin(gt_lab, members)))
        for lo, hi in cfg.distance_bins:
            lo, hi = float(lo), float(hi)
            groups.append(
                (
                    f"distance/{lo:g}-{hi:g}",
                    (det_dist >= lo) & (det_dist < hi),
                    (gt_dist >= lo) & (gt_dist < hi),
                )
            )
        match_iou = iou
        if cfg.class_aware and d and g:
            match_iou = np.where(det_lab[:, None] == gt_lab[None, :], iou, 0.0)

        t = len(self.thresholds)
        n_groups = len(groups)
        det_in = np.repeat(np.stack([gm[1] for gm in groups]), t, axis=0)  # [n_groups * t, d]
        gt_in = np.repeat(np.stack([gm[2] for gm in groups]), t, axis=0)
        thr = np.tile(self.thresholds, n_groups)
        # class groups already restrict labels, so class-aware IoU is equivalent for them
        return groups, (match_iou, thr, det_in, gt_in)

    def _record_frame(
        self,
        frame: _Frame,
        groups: list[tuple[str, np.ndarray, np.ndarray]],
        matched: np.ndarray,
        targets: Sequence[APAccumulator] | None,
    ) -> None:
        """Record a matched frame's flags (``matched [n_groups * T, D]``) in ``targets``."""
        cfg = self.config
        scores_np, ignore, subsets = frame.scores, frame.ignore, frame.subsets
        d = frame.det_boxes.shape[0]
        all_d = np.ones(d, dtype=bool)
        matched = matched.reshape(len(groups), len(self.thresholds), d)
        found = {
            name: (matched[gi], dmask, gmask) for gi, (name, dmask, gmask) in enumerate(groups)
        }
        none_d = np.zeros(d, dtype=bool)
        flags: dict[str, tuple[int, list[np.ndarray], list[np.ndarray]]] = {}
        tp_first = cfg.procedure == "dair_v2x"

        def record(
            acc: APAccumulator, name: str, m: np.ndarray, dmask: np.ndarray, n_gt: int,
            ign: np.ndarray,
        ) -> None:  # fmt: skip
            """One group's record of this frame, computed once and stored in every target."""
            if name not in flags:
                flags[name] = (n_gt, *_flags(m, dmask, scores_np, ign, tp_first))
            acc._record(name, *flags[name])

        for acc in [self] if targets is None else targets:
            record(acc, "overall", matched[0], all_d, int((~ignore).sum()), ignore)
            if cfg.per_class and acc._labelled:
                # every class seen so far gets its group (classes absent here: empty records)
                for c in sorted(acc._classes):
                    hit = found.get(f"class/{c}")
                    m, dmask, gmask = hit if hit else (matched[0], none_d, None)
                    n_gt = int((gmask & ~ignore).sum()) if hit else 0
                    record(acc, f"class/{acc._class_name(c)}", m, dmask, n_gt, ignore)
            for name, _, gmask in groups:
                if name.startswith(("distance/", "group/")):
                    m, dmask, _ = found[name]
                    record(acc, name, m, dmask, int((gmask & ~ignore).sum()), ignore)
                if name.startswith("group/"):
                    m, dmask, _ = found[name]
                    for sname, member in subsets.items():
                        sub_ignore = ignore | ~member
                        record(
                            acc, f"{name}/{sname}", m, dmask, int((gmask & ~sub_ignore).sum()),
                            sub_ignore,
                        )  # fmt: skip
            for sname, member in subsets.items():
                sub_ignore = ignore | ~member
                record(
                    acc, f"subset/{sname}", matched[0], all_d, int((~sub_ignore).sum()),
                    sub_ignore,
                )  # fmt: skip
            acc._sequences.append(frame.sequence)
            acc.num_frames += 1

    def extend(self, other: APAccumulator) -> None:
        """Append ``other``'s frames after this accumulator's: the state that adding this one's
        frames and then ``other``'s (each set in one ``add_frames`` call) to one accumulator
        gives: the same records, state digest and results (tested). E.g. the partial
        accumulators of consecutive frame batches, filled in different processes, joined in
        batch order. A class this accumulator has seen gets its (empty) record on each of
        ``other``'s frames where ``other`` has none, as ``add_frames`` records every class seen
        so far. ``other`` is not changed; its record arrays are shared (never modified).

        Raises ``ValueError`` for another ``EvalConfig``, or frames with labels in one and
        without in the other, or other ``gt_subsets`` names (as ``add_frame`` would)."""
        if not isinstance(other, APAccumulator) or other.config != self.config:
            raise ValueError(
                "APAccumulator.extend: 'other' must be an APAccumulator with the same EvalConfig"
            )
        if other.num_frames == 0:
            return
        if self._labelled is not None and other._labelled != self._labelled:
            raise ValueError(
                "det_labels/gt_labels: give labels for every frame or for none "
                f"(earlier frames: {'with' if self._labelled else 'without'} labels)"
            )
        self._admit_subset_names(other._subset_names or ())
        known = set()  # this one's class groups: recorded on every later frame
        if self.config.per_class and self._labelled:
            known = {f"class/{self._class_name(c)}" for c in self._classes}
        self._labelled = other._labelled
        self._classes |= other._classes
        offset = self.num_frames
        for name in [*other._groups, *sorted(known - set(other._groups))]:
            theirs = other._groups.get(name)
            if name in known:
                theirs = other._every_frame(theirs)
            mine = self._store(name)
            mine.num_gt += theirs.num_gt
            mine.frame_gt += theirs.frame_gt
            mine.frame_index += [offset + i for i in theirs.frame_index]
            for ti in range(len(self.thresholds)):
                mine.tp[ti] += theirs.tp[ti]
                mine.scores[ti] += theirs.scores[ti]
        self._sequences += other._sequences
        self.num_frames += other.num_frames

    def _every_frame(self, store: _GroupStore | None) -> _GroupStore:
        """``store``'s records with an empty one (no GT, no detection) on each frame it has
        none for: a class group as ``_record_frame`` keeps it once the class is known."""
        have = {} if store is None else {f: r for r, f in enumerate(store.frame_index)}
        if len(have) == self.num_frames:
            return store
        overall = self._groups["overall"]  # a record on every frame
        t = len(self.thresholds)
        out = _GroupStore(tp=[[] for _ in range(t)], scores=[[] for _ in range(t)])
        out.num_gt = 0 if store is None else store.num_gt
        for f in range(self.num_frames):
            r = have.get(f)
            out.frame_gt.append(0 if r is None else store.frame_gt[r])
            out.frame_index.append(f)
            for ti in range(t):
                empty = (np.zeros(0, np.int8), overall.scores[ti][f][:0])
                out.tp[ti].append(empty[0] if r is None else store.tp[ti][r])
                out.scores[ti].append(empty[1] if r is None else store.scores[ti][r])
        return out

    def _labels(self, labels: Any, n: int, name: str) -> np.ndarray:
        if labels is None:
            return np.zeros(n, dtype=np.int64)
        arr = _host_array(labels, name).reshape(-1)
        if arr.shape != (n,):
            raise ValueError(f"{name}: expected [{n}], got {arr.shape}")
        integral = arr.dtype.kind in "iub" or not arr.size
        if not integral and not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name}: expected integer class labels")
        return arr.astype(np.int64)

    def _admit_subset_names(self, names: tuple[str, ...]) -> None:
        """The first frame fixes the subset names; every later frame must give the same."""
        if self._subset_names is None:
            self._subset_names = names
        elif names != self._subset_names:
            raise ValueError(
                f"gt_subsets: every frame must give the same subsets {list(self._subset_names)}, "
                f"got {list(names)}"
            )

    def _subsets(self, gt_subsets: Mapping[str, Any] | None, g: int) -> dict[str, np.ndarray]:
        names = tuple(sorted(gt_subsets)) if gt_subsets else ()
        self._admit_subset_names(names)
        out = {}
        for key in names:
            mask = _host_array(gt_subsets[key], f"gt_subsets[{key!r}]").astype(bool)
            if mask.shape != (g,):
                raise ValueError(f"gt_subsets[{key!r}]: expected [G] = [{g}], got {mask.shape}")
            out[key] = mask
        return out

    def _record(
        self, name: str, num_gt: int, tp: list[np.ndarray], scores: list[np.ndarray]
    ) -> None:
        """Store one frame's record of a group: its GT count and, per threshold, the TP flags
        and scores of its counted detections (``_flags``; the arrays are never modified)."""
        store = self._store(name)
        store.num_gt += num_gt
        store.frame_gt.append(num_gt)
        store.frame_index.append(self.num_frames)
        for ti in range(len(self.thresholds)):
            store.tp[ti].append(tp[ti])
            store.scores[ti].append(scores[ti])

    # ----------------------------------------------------------------------------------------
    def state_digest(self) -> str:
        """SHA-256 (hex) of everything :meth:`compute` reads: two accumulators with equal
        digests give equal results for equal arguments (e.g. sweep conditions whose
        detections were identical on every frame, recorded through ``add_frames(replicas=)``),
        so one ``compute`` can serve both."""
        h = hashlib.sha256()
        h.update(
            repr(
                (self.config, self.num_frames, self._sequences, sorted(self._classes),
                 self._labelled, self._subset_names, list(self._groups))
            ).encode()
        )  # fmt: skip
        for name in sorted(self._groups):
            store = self._groups[name]
            h.update(repr((name, store.num_gt, store.frame_gt, store.frame_index)).encode())
            for tps, scores in zip(store.tp, store.scores, strict=True):
                h.update(np.array([len(t) for t in tps], dtype=np.int64).tobytes())
                for parts in (tps, scores):
                    if parts:
                        h.update(np.concatenate(parts).tobytes())
        return h.hexdigest()

    def compute(
        self,
        sort: str | None = None,
        bootstrap: int = 0,
        seed: int = 0,
        confidence: float = 0.95,
        bootstrap_groups: Sequence[str] | Mapping[str, Sequence[float]] | None = None,
        bootstrap_unit: str = "auto",
    ) -> dict[str, Any]:
        """AP for every group and threshold, optionally with bootstrap intervals over frames.

        Args:
            sort: override the configured sort (``"per_frame"`` / ``"global"``).
            bootstrap: number of bootstrap resamples of the frames (0: no intervals).
            seed: seed of the resampling (same seed, same intervals).
            confidence: coverage of the percentile interval (0.95: the 2.5th and 97.5th
                percentiles of the resampled APs).
            bootstrap_groups: groups that get intervals (``None``: every group), or a mapping
                group -> the thresholds that get intervals.
            bootstrap_unit: ``"auto"``, ``"sequence"`` or ``"frame"`` (module docstring;
                ``"sequence"`` needs a sequence for every frame).

        Returns:
            dict with ``convention`` (settings that change the numbers), ``num_frames``,
            ``ap`` (``{group: {threshold: ap}}``), ``mAP`` (``{threshold: mean of per-class AP
            over classes with GT}``), ``details`` (``{group: {threshold: ap_from_flags
            output}}`` with precision/recall arrays and counts), and with ``bootstrap > 0``
            ``ci`` (``{group: {threshold: (lo, hi)}}``, nan where no resample has GT) and
            ``bootstrap`` (``{"resamples", "seed", "confidence", "unit", "units"}``, ``unit``
            the one used: ``"frame"`` or ``"sequence"``; ``units`` how many frames or
            sequences each resample draws from).
        """
        sort = self.config.sort if sort is None else sort
        if sort not in ("per_frame", "global"):
            raise ValueError(f"sort: expected 'per_frame' or 'global', got {sort!r}")
        procedure = self.config.procedure
        _check_sort(sort, procedure, "sort")
        convention = self.config.convention()
        convention["sort"] = sort
        ap: dict[str, dict[float, float]] = {}
        details: dict[str, dict[float, dict[str, Any]]] = {}
        names = list(self._groups) or ["overall"]
        for name in names:
            store = self._store(name)
            ap[name], details[name] = {}, {}
            for ti, thr in enumerate(self.thresholds.tolist()):
                tp = np.concatenate(store.tp[ti]) if store.tp[ti] else np.zeros(0, np.int8)
                sc = np.concatenate(store.scores[ti]) if store.scores[ti] else np.zeros(0)
                res = ap_from_flags(tp, sc, store.num_gt, sort, procedure)
                ap[name][thr] = res["ap"]
                details[name][thr] = res
        m_ap: dict[float, float] = {}
        class_groups = [n for n in ap if n.startswith("class/")]
        for thr in self.thresholds.tolist():
            vals = [ap[n][thr] for n in class_groups if not math.isnan(ap[n][thr])]
            m_ap[thr] = float(np.mean(vals)) if vals else math.nan
        out = {
            "convention": convention,
            "num_frames": self.num_frames,
            "ap": ap,
            "mAP": m_ap,
            "details": details,
        }
        if bootstrap:
            unit = self.bootstrap_unit(bootstrap_unit)
            if bootstrap < 0 or not 0.0 < confidence < 1.0:
                raise ValueError(
                    f"compute: expected bootstrap >= 0 and 0 < confidence < 1, got "
                    f"bootstrap={bootstrap}, confidence={confidence}"
                )
            if bootstrap_groups is None:
                wanted: dict[str, Sequence[float] | None] = dict.fromkeys(names)
            elif isinstance(bootstrap_groups, Mapping):
                wanted = {n: t for n, t in bootstrap_groups.items() if n in ap}
            else:
                wanted = {n: None for n in bootstrap_groups if n in ap}
            out["ci"] = {
                name: self._bootstrap(name, sort, bootstrap, seed, confidence, thr, unit)
                for name, thr in wanted.items()
            }
            units = len(set(self._sequences)) if unit == "sequence" else self.num_frames
            out["bootstrap"] = {
                "resamples": int(bootstrap), "seed": int(seed), "confidence": float(confidence),
                "unit": unit, "units": units,
            }  # fmt: skip
        return out

    def bootstrap_unit(self, requested: str = "auto") -> str:
        """The unit ``compute(bootstrap_unit=requested)`` resamples: ``"frame"`` or
        ``"sequence"`` (``"auto"``: ``"sequence"`` when every frame has a sequence, there are at
        least two sequences and some sequence holds more than one frame; with a single sequence
        every resample would be the whole set, a zero-width interval, so ``"sequence"`` is then
        refused and ``"auto"`` falls back to frames)."""
        if requested not in BOOTSTRAP_UNITS:
            raise ValueError(
                f"bootstrap_unit: expected one of {', '.join(BOOTSTRAP_UNITS)}, got {requested!r}"
            )
        complete = all(q is not None for q in self._sequences)
        if requested == "sequence" and not complete:
            missing = sum(q is None for q in self._sequences)
            raise ValueError(
                f"bootstrap_unit: 'sequence' needs a sequence for every frame, {missing} of "
                f"{len(self._sequences)} frames have none (add_frame(..., sequence=...))"
            )
        count = len(set(self._sequences))
        if requested == "sequence" and count == 1:
            raise ValueError(
                f"bootstrap_unit: 'sequence' needs at least two sequences to resample, all "
                f"{len(self._sequences)} frames are of {self._sequences[0]!r} (use 'frame')"
            )
        if requested == "auto":
            grouped = complete and 2 <= count < len(self._sequences)
            return "sequence" if grouped else "frame"
        return requested

    def _draws(self, name: str, resamples: int, seed: int, unit: str) -> list[np.ndarray]:
        """Per resample, the indices of the group's records (one per frame) it holds, in
        dataset order. ``"frame"``: ``n`` records drawn with replacement; ``"sequence"``: as many
        sequences drawn with replacement (numbered in order of first appearance), each bringing
        all its records — with one frame per sequence, the very same draws."""
        store = self._store(name)
        if unit == "sequence":
            members: dict[Any, list[int]] = {}
            for record, fi in enumerate(store.frame_index):
                members.setdefault(self._sequences[fi], []).append(record)
            units = tuple(tuple(v) for v in members.values())
        else:
            units = tuple((r,) for r in range(len(store.frame_gt)))
        return list(_drawn_units(units, resamples, seed))

    def bootstrap_distribution(
        self,
        name: str,
        threshold: float,
        resamples: int,
        seed: int = 0,
        bootstrap_unit: str = "auto",
        sort: str | None = None,
    ) -> np.ndarray:
        """The resampled APs behind ``compute``'s interval for one group and threshold.

        Args:
            name: group (``"overall"``, ``"class/car"``, ...).
            threshold: one of the configured IoU thresholds.
            resamples, seed, bootstrap_unit, sort: as for :meth:`compute`.

        Returns:
            ``[R]`` float64 AP of each resample that holds GT (``R <= resamples``), in draw
            order; ``compute``'s interval is its percentile interval.
        """
        sort = self.config.sort if sort is None else sort
        _check_sort(sort, self.config.procedure, "sort")
        matches = [i for i, t in enumerate(self.thresholds.tolist()) if math.isclose(t, threshold)]
        if not matches:
            raise ValueError(
                f"threshold: expected one of {self.thresholds.tolist()}, got {threshold}"
            )
        if name not in self._groups:
            raise ValueError(f"name: expected one of {list(self._groups)}, got {name!r}")
        draws = self._draws(name, resamples, seed, self.bootstrap_unit(bootstrap_unit))
        return self._resampled_ap(name, matches[0], draws, sort)

    def _resampled_ap(
        self, name: str, ti: int, draws: Sequence[np.ndarray], sort: str
    ) -> np.ndarray:
        """AP of group ``name`` at threshold index ``ti`` on each resample (record indices)
        that holds GT."""
        store = self._store(name)
        frame_gt = np.asarray(store.frame_gt, dtype=np.int64)
        all_tp, all_sc, lengths = self._records(store, ti)
        # every resample at once, bit for bit what ap_from_flags gives on each
        return resampled_aps(all_tp, all_sc, lengths, frame_gt, draws, sort, self.config.procedure)

    @staticmethod
    def _records(store: _GroupStore, ti: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``[D]`` TP flags and ``[D]`` scores of the group's records at threshold index ``ti``,
        record after record, and ``[F]`` int64 detections of each record."""
        tps, scs = store.tp[ti], store.scores[ti]
        all_tp = np.concatenate(tps) if tps else np.zeros(0, np.int8)
        all_sc = np.concatenate(scs) if scs else np.zeros(0)
        return all_tp, all_sc, np.array([len(x) for x in tps], dtype=np.int64)

    def _bootstrap(
        self,
        name: str,
        sort: str,
        resamples: int,
        seed: int,
        confidence: float,
        thresholds: Sequence[float] | None = None,
        unit: str = "frame",
    ) -> dict[float, tuple[float, float]]:
        """Percentile interval of one group's AP over ``resamples`` resamplings of the frames
        or of the sequences (``_draws``; the same draws at every threshold)."""
        draws = flat_rows(self._draws(name, resamples, seed, unit))  # joined once: thresholds
        percentiles = [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0]
        store = self._store(name)
        frame_gt = np.asarray(store.frame_gt, dtype=np.int64)
        out: dict[float, tuple[float, float]] = {}
        for ti, thr in enumerate(self.thresholds.tolist()):
            if thresholds is not None and not any(math.isclose(thr, t) for t in thresholds):
                continue
            # np.quantile of _resampled_ap's values, bit for bit (NaN without a resample with
            # GT), from the exact APs of only the resamples that can hold those percentiles
            lo, hi = resampled_ap_quantiles(
                *self._records(store, ti), frame_gt, draws, percentiles, sort,
                self.config.procedure,
            )  # fmt: skip
            out[thr] = (float(lo), float(hi))
        return out


def add_frame_sets(
    jobs: Sequence[tuple[APAccumulator, Sequence[Mapping[str, Any]], Sequence[APAccumulator]]],
    chunk: int = 256,
) -> None:
    """``acc.add_frames(frames, chunk, replicas)`` for each ``(acc, frames, replicas)`` of
    ``jobs`` in order, with the IoUs of all jobs' frames from shared batched calls (up to
    ``chunk`` frames each; e.g. every distinct condition of a sweep's frame batch at once).

    Results are those of the ``add_frames`` calls: IoU is a function of each frame alone, and
    every job's frames are prepared before any is matched, as ``add_frames`` does within one
    chunk. Where that ordering could differ (a job of more than ``chunk`` frames, or an
    accumulator in two jobs) the jobs run one ``add_frames`` call after the other.
    """
    jobs = [(acc, list(frames), list(replicas)) for acc, frames, replicas in jobs]
    owners = [id(a) for acc, _, replicas in jobs for a in (acc, *replicas)]
    if len(set(owners)) < len(owners) or any(len(frames) > chunk for _, frames, _ in jobs):
        for acc, frames, replicas in jobs:
            acc.add_frames(frames, chunk, replicas)
        return
    prepared = []
    for acc, frames, replicas in jobs:
        acc._check_replicas(replicas)
        masks = acc._det_range_masks(frames)
        prepared.append(
            (acc, [acc._prepare_item(f, replicas, m) for f, m in zip(frames, masks)], replicas)
        )
    # one batched IoU call per IoU mode and chunk of frames
    ious: dict[int, list[np.ndarray]] = {}
    for mode in dict.fromkeys(acc.config.iou_mode for acc, _, _ in prepared):
        share = [(ji, p) for ji, p in enumerate(prepared) if p[0].config.iou_mode == mode]
        flat = [(ji, f) for ji, (_, frames, _) in share for f in frames]
        values: list[np.ndarray] = []
        for start in range(0, len(flat), chunk):
            values += share[0][1][0]._iou([f for _, f in flat[start : start + chunk]])
        for (ji, _), iou in zip(flat, values, strict=True):
            ious.setdefault(ji, []).append(iou)
    for ji, (acc, frames, replicas) in enumerate(prepared):
        acc._match_frames(frames, ious.get(ji, []), [acc, *replicas])


@functools.lru_cache(maxsize=16)
def _drawn_units(
    units: tuple[tuple[int, ...], ...], resamples: int, seed: int
) -> tuple[np.ndarray, ...]:
    """``APAccumulator._draws``: per resample, the records of ``resamples`` draws (seeded by
    ``seed``) of ``len(units)`` units with replacement, in dataset order, each unit bringing
    its records. Cached (read-only arrays): every group, threshold and sweep cell with the
    same units draws the very same resamples."""
    rng = np.random.default_rng(seed)
    if not units:
        rows = [np.zeros(0, dtype=np.int64) for _ in range(resamples)]
    else:
        picks = rng.integers(0, len(units), size=(resamples, len(units)))
        # A resample keeps the frames in dataset order: per-frame AP depends on the order of
        # the frames, and a shuffled order would add its own spread and bias to the interval.
        picks.sort(axis=1)
        if all(len(u) == 1 for u in units):
            rows = list(np.asarray(units, dtype=np.int64)[:, 0][picks])
        else:
            arrays = [np.asarray(u, dtype=np.int64) for u in units]
            rows = [np.concatenate([arrays[u] for u in row]) for row in picks]
    for row in rows:
        row.flags.writeable = False
    return tuple(rows)


def visibility_subsets(
    visibility: torch.Tensor | np.ndarray,
    ego_index: int = 0,
    min_points: int = 1,
    agent_mask: torch.Tensor | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """GT subsets from per-agent LiDAR visibility, for ``APAccumulator.add_frame(gt_subsets=...)``.

    Args:
        visibility: ``[A, M]`` int, LiDAR points agent ``a`` has inside box ``m`` (``-1``:
            unknown), as in ``CoopFrame.visibility`` / ``CoopBatch.visibility[b]``.
        ego_index: the ego agent's row.
        min_points: a box is visible to an agent with at least this many points.
        agent_mask: ``[A]`` bool, agents present (padding rows excluded); ``None``: all.

    Returns:
        ``ego_invisible``: ego has a known count ``< min_points``;
        ``ego_invisible_coop_visible``: of those, some other present agent sees it (where
        cooperation can help); ``ego_visible``: ego sees it. Boxes with unknown ego visibility
        are in none of the subsets (so they are ignored there). Each ``[M]`` bool.
    """
    vis = np.asarray(
        visibility.detach().cpu().numpy() if isinstance(visibility, torch.Tensor) else visibility
    )
    if vis.ndim != 2:
        raise ValueError(f"visibility: expected [A, M] point counts, got shape {vis.shape}")
    a = vis.shape[0]
    if not 0 <= ego_index < a:
        raise ValueError(f"ego_index: expected 0 <= ego_index < {a}, got {ego_index}")
    present = np.ones(a, dtype=bool)
    if agent_mask is not None:
        present = np.asarray(
            agent_mask.detach().cpu().numpy()
            if isinstance(agent_mask, torch.Tensor)
            else agent_mask,
            dtype=bool,
        ).reshape(-1)
        if present.shape != (a,):
            raise ValueError(f"agent_mask: expected [{a}], got {present.shape}")
    ego = vis[ego_index]
    known = ego >= 0
    others = present.copy()
    others[ego_index] = False
    coop = (vis[others] >= min_points).any(axis=0) if others.any() else np.zeros_like(known)
    invisible = known & (ego < min_points)
    return {
        "ego_invisible": invisible,
        "ego_invisible_coop_visible": invisible & coop,
        "ego_visible": known & (ego >= min_points),
    }


def format_results(result: Mapping[str, Any]) -> str:
    """One line per group and threshold, each with the convention it was computed under."""
    conv = result["convention"]
    tag = f"[{conv['iou_mode']} IoU, sort={conv['sort']}, class_aware={conv['class_aware']}"
    tag += f", procedure={conv['procedure'].split(' ')[0]}"  # opencood-greedy | dair-v2x
    if conv["eval_range"] is not None:
        tag += f", range={conv['eval_range']} ({conv['range_mode']})"
    tag += "]"
    lines = []
    for name, per_thr in result["ap"].items():
        for thr, value in per_thr.items():
            n_gt = result["details"][name][thr]["num_gt"]
            lines.append(f"AP@{thr:.2f} {name:<24s} = {value:.4f}  (gt={n_gt}) {tag}")
    return "\n".join(lines)


def average_precision(
    det_boxes: Iterable[Any],
    det_scores: Iterable[Any],
    gt_boxes: Iterable[Any],
    iou_threshold: float = 0.5,
    sort: str = "per_frame",
    iou_mode: str = "bev",
    procedure: str = "opencood",
) -> float:
    """Class-agnostic AP over frames at one threshold (OpenCOOD's procedure by default).

    Args:
        det_boxes: per frame ``[D_f, 7]`` detections.
        det_scores: per frame ``[D_f]`` scores.
        gt_boxes: per frame ``[G_f, 7]`` ground truth.
        iou_threshold: TP iff IoU ``>=`` this.
        sort: ``"per_frame"`` or ``"global"``.
        iou_mode: ``"bev"`` or ``"3d"``.
        procedure: ``"opencood"`` or ``"dair_v2x"`` (with ``sort="global"``).

    Returns:
        AP in [0, 1] (nan without GT).
    """
    acc = APAccumulator(
        EvalConfig(
            iou_thresholds=(iou_threshold,),
            iou_mode=iou_mode,
            sort=sort,
            distance_bins=(),
            per_class=False,
            procedure=procedure,
        )
    )
    for db, ds, gb in zip(det_boxes, det_scores, gt_boxes, strict=True):
        acc.add_frame(db, ds, None, gb, None)
    return acc.compute()["ap"]["overall"][float(iou_threshold)]
