"""``range_mode="opencood"``: OpenCOOD's two range filters, written out here as its code does them
(``mask_boxes_outside_range_numpy`` with ``min_num_corners=8`` on the ground truth against the
3D ``cav_lidar_range``; ``get_mask_for_boxes_within_range_torch`` on the detections' corners
against ``GT_RANGE``'s x–y bounds only), and what they change in an AP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.perception.ap_config import EvalConfig
from v2x.perception.ap_range import range_mask
from v2x.perception.average_precision import APAccumulator

GT_RANGE = (-140.0, -40.0, -3.0, 140.0, 40.0, 1.0)  # OpenCOOD's, [x, y, z] minima then maxima


def _corners_3d(boxes: np.ndarray) -> np.ndarray:
    """``boxes_to_corners_3d`` (order ``lwh``): ``[N, 8, 3]`` from ``[N, 7]``."""
    template = np.array([[1, -1, -1], [1, 1, -1], [-1, 1, -1], [-1, -1, -1],
                         [1, -1, 1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1]]) / 2  # fmt: skip
    local = boxes[:, None, 3:6] * template[None]
    c, s = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    x = local[..., 0] * c - local[..., 1] * s
    y = local[..., 0] * s + local[..., 1] * c
    return np.stack([x, y, local[..., 2]], -1) + boxes[:, None, :3]


def _opencood_gt_mask(boxes: np.ndarray, limit: tuple) -> np.ndarray:
    corners = _corners_3d(boxes)
    inside = ((corners >= np.array(limit[:3])) & (corners <= np.array(limit[3:]))).all(axis=2)
    return inside.sum(axis=1) >= 8


def _opencood_det_mask(boxes: np.ndarray, gt_range: tuple) -> np.ndarray:
    corners = _corners_3d(boxes)[..., :2]
    low, high = np.array(gt_range[:2]), np.array(gt_range[3:5])
    return ((corners >= low).all(-1) & (corners <= high).all(-1)).all(-1)


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    r = GT_RANGE
    centres = rng.uniform([r[0] - 6, r[1] - 6, r[2] - 2], [r[3] + 6, r[4] + 6, r[5] + 2], (n, 3))
    sizes = rng.uniform([1.0, 1.0, 0.5], [12.0, 3.0, 4.0], (n, 3))
    return np.concatenate([centres, sizes, rng.uniform(-math.pi, math.pi, (n, 1))], 1)


def test_ground_truth_and_detections_are_filtered_as_opencood_filters_them() -> None:
    boxes = _random_boxes(np.random.default_rng(3), 4000)
    t = torch.from_numpy(boxes)
    gt = range_mask(t, GT_RANGE, "opencood", ground_truth=True).numpy()
    det = range_mask(t, GT_RANGE, "opencood", ground_truth=False).numpy()
    assert (gt == _opencood_gt_mask(boxes, GT_RANGE)).all()
    assert (det == _opencood_det_mask(boxes, GT_RANGE)).all()
    assert 0.1 < gt.mean() < det.mean() < 0.95  # z drops ground truth, never detections
    assert (range_mask(t, GT_RANGE, "corners").numpy() == gt).all()  # the GT rule is 'corners'


def test_a_detection_above_the_z_range_stays_a_false_positive() -> None:
    """A detection whose top is above z_max: OpenCOOD keeps it (its detection filter reads x and
    y only), so it is a false positive ranked first; 'corners' drops it."""
    car = [10.0, 0.0, -1.0, 4.0, 2.0, 1.5, 0.0]
    high = [30.0, 5.0, 1.5, 4.0, 2.0, 1.5, 0.0]  # z from 0.75 to 2.25: out in 3D
    frame = {
        "det_boxes": np.array([high, car]),
        "det_scores": np.array([0.9, 0.8]),
        "gt_boxes": np.array([car]),
    }
    ap = {}
    for mode in ("corners", "opencood"):
        cfg = EvalConfig(
            iou_thresholds=(0.5,), distance_bins=(), eval_range=GT_RANGE, range_mode=mode
        ).validate()
        acc = APAccumulator(cfg)
        acc.add_frames([frame])
        ap[mode] = acc.compute()["ap"]["overall"][0.5]
    assert ap["corners"] == 1.0
    assert ap["opencood"] == pytest.approx(0.5)  # VOC all-point: precision 1/2 at recall 1


def test_the_opencood_mode_needs_a_3d_range() -> None:
    with pytest.raises(ValueError, match="'opencood' tests the 8 box corners in 3D"):
        EvalConfig(range_mode="opencood", eval_range=(-140, -40, 140, 40)).validate()
