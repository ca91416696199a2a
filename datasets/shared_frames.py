"""Frames read in worker processes and handed to the reading process through shared memory.

A stored frame's points (≈ 2.4 MB for five agents) sent back through a process pool's pipe
are copied twice and unpickled in the receiving process while it holds the GIL — on a GPU host
≈ 2 ms per frame of the sweep's device thread (``docs/benchmarks.md``). Here the worker
writes every agent's points into one file of a RAM-backed folder (``/dev/shm``) and sends the
rest of the frame (kilobytes) with the parts of its content hash
(``v2x.datasets.frame_hash.hash_parts``; the points' part named by the agent). The receiving
process maps the file (copy-on-write), unlinks it, and the agents' points become views of the
mapping: no copy, and the hash is fed from the same bytes without walking the frame.

When the folder is missing, nearly full (less than ``RESERVE_BYTES`` would be left) or a write
fails, the worker sends the frame's points in-band, as a plain process pool would: the same
frame either way.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from v2x.datasets.frame import CoopFrame
from v2x.datasets.frame_hash import hash_parts, part_bytes

__all__ = ["SharedFrame", "attach", "remove_folder", "shared_folder", "read_shared"]

#: The RAM-backed folder the points go through (Linux); elsewhere frames go in-band.
SHARED_ROOT = "/dev/shm"
#: Free bytes a worker leaves in ``SHARED_ROOT`` (other users: NCCL, data loaders).
RESERVE_BYTES = 1 << 30
#: Each agent's points start at a multiple of this many bytes in the file.
_ALIGN = 64


@dataclass
class SharedFrame:
    """A frame on its way from a worker process: ``frame`` with ``points = None`` for every
    agent listed in ``layout`` (``{agent index: (byte offset, rows)}`` in ``file``), and its
    content hash's parts in order (``bytes``, or the index of an agent whose points go there)."""

    frame: CoopFrame
    file: str | None
    layout: dict[int, tuple[int, int]]
    parts: list[bytes | int]


def shared_folder() -> str | None:
    """A new private folder under ``SHARED_ROOT`` for one read's files, or ``None`` where there
    is none to use (not Linux, not writable)."""
    if not (os.path.isdir(SHARED_ROOT) and os.access(SHARED_ROOT, os.W_OK)):
        return None
    try:
        return tempfile.mkdtemp(prefix="v2x-frames-", dir=SHARED_ROOT)
    except OSError:
        return None


def remove_folder(folder: str | None) -> None:
    """Remove ``folder`` and the files no reader attached (a read cut short)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _hash_parts_of(frame: CoopFrame, in_file: dict[int, int]) -> list[bytes | int]:
    """``hash_parts`` of ``frame``, consecutive bytes joined, the points of the agents in
    ``in_file`` (``{id(points): agent index}``) as their index."""
    parts: list[bytes | int] = []
    run: list[bytes | memoryview] = []
    for part in hash_parts(frame):
        index = in_file.get(id(part)) if isinstance(part, np.ndarray) else None
        if index is None:
            run.append(part_bytes(part))
            continue
        parts.append(b"".join(run))
        run = []
        parts.append(index)
    parts.append(b"".join(run))
    return parts


def share(frame: CoopFrame, folder: str | None, name: str) -> SharedFrame:
    """``frame`` ready to send: its non-empty points written to ``folder/name`` (in-band when
    ``folder`` is ``None``, nearly full or the write fails). Runs in the worker process."""
    agents = [(i, a.points) for i, a in enumerate(frame.agents) if a.points.size]
    layout: dict[int, tuple[int, int]] = {}
    offset = 0
    for i, points in agents:
        layout[i] = (offset, points.shape[0])
        offset += -(-points.nbytes // _ALIGN) * _ALIGN
    path = None if folder is None or not layout else os.path.join(folder, name)
    if path is not None:
        try:
            stat = os.statvfs(folder)
            if stat.f_bavail * stat.f_frsize - offset < RESERVE_BYTES:
                raise OSError("shared-memory folder nearly full")
            with open(path, "xb") as f:
                for i, points in agents:
                    f.seek(layout[i][0])
                    f.write(part_bytes(points))
                f.truncate(offset)
        except OSError:
            if os.path.exists(path):
                os.unlink(path)
            path = None
    if path is None:
        return SharedFrame(frame, None, {}, _hash_parts_of(frame, {}))
    parts = _hash_parts_of(frame, {id(points): i for i, points in agents})
    for i, _ in agents:
        frame.agents[i].points = None
    return SharedFrame(frame, path, layout, parts)


def read_shared(
    path: str, expected_sha256: str | None, folder: str | None, name: str
) -> SharedFrame:
    """``v2x.datasets.store.read_frame`` in a worker process, ``share``d through ``folder``."""
    from v2x.datasets.store import read_frame

    return share(read_frame(path, expected_sha256), folder, name)


def attach(shared: SharedFrame) -> tuple[CoopFrame, list[bytes | memoryview]]:
    """The frame in this process (its points views of the mapped file, which is unlinked) and
    its content hash's parts as bytes (``v2x.loading.FramesDigest.add``)."""
    frame = shared.frame
    if shared.file is not None:
        fd = os.open(shared.file, os.O_RDONLY)
        try:
            mapped = mmap.mmap(fd, os.fstat(fd).st_size, access=mmap.ACCESS_COPY)
        finally:
            os.close(fd)
            os.unlink(shared.file)
        for i, (offset, rows) in shared.layout.items():
            frame.agents[i].points = np.frombuffer(mapped, np.float32, rows * 4, offset).reshape(
                rows, 4
            )
    parts = [
        p if isinstance(p, bytes) else part_bytes(frame.agents[p].points) for p in shared.parts
    ]
    return frame, parts
