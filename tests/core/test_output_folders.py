"""The folders the apps write into are refused up front, in one line naming the field, the value
and what is in the way, before any work they would hold is computed."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from v2x.output_folders import writable_file, writable_folder


def _a_file(tmp_path: Path) -> Path:
    blocker = tmp_path / "results.txt"
    blocker.write_text("a user's file\n")
    return blocker


def test_a_missing_folder_is_made_with_its_parents_and_left_empty(tmp_path, monkeypatch):
    target = tmp_path / "a" / "b" / "c"
    assert writable_folder(target, "x: field 'out'") == target
    assert target.is_dir() and os.listdir(target) == []  # the write check left nothing
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert writable_folder("~/runs", "x: field 'out'") == tmp_path / "home" / "runs"
    assert (tmp_path / "home" / "runs").is_dir()


@pytest.mark.parametrize("below", [False, True])
def test_a_file_where_the_folder_or_a_parent_would_be_is_named(tmp_path, below):
    blocker = _a_file(tmp_path)
    value = str(blocker / "sub" if below else blocker)
    with pytest.raises(ValueError) as info:
        writable_folder(value, "sweep: field 'output_dir'")
    message = str(info.value)
    assert message.startswith(f"sweep: field 'output_dir' is {value!r}: ")
    assert f"{str(blocker)!r} is a file, not a folder" in message
    assert "expected a folder this process can make and write into" in message
    assert "\n" not in message
    assert blocker.read_text() == "a user's file\n"  # untouched


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_a_folder_the_system_will_not_make_gives_its_reason():
    with pytest.raises(ValueError, match=r"'/proc/v2x-out': cannot make or write a folder there "
                                         r"\(No such file or directory\)"):  # fmt: skip
        writable_folder("/proc/v2x-out", "sweep: field 'output_dir'")


def test_a_folder_that_cannot_be_written_gives_the_systems_reason(tmp_path, monkeypatch):
    """(A read-only folder, as a user without root would meet it; root may write anywhere.)"""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(ValueError, match=r"\(Permission denied\)") as info:
        writable_folder(tmp_path, "train: field 'train.out_dir'")
    assert isinstance(info.value.__cause__, PermissionError)


def test_a_sweep_refuses_its_output_folder_before_reading_a_frame(tmp_path, monkeypatch):
    import v2x.sweep as sweep
    from tests.core.test_sweep import tiny_config

    def never(*args, **kwargs):
        raise AssertionError("frames read before the output folder was checked")

    monkeypatch.setattr(sweep, "FrameStream", never)
    blocker = _a_file(tmp_path)
    cfg = tiny_config(tmp_path / "cache", blocker / "out")
    with pytest.raises(ValueError, match=r"sweep: field 'output_dir' is .*results\.txt/out'"):
        sweep.run_sweep(cfg)


def test_a_file_to_write_is_refused_when_it_is_a_folder_and_kept_otherwise(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    folder.mkdir()
    for value in (str(folder), f"{folder}/"):
        with pytest.raises(ValueError) as info:
            writable_file(value, "x: field 'out'", example=f"out={folder / 'c.pt'}")
        assert str(info.value) == (f"x: field 'out' is {value!r}, which is a folder; expected the "
                                   f"path of a file to write, e.g. out={folder / 'c.pt'}")  # fmt: skip
    existing = folder / "c.pt"
    existing.write_text("old")
    assert writable_file(existing, "x: field 'out'") == existing
    assert existing.read_text() == "old" and os.listdir(folder) == ["c.pt"]  # nothing written
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert writable_file("~/a/c.pt", "x: field 'out'") == tmp_path / "home" / "a" / "c.pt"
    assert (tmp_path / "home" / "a").is_dir()


def test_training_refuses_its_checkpoint_folder_before_loading_frames(tmp_path, monkeypatch):
    import v2x.apps.train as train
    from tests.core.test_apps import _compose

    def never(*args, **kwargs):
        raise AssertionError("frames loaded before the checkpoint folder was checked")

    monkeypatch.setattr(train, "load_training_frames", never)
    blocker = _a_file(tmp_path)
    cfg = _compose("train", ["train.steps=3", f"train.out_dir={blocker / 'run'}"])
    with pytest.raises(ValueError, match=r"train: field 'train.out_dir' is .*is a file"):
        train.run_training(cfg)


def test_codec_training_refuses_its_folders_before_training(tmp_path, monkeypatch):
    import v2x.apps.train_codec as app
    from tests.core.test_apps import _compose

    def never(*args, **kwargs):
        raise AssertionError("trained before the output folders were checked")

    monkeypatch.setattr(app, "train_codec_for_task", never)
    monkeypatch.setattr(app, "load_training_frames", never)
    blocker = _a_file(tmp_path)
    small = ["checkpoint=untrained", "model=pillars_center", "codec.hidden=8", "device=cpu"]
    for override, field in [  # (the keys: it was "the folder of field 'out_path'")
        (f"out={blocker / 'c.pt'}", "out"),
        (f"codec_train.log_path={blocker / 'log.csv'}", "codec_train.log_path"),
    ]:
        cfg = _compose("train_codec", [*small, f"out={tmp_path / 'ok' / 'c.pt'}", override])
        value = override.split("=", 1)[1]
        with pytest.raises(ValueError, match=rf"^train_codec: field '{field}' is '{value}': "
                                             r"cannot write a file in .*is a file, not a folder"):
            app.run_codec_training(cfg)
    assert blocker.read_text() == "a user's file\n"


def test_plots_refuse_their_folder_in_one_line(tmp_path):
    from v2x.plots import make_plots

    blocker = _a_file(tmp_path)
    with pytest.raises(ValueError, match=r"plot: field 'out_dir' is .*is a file, not a folder"):
        make_plots([tmp_path / "none.parquet"], blocker / "figures")


def test_the_apps_print_a_refused_path_in_one_line(capsys):
    """Any other path the file system refuses (``OSError`` with the path) is one line, status 2;
    an ``OSError`` that names no path is not a user error and keeps its traceback."""
    from v2x.cli import user_errors

    def refused() -> None:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/data/x/cache")

    with pytest.raises(SystemExit) as info:
        user_errors(refused)()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Not a directory: '/data/x/cache'" in err[0]

    def broken() -> None:
        raise OSError("no path")

    with pytest.raises(OSError, match="no path"):
        user_errors(broken)()
