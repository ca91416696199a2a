"""Scoring pipeline runs: ground truth in the ego frame, AP accumulators per condition.

Ground-truth rule (the same in training): a box counts when at least ``min_points`` LiDAR
points of some agent fall inside it; other boxes are *ignored* (a detection on them is neither a
TP nor an FP). The ``ego_invisible`` subset holds the counted boxes that the ego itself sees with
fewer than ``min_points`` points: where cooperation pays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from v2x.conditions import condition_members, distinct_conditions
from v2x.datasets.frame import CLASS_NAMES, CoopBatch
from v2x.perception.ap_config import EvalConfig
from v2x.perception.ap_frames import add_frame_sets
from v2x.perception.average_precision import APAccumulator
from v2x.perception.bev import BEVGrid
from v2x.perception.detector import Detections
from v2x.perception.losses import visible_gt_mask
from v2x.perception.warp import boxes_in_level_frames
from v2x.pipeline import RunOutput


@dataclass
class EgoGroundTruth:
    """``[B, M]``-shaped ground truth of a batch in each ego's levelled frame."""

    boxes: torch.Tensor  # [B, M, 7] float64
    labels: torch.Tensor  # [B, M] int64
    present: torch.Tensor  # [B, M] bool (real box, not padding)
    ignored: torch.Tensor  # [B, M] bool (seen by nobody)
    ego_invisible: torch.Tensor  # [B, M] bool
    frame_ids: list[str] | None = None  # [B]
    sequences: list[str] | None = None  # [B] CoopFrame.sequence: the bootstrap's unit


def ego_ground_truth(batch: CoopBatch, grid: BEVGrid, min_points: int = 1) -> EgoGroundTruth:
    boxes = boxes_in_level_frames(batch.boxes, batch.poses[:, :1], grid.ground_z_m)[:, 0]
    counted = visible_gt_mask(batch, min_points)
    ego_vis = batch.visibility[:, 0]
    ego_invisible = counted & (ego_vis >= 0) & (ego_vis < min_points)
    return EgoGroundTruth(
        boxes,
        batch.classes,
        batch.box_mask,
        batch.box_mask & ~counted,
        ego_invisible,
        list(batch.frame_ids),
        None if batch.sequences is None else list(batch.sequences),
    )


def default_eval_config(grid: BEVGrid, sort: str = "per_frame") -> EvalConfig:
    """OpenCOOD-style evaluation over the ego's BEV grid (boxes with all corners inside)."""
    return EvalConfig(
        eval_range=(grid.x_range_m[0], grid.y_range_m[0], grid.x_range_m[1], grid.y_range_m[1]),
        class_names=dict(enumerate(CLASS_NAMES)),
        sort=sort,
    )


def condition_groups(det: Detections, k: int) -> list[list[int]]:
    """Conditions whose detections are identical, bit for bit, on every frame
    (``v2x.conditions.distinct_conditions``).

    Args:
        det: detections of ``K·B`` condition-major frames.
        k: ``K``.

    Returns:
        groups of condition indices (each ascending, groups ordered by their first member);
        only valid detections are compared (padding rows may differ).
    """
    n = det.valid.shape[0]
    if k < 1 or n % k:
        raise ValueError(f"condition_groups: {n} detection rows are not K = {k} conditions")
    keep = det.valid.detach()
    _, inverse = distinct_conditions(
        *(
            t.reshape(k, -1).cpu()
            for t in (
                keep,
                torch.where(keep[..., None], det.boxes.detach(), 0),
                torch.where(keep, det.scores.detach(), 0),
                torch.where(keep, det.labels.detach(), 0),
            )
        )
    )
    return condition_members(inverse)


@dataclass
class ScoredArrays:
    """What ``accumulate`` reads of a run of ``K`` conditions on ``B`` frames and of their
    ground truth, as host (numpy) arrays: picklable, so a batch can be scored in another
    process (``v2x.sweep_scoring``).

    Attributes:
        k: ``K``.
        boxes: ``[K·B, D, 7]`` detections (condition-major rows); ``scores``, ``labels``,
            ``valid``: ``[K·B, D]``.
        gt_boxes: ``[B, M, 7]`` float64; ``gt_labels``, ``present``, ``ignored``,
            ``invisible``: ``[B, M]`` (``EgoGroundTruth``'s fields).
        sequences: ``[B]`` the frames' sequences (the bootstrap's unit) or ``None``.
        shared: every condition has the same detections (``RunOutput.shared``): ``boxes`` …
            ``valid`` hold only their ``B`` rows, scored once for all ``K`` (``K``× less to
            copy, pickle and compare).
    """

    k: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    valid: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    present: np.ndarray
    ignored: np.ndarray
    invisible: np.ndarray
    sequences: list | None = None
    shared: bool = False


