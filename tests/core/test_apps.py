"""The Hydra apps' configs compose from the installed package and name real registry entries."""

from __future__ import annotations

import logging

import pytest
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


def test_the_train_apps_validator_gives_its_metric_with_an_interval_over_the_towns():
    """The validation AP that picks best.pt came without an interval; the validator now returns
    ``(metric, lo, hi)``: ``evaluate_fusions``'s metric and its bootstrap interval over the
    validation towns (``val.bootstrap`` resamples, seeded by ``val.seed``)."""
    from v2x.apps.train import make_validator, validation_frames
    from v2x.common import to_plain
    from v2x.fusion_evaluation import evaluate_fusions
    from v2x.perception.checkpoint import detector_config_from_dict
    from v2x.perception.detector import CoopDetector

    cfg = _compose("train", ["model=pillars_center", "val.num_sequences=2", "val.bootstrap=40",
                             "train.val_every=2",
                             "data.frames_per_sequence=2", "data.synthetic.device=cpu"])  # fmt: skip
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = CoopDetector(detector_config_from_dict(to_plain(cfg.model)))
    metric, lo, hi = make_validator(cfg, "cpu")(model)
    oracle = evaluate_fusions(model, validation_frames(cfg), ["max"], torch.device("cpu"),
                              bootstrap=40, seed=int(cfg.val.seed))["max"]  # fmt: skip
    assert (metric, (lo, hi)) == (oracle["vehicle_ap_70"], oracle["vehicle_ap_70_ci"])
    assert oracle["bootstrap_unit"] == "sequence" and oracle["bootstrap_units"] == 2
    assert 0.0 <= lo <= hi <= 1.0


def test_train_app_reads_real_layouts(tmp_path):
    from v2x.apps.train import load_training_frames
    from v2x.datasets.export import export_frames
    from v2x.datasets.synthetic import generate_frame
    from v2x.datasets.synthetic_config import SyntheticConfig

    export_frames([generate_frame(SyntheticConfig(), seed=4)], tmp_path, "v2xsim")
    frames = load_training_frames({"source": "v2xsim", "path": str(tmp_path), "reader": {}})
    assert len(frames) == 1 and frames[0].num_agents >= 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"path": "/nowhere"}, r"^train: field 'data\.path' is '/nowhere', which is not a folder"),
        ({"num_frames": 5}, r"^train: field 'data\.num_frames' is 5, but .* has 1 frame"),
        ({"reader": {"scene": [0]}}, r"^train: field 'data\.reader' has unknown field\(s\)"),
    ],
)
def test_train_app_real_data_errors_name_the_app(tmp_path, data, message):
    # they said "sweep: field 'data.path' ..." under v2x-train
    from v2x.apps.train import load_training_frames
    from v2x.datasets.export import export_frames
    from v2x.datasets.synthetic import generate_frame
    from v2x.datasets.synthetic_config import SyntheticConfig

    export_frames([generate_frame(SyntheticConfig(), seed=4)], tmp_path, "v2xsim")
    base = {"source": "v2xsim", "path": str(tmp_path), "reader": {}, "num_frames": None}
    with pytest.raises(ValueError, match=message):
        load_training_frames({**base, **data})


def test_train_app_takes_the_dataset_group_as_docs_real_data_says(tmp_path):
    """``v2x-train dataset=v2xsim dataset.root=… dataset.split=…`` (docs/real_data.md) reads
    the real layout; ``dataset=dair_v2x`` and ``dataset=opv2v`` likewise; no group leaves
    ``data`` as it is."""
    from v2x.apps.train import data_section, load_training_frames
    from v2x.datasets.export import export_frames
    from v2x.datasets.synthetic import generate_frame
    from v2x.datasets.synthetic_config import SyntheticConfig

    frames = [generate_frame(SyntheticConfig(), seed=s) for s in (4, 5)]
    export_frames(frames, tmp_path / "v2xsim", "v2xsim")
    cfg = _compose("train", ["dataset=v2xsim", f"dataset.root={tmp_path / 'v2xsim'}",
                             "dataset.split=null"])  # fmt: skip
    data = data_section(cfg)
    assert data.source == "v2xsim" and data.path == str(tmp_path / "v2xsim")
    assert data.reader.ego_channel == 1
    assert len(load_training_frames(data)) == 2
    export_frames(frames[:1], tmp_path / "dair", "dair_v2x")
    cfg = _compose("train", ["dataset=dair_v2x", f"dataset.root={tmp_path / 'dair'}"])
    assert len(load_training_frames(data_section(cfg))) == 1
    export_frames(frames, tmp_path / "opv2v", "opv2v")  # (written to its test split)
    cfg = _compose("train", ["dataset=opv2v", f"dataset.root={tmp_path / 'opv2v'}"])
    assert data_section(cfg).reader.comm_range_m == 70.0
    assert len(load_training_frames(data_section(cfg))) == 2
    plain = _compose("train", [])
    assert data_section(plain) == plain.data


