"""Heading-axis channels of the centre head (``yaw_axis``): the box code they give, their loss,
decoding, payloads, and growing a checkpoint without them (fine-tuning)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.perception.bev import BEVGrid
from v2x.perception.detector import CoopDetector, DetectorConfig, load_detector_weights
from v2x.perception.head import (
    AXIS_CHANNELS,
    REG_CHANNELS,
    box_code,
    build_targets,
    decode_detections,
    head_loss,
)
from v2x.perception.semantic import head_payload

GRID = BEVGrid(x_range_m=(-12.8, 12.8), y_range_m=(-12.8, 12.8), resolution_m=0.4)
STRIDE = 2
H = W = 32


def _raw(axis_deg: np.ndarray, heading_deg: np.ndarray, scale: float = 0.7) -> torch.Tensor:
    """``[N, 10]`` head outputs: box values 0.1 .. 0.6, a (non-unit) heading vector at
    ``heading_deg`` and axis channels at twice ``axis_deg`` (scaled: only the angle counts)."""
    n = len(axis_deg)
    raw = torch.zeros(n, REG_CHANNELS + AXIS_CHANNELS, dtype=torch.float64)
    raw[:, :6] = torch.arange(1, 7, dtype=torch.float64) / 10
    h, a = np.radians(heading_deg), np.radians(2 * axis_deg)
    raw[:, 6], raw[:, 7] = torch.tensor(0.3 * np.sin(h)), torch.tensor(0.3 * np.cos(h))
    raw[:, 8], raw[:, 9] = torch.tensor(scale * np.sin(a)), torch.tensor(scale * np.cos(a))
    return raw


def test_box_code_puts_the_heading_on_the_axis_on_the_side_of_the_heading_channels():
    rng = np.random.default_rng(0)
    axis = rng.uniform(-90, 90, 200)  # the box's axis, mod 180
    forward = rng.random(200) < 0.5
    # the heading channels point within 80 degrees of the true direction (badly, say)
    true = np.where(forward, axis, axis + 180.0)
    heading = true + rng.uniform(-80, 80, 200)
    code = box_code(_raw(axis, heading))
    assert code.shape == (200, REG_CHANNELS)
    torch.testing.assert_close(code[:, :6], _raw(axis, heading)[:, :6])
    got = np.degrees(np.arctan2(code[:, 6].numpy(), code[:, 7].numpy()))
    err = (got - true + 180.0) % 360.0 - 180.0
    assert np.abs(err).max() < 1e-9
    torch.testing.assert_close(
        code[:, 6] ** 2 + code[:, 7] ** 2, torch.ones(200, dtype=torch.float64)
    )


def test_box_code_leaves_an_8_channel_code_alone_and_rejects_other_widths():
    reg = torch.randn(2, REG_CHANNELS, 3, 3)
    assert box_code(reg) is reg
    with pytest.raises(ValueError, match="channels on dim 1"):
        box_code(torch.randn(2, 9, 3, 3))


def test_box_code_works_on_maps():
    axis, heading = np.array([30.0, -60.0]), np.array([200.0, -50.0])
    raw = _raw(axis, heading)  # [2, 10]
    maps = raw.T.reshape(1, REG_CHANNELS + AXIS_CHANNELS, 1, 2).expand(3, -1, -1, -1)
    code = box_code(maps)
    assert code.shape == (3, REG_CHANNELS, 1, 2)
    torch.testing.assert_close(code[1, :, 0, :].T, box_code(raw))


def _targets():
    boxes = torch.tensor(
        [[[3.3, -4.1, 0.8, 4.5, 1.9, 1.6, 0.3], [-7.9, 6.25, 1.5, 8.0, 2.6, 3.2, -2.9]]],
        dtype=torch.float64,
    )
    classes = torch.tensor([[0, 1]])
    return build_targets(boxes, classes, torch.ones(1, 2, dtype=torch.bool), GRID, STRIDE, 4), boxes


def _perfect(reg, index, mask, yaws):
    pred = torch.zeros(1, REG_CHANNELS + AXIS_CHANNELS, H * W)
    for m in range(index.shape[1]):
        pred[0, :REG_CHANNELS, index[0, m]] = reg[0, m]
        pred[0, 8, index[0, m]] = math.sin(2 * yaws[m])
        pred[0, 9, index[0, m]] = math.cos(2 * yaws[m])
    return pred.view(1, -1, H, W)


def test_head_loss_regresses_the_doubled_angle():
    (heat, reg, index, mask), boxes = _targets()
    yaws = boxes[0, :, 6].tolist()
    pred = _perfect(reg, index, mask, yaws)
    logits = torch.where(heat == 1.0, torch.tensor(12.0), torch.tensor(-12.0))
    assert float(head_loss(logits, pred, heat, reg, index, mask)["regression"]) < 1e-6
    # Turn each predicted axis by 0.1 rad: per box |Δ sin 2θ| + |Δ cos 2θ| at 2θ → 2θ + 0.2.
    wrong = _perfect(reg, index, mask, [y + 0.1 for y in yaws])
    want = np.mean(
        [
            abs(math.sin(2 * y + 0.2) - math.sin(2 * y))
            + abs(math.cos(2 * y + 0.2) - math.cos(2 * y))
            for y in yaws
        ]
    )
    got = float(head_loss(logits, wrong, heat, reg, index, mask)["regression"])
    assert got == pytest.approx(want, rel=1e-4)


def test_decode_reads_the_axis_channels():
    (heat, reg, index, mask), boxes = _targets()
    yaws = boxes[0, :, 6].tolist()
    pred = _perfect(reg, index, mask, yaws)
    # heading channels 60 degrees off (same side): the decoded yaw is still exact
    for m in range(2):
        pred.view(1, -1, H * W)[0, 6, index[0, m]] = math.sin(yaws[m] + 1.05)
        pred.view(1, -1, H * W)[0, 7, index[0, m]] = math.cos(yaws[m] + 1.05)
    logits = torch.where(heat == 1.0, torch.tensor(12.0), torch.tensor(-12.0))
    det, scores, labels, valid = decode_detections(logits, pred, GRID, STRIDE, 5, 0.5)
    assert int(valid.sum()) == 2
    for m in range(2):
        j = int((det[0, :, :2].double() - boxes[0, m, :2]).norm(dim=1).argmin())
        assert abs(math.remainder(float(det[0, j, 6]) - yaws[m], 2 * math.pi)) < 1e-5


def _model(yaw_axis: bool) -> CoopDetector:
    torch.manual_seed(0)
    cfg = DetectorConfig(
        grid=GRID, pillar_channels=4, backbone_channels=(4, 8), backbone_layers=1,
        feature_channels=4, num_classes=2, head_channels=8, yaw_axis=yaw_axis,
    )  # fmt: skip
    return CoopDetector(cfg).eval()


def test_axis_head_outputs_ten_channels_and_payloads_keep_the_8_channel_code():
    model = _model(True)
    feats = torch.randn(2, 4, H, W)
    heat, reg = model.head(feats)
    assert reg.shape == (2, REG_CHANNELS + AXIS_CHANNELS, H, W)
    payload = head_payload(heat, reg, feats)
    assert payload.shape == (2, 2 + REG_CHANNELS + 4, H, W)
    torch.testing.assert_close(payload[:, 2 : 2 + REG_CHANNELS], box_code(reg))
    det = model.postprocess(heat, reg)
    assert det.boxes.shape[-1] == 7 and torch.isfinite(det.boxes).all()


def test_growing_a_checkpoint_without_axis_channels():
    old, new = _model(False), _model(True)
    state = old.state_dict()
    with pytest.raises(RuntimeError, match="head.reg"):
        load_detector_weights(new, state)
    before = {k: v.clone() for k, v in new.state_dict().items()}
    load_detector_weights(new, state, grow=True)
    after = new.state_dict()
    for key, value in state.items():
        if key.startswith("head.reg."):
            torch.testing.assert_close(after[key][:REG_CHANNELS], value)
            torch.testing.assert_close(after[key][REG_CHANNELS:], before[key][REG_CHANNELS:])
        else:
            torch.testing.assert_close(after[key], value)
    # the grown model's box code equals the old model's where the axis agrees with the heading:
    # the heading channels are the old ones
    feats = torch.randn(1, 4, H, W)
    torch.testing.assert_close(new.head(feats)[1][:, :REG_CHANNELS], old.head(feats)[1])
    # a checkpoint with more channels than the model is not cut down
    with pytest.raises(RuntimeError):
        load_detector_weights(old, new.state_dict(), grow=True)
