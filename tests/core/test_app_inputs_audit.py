"""Bad settings of v2x-train, v2x-train-codec and the sweep's network / budget sections are
refused before any work, with one message naming the field and the value (NaN passes every
plain comparison: such checks used to let it train, calibrate or share the budget)."""

from __future__ import annotations

import math

import pytest
from hydra import compose, initialize_config_module

from v2x.codec_calibration import check_calibration
from v2x.codec_training import CodecTrainConfig, check_task_settings
from v2x.network import NetworkConfig
from v2x.perception.train import TrainConfig
from v2x.scheduling import BudgetConfig

NAN, INF = float("nan"), float("inf")


def _compose(name: str, overrides: list[str]):
    with initialize_config_module(config_module="v2x.conf", version_base=None):
        return compose(config_name=name, overrides=overrides)


# ------------------------------------------------------------------ v2x-train
@pytest.mark.parametrize(
    "kw, field, shown",
    [
        ({"mode_weights": (-1, 1, 1, 1, 1)}, "train.mode_weights", "-1"),
        ({"mode_weights": (NAN, 1, 1, 1, 1)}, "train.mode_weights", "nan"),
        ({"mode_weights": (INF, 1, 1, 1, 1)}, "train.mode_weights", "inf"),
        ({"mode_weights": (0, 0, 0, 0, 0)}, "train.mode_weights", "[0, 0, 0, 0, 0]"),
        ({"mode_weights": (1,)}, "train.mode_weights", "[1]"),
        ({"modes": (), "mode_weights": ()}, "train.modes", "[]"),
        ({"modes": ("bogus",), "mode_weights": (1,)}, "train.modes", "'bogus'"),
        ({"augment_flip_prob": NAN}, "train.augment_flip_prob", "nan"),
        ({"augment_rotation_rad": NAN}, "train.augment_rotation_rad", "nan"),
        ({"augment_rotation_rad": INF}, "train.augment_rotation_rad", "inf"),
        ({"augment_scale_range": (1.0, INF)}, "train.augment_scale_range", "[1.0, inf]"),
        ({"augment_scale_range": (1.0,)}, "train.augment_scale_range", "[1.0]"),
        ({"seed": NAN}, "train.seed", "nan"),
        ({"seed": -1}, "train.seed", "-1"),
        ({"seed": 1.5}, "train.seed", "1.5"),
    ],
)
def test_train_config_refuses_naming_field_and_value(kw, field, shown):
    with pytest.raises(ValueError) as err:
        TrainConfig(**kw)
    assert f"field '{field}'" in str(err.value) and shown in str(err.value)


@pytest.mark.parametrize(
    "override, field",
    [
        ("val.batch_size=0", "val.batch_size"),
        ("val.num_sequences=nan", "val.num_sequences"),
        ("val.seed=-1", "val.seed"),
        ("val.fusion=bogus", "val.fusion"),
        ("val.metric=bogus", "val.metric"),
    ],  # fmt: skip
)
def test_train_app_refuses_a_bad_val_section_before_loading_frames(
    tmp_path, monkeypatch, override, field
):
    import v2x.apps.train as app

    def no_frames(*args, **kwargs):
        raise AssertionError("frames loaded before the val section was checked")

    monkeypatch.setattr(app, "load_training_frames", no_frames)
    cfg = _compose("train", ["train.val_every=1", f"train.out_dir={tmp_path}", override])
    with pytest.raises(ValueError, match=rf"field '{field}'.*{override.split('=')[1]}"):
        app.run_training(cfg)


@pytest.mark.parametrize(
    "data", [["data.source=v2xsim", "data.path=/nowhere"], ["dataset=dair_v2x"],
             ["data.source=store", "data.path=/nowhere"]],
)  # fmt: skip
def test_train_app_refuses_validation_it_would_skip_on_other_data(tmp_path, monkeypatch, data):
    # validation runs on synthetic towns only: on real data or a store val_every was ignored
    # (no val.csv, no best.pt, no word)
    import v2x.apps.train as app

    def no_frames(*args, **kwargs):
        raise AssertionError("frames loaded before train.val_every was checked")

    monkeypatch.setattr(app, "load_training_frames", no_frames)
    cfg = _compose("train", ["train.val_every=5", f"train.out_dir={tmp_path}", *data])
    with pytest.raises(ValueError, match=r"field 'train.val_every' is 5, but validation runs on "
                                         r"synthetic towns only"):  # fmt: skip
        app.run_training(cfg)