def test_train_codec_app_trains_calibrates_and_writes_a_loadable_gated_checkpoint(tmp_path, caplog):
    import json
    import math

    import torch

    from v2x.apps.train_codec import run_codec_training
    from v2x.codec_calibration import gate_threshold
    from v2x.semcom import build_codec

    tiny = [
        "checkpoint=untrained",
        "model.grid.x_range_m=[-12.8,12.8]", "model.grid.y_range_m=[-12.8,12.8]",
        "model.pillar_channels=8", "model.backbone_channels=[8,16]", "model.backbone_layers=1",
        "model.feature_channels=8",
        "codec.hidden=8", "device=cpu", f"out={tmp_path / 'c.pt'}",
        "data.num_sequences=1", "data.frames_per_sequence=2",
        "val_data.num_sequences=1", "val_data.frames_per_sequence=2",
        "codec_train.steps=2", "codec_train.batch_size=2", "codec_train.amp=false",
        "codec_train.quiet=true", f"codec_train.log_path={tmp_path / 'log.csv'}",
        "calibrate.snr_db=[0,20]", "calibrate.channels=[awgn]", "calibrate.batch_size=2",
    ]
    cfg = _compose("train_codec", tiny)
    path = run_codec_training(cfg)
    codec = build_codec("deepjscc", in_channels=8, hidden=8, checkpoint=str(path))
    report = json.loads(path.with_suffix(".gate.json").read_text())
    # The stored gate is the rule applied to the recorded curves (AP@0.5 and AP@0.7 vs ego-only).
    for ratio, threshold in zip(codec.gate_ratios.tolist(), codec.gate_snr_db.tolist()):
        curves = report["curves"][f"awgn@{ratio:g}"]
        expect = gate_threshold(
            report["snr_db"], [curves["0.5"], curves["0.7"]],
            [report["ego_ap"]["0.5"], report["ego_ap"]["0.7"]],
        )
        assert threshold == expect or (math.isinf(threshold) and math.isinf(expect))
    assert torch.isfinite(codec.gate_snr_db).any() or torch.isinf(codec.gate_snr_db).all()
    assert (tmp_path / "log.csv").read_text().count("\n") >= 2
    # the codec records its detector, and a sweep under another one says so (a codec of the
    # same model ran without a word: only another channel count was refused)
    assert codec.trained_with == {"detector_sha256": "untrained"}
    from v2x.provenance import codec_checkpoint_digest, file_digest

    other = "f" * 64
    with caplog.at_level(logging.WARNING, logger="v2x.sweep"):
        digest = codec_checkpoint_digest("deepjscc", str(path), 8, other)
        # (warnings only: an earlier test may leave the `v2x` loggers at INFO)
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(said) == 1 and "under detector untrained; this sweep's detector is " in said[0]
        assert "ffffffffffff" in said[0] and "\n" not in said[0]
        caplog.clear()
        codec_checkpoint_digest("deepjscc", str(path), 8, "untrained")  # its own detector
        codec_checkpoint_digest("deepjscc", str(path), 384, other)  # refused when it loads
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert digest == file_digest(path)


def test_train_codec_app_rejects_an_init_checkpoint_of_another_architecture(tmp_path):
    import pytest

    from v2x.apps.train_codec import run_codec_training

    cfg = _compose("train_codec", ["init=shipped", "codec.hidden=8", "device=cpu"])
    with pytest.raises(ValueError, match="does not fit this codec"):
        run_codec_training(cfg)
    cfg = _compose("train_codec", [f"init={tmp_path / 'missing.pt'}", "device=cpu"])
    with pytest.raises(ValueError, match="does not exist"):
        run_codec_training(cfg)


def test_where2comm_fine_tuning_config_composes_from_the_shipped_detector():
    from pathlib import Path

    import v2x

    cfg = _compose("train_pointpillars_where2comm")
    assert cfg.model.backbone == "pointpillars"
    assert "where2comm" in cfg.train.modes and cfg.val.fusion == "where2comm"
    assert len(cfg.train.mode_weights) == len(cfg.train.modes)
    root = Path(v2x.__file__).resolve().parent.parent  # the repository root the run starts in
    assert (root / cfg.train.init_checkpoint).is_file()


