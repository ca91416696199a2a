"""``python -m v2x.datasets.export``: bad arguments and an output folder it cannot write end in one
argparse line (status 2) naming the option or the path, not a traceback or an empty dataset."""

from __future__ import annotations

import shlex
from pathlib import Path

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


def _doc_commands() -> list[str]:
    """The export and read-back command lines of docs/real_data.md's command-line section."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "real_data.md").read_text()
    section = text.split("## Exporting the synthetic world (command line)", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [ln for ln in block.splitlines() if ln and not ln.startswith("#")]


def test_the_documented_command_lines_run_and_read_back(tmp_path, capsys):
    """docs/real_data.md had no command line for the export; its lines (and ``--help``'s
    examples, the same) now run: each export writes what its summary says, and each read-back
    command's data section gives those frames through the sweep's reader."""
    from v2x.datasets.export import USAGE
    from v2x.sweep import load_frames

    lines = _doc_commands()
    assert lines[0] == "python -m v2x.datasets.export --help"
    for line in USAGE.splitlines()[1:]:  # --help's examples are the documented lines
        assert line.strip() in lines or line.endswith(":"), line
    exports = [ln for ln in lines[1:] if ln.startswith("python -m v2x.datasets.export ")]
    reads = [ln for ln in lines if ln.startswith("v2x-sweep ")]
    assert len(exports) == len(reads) == 3
    written, counted = {}, {"v2xsim": "samples", "dair_v2x": "pairs", "opv2v": "frames"}
    for line in exports:
        argv = [a.replace("/tmp/", f"{tmp_path}/") for a in shlex.split(line)[3:]]
        summary = main(argv)
        fmt = argv[argv.index("--format") + 1]
        written[fmt] = summary[counted[fmt]]
    assert capsys.readouterr().out.count("{'root': ") == 3
    for line in reads:
        args = dict(a.split("=", 1) for a in shlex.split(line)[1:])
        source, count = args["data.source"], int(args["data.num_frames"])
        reader = {k.split(".")[-1]: v for k, v in args.items() if k.startswith("+data.reader.")}
        data = {"source": source, "path": args["data.path"].replace("/tmp/", f"{tmp_path}/"),
                "num_frames": count, "reader": reader}  # fmt: skip
        assert count == written[source] and len(load_frames(data)) == count


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--format", "dair_v2x", "--pcd-data", "bogus"], "argument --pcd-data: invalid choice"),
        (["--format", "v2xsim", "--pcd-data", "ascii"],
         "argument --pcd-data: applies to --format dair_v2x and opv2v, not v2xsim"),  # (ignored)
    ],
)
def test_a_pcd_encoding_is_checked_before_any_frame_is_made(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--out", str(tmp_path / "out"), "--frames", "1"])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_export_over_another_is_refused_before_any_frame(tmp_path, capsys, monkeypatch):
    """Exporting 3 frames and then 1 into one folder replaced the tables and left the first
    export's point clouds beside them; the second export is refused naming the folder."""
    out = tmp_path / "v2xsim"
    main(["--format", "v2xsim", "--out", str(out), "--frames", "1"])
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    import v2x.datasets.synthetic as synthetic

    def no_frames(*args, **kwargs):  # the refusal comes before any frame is generated
        raise AssertionError("a frame was generated")

    monkeypatch.setattr(synthetic, "generate_sequence", no_frames)
    a_file = next(p for p in out.rglob("*") if p.is_file())
    for target in (out, a_file):
        with pytest.raises(SystemExit) as info:
            main(["--format", "v2xsim", "--out", str(target), "--frames", "1"])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert str(target) in err and "expected a new or empty folder" in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    monkeypatch.undo()
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    main(["--format", "v2xsim", "--out", str(tmp_path / "empty"), "--frames", "1"])
