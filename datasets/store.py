"""On-disk format for generated cooperative datasets.

Layout of a dataset folder::

    <root>/manifest.json                 # format, version, seed, config, counts, per-frame sha256
    <root>/<split>/<seq>_<index>.npz     # one compressed CoopFrame per file
    <root>/<split>/preview/<seq>.png     # optional BEV pictures (written by the generator)

Each ``.npz`` holds (A agents, M boxes, N points in all):

============== ================ ==============================================================
key            shape / dtype    meaning
============== ================ ==============================================================
frame_id       [] str           ``CoopFrame.frame_id``
ego_index      [] int64
agent_ids      [A] str
agent_kinds    [A] str          one of ``AGENT_KINDS``
poses          [A, 4, 4] f64    sensor → world
timestamps     [A] f64          seconds
point_counts   [A] int64        points per agent (their concatenation is ``points``)
points         [N, 4] f32       x, y, z, intensity in each agent's sensor frame
boxes          [M, 7] f64       world frame (x, y, z, l, w, h, yaw)
classes        [M] int64        index into ``CLASS_NAMES``
track_ids      [M] int64
visibility     [A, M] int32     (absent when unknown)
meta_json      [] str           JSON of the non-array ``meta`` entries
meta.<key>     any              array-valued ``meta`` entries
============== ================ ==============================================================

Files are written atomically (temporary file in the same folder, then ``os.replace``), so a
crash never leaves a half-written frame under its final name. Readers validate every field and
raise ``ValueError`` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from v2x.common import atomic_write_bytes
from v2x.datasets.frame import AgentObservation, CoopFrame

FORMAT = "v2x-coop-store"
VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")

_REQUIRED = (
    "frame_id",
    "ego_index",
    "agent_ids",
    "agent_kinds",
    "poses",
    "timestamps",
    "point_counts",
    "points",
    "boxes",
    "classes",
    "track_ids",
)

_NUMERIC = (
    "ego_index",
    "poses",
    "timestamps",
    "point_counts",
    "points",
    "boxes",
    "classes",
    "track_ids",
    "visibility",
)


#: Held while a frame file's arrays are read: numpy parses each array's header with
#: ``ast.literal_eval``, and CPython 3.11's AST constructor can fail in one thread while another
#: builds a tree (``SystemError: AST constructor recursion depth mismatch``, python/cpython
#: gh-106905; met reading frames on ``READ_THREADS`` threads). The checksum, the part of a read
#: that runs beside other threads (it lets go of the GIL), stays outside the lock; the arrays'
#: parsing holds the GIL for most of its time anyway (``SplitDataset.iter_frames``).
_NPZ_READ = threading.Lock()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_to_arrays(frame: CoopFrame) -> dict[str, np.ndarray]:
    """The ``.npz`` arrays of a frame (see the module docstring)."""
    arrays: dict[str, np.ndarray] = {
        "frame_id": np.array(frame.frame_id),
        "ego_index": np.array(frame.ego_index, dtype=np.int64),
        "agent_ids": np.array([a.agent_id for a in frame.agents]),
        "agent_kinds": np.array([a.kind for a in frame.agents]),
        "poses": np.stack([a.pose for a in frame.agents]).astype(np.float64),
        "timestamps": np.array([a.timestamp for a in frame.agents], dtype=np.float64),
        "point_counts": np.array([a.points.shape[0] for a in frame.agents], dtype=np.int64),
        "points": np.concatenate([a.points for a in frame.agents]).astype(np.float32),
        "boxes": frame.boxes.astype(np.float64),
        "classes": frame.classes.astype(np.int64),
        "track_ids": frame.track_ids.astype(np.int64),
    }
    if frame.visibility is not None:
        arrays["visibility"] = frame.visibility.astype(np.int32)
    plain = {}
    for key, value in frame.meta.items():
        if isinstance(value, np.ndarray):
            arrays[f"meta.{key}"] = value
        else:
            plain[key] = value
    arrays["meta_json"] = np.array(json.dumps(plain, sort_keys=True, default=_json_default))
    return arrays


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"meta value of type {type(value).__name__} is not JSON serialisable")


def write_frame(path: str | Path, frame: CoopFrame) -> str:
    """Write one frame as an ``.npz`` atomically; returns its SHA-256.

    Stored, not deflated: float32 point clouds deflate by about 8 % (1.46 against 1.59 MB for a
    five-agent frame), and inflating is most of a read (17 against 5 ms per frame on the
    development VM), so a sweep's frames load about 3× faster. Readers take either (``np.load``
    reads both; stores written before are read as they are)."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **frame_to_arrays(frame))
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _field(arrays: Any, key: str, where: str) -> np.ndarray:
    if key not in arrays:
        raise ValueError(f"{where}: field '{key}' is missing")
    return arrays[key]


