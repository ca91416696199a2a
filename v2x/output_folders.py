"""The folders and files an app writes into, checked before anything is computed.

A sweep writes its results after its first group, training its first checkpoint after many
steps: a folder that cannot be made or written would only show then, as an ``OSError`` of the
file system, after the work it was to hold. ``writable_folder`` makes the folder at the start
and writes a file there (removed at once), and otherwise refuses the value in one line that
names the field, the path and what is in the way. ``writable_file`` does the same for a file
an app writes at its end (a trained codec): a folder at its path, or a folder it cannot be
written into, was an ``IsADirectoryError`` after the training whose result it was to hold.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["writable_file", "writable_folder"]


def writable_folder(path: str | os.PathLike, field: str) -> Path:
    """``path`` (``~`` expanded) as a folder this process can write into, made with its parents
    when missing.

    Args:
        path: the folder.
        field: what names it in the error, e.g. ``"sweep: field 'output_dir'"``.

    Raises:
        ValueError: naming ``field``, the value and why (e.g. "'/data/run' is a file", "Permission
            denied", "Read-only file system"), when the folder cannot be made or written.
    """
    folder = Path(os.path.expanduser(str(path)))
    try:
        _make_writable(folder)
    except OSError as exc:
        raise ValueError(
            f"{field} is {str(path)!r}: cannot make or write a folder there "
            f"({_obstacle(folder, exc)}); expected a folder this process can make and write into"
        ) from exc
    return folder


def writable_file(path: str | os.PathLike, field: str, example: str = "") -> Path:
    """``path`` (``~`` expanded) as a file this process can write (or replace) once its work is
    done: not a folder, in a folder that ``writable_folder`` makes and writes into. Nothing is
    written at ``path`` itself.

    Args:
        path: the file.
        field: what names it in the error, e.g. ``"train_codec: field 'out'"``.
        example: a value to suggest when ``path`` is a folder, e.g. ``"out=runs/c.pt"``.

    Raises:
        ValueError: naming ``field``, the value and why, when ``path`` is a folder (or ends
            with ``/``) or its folder cannot be made or written.
    """
    file = Path(os.path.expanduser(str(path)))
    if file.is_dir() or str(path).endswith(("/", os.sep)):
        hint = f", e.g. {example}" if example else ""
        raise ValueError(
            f"{field} is {str(path)!r}, which is a folder; expected the path of a file to "
            f"write{hint}"
        )
    try:
        _make_writable(file.parent)
    except OSError as exc:
        raise ValueError(
            f"{field} is {str(path)!r}: cannot write a file in {str(file.parent)!r} "
            f"({_obstacle(file.parent, exc)}); expected a file in a folder this process can make "
            "and write into"
        ) from exc
    return file


def _make_writable(folder: Path) -> None:
    """Make ``folder`` with its parents and write a file there (removed at once); ``OSError``
    when either fails."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".v2x-write-check-"):
        pass


def _obstacle(folder: Path, exc: OSError) -> str:
    """What keeps ``folder`` from being made or written: a file on its path, else the system's
    reason (``strerror``)."""
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                return f"{str(part)!r} is a file, not a folder"
            break
    return exc.strerror or str(exc)