def test_pointpillars_fine_tuning_config_grows_the_shipped_detector_on_one_gpu():
    from v2x.apps.train import train_config_from
    from v2x.perception.checkpoint import shipped_detector_path

    cfg = _compose("train_pointpillars_finetune")
    train = train_config_from(cfg)
    assert train.model.backbone == "pointpillars" and train.model.yaw_axis
    assert train.init_checkpoint == "shipped" and shipped_detector_path("pointpillars").is_file()
    assert train.batch_size == 16 and len(train.mode_weights) == len(train.modes)
    assert cfg.val.fusion == "max" and train.val_every > 0 and train.steps % train.val_every == 0


def test_the_standard_detectors_semantic_fine_tune_is_an_app_config():
    from v2x.apps.train import train_config_from
    from v2x.perception.checkpoint import shipped_detector_path

    cfg = _compose("train_pointpillars_semantic")
    train = train_config_from(cfg)
    assert train.model.backbone == "pointpillars" and train.model.yaw_axis
    assert train.init_checkpoint == "shipped" and shipped_detector_path("pointpillars").is_file()
    assert set(train.modes) == {"semantic_map", "object_features"}
    assert train.trainable == ("payload_adapters.",)  # the dense fusions' weights stay shipped
    assert len(train.mode_weights) == len(train.modes) and cfg.val.fusion in FUSIONS
    assert train.steps % train.val_every == 0


def test_the_shipped_runs_are_app_configs():
    """The experiments behind the shipped weights, as the one-off scripts ran them (their
    settings, written out here), are configs of v2x-train / v2x-train-codec / v2x-sweep."""
    from v2x.apps.train import train_config_from

    det = _compose("train_synthetic")  # v2x/assets/detector_synthetic.pt
    tc = train_config_from(det)
    assert (tc.steps, tc.batch_size, tc.checkpoint_every, tc.device) == (3500, 8, 500, "cuda")
    assert (tc.lr, tc.augment, tc.val_every, tc.model.backbone) == (2e-3, False, 0, "small")
    assert tuple(tc.modes) == ("single", "max", "mean", "attention", "early")
    assert (det.data.source, det.data.num_sequences, det.data.frames_per_sequence,
            det.data.seed) == ("synthetic", 60, 10, 1000)  # fmt: skip
    codec = _compose("train_codec_finetune")  # semcom/assets/deepjscc_synthetic.pt, last stage
    ct = codec.codec_train
    assert (ct.steps, ct.lr, ct.batch_size, codec.codec.hidden) == (3800, 3e-4, 4, 64)
    assert list(ct.ratios) == [2.0**-e for e in range(9, 1, -1)]
    assert list(ct.ratio_weights) == [1, 1, 2, 3, 2, 1, 1, 1]
    assert (codec.data.num_sequences, codec.data.seed) == (60, 1000)
    assert (codec.val_data.num_sequences, codec.val_data.seed) == (8, 900_000)
    assert codec.calibrate.enabled and list(codec.calibrate.snr_db)[::11] == [-10, 30]
    sweep = _compose("sweep_deepjscc")
    plan = plan_sweep(sweep)
    # none: 12 SNRs; identity: 2 channels x 12; deepjscc: 8 ratios x 2 channels x 12
    assert plan.num_cells == 12 + 2 * 12 + 8 * 2 * 12


def test_the_standard_detectors_codec_run_and_frontier_are_app_configs():
    """semcom/assets/deepjscc_pointpillars.pt: its training config builds the codec the packaged
    checkpoint holds, and the frontier sweep loads that checkpoint into the same architecture."""
    import torch

    from v2x.semcom import build_codec
    from v2x.semcom.deepjscc_checkpoint import read_codec_checkpoint

    _, blob = read_codec_checkpoint("shipped_pointpillars")
    codec = _compose("train_codec_pointpillars")
    assert codec.model.backbone == "pointpillars" and codec.model.feature_channels == 384
    assert (codec.codec.hidden, codec.codec.downsample, codec.codec.max_ratio) == (128, 1, 0.0625)
    keys = ("in_channels", "hidden", "downsample", "max_ratio")
    assert {k: blob["config"][k] for k in keys} == {
        "in_channels": 384, "hidden": 128, "downsample": 1, "max_ratio": 0.0625}  # fmt: skip
    assert max(codec.codec_train.ratios) == codec.codec.max_ratio
    sweep = _compose("sweep_deepjscc_pointpillars")
    options = sweep.codec_options.deepjscc
    assert (options.checkpoint, options.hidden, options.downsample, options.max_ratio) == (
        "shipped_pointpillars", 128, 1, 0.0625)  # fmt: skip
    built = build_codec("deepjscc", in_channels=384, **options)  # the checkpoint loads into it
    assert torch.equal(built.gate_snr_db, blob["state_dict"]["gate_snr_db"])
    assert sweep.model.backbone == "pointpillars" and sweep.data.num_frames == 400
    plan = plan_sweep(sweep)
    # none: 7 SNRs; identity: 2 channels x 7; deepjscc: 6 ratios x 2 channels x 7
    assert plan.num_cells == 7 + 2 * 7 + 6 * 2 * 7