def test_train_app_accepts_real_data_without_validation(tmp_path, monkeypatch):
    import v2x.apps.train as app

    monkeypatch.setattr(app, "load_training_frames", lambda *a, **k: ["a frame"])
    monkeypatch.setattr(app, "train_detector", lambda *a, **k: "ran")
    cfg = _compose("train", ["data.source=v2xsim", "data.path=/nowhere",
                             f"train.out_dir={tmp_path}"])  # fmt: skip
    assert app.run_training(cfg) == "ran"


# ------------------------------------------------------------------ v2x-train-codec
@pytest.mark.parametrize(
    "kw, field, shown",
    [
        ({"lr": NAN}, "lr", "nan"),
        ({"lr": INF}, "lr", "inf"),
        ({"distill_weight": -1.0}, "distill_weight", "-1"),
        ({"reconstruction_weight": NAN}, "reconstruction_weight", "nan"),
        ({"erasure_prob_max": 1.5}, "erasure_prob_max", "1.5"),
        ({"erasure_prob_max": NAN}, "erasure_prob_max", "nan"),
        ({"max_seconds": -1.0}, "max_seconds", "-1"),
        ({"max_seconds": NAN}, "max_seconds", "nan"),
        ({"snr_range_db": (10.0, -10.0)}, "snr_range_db", "[10.0, -10.0]"),
        ({"snr_range_db": (NAN, 10.0)}, "snr_range_db", "nan"),
        ({"snr_range_db": (0.0,)}, "snr_range_db", "[0.0]"),
        ({"ratios": ()}, "ratios", "[]"),
        ({"ratios": (NAN,)}, "ratios", "nan"),
        ({"ratios": (0.25, 0.5), "ratio_weights": (1,)}, "ratio_weights", "[1]"),
        ({"ratios": (0.25, 0.5), "ratio_weights": (-1, 1)}, "ratio_weights", "[-1, 1]"),
        ({"ratios": (0.25, 0.5), "ratio_weights": (0, 0)}, "ratio_weights", "[0, 0]"),
        ({"channels": ()}, "channels", "[]"),
        ({"fusions": ()}, "fusions", "[]"),
        ({"start_step": 1.5}, "start_step", "1.5"),
        ({"start_step": 5, "steps": 5}, "start_step", "5"),
        ({"seed": -1}, "seed", "-1"),
    ],
)
def test_codec_train_config_refuses_naming_field_and_value(kw, field, shown):
    with pytest.raises(ValueError) as err:
        CodecTrainConfig(**kw)
    assert f"train_codec: field 'codec_train.{field}'" in str(err.value) and shown in str(err.value)


def test_codec_task_settings_check_ratio_range_and_names_before_training():
    class Codec:  # the deepjscc contract: check_ratio raises outside its range
        def check_ratio(self, ratio):
            if not 1 / 512 <= ratio <= 0.25:
                raise ValueError(f"'bandwidth_ratio' = {ratio} is outside the valid range")
            return ratio

    with pytest.raises(ValueError, match=r"train_codec: field 'codec_train.ratios' entry 0.5"):
        check_task_settings(Codec(), CodecTrainConfig(ratios=(0.5,)))
    with pytest.raises(ValueError, match=r"train_codec: field 'codec_train.channels' entry 'bogus'"):
        check_task_settings(Codec(), CodecTrainConfig(channels=("bogus",)))
    with pytest.raises(ValueError, match=r"train_codec: field 'codec_train.fusions' entry 'bogus'"):
        check_task_settings(Codec(), CodecTrainConfig(fusions=("bogus",)))
    check_task_settings(Codec(), CodecTrainConfig())


