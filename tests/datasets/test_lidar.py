"""LiDAR beam patterns and the return model against closed forms and sample statistics."""

from __future__ import annotations

import numpy as np
import pytest

from v2x.datasets.lidar import LIDAR_PRESETS, LidarConfig, build_lidar


@pytest.mark.parametrize(
    ("preset", "beams", "down", "up"),
    [
        ("vlp16", 16, -15.0, 15.0),
        ("hdl32", 32, -30.67, 10.67),
        ("hdl64", 64, -24.9, 2.0),
        ("os128", 128, -22.5, 22.5),
    ],
)
def test_rotating_patterns_match_sensor_fov(preset, beams, down, up):
    lidar = build_lidar(LidarConfig(preset=preset, columns=360))
    d = lidar.directions
    assert d.shape == (beams * 360, 3) and lidar.beams == beams
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)
    elev = np.rad2deg(np.arcsin(d[:, 2])).reshape(beams, 360)
    np.testing.assert_allclose(elev[:, 0], np.linspace(down, up, beams), atol=1e-9)
    assert np.ptp(elev, axis=1).max() < 1e-9  # one elevation per beam
    az = np.rad2deg(np.arctan2(d[:, 1], d[:, 0])).reshape(beams, 360)[0] % 360
    np.testing.assert_allclose(az, np.arange(360.0), atol=1e-9)  # 1° steps from +x, CCW


def test_uav_pattern_looks_down():
    lidar = build_lidar("uav_down")
    elev = np.rad2deg(np.arcsin(lidar.directions[:, 2]))
    assert elev.max() == pytest.approx(LIDAR_PRESETS["uav_down"][2])
    assert elev.min() == pytest.approx(-88.0)
    # No ring collapses onto the nadir: all rays are distinct.
    assert len(np.unique(np.round(lidar.directions, 9), axis=0)) == lidar.num_rays


def test_return_model_noise_dropout_ranges():
    cfg = LidarConfig(
        preset="vlp16", columns=4096, range_noise_m=0.05, dropout=0.2, max_range_m=50.0,
        min_range_m=1.0, intensity_noise=0.0,
    )  # fmt: skip
    lidar = build_lidar(cfg)
    r = lidar.num_rays
    ranges = np.full(r, 20.0)
    ranges[:100] = 0.5  # inside the blind zone
    ranges[100:200] = 60.0  # beyond range
    hit = np.ones(r, dtype=bool)
    hit[200:300] = False
    rng = np.random.default_rng(0)
    pts, keep = lidar.apply(ranges, hit, np.ones(r), np.full(r, 0.5), rng)
    assert not keep[:300].any()
    frac = keep[300:].mean()
    assert abs(frac - 0.8) < 4 * np.sqrt(0.16 / (r - 300))
    dist = np.linalg.norm(pts[:, :3], axis=1)
    assert abs(dist.mean() - 20.0) < 0.01
    assert abs(dist.std() - 0.05) < 0.005
    # Points lie along their rays.
    unit = pts[:, :3] / dist[:, None]
    np.testing.assert_allclose(unit, lidar.directions[keep], atol=1e-6)
    assert np.all((pts[:, 3] >= 0) & (pts[:, 3] <= 1))


def test_bad_lidar_config_names_the_field():
    with pytest.raises(ValueError, match="preset"):
        build_lidar(LidarConfig(preset="vlp17"))
    with pytest.raises(ValueError, match="dropout"):
        build_lidar(LidarConfig(dropout=1.0))
    with pytest.raises(ValueError, match="unknown field"):
        LidarConfig.from_dict({"colums": 5})


def test_a_lidar_config_round_trips_through_its_dict():
    """``LidarConfig.to_dict`` had slipped below ``return`` in ``check_finite`` (dead code: the
    class had no ``to_dict``, unlike ``SyntheticConfig``)."""
    cfg = LidarConfig(preset="vlp16", columns=720, max_range_m=90.0, dropout=0.1)
    plain = cfg.to_dict()
    assert plain["columns"] == 720 and plain["max_range_m"] == 90.0
    assert LidarConfig.from_dict(plain) == cfg
