"""The README's "Time and asynchrony" figures: their configs compose as Hydra composes them,
their grids plan as documented, and (slow) both run end to end on the CPU with the shipped
standard detector, giving the figures and ledgers whose latencies follow the closed form
``latency = payload channel uses / (share × bandwidth)`` and ``AoI = LiDAR phase + latency``."""

from __future__ import annotations

import math

import pytest

FIGURE_CONFIGS = ("sweep_asynchrony", "sweep_payload_latency")


@pytest.mark.parametrize("name", FIGURE_CONFIGS)
def test_figure_configs_compose_as_hydra_composes_them(name):
    """``_compose_defaults`` (the Python API's defaults) against Hydra's own composition, the
    ``override model: pointpillars`` of the defaults list included."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from v2x.common import to_plain
    from v2x.sweep_plan import _compose_defaults

    with initialize_config_module(config_module="v2x.conf", version_base=None):
        hydra_cfg = compose(config_name=name)
    expected = OmegaConf.to_container(hydra_cfg, resolve=False)
    expected.pop("hydra", None)
    ours = to_plain(_compose_defaults(name))
    assert ours == expected
    assert ours["model"]["backbone"] == "pointpillars" and ours["checkpoint"] is None
    assert ours["data"]["split"] == "test"
    assert to_plain(_compose_defaults("sweep"))["model"].get("backbone") == "pointpillars"


def test_fusion_entries_with_options_plan_like_fusion_options():
    """``grid.fusions`` entries ``{name: ..., kwarg: ...}`` make one group each, keyed like the
    same options given in ``fusion_options`` (same cells, same numbers)."""
    from v2x.sweep_plan import plan_sweep

    base = {"checkpoint": "untrained", "grid": {"snr_db": [10], "codecs": ["identity"]}}
    entries = plan_sweep({**base, "grid": {**base["grid"], "fusions": [
        {"name": "where2comm", "max_fraction": 0.05}, {"name": "where2comm", "max_fraction": 0.2},
    ]}})  # fmt: skip
    options = plan_sweep({**base, "grid": {**base["grid"], "fusions": ["where2comm"]},
                          "fusion_options": {"where2comm": {"max_fraction": 0.05}}})  # fmt: skip
    assert [g.fusion_kwargs for g in entries.groups] == [
        {"max_fraction": 0.05}, {"max_fraction": 0.2}
    ]  # fmt: skip
    assert entries.groups[0].setting == options.groups[0].setting
    assert entries.groups[0].setting != entries.groups[1].setting
    with pytest.raises(ValueError, match="max_fraction"):
        plan_sweep({**base, "grid": {**base["grid"], "fusions": [
            {"name": "where2comm", "max_fraction": 2.0}]}})  # fmt: skip
    with pytest.raises(ValueError, match="fusion 'max' rejects its options"):
        plan_sweep({**base, "grid": {**base["grid"], "fusions": [{"name": "max", "k": 1}]}})
    with pytest.raises(ValueError, match="grid.fusions"):
        plan_sweep({**base, "grid": {**base["grid"], "fusions": [{"max_fraction": 0.1}]}})


def _tiny(name: str, tmp_path, **grid) -> dict:
    """The shipped config ``name`` on the CPU: the standard detector and its data settings,
    two frames of one test town with sparser LiDARs, no intervals, a smaller grid."""
    from v2x.common import to_plain
    from v2x.sweep_plan import _compose_defaults

    cfg = to_plain(_compose_defaults(name))
    lidar = {"columns": 256}
    cfg["data"].update(num_frames=2, frames_per_sequence=2, cache_dir=str(tmp_path / "cache"))
    for kind in ("vehicle_lidar", "rsu_lidar", "uav_lidar"):
        cfg["data"]["synthetic"][kind].update(lidar)
    cfg.update(batch_size=2, quiet=True, table=False, plots=False, feature_cache_gb=2.0)
    cfg["eval"]["bootstrap"] = 0
    cfg["grid"].update(grid)
    cfg["output_dir"] = str(tmp_path / name)
    return cfg


@pytest.mark.slow  # the standard detector on the CPU: a few minutes on a shared 2-core CPU
def test_the_time_figures_run_end_to_end_on_the_cpu(tmp_path):
    from v2x.asynchrony import SensingClock, world_config
    from v2x.loading import load_frames
    from v2x.plots import make_plots
    from v2x.results import read_results
    from v2x.sweep import run_sweep
    from v2x.sweep_plan import plan_sweep

    # (a) + (c): AP against the added delay, with and without compensation
    cfg = _tiny("sweep_asynchrony", tmp_path, added_delay_s=[0.0, 0.3])
    path = run_sweep(cfg)
    rows = read_results([path]).to_pylist()
    assert {(r["fusion"], r["added_delay_s"]) for r in rows} == {
        (f, d)
        for f in ("none", "max", "late", "late_extrapolated", "max_extrapolated")
        for d in (0.0, 0.3)
    }
    assert all(math.isfinite(r["vehicle_ap_70"]) for r in rows)
    plan = plan_sweep(cfg)
    frames = {f.frame_id: f for f in load_frames(plan.data, True)}
    clock = SensingClock(world_config(plan.data))
    for row in read_results([path], ledger=True).to_pylist():
        if not row["sent"]:  # out of range: nothing sent, no latency
            continue
        frame = frames[row["frame_id"]]
        phase = clock.phases(frame)[[a.agent_id for a in frame.agents].index(row["tx_agent"])]
        cell = next(r for r in rows if r["cell_id"] == row["cell_id"])
        assert row["latency_s"] == pytest.approx(cell["added_delay_s"], abs=1e-6)
        assert row["aoi_s"] == pytest.approx(phase + row["latency_s"], abs=1e-12)
    files = make_plots([path], tmp_path / "a", formats=["png"], metric="vehicle_ap_70", table=False)
    assert tmp_path / "a" / "ap_vs_delay.png" in files

    # (b): AP against the payload size at 20 MHz, and over an ideal link
    fractions = [0.003, 0.1]
    fusions = ["none"] + [{"name": "where2comm", "max_fraction": f} for f in fractions]
    out = []
    for bandwidth in (20e6, 1e15):
        cfg = _tiny("sweep_payload_latency", tmp_path, fusions=fusions)
        cfg["budget"]["bandwidth_hz"] = bandwidth
        out.append(run_sweep(cfg))
    rows = read_results(out).to_pylist()
    slow = sorted(
        (r for r in rows if r["fusion"] == "where2comm" and r["bandwidth_hz"] == 20e6),
        key=lambda r: r["mean_source_bits_per_frame"],
    )
    assert len(slow) == 2 and slow[0]["mean_latency_s"] < slow[1]["mean_latency_s"]
    for row in read_results(out, ledger=True).to_pylist():
        if row["fusion"] != "where2comm" or not row["sent"]:
            continue
        cell = next(r for r in rows if r["cell_id"] == row["cell_id"])
        on_air = row["channel_uses"] / (row["share"] * cell["bandwidth_hz"])
        assert row["latency_s"] == pytest.approx(on_air, rel=1e-12)
        # float16 cells at the Shannon rate of 10 dB, and their selection map
        assert row["channel_uses"] >= row["source_bits"] / math.log2(11.0)
    files = make_plots(out, tmp_path / "b", formats=["png"], metric="vehicle_ap_70", table=False)
    assert tmp_path / "b" / "ap_vs_payload.png" in files


def test_payload_series_are_one_line_per_setting_and_bandwidth_sorted_by_size():
    from v2x.plots import _payload_series

    def row(fusion, bits, ap, bandwidth, latency):
        return {
            "fusion": fusion, "codec": "identity", "bandwidth_ratio": math.nan, "snr_db": 10.0,
            "pose_noise_m": 0.0, "pose_noise_yaw_rad": 0.0, "late_policy": "stale",
            "added_delay_s": 0.0, "harq_max_rounds": 0, "bandwidth_hz": bandwidth,
            "mean_links_per_frame": 4.0, "mean_source_bits_per_frame": 4.0 * bits,
            "mean_latency_s": latency, "vehicle_ap_70": ap,
        }  # fmt: skip

    rows = [
        row("where2comm", 3e6, 0.40, 20e6, 0.17),
        row("where2comm", 1e6, 0.45, 20e6, 0.06),
        row("where2comm", 3e6, 0.50, 1e15, 1e-9),
        row("where2comm", 1e6, 0.42, 1e15, 1e-9),
        row("max", 1e8, 0.6, 20e6, 5.0),  # one size only: no line
        {**row("none", 0.0, 0.3, 20e6, math.nan), "codec": "n/a"},
    ]
    series = _payload_series(rows, "vehicle_ap_70")
    assert sorted(series) == [
        "where2comm + identity [stale] @ 20 MHz", "where2comm + identity [stale] @ ideal link"
    ]  # fmt: skip
    slow = series["where2comm + identity [stale] @ 20 MHz"]
    assert [(p[0], p[1], p[4]) for p in slow] == [(1.0, 0.45, 60.0), (3.0, 0.40, 170.0)]