@pytest.mark.parametrize(
    "kw, field, shown",
    [
        ({"snr_db": [NAN, 20]}, "snr_db", "nan"),
        ({"snr_db": [INF]}, "snr_db", "inf"),
        ({"snr_db": []}, "snr_db", "[]"),
        ({"snr_db": [20, 20]}, "snr_db", "[20, 20]"),
        ({"channels": []}, "channels", "[]"),
        ({"channels": ["bogus"]}, "channels", "'bogus'"),
        ({"iou_thresholds": []}, "iou_thresholds", "[]"),
        ({"iou_thresholds": [NAN]}, "iou_thresholds", "nan"),
        ({"iou_thresholds": [1.5]}, "iou_thresholds", "1.5"),
        ({"fusion": "bogus"}, "fusion", "'bogus'"),
        ({"margin": NAN}, "margin", "nan"),
        ({"margin": -1}, "margin", "-1"),
        ({"batch_size": 0}, "batch_size", "0"),
        ({"batch_size": 1.5}, "batch_size", "1.5"),
    ],
)
def test_calibration_settings_are_refused_naming_field_and_value(kw, field, shown):
    with pytest.raises(ValueError) as err:
        check_calibration(**kw)
    assert f"train_codec: field 'calibrate.{field}'" in str(err.value) and shown in str(err.value)