def test_train_codec_app_with_train_false_only_calibrates_the_init_weights(tmp_path):
    import pytest
    import torch

    from v2x.apps.train_codec import run_codec_training

    tiny = [
        "checkpoint=untrained",
        "model.grid.x_range_m=[-12.8,12.8]", "model.grid.y_range_m=[-12.8,12.8]",
        "model.pillar_channels=8", "model.backbone_channels=[8,16]", "model.backbone_layers=1",
        "model.feature_channels=8", "codec.hidden=8", "device=cpu",
        "data.num_sequences=1", "data.frames_per_sequence=2",
        "val_data.num_sequences=1", "val_data.frames_per_sequence=2",
        "codec_train.steps=2", "codec_train.batch_size=2", "codec_train.amp=false",
        "codec_train.quiet=true", f"codec_train.log_path={tmp_path / 'log.csv'}",
        "calibrate.snr_db=[0,20]", "calibrate.channels=[awgn]", "calibrate.batch_size=2",
    ]
    trained = run_codec_training(_compose("train_codec", [*tiny, f"out={tmp_path / 'a.pt'}"]))
    again = run_codec_training(_compose("train_codec", [
        *tiny, "train=false", f"init={trained}", f"out={tmp_path / 'b.pt'}"]))  # fmt: skip
    a, b = (torch.load(p, weights_only=True)["state_dict"] for p in (trained, again))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # same weights and gate
    assert again.with_suffix(".gate.json").exists()
    with pytest.raises(ValueError, match="'init' is not set"):
        run_codec_training(_compose("train_codec", [*tiny, "train=false"]))


def test_the_main_result_at_full_size_is_an_app_config():
    """conf/sweep_main.yaml: the README's main result with the standard detector on 400 frames
    (DeepJSCC's shipped codec for its 384-channel maps), and its digital run on 20 frames."""
    from pathlib import Path

    from v2x.provenance import file_digest
    from v2x.semcom.deepjscc_checkpoint import resolve_checkpoint

    cfg = _compose("sweep_main")
    assert cfg.model.backbone == "pointpillars" and cfg.checkpoint is None
    assert (cfg.data.num_frames, cfg.data.frames_per_sequence) == (400, 10)
    plan = plan_sweep(cfg)
    # none, late: 7 SNRs each; identity: 2 channels x 7; deepjscc: 3 ratios x 2 channels x 7
    assert plan.num_cells == 2 * 7 + 2 * 7 + 3 * 2 * 7
    deepjscc = next(g for g in plan.groups if g.codec == "deepjscc")
    assert deepjscc.codec_sha256 == file_digest(Path(resolve_checkpoint("shipped", 384)))
    digital = _compose("sweep_main", ["data.num_frames=20", "data.frames_per_sequence=2",
                                      "grid.codecs=[digital]", "grid.fusions=[max]"])  # fmt: skip
    assert plan_sweep(digital).num_cells == 2 * 7
    assert digital.codec_options.digital.max_channel_uses == 384 * 128 * 128 // 64


@pytest.mark.parametrize(
    ("key", "value"), [("num_sequences", "abc"), ("frames_per_sequence", 0), ("seed", -1)]
)
def test_a_bad_synthetic_training_section_is_refused_naming_the_field(key, value):
    """``data.frames_per_sequence=0`` said only "no training frames", a text count failed in
    ``int()``: each is refused naming the field before any town is generated."""
    from v2x.apps.train import load_training_frames

    data = {"source": "synthetic", "num_sequences": 1, "frames_per_sequence": 1, "seed": 0}
    with pytest.raises(ValueError, match=rf"^train: field 'data.{key}' must be .*{value!r}"):
        load_training_frames({**data, key: value})


