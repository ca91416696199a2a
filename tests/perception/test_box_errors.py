"""matched_box_errors: errors in the GT box's frame and the oracle IoUs, against boxes built
with known errors."""

from __future__ import annotations

import math

import pytest
import torch

from v2x.perception.box_errors import ERROR_FIELDS, matched_box_errors


def _box(x, y, length, width, yaw):
    return [x, y, 0.8, length, width, 1.5, yaw]


def _t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_known_errors_in_the_box_frame():
    yaw = 0.7
    c, s = math.cos(yaw), math.sin(yaw)
    gt = _t([_box(10.0, -5.0, 4.0, 2.0, yaw), _box(-20.0, 3.0, 4.5, 1.8, -2.0)])
    det = _t(
        [
            # 0.3 m ahead and 0.1 m to the left of box 0, 0.5 m longer
            _box(10.0 + 0.3 * c - 0.1 * s, -5.0 + 0.3 * s + 0.1 * c, 4.5, 2.0, yaw),
            # box 1 turned by pi + 0.1 and 0.2 m narrower
            _box(-20.0, 3.0, 4.5, 1.6, -2.0 + math.pi + 0.1),
            _box(40.0, 40.0, 4.0, 2.0, 0.0),  # far from both
        ]
    )
    e = matched_box_errors(det, gt)
    assert set(e) == set(ERROR_FIELDS)
    assert e["along_m"].tolist() == pytest.approx([0.3, 0.0], abs=1e-9)
    assert e["across_m"].tolist() == pytest.approx([0.1, 0.0], abs=1e-9)
    assert e["length_m"].tolist() == pytest.approx([0.5, 0.0], abs=1e-9)
    assert e["width_m"].tolist() == pytest.approx([0.0, -0.2], abs=1e-9)
    assert e["axis_rad"].tolist() == pytest.approx([0.0, 0.1], abs=1e-9)
    assert e["flipped"].tolist() == [False, True]
    # box 1: only width and axis are off; with the true axis the IoU is that of a narrower box
    assert float(e["iou_true_axis"][1]) == pytest.approx(1.6 / 1.8, abs=1e-9)
    assert float(e["iou_true_size"][0]) < 1.0 and float(e["iou_true_centre"][0]) < 1.0


def test_iou_by_hand_and_the_oracles():
    gt = _t([_box(0.0, 0.0, 4.0, 2.0, 0.0)])
    det = _t([_box(1.0, 0.0, 4.0, 2.0, 0.0), _box(0.0, 0.5, 4.0, 2.0, 0.0)])
    e = matched_box_errors(det, gt)
    # best: 0.5 m sideways, overlap 4 x 1.5 = 6 of 8 + 8 - 6 = 10 -> 0.6 (the 1 m shift: 6 / 10
    # too; ties keep the first: along 1.0)
    assert float(e["iou"][0]) == pytest.approx(0.6, abs=1e-9)
    assert float(e["iou_true_centre"][0]) == pytest.approx(1.0, abs=1e-9)
    assert float(e["iou_true_size"][0]) == pytest.approx(0.6, abs=1e-9)
    # a box turned by 90 degrees about the same centre: overlap 2 x 2 = 4 of 12
    turned = matched_box_errors(_t([_box(0.0, 0.0, 4.0, 2.0, math.pi / 2)]), gt)
    assert float(turned["iou"][0]) == pytest.approx(4 / 12, abs=1e-9)
    assert abs(float(turned["axis_rad"][0])) == pytest.approx(math.pi / 2, abs=1e-9)
    assert float(turned["iou_true_axis"][0]) == pytest.approx(1.0, abs=1e-9)


def test_no_detections():
    gt = _t([_box(0.0, 0.0, 4.0, 2.0, 0.0)])
    e = matched_box_errors(torch.zeros(0, 7), gt)
    assert e["iou"].tolist() == [0.0] and math.isnan(float(e["along_m"][0]))
    assert e["flipped"].tolist() == [False]
    assert matched_box_errors(torch.zeros(0, 7), torch.zeros(0, 7))["iou"].shape == (0,)
