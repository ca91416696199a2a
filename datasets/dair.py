"""DAIR-V2X-C (cooperative vehicle–infrastructure) reader and writer for ``CoopFrame``.

Layout (``root`` = ``cooperative-vehicle-infrastructure/``), as published:

* ``cooperative/data_info.json``: a list of pairs with ``vehicle_pointcloud_path``,
  ``infrastructure_pointcloud_path``, ``vehicle_image_path``, ``infrastructure_image_path``,
  ``cooperative_label_path`` (``cooperative/label_world/<vehicle id>.json``) and
  ``system_error_offset`` ``{delta_x, delta_y}`` (metres; values may be ``""``). Paths are
  relative to ``root``; a frame id is the file name without extension (``015344``).
* ``vehicle-side/data_info.json`` and ``infrastructure-side/data_info.json``: per-frame
  records with ``pointcloud_path``, ``pointcloud_timestamp`` (µs), ``label_lidar_std_path``, the
  calibration paths and ``batch_id``; paths there are relative to the side's folder. When a
  side's file is missing, the conventional paths below are used and timestamps read as 0.
* ``vehicle-side/velodyne/<id>.pcd`` and ``infrastructure-side/velodyne/<id>.pcd``: PCD files
  (``binary`` or ``binary_compressed``) with fields ``x y z intensity``, intensity 0–255.
* calibrations, each mapping its source frame into its target frame as
  ``p_target = R p_source + t`` (``rotation`` 3×3, ``translation`` 3×1):
  ``vehicle-side/calib/lidar_to_novatel/<id>.json`` (wrapped in ``"transform"``),
  ``vehicle-side/calib/novatel_to_world/<id>.json``,
  ``infrastructure-side/calib/virtuallidar_to_world/<id>.json`` (also holds ``relative_error``).
* labels: ``vehicle-side/label/lidar/<id>.json`` (vehicle LiDAR frame),
  ``infrastructure-side/label/virtuallidar/<id>.json`` (infrastructure virtual-LiDAR frame) and
  the cooperative ``cooperative/label_world/<vehicle id>.json``.

Coordinate conversions (all documented where they happen below):

* vehicle LiDAR → world: ``T_world_novatel ∘ T_novatel_lidar``.
* infrastructure LiDAR → world: ``[R | t + (delta_x, delta_y, 0)]`` — the system-error offset is
  added to the virtuallidar→world translation, in the world frame, as the official
  ``Coord_Infrastructure_lidar2Vehicle_lidar`` does before world → novatel → vehicle LiDAR.
  The offset comes from the pair's ``system_error_offset``; if absent, from the calib's
  ``relative_error``; ``""`` reads as 0. With it, both agents share the vehicle's world frame.
* labels: ``3d_location`` is the box centre, ``3d_dimensions`` ``{h, w, l}``, ``rotation`` the yaw
  about +z from +x with ``l`` along the heading. A box in a sensor frame goes to the world as
  ``c_w = R c + t`` and ``yaw_w = atan2`` of the rotated heading vector ``R (cos yaw, sin yaw, 0)``.
* cooperative labels are in the **world** frame in DAIR-V2X-C (the official ``VICDataset`` loads
  ``cooperative_label_path`` and applies ``World → Vehicle_lidar``; OpenCOOD/CoAlign read their
  ``world_8_points`` the same way). (V2X-Seq/SPD's ``cooperative/label/`` is in the vehicle LiDAR
  frame instead: ``coop_label_frame="vehicle_lidar"`` reads that.) When ``world_8_points`` is
  present (corner order DAIR's: ``0–3`` bottom, ``4–7`` top, ``c0 − c3`` along the length) the
  corners are the box (``box_from_corners``): centre, ``l``, ``w``, ``h`` and the yaw (``atan2``;
  one official converter uses ``atan`` and loses half the circle) all come from them, as the
  official ``Label`` and HEAL/CoAlign's ``corner_to_center`` read them — DAIR's README gives the
  cooperative annotation as ``type``, ``world_8_points``, ``system_error_offset`` and calls its
  other 3D fields unusable, so ``3d_location``/``rotation`` are ignored and ``3d_dimensions`` is
  optional (when present, a zero size still drops the box, as the official loader does).
  Without corners: ``3d_location``, ``3d_dimensions`` and ``rotation``.

Labels — the vehicle-only / infrastructure-only subtlety: the cooperative label merges both sides
(objects seen by either, matched and fused, originally only Car/Truck/Van/Bus), whereas
``vehicle-side/label/lidar`` holds what the vehicle sees (in DAIR-V2X-C: within the camera's
view) and ``infrastructure-side/label/virtuallidar`` what the roadside unit sees. ``labels``
chooses one of ``"cooperative"`` (default, the evaluation ground truth), ``"vehicle"`` or
``"infrastructure"``; the other two are never mixed in (that would count objects twice).

Type mapping (case-insensitive) into ``CLASS_NAMES``: Car, Van → car; Truck, Bus → truck;
Pedestrian → pedestrian; Cyclist, Motorcyclist, Tricyclist → cyclist. Barrowlist, TrafficCone
and any other type are dropped and counted per type in ``frame.meta["dropped_categories"]``;
boxes with a zero size (present in the release; the official loader skips them too) are
dropped and counted in ``frame.meta["dropped_zero_size"]``; a negative size is malformed and
raises ``ValueError`` naming the label file and object.

Track ids: DAIR-V2X-C labels have none; boxes get ``-1`` unless a label carries ``track_id``
(V2X-Seq does, and so do files our writer makes), hashed by
``v2x.datasets.v2xsim.track_id_from_token``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from v2x.common import atomic_open
from v2x.datasets.frame import AgentObservation, CoopFrame, check_rigid_matrix
from v2x.datasets.history import latest_at_or_before
from v2x.datasets.pcd import PCD_DATA_KINDS, read_pcd_xyzi, write_pcd
from v2x.datasets.v2xsim_format import track_id_from_token

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

log = logging.getLogger(__name__)

#: A vehicle LiDAR farther than this from world z = 0 (m) is said once per dataset: the
#: detector measures point heights above ``model.grid.ground_z_m`` (default 0) and keeps only
#: ``model.grid.z_range_m`` (default −1…5 m), so with a world frame whose ground lies metres
#: above or below 0 every point would fall outside the pillars' heights without a word.
FAR_FROM_WORLD_ZERO_M = 5.0


# ------------------------------------------------------------------------------------ helpers


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


# ------------------------------------------------------------------------------------- reader


class DAIRV2XCDataset:
    """DAIR-V2X-C as a sequence of two-agent ``CoopFrame`` (vehicle = ego, infrastructure = RSU).

    Args:
        root: the ``cooperative-vehicle-infrastructure`` folder.
        split: ``None`` (every pair) or a key of the split file (``"train"``, ``"val"``, …).
        split_file: JSON split (official ``cooperative-split-data.json``: ``{"cooperative_split":
            {"train": [vehicle ids], …}}`` or plain ``{"train": […]}``); relative to ``root`` or
            absolute. Required when ``split`` is set.
        labels: ``"cooperative"``, ``"vehicle"`` or ``"infrastructure"`` (see module docstring).
        coop_label_frame: ``"world"`` (DAIR-V2X-C) or ``"vehicle_lidar"`` (V2X-Seq style).
        intensity_scale: multiplies stored intensity (``1/255`` maps DAIR's 0–255 to 0–1).
        timestamp_unit_s: seconds per unit of ``pointcloud_timestamp`` (µs: ``1e-6``).
        rigid_tol: tolerance of the calibration rotations' orthonormality.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        split_file: str | os.PathLike | None = None,
        labels: str = "cooperative",
        coop_label_frame: str = "world",
        intensity_scale: float = 1.0 / 255.0,
        timestamp_unit_s: float = 1e-6,
        rigid_tol: float = 1e-3,
    ) -> None:
        self.root = Path(root)
        if labels not in LABEL_SOURCES:
            raise ValueError(
                f"DAIRV2XCDataset: field 'labels' must be one of {LABEL_SOURCES}, got {labels!r}"
            )
        if coop_label_frame not in COOP_LABEL_FRAMES:
            raise ValueError(
                f"DAIRV2XCDataset: field 'coop_label_frame' must be one of {COOP_LABEL_FRAMES}, "
                f"got {coop_label_frame!r}"
            )
        self.labels = labels
        self.coop_label_frame = coop_label_frame
        self.intensity_scale = float(intensity_scale)
        self.timestamp_unit_s = float(timestamp_unit_s)
        self.rigid_tol = float(rigid_tol)
        self._height_said = False
        self._info_path = self.root / "cooperative" / "data_info.json"
        pairs = _load_json(self._info_path)
        if not isinstance(pairs, list):
            raise ValueError(f"{self._info_path}: must hold a JSON list of frame pairs")
        if not pairs:
            raise ValueError(
                f"{self._info_path}: holds no frame pairs (an empty list); expected one record "
                "per cooperative frame with 'vehicle_pointcloud_path' and "
                "'infrastructure_pointcloud_path'"
            )
        first_at: dict[str, int] = {}
        repeated: dict[str, tuple[int, int]] = {}  # vehicle frame -> its first and next record
        for i, pair in enumerate(pairs):
            for name in ("vehicle_pointcloud_path", "infrastructure_pointcloud_path"):
                _path(pair, name, f"{self._info_path} [{i}]")
            veh = _frame_id(pair["vehicle_pointcloud_path"])
            if veh in first_at:
                repeated.setdefault(veh, (first_at[veh], i))
            first_at.setdefault(veh, i)
        self._side_info: dict[str, dict[str, dict]] = {}
        self._side_conflicts: dict[str, dict[str, tuple[int, int]]] = {}
        for side in (VEH, INF):
            self._side_info[side], self._side_conflicts[side] = self._load_side(side)
        if split is not None:
            pairs = self._apply_split(pairs, split, split_file)
        for pair in pairs:  # (a repeat outside the split is not read: a release's files are kept)
            veh = _frame_id(pair["vehicle_pointcloud_path"])
            if veh in repeated:
                first, again = repeated[veh]
                raise ValueError(
                    f"{self._info_path} [{again}]: field 'vehicle_pointcloud_path' repeats "
                    f"vehicle frame {veh!r} of record [{first}]; expected each vehicle frame once"
                )
        self._pairs = pairs
        self._pair_index: dict[str, int] | None = None
        self._sequences: dict[tuple[str, str], list[tuple[float, str]]] = {}

    def _load_side(self, side: str) -> tuple[dict[str, dict], dict[str, tuple[int, int]]]:
        """The side's ``data_info.json`` records by frame, and the frames that two different
        records claim (first and next record; refused when such a frame is read, so that a
        release's stray repeat among frames no pair uses does not refuse the whole dataset;
        an exact repeat of a record changes nothing and is taken)."""
        path = self.root / side / "data_info.json"
        if not path.exists():
            return {}, {}
        rows = _load_json(path)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: must hold a JSON list of frames")
        records: dict[str, dict] = {}
        first_at: dict[str, int] = {}
        conflicts: dict[str, tuple[int, int]] = {}
        for i, row in enumerate(rows):
            frame = _frame_id(_path(row, "pointcloud_path", f"{path} [{i}]"))
            if frame in records:
                if row != records[frame]:
                    conflicts.setdefault(frame, (first_at[frame], i))
                continue
            records[frame], first_at[frame] = row, i
        return records, conflicts

    def _apply_split(self, pairs: list[dict], split: str, split_file) -> list[dict]:
        if split_file is None:
            raise ValueError("DAIRV2XCDataset: field 'split_file' is required when 'split' is set")
        path = Path(split_file)
        path = path if path.is_absolute() else self.root / path
        data = _load_json(path)
        table = data.get("cooperative_split", data) if isinstance(data, dict) else None
        if not isinstance(table, dict) or split not in table:
            raise ValueError(
                f"{path}: field '{split}' (under 'cooperative_split' or top level) is missing"
            )
        ids = table[split]
        if not isinstance(ids, list):
            raise ValueError(
                f"{path}: field '{split}' must be a list of vehicle frame ids, got {ids!r:.80}"
            )
        keep = {str(v) for v in ids}
        kept = [p for p in pairs if _frame_id(p["vehicle_pointcloud_path"]) in keep]
        if not kept:  # a split of another release, or ids written as numbers: not an empty run
            ours = sorted(_frame_id(p["vehicle_pointcloud_path"]) for p in pairs)[:3]
            raise ValueError(
                f"{path}: field '{split}' names {len(keep)} vehicle frame id(s) "
                f"(e.g. {sorted(keep)[:3]}), none of them a vehicle frame of "
                f"{self._info_path} (e.g. {ours}); expected the ids of this release's frames, "
                f"as strings with their leading zeros"
            )
        return kept

    def __len__(self) -> int:
        return len(self._pairs)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def _side_path(self, side: str, frame: str, key: str, folder: str) -> tuple[Path, dict]:
        """A side file: from the side's data_info record when there is one, else the convention."""
        info = self._side_info[side].get(frame, {})
        rel = info.get(key) or f"{folder}/{frame}.json"
        return self.root / side / rel, info

    def vehicle_pose(self, veh: str) -> np.ndarray:
        """``T_world_lidar = T_world_novatel ∘ T_novatel_lidar`` for vehicle frame ``veh``."""
        l2n_path, _ = self._side_path(
            VEH, veh, "calib_lidar_to_novatel_path", "calib/lidar_to_novatel"
        )
        n2w_path, _ = self._side_path(
            VEH, veh, "calib_novatel_to_world_path", "calib/novatel_to_world"
        )
        lidar_to_novatel = rigid_from_calib(_load_json(l2n_path), str(l2n_path), self.rigid_tol)
        novatel_to_world = rigid_from_calib(_load_json(n2w_path), str(n2w_path), self.rigid_tol)
        return novatel_to_world @ lidar_to_novatel

    def infrastructure_pose(
        self, inf: str, pair: dict, where_pair: str
    ) -> tuple[np.ndarray, tuple[float, float]]:
        """``T_world_virtuallidar`` with the system-error offset added to its translation."""
        path, _ = self._side_path(
            INF, inf, "calib_virtuallidar_to_world_path", "calib/virtuallidar_to_world"
        )
        calib = _load_json(path)
        pose = rigid_from_calib(calib, str(path), self.rigid_tol)
        dx, dy = _offset(pair, calib, where_pair, str(path))
        pose[:3, 3] += np.array([dx, dy, 0.0])  # offset in the world frame (official i→v chain)
        return pose, (dx, dy)

    def _timestamp(self, side: str, frame: str) -> float:
        where = f"{self.root / side / 'data_info.json'} [{frame}]"
        if self._side_info[side] and frame not in self._side_info[side]:
            raise ValueError(
                f"{where}: frame {frame!r} is missing; expected a record (with "
                "'pointcloud_path' and 'pointcloud_timestamp') for every frame that "
                "cooperative/data_info.json pairs"
            )
        if frame in self._side_conflicts[side]:
            first, again = self._side_conflicts[side][frame]
            raise ValueError(
                f"{self.root / side / 'data_info.json'} [{again}]: field 'pointcloud_path' "
                f"repeats frame {frame!r} of record [{first}] with other values; expected each "
                "frame once"
            )
        info = self._side_info[side].get(frame, {})
        raw = info.get("pointcloud_timestamp", "")
        return (
            _number(raw, where, "pointcloud_timestamp", empty_is_zero=True) * self.timestamp_unit_s
        )

    def __getitem__(self, index: int) -> CoopFrame:
        if not -len(self) <= index < len(self):
            raise IndexError(f"DAIRV2XCDataset index {index} out of range [0, {len(self)})")
        pair = self._pairs[index]
        where_pair = f"{self._info_path} [vehicle {_frame_id(pair['vehicle_pointcloud_path'])}]"
        veh = _frame_id(pair["vehicle_pointcloud_path"])
        inf = _frame_id(pair["infrastructure_pointcloud_path"])
        vehicle, dropped_veh, _ = self._observation(
            VEH, veh, self.root / pair["vehicle_pointcloud_path"], pair, where_pair
        )
        infra, dropped_inf, offset = self._observation(
            INF, inf, self.root / pair["infrastructure_pointcloud_path"], pair, where_pair
        )
        self._say_height(vehicle.pose, where_pair)
        agents, dropped_points = [vehicle, infra], dropped_veh + dropped_inf
        veh_pose, inf_pose = vehicle.pose, infra.pose
        boxes, classes, tracks, meta = self._labels(pair, where_pair, veh, inf, veh_pose, inf_pose)
        batch_id = self._side_info[VEH].get(veh, {}).get("batch_id", "")
        meta.update(
            {
                "source": "dair_v2x_c",
                "vehicle_frame": veh,
                "infrastructure_frame": inf,
                "system_error_offset": {"delta_x": offset[0], "delta_y": offset[1]},
                "labels": self.labels,
                "nonfinite_points_dropped": dropped_points,
                "batch_id": batch_id,
                # the vehicle's recorded drive: the evaluation's bootstrap unit (frames of one
                # drive are correlated); a frame without a batch id is a sequence of its own
                "sequence": f"dair/{batch_id}" if batch_id not in (None, "") else f"dair/{veh}",
            }
        )
        return CoopFrame(f"dair/{veh}", agents, boxes, classes, tracks, None, 0, meta)

    def _say_height(self, vehicle_pose: np.ndarray, where_pair: str) -> None:
        """One warning per dataset when the vehicle LiDAR's world z is far from 0
        (``FAR_FROM_WORLD_ZERO_M``): the ground's world z must then be ``model.grid.ground_z_m``."""
        z = float(vehicle_pose[2, 3])
        if self._height_said or abs(z) <= FAR_FROM_WORLD_ZERO_M:
            return
        self._height_said = True
        log.warning(
            "%s: the vehicle LiDAR is at world z = %.2f m; the detector measures point heights "
            "above model.grid.ground_z_m and keeps model.grid.z_range_m (defaults 0 and -1..5 m), "
            "so set model.grid.ground_z_m to the ground's world z here (the LiDAR's z less its "
            "height above the road) or every point falls outside the pillars' heights (ignore "
            "this if it is set so)",
            where_pair, z,
        )  # fmt: skip

    def _observation(
        self, side: str, frame: str, path: Path, pair: dict, where_pair: str
    ) -> tuple[AgentObservation, int, tuple[float, float]]:
        """One side's scan ``frame`` (points at ``path``) with its pose at that scan (the
        infrastructure's with the pair's system-error offset) and its timestamp; the number of
        non-finite points dropped; the offset ``(delta_x, delta_y)`` applied (0 for the vehicle)."""
        points, dropped = read_pcd_xyzi(path, intensity_scale=self.intensity_scale)
        offset = (0.0, 0.0)
        if side == VEH:
            agent_id, kind, pose = "vehicle", "vehicle", self.vehicle_pose(frame)
        else:
            agent_id, kind = "infrastructure", "rsu"
            pose, offset = self.infrastructure_pose(frame, pair, where_pair)
        stamp = self._timestamp(side, frame)
        return AgentObservation(agent_id, kind, pose, points, stamp), dropped, offset

    # ------------------------------------------------------------ asynchrony (earlier scans)

    def index_of(self, frame: CoopFrame) -> int:
        """Index of ``frame`` (read from this dataset) in it, by its ``meta["vehicle_frame"]``."""
        if self._pair_index is None:
            self._pair_index = {
                _frame_id(p["vehicle_pointcloud_path"]): i for i, p in enumerate(self._pairs)
            }
        veh = (frame.meta or {}).get("vehicle_frame")
        if veh not in self._pair_index:
            raise ValueError(
                f"DAIRV2XCDataset: frame {frame.frame_id!r} is not a pair of {self._info_path} "
                f"(its meta 'vehicle_frame' {veh!r} is not among this dataset's pairs)"
            )
        return self._pair_index[veh]

    def _agent_side(self, index: int, agent: int) -> tuple[str, str, dict]:
        """``(side, frame id, pair)`` of agent ``agent`` (0: vehicle, 1: infrastructure)."""
        if agent not in (0, 1):
            raise ValueError(
                f"DAIRV2XCDataset: field 'agent' must be 0 (vehicle) or 1 (infrastructure), "
                f"got {agent}"
            )
        pair = self._pairs[index]
        key = ("vehicle_pointcloud_path", "infrastructure_pointcloud_path")[agent]
        return (VEH, INF)[agent], _frame_id(pair[key]), pair

    def _sequence(self, side: str, frame: str) -> list[tuple[float, str]]:
        """``[(sensing time s, frame id)]`` ascending of the side's frames in the ``batch_id``
        (recorded sequence) of ``frame``, from the side's ``data_info.json``."""
        path = self.root / side / "data_info.json"
        info = self._side_info[side]
        if frame not in info:
            raise ValueError(
                f"{path}: frame {frame!r} is missing; asynchrony needs each side's data_info.json "
                "with 'pointcloud_timestamp' and 'batch_id' for every frame"
            )
        batch = str(info[frame].get("batch_id", ""))
        key = (side, batch)
        if key not in self._sequences:
            rows = []
            for fid, record in info.items():
                if str(record.get("batch_id", "")) != batch:
                    continue
                self._timestamp(side, fid)  # (refuses a frame two records claim)
                where = f"{path} [{fid}]"
                raw = _get(record, "pointcloud_timestamp", where)
                if isinstance(raw, str) and not raw.strip():
                    raise ValueError(
                        f"{where}: field 'pointcloud_timestamp' is empty; asynchrony needs the "
                        "sensing time of every frame (µs)"
                    )
                rows.append(
                    (_number(raw, where, "pointcloud_timestamp") * self.timestamp_unit_s, fid)
                )
            rows.sort()
            self._sequences[key] = rows
        return self._sequences[key]

    def sensing_times(self, index: int, agent: int) -> list[float]:
        """Ascending sensing times (s, ``pointcloud_timestamp``) of every frame of agent
        ``agent`` (0: vehicle, 1: infrastructure) of pair ``index`` in that side's recorded
        sequence (its ``batch_id``)."""
        side, frame, _ = self._agent_side(index, agent)
        return [t for t, _ in self._sequence(side, frame)]

    def observation_before(self, index: int, agent: int, until_s: float) -> AgentObservation | None:
        """Agent ``agent`` of pair ``index`` as it sensed in its side's latest frame of the same
        sequence (``batch_id``) sensed at or before ``until_s`` (s, within ``TIME_TOL_S``):
        that frame's points, its own pose (calibration files of that frame; the infrastructure's
        with the *pair's* system-error offset, as the official ``VICAsyncDataset`` keeps it) and
        timestamp; ``None`` when the sequence has no frame that early."""
        side, frame, pair = self._agent_side(index, agent)
        rows = self._sequence(side, frame)
        i = latest_at_or_before([t for t, _ in rows], until_s)
        if i is None:
            return None
        chosen = rows[i][1]
        rel = self._side_info[side][chosen].get("pointcloud_path") or f"velodyne/{chosen}.pcd"
        where_pair = f"{self._info_path} [vehicle {_frame_id(pair['vehicle_pointcloud_path'])}]"
        return self._observation(side, chosen, self.root / side / rel, pair, where_pair)[0]

    def _labels(self, pair, where_pair, veh, inf, veh_pose, inf_pose):
        if self.labels == "cooperative":
            rel = pair.get("cooperative_label_path") or f"cooperative/label_world/{veh}.json"
            path = self.root / rel
            frame_pose = None if self.coop_label_frame == "world" else veh_pose
        elif self.labels == "vehicle":
            path, _ = self._side_path(VEH, veh, "label_lidar_std_path", "label/lidar")
            frame_pose = veh_pose
        else:
            path, _ = self._side_path(INF, inf, "label_lidar_std_path", "label/virtuallidar")
            frame_pose = inf_pose
        objects = _load_json(path)
        if not isinstance(objects, list):
            raise ValueError(f"{path}: must hold a JSON list of objects")
        boxes, classes, tracks = [], [], []
        dropped: dict[str, int] = {}
        zero = 0
        for i, obj in enumerate(objects):
            where = f"{path} [object {i}]"
            type_name = _get(obj, "type", where)
            if not isinstance(type_name, str):
                raise ValueError(
                    f"{where}: field 'type' must be a class name string (e.g. 'Car'), "
                    f"got {type_name!r}"
                )
            corners = obj.get("world_8_points") if frame_pose is None else None
            if corners is not None:
                corners = _corner_array(corners, where)
            dims = obj.get("3d_dimensions") if corners is not None else None
            zero_dims = False  # a zero 3d_dimensions: the release's zero-size boxes, dropped
            if corners is None or dims is not None:
                dims = _get(obj, "3d_dimensions", where)
                h = _number(_get(dims, "h", f"{where} 3d_dimensions"), where, "3d_dimensions.h")
                w = _number(_get(dims, "w", f"{where} 3d_dimensions"), where, "3d_dimensions.w")
                length = _number(
                    _get(dims, "l", f"{where} 3d_dimensions"), where, "3d_dimensions.l"
                )
            if corners is not None:
                # the corners are the box (DAIR's README: the cooperative annotation is type,
                # world_8_points, system_error_offset; its other 3D fields are not usable) —
                # what the official Label and HEAL/CoAlign's corner_to_center read
                box = box_from_corners(corners)
                centre, yaw = box[:3], float(box[6])
                # (a zero or negative 3d_dimensions keeps its meaning: dropped / refused below)
                zero_dims = dims is not None and min(h, w, length) == 0
                if dims is None or min(h, w, length) > 0:
                    length, w, h = (float(v) for v in box[3:6])
            else:
                loc = _get(obj, "3d_location", where)
                centre = np.array(
                    [
                        _number(_get(loc, k, f"{where} 3d_location"), where, f"3d_location.{k}")
                        for k in "xyz"
                    ]
                )
                yaw = _number(_get(obj, "rotation", where), where, "rotation")
            cls = TYPE_TO_CLASS.get(type_name.strip().lower())
            if cls is None:
                dropped[type_name] = dropped.get(type_name, 0) + 1
                continue
            if min(h, w, length) < 0:
                raise ValueError(
                    f"{where}: field '3d_dimensions' must not be negative, got "
                    f"{{h: {h:g}, w: {w:g}, l: {length:g}}}"
                )
            if corners is not None and not zero_dims and not _has_heading(corners):
                raise ValueError(
                    f"{where}: field 'world_8_points' has no heading (c0 − c3 is zero); expected "
                    "DAIR's corner order (0–3 bottom, 4–7 top, c0 − c3 along the length)"
                )
            if min(h, w, length) == 0:
                zero += 1
                continue
            if frame_pose is not None:
                centre, yaw = box_to_world(frame_pose, centre, yaw)
            boxes.append([*centre, length, w, h, yaw])
            classes.append(cls)
            tracks.append(
                track_id_from_token(obj["track_id"])
                if obj.get("track_id") not in (None, "")
                else -1
            )
        meta = {"dropped_categories": dropped, "dropped_zero_size": zero, "label_file": str(path)}
        return (
            np.asarray(boxes, dtype=np.float64).reshape(-1, 7),
            np.asarray(classes, dtype=np.int64),
            np.asarray(tracks, dtype=np.int64),
            meta,
        )


