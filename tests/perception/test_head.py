"""Centre head: targets ↔ decoding round trip, focal loss by hand, regression loss by hand."""

from __future__ import annotations

import math

import pytest
import torch

from v2x.perception.bev import BEVGrid
from v2x.perception.head import (
    REG_CHANNELS,
    CenterHead,
    build_targets,
    decode_detections,
    focal_loss,
    head_loss,
)

GRID = BEVGrid(x_range_m=(-12.8, 12.8), y_range_m=(-12.8, 12.8), resolution_m=0.4)
STRIDE = 2
CELL = GRID.resolution_m * STRIDE  # 0.8 m
H = W = 32
K = 4


def _boxes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two frames; boxes far apart (distinct peaks), mixed classes, yaws in (-pi, pi]."""
    boxes = torch.tensor(
        [
            [
                [3.3, -4.1, 0.8, 4.5, 1.9, 1.6, 0.3],
                [-7.9, 6.25, 1.5, 8.0, 2.6, 3.2, -2.9],
                [9.1, 9.7, 0.9, 0.6, 0.6, 1.8, 1.2],
                [-2.2, -10.6, 0.8, 1.8, 0.7, 1.7, math.pi],
                [30.0, 0.0, 0.8, 4.0, 2.0, 1.5, 0.0],  # outside the grid
            ],
            [
                [0.05, 0.05, 0.7, 4.2, 1.8, 1.5, -1.0],
                [-11.0, 11.5, 0.9, 4.4, 1.9, 1.5, 2.0],
                [6.0, -6.0, 0.8, 4.0, 1.8, 1.5, 0.0],  # padding (invalid)
                [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0],  # padding (invalid)
                [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0],  # padding (invalid)
            ],
        ],
        dtype=torch.float64,
    )
    classes = torch.tensor([[0, 1, 2, 3, 0], [0, 0, -1, -1, -1]])
    valid = torch.tensor([[True] * 5, [True, True, False, False, False]])
    return boxes, classes, valid


def test_target_shapes_and_peaks():
    boxes, classes, valid = _boxes()
    heat, reg, index, mask = build_targets(boxes, classes, valid, GRID, STRIDE, K)
    assert heat.shape == (2, K, H, W) and reg.shape == (2, 5, REG_CHANNELS)
    assert index.shape == (2, 5) and mask.dtype == torch.bool
    assert mask.tolist() == [[True, True, True, True, False], [True, True, False, False, False]]
    # One exact peak per valid box, in its class channel, at floor((x - x_min) / cell).
    assert int((heat == 1.0).sum()) == 6
    for bi in range(2):
        for m in range(5):
            if not mask[bi, m]:
                continue
            ix = math.floor((float(boxes[bi, m, 0]) + 12.8) / CELL)
            iy = math.floor((float(boxes[bi, m, 1]) + 12.8) / CELL)
            assert heat[bi, int(classes[bi, m]), iy, ix] == 1.0
            assert int(index[bi, m]) == iy * W + ix
            dx = (float(boxes[bi, m, 0]) + 12.8) / CELL - ix
            dy = (float(boxes[bi, m, 1]) + 12.8) / CELL - iy
            want = [
                dx,
                dy,
                float(boxes[bi, m, 2]),
                *(math.log(float(v)) for v in boxes[bi, m, 3:6]),
                math.sin(float(boxes[bi, m, 6])),
                math.cos(float(boxes[bi, m, 6])),
            ]
            torch.testing.assert_close(
                reg[bi, m].double(), torch.tensor(want, dtype=torch.float64), atol=1e-5, rtol=1e-5
            )
    assert heat.min() >= 0 and heat.max() <= 1
    # The padded frame-1 rows add nothing: classes 1..3 of frame 1 are empty.
    assert heat[1, 1:].abs().sum() == 0


def test_gaussian_spread_matches_closed_form():
    """Neighbour value exp(-d²/2σ²) with σ = max(min(l, w) / cell / 3, 0.75) cells."""
    boxes = torch.tensor([[[0.4, 0.4, 0.8, 6.0, 4.8, 1.5, 0.0]]], dtype=torch.float64)
    heat, *_ = build_targets(boxes, torch.tensor([[1]]), torch.tensor([[True]]), GRID, STRIDE, K)
    ix = iy = 16
    sigma = max(4.8 / CELL / 3.0, 0.75)  # = 2 cells
    for dx, dy in ((1, 0), (0, 2), (3, -1), (-2, -2)):
        want = math.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
        assert float(heat[0, 1, iy + dy, ix + dx]) == pytest.approx(want, rel=1e-5)
    small = torch.tensor([[[0.4, 0.4, 0.8, 0.5, 0.5, 1.5, 0.0]]], dtype=torch.float64)
    heat, *_ = build_targets(small, torch.tensor([[2]]), torch.tensor([[True]]), GRID, STRIDE, K)
    assert float(heat[0, 2, iy, ix + 1]) == pytest.approx(math.exp(-1 / (2 * 0.75**2)), rel=1e-5)


def _perfect_predictions(heat, reg, index, mask):
    logits = torch.where(heat == 1.0, torch.tensor(12.0), torch.tensor(-12.0))
    reg_pred = torch.zeros(heat.shape[0], REG_CHANNELS, H * W)
    for bi in range(heat.shape[0]):
        for m in range(index.shape[1]):
            if mask[bi, m]:
                reg_pred[bi, :, index[bi, m]] = reg[bi, m]
    return logits, reg_pred.view(-1, REG_CHANNELS, H, W)


def test_decode_of_perfect_predictions_recovers_ground_truth():
    boxes, classes, valid = _boxes()
    heat, reg, index, mask = build_targets(boxes, classes, valid, GRID, STRIDE, K)
    logits, reg_pred = _perfect_predictions(heat, reg, index, mask)
    det_boxes, scores, labels, det_valid = decode_detections(
        logits, reg_pred, GRID, STRIDE, max_detections=10, score_threshold=0.5
    )
    assert det_boxes.shape == (2, 10, 7) and det_valid.sum(1).tolist() == [4, 2]
    for bi in range(2):
        got = det_boxes[bi][det_valid[bi]].double()
        got_labels = labels[bi][det_valid[bi]]
        want = boxes[bi][mask[bi]]
        want_labels = classes[bi][mask[bi]]
        for box, label in zip(want, want_labels):
            d = (got[:, :2] - box[:2]).norm(dim=1)
            j = int(d.argmin())
            assert float(d[j]) < 1e-4 * CELL  # centres: exact up to float32
            assert int(got_labels[j]) == int(label)
            torch.testing.assert_close(got[j, 2:6], box[2:6], atol=1e-4, rtol=1e-5)
            dyaw = math.remainder(float(got[j, 6] - box[6]), 2 * math.pi)
            assert abs(dyaw) < 1e-5
            assert abs(float(got[j, 6])) <= math.pi + 1e-6  # atan2 range (float32 pi)
    assert (scores[det_valid] > 0.99).all() and (scores[~det_valid] < 0.5).all()


def test_decode_suppresses_non_peaks_and_orders_by_score():
    logits = torch.full((1, 2, H, W), -20.0)
    logits[0, 0, 5, 5] = 3.0  # a peak
    logits[0, 0, 5, 6] = 2.0  # its neighbour: not a local maximum
    logits[0, 1, 20, 7] = 1.0  # another class
    reg = torch.zeros(1, REG_CHANNELS, H, W)
    reg[:, 7] = 1.0  # cos yaw = 1
    boxes, scores, labels, valid = decode_detections(logits, reg, GRID, STRIDE, 5, 0.5)
    assert valid.tolist() == [[True, True, False, False, False]]
    assert labels[0, :2].tolist() == [0, 1]
    torch.testing.assert_close(scores[0, :2], torch.sigmoid(torch.tensor([3.0, 1.0])))
    # Zero offsets put the centre on the cell's lower corner; log-size 0 is a 1 m box.
    torch.testing.assert_close(
        boxes[0, 0], torch.tensor([-12.8 + 5 * CELL, -12.8 + 5 * CELL, 0, 1, 1, 1, 0])
    )


def test_decode_reads_channels_last_outputs_as_their_values():
    """A detector configured channels-last (``configure_inference(channels_last=True)``) gives
    the head's outputs NHWC strides: decoding them gives what their contiguous copies give,
    classes and cells in ``[class, y, x]`` order (a view of the NHWC memory would not)."""
    boxes, classes, valid = _boxes()
    heat, reg, index, mask = build_targets(boxes, classes, valid, GRID, STRIDE, K)
    logits, reg_pred = _perfect_predictions(heat, reg, index, mask)
    nhwc = [t.contiguous(memory_format=torch.channels_last) for t in (logits, reg_pred)]
    assert not nhwc[0].is_contiguous() and not nhwc[1].is_contiguous()
    want = decode_detections(logits, reg_pred, GRID, STRIDE, 10, 0.5)
    got = decode_detections(*nhwc, GRID, STRIDE, 10, 0.5)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_focal_loss_hand_computed_2x2():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 1.0]]]])
    target = torch.tensor([[[[1.0, 0.5], [0.0, 0.8]]]])
    p = [_sigmoid(v) for v in (0.0, 2.0, -1.0, 1.0)]
    t = [1.0, 0.5, 0.0, 0.8]
    pos = math.log(p[0]) * (1 - p[0]) ** 2
    neg = sum(math.log(1 - p[i]) * p[i] ** 2 * (1 - t[i]) ** 4 for i in (1, 2, 3))
    want = -(pos + neg) / 1.0
    assert float(focal_loss(logits, target)) == pytest.approx(want, rel=1e-5)
    # Two peaks: normalised by 2. No peak: normalised by 1 (only the negative term).
    target2 = torch.tensor([[[[1.0, 0.5], [0.0, 1.0]]]])
    pos2 = pos + math.log(p[3]) * (1 - p[3]) ** 2
    neg2 = sum(math.log(1 - p[i]) * p[i] ** 2 * (1 - t[i]) ** 4 for i in (1, 2))
    assert float(focal_loss(logits, target2)) == pytest.approx(-(pos2 + neg2) / 2, rel=1e-5)
    target0 = torch.zeros_like(target)
    neg0 = sum(math.log(1 - q) * q**2 for q in p)
    assert float(focal_loss(logits, target0)) == pytest.approx(-neg0, rel=1e-5)


def test_focal_loss_is_small_for_perfect_and_large_for_wrong_predictions():
    boxes, classes, valid = _boxes()
    heat, reg, index, mask = build_targets(boxes, classes, valid, GRID, STRIDE, K)
    logits, _ = _perfect_predictions(heat, reg, index, mask)
    assert float(focal_loss(logits, heat)) < 1e-3
    assert float(focal_loss(-logits, heat)) > 10.0


def test_head_loss_regression_by_hand():
    boxes, classes, valid = _boxes()
    heat, reg, index, mask = build_targets(boxes, classes, valid, GRID, STRIDE, K)
    logits, reg_pred = _perfect_predictions(heat, reg, index, mask)
    out = head_loss(logits, reg_pred, heat, reg, index, mask)
    assert float(out["regression"]) < 1e-6
    # Shift every prediction by +0.1 in each channel: per box the L1 summed over the 8
    # channels is 0.8, averaged over the 6 valid boxes → 0.8.
    out = head_loss(logits, reg_pred + 0.1, heat, reg, index, mask, reg_weight=2.0)
    assert float(out["regression"]) == pytest.approx(0.8, rel=1e-4)
    assert float(out["total"]) == pytest.approx(float(out["heatmap"]) + 1.6, rel=1e-4)
    # Invalid boxes do not count: a huge error at the cell the padded row (6, -6) points at
    # (iy 8, ix 23, used by no valid box) changes nothing.
    assert int(index[1, 2]) == 8 * W + 23
    bad = reg_pred.clone()
    bad[1, :, 8, 23] = 100.0
    assert float(head_loss(logits, bad, heat, reg, index, mask)["regression"]) < 1e-6


def test_center_head_shapes_and_prior():
    head = CenterHead(in_channels=8, num_classes=K, hidden=8).eval()
    heat, reg = head(torch.zeros(2, 8, H, W))
    assert heat.shape == (2, K, H, W) and reg.shape == (2, REG_CHANNELS, H, W)
    # Zero input → the CenterNet prior sigmoid(-2.19) ≈ 0.1 everywhere.
    torch.testing.assert_close(torch.sigmoid(heat).mean(), torch.tensor(0.1), atol=2e-3, rtol=0)
