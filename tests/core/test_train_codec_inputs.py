"""A new user's bad inputs to v2x-train-codec: refused before any frame is made or step runs, in
one message naming the config key, the value and what is expected; a codec that trained is
never lost (a save that fails at the end keeps the weights elsewhere and says where)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
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


# ------------------------------------------------------------------ 1. the files it writes
@pytest.mark.parametrize("slash", ["", "/"])
def test_an_out_that_is_a_folder_is_refused_before_training(tmp_path, no_work, slash):
    """It trained, then failed with a raw "[Errno 21] Is a directory" and lost the codec."""
    folder = tmp_path / "codecs"
    folder.mkdir()
    (folder / "kept.pt").write_bytes(b"a user's file")
    message = _refused(no_work, tmp_path, [f"out={folder}{slash}"])
    assert message == (
        f"train_codec: field 'out' is '{folder}{slash}', which is a folder; expected the path "
        f"of a file to write, e.g. out={folder / 'deepjscc.pt'}"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["kept.pt"]


def test_an_out_in_a_folder_that_cannot_be_made_names_the_key_out(tmp_path, no_work):
    """It was "the folder of field 'out_path'": the key is out."""
    blocker = tmp_path / "results.txt"
    blocker.write_text("a user's file\n")
    message = _refused(no_work, tmp_path, [f"out={blocker / 'c.pt'}"])
    assert message.startswith(f"train_codec: field 'out' is '{blocker / 'c.pt'}': ")
    assert f"'{blocker}' is a file, not a folder" in message and "out_path" not in message
    assert blocker.read_text() == "a user's file\n"


def test_a_log_path_that_is_a_folder_or_the_codec_file_is_refused(tmp_path, no_work):
    folder = tmp_path / "logs"
    folder.mkdir()
    message = _refused(no_work, tmp_path, [f"codec_train.log_path={folder}"])
    assert message.startswith(f"train_codec: field 'codec_train.log_path' is '{folder}', "
                              "which is a folder; expected the path of a file")  # fmt: skip
    message = _refused(no_work, tmp_path, [f"codec_train.log_path={tmp_path / 'c.pt'}"])
    assert f"field 'codec_train.log_path' is '{tmp_path / 'c.pt'}', the file that out" in message
    assert "expected another file for the training log" in message


def test_a_gate_report_path_that_is_a_folder_is_refused(tmp_path, no_work):
    (tmp_path / "c.gate.json").mkdir()
    message = _refused(no_work, tmp_path, [])
    assert f"field 'out' is '{tmp_path / 'c.pt'}', but its calibration report" in message


def test_out_with_a_tilde_is_written_in_the_home_folder(tmp_path, monkeypatch):
    """The folder checked was ~ expanded, the file saved at a literal ./~/…"""
    from v2x.apps.train_codec import output_files
    from v2x.codec_training import codec_train_config

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = _compose([*TINY, "out='~/codecs/c.pt'", "codec_train.log_path='~/codecs/log.csv'"])
    files = output_files(cfg, codec_train_config(cfg), train=True, calibrating=True)
    assert files.out_path == str(tmp_path / "home" / "codecs" / "c.pt")
    assert files.log_path == str(tmp_path / "home" / "codecs" / "log.csv")


def _tiny_training(tmp_path: Path, stop_at: int | None = None, stop=KeyboardInterrupt):
    from v2x.codec_training import CodecTrainConfig, train_codec_for_task
    from v2x.datasets.synthetic import generate_sequence
    from v2x.datasets.synthetic_config import SyntheticConfig
    from v2x.perception.detector import CoopDetector, DetectorConfig
    from v2x.semcom import build_codec

    torch.manual_seed(0)
    detector = CoopDetector(DetectorConfig(pillar_channels=8, backbone_channels=(8, 16),
                                           backbone_layers=1, feature_channels=8))  # fmt: skip
    codec = build_codec("deepjscc", in_channels=8, hidden=8)
    frames = list(generate_sequence(SyntheticConfig(), 3, 2))
    cfg = CodecTrainConfig(steps=2, batch_size=1, ratios=(1 / 8,), channels=("awgn",), amp=False,
                           quiet=True, out_path=str(tmp_path / "out" / "c.pt"),
                           log_path=str(tmp_path / "log.csv"))  # fmt: skip

    def sample(step, n):
        if step == stop_at:
            raise stop()
        return frames[:n]

    def run():
        train_codec_for_task(codec, detector, sample, cfg, torch.device("cpu"))

    return codec, cfg, run


def _disk_full_at(monkeypatch, paths: set[str]):
    import v2x.common

    save = v2x.common.atomic_torch_save

    def full(obj, path):
        if any(str(path).startswith(p) for p in paths):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return save(obj, path)

    monkeypatch.setattr(v2x.common, "atomic_torch_save", full)


def test_a_codec_whose_file_cannot_be_written_at_the_end_is_kept_and_named(tmp_path, monkeypatch):
    """A disk that fills during training cannot be checked up front: the trained weights were
    lost with the "No space left on device" traceback. They are kept in the temporary folder,
    and the message names out, the reason and the file that holds them."""
    import tempfile

    from v2x.semcom import build_codec

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    codec, cfg, run = _tiny_training(tmp_path)
    _disk_full_at(monkeypatch, {str(tmp_path / "out")})
    with pytest.raises(OSError) as caught:
        run()
    message = str(caught.value)
    kept = list((tmp_path / "tmp").glob("c.rescued-*.pt"))
    assert len(kept) == 1
    assert message == (
        f"train_codec: field 'out' is '{cfg.out_path}': the trained codec could not be written "
        f"there (No space left on device); the trained weights are kept in {kept[0]} (copy it to "
        f"{cfg.out_path}, or calibrate it with init={kept[0]} train=false)"
    )
    assert caught.value.filename == cfg.out_path  # (the apps print it in one line)
    loaded = build_codec("deepjscc", in_channels=8, hidden=8, checkpoint=str(kept[0]))
    for name, value in codec.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value.cpu()), name


def test_a_codec_that_cannot_be_kept_anywhere_says_so(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.chdir(tmp_path)
    codec, cfg, run = _tiny_training(tmp_path)
    _disk_full_at(monkeypatch, {str(tmp_path)})
    with pytest.raises(OSError, match=r"could not be written there \(No space left on device\); "
                                      r"the trained weights could not be kept elsewhere either "
                                      rf"\({tmp_path / 'tmp'}: No space left"):  # fmt: skip
        run()
    assert not list(tmp_path.rglob("*.rescued-*"))  # no empty file left behind


@pytest.mark.parametrize("signal_name", ["KeyboardInterrupt", "Terminated"])
def test_an_interrupted_training_saves_the_steps_done_and_says_how_to_resume(tmp_path,
                                                                              signal_name):  # fmt: skip
    """Ctrl-C (or SIGTERM, a Slurm time limit) lost every step done ("interrupted (nothing to
    save yet)"). The codec of the steps done is saved to out, and the interrupt, of the same
    type (the exit status tells SIGTERM apart), says how to resume."""
    from v2x.cli import Terminated
    from v2x.semcom import build_codec

    stop = {"KeyboardInterrupt": KeyboardInterrupt, "Terminated": Terminated}[signal_name]
    codec, cfg, run = _tiny_training(tmp_path, stop_at=1, stop=stop)
    with pytest.raises(stop) as caught:
        run()
    assert type(caught.value) is stop
    assert str(caught.value) == (
        f"train_codec: interrupted after step 0 (steps = 2): the codec trained so far is saved "
        f"in {cfg.out_path}; resume with init={cfg.out_path} codec_train.start_step=1 (its "
        f"log, {cfg.log_path}, goes on from that step)"
    )
    saved = build_codec("deepjscc", in_channels=8, hidden=8, checkpoint=cfg.out_path)
    for name, value in codec.state_dict().items():
        assert torch.equal(saved.state_dict()[name], value.cpu()), name
    # before any step there is nothing to save: the interrupt passes as it came
    codec, cfg, run = _tiny_training(tmp_path / "early", stop_at=0, stop=stop)
    with pytest.raises(stop) as caught:
        run()
    assert str(caught.value) == "" and not Path(cfg.out_path).exists()


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
        # split into letters: "must list channels of …, got ['a', 'w', 'g', 'n']"
        ("calibrate.channels=awgn", "'awgn'; expected a list, e.g. calibrate.channels=[awgn]"),
        # Hydra's traceback: TypeError: 'int' object is not iterable
        ("calibrate.snr_db=5", "5; expected a list, e.g. calibrate.snr_db=[5]"),
        ("calibrate.iou_thresholds=0.5", "0.5; expected a list, e.g. calibrate.iou_thresholds=[0.5]"),
    ],
)  # fmt: skip
def test_a_single_value_where_codec_train_or_calibrate_takes_a_list_is_refused(
    tmp_path, no_work, override, shown
):
    field = override.split("=")[0]
    assert _refused(no_work, tmp_path, [override]) == f"train_codec: field '{field}' is {shown}"


def test_ratio_weights_null_and_lists_still_train(tmp_path, no_work):
    cfg = _compose([*TINY, f"out={tmp_path / 'c.pt'}", "codec_train.ratio_weights=null",
                    "codec_train.channels=[awgn]", "codec_train.ratios=[0.25]",
                    f"codec_train.log_path={tmp_path / 'log.csv'}"])  # fmt: skip
    with pytest.raises(AssertionError, match="frames made or training started"):
        no_work.run_codec_training(cfg)


def test_codec_train_out_path_names_the_key_out(tmp_path, no_work):
    """``+codec_train.out_path=…`` was "got multiple values for keyword argument 'out_path'"."""
    assert _refused(no_work, tmp_path, ["+codec_train.out_path=x.pt"]) == (
        "train_codec: field 'codec_train.out_path' is 'x.pt'; the codec's file is set by the "
        "top-level key out, e.g. out=x.pt"
    )


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


# ------------------------------------------------------------------ the codec section
@pytest.mark.parametrize(
    "override, expected",
    [
        # TypeError tracebacks: "'<' not supported between instances of 'str' and 'int'",
        # "__init__() got an unexpected keyword argument 'bogus'", and for identity a traceback
        ("codec.hidden=abc", "train_codec: field 'codec.hidden' is 'abc'; expected int | None"),
        ("+codec.bogus=1", "train_codec: field 'codec' has unknown field(s) ['bogus'] for codec "
                           "'deepjscc'; valid: ['bandwidth_ratio', "),
        ("codec.name=identity", "train_codec: field 'codec.name' is 'identity', which is not "
                                "trainable"),
        ("codec.name=bogus", "train_codec: field 'codec.name' is 'bogus': unknown codec 'bogus'; "
                             "valid choices: "),
        # "deepjscc: checkpoint /nope.pt does not exist", naming no key
        ("codec.checkpoint=/nope.pt", "train_codec: field 'codec.checkpoint' is '/nope.pt', "
                                      "which does not exist; expected a readable codec checkpoint"),
        ("codec.hidden=-1", "train_codec: field 'codec' (deepjscc): deepjscc: 'in_channels' and "
                            "'hidden' must be ≥ 1"),
    ],
)  # fmt: skip
def test_a_bad_codec_section_is_refused_naming_its_field(tmp_path, no_work, override, expected):
    assert _refused(no_work, tmp_path, [override]).startswith(expected)


def test_neither_training_nor_calibrating_is_refused(tmp_path, no_work):
    """It built the codec and printed "codec checkpoint: <out>" without writing one."""
    init = tmp_path / "init.pt"
    init.write_bytes(b"")
    message = _refused(no_work, tmp_path, ["train=false", "calibrate.enabled=false",
                                           f"init={init}"])  # fmt: skip
    assert message == (
        "train_codec: field 'train' is false and field 'calibrate.enabled' is false: nothing "
        f"would be written to out ({tmp_path / 'c.pt'}); expected train=true, or "
        "calibrate.enabled=true to calibrate the gate of init's weights"
    )


# ------------------------------------------------------------------ 5. the app's prefix
def test_deterministic_that_is_not_a_switch_names_the_app(tmp_path, no_work):
    assert _refused(no_work, tmp_path, ["deterministic=2"]) == (
        "train_codec: field 'deterministic' must be true or false, got 2"
    )
