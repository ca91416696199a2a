"""Feature-level latency compensation (``max_extrapolated``): the cells of a moving box are
moved by its displacement, against hand-shifted maps; nothing else changes."""

from __future__ import annotations

import math

import pytest
import torch

from v2x.perception.bev import BEVGrid
from v2x.perception.warp import box_flow, compose_sampling, sample_maps

# 16 x 16 cells of 1 m over [-8, 8) m: cell (row i, column j) is centred at x = j - 7.5,
# y = i - 7.5
GRID = BEVGrid(x_range_m=(-8.0, 8.0), y_range_m=(-8.0, 8.0), resolution_m=1.0)
H = W = 16


def _identity(n: int) -> torch.Tensor:
    u = (torch.arange(W) * 2 + 1) / W - 1
    v = (torch.arange(H) * 2 + 1) / H - 1
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], -1).float().expand(n, H, W, 2).clone()


def _box(x: float, y: float, length: float, width: float, yaw: float = 0.0) -> list[float]:
    return [x, y, 0.0, length, width, 1.5, yaw]


@pytest.mark.parametrize("yaw", [0.0, math.pi / 2])
def test_a_moving_box_carries_its_cells_by_its_displacement(yaw):
    # a 2 x 2 m box centred at (-2, 1): cells x in {-2.5, -1.5} (columns 5, 6), y in {0.5, 1.5}
    # (rows 8, 9); moved by (3, -2) m to x in {0.5, 1.5} (columns 8, 9), y in {-1.5, -0.5}
    # (rows 6, 7)
    maps = torch.randn(1, 3, H, W)
    boxes = torch.tensor([[_box(-2.0, 1.0, 2.0, 2.0, yaw)]], dtype=torch.float64)
    shift = torch.tensor([[[3.0, -2.0]]], dtype=torch.float64)  # 3 cells right, 2 down
    valid = torch.ones(1, 1, dtype=torch.bool)
    flow, moved, vacated = box_flow(boxes, shift, valid, GRID, H, W)
    expect_moved = torch.zeros(H, W, dtype=torch.bool)
    expect_moved[6:8, 8:10] = True
    assert torch.equal(moved[0, 0], expect_moved)
    source = torch.zeros(H, W, dtype=torch.bool)
    source[8:10, 5:7] = True
    assert torch.equal(vacated[0, 0], source & ~expect_moved)
    grid, ok = compose_sampling(
        _identity(1), flow, moved, vacated, torch.ones(1, 1, H, W, dtype=torch.bool)
    )
    out = sample_maps(maps, grid)
    expected = maps.clone()
    expected[..., 6:8, 8:10] = maps[..., 8:10, 5:7]  # each moved cell reads 2 rows up, 3 left
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert torch.equal(ok[0, 0], ~vacated[0, 0])


def test_still_boxes_and_no_boxes_leave_the_warp_exactly_alone():
    warp = _identity(2) * 0.9 + 0.05  # any warp
    valid = torch.rand(2, 1, H, W) > 0.3
    boxes = torch.tensor([[_box(1.0, 1.0, 4.0, 2.0)], [_box(-3.0, 2.0, 4.0, 2.0)]],
                         dtype=torch.float64)  # fmt: skip
    shift = torch.zeros(2, 1, 2, dtype=torch.float64)
    flow, moved, vacated = box_flow(boxes, shift, torch.ones(2, 1, dtype=torch.bool), GRID, H, W)
    assert not moved.any() and not vacated.any()
    grid, ok = compose_sampling(warp, flow, moved, vacated, valid)
    assert torch.equal(grid, warp) and torch.equal(ok, valid)
    # a moving box that does not exist does not move anything either
    flow, moved, vacated = box_flow(
        boxes, shift + 2.0, torch.zeros(2, 1, dtype=torch.bool), GRID, H, W
    )
    assert not moved.any() and not vacated.any()


def test_the_moved_cells_follow_the_warp_and_take_the_validity_behind_them():
    # a pure translation warp by one cell in x: composing the flow reads the source map
    # at (warp after flow); validity comes from the warped map behind each moved cell
    maps = torch.randn(1, 2, H, W)
    warp = _identity(1)
    warp[..., 0] += 2.0 / W  # the warped map at column j is the map at column j + 1
    valid = torch.ones(1, 1, H, W, dtype=torch.bool)
    valid[..., 8:10, 5:7] = False  # the warped map's cells behind the moved box are invalid
    boxes = torch.tensor([[_box(-2.0, 1.0, 2.0, 2.0)]], dtype=torch.float64)
    shift = torch.tensor([[[3.0, -2.0]]], dtype=torch.float64)
    flow, moved, vacated = box_flow(boxes, shift, torch.ones(1, 1, dtype=torch.bool), GRID, H, W)
    grid, ok = compose_sampling(warp, flow, moved, vacated, valid)
    out = sample_maps(maps, grid)
    torch.testing.assert_close(out[..., 6:8, 8:10], maps[..., 8:10, 6:8], rtol=0, atol=1e-6)
    assert not ok[0, 0, 6:8, 8:10].any()
    untouched = ~(moved | vacated)[0, 0]
    torch.testing.assert_close(
        out[0][:, untouched], sample_maps(maps, warp)[0][:, untouched], rtol=0, atol=0
    )


def test_max_extrapolated_without_history_is_max_bit_for_bit():
    from tests.core.test_sweep import tiny_model
    from v2x.channels import build_channel
    from v2x.datasets.frame import collate_frames
    from v2x.datasets.lidar import LidarConfig
    from v2x.datasets.synthetic import generate_sequence
    from v2x.datasets.synthetic_config import SyntheticConfig
    from v2x.perception.checkpoint import detector_config_from_dict
    from v2x.perception.detector import CoopDetector
    from v2x.perception.fusion import build_fusion
    from v2x.pipeline import CooperativePipeline
    from v2x.semcom import build_codec

    lid = {"columns": 128, "max_range_m": 40.0}
    cfg = SyntheticConfig(
        vehicle_lidar=LidarConfig(preset="vlp16", **lid),
        rsu_lidar=LidarConfig(preset="rsu32", **lid),
        uav_lidar=LidarConfig(preset="uav_down", beams=8, **lid),
    )
    batch = collate_frames(list(generate_sequence(cfg, 5, 1)))
    torch.manual_seed(0)
    model = CoopDetector(detector_config_from_dict(tiny_model(feature_channels=8))).eval()
    from v2x.pipeline import MotionHistory

    def run(name: str, motion=None):
        pipe = CooperativePipeline(model, build_fusion(name), build_codec("identity"),
                                   build_channel("awgn"))  # fmt: skip
        return pipe.run(batch, torch.tensor([10.0]), motion).detections

    reference = run("max")
    age = torch.full(batch.agent_mask.shape, 0.3, dtype=torch.float64)
    # no history; a history in which nothing moved (the previous scan is this one)
    for motion in (None, MotionHistory(previous=batch, age_s=age, period_s=0.1)):
        got = run("max_extrapolated", motion)
        for field in ("boxes", "scores", "labels", "valid"):
            assert torch.equal(getattr(got, field), getattr(reference, field))
    with pytest.raises(ValueError, match="margin_m"):
        build_fusion("max_extrapolated", margin_m=-1.0)
