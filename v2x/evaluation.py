"""Scoring pipeline runs: ground truth in the ego frame, AP accumulators per condition.

Ground-truth rule (the same in training): a box counts when at least ``min_points`` LiDAR
points of some agent fall inside it; other boxes are *ignored* (a detection on them is neither a
TP nor an FP). The ``ego_invisible`` subset holds the counted boxes that the ego itself sees with
fewer than ``min_points`` points: where cooperation pays.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from v2x.datasets.frame import CLASS_NAMES, CoopBatch
from v2x.perception.bev import BEVGrid
from v2x.perception.detector import Detections
from v2x.perception.evaluate import APAccumulator, EvalConfig
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


def ego_ground_truth(batch: CoopBatch, grid: BEVGrid, min_points: int = 1) -> EgoGroundTruth:
    boxes = boxes_in_level_frames(batch.boxes, batch.poses[:, :1], grid.ground_z_m)[:, 0]
    counted = visible_gt_mask(batch, min_points)
    ego_vis = batch.visibility[:, 0]
    ego_invisible = counted & (ego_vis >= 0) & (ego_vis < min_points)
    return EgoGroundTruth(
        boxes, batch.classes, batch.box_mask, batch.box_mask & ~counted, ego_invisible
    )


def default_eval_config(grid: BEVGrid, sort: str = "per_frame") -> EvalConfig:
    """OpenCOOD-style evaluation over the ego's BEV grid (boxes with all corners inside)."""
    return EvalConfig(
        eval_range=(grid.x_range_m[0], grid.y_range_m[0], grid.x_range_m[1], grid.y_range_m[1]),
        class_names=dict(enumerate(CLASS_NAMES)),
        sort=sort,
    )


def condition_groups(det: Detections, k: int) -> list[list[int]]:
    """Conditions whose detections are identical, bit for bit, on every frame.

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
    valid = det.valid.detach().reshape(k, -1).cpu()
    keep = det.valid.detach()
    parts = [
        torch.where(keep[..., None], det.boxes.detach(), 0).reshape(k, -1).cpu(),
        torch.where(keep, det.scores.detach(), 0).reshape(k, -1).cpu(),
        torch.where(keep, det.labels.detach(), 0).reshape(k, -1).cpu(),
    ]
    groups: dict[bytes, list[int]] = {}
    for ci in range(k):
        key = valid[ci].numpy().tobytes() + b"".join(p[ci].numpy().tobytes() for p in parts)
        groups.setdefault(key, []).append(ci)
    return list(groups.values())


def accumulate(
    run: RunOutput,
    gt: EgoGroundTruth,
    accumulators: list[APAccumulator],
) -> None:
    """Add the ``K·B`` frames of ``run`` to ``accumulators[k]`` (one per condition).

    Conditions with identical detections (an error-free link at every SNR, fusions that send
    nothing) are evaluated once and recorded in each of their accumulators
    (``APAccumulator.add_frames(replicas=...)``: the same result as adding them one by one).
    """
    k = run.num_conditions
    b = gt.boxes.shape[0]
    if len(accumulators) != k:
        raise ValueError(
            f"accumulate: need {k} accumulators (one per condition), got {len(accumulators)}"
        )
    det = run.detections
    boxes, scores, labels, valid = (
        t.detach().cpu() for t in (det.boxes, det.scores, det.labels, det.valid)
    )
    gt_boxes, gt_labels = gt.boxes.cpu(), gt.labels.cpu()
    present, ignored, invisible = gt.present.cpu(), gt.ignored.cpu(), gt.ego_invisible.cpu()
    for members in condition_groups(Detections(boxes, scores, labels, valid), k):
        ci = members[0]
        frames = []
        for fi in range(b):
            row = ci * b + fi
            keep = valid[row]
            p = present[fi]
            frames.append(
                {
                    "det_boxes": boxes[row][keep],
                    "det_scores": scores[row][keep],
                    "det_labels": labels[row][keep],
                    "gt_boxes": gt_boxes[fi][p],
                    "gt_labels": gt_labels[fi][p],
                    "gt_ignore_mask": ignored[fi][p],
                    "gt_subsets": {"ego_invisible": invisible[fi][p]},
                }
            )
        first = accumulators[ci]
        same = [accumulators[j] for j in members[1:] if accumulators[j].config == first.config]
        first.add_frames(frames, replicas=same)
        for j in members[1:]:  # accumulators with other settings score the frames themselves
            if accumulators[j].config != first.config:
                accumulators[j].add_frames(frames)
