"""The one atomic-write helper: all or nothing, the user's umask, the previous file kept on
failure, and nothing of the project imported (it is a leaf every part may use)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from v2x.common import atomic_open, atomic_path, atomic_write_bytes, atomic_write_text


def test_writes_replace_whole_files_with_the_umask(tmp_path):
    target = tmp_path / "sub" / "a.json"
    old = os.umask(0o027)
    try:
        atomic_write_text(target, "one")
    finally:
        os.umask(old)
    assert target.read_text() == "one"
    assert target.stat().st_mode & 0o777 == 0o640
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no temporary file left


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "a.csv"
    atomic_write_text(target, "kept")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_atomic_path_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    with atomic_path(tmp_path / "fig.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.exists()
        tmp.write_bytes(b"\x89PNG")
    assert (tmp_path / "fig.png").read_bytes() == b"\x89PNG"
    with pytest.raises(ValueError, match="does not write"), atomic_open(tmp_path / "x", "r"):
        pass


def test_common_is_a_leaf():
    import v2x.common

    tree = ast.parse(Path(v2x.common.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m == "v2x" or m.startswith("v2x.")]
