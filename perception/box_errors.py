"""Localisation errors of detections against ground truth, and what each error source costs.

For every ground-truth box the detection with the largest BEV IoU is its match. The errors are
measured in the GT box's own frame: the centre error along its heading and across it, the
length and width errors, the heading error folded to the box's axis (a box turned by π is the
same box: ``[-π/2, π/2)``) and whether the heading is flipped (``|Δyaw| > π/2``). The oracle IoUs
replace one error source of the match by the truth — its centre, its sizes, or its yaw on the
axis (the yaw that keeps the detection's direction) — to show which source caps the IoU.
"""

from __future__ import annotations

import math

import torch

from v2x.perception.boxes import rotated_iou_bev, rotated_iou_bev_aligned, wrap_angle

__all__ = ["ERROR_FIELDS", "matched_box_errors"]

#: keys of ``matched_box_errors``' result
ERROR_FIELDS = (
    "iou", "along_m", "across_m", "length_m", "width_m", "axis_rad", "flipped",
    "iou_true_centre", "iou_true_size", "iou_true_axis",
)  # fmt: skip


def matched_box_errors(det_boxes: torch.Tensor, gt_boxes: torch.Tensor) -> dict[str, torch.Tensor]:
    """Errors of each GT box's best-IoU detection (module docstring).

    Args:
        det_boxes: ``[D, 7]`` detections (x, y, z, l, w, h, yaw), metres and radians.
        gt_boxes: ``[G, 7]`` ground truth in the same frame.

    Returns:
        ``{field: [G]}`` float64 for every ``ERROR_FIELDS`` entry (``flipped`` bool): ``iou``
        the best BEV IoU (0 without detections, the other fields NaN / False there); the
        signed errors are detection minus truth.
    """
    gt = gt_boxes.double()
    g = gt.shape[0]
    if det_boxes.shape[0] == 0 or g == 0:
        out = {k: torch.full((g,), math.nan, dtype=torch.float64) for k in ERROR_FIELDS}
        out["iou"] = torch.zeros(g, dtype=torch.float64)
        out["flipped"] = torch.zeros(g, dtype=torch.bool)
        return out
    det = det_boxes.double()
    iou, best = rotated_iou_bev(gt, det).max(dim=1)
    d = det[best]  # [G, 7]
    cos, sin = torch.cos(gt[:, 6]), torch.sin(gt[:, 6])
    dx, dy = d[:, 0] - gt[:, 0], d[:, 1] - gt[:, 1]
    dyaw = wrap_angle(d[:, 6] - gt[:, 6])
    axis = wrap_angle(2.0 * dyaw) / 2.0  # folded to [-pi/2, pi/2)
    flipped = dyaw.abs() > math.pi / 2
    true_centre, true_size, true_axis = d.clone(), d.clone(), d.clone()
    true_centre[:, 0:2] = gt[:, 0:2]
    true_size[:, 3:5] = gt[:, 3:5]
    true_axis[:, 6] = d[:, 6] - axis
    return {
        "iou": iou,
        "along_m": cos * dx + sin * dy,
        "across_m": -sin * dx + cos * dy,
        "length_m": d[:, 3] - gt[:, 3],
        "width_m": d[:, 4] - gt[:, 4],
        "axis_rad": axis,
        "flipped": flipped,
        "iou_true_centre": rotated_iou_bev_aligned(true_centre, gt),
        "iou_true_size": rotated_iou_bev_aligned(true_size, gt),
        "iou_true_axis": rotated_iou_bev_aligned(true_axis, gt),
    }
