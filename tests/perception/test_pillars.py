"""PillarEncoder (scatter-based) against a plain per-pillar NumPy loop with the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from v2x.perception.bev import BEVGrid
from v2x.perception.pillars import POINT_FEATURES, PillarEncoder

# Binary-exact extents and resolution, so that edge points are unambiguous in float32 and float64.
GRID = BEVGrid(
    x_range_m=(-2.0, 2.0), y_range_m=(-1.5, 1.5), z_range_m=(-1.0, 3.0), resolution_m=0.5
)
C = 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _encoder(seed: int = 0) -> PillarEncoder:
    torch.manual_seed(seed)
    enc = PillarEncoder(GRID, out_channels=C)
    with torch.no_grad():
        enc.norm.running_mean.uniform_(-0.5, 0.5)
        enc.norm.running_var.uniform_(0.5, 2.0)
        enc.norm.weight.uniform_(0.5, 1.5)
        enc.norm.bias.uniform_(-0.3, 0.3)
    return enc


def _points(s: int, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Points over a region larger than the grid (some fall outside in x, y and z)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(s, n, generator=g) * 5.0 - 2.5
    y = torch.rand(s, n, generator=g) * 4.0 - 2.0
    z = torch.rand(s, n, generator=g) * 5.0 - 1.5
    i = torch.rand(s, n, generator=g)
    mask = torch.rand(s, n, generator=g) > 0.2
    return torch.stack([x, y, z, i], dim=-1), mask


def _oracle(
    enc: PillarEncoder, points: np.ndarray, mask: np.ndarray, train_stats=None
) -> np.ndarray:
    """Per-pillar loop: group points, 9 PointPillars features, Linear, BN, ReLU, max."""
    weight = enc.linear.weight.detach().double().numpy()  # [C, 9]
    if train_stats is None:
        mean = enc.norm.running_mean.double().numpy()
        var = enc.norm.running_var.double().numpy()
    else:
        mean, var = train_stats
    gamma = enc.norm.weight.detach().double().numpy()
    beta = enc.norm.bias.detach().double().numpy()
    eps = enc.norm.eps
    s, n, _ = points.shape
    res = GRID.resolution_m
    out = np.zeros((s, C, GRID.height, GRID.width))
    for si in range(s):
        pillars: dict[tuple[int, int], list[np.ndarray]] = {}
        for p, ok in zip(points[si].astype(np.float64), mask[si]):
            if not ok:
                continue
            if not (GRID.x_range_m[0] <= p[0] < GRID.x_range_m[1]):
                continue
            if not (GRID.y_range_m[0] <= p[1] < GRID.y_range_m[1]):
                continue
            if not (GRID.z_range_m[0] <= p[2] < GRID.z_range_m[1]):
                continue
            ix = int((p[0] - GRID.x_range_m[0]) // res)
            iy = int((p[1] - GRID.y_range_m[0]) // res)
            pillars.setdefault((iy, ix), []).append(p)
        for (iy, ix), pts in pillars.items():
            pts = np.stack(pts)
            centre_x = GRID.x_range_m[0] + (ix + 0.5) * res
            centre_y = GRID.y_range_m[0] + (iy + 0.5) * res
            mu = pts[:, :3].mean(axis=0)
            feats = np.concatenate(
                [pts, pts[:, :3] - mu, pts[:, :1] - centre_x, pts[:, 1:2] - centre_y], axis=1
            )
            lin = feats @ weight.T
            act = np.maximum((lin - mean) / np.sqrt(var + eps) * gamma + beta, 0.0)
            out[si, :, iy, ix] = act.max(axis=0)
    return out


def _kept_linear(enc: PillarEncoder, points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Linear outputs of every kept point (for the training-mode batch statistics)."""
    rows = []
    res = GRID.resolution_m
    weight = enc.linear.weight.detach().double().numpy()
    for si in range(points.shape[0]):
        p64 = points[si].astype(np.float64)
        ok = (
            mask[si]
            & (p64[:, 0] >= GRID.x_range_m[0])
            & (p64[:, 0] < GRID.x_range_m[1])
            & (p64[:, 1] >= GRID.y_range_m[0])
            & (p64[:, 1] < GRID.y_range_m[1])
            & (p64[:, 2] >= GRID.z_range_m[0])
            & (p64[:, 2] < GRID.z_range_m[1])
        )
        pts = p64[ok]
        ix = ((pts[:, 0] - GRID.x_range_m[0]) // res).astype(int)
        iy = ((pts[:, 1] - GRID.y_range_m[0]) // res).astype(int)
        for key in set(zip(iy, ix)):
            sel = (iy == key[0]) & (ix == key[1])
            q = pts[sel]
            cx = GRID.x_range_m[0] + (key[1] + 0.5) * res
            cy = GRID.y_range_m[0] + (key[0] + 0.5) * res
            f = np.concatenate([q, q[:, :3] - q[:, :3].mean(0), q[:, :1] - cx, q[:, 1:2] - cy], 1)
            rows.append(f @ weight.T)
    return np.concatenate(rows)


def test_point_features_constant():
    assert POINT_FEATURES == 9


def test_eval_matches_per_pillar_loop():
    enc = _encoder().eval()
    points, mask = _points(3, 400)
    with torch.no_grad():
        got = enc(points, mask)
    assert got.shape == (3, C, GRID.height, GRID.width) and got.dtype == torch.float32
    want = _oracle(enc, points.numpy(), mask.numpy())
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=1e-5)
    # Pillars without a kept point are exactly zero (the oracle leaves them at 0).
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    kept = mask & (x >= -2.0) & (x < 2.0) & (y >= -1.5) & (y < 1.5) & (z >= -1.0) & (z < 3.0)
    ix = ((x + 2.0) / 0.5).floor().long().clamp(0, GRID.width - 1)
    iy = ((y + 1.5) / 0.5).floor().long().clamp(0, GRID.height - 1)
    occupied = torch.zeros(3, GRID.height, GRID.width, dtype=torch.bool)
    for s in range(3):
        occupied[s, iy[s][kept[s]], ix[s][kept[s]]] = True
    assert (~occupied).any() and (got.permute(0, 2, 3, 1)[~occupied] == 0).all()
    assert (got >= 0).all()


@pytest.mark.parametrize("dump_rows", [1, 3, 4096])
def test_eval_dropped_points_spread_over_dump_rows_change_nothing(monkeypatch, dump_rows):
    """The eval path's dropped points (masked, out of range: most of them here, more than there
    are dump rows) go to rows past the pillars in turn: the map is the per-pillar oracle's and
    bit for bit the one with a single dump row."""
    import v2x.perception.pillars as pillars

    enc = _encoder(3).eval()
    points, mask = _points(2, 3000, seed=11)
    points[:, ::2, 0] += 10.0  # every second point out of range
    with torch.no_grad():
        monkeypatch.setattr(pillars, "DUMP_ROWS", 1)
        single = enc(points, mask)
        monkeypatch.setattr(pillars, "DUMP_ROWS", dump_rows)
        got = enc(points, mask)
    torch.testing.assert_close(got, single, atol=0, rtol=0)
    want = _oracle(enc, points.numpy(), mask.numpy())
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=1e-5)
    assert (got > 0).any()