def test_ddp_ranks_train_on_equal_disjoint_shares_of_the_towns():
    """Each DDP rank trains on its own towns and draws the same number of frames per step, so
    the shares must be equal for every town to be drawn as often as on one process: with 3
    towns on 2 ranks town 1 was drawn twice as often as towns 0 and 2 (6,000 against ~3,000
    draws in 3,000 steps), with 1 town rank 1 stopped with "no training frames"."""
    from v2x.apps.train import load_training_frames

    data = {"source": "synthetic", "num_sequences": 4, "frames_per_sequence": 1, "seed": 1000}
    whole = [f.frame_id for f in load_training_frames(data)]
    shares = [[f.frame_id for f in load_training_frames(data, rank, 2)] for rank in range(2)]
    assert sorted(shares[0] + shares[1]) == sorted(whole)  # disjoint, covering every town
    assert len(shares[0]) == len(shares[1])
    for towns in (3, 1):
        with pytest.raises(ValueError, match=rf"'data.num_sequences' \({towns}\) must be a mul"):
            load_training_frames({**data, "num_sequences": towns}, 0, 2)


def test_a_launcher_of_an_extra_not_installed_is_one_line(monkeypatch, capsys):
    """``hydra/launcher=submitit_slurm`` without ``v2x[slurm]`` was Hydra's "Unknown plugin
    class" traceback: now one line names the extra to install."""
    import importlib.util

    from v2x.cli import LAUNCHER_EXTRAS, check_launcher

    real = importlib.util.find_spec
    missing = {module for module, _ in LAUNCHER_EXTRAS.values()}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a)
    )
    for name, (_, extra) in LAUNCHER_EXTRAS.items():
        with pytest.raises(SystemExit) as stop:
            check_launcher(["grid.snr_db=[0]", f"hydra/launcher={name}", "-m"])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pip install 'v2x[{extra}]'" in err, err
    check_launcher(["hydra/launcher=joblib", "-m"])  # a core dependency: nothing to say
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    check_launcher(["hydra/launcher=submitit_local"])  # installed: nothing to say


def test_a_misspelled_override_is_one_line_naming_the_nearest_fields(capsys):
    """``grid.snr_dB=[0]`` was Hydra's five-to-ten-line message listing no valid key: now one
    line names the field, the nearest ones and the ``+key`` form; what Hydra handles itself
    (``+``, groups, ``hydra.*``, multirun values, another ``--config-name``) is left to it."""
    from v2x.cli import check_override_keys

    for arg, shown in [
        ("grid.snr_dB=[0]", "'snr_dB' is not a field of 'grid'; did you mean 'snr_db'"),
        ("data.num_frame=4", "did you mean 'num_frames'?"),
        ("tabel=false", "'tabel' is not a field of the config; did you mean 'table'?"),
        ("channel_options.rician.k_factor_db=3",
         "(channel_options, codec_options, data.reader) takes +channel_options.rician.k_factor_db"
         "=… to add one"),
    ]:
        with pytest.raises(SystemExit) as stop:
            check_override_keys("sweep", "sweep", ["-m", "grid.snr_db=0,10", arg])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and shown in err, err
        assert err.startswith(f"error: sweep: field '{arg.split('=')[0]}' is not a setting")
    fine = [
        "grid.snr_db=[0,10]", "model=pillars_center", "model.score_threshold=0.1",
        "+data.reader.split=val", "hydra/launcher=joblib", "hydra.run.dir=/tmp/x", "-m",
        "grid.codecs='[{name: digital_fixed, max_channel_uses: 16384}]'", "~plots_dir",
        "codec_options.deepjscc.checkpoint=untrained",
    ]  # fmt: skip
    check_override_keys("sweep", "sweep", fine)
    # a key of the group the command line chooses (the slow launcher tests' command: the
    # sweep's default model, the standard one, has no backbone_channels)
    check_override_keys("sweep", "sweep", ["model=pillars_center", "model.backbone_channels=[8,16]",
                                           "-m", "grid.channels=[awgn],[rayleigh]"])  # fmt: skip
    check_override_keys("train", "train", ["model=pointpillars", "model.layer_nums=[3,5,8]"])
    with pytest.raises(SystemExit):
        check_override_keys("train", "train", ["model=pointpillars", "model.layer_numz=[3]"])
    assert "did you mean 'layer_nums'?" in capsys.readouterr().err
    check_override_keys("sweep", "sweep", ["--config-dir", "/my/conf", "my.own=1"])  # theirs
    check_override_keys("sweep", "sweep", ["--config-name", "sweep_main", "grid.snr_db=[0]"])
    check_override_keys("sweep", "sweep", ["--config-name", "no_such_config", "x.y=1"])


