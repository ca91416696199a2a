"""The synthetic world's and its LiDARs' settings are refused when built from a config if they
are not finite numbers in range (counts whole), naming the field and the value: NaN passed the
comparisons before and gave towns of NaN sizes, LiDARs with NaN noise, or no returns."""

from __future__ import annotations

import pytest

from v2x.datasets.lidar import LidarConfig, build_lidar
from v2x.datasets.synthetic_config import SyntheticConfig

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fps": NAN}, "dataset (synthetic): field 'fps' must be a finite number >= 0, got nan"),
        ({"car_speed_mps": INF}, "field 'car_speed_mps' must be a finite number >= 0, got inf"),
        ({"lane_width_m": -3.5}, "field 'lane_width_m' must be a finite number >= 0, got -3.5"),
        ({"truck_fraction": 1.5}, "field 'truck_fraction' must be a finite number in [0, 1]"),
        ({"parking_lot_fill": NAN}, "field 'parking_lot_fill' must be a finite number in [0, 1]"),
        ({"blocks": 2.5}, "field 'blocks' must be a whole number >= 0, got 2.5"),
        ({"num_rsus": -1}, "field 'num_rsus' must be a whole number >= 0, got -1"),
        ({"vehicle_lidar": {"range_noise_m": NAN}},
         "dataset.vehicle_lidar: field 'range_noise_m' must be a finite number >= 0, got nan"),
        ({"rsu_lidar": {"columns": 0}},
         "dataset.rsu_lidar: field 'columns' must be a whole number >= 1, got 0"),
        ({"uav_lidar": {"fov_up_deg": 91.0}},
         "dataset.uav_lidar: field 'fov_up_deg' must be a finite number in [-90, 90], got 91.0"),
        ({"uav_lidar": {"max_range_m": 0.2}},
         "dataset.uav_lidar: need 0 <= min_range_m < max_range_m, got 0.5, 0.2"),
        ({"vehicle_lidar": {"dropout": 1.0}},
         "dataset.vehicle_lidar: field 'dropout' must be in [0, 1), got 1.0"),
    ],
)  # fmt: skip
def test_a_bad_setting_names_the_field_and_the_value(data, message):
    with pytest.raises(ValueError) as info:
        SyntheticConfig.from_dict(data)
    assert message in str(info.value)


def test_the_shipped_world_and_lidars_still_build():
    cfg = SyntheticConfig()
    for lidar in (cfg.vehicle_lidar, cfg.rsu_lidar, cfg.uav_lidar):
        model = build_lidar(lidar)
        assert model.num_rays == model.beams * model.columns > 0
    assert SyntheticConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    with pytest.raises(ValueError, match="lidar: field 'intensity_noise' must be a finite"):
        LidarConfig(intensity_noise=NAN)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"blocks": 0}, "field 'blocks' is 0; expected >= 1"),
        ({"num_vehicle_agents": 0}, "field 'num_vehicle_agents' is 0; expected >= 1"),
        # 2 × (3.5 + 1.5 + 2.5 + 3.0) + 4 = 25 m
        ({"block_size_m": 20.0}, "field 'block_size_m' is 20.0; expected > 2 × (lane"),
        ({"block_size_m": 20.0}, "widths) + 4 m = 25 m"),
        ({"building_max_height_m": 30.0}, "field 'uav_min_altitude_m' is 20.0; expected > "
         "building_max_height_m + 1 = 31 m"),
        ({"uav_max_altitude_m": 10.0}, "field 'uav_max_altitude_m' is 10.0; expected >= "
         "uav_min_altitude_m = 20 m"),
        ({"backend": "embree"}, "field 'backend' is 'embree'; expected 'torch' or 'open3d'"),
        ({"sensing_phase_max_s": 0.5}, "field 'sensing_phase_max_s' is 0.5; expected in "
         "[0, 1 / fps] = [0, 0.1] s"),
    ],
)  # fmt: skip
def test_a_setting_out_of_its_range_says_what_is_expected(data, message):
    """Settings that pass the type checks but break the town's geometry name the value and
    the range it must lie in (the message said only "is invalid")."""
    with pytest.raises(ValueError) as info:
        SyntheticConfig.from_dict(data)
    assert message in str(info.value)