def test_training_mode_uses_batch_statistics_of_kept_points():
    enc = _encoder().train()
    points, mask = _points(2, 300, seed=5)
    with torch.no_grad():
        got = enc(points, mask)
    lin = _kept_linear(enc, points.numpy(), mask.numpy())
    stats = (lin.mean(axis=0), lin.var(axis=0))  # BN normalises with the biased variance
    want = _oracle(enc, points.numpy(), mask.numpy(), train_stats=stats)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-4, rtol=1e-4)


def test_masked_and_out_of_range_points_are_ignored():
    enc = _encoder().eval()
    inside = torch.tensor([[[0.1, 0.1, 0.5, 0.3], [0.3, 0.2, 1.0, 0.9]]])
    base = enc(inside, torch.ones(1, 2, dtype=torch.bool)).detach()
    extra = torch.tensor(
        [
            [
                [0.2, 0.15, 0.7, 5.0],  # masked: would change the pillar's max and mean
                [2.0, 0.0, 0.5, 1.0],  # x == x_max is outside ([min, max) convention)
                [0.0, -1.6, 0.5, 1.0],  # y < y_min
                [0.0, 0.0, 3.0, 1.0],  # z == z_max
                [0.0, 0.0, -1.5, 1.0],  # z < z_min
                [-9.0, 9.0, 0.5, 1.0],  # far away
            ]
        ]
    )
    pts = torch.cat([inside, extra], dim=1)
    m = torch.tensor([[True, True, False, True, True, True, True, True]])
    got = enc(pts, m).detach()
    torch.testing.assert_close(got, base, atol=0, rtol=0)
    # The masked point does count once unmasked (the test above can fail).
    assert not torch.equal(enc(pts, torch.ones_like(m)).detach(), base)