@pytest.mark.parametrize("app, arg, options", [
    ("sweep", "model=foo", "pillars_center, pointpillars"),
    ("train", "dataset=foo", "dair_v2x, opv2v, synthetic, v2xsim"),
])  # fmt: skip
def test_an_unknown_option_of_a_config_group_is_one_line_with_the_choices(capsys, app, arg,
                                                                         options):
    """``model=foo`` was Hydra's several lines; ``v2x-train dataset=foo`` said that train does
    not read the group it reads. Now: the field, the value and the group's options (from
    ``conf/<group>/``); a valid choice and a multirun list are left to Hydra."""
    from importlib.resources import files

    from v2x.cli import check_override_keys

    group, value = arg.split("=")
    on_disk = sorted(f.name[:-5] for f in (files("v2x.conf") / group).iterdir()
                     if f.name.endswith(".yaml"))  # fmt: skip
    assert ", ".join(on_disk) == options
    with pytest.raises(SystemExit) as stop:
        check_override_keys(app, app, [arg])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert err == (f"error: {app}: field '{group}' is 'foo', not an option of its config group "
                   f"(conf/{group}); valid choices: {options}\n")
    check_override_keys(app, app, [f"{group}={on_disk[0]}"])


@pytest.mark.parametrize(
    "module, arg, shown",
    [
        ("train", "train.stepz=3", "'train.stepz' is not a setting ('stepz' is not a field of "
                                   "'train'; did you mean 'steps'?"),
        ("eval", "data.num_frame=2", "did you mean 'num_frames'?"),
        ("plot", "reslts=[x]", "did you mean 'results'?"),
        ("train_codec", "codec_train.lr_=1", "did you mean 'lr'?"),
        ("generate", "splits.tset=3", "did you mean 'test'?"),
    ],
)  # fmt: skip
def test_every_app_names_a_misspelled_override_in_one_line(module, arg, shown, monkeypatch, capsys):
    import importlib
    import sys

    app = importlib.import_module(f"v2x.apps.{module}")
    monkeypatch.setattr(sys, "argv", [f"v2x-{module}", arg])
    with pytest.raises(SystemExit) as stop:
        app.main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and shown in err, err


def test_the_sweeps_eval_section_takes_dairs_3d_range_filter():
    """``eval.range_mode`` is a key of the sweep's YAML (no ``+``): DAIR-V2X's any-corner filter
    over its ``extended_range`` reaches the plan; without a 3D range it is refused by name."""
    dair = "[-10,-49.68,-3,79.12,49.68,1]"
    cfg = _compose("eval", ["eval.range_mode=any_corner", f"eval.eval_range={dair}"])
    plan = plan_sweep(cfg)
    assert plan.eval_config.range_mode == "any_corner"
    assert list(plan.eval_config.eval_range) == [-10, -49.68, -3, 79.12, 49.68, 1]
    with pytest.raises(ValueError, match="'any_corner' tests the 8 box corners in 3D"):
        plan_sweep(_compose("eval", ["eval.range_mode=any_corner"]))


@pytest.mark.parametrize(
    ("app", "arg", "hint"),
    [
        ("plot", "reslts=[x]", None),  # plot has no such section: no +key hint
        ("generate", "splits.tset=3", None),
        ("train", "train.stepz=3", "(data.reader) takes +train.stepz=… to add one"),
        ("sweep", "tabel=false",
         "(channel_options, codec_options, data.reader) takes +tabel=… to add one"),
    ],
)  # fmt: skip
def test_the_plus_key_hint_names_only_sections_the_apps_config_has(app, arg, hint, capsys):
    """``v2x-plot reslts=…`` was told that "(channel_options, codec_options, data.reader)" take
    ``+reslts=…``: sections v2x-plot's config does not have. The hint names those the app's
    config has, and is left out where it has none."""
    from v2x.cli import check_override_keys

    with pytest.raises(SystemExit):
        check_override_keys(app, app, [arg])
    err = capsys.readouterr().err
    assert "did you mean" in err
    if hint is None:
        assert "+" not in err and "channel_options" not in err, err
    else:
        assert err.rstrip().endswith(hint), err