def scored_arrays(run: RunOutput, gt: EgoGroundTruth) -> ScoredArrays:
    """The host arrays ``accumulate`` scores ``run`` from (one device-to-host copy each; of
    the ``B`` shared rows only where every condition has them, ``RunOutput.shared``)."""
    det = run.detections if run.shared is None else run.shared
    return detection_arrays(det, run.num_conditions, run.shared is not None, gt)


def detection_arrays(det: Detections, k: int, shared: bool, gt: EgoGroundTruth) -> ScoredArrays:
    """``ScoredArrays`` of ``K`` conditions' detections ``det`` (``K·B`` rows, or the ``B``
    rows every condition shares when ``shared``) and their ground truth; a copy to the host of
    each tensor not there already."""
    boxes, scores, labels, valid = (
        t.detach().cpu().numpy() for t in (det.boxes, det.scores, det.labels, det.valid)
    )
    return ScoredArrays(
        k, boxes, scores, labels, valid, gt.boxes.cpu().numpy(),
        gt.labels.cpu().numpy(), gt.present.cpu().numpy(), gt.ignored.cpu().numpy(),
        gt.ego_invisible.cpu().numpy(), list(gt.sequences) if gt.sequences else None,
        shared=shared,
    )  # fmt: skip


def accumulate(
    run: RunOutput,
    gt: EgoGroundTruth,
    accumulators: list[APAccumulator],
) -> None:
    """Add the ``K·B`` frames of ``run`` to ``accumulators[k]`` (one per condition).

    Conditions with identical detections (an error-free link at every SNR, fusions that send
    nothing) are evaluated once and recorded in each of their accumulators
    (``APAccumulator.add_frames(replicas=...)``: the same result as adding them one by one);
    the distinct conditions are scored together (``add_frame_sets``: shared IoU calls, frames
    matched side by side), from numpy arrays (no torch call per frame).
    """
    accumulate_arrays(scored_arrays(run, gt), accumulators)


def accumulate_arrays(scored: ScoredArrays, accumulators: list[APAccumulator]) -> list[int]:
    """``accumulate`` from the host arrays of a run and its ground truth (``scored_arrays``).

    Returns, per accumulator, the index of the one whose records it got as a replica (the same
    detections on every frame, scored once: ``add_frames(replicas=)``), its own index when it
    was scored itself."""
    k = scored.k
    b = scored.gt_boxes.shape[0]
    if len(accumulators) != k:
        raise ValueError(
            f"accumulate: need {k} accumulators (one per condition), got {len(accumulators)}"
        )
    # numpy on the host from here: selecting rows and boxes is plain indexing (no torch call,
    # which on the scorer thread would give up the GIL each time)
    boxes, scores, labels, valid = scored.boxes, scored.scores, scored.labels, scored.valid
    gt_boxes, gt_labels = scored.gt_boxes, scored.gt_labels
    present, ignored, invisible = scored.present, scored.ignored, scored.invisible
    truth = []  # per frame: its GT fields, the same for every condition
    for fi in range(b):
        p = present[fi]
        truth.append(
            {
                "gt_boxes": gt_boxes[fi][p],
                "gt_labels": gt_labels[fi][p],
                "gt_ignore_mask": ignored[fi][p],
                "gt_subsets": {"ego_invisible": invisible[fi][p]},
                "sequence": scored.sequences[fi] if scored.sequences else None,
            }
        )
    if scored.shared:  # B rows, every condition's (what condition_groups would find)
        if boxes.shape[0] != b:
            raise ValueError(f"accumulate: shared detections need {b} rows, got {boxes.shape[0]}")
        distinct = [list(range(k))]
    else:
        distinct = condition_groups(
            Detections(*(torch.from_numpy(t) for t in (boxes, scores, labels, valid))), k
        )
    jobs = []  # (accumulator, frames, replicas): scored together, IoUs in shared calls
    replica_of = list(range(k))
    for members in distinct:
        ci = members[0]
        frames = []
        for fi in range(b):
            row = fi if scored.shared else ci * b + fi
            keep = valid[row]
            frames.append(
                {
                    "det_boxes": boxes[row][keep],
                    "det_scores": scores[row][keep],
                    "det_labels": labels[row][keep],
                    **truth[fi],
                }
            )
        first = accumulators[ci]
        same = [accumulators[j] for j in members[1:] if accumulators[j].config == first.config]
        jobs.append((first, frames, same))
        for j in members[1:]:  # accumulators with other settings score the frames themselves
            if accumulators[j].config != first.config:
                jobs.append((accumulators[j], frames, []))
            else:
                replica_of[j] = ci
    add_frame_sets(jobs)
    return replica_of