def test_points_on_cell_edges_and_no_points():
    enc = _encoder().eval()
    # A point at exactly x_min, y_min lands in cell (0, 0); one at the last cell's lower edge
    # lands in the last cell.
    pts = torch.tensor([[[-2.0, -1.5, 0.0, 1.0], [1.5, 1.0, 0.0, 1.0]]])
    got = enc(pts, torch.ones(1, 2, dtype=torch.bool)).detach()
    occupied = (got.abs().sum(1)[0] > 0).nonzero().tolist()
    want = _oracle(enc, pts.numpy(), np.ones((1, 2), bool))
    assert set(map(tuple, occupied)) == {(0, 0), (GRID.height - 1, GRID.width - 1)}
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    # No valid point at all: an all-zero map in eval and in training mode.
    for mode in (True, False):
        enc.train(mode)
        empty = enc(pts, torch.zeros(1, 2, dtype=torch.bool))
        assert empty.shape == (1, C, GRID.height, GRID.width) and (empty == 0).all()


def test_sensors_are_independent():
    enc = _encoder().eval()
    points, mask = _points(3, 200, seed=9)
    with torch.no_grad():
        together = enc(points, mask)
        alone = torch.cat([enc(points[i : i + 1], mask[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)


def test_gradients_flow_to_linear_and_norm():
    enc = _encoder().train()
    points, mask = _points(2, 200, seed=3)
    enc(points, mask).sum().backward()
    assert enc.linear.weight.grad is not None and enc.linear.weight.grad.abs().sum() > 0
    assert enc.norm.weight.grad is not None and torch.isfinite(enc.norm.weight.grad).all()


def test_standard_pointpillars_backbone_shape_and_size() -> None:
    """The field's standard backbone: 3/5/8 blocks, 64/128/256 filters, three 128-channel
    upsampled maps concatenated to 384 channels at stride 2; parameter count from the layer
    arithmetic (3×3 convolutions without bias + BatchNorm, transposed convolutions)."""
    from v2x.perception.backbone import PointPillarsBackbone

    net = PointPillarsBackbone()
    out = net(torch.zeros(1, 64, 32, 48))
    assert out.shape == (1, 384, 16, 24)

    def conv(ci: int, co: int, k: int = 3) -> int:
        return ci * co * k * k + 2 * co  # weights + BatchNorm affine

    expected = 0
    for c_in, c, n, scale in ((64, 64, 3, 1), (64, 128, 5, 2), (128, 256, 8, 4)):
        expected += conv(c_in, c) + n * conv(c, c) + conv(c, 128, scale)
    assert sum(p.numel() for p in net.parameters()) == expected
    with pytest.raises(ValueError, match="one entry per stage"):
        PointPillarsBackbone(layer_nums=(3, 5), filters=(64, 128, 256))
