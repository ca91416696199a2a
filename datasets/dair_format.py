"""DAIR-V2X-C's format as our reader and writer share it (``v2x.datasets.dair`` describes the
layout and the conventions).

* the label types ↔ classes (``TYPE_TO_CLASS``, ``CLASS_TO_TYPE``), the label sources and the
  cooperative label's frames, the two sides' folders (``VEH``, ``INF``);
* a JSON file, a record's fields, numbers that may be strings (``""`` → 0 where allowed), paths
  and frame ids (the file name without extension);
* calibrations ``{rotation 3×3, translation 3×1}`` → ``[4, 4]`` source→target transforms
  (``rigid_from_calib``) and the infrastructure's system-error offset (m);
* boxes ``(x, y, z, l, w, h, yaw)`` (m, rad) ↔ DAIR's 8 corners (``box_corners``,
  ``box_from_corners``, ``yaw_from_corners``) and a sensor-frame box → world (``box_to_world``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TYPE_TO_CLASS: dict[str, int] = {
    "car": 0,
    "van": 0,
    "truck": 1,
    "bus": 1,
    "pedestrian": 2,
    "cyclist": 3,
    "motorcyclist": 3,
    "tricyclist": 3,
}
CLASS_TO_TYPE: tuple[str, ...] = ("Car", "Truck", "Pedestrian", "Cyclist")
LABEL_SOURCES: tuple[str, ...] = ("cooperative", "vehicle", "infrastructure")
COOP_LABEL_FRAMES: tuple[str, ...] = ("world", "vehicle_lidar")

VEH = "vehicle-side"
INF = "infrastructure-side"


def _load_json(path: Path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def _get(record, name: str, where: str):
    if not isinstance(record, dict) or name not in record:
        raise ValueError(f"{where}: field '{name}' is missing")
    return record[name]


def _number(value, where: str, field_name: str, empty_is_zero: bool = False) -> float:
    """A label/calib number that may be written as a string; ``""`` → 0 where allowed."""
    if empty_is_zero and (value is None or (isinstance(value, str) and not value.strip())):
        return 0.0
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field '{field_name}' must be a number, got {value!r}") from None
    if not np.isfinite(out):
        raise ValueError(f"{where}: field '{field_name}' must be finite, got {value!r}")
    return out


def _path(record, name: str, where: str) -> str:
    """A path field: a non-empty string (relative to the dataset or side folder)."""
    value = _get(record, name, where)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: field '{name}' must be a non-empty path string, got {value!r}")
    return value


def _frame_id(path: str) -> str:
    return Path(path).name.split(".")[0]


def rigid_from_calib(calib: dict, where: str, tol: float = 1e-3) -> np.ndarray:
    """``{rotation: 3×3, translation: 3×1}`` (optionally wrapped in ``"transform"``) → ``[4, 4]``
    source→target transform. A rotation that is not orthonormal with det +1 within ``tol`` raises
    ``ValueError`` naming the file and ``rotation``; within ``tol`` it is snapped to the nearest
    rotation (SVD) so that composed poses stay rigid."""
    if isinstance(calib, dict) and "transform" in calib:
        calib = calib["transform"]
    rot_raw = _get(calib, "rotation", where)
    trans_raw = _get(calib, "translation", where)
    try:
        rot = np.asarray(rot_raw, dtype=np.float64).reshape(3, 3)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: field 'rotation' must be a 3x3 matrix of numbers, got {rot_raw!r}"
        ) from None
    try:
        trans = np.asarray(trans_raw, dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: field 'translation' must be 3 numbers (3x1), got {trans_raw!r}"
        ) from None
    for name, value, raw in (("rotation", rot, rot_raw), ("translation", trans, trans_raw)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{where}: field '{name}' must be finite, got {raw!r}")
    err = np.abs(rot @ rot.T - np.eye(3)).max()
    if err > tol or abs(np.linalg.det(rot) - 1.0) > tol:
        raise ValueError(
            f"{where}: field 'rotation' is not rigid (|R Rᵀ − I| = {err:.3g}, det = "
            f"{np.linalg.det(rot):.6g}; expected an orthonormal matrix with det +1 within {tol})"
        )
    u, _, vt = np.linalg.svd(rot)
    pose = np.eye(4)
    pose[:3, :3] = u @ vt
    pose[:3, 3] = trans
    return pose


def box_to_world(pose: np.ndarray, centre: np.ndarray, yaw: float) -> tuple[np.ndarray, float]:
    """A box centre and yaw in a sensor frame → world: ``c_w = R c + t``,
    ``yaw_w = atan2((R h)_y, (R h)_x)`` with ``h = (cos yaw, sin yaw, 0)``."""
    rot = pose[:3, :3]
    heading = rot @ np.array([np.cos(yaw), np.sin(yaw), 0.0])
    return rot @ centre + pose[:3, 3], float(np.arctan2(heading[1], heading[0]))


def box_corners(box: np.ndarray) -> np.ndarray:
    """``(x, y, z, l, w, h, yaw)`` → ``[8, 3]`` corners in DAIR's order: ``0–3`` bottom, ``4–7`` top,
    local ``(±l/2, ±w/2)`` as ``(+,+), (+,−), (−,−), (−,+)`` so that ``c0 − c3`` points along the
    heading."""
    x, y, z, length, w, h, yaw = (float(v) for v in box)
    lx = np.array([1, 1, -1, -1]) * length / 2
    ly = np.array([1, -1, -1, 1]) * w / 2
    c, s = np.cos(yaw), np.sin(yaw)
    xs = x + c * lx - s * ly
    ys = y + s * lx + c * ly
    bottom = np.stack([xs, ys, np.full(4, z - h / 2)], axis=1)
    top = np.stack([xs, ys, np.full(4, z + h / 2)], axis=1)
    return np.concatenate([bottom, top])


def yaw_from_corners(corners: np.ndarray) -> float:
    """Heading of DAIR-ordered corners: ``atan2`` of the mean of ``c0−c3, c1−c2, c4−c7, c5−c6``."""
    c = np.asarray(corners, dtype=np.float64)
    d = (c[0] - c[3]) + (c[1] - c[2]) + (c[4] - c[7]) + (c[5] - c[6])
    return float(np.arctan2(d[1], d[0]))


def _has_heading(corners: np.ndarray) -> bool:
    """Whether DAIR-ordered corners span a length (the heading ``yaw_from_corners`` reads)."""
    c = np.asarray(corners, dtype=np.float64)
    d = (c[0] - c[3]) + (c[1] - c[2]) + (c[4] - c[7]) + (c[5] - c[6])
    return bool(np.hypot(d[0], d[1]) > 1e-9)


def _corner_array(raw, where: str) -> np.ndarray:
    """A label's ``world_8_points`` as a finite ``[8, 3]`` array; ``ValueError`` naming the
    label file, object and field otherwise."""
    try:
        corners = np.asarray(raw, dtype=np.float64).reshape(8, 3)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: field 'world_8_points' must be 8 points [x, y, z], got {raw!r:.200}"
        ) from None
    if not np.all(np.isfinite(corners)):
        raise ValueError(f"{where}: field 'world_8_points' must be finite, got {raw!r:.200}")
    return corners


def box_from_corners(corners: np.ndarray) -> np.ndarray:
    """DAIR-ordered corners ``[8, 3]`` (``box_corners``' order) → ``(x, y, z, l, w, h, yaw)``:
    the centre is the mean of the 8 corners, ``l`` the mean BEV length of the four edges along
    the heading (``c0−c3, c1−c2, c4−c7, c5−c6``), ``w`` of the four across it (``c0−c1,
    c3−c2, c4−c5, c7−c6``), ``h`` the mean top−bottom height, ``yaw`` from
    ``yaw_from_corners`` (metres, radians)."""
    c = np.asarray(corners, dtype=np.float64).reshape(8, 3)
    along = [(0, 3), (1, 2), (4, 7), (5, 6)]
    across = [(0, 1), (3, 2), (4, 5), (7, 6)]
    length = np.mean([np.hypot(*(c[a, :2] - c[b, :2])) for a, b in along])
    width = np.mean([np.hypot(*(c[a, :2] - c[b, :2])) for a, b in across])
    height = float(np.mean(c[4:, 2] - c[:4, 2]))
    return np.array([*c.mean(axis=0), length, width, abs(height), yaw_from_corners(c)])


def _offset(pair: dict, inf_calib: dict, where_pair: str, where_calib: str) -> tuple[float, float]:
    source, where = None, where_pair
    raw = pair.get("system_error_offset")
    if raw not in (None, "") and not isinstance(raw, dict):
        raise ValueError(
            f"{where_pair}: field 'system_error_offset' must be an object "
            f'{{"delta_x": …, "delta_y": …}}, got {raw!r}'
        )
    if isinstance(raw, dict):
        source = raw
    elif isinstance(inf_calib.get("relative_error"), dict):
        source, where = inf_calib["relative_error"], where_calib
    if source is None:
        return 0.0, 0.0
    return (
        _number(source.get("delta_x", ""), where, "delta_x", empty_is_zero=True),
        _number(source.get("delta_y", ""), where, "delta_y", empty_is_zero=True),
    )