def test_train_codec_says_what_its_gate_calibration_measures_before_measuring(
    tmp_path, monkeypatch, caplog
):
    """After its last training step v2x-train-codec calibrated the SNR gate for minutes on a
    CPU (AP at every SNR for every ratio and channel) without a word: it seemed hung. One line
    now says what is measured, with the config's counts, before the first measurement."""
    import v2x.codec_calibration as calibration
    from v2x.apps.train_codec import run_codec_training
    from v2x.semcom import build_codec

    seen: list[list[str]] = []

    def measured(pipe, frames, snr_db, iou_thresholds, batch_size, device):  # no AP to compute
        seen.append([r.getMessage() for r in caplog.records])
        return {float(t): [0.5] * len(snr_db) for t in iou_thresholds}

    monkeypatch.setattr(calibration, "ap_per_snr", measured)
    tiny = [
        "checkpoint=untrained",
        "model.grid.x_range_m=[-12.8,12.8]", "model.grid.y_range_m=[-12.8,12.8]",
        "model.pillar_channels=8", "model.backbone_channels=[8,16]", "model.backbone_layers=1",
        "model.feature_channels=8", "codec.hidden=8", "device=cpu", f"out={tmp_path / 'c.pt'}",
        "data.num_sequences=1", "data.frames_per_sequence=2",
        "val_data.num_sequences=1", "val_data.frames_per_sequence=2",
        "codec_train.steps=1", "codec_train.batch_size=2", "codec_train.amp=false",
        "codec_train.quiet=true", f"codec_train.log_path={tmp_path / 'log.csv'}",
        "calibrate.snr_db=[0,5,20]", "calibrate.channels=[awgn,rayleigh]",
    ]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="v2x.codec_calibration"):
        run_codec_training(_compose("train_codec", tiny))
    ratios = len(build_codec("deepjscc", in_channels=8, hidden=8).gate_ratios)
    assert (
        f"SNR gate: measuring AP on 2 frames at 3 SNRs for {ratios} ratios x 2 channel(s) with "
        "max fusion, and ego-only"
    ) in seen[0]