def read_frame(
    path: str | Path, expected_sha256: str | None = None, expected_frame_id: str | None = None
) -> CoopFrame:
    """Read and validate one ``.npz`` frame.

    Raises:
        ValueError: naming the file and the field when the file is missing, truncated, fails
            its checksum, holds a malformed field or another frame than the manifest's
            ``expected_frame_id``.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ValueError(f"{where}: frame file does not exist")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ValueError(
                f"{where}: field 'sha256' mismatch (manifest {expected_sha256[:12]}…, "
                f"file {actual[:12]}…): the file is corrupt or was modified"
            )
    try:
        with _NPZ_READ, np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as exc:  # zipfile / zlib / format errors
        raise ValueError(f"{where}: cannot read .npz ({exc})") from exc
    frame = arrays_to_frame(arrays, where)
    if expected_frame_id is not None and frame.frame_id != expected_frame_id:
        raise ValueError(
            f"{where}: field 'frame_id' is {frame.frame_id!r}, but the manifest lists this file "
            f"as frame {expected_frame_id!r}; expected the manifest's frame"
        )
    return frame


def arrays_to_frame(arrays: dict[str, np.ndarray], where: str) -> CoopFrame:
    """Validate ``.npz`` arrays and build the ``CoopFrame`` (errors name ``where`` + field)."""
    for key in _REQUIRED:
        _field(arrays, key, where)
    for key in _NUMERIC:
        if key in arrays and not (
            np.issubdtype(arrays[key].dtype, np.number) or arrays[key].dtype == np.bool_
        ):
            raise ValueError(
                f"{where}: field '{key}' must hold numbers, got dtype {arrays[key].dtype}"
            )
    for key in ("ego_index", "point_counts"):
        if not np.issubdtype(arrays[key].dtype, np.integer):
            raise ValueError(
                f"{where}: field '{key}' must hold integers, got dtype {arrays[key].dtype}"
            )
    if arrays["ego_index"].shape != ():
        raise ValueError(
            f"{where}: field 'ego_index' must be a single integer, got shape "
            f"{arrays['ego_index'].shape}"
        )
    if arrays["frame_id"].shape != () or arrays["frame_id"].dtype.kind != "U":
        raise ValueError(
            f"{where}: field 'frame_id' must be a single string, got {arrays['frame_id']!r:.80}"
        )
    ids = [str(x) for x in np.atleast_1d(arrays["agent_ids"])]
    a = len(ids)
    expect = {
        "agent_kinds": (a,),
        "poses": (a, 4, 4),
        "timestamps": (a,),
        "point_counts": (a,),
    }
    for key, shape in expect.items():
        if tuple(arrays[key].shape) != shape:
            raise ValueError(
                f"{where}: field '{key}' must have shape {shape}, got {arrays[key].shape}"
            )
    counts = arrays["point_counts"].astype(np.int64)
    points = arrays["points"]
    if points.ndim != 2 or points.shape[1] != 4:
        raise ValueError(f"{where}: field 'points' must have shape [N, 4], got {points.shape}")
    if np.any(counts < 0) or counts.sum() != points.shape[0]:
        raise ValueError(
            f"{where}: field 'point_counts' must sum to the {points.shape[0]} rows of 'points', "
            f"got {counts.tolist()}"
        )
    offsets = np.concatenate([[0], np.cumsum(counts)])
    meta: dict[str, Any] = {}
    if "meta_json" in arrays:
        try:
            meta = json.loads(str(arrays["meta_json"]))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: field 'meta_json' is not valid JSON ({exc})") from exc
        if not isinstance(meta, dict):
            raise ValueError(
                f"{where}: field 'meta_json' must hold a JSON object, got {type(meta).__name__} "
                f"{meta!r:.80}"
            )
    for key in arrays:
        if key.startswith("meta."):
            meta[key[5:]] = arrays[key]
    try:
        agents = [
            AgentObservation(
                agent_id=ids[i],
                kind=str(arrays["agent_kinds"][i]),
                pose=arrays["poses"][i],
                points=points[offsets[i] : offsets[i + 1]],
                timestamp=float(arrays["timestamps"][i]),
            )
            for i in range(a)
        ]
        return CoopFrame(
            frame_id=str(arrays["frame_id"]),
            agents=agents,
            boxes=arrays["boxes"],
            classes=arrays["classes"],
            track_ids=arrays["track_ids"],
            visibility=arrays.get("visibility"),
            ego_index=int(arrays["ego_index"]),
            meta=meta,
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def write_manifest(root: str | Path, manifest: dict) -> None:
    """Write ``<root>/manifest.json`` atomically."""
    text = json.dumps(manifest, indent=1, sort_keys=True, default=_json_default)
    atomic_write_bytes(Path(root) / MANIFEST, text.encode())


def read_manifest(root: str | Path) -> dict:
    """Read and validate ``<root>/manifest.json``."""
    path = Path(root) / MANIFEST
    where = str(path)
    if not path.is_file():
        raise ValueError(f"{where}: manifest does not exist (is {root} a v2x-generate folder?)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ValueError(
            f"{where}: must hold a JSON object (format, version, splits, …), got "
            f"{type(manifest).__name__}"
        )
    if manifest.get("format") != FORMAT:
        raise ValueError(
            f"{where}: field 'format' must be {FORMAT!r}, got {manifest.get('format')!r}"
        )
    if manifest.get("version") != VERSION:
        raise ValueError(
            f"{where}: field 'version' must be {VERSION}, got {manifest.get('version')!r}"
        )
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        raise ValueError(f"{where}: field 'splits' must be a mapping split → frame entries")
    for name, entries in splits.items():
        if not isinstance(entries, list):
            raise ValueError(f"{where}: field 'splits.{name}' must be a list of frame entries")
        for k, entry in enumerate(entries):
            for key in ("file", "frame_id", "sha256"):
                if not isinstance(entry, dict) or not isinstance(entry.get(key), str):
                    raise ValueError(f"{where}: field 'splits.{name}[{k}].{key}' must be a string")
    return manifest


#: Threads that read one split's frames (``SplitDataset.read_frames``).
READ_THREADS = max(1, min(8, os.cpu_count() or 1))


class SplitDataset(Sequence[CoopFrame]):
    """The frames of one split of a stored dataset (a ``torch``-style map dataset).

    Args:
        root: dataset folder (holds ``manifest.json``).
        split: split name (``train`` / ``val`` / ``test``).
        verify: check each file's SHA-256 against the manifest when it is read.
    """

    def __init__(self, root: str | Path, split: str, verify: bool = True) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        if split not in self.manifest["splits"]:
            raise ValueError(
                f"{self.root / MANIFEST}: field 'splits' has no split {split!r}; "
                f"available: {sorted(self.manifest['splits'])}"
            )
        self.split = split
        self.entries: list[dict] = list(self.manifest["splits"][split])
        self.verify = verify

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int | slice) -> CoopFrame | list[CoopFrame]:  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.split}: index {index} out of range [0, {len(self)})")
        entry = self.entries[index]
        return read_frame(
            self.root / entry["file"], entry["sha256"] if self.verify else None, entry["frame_id"]
        )

    def __iter__(self) -> Iterator[CoopFrame]:
        for i in range(len(self)):
            yield self[i]

    def read_frames(self, indices: Iterable[int], threads: int | None = None) -> list[CoopFrame]:
        """``[self[i] for i in indices]``, read on up to ``threads`` threads (default:
        ``READ_THREADS``): zlib's decompression and the checksum release the GIL, so a frame
        set loads several times faster. The frames, their order and the error raised for the
        first bad frame in ``indices`` order (naming its file and field) are those of the loop."""
        return list(self.iter_frames(indices, threads))

    def iter_frames(
        self, indices: Iterable[int], threads: int | None = None, processes: Executor | None = None
    ) -> Iterator[CoopFrame]:
        """``read_frames``' frames one at a time, in order, each as soon as it is read; with
        ``processes`` (an executor of worker processes) read there: parsing and validating a
        frame holds the GIL for most of its time, so threads of this process read about one
        frame at a time and slow whatever else this process runs."""
        indices = list(indices)
        if processes is not None and len(indices) > 1:
            entries = [self.entries[i] for i in indices]
            yield from processes.map(
                read_frame,
                [self.root / e["file"] for e in entries],
                [e["sha256"] if self.verify else None for e in entries],
                [e["frame_id"] for e in entries],
            )
            return
        threads = READ_THREADS if threads is None else max(1, int(threads))
        if threads == 1 or len(indices) < 2:
            yield from (self[i] for i in indices)
            return
        with ThreadPoolExecutor(min(threads, len(indices)), "v2x-read") as pool:
            yield from pool.map(self.__getitem__, indices)

    def __repr__(self) -> str:
        return f"SplitDataset(root={str(self.root)!r}, split={self.split!r}, frames={len(self)})"

    @property
    def frame_ids(self) -> list[str]:
        return [e["frame_id"] for e in self.entries]


def load_split(root: str | Path, split: str = "train", verify: bool = True) -> SplitDataset:
    """Open one split of a dataset written by ``v2x-generate``."""
    return SplitDataset(root, split, verify=verify)
