"""The detector diagnostics scripts import (their module level runs) and summarise errors as
documented."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.parametrize("name", ["diagnose_detector.py", "fit_axis_head.py"])
def test_script_imports(name):
    module = runpy.run_path(str(SCRIPTS / name), run_name="imported")
    assert callable(module["main"])


def test_diagnose_summary_by_hand():
    summary = runpy.run_path(str(SCRIPTS / "diagnose_detector.py"), run_name="imported")["summary"]
    nan = math.nan
    errors = {
        "iou": np.array([0.9, 0.6, 0.3, 0.0]),
        "along_m": np.array([0.1, -0.3, 0.0, nan]),
        "across_m": np.array([0.0, 0.2, 0.0, nan]),
        "length_m": np.array([0.2, 0.0, 0.0, nan]),
        "width_m": np.array([0.0, -0.1, 0.0, nan]),
        "axis_rad": np.radians([2.0, 20.0, 60.0, nan]),
        "flipped": np.array([False, True, False, False]),
        "iou_true_centre": np.array([0.95, 0.65, 0.3, nan]),
        "iou_true_size": np.array([0.92, 0.6, 0.3, nan]),
        "iou_true_axis": np.array([0.91, 0.85, 0.8, nan]),
    }
    s = summary(errors)
    assert s["vehicles"] == 4 and s["matched"] == 2
    assert (s["share_iou_over_0.7"], s["share_iou_0.5_0.7"], s["share_iou_at_most_0.5"]) == (
        0.25,
        0.25,
        0.5,
    )
    assert s["mean_iou_matched"] == pytest.approx(0.75)
    assert s["along_m_mean"] == pytest.approx(-0.1) and s["flipped_share"] == 0.5
    assert s["axis_deg_p50"] == pytest.approx(11.0)
    assert s["lifted_over_0.7_by_iou_true_axis"] == 1.0
    assert s["lifted_over_0.7_by_iou_true_centre"] == 0.0
    assert s["misses_over_0.7_with_true_axis"] == 1.0  # the IoU-0.3 box; the missing one is NaN
