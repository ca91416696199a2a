"""V2X-Sim 2.0's format as our reader and writer share it (nuScenes tables; ``v2x.datasets.v2xsim``
describes the layout and the conventions).

* the tables (``TABLES_REQUIRED``, ``TABLES_OPTIONAL``), the LiDAR channels ``LIDAR_TOP_id_k``
  (``LIDAR_CHANNEL``) and our writer's side table (``EXTENSION_FILE``, checked by
  ``_check_extension``);
* categories ↔ classes (``category_to_class``, ``CLASS_TO_CATEGORY``, ``CATEGORY_INDEX``) and
  track ids from instance tokens (``track_id_from_token``);
* quaternions ``[w, x, y, z]`` ↔ ``[3, 3]`` rotations, a record's fields, its ``timestamp``
  (µs → s), a table file and its tokens;
* ``.pcd.bin`` point clouds (float32 × 5 per point → ``[N, 4]`` x, y, z, intensity).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

TABLES_REQUIRED: tuple[str, ...] = (
    "scene",
    "sample",
    "sample_data",
    "ego_pose",
    "calibrated_sensor",
    "sensor",
    "sample_annotation",
    "instance",
    "category",
)
TABLES_OPTIONAL: tuple[str, ...] = ("attribute", "visibility", "log", "map")
EXTENSION_FILE = "v2x_frames.json"
LIDAR_CHANNEL = re.compile(r"^LIDAR_TOP_id_(\d+)$")
POINT_FLOATS = 5  # x, y, z, intensity, ring

# (prefix, class index); the first matching prefix wins.
CATEGORY_PREFIXES: tuple[tuple[str, int], ...] = (
    ("vehicle.car", 0),
    ("vehicle.emergency", 0),
    ("vehicle.truck", 1),
    ("vehicle.bus", 1),
    ("vehicle.trailer", 1),
    ("vehicle.construction", 1),
    ("human.pedestrian", 2),
    ("vehicle.bicycle", 3),
    ("vehicle.motorcycle", 3),
)
# What our writer names each class (nuScenes category names).
CLASS_TO_CATEGORY: tuple[str, ...] = (
    "vehicle.car",
    "vehicle.truck",
    "human.pedestrian.adult",
    "vehicle.bicycle",
)
# nuScenes' ``category.index`` for those names (the nuScenes-lidarseg label index, a schema field
# since v1.0 that the devkit sorts categories by when lidarseg/panoptic labels are loaded).
CATEGORY_INDEX: dict[str, int] = {
    "human.pedestrian.adult": 2,
    "vehicle.bicycle": 14,
    "vehicle.car": 17,
    "vehicle.truck": 23,
}
WITHOUT_RIDER = "cycle.without_rider"
WITH_RIDER = "cycle.with_rider"
_MASK63 = (1 << 63) - 1
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


def track_id_from_token(token: str) -> int:
    """Stable int64 track id from an instance token / track id string.

    * 32 hex digits (nuScenes tokens): the low 63 bits of the token as an integer — stable,
      collision-free in practice for random tokens, and exactly invertible for tokens our
      writers build (``…{track_id:016x}``);
    * a decimal string (``"0007"``): its value;
    * anything else: the first 8 bytes of its BLAKE2b digest, masked to 63 bits.
    """
    token = str(token).strip()
    if _HEX32.match(token):
        return int(token, 16) & _MASK63
    if token.isdigit():
        return int(token) & _MASK63
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK63


def category_to_class(name: str, attributes: Iterable[str] = ()) -> int | None:
    """Class index into ``CLASS_NAMES`` for a nuScenes-style category name, or ``None`` (drop)."""
    for prefix, index in CATEGORY_PREFIXES:
        if name == prefix or name.startswith(prefix + "."):
            if index == 3 and WITHOUT_RIDER in set(attributes):
                return None
            return index
    return None


def quaternion_to_matrix(q: Iterable[float], where: str, field_name: str, tol: float) -> np.ndarray:
    """``[w, x, y, z]`` → ``[3, 3]`` rotation; a quaternion whose norm is off 1 by more than ``tol``
    is not a rotation and raises ``ValueError`` naming ``where`` and ``field_name``."""
    raw = q
    try:
        q = np.asarray(list(q), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: field '{field_name}' must be 4 numbers [w, x, y, z], got {raw!r}"
        ) from None
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise ValueError(
            f"{where}: field '{field_name}' must be 4 finite numbers [w, x, y, z], got {raw!r}"
        )
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > tol:
        raise ValueError(
            f"{where}: field '{field_name}' is not a rigid rotation: quaternion norm {norm:.6g} "
            f"(expected 1 within {tol})"
        )
    w, x, y, z = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(rot: np.ndarray) -> list[float]:
    """``[3, 3]`` rotation → ``[w, x, y, z]`` with ``w >= 0`` (Shepperd's method)."""
    m = np.asarray(rot, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q = q / np.linalg.norm(q)
    return (q if q[0] >= 0 else -q).tolist()


def _transform(
    rotation: np.ndarray, translation: Iterable[float], where: str, field_name: str
) -> np.ndarray:
    try:
        t = np.asarray(list(translation), dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: field '{field_name}' must be 3 numbers [x, y, z], got {translation!r}"
        ) from None
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{where}: field '{field_name}' must be finite, got {translation!r}")
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = t
    return pose


def _field(record: dict, name: str, where: str):
    try:
        return record[name]
    except (KeyError, TypeError):
        raise ValueError(f"{where}: field '{name}' is missing") from None


def _load_table(table_dir: Path, name: str) -> list[dict]:
    path = table_dir / f"{name}.json"
    try:
        with open(path, encoding="utf-8") as handle:
            rows = json.load(handle)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found (nuScenes table '{name}' is required)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: must hold a JSON list of records")
    first_at: dict = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "token" not in row:
            raise ValueError(f"{path}: record {i} field 'token' is missing")
        token = row["token"]
        if not isinstance(token, (str, int)) or isinstance(token, bool):
            raise ValueError(f"{path}: record {i} field 'token' must be a string, got {token!r}")
        if token in first_at:
            raise ValueError(
                f"{path}: record {i} field 'token' {token!r} repeats record {first_at[token]}; "
                "expected unique tokens"
            )
        first_at[token] = i
    return rows


def _no_version(root: Path, version: str) -> str:
    """The message for a ``root / version`` that is not a folder: the folders of ``root`` that
    hold nuScenes tables (``scene.json``), as releases name it differently (``v2.0``,
    ``v2.0-mini``, ``v1.0-trainval``), or that ``root`` itself is missing."""
    if not root.is_dir():
        return (
            f"{root / version}: folder not found: the dataset root {root} does not exist "
            "(field 'root'; expected the folder holding the nuScenes tables and sweeps/)"
        )
    found = sorted(p.parent.name for p in root.glob("*/scene.json"))
    expected = (
        f"{root} holds nuScenes tables in {', '.join(found)}: set field 'version' to "
        + " or ".join(repr(f) for f in found)
        if found
        else f"no folder of {root} holds scene.json (expected <root>/<version>/scene.json …)"
    )
    return f"{root / version}: folder not found (field 'version' = {version!r}); {expected}"


def _seconds(record: dict, where: str) -> float:
    """A record's ``timestamp`` (µs, a finite number) in seconds."""
    raw = _field(record, "timestamp", where)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field 'timestamp' must be a number (µs), got {raw!r}") from None
    if isinstance(raw, bool) or not np.isfinite(value):
        raise ValueError(f"{where}: field 'timestamp' must be a finite number (µs), got {raw!r}")
    return value * 1e-6


_EXTENSION_TYPES: tuple[tuple[str, type | tuple[type, ...], str], ...] = (
    ("frame_id", str, "a string"),
    ("ego_channel", int, "an integer k of LIDAR_TOP_id_k"),
    ("agents", dict, "an object channel → {agent_id, kind}"),
    ("agent_order", list, "a list of channels"),
    ("annotations", list, "a list of sample_annotation tokens"),
    ("visibility", dict, "an object channel → counts"),
    ("meta", dict, "an object"),
)


def _check_extension(row: dict, path: Path, samples: dict[str, dict]) -> dict:
    """Validate one ``v2x_frames.json`` entry (our writer's side table) against ``sample``."""
    where = f"{path} [{row['token']}]"
    if row["token"] not in samples:
        raise ValueError(f"{where}: field 'token' {row['token']!r} is not in sample.json")
    for key, kind, expected in _EXTENSION_TYPES:
        value = row.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ValueError(f"{where}: field '{key}' must be {expected}, got {value!r:.80}")
    for channel, info in (row.get("agents") or {}).items():
        if not isinstance(info, dict):
            raise ValueError(
                f"{where}: field 'agents.{channel}' must be an object {{agent_id, kind}}, "
                f"got {info!r:.80}"
            )
    return row


def read_pcd_bin(path: str | os.PathLike, floats_per_point: int = POINT_FLOATS) -> np.ndarray:
    """Read a nuScenes ``.pcd.bin`` (float32 × ``floats_per_point``) → ``[N, 4]`` x, y, z, intensity."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found (expected a .pcd.bin point cloud)") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder (expected a .pcd.bin point cloud)") from None
    if len(data) % 4:
        raise ValueError(
            f"{path}: field 'data' is truncated or malformed: {len(data)} bytes is not a whole "
            "number of float32 values"
        )
    raw = np.frombuffer(data, dtype="<f4")
    if raw.size % floats_per_point:
        raise ValueError(
            f"{path}: field 'data' is truncated or malformed: {raw.size} float32 values is not a "
            f"multiple of {floats_per_point} (x, y, z, intensity, ring)"
        )
    return raw.reshape(-1, floats_per_point)[:, :4].astype(np.float32)