VEHICLE_LABELS = (0, 1)  # car, truck: the field's "vehicle" class (OpenCOOD convention)
HEADLINE_THRESHOLDS = (0.25, 0.3, 0.5, 0.7)
# (result key, group, IoU threshold): vehicle AP@0.5/0.7, per-class AP for pedestrians and
# cyclists at the thresholds customary for them, each also where the ego alone sees nothing.
HEADLINE_METRICS = (
    ("vehicle_ap_50", "group/vehicle", 0.5),
    ("vehicle_ap_70", "group/vehicle", 0.7),
    ("vehicle_ap_50_invisible", "group/vehicle/ego_invisible", 0.5),
    ("vehicle_ap_70_invisible", "group/vehicle/ego_invisible", 0.7),
    ("pedestrian_ap_25", "class/pedestrian", 0.25),
    ("pedestrian_ap_50", "class/pedestrian", 0.5),
    ("cyclist_ap_25", "class/cyclist", 0.25),
    ("cyclist_ap_50", "class/cyclist", 0.5),
    ("ap_50", "overall", 0.5),
    ("ap_70", "overall", 0.7),
)


def headline_eval_config(grid: BEVGrid, sort: str = "per_frame") -> EvalConfig:
    """``default_eval_config`` with the vehicle group and the thresholds of ``HEADLINE_METRICS``."""
    base = default_eval_config(grid, sort)
    return EvalConfig(
        iou_thresholds=HEADLINE_THRESHOLDS, eval_range=base.eval_range,
        class_names=base.class_names, sort=sort, distance_bins=(),
        class_groups={"vehicle": VEHICLE_LABELS},
    )  # fmt: skip


def headline_metrics(
    acc: APAccumulator,
    bootstrap: int = 0,
    seed: int = 0,
    bootstrap_unit: str = "auto",
    sort: str | None = None,
) -> dict[str, float | tuple[float, float] | str]:
    """``HEADLINE_METRICS`` of an accumulator built with ``headline_eval_config``: each key's AP,
    and with ``bootstrap > 0`` its 95 % interval under ``<key>_ci``, the unit resampled under
    ``bootstrap_unit`` (``"sequence"`` or ``"frame"``, ``APAccumulator.bootstrap_unit``; ``""``
    without intervals) and how many of them under ``bootstrap_units`` (0 without intervals). ``sort``: ``"per_frame"`` or ``"global"`` (``None``: the
    accumulator's own, ``APAccumulator.compute``)."""
    pairs: dict[str, list[float]] = {}
    for _, group, thr in HEADLINE_METRICS:
        pairs.setdefault(group, []).append(thr)
    res = acc.compute(sort=sort, bootstrap=bootstrap, seed=seed, bootstrap_groups=pairs,
                      bootstrap_unit=bootstrap_unit)  # fmt: skip
    out: dict[str, float | tuple[float, float] | str] = {
        "bootstrap_unit": res["bootstrap"]["unit"] if bootstrap else "",
        "bootstrap_units": res["bootstrap"]["units"] if bootstrap else 0,
    }
    for key, group, thr in HEADLINE_METRICS:
        out[key] = res["ap"].get(group, {}).get(thr, float("nan"))
        if bootstrap:
            out[f"{key}_ci"] = res["ci"].get(group, {}).get(thr, (float("nan"), float("nan")))
    return out


def __getattr__(name: str) -> Any:
    """``evaluate_fusions`` moved to ``v2x.fusion_evaluation`` (it runs the pipeline through
    ``v2x.execution``, which builds on this module); the old import path keeps working."""
    if name == "evaluate_fusions":
        from v2x.fusion_evaluation import evaluate_fusions

        return evaluate_fusions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
