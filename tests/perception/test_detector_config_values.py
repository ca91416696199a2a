"""The detector's settings are refused when they cannot mean what they say, naming the field and
the value: NaN passes every comparison, so ``score_threshold=nan`` kept no box at all (every AP
0) and ``nms_iou_threshold=nan`` suppressed none, without a word."""

from __future__ import annotations

import pytest

from v2x.perception.bev import BEVGrid
from v2x.perception.checkpoint import detector_config_from_dict
from v2x.perception.detector import DetectorConfig

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("score_threshold", NAN, "a number in [0, 1]"),
        ("score_threshold", -0.1, "a number in [0, 1]"),
        ("nms_iou_threshold", NAN, "a number in [0, 1]"),
        ("nms_iou_threshold", 1.5, "a number in [0, 1]"),
        ("nms_iou_threshold", True, "a number in [0, 1]"),
        ("max_detections", NAN, "a whole number >= 1"),
        ("max_detections", 0, "a whole number >= 1"),
        ("num_classes", 2.5, "a whole number >= 1"),
        ("pillar_channels", INF, "a whole number >= 1"),
        ("head_channels", -1, "a whole number >= 1"),
        ("backbone_layers", -1, "a whole number >= 0"),
    ],
)
def test_a_bad_detector_setting_names_the_field(field, value, expected):
    with pytest.raises(ValueError) as info:
        detector_config_from_dict({field: value})
    message = str(info.value)
    assert f"model: field '{field}' must be {expected}, got {value!r}" == message


def test_the_edges_of_the_ranges_are_taken():
    cfg = DetectorConfig(score_threshold=0.0, nms_iou_threshold=1.0, backbone_layers=0)
    assert (cfg.score_threshold, cfg.nms_iou_threshold, cfg.backbone_layers) == (0.0, 1.0, 0)
    assert DetectorConfig(score_threshold=1).score_threshold == 1  # YAML may give an int


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolution_m": INF}, "'resolution_m' must be a finite number > 0, got inf"),
        ({"resolution_m": NAN}, "'resolution_m' must be a finite number > 0, got nan"),
        ({"resolution_m": 0.0}, "'resolution_m' must be a finite number > 0, got 0.0"),
        ({"ground_z_m": NAN}, "'ground_z_m' must be a finite number, got nan"),
        ({"z_range_m": (-1.0, INF)}, "'z_range_m' must be (min, max) with max > min, both finite"),
        ({"x_range_m": (5.0, 5.0)}, "'x_range_m' must be (min, max) with max > min"),
    ],
)
def test_a_bad_grid_names_the_field(kwargs, message):
    with pytest.raises(ValueError) as info:
        BEVGrid(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("section", "where", "key"),
    [
        ({"grid": {"max_points_per_pillar": 32}}, "model: field 'grid'", "max_points_per_pillar"),
        ({"voxel_size": [0.4, 0.4, 4]}, "model", "voxel_size"),
    ],
)
def test_an_unknown_model_key_is_refused_naming_it(section, where, key):
    # (OpenCOOD's keys: a TypeError traceback from the dataclass before)
    with pytest.raises(ValueError) as info:
        detector_config_from_dict(section)
    message = str(info.value)
    assert message.startswith(f"{where}: unknown field(s) ['{key}']; valid: ")
    assert "'resolution_m'" in message if "grid" in section else "'grid'" in message