# ------------------------------------------------------------------------------------- writer


def _write_json(path: Path, payload) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1)


def _calib(pose: np.ndarray) -> dict:
    return {"rotation": pose[:3, :3].tolist(), "translation": [[float(v)] for v in pose[:3, 3]]}


def _label(box: np.ndarray, cls: int, track: int, world: bool) -> dict:
    x, y, z, length, w, h, yaw = (float(v) for v in box)
    obj = {
        "type": CLASS_TO_TYPE[cls],
        "occluded_state": 0,
        "truncated_state": 0,
        "2d_box": {"xmin": 0.0, "ymin": 0.0, "xmax": 0.0, "ymax": 0.0},
        "3d_dimensions": {"h": h, "w": w, "l": length},
        "3d_location": {"x": x, "y": y, "z": z},
        "rotation": yaw,
    }
    if world:
        obj["world_8_points"] = box_corners(box).tolist()
    if track >= 0:
        obj["track_id"] = str(track)
    return obj


def _box_to_frame(box: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """World box → the frame whose pose (frame→world) is ``pose``."""
    inv = np.linalg.inv(pose)
    centre, yaw = box_to_world(inv, box[:3], float(box[6]))
    return np.array([*centre, *box[3:6], yaw])


MAX_FRAME_ID = 999_999  # DAIR ids are 6 digits: the official tools read ``image_path[-10:-4]``


def _frame_offset(frame: CoopFrame) -> tuple[float, float]:
    """``frame.meta["system_error_offset"]`` (``{delta_x, delta_y}`` or a pair; absent or ``""`` →
    0) as two finite floats; anything else raises ``ValueError`` naming the frame, the field and
    the value."""
    raw = (frame.meta or {}).get("system_error_offset", (0.0, 0.0))
    try:
        pair = (raw["delta_x"], raw["delta_y"]) if isinstance(raw, dict) else tuple(raw)
        if len(pair) != 2 or isinstance(raw, (str, bytes)):
            raise ValueError
        dx, dy = (0.0 if v == "" else float(v) for v in pair)  # "" is 0, as in the format
    except (KeyError, TypeError, ValueError):
        dx = dy = float("nan")
    if not (np.isfinite(dx) and np.isfinite(dy)):
        raise ValueError(
            f"frame {frame.frame_id!r}: field 'meta[\"system_error_offset\"]' must be "
            f"{{'delta_x': metres, 'delta_y': metres}} or a pair of finite numbers, got {raw!r:.200}"
        )
    return dx, dy


def _check_writer_args(mount, pcd_data: str, intensity_scale: float, first_id: int) -> np.ndarray:
    """Validate ``write_dair_v2x_c``'s options before anything is written; returns the mount."""
    where = "write_dair_v2x_c"
    mount = np.eye(4) if mount is None else check_rigid_matrix(mount, where, "lidar_to_novatel")
    if pcd_data not in PCD_DATA_KINDS:
        raise ValueError(
            f"{where}: field 'pcd_data' must be one of {PCD_DATA_KINDS}, got {pcd_data!r}"
        )
    if not (isinstance(intensity_scale, (int, float)) and np.isfinite(intensity_scale)) or (
        intensity_scale <= 0
    ):
        raise ValueError(
            f"{where}: field 'intensity_scale' must be a finite number > 0, got {intensity_scale!r}"
        )
    if (
        isinstance(first_id, bool)
        or not isinstance(first_id, (int, np.integer))
        or not (0 <= first_id <= MAX_FRAME_ID)
    ):
        raise ValueError(
            f"{where}: field 'first_id' must be a whole number in [0, {MAX_FRAME_ID}] (DAIR frame "
            f"ids are 6 digits), got {first_id!r}"
        )
    return mount


def _pick_agents(frame: CoopFrame) -> tuple[AgentObservation, AgentObservation]:
    vehicle = frame.ego if frame.ego.kind == "vehicle" else None
    if vehicle is None:
        vehicle = next((a for a in frame.agents if a.kind == "vehicle"), None)
    rsus = [a for a in frame.agents if a.kind == "rsu"]
    if vehicle is None or not rsus:
        raise ValueError(
            f"frame {frame.frame_id!r}: field 'agents' needs a vehicle and an RSU for DAIR-V2X-C, "
            f"got kinds {[a.kind for a in frame.agents]}"
        )
    rsu = min(rsus, key=lambda a: float(np.linalg.norm(a.pose[:2, 3] - vehicle.pose[:2, 3])))
    return vehicle, rsu


def write_dair_v2x_c(
    frames: Iterable[CoopFrame],
    root: str | os.PathLike,
    *,
    lidar_to_novatel: np.ndarray | None = None,
    pcd_data: str = "binary",
    intensity_scale: float = 255.0,
    first_id: int = 0,
) -> dict:
    """Write frames in the DAIR-V2X-C cooperative layout (no images: image paths are written in
    the JSON, as the official tools derive frame ids from them, but no ``.jpg`` is made).

    Per frame: the ego (or first vehicle) becomes the vehicle side, the RSU nearest to it the
    infrastructure side; other agents are not representable and are counted in the summary.
    ``frame.meta["system_error_offset"]`` (``{delta_x, delta_y}`` or a pair) is written to the
    pair and the calib's ``relative_error``, and subtracted from the written virtuallidar→world
    translation, so the reader's ``t + offset`` gives back the frame's pose. Side labels hold the
    boxes the side sees (``frame.visibility > 0``; every box when visibility is unknown); the
    cooperative label holds every box, in the world frame, with ``world_8_points``.

    Args:
        frames: frames to write; consecutive frames sharing the ``frame_id`` prefix before the
            last ``/`` share a ``batch_id``.
        root: output ``cooperative-vehicle-infrastructure`` folder.
        lidar_to_novatel: ``[4, 4]`` vehicle LiDAR→NovAtel mount (identity if ``None``); the
            written novatel→world is ``pose ∘ mount⁻¹``.
        pcd_data: PCD encoding (``"binary"``, ``"binary_compressed"``, ``"ascii"``).
        intensity_scale: stored intensity = intensity × this (0–1 → 0–255), finite and > 0.
        first_id: number of the first frame id (``000000``); every id must fit DAIR's 6 digits
            (``first_id + len(frames) - 1 <= 999999``).

    Raises:
        ValueError: naming the option, or the frame and field, that a DAIR-V2X-C reader could
            not take (a mount that is not rigid, an unknown PCD encoding, an id beyond 6 digits,
            a malformed ``system_error_offset``, a frame without a vehicle and an RSU, no frames).

    Returns:
        summary dict: ``pairs``, ``agents_not_written``, ``root``.
    """
    root = Path(root)
    mount = _check_writer_args(lidar_to_novatel, pcd_data, intensity_scale, first_id)
    coop, veh_info, inf_info = [], [], []
    skipped = 0
    batches: list[tuple[str, list[str]]] = []
    for n, frame in enumerate(frames):
        if first_id + n > MAX_FRAME_ID:
            raise ValueError(
                f"write_dair_v2x_c: field 'first_id' {first_id} + frame {n} ({frame.frame_id!r}) "
                f"gives id {first_id + n}, beyond DAIR's 6 digits ({MAX_FRAME_ID})"
            )
        fid = f"{first_id + n:06d}"
        vehicle, rsu = _pick_agents(frame)
        skipped += frame.num_agents - 2
        dx, dy = _frame_offset(frame)
        batch = frame.frame_id.rsplit("/", 1)[0] if "/" in frame.frame_id else "0"
        if batches and batches[-1][0] == batch:
            batches[-1][1].append(fid)
        else:
            batches.append((batch, [fid]))
        # point clouds
        write_pcd(
            root / VEH / "velodyne" / f"{fid}.pcd",
            vehicle.points,
            pcd_data,
            intensity_scale=intensity_scale,
        )
        write_pcd(
            root / INF / "velodyne" / f"{fid}.pcd",
            rsu.points,
            pcd_data,
            intensity_scale=intensity_scale,
        )
        # calibrations: vehicle pose = novatel_to_world ∘ lidar_to_novatel
        _write_json(
            root / VEH / "calib" / "lidar_to_novatel" / f"{fid}.json", {"transform": _calib(mount)}
        )
        _write_json(
            root / VEH / "calib" / "novatel_to_world" / f"{fid}.json",
            _calib(vehicle.pose @ np.linalg.inv(mount)),
        )
        inf_written = rsu.pose.copy()
        inf_written[:3, 3] -= np.array([dx, dy, 0.0])  # the reader adds the offset back
        inf_calib = _calib(inf_written)
        inf_calib["relative_error"] = {"delta_x": dx, "delta_y": dy}
        _write_json(root / INF / "calib" / "virtuallidar_to_world" / f"{fid}.json", inf_calib)
        # labels
        agent_index = {id(a): i for i, a in enumerate(frame.agents)}
        sides = []
        for agent in (vehicle, rsu):
            row = frame.visibility[agent_index[id(agent)]] if frame.visibility is not None else None
            objs = [
                _label(
                    _box_to_frame(frame.boxes[m], agent.pose),
                    int(frame.classes[m]),
                    int(frame.track_ids[m]),
                    False,
                )
                for m in range(frame.boxes.shape[0])
                if row is None or row[m] > 0
            ]
            sides.append(objs)
        _write_json(root / VEH / "label" / "lidar" / f"{fid}.json", sides[0])
        _write_json(root / INF / "label" / "virtuallidar" / f"{fid}.json", sides[1])
        world = []
        for m in range(frame.boxes.shape[0]):
            obj = _label(frame.boxes[m], int(frame.classes[m]), int(frame.track_ids[m]), True)
            obj["system_error_offset"] = {"delta_x": dx, "delta_y": dy}
            world.append(obj)
        _write_json(root / "cooperative" / "label_world" / f"{fid}.json", world)
        stamp_v = str(int(round(vehicle.timestamp * 1e6)))
        stamp_i = str(int(round(rsu.timestamp * 1e6)))
        coop.append(
            {
                "infrastructure_image_path": f"{INF}/image/{fid}.jpg",
                "infrastructure_pointcloud_path": f"{INF}/velodyne/{fid}.pcd",
                "vehicle_image_path": f"{VEH}/image/{fid}.jpg",
                "vehicle_pointcloud_path": f"{VEH}/velodyne/{fid}.pcd",
                "cooperative_label_path": f"cooperative/label_world/{fid}.json",
                "system_error_offset": {"delta_x": dx, "delta_y": dy},
            }
        )
        veh_info.append(
            {
                "image_path": f"image/{fid}.jpg",
                "image_timestamp": stamp_v,
                "pointcloud_path": f"velodyne/{fid}.pcd",
                "pointcloud_timestamp": stamp_v,
                "label_lidar_std_path": f"label/lidar/{fid}.json",
                "label_camera_std_path": f"label/camera/{fid}.json",
                "calib_lidar_to_camera_path": f"calib/lidar_to_camera/{fid}.json",
                "calib_lidar_to_novatel_path": f"calib/lidar_to_novatel/{fid}.json",
                "calib_novatel_to_world_path": f"calib/novatel_to_world/{fid}.json",
                "calib_camera_intrinsic_path": f"calib/camera_intrinsic/{fid}.json",
                "batch_id": batch,
                "intersection_loc": "",
            }
        )
        inf_info.append(
            {
                "image_path": f"image/{fid}.jpg",
                "image_timestamp": stamp_i,
                "pointcloud_path": f"velodyne/{fid}.pcd",
                "pointcloud_timestamp": stamp_i,
                "label_lidar_std_path": f"label/virtuallidar/{fid}.json",
                "label_camera_std_path": f"label/camera/{fid}.json",
                "calib_virtuallidar_to_world_path": f"calib/virtuallidar_to_world/{fid}.json",
                "calib_camera_intrinsic_path": f"calib/camera_intrinsic/{fid}.json",
                "batch_id": batch,
                "intersection_loc": "",
            }
        )
    if not coop:
        raise ValueError(f"write_dair_v2x_c: field 'frames' is empty; nothing written under {root}")
    start_end = {fid: (ids[0], ids[-1]) for _, ids in batches for fid in ids}
    for rows in (veh_info, inf_info):
        for row in rows:
            first, last = start_end[_frame_id(row["pointcloud_path"])]
            row["batch_start_id"], row["batch_end_id"] = first, last
    _write_json(root / "cooperative" / "data_info.json", coop)
    _write_json(root / VEH / "data_info.json", veh_info)
    _write_json(root / INF / "data_info.json", inf_info)
    return {"root": str(root), "pairs": len(coop), "agents_not_written": skipped}
