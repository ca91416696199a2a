"""``eval.procedure`` in sweeps: DAIR-V2X's official evaluator is selected by name, refused with
one message when misspelled, and named in every results row's ``eval_convention``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.core.test_sweep import tiny_config
from v2x.results import read_results
from v2x.sweep import plan_sweep, run_sweep


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("frames")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"procedure": "dair"},
            r"^sweep: field 'eval\.procedure': expected one of opencood, dair_v2x, got 'dair'$",
        ),
        (
            {"procedure": "dair_v2x"},
            r"^sweep: field 'eval\.sort': procedure 'dair_v2x' sorts all detections by score "
            r"globally "
            r".*expected 'global', got 'per_frame'",
        ),
    ],
)
def test_a_bad_procedure_is_refused_by_name(cache_dir, tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        plan_sweep({**tiny_config(cache_dir, tmp_path), "eval": fields})


def test_dair_v2x_procedure_reaches_the_results_with_its_intervals(cache_dir, tmp_path):
    cfg = tiny_config(cache_dir, tmp_path, snr_db=[10.0], codecs=["identity"], fusions=["none"])
    cfg["eval"] = {"procedure": "dair_v2x", "sort": "global", "bootstrap": 20}
    plan = plan_sweep(cfg)
    assert plan.eval_config.procedure == "dair_v2x"
    row = read_results([run_sweep(cfg)]).to_pylist()[0]
    convention = json.loads(row["eval_convention"])
    assert convention["procedure"].startswith("dair-v2x (GT-side")
    assert convention["ap"].startswith("dair-v2x") and convention["sort"] == "global"
    for key in ("ap_30", "ap_50", "ap_70", "vehicle_ap_50"):  # (an untrained detector: 0)
        assert row[f"{key}_lo"] <= row[key] <= row[f"{key}_hi"], key
    # the default is OpenCOOD's procedure: another convention, other cells
    default = plan_sweep({**cfg, "eval": {"bootstrap": 20}})
    assert default.eval_config.procedure == "opencood"
    assert default.groups[0].setting != plan.groups[0].setting


@pytest.mark.parametrize("app", ["eval", "sweep"])
def test_the_eval_and_sweep_apps_print_the_ap_convention_under_their_table(
    cache_dir, tmp_path, capsys, caplog, app
):
    """``v2x-eval`` printed its AP table with no word on how the APs were computed (VOC
    all-point or DAIR's sum, per-frame or global sort); so did ``v2x-sweep plots=false``. Both
    now end the table with the ``AP convention`` line of ``v2x-plot``, the plan's own."""
    import importlib

    from omegaconf import OmegaConf

    cfg = tiny_config(cache_dir, tmp_path, snr_db=[10.0], codecs=["identity"], fusions=["none"])
    cfg.update(eval={"sort": "global", "bootstrap": 0}, plots=False, table=True)
    main = importlib.import_module(f"v2x.apps.{app}")
    # the sweep app sets the v2x logger to INFO: restored after the test (as it was) by caplog
    caplog.set_level(logging.getLogger("v2x").level, logger="v2x")
    (main.main if app == "eval" else main.run)(OmegaConf.create(cfg))
    lines = capsys.readouterr().out.splitlines()
    expected = json.loads(read_results([tmp_path]).to_pylist()[0]["eval_convention"])
    printed = [json.loads(ln.removeprefix("AP convention: ")) for ln in lines
               if ln.startswith("AP convention: ")]  # fmt: skip
    assert printed == [expected] and expected["sort"] == "global"
    assert expected["ap"] == "voc-all-point"
    assert lines.index(next(ln for ln in lines if ln.startswith("AP convention"))) < len(lines) - 1


def test_the_tables_say_what_the_ap_columns_pool(cache_dir, tmp_path, capsys, caplog):
    """OpenCOOD's AP@0.3/0.5/0.7 is one vehicle class; ap_30/ap_50/ap_70 pool all four classes
    (v2x.sweep_rows: the ``overall`` AP), which the printed table did not say."""
    from omegaconf import OmegaConf

    from v2x.apps.eval import main

    cfg = tiny_config(cache_dir, tmp_path, snr_db=[10.0], codecs=["identity"], fusions=["none"])
    cfg.update(eval={"bootstrap": 0}, plots=False, table=True)
    caplog.set_level(logging.getLogger("v2x").level, logger="v2x")
    main(OmegaConf.create(cfg))
    lines = capsys.readouterr().out.splitlines()
    note = next(i for i, ln in enumerate(lines) if ln.startswith("AP columns: "))
    assert lines[note - 1].startswith("AP convention: ")
    assert "ap_30/ap_50/ap_70 pool every class (car, truck, pedestrian, cyclist)" in lines[note]
    assert "vehicle_ap_50/vehicle_ap_70: cars and trucks only" in lines[note]


def test_v2x_eval_prints_vehicle_ap_the_readmes_headline_metric(cache_dir, tmp_path, capsys):
    """``v2x-eval`` printed AP pooled over every class only, while the README's fusion tables
    report vehicle AP@0.5/0.7 (cars and trucks, OpenCOOD's): a newcomer compared two different
    metrics. Its table now has both vehicle columns, with the results file's values."""
    from omegaconf import OmegaConf

    from v2x.apps.eval import main

    cfg = tiny_config(cache_dir, tmp_path, snr_db=[10.0], codecs=["identity"], fusions=["late"])
    main(OmegaConf.create({**cfg, "eval": {"bootstrap": 0}}))  # (one word per cell)
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    row = read_results([tmp_path]).to_pylist()[0]
    for name in ("vehicle_ap_30", "vehicle_ap_50", "vehicle_ap_70"):  # OpenCOOD's three
        value = lines[2].split()[header.index(name)]
        assert value == f"{row[name]:.3f}", (name, value, row[name])
    assert row["vehicle_ap_30"] >= row["vehicle_ap_50"] >= row["vehicle_ap_70"]


def test_the_3d_eval_range_sees_heights_above_ground_not_lidar_relative():
    """docs/real_data.md: a 3D ``eval_range``'s z is the height above ``ground_z_m`` in the
    ego's levelled frame (DAIR-V2X's z bounds are LiDAR-relative: shift them by the LiDAR's
    height). Hand-made frame: ego LiDAR 1.8 m up, yawed 90°; a car 10 m ahead of it."""
    import numpy as np

    from v2x.datasets.frame import AgentObservation, CoopFrame, collate_frames
    from v2x.evaluation import ego_ground_truth
    from v2x.perception.ap_range import range_mask
    from v2x.perception.bev import BEVGrid

    pose = np.eye(4)
    pose[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]
    pose[:3, 3] = [5.0, 7.0, 1.8]
    ego = AgentObservation("veh_0", "vehicle", pose, np.zeros((0, 4), np.float32))
    car = np.array([[5.0, 17.0, 0.8, 4.5, 2.0, 1.6, np.pi / 2]])  # world: centre 0.8 m up
    frame = CoopFrame("f", [ego], car, np.array([0]), np.array([1]))
    gt = ego_ground_truth(collate_frames([frame]), BEVGrid())
    np.testing.assert_allclose(gt.boxes[0, 0].numpy(), [10.0, 0.0, 0.8, 4.5, 2.0, 1.6, 0.0],
                               atol=1e-9)  # fmt: skip
    boxes = gt.boxes[0, :1]
    # every corner 0..1.6 m above ground: inside z 0..2 m, outside the LiDAR-relative -3..-1
    assert range_mask(boxes, (0.0, -5.0, 0.0, 20.0, 5.0, 2.0), "corners").tolist() == [True]
    assert range_mask(boxes, (0.0, -5.0, -3.0, 20.0, 5.0, -1.0), "any_corner").tolist() == [False]


def test_v2x_eval_names_itself_in_its_errors(cache_dir, tmp_path, capsys):
    """``v2x-eval`` runs a sweep, and its errors read "sweep: ..."; they now name the app that
    was run, with the same exit status (2: a user error)."""
    from omegaconf import OmegaConf

    from v2x.apps.eval import main

    cfg = tiny_config(cache_dir, tmp_path, snr_db=[10.0], codecs=["identity"], fusions=["none"])
    cfg.update(eval={"procedure": "dair"}, plots=False, table=True)
    with pytest.raises(SystemExit) as stop:
        main(OmegaConf.create(cfg))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: eval: field 'eval.procedure': expected one of opencood, dair_v2x")
    assert "sweep:" not in err
