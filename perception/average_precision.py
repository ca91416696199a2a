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
  centre only; ``"any_corner"`` is DAIR-V2X's ``RectFilter``; ``"opencood"`` (3D range) is
  OpenCOOD's pair: the ground truth's 8 corners in 3D, the detections' corners in x–y only
  (``range_mask``).
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

The evaluator's parts, one module each (each name this module defined is still importable
from here):

* ``ap_config``: ``EvalConfig``, ``PROCEDURES``, ``BOOTSTRAP_UNITS``;
* ``ap_range``: the evaluation range (``range_mask``, ``RANGE_MODES``);
* ``ap_match``: the matching (``greedy_match``, ``greedy_match_batched``,
  ``gt_side_match_batched``);
* ``ap_curve``: AP from TP/FP flags (``ap_from_flags``, ``voc_ap``, ``dair_ap``);
* ``ap_frames``: the frames going in (validation, range filter, score order, batched IoU;
  ``add_frame_sets``);
* ``ap_records``: the per-group, per-threshold records of the matched frames;
* ``ap_bootstrap``: the bootstrap intervals (``ap_resample``, ``ap_quantiles``);
* ``ap_visibility``: GT subsets from LiDAR visibility (``visibility_subsets``);
* here: ``APAccumulator`` (adding frames, joining accumulators, ``compute``),
  ``format_results`` and the one-call ``average_precision``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from v2x.perception.ap_bootstrap import BootstrapIntervals
from v2x.perception.ap_config import (  # noqa: F401 - SortMode: also importable from here
    BOOTSTRAP_UNITS,
    PROCEDURES,
    EvalConfig,
    SortMode,
    _check_sort,
)
from v2x.perception.ap_curve import ap_from_flags, dair_ap, voc_ap
from v2x.perception.ap_frames import FramePreparation, _Frame, add_frame_sets
from v2x.perception.ap_match import greedy_match, greedy_match_batched
from v2x.perception.ap_range import RANGE_MODES, range_mask  # noqa: F401 - also from here
from v2x.perception.ap_records import (  # noqa: F401 - _packed, _unpacked: also from here
    GroupRecords,
    _GroupStore,
    _packed,
    _unpacked,
)
from v2x.perception.ap_visibility import visibility_subsets

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


class APAccumulator(FramePreparation, GroupRecords, BootstrapIntervals):
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

    def _flush(self, frames: list[_Frame], targets: Sequence[APAccumulator] | None = None) -> None:
        self._match_frames(frames, self._iou(frames), targets)

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
