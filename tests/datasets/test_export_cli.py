"""``python -m v2x.datasets.export``: bad arguments and an output folder it cannot write end in one
argparse line (status 2) naming the option or the path, not a traceback or an empty dataset."""

from __future__ import annotations

import pytest

from v2x.datasets.export import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--frames", "0"], "argument --frames: must be a whole number >= 1, got 0"),
        (["--frames", "-1"], "argument --frames: must be a whole number >= 1, got -1"),
        (["--seeds", "-2"], "argument --seeds: must be a whole number >= 0, got -2"),
        (["--seeds", "x"], "argument --seeds: invalid whole number >= 0 value: 'x'"),
    ],
)
def test_bad_arguments_name_the_option(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(["--format", "v2xsim", "--out", str(tmp_path / "out"), *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_output_folder_under_a_file_is_one_line_naming_the_path(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as info:
        main(["--format", "dair_v2x", "--out", str(blocker / "dair"), "--frames", "1"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Not a directory" in err[-1] and str(blocker) in err[-1]
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--format", "dair_v2x", "--pcd-data", "bogus"], "argument --pcd-data: invalid choice"),
        (["--format", "v2xsim", "--pcd-data", "ascii"],
         "argument --pcd-data: applies to --format dair_v2x, not v2xsim"),  # (it was ignored)
    ],
)
def test_a_pcd_encoding_is_checked_before_any_frame_is_made(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--out", str(tmp_path / "out"), "--frames", "1"])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
