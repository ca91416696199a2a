"""Closed-form heading-axis channels: the ridge solution, what the convolution reads at a box
centre, and the grown model computing the fitted map there."""

from __future__ import annotations

import math

import numpy as np
import torch

from v2x.perception.axis_fit import centre_samples, ridge, with_axis_channels
from v2x.perception.bev import BEVGrid
from v2x.perception.detector import CoopDetector, DetectorConfig
from v2x.perception.head import REG_CHANNELS, box_code

GRID = BEVGrid(x_range_m=(-12.8, 12.8), y_range_m=(-12.8, 12.8), resolution_m=0.4)


def _model() -> CoopDetector:
    torch.manual_seed(0)
    cfg = DetectorConfig(
        grid=GRID, pillar_channels=4, backbone_channels=(4, 8), backbone_layers=1,
        feature_channels=4, num_classes=2, head_channels=8,
    )  # fmt: skip
    return CoopDetector(cfg).eval()


def test_ridge_recovers_an_exact_linear_map_and_matches_numpy_with_a_penalty():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g, dtype=torch.float64)
    w, b = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.tensor([0.3, -1.0]).double()
    got_w, got_b = ridge(x, x @ w + b, 1e-10)
    torch.testing.assert_close(got_w, w)
    torch.testing.assert_close(got_b, b)
    # with a penalty: numpy's least squares on the centred data augmented by sqrt(lam)·I
    y = x @ w + b + 0.1 * torch.randn(200, 2, generator=g, dtype=torch.float64)
    xn, yn = x.numpy(), y.numpy()
    xc, yc = xn - xn.mean(0), yn - yn.mean(0)
    aug_x = np.vstack([xc, math.sqrt(5.0) * np.eye(6)])
    aug_y = np.vstack([yc, np.zeros((6, 2))])
    want_w = np.linalg.lstsq(aug_x, aug_y, rcond=None)[0]
    got_w, got_b = ridge(x, y, 5.0)
    np.testing.assert_allclose(got_w.numpy(), want_w, atol=1e-10)
    np.testing.assert_allclose(got_b.numpy(), yn.mean(0) - xn.mean(0) @ want_w, atol=1e-10)


def test_centre_samples_read_the_neighbourhood_of_the_centre_cell():
    model = _model()
    c, h, w = 3, 16, 16
    shared = torch.arange(c * h * w, dtype=torch.float32).view(c, h, w)
    # centre cell (stride 2, 0.8 m cells): x = -12.8 + 0.8·(5 + 0.5) → ix 5, iy 0 (edge: padding)
    boxes = torch.tensor(
        [[-12.8 + 0.8 * 5.5, -12.8 + 0.4, 0.8, 4.0, 2.0, 1.5, 0.3],
         [40.0, 0.0, 0.8, 4.0, 2.0, 1.5, 0.0]],  # off the map
        dtype=torch.float64,
    )  # fmt: skip
    x, y = centre_samples(shared, boxes, model)
    assert x.shape == (1, c * 9) and y.shape == (1, 2)
    want = torch.zeros(c, 3, 3, dtype=torch.float64)
    for ci in range(c):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if 0 <= dy < h:  # row -1 is padding
                    want[ci, dy + 1, dx + 1] = float(shared[ci, dy, 5 + dx])
    torch.testing.assert_close(x[0], want.flatten())
    torch.testing.assert_close(y[0], torch.tensor([math.sin(0.6), math.cos(0.6)]).double())


def test_the_grown_model_computes_the_fitted_map_and_keeps_the_rest():
    model = _model()
    feats = torch.randn(1, 4, 32, 32)  # the stride-2 map of the 64 x 64 pillar grid
    shared = model.head.shared(feats)[0]
    boxes = torch.tensor([[1.0, 2.0, 0.8, 4.0, 2.0, 1.5, 0.3]], dtype=torch.float64)
    x, _ = centre_samples(shared.detach(), boxes, model)
    g = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(x.shape[1], 2, generator=g), torch.randn(2, generator=g)
    grown = with_axis_channels(model, weight, bias)
    assert grown.config.yaw_axis and not model.config.yaw_axis
    heat, reg = grown.head(feats)
    old_heat, old_reg = model.head(feats)
    torch.testing.assert_close(heat, old_heat)
    torch.testing.assert_close(reg[:, :REG_CHANNELS], old_reg)
    ix, iy = int((1.0 + 12.8) // 0.8), int((2.0 + 12.8) // 0.8)
    torch.testing.assert_close(reg[0, REG_CHANNELS:, iy, ix].double(), x[0] @ weight.double() + bias.double(),
                               atol=1e-4, rtol=1e-4)  # fmt: skip
    assert box_code(reg).shape[1] == REG_CHANNELS