@pytest.mark.parametrize(
    "override, match",
    [
        ("calibrate.margin=nan", "train_codec: field 'calibrate.margin'.*nan"),
        ("calibrate.channels=[]", "train_codec: field 'calibrate.channels'"),
        ("calibrate.enabled=maybe", "train_codec: field 'calibrate.enabled'.*maybe"),
        ("codec_train.lr=nan", "train_codec: field 'codec_train.lr'.*nan"),
        (
            "codec_train.ratios=[0.5];codec_train.ratio_weights=null",
            "train_codec: field 'codec_train.ratios' entry 0.5",
        ),
        ("codec_train.ratio_weights=null", None),
    ],  # fmt: skip
)
def test_train_codec_app_refuses_before_training(tmp_path, monkeypatch, override, match):
    import v2x.apps.train_codec as app

    def untrained(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(app, "train_codec_for_task", untrained)
    monkeypatch.setattr(app, "load_training_frames", untrained)
    cfg = _compose("train_codec", [
        "checkpoint=untrained", "model.pillar_channels=8", "model.backbone_channels=[8,16]",
        "model.backbone_layers=1", "model.feature_channels=8", "codec.hidden=8", "device=cpu",
        f"out={tmp_path / 'c.pt'}", f"codec_train.log_path={tmp_path / 'log.csv'}",
        *override.split(";"),
    ])  # fmt: skip
    if match is None:  # a good setting reaches the frames
        with pytest.raises(AssertionError, match="training started"):
            app.run_codec_training(cfg)
        return
    with pytest.raises(ValueError, match=match):
        app.run_codec_training(cfg)


# ------------------------------------------------------------------ sweep: network and budget
@pytest.mark.parametrize(
    "data, match",
    [
        ({"seed": NAN}, "network: field 'seed' must be a whole number >= 0, got nan"),
        ({"seed": 1.5}, "network: field 'seed' must be a whole number >= 0, got 1.5"),
        ({"shadowing": "maybe"}, "network: field 'shadowing' must be true or false, got 'maybe'"),
        ({"radios": {"vehicle": {"num_antennas": NAN}}}, "field 'num_antennas'.*got nan"),
        ({"radios": {"vehicle": {"num_antennas": 1.5}}}, "field 'num_antennas'.*got 1.5"),
        (
            {"link_options": {"v2v_urban": {"blocker_height_m": NAN}}},
            "network: field 'link_options.v2v_urban'.*'blocker_height_m' is nan",
        ),
        (
            {"link_options": {"thz": {"beamwidth_deg": NAN}}},
            "network: field 'link_options.thz'.*'beamwidth_deg' is nan",
        ),
        ({"link_options": {"v2v_urban": {"bogus": 1}}}, "link_options.v2v_urban.*bogus"),
        ({"link_options": {"bogus_model": {}}}, "link_options.bogus_model' names no link model"),
    ],
)
def test_network_config_refuses_at_planning(data, match):
    with pytest.raises(ValueError, match=match):
        NetworkConfig.from_dict(data)


def test_network_link_options_that_are_good_still_plan():
    cfg = NetworkConfig.from_dict({"link_options": {
        "al_hourani": {"environment": "dense_urban"}, "thz": {"beamwidth_deg": 3},
        "v2v_urban": {"radio": {"tx_power_dbm": 20.0}}}})  # fmt: skip
    assert cfg.link_options["thz"] == {"beamwidth_deg": 3}


@pytest.mark.parametrize(
    "data, match",
    [
        ({"alpha": NAN}, "budget: field 'alpha' is nan"),
        ({"beta": INF}, "budget: field 'beta' is inf"),
        ({"beta": -1}, "budget: field 'beta' is -1; expected a finite number >= 0"),
        ({"scheduler": "bogus"}, "budget: field 'scheduler' is 'bogus'; valid choices"),
    ],
)
def test_budget_config_refuses_bad_scheduler_settings(data, match):
    with pytest.raises(ValueError, match=match):
        BudgetConfig.from_dict(data)
    assert math.isfinite(BudgetConfig.from_dict({"alpha": 0, "beta": 2}).beta)


@pytest.mark.parametrize(
    "override, match",
    [
        ("val_data.seed=-1", "train_codec: field 'val_data.seed'.*-1"),
        ("val_data.source=bogus", "train_codec: field 'val_data.source'.*bogus"),
        ("val_data.source=store", "train_codec: field 'val_data.path'"),
        ("data.seed=-1", "train_codec: field 'data.seed'.*-1"),
    ],
)
def test_train_codec_app_reads_its_calibration_frames_before_training(
    tmp_path, monkeypatch, override, match
):
    """The calibration's ``val_data`` was read only after the codec had trained: a bad section
    lost the whole training run. Now both frame sections are refused before it starts."""
    import v2x.apps.train_codec as app

    def untrained(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(app, "train_codec_for_task", untrained)
    cfg = _compose("train_codec", [
        "checkpoint=untrained", "model=pillars_center", "codec.hidden=8", "device=cpu",
        f"out={tmp_path / 'c.pt'}", f"codec_train.log_path={tmp_path / 'log.csv'}",
        "val_data.num_sequences=1", "val_data.frames_per_sequence=1",
        "data.num_sequences=1", "data.frames_per_sequence=2", "codec_train.batch_size=1",
        override,
    ])  # fmt: skip
    with pytest.raises(ValueError, match=match):
        app.run_codec_training(cfg)


@pytest.mark.parametrize(
    "app, overrides, match",
    [
        ("train", ["+train.bogus=1"], r"^train: field 'train': unknown field\(s\) \['bogus'\]"),
        ("train", ["+dataset.name=bogus"], r"^train: field 'dataset.name' .* is 'bogus'; valid"),
        ("train_codec", ["train=false"], r"^train_codec: field 'init' is not set"),
        ("train_codec", ["+calibrate.bogus=1"],
         r"^train_codec: field 'calibrate' has unknown field\(s\) \['bogus'\]"),
    ],
)  # fmt: skip
def test_the_train_apps_prefix_their_messages_as_the_other_apps(app, overrides, match):
    """``train config: 'train'`` beside ``train: field 'train.out_dir'``: the train apps' own
    messages now open as the sweep's do, ``<app>: field '<section>.<key>'``."""
    import v2x.apps.train as train
    import v2x.apps.train_codec as train_codec

    run = train.run_training if app == "train" else train_codec.run_codec_training
    extra = ["checkpoint=untrained", "model=pillars_center", "device=cpu"]
    cfg = _compose(app, [*(extra if app == "train_codec" else []), *overrides])
    with pytest.raises(ValueError, match=match):
        run(cfg)


# ------------------------------------------------------------------ v2x-train: a new user's runs
TINY_TRAIN = [
    "model.pillar_channels=8", "model.backbone_channels=[8,16]", "model.backbone_layers=1",
    "model.feature_channels=8", "data.num_sequences=1", "data.frames_per_sequence=2",
    "train.batch_size=2", "train.amp=false", "train.steps=2", "train.device=cpu",
    "train.quiet=true",
]  # fmt: skip


@pytest.mark.parametrize(
    "override, match",
    [
        # torch's "Expected one of cpu, cuda, ipu, xpu, … device type" traceback
        ("train.device=gpu", r"field 'train.device' is 'gpu'; expected auto, cpu, cuda"),
        # read as true: a run the user asked not to resume was resumed
        ("resume=maybe", r"field 'resume' must be true or false, got 'maybe'"),
        # split into letters: "entry 'm' is not a training mode"
        ("train.modes=max", r"field 'train.modes' is 'max'; expected a list, e.g. train.modes=\[max\]"),
        # split into letters: every weight whose name starts with p, a, y, … was trained
        ("train.trainable=payload_adapters.", r"field 'train.trainable' is 'payload_adapters.'"),
        # "checkpoint /nope.pt does not exist", naming no field, after the frames were made
        ("train.init_checkpoint=/nope.pt", r"field 'train.init_checkpoint' is '/nope.pt': no such file"),
        # the default pct_start with 10 steps: "train: 'pct_start' must be …" after the frames
        ("train.steps=10", r"field 'train.pct_start' is 0.1, which with train.steps=10 .* e.g. 0.15"),
        ("deterministic=2", r"^train: field 'deterministic' must be true or false, got 2"),
    ],
)  # fmt: skip
def test_train_app_refuses_a_new_users_bad_override_before_making_frames(
    tmp_path, monkeypatch, override, match
):
    import v2x.apps.train as app

    def no_frames(*args, **kwargs):
        raise AssertionError("frames made before the setting was checked")

    monkeypatch.setattr(app, "load_training_frames", no_frames)
    cfg = _compose("train", [*TINY_TRAIN, f"train.out_dir={tmp_path / 'run'}", override])
    with pytest.raises(ValueError, match=match):
        app.run_training(cfg)


def test_train_app_keeps_a_finished_run_and_names_what_differs_from_it(tmp_path, monkeypatch):
    """A tiny run, then what a new user tries next. Resuming it under another model listed the
    whole model section twice (hundreds of characters); it names the one field that differs.
    ``resume=false`` over it overwrote its last.pt and appended a second run's rows to its
    log.csv (steps 0, 1, 0, 1); it is refused and both files are kept as they were. A checkpoint
    of another model as ``init_checkpoint`` named no field ("Error(s) in loading state_dict");
    it names the model fields that differ. All before any frame is made."""
    import v2x.apps.train as app

    out = tmp_path / "run"
    last = app.run_training(_compose("train", [*TINY_TRAIN, f"train.out_dir={out}"]))
    assert last == out / "last.pt"
    kept = {p.name: p.read_bytes() for p in out.iterdir()}
    log_steps = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert log_steps == ["0", "1"]

    def no_frames(*args, **kwargs):
        raise AssertionError("frames made before the run's settings were checked")

    monkeypatch.setattr(app, "load_training_frames", no_frames)
    with pytest.raises(ValueError) as caught:
        app.run_training(_compose("train", [*TINY_TRAIN, f"train.out_dir={out}",
                                            "model.feature_channels=16"]))  # fmt: skip
    message = str(caught.value)
    assert "model.feature_channels: 8 there, 16 here" in message
    assert "pillar_channels" not in message and len(message) < 400
    with pytest.raises(ValueError, match=r"field 'resume' is false, but field 'train.out_dir'"):
        app.run_training(_compose("train", [*TINY_TRAIN, f"train.out_dir={out}", "resume=false"]))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == kept
    with pytest.raises(ValueError) as caught:
        app.run_training(_compose("train", [
            *TINY_TRAIN, f"train.out_dir={tmp_path / 'new'}", f"train.init_checkpoint={last}",
            "model.feature_channels=16",
        ]))  # fmt: skip
    message = str(caught.value)
    assert "field 'train.init_checkpoint'" in message and str(last) in message
    assert "model.feature_channels: 8 there, 16 here" in message
