"""The Hydra apps' configs compose from the installed package and name real registry entries."""

from __future__ import annotations

from hydra import compose, initialize_config_module

from v2x.perception.fusion import FUSIONS
from v2x.sweep import plan_sweep


def _compose(name: str, overrides: list[str] | None = None):
    with initialize_config_module(config_module="v2x.conf", version_base=None):
        return compose(config_name=name, overrides=overrides or [])


def test_eval_config_scores_every_fusion_over_an_ideal_link():
    cfg = _compose("eval")
    assert sorted(cfg.grid.fusions) == sorted(
        ["none", "late", "early", "max", "mean", "attention", "where2comm"]
    )
    assert set(cfg.grid.fusions) <= set(FUSIONS.names())
    assert list(cfg.grid.codecs) == ["identity"] and list(cfg.grid.snr_db) == [30]
    # identity sends 64x128x128 float16 maps: the budget must not drop them
    assert cfg.budget.bandwidth_hz * cfg.budget.deadline_s > 4 * 64 * 128 * 128 * 16
    plan = plan_sweep(cfg)  # validates every name and option before any work
    assert plan.num_cells == 7


def test_train_config_composes_with_overrides():
    cfg = _compose("train", ["train.steps=3", "data.synthetic.device=cpu"])
    assert cfg.train.steps == 3 and cfg.model.grid.resolution_m == 0.4
    assert len(cfg.train.modes) == len(cfg.train.mode_weights)


def test_train_app_reads_real_layouts(tmp_path):
    from v2x.apps.train import load_training_frames
    from v2x.datasets.export import export_frames
    from v2x.datasets.synthetic import SyntheticConfig, generate_frame

    export_frames([generate_frame(SyntheticConfig(), seed=4)], tmp_path, "v2xsim")
    frames = load_training_frames({"source": "v2xsim", "path": str(tmp_path), "reader": {}})
    assert len(frames) == 1 and frames[0].num_agents >= 2