@pytest.mark.parametrize(
    ("module", "config", "example"),
    [("sweep", "sweep", "v2x-sweep grid.snr_db="), ("eval", "eval", "v2x-eval checkpoint="),
     ("train", "train", "torchrun --nproc_per_node=2"), ("train_codec", "train_codec", "init=shipped"),
     ("generate", "generate", "v2x-generate out_dir="), ("plot", "plot", "v2x-plot results="),
     ("link", "single_link", "v2x-link channel=rayleigh")],
)  # fmt: skip
def test_each_apps_help_says_what_it_does_with_examples_before_hydras_help(module, config, example):
    """``--help`` was Hydra's alone ("sweep is powered by Hydra." and the config): it now opens
    with the app's description and example command lines (its config's opening comment)."""
    import subprocess
    import sys

    from v2x.cli import app_description

    proc = subprocess.run([sys.executable, "-m", f"v2x.apps.{module}", "--help"],
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    description = app_description(config)
    name = "v2x-link" if module == "link" else f"v2x-{module.replace('_', '-')}"
    assert description.startswith(f"{name}: ") and example in description
    assert "#" not in description.splitlines()[0]
    assert proc.stdout.startswith(description + "\n") and "== Config ==" in proc.stdout
    # each app lists the groups it reads, not every one Hydra can see (only link reads channel)
    assert ("channel: awgn" in proc.stdout) == (module == "link")
    if module == "generate":
        groups = proc.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
        assert groups.strip().startswith("dataset: synthetic")
        assert not any(f"\n{g}: " in groups for g in ("channel", "codec", "link", "model"))


def _help_groups(template: str) -> dict[str, list[str]]:
    """The groups a help template lists (``group: option, option (note)`` at the start of a
    line of its "Configuration groups" section) with their options."""
    import re

    if "== Configuration groups ==" not in template:
        return {}
    section = template.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = {}
    for line in section.splitlines():
        if match := re.fullmatch(r"([\w@./-]+): ([^(]*)(\(.*)?", line):
            listed[match[1]] = [o.strip() for o in match[2].split(",") if o.strip()]
    return listed


def _app_configs() -> list[str]:
    from importlib.resources import files

    return sorted(p.name[:-5] for p in files("v2x.conf").iterdir() if p.name.endswith(".yaml"))


@pytest.mark.parametrize("config", _app_configs())
def test_each_apps_help_lists_exactly_the_config_groups_its_config_composes(config):
    """``v2x-train --help`` listed channel, codec and link, groups training never reads, and
    ``v2x-train channel=rayleigh`` then failed. Every app's config (and every variant run with
    ``--config-name``) has its own hand-written list: it must name exactly the groups its
    ``defaults`` compose, each option a file of that group's folder (the default among them),
    and must not fall back on Hydra's every-group list ($APP_CONFIG_GROUPS)."""
    from importlib.resources import files

    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="v2x.conf", version_base=None):
        hydra_cfg = compose(config, return_hydra_config=True).hydra
    template = hydra_cfg.help.template
    assert "$APP_CONFIG_GROUPS" not in template, f"{config}: Hydra's list of every group"
    choices = {g: c for g, c in hydra_cfg.runtime.choices.items() if not g.startswith("hydra/")}
    listed = _help_groups(template)
    assert set(listed) == set(choices), f"{config}: help lists {sorted(listed)}"
    for group, options in listed.items():
        folder = files("v2x.conf") / group.split("@")[0]
        on_disk = {p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")}
        assert options and set(options) <= on_disk, f"{config}: {group}: {options} vs {on_disk}"
        assert choices[group] is None or choices[group] in options, (config, group)


@pytest.mark.parametrize(
    ("module", "arg", "groups", "instead"),
    [
        ("train", "channel=rayleigh", "(dataset, model)", None),
        ("link", "codec=digital", "(link, channel)", None),
        ("sweep", "channel=rayleigh", "(dataset@data.synthetic, model)", "grid.channels"),
        ("eval", "link.distance_m=50", "(dataset@data.synthetic, model)", "network.link_models"),
        ("train_codec", "channel=awgn", "(codec, model)", "codec_train.channels"),
        ("plot", "model=pointpillars", None, None),
    ],
)  # fmt: skip
def test_a_group_the_app_does_not_read_is_named_with_the_groups_it_does(
    module, arg, groups, instead, monkeypatch, capsys
):
    """``v2x-train channel=rayleigh`` said "'channel' is not a setting" and advised
    ``+channel=…`` (which adds a key training never reads). The line now says that channel is a
    config group the app does not read, lists the groups it does, and where the app takes such
    a choice instead (a sweep's grid.channels), with no ``+key`` advice."""
    import importlib
    import sys

    app = importlib.import_module(f"v2x.apps.{module}")
    monkeypatch.setattr(sys, "argv", [f"v2x-{module}", arg])
    with pytest.raises(SystemExit) as stop:
        app.main()
    err = capsys.readouterr().err
    group = arg.split("=")[0].split(".")[0]
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(
        f"error: {module}: '{group}' is a config group (conf/{group}) that {module} does not read"
    ), err
    assert "+" not in err and "is not a setting" not in err, err
    assert (groups is None and "groups" not in err) or f"one of its groups {groups}" in err, err
    assert (instead is None and "choices go in" not in err) or f"go in {instead}" in err, err


def test_the_sweeps_plot_metric_is_checked_first_and_reaches_its_figures(tmp_path, monkeypatch):
    """``v2x-sweep plot_metric=…``: a name that is no AP metric is refused before the sweep
    runs (field, value, choices); a valid one is the metric of the job's figures."""
    import v2x.plots
    import v2x.sweep
    from v2x.apps.sweep import sweep_and_report
    from v2x.results import AP_METRICS

    ran, drawn = [], []
    result = tmp_path / "sweep-abc.parquet"
    monkeypatch.setattr(v2x.sweep, "run_sweep", lambda cfg: ran.append(cfg) or result)
    monkeypatch.setattr(v2x.plots, "make_plots",
                        lambda paths, out, metric=None, table=True: drawn.append((metric, out)) or [])
    cfg = {"output_dir": str(tmp_path), "table": False}
    with pytest.raises(ValueError) as refused:
        sweep_and_report({**cfg, "plot_metric": "ap_5"})
    assert not ran
    assert "field 'plot_metric' is 'ap_5'" in str(refused.value) and "ap_50" in str(refused.value)
    assert "ap_50" in AP_METRICS
    assert sweep_and_report({**cfg, "plot_metric": "ap_50"}) == result
    assert len(ran) == 1 and drawn == [("ap_50", str(tmp_path / "plots-abc-ap_50"))]
    # the default metric's figures keep their folder, so the two sets do not overwrite
    assert sweep_and_report(cfg) == result
    assert drawn[1] == (None, str(tmp_path / "plots-abc"))


def test_a_bare_word_on_the_command_line_is_named_with_the_command_meant(capsys):
    """``v2x-sweep lst`` was Hydra's "missing EQUAL at '<EOF>'"; now the word and the command.
    Overrides, flags, a flag's value and the command itself pass."""
    from v2x.cli import check_bare_words

    for argv in (["lst"], ["list", "foo"], ["grid.snr_db=[0]", "extra"]):
        with pytest.raises(SystemExit) as stop:
            check_bare_words("v2x-sweep", argv, ("list",))
        bad = [a for a in argv if a != "list" and "=" not in a][0]
        assert stop.value.code == 2
        assert capsys.readouterr().err == (f"error: v2x-sweep: '{bad}' is not an override; "
                                           "expected key=value; the command is v2x-sweep list\n")
    fine = ["list", "-m", "grid.snr_db=0,10", "--config-name", "sweep_main", "-cn", "sweep",
            "--cfg", "job", "--info", "config", "+eval.iou_mode=3d", "~plots_dir", "-c", "all"]
    check_bare_words("v2x-sweep", fine, ("list",))
    assert capsys.readouterr().err == ""
