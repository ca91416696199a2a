"""A new user's bad inputs to v2x-train-codec: refused before any frame is made or step runs, in
one message naming the config key, the value and what is expected; a codec that trained is
never lost (a save that fails at the end keeps the weights elsewhere and says where)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

TINY = [
    "checkpoint=untrained", "model.pillar_channels=8", "model.backbone_channels=[8,16]",
    "model.backbone_layers=1", "model.feature_channels=8", "codec.hidden=8", "device=cpu",
]  # fmt: skip


def _compose(overrides: list[str]):
    with initialize_config_module(config_module="v2x.conf", version_base=None):
        return compose(config_name="train_codec", overrides=overrides)


@pytest.fixture
def no_work(monkeypatch):
    """The app, with training and the frames replaced by a failure: a check that passes them
    comes too late."""
    import v2x.apps.train_codec as app

    def untrained(*args, **kwargs):
        raise AssertionError("frames made or training started before the input was checked")

    monkeypatch.setattr(app, "train_codec_for_task", untrained)
    monkeypatch.setattr(app, "load_training_frames", untrained)
    return app


def _refused(app, tmp_path: Path, overrides: list[str]) -> str:
    cfg = _compose([*TINY, f"out={tmp_path / 'c.pt'}",
                    f"codec_train.log_path={tmp_path / 'log.csv'}", *overrides])  # fmt: skip
    with pytest.raises(ValueError) as caught:
        app.run_codec_training(cfg)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("train_codec: field '")
    return message


# ------------------------------------------------------------------ 2, 3. a value for a list
@pytest.mark.parametrize(
    "override, shown",
    [
        # split into letters: "field 'channels' entry 'a' is unknown"
        ("codec_train.channels=awgn", "'awgn'; expected a list, e.g. codec_train.channels=[awgn]"),
        ("codec_train.fusions=max", "'max'; expected a list, e.g. codec_train.fusions=[max]"),
        # Hydra's traceback: TypeError: 'float' object is not iterable
        ("codec_train.ratios=0.25", "0.25; expected a list, e.g. codec_train.ratios=[0.25]"),
        ("codec_train.snr_range_db=10", "10; expected a list, e.g. codec_train.snr_range_db=[10]"),
        ("codec_train.ratio_weights=1", "1; expected a list, e.g. codec_train.ratio_weights=[1]"),
        ("codec_train.ratios=null", "null; expected a list, e.g. codec_train.ratios=[…]"),
    ],
)  # fmt: skip
def test_a_single_value_where_codec_train_takes_a_list_is_refused(tmp_path, no_work, override,
                                                                   shown):  # fmt: skip
    field = override.split("=")[0]
    assert _refused(no_work, tmp_path, [override]) == f"train_codec: field '{field}' is {shown}"


def test_ratio_weights_null_and_lists_still_train(tmp_path, no_work):
    cfg = _compose([*TINY, f"out={tmp_path / 'c.pt'}", "codec_train.ratio_weights=null",
                    "codec_train.channels=[awgn]", "codec_train.ratios=[0.25]",
                    f"codec_train.log_path={tmp_path / 'log.csv'}"])  # fmt: skip
    with pytest.raises(AssertionError, match="frames made or training started"):
        no_work.run_codec_training(cfg)


# ------------------------------------------------------------------ 4. checkpoints it reads
@pytest.mark.parametrize("key", ["checkpoint", "init"])
@pytest.mark.parametrize("kind", ["missing", "folder", "garbage"])
def test_a_checkpoint_key_that_names_no_readable_file_is_refused(tmp_path, no_work, key, kind):
    """``init=/nope.pt`` was "deepjscc: checkpoint /nope.pt does not exist", naming no key; a
    folder was said not to exist; ``checkpoint=/nope.pt`` named no key either."""
    value = {"missing": tmp_path / "nope.pt", "folder": tmp_path,
             "garbage": tmp_path / "notes.txt"}[kind]  # fmt: skip
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    message = _refused(no_work, tmp_path, [f"{key}={value}"])
    what = "detector" if key == "checkpoint" else "codec"
    start = f"train_codec: field '{key}' is '{value}'"
    if kind == "missing":
        assert message.startswith(f"{start}, which does not exist; expected a readable {what} "
                                  "checkpoint file")  # fmt: skip
    elif kind == "folder":
        assert message.startswith(f"{start}, a folder; expected a readable {what} checkpoint")
    else:
        assert message.startswith(f"{start}: ") and "cannot be read" in message


def test_the_detector_checkpoint_is_checked_before_the_detector_is_built(tmp_path, no_work,
                                                                       monkeypatch):  # fmt: skip
    def never(*args, **kwargs):
        raise AssertionError("the detector was built before 'checkpoint' was checked")

    monkeypatch.setattr(no_work, "detector_from", never)
    message = _refused(no_work, tmp_path, [f"checkpoint={tmp_path / 'nope.pt'}"])
    assert "field 'checkpoint'" in message


# ------------------------------------------------------------------ 5. the app's prefix
def test_deterministic_that_is_not_a_switch_names_the_app(tmp_path, no_work):
    assert _refused(no_work, tmp_path, ["deterministic=2"]) == (
        "train_codec: field 'deterministic' must be true or false, got 2"
    )
