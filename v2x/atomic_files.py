"""Atomic file writes. Every file the project writes goes through ``atomic_path``: a reader never
sees a half written file, a crash leaves the previous version in place, and new files get the
permissions of any file the user creates (``0666`` less the umask), so shared output folders work.
Imports nothing from the project: one of ``v2x.common``'s jobs (it re-exports these names; parts
import them from there).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; moved onto ``path`` when the block ends
    without an exception (after an ``fsync``), removed otherwise.

    The temporary file exists (empty, ``0666`` less the umask) when the block starts; its name
    keeps ``path``'s suffix, so writers that choose a format by suffix (matplotlib) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        break
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode, **kwargs)`` through ``atomic_path`` (``mode`` must write)."""
    if not any(c in mode for c in "wax"):
        raise ValueError(f"atomic_open: mode {mode!r} does not write")
    # the file is closed (inner context) before it is synced and moved (outer context)
    with (
        atomic_path(path) as tmp,
        open(tmp, mode.replace("x", "w").replace("a", "w"), **kwargs) as handle,
    ):
        yield handle


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)
