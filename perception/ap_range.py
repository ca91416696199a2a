"""The evaluation range of ``v2x.perception.average_precision``: which boxes lie inside a BEV or
3D range (``range_mask``; OpenCOOD's all-corners test, the centre, DAIR-V2X's any-corner
``RectFilter``), and the cached mask of a frame's GT boxes (every condition of a sweep scores
the same GT).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from v2x.perception.boxes import boxes_to_corners_bev

__all__ = ["RANGE_MODES", "range_mask"]

RANGE_MODES = ("corners", "centre", "any_corner", "opencood")


def range_mask(
    boxes: torch.Tensor,
    eval_range: Sequence[float],
    mode: str = "corners",
    ground_truth: bool = True,
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
            when it lies above the bottom face's plane and not above the top face's);
            ``"opencood"`` (3D range only): OpenCOOD's two filters — ground truth with all 8
            corners inside the 3D range (``mask_boxes_outside_range_numpy`` on the
            ``cav_lidar_range``), detections with all 4 BEV corners inside its x–y bounds
            (``get_mask_for_boxes_within_range_torch`` on ``GT_RANGE[:2]`` / ``[3:5]``: no z).
        ground_truth: whether ``boxes`` are ground truth (only ``"opencood"`` tells them apart).

    Returns:
        ``[N]`` bool.
    """
    bounds = [float(v) for v in eval_range]
    if mode == "opencood":
        if not ground_truth and len(bounds) == 6:
            bounds = bounds[:2] + bounds[3:5]  # detections: the x-y bounds only
        mode = "corners"
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
