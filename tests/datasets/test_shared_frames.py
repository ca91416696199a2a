"""Frames read in worker processes and handed over through shared memory
(``v2x.datasets.shared_frames``): the same frames as ``read_frame``'s, the same content hash as
``frames_digest``'s walk (its pinned value: ``tests/core/test_sweep.py``), and nothing left
behind in the shared folder."""

from __future__ import annotations

import mmap
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import v2x.datasets.shared_frames as shared_frames
from v2x.datasets.build import generate_dataset
from v2x.datasets.shared_frames import attach, share
from v2x.datasets.store import load_split
from v2x.loading import FramesDigest, frames_digest

sys.path.insert(0, str(Path(__file__).parent))
from test_store import _assert_same, _frame, _gen_cfg  # noqa: E402

needs_shm = pytest.mark.skipif(
    not os.access(shared_frames.SHARED_ROOT, os.W_OK), reason="no writable /dev/shm"
)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    generate_dataset(_gen_cfg(root, png=False))
    return load_split(root / "ds", "train")


def _owner(array: np.ndarray) -> object:
    """The object that owns ``array``'s memory."""
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


def _digest(pairs) -> str:
    digest = FramesDigest()
    for frame, parts in pairs:
        digest.add(frame, parts)
    return digest.hexdigest()


@needs_shm
def test_frames_from_worker_processes_equal_the_files_and_hash_alike(split, monkeypatch):
    """Read in worker processes: every field equals ``read_frame``'s; the points are aligned,
    writable views of the mapped file (copy-on-write: the file is not changed); the hash parts
    sent along give ``frames_digest``'s value; the folder is gone once the read ends."""
    folders = []
    make = shared_frames.shared_folder
    monkeypatch.setattr(
        "v2x.datasets.store.shared_folder", lambda: folders.append(make()) or folders[-1]
    )
    order = list(range(len(split)))[::-1]
    with ProcessPoolExecutor(2) as pool:
        pairs = list(split.iter_frames_hashed(order, processes=pool))
    expected = [split[i] for i in order]
    assert len(folders) == 1 and not os.path.exists(folders[0])
    for (got, parts), want in zip(pairs, expected, strict=True):
        _assert_same(got, want)
        assert parts is not None
        for agent in got.agents:
            assert agent.points.dtype == np.float32 and agent.points.flags.aligned
            assert agent.points.flags.writeable and agent.points.flags.c_contiguous
    assert any(isinstance(_owner(a.points), mmap.mmap) for a in pairs[0][0].agents)
    assert _digest(pairs) == frames_digest(expected)
    pairs[0][0].agents[0].points[0, 0] += 1.0  # a private copy of the page, not the others'
    assert frames_digest([f for f, _ in pairs[1:]]) == frames_digest(expected[1:])


@needs_shm
def test_a_read_cut_short_leaves_no_files(split, monkeypatch):
    folders = []
    make = shared_frames.shared_folder
    monkeypatch.setattr(
        "v2x.datasets.store.shared_folder", lambda: folders.append(make()) or folders[-1]
    )
    with ProcessPoolExecutor(2) as pool:
        reading = split.iter_frames_hashed(range(len(split)), processes=pool)
        first, _ = next(reading)
        reading.close()
    assert first.frame_id == split[0].frame_id
    assert folders and not os.path.exists(folders[0])


def test_without_a_folder_or_room_the_points_go_in_band(tmp_path, monkeypatch):
    """No folder, a folder that cannot be written, or one with less than ``RESERVE_BYTES`` left:
    the frame keeps its points (sent in-band) and its hash parts are still ``frames_digest``'s."""
    want = _frame()
    monkeypatch.setattr(shared_frames, "RESERVE_BYTES", 1 << 62)  # any folder is "nearly full"
    for folder in (None, str(tmp_path / "missing"), str(tmp_path)):
        sent = share(_frame(), folder, "f0")
        assert sent.file is None and sent.layout == {}
        got, parts = attach(sent)
        _assert_same(got, want)
        assert _digest([(got, parts)]) == frames_digest([want])
    assert os.listdir(tmp_path) == []


def test_a_shared_frame_through_a_plain_folder_equals_the_original(tmp_path, monkeypatch):
    """``share`` then ``attach`` in one process (any folder works; ``/dev/shm`` only keeps it in
    RAM): the same frame and hash, empty point clouds kept in-band, the file unlinked."""
    monkeypatch.setattr(shared_frames, "RESERVE_BYTES", 0)
    want = _frame()
    sent = share(_frame(), str(tmp_path), "f0")
    assert sent.file is not None and list(sent.layout) == [0]  # uav_0 has no points
    assert sent.frame.agents[0].points is None
    got, parts = attach(sent)
    _assert_same(got, want)
    assert _digest([(got, parts)]) == frames_digest([want])
    assert os.listdir(tmp_path) == []
