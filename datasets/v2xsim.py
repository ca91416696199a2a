"""V2X-Sim 2.0 reader and writer (nuScenes table layout) producing/consuming ``CoopFrame``.

Layout (``root/``):

* ``<version>/`` (``v2.0`` by default) holds the nuScenes JSON tables: ``scene``, ``sample``,
  ``sample_data``, ``ego_pose``, ``calibrated_sensor``, ``sensor``, ``sample_annotation``,
  ``instance``, ``category``, ``attribute``, ``visibility``, ``log``, ``map``.
* One ``sample`` is one cooperative frame: every agent's key-frame ``sample_data`` whose sensor
  channel is ``LIDAR_TOP_id_<k>`` belongs to it. ``sample_data`` has no channel field: the channel
  is found through ``calibrated_sensor.sensor_token → sensor.channel``. ``id_0`` is the roadside
  unit (RSU), with its own ``ego_pose`` and ``calibrated_sensor`` like any agent.
* Point clouds live where ``sample_data.filename`` says (often ``sweeps/LIDAR_TOP_id_k/…``):
  ``.pcd.bin`` files of float32 × 5 per point (x, y, z, intensity, ring) in the sensor frame.

Coordinate conventions (plain nuScenes math, no axis mirroring):

* quaternions are ``[w, x, y, z]``; ``T_world_sensor = T_world_ego(ego_pose) ∘
  T_ego_sensor(calibrated_sensor)``;
* ``sample_annotation`` boxes are in the global (world) frame: ``translation`` is the box centre,
  ``size`` is ``[w, l, h]``, ``rotation`` turns the box frame (x along the length) into the world,
  so ``yaw = atan2(R[1, 0], R[0, 0])`` of that rotation.

Category mapping (nuScenes-style names, matched by prefix; ``CLASS_NAMES`` index in brackets):

* ``vehicle.car``, ``vehicle.emergency.*`` → car [0];
* ``vehicle.truck``, ``vehicle.bus.*``, ``vehicle.trailer``, ``vehicle.construction`` → truck [1];
* ``human.pedestrian.*`` → pedestrian [2];
* ``vehicle.bicycle``, ``vehicle.motorcycle`` → cyclist [3], except annotations carrying the
  attribute ``cycle.without_rider`` (a parked bicycle is not a cyclist);
* everything else (``movable_object.*``, ``static_object.*``, ``animal``, other ``vehicle.*``) is
  dropped; each frame counts what it dropped in ``frame.meta["dropped_categories"]``.

Track ids: the instance token's low 63 bits (tokens are 32 hex digits), see ``track_id_from_token``.

Our writer adds one non-nuScenes file, ``<version>/v2x_frames.json``, that the nuScenes devkit
ignores: per sample, our frame id, agent ids and kinds (V2X-Sim has only vehicles and one RSU;
this keeps UAVs and extra RSUs), the ego channel, the box order and per-agent visibility. The
reader uses it when present and falls back to the V2X-Sim conventions otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from v2x.common import atomic_open, atomic_write_bytes
from v2x.datasets.frame import (
    AGENT_KINDS,
    CLASS_NAMES,
    AgentObservation,
    CoopFrame,
    check_rigid_matrix,
)
from v2x.datasets.history import latest_at_or_before

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
_TOKEN_NAMESPACE = uuid.UUID("6f1c2a57-0b6e-4f57-9a0e-2b8f3c1d9e41")


# ------------------------------------------------------------------------------------ helpers


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


# ------------------------------------------------------------------------------------- reader


def _skipped_channels(skip_channels: Iterable[int], ego_channel: int) -> frozenset[int]:
    """``skip_channels`` as a set of agent ids ``k``; ``ValueError`` naming the field for a
    value that is not a whole number >= 0 or for the ego's own channel."""
    skipped = []
    for k in skip_channels:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(
                f"V2XSimDataset: field 'skip_channels' must list agent ids k >= 0 of "
                f"LIDAR_TOP_id_k, got {k!r}"
            )
        skipped.append(k)
    if ego_channel in skipped:
        raise ValueError(
            f"V2XSimDataset: field 'skip_channels' {sorted(skipped)} holds the ego's channel "
            f"(field 'ego_channel' = {ego_channel}); expected other agent ids"
        )
    return frozenset(skipped)


class V2XSimDataset:
    """V2X-Sim 2.0 as a sequence of ``CoopFrame`` (one per ``sample``), in scene order.

    Args:
        root: dataset folder (holds ``<version>/`` and the ``sweeps/`` files).
        version: table folder name.
        scenes: scene names or indices (into ``scene.json``) to keep; ``None`` keeps all.
        split: a key of ``split_scenes`` (``"train"``, ``"val"``, ``"test"``) selecting the scenes;
            exclusive with ``scenes``.
        split_scenes: split name → scene names or indices (see ``conf/dataset/v2xsim.yaml``).
        ego_channel: agent id ``k`` of the ego (``LIDAR_TOP_id_k``); if a sample lacks it, the
            lowest-numbered vehicle is the ego. Our writer's ``v2x_frames.json`` overrides this.
        rsu_channels: agent ids that are RSUs (V2X-Sim: only ``0``).
        rigid_tol: largest accepted deviation of a quaternion's norm from 1.
        skip_channels: agent ids ``k`` left out of every frame (``[0]``: no RSU, the agents
            HEAL/CoAlign's V2X-Sim 2.0 loader reads, ``lidar_path_1`` … ``lidar_path_<agent_num>``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        version: str = "v2.0",
        scenes: Iterable[str | int] | None = None,
        split: str | None = None,
        split_scenes: dict[str, Iterable[str | int]] | None = None,
        ego_channel: int = 1,
        rsu_channels: Iterable[int] = (0,),
        rigid_tol: float = 1e-3,
        skip_channels: Iterable[int] = (),
    ) -> None:
        self.root = Path(root)
        self.table_dir = self.root / version
        if not self.table_dir.is_dir():
            raise ValueError(_no_version(self.root, version))
        self.ego_channel = int(ego_channel)
        self.rsu_channels = {int(k) for k in rsu_channels}
        self.skip_channels = _skipped_channels(skip_channels, self.ego_channel)
        self.rigid_tol = float(rigid_tol)
        if split is not None:
            if scenes is not None:
                raise ValueError("V2XSimDataset: set field 'scenes' or field 'split', not both")
            if not split_scenes or split not in split_scenes:
                raise ValueError(
                    f"V2XSimDataset: field 'split' is {split!r}; expected a key of "
                    f"'split_scenes' ({', '.join(sorted(split_scenes or {})) or 'none given'}), "
                    "or null for every scene"
                )
            scenes = list(split_scenes[split])
        tables = {name: _load_table(self.table_dir, name) for name in TABLES_REQUIRED}
        for name in TABLES_OPTIONAL:
            if (self.table_dir / f"{name}.json").exists():
                tables[name] = _load_table(self.table_dir, name)
        self._index(tables, scenes, split)
        ext_path = self.table_dir / EXTENSION_FILE
        self.extension: dict[str, dict] = {}
        if ext_path.exists():
            for row in _load_table(ext_path.parent, ext_path.stem):
                self.extension[row["token"]] = _check_extension(row, ext_path, self._samples)

    def _file(self, name: str) -> str:
        return str(self.table_dir / f"{name}.json")

    def _no_scene(self, key: str | int, names: list[str | None], split: str | None) -> str:
        """The message for a scene ``key`` that ``scene.json`` (scenes ``names``) lacks; it names
        ``split`` (a key of ``split_scenes``) when the split chose the scene, not ``scenes``."""
        held = f"it holds {len(names)} scene(s): indices 0-{len(names) - 1}, names {names[:5]}"
        if split is None:
            return (
                f"{self._file('scene')}: has no scene {key!r} (field 'scenes'); {held}; "
                "expected scene names or indices of this file"
            )
        return (
            f"{self._file('scene')}: has no scene {key!r} (chosen by field 'split' = {split!r} "
            f"from 'split_scenes'); {held}; 'split_scenes' defaults to V2X-Sim 2.0's 100-scene "
            "split: for other data (e.g. written by v2x.datasets.export) expected split: null "
            "(every scene), 'scenes', or a 'split_scenes' of its own"
        )

    def _index(
        self,
        tables: dict[str, list[dict]],
        scenes: Iterable[str | int] | None,
        split: str | None = None,
    ) -> None:
        by_token = {name: {row["token"]: row for row in rows} for name, rows in tables.items()}
        self._ego_pose = by_token["ego_pose"]
        self._calib = by_token["calibrated_sensor"]
        self._category = by_token["category"]
        self._instance = by_token["instance"]
        self._attribute = by_token.get("attribute", {})
        sensors = by_token["sensor"]
        calib_channel: dict[str, str] = {}
        for token, calib in self._calib.items():
            sensor_token = _field(
                calib, "sensor_token", f"{self._file('calibrated_sensor')} [{token}]"
            )
            if sensor_token not in sensors:
                raise ValueError(
                    f"{self._file('calibrated_sensor')} [{token}]: field 'sensor_token' "
                    f"{sensor_token!r} is not in sensor.json"
                )
            calib_channel[token] = _field(
                sensors[sensor_token], "channel", f"{self._file('sensor')} [{sensor_token}]"
            )
        lidar_by_sample: dict[str, dict[int, dict]] = defaultdict(dict)
        for sd in tables["sample_data"]:
            where = f"{self._file('sample_data')} [{sd['token']}]"
            calib_token = _field(sd, "calibrated_sensor_token", where)
            channel = calib_channel.get(calib_token)
            if channel is None:
                raise ValueError(
                    f"{where}: field 'calibrated_sensor_token' {calib_token!r} is unknown"
                )
            match = LIDAR_CHANNEL.match(channel)
            if match is None or not _field(sd, "is_key_frame", where):
                continue
            sample_token = _field(sd, "sample_token", where)
            if sample_token not in by_token["sample"]:
                raise ValueError(
                    f"{where}: field 'sample_token' {sample_token!r} is not in sample.json"
                )
            k = int(match.group(1))
            if k in self.skip_channels:
                continue
            if k in lidar_by_sample[sample_token]:
                raise ValueError(
                    f"{where}: sample {sample_token!r} already has key-frame {channel} record "
                    f"{lidar_by_sample[sample_token][k]['token']!r}; expected one per agent"
                )
            lidar_by_sample[sample_token][k] = sd
        anns_by_sample: dict[str, list[dict]] = defaultdict(list)
        for ann in tables["sample_annotation"]:
            where = f"{self._file('sample_annotation')} [{ann['token']}]"
            sample_token = _field(ann, "sample_token", where)
            if sample_token not in by_token["sample"]:
                raise ValueError(
                    f"{where}: field 'sample_token' {sample_token!r} is not in sample.json"
                )
            anns_by_sample[sample_token].append(ann)
        samples = by_token["sample"]
        if not tables["scene"]:
            raise ValueError(
                f"{self._file('scene')}: holds no scenes (an empty list); expected one record "
                "per scene with 'first_sample_token'"
            )
        all_scenes = tables["scene"]
        if scenes is None:
            chosen = list(range(len(all_scenes)))
        else:
            names = {s.get("name"): i for i, s in enumerate(all_scenes)}
            chosen = []
            for key in scenes:
                if isinstance(key, int) and 0 <= key < len(all_scenes):
                    chosen.append(key)
                elif key in names:
                    chosen.append(names[key])
                else:
                    raise ValueError(self._no_scene(key, list(names), split))
        self._frames: list[tuple[str, str, int]] = []  # (sample token, scene name, index in scene)
        self._lidar_by_sample = lidar_by_sample
        self._anns_by_sample = anns_by_sample
        # per (scene name, channel k): [(sensing time s, sample token)] ascending (asynchrony)
        self._history: dict[tuple[str, int], list[tuple[float, str]]] = defaultdict(list)
        for scene_index in chosen:
            scene = all_scenes[scene_index]
            where = f"{self._file('scene')} [{scene['token']}]"
            name = str(scene.get("name", f"scene_{scene_index}"))
            token = _field(scene, "first_sample_token", where)
            position = 0
            seen = set()
            while token:
                if token not in samples:
                    raise ValueError(
                        f"{self._file('sample')}: sample {token!r} (linked from {where} or a 'next' field) is missing"
                    )
                if token in seen:
                    raise ValueError(
                        f"{self._file('sample')} [{token}]: field 'next' makes a cycle"
                    )
                seen.add(token)
                self._frames.append((token, name, position))
                for k, sd in lidar_by_sample.get(token, {}).items():
                    stamp = _seconds(sd, f"{self._file('sample_data')} [{sd['token']}]")
                    self._history[(name, k)].append((stamp, token))
                position += 1
                token = _field(samples[token], "next", f"{self._file('sample')} [{token}]")
        self._samples = samples
        for rows in self._history.values():
            rows.sort(key=lambda row: row[0])
        self._index_of = {token: i for i, (token, _, _) in enumerate(self._frames)}

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def sample_token(self, index: int) -> str:
        return self._frames[index][0]

    def _pose(self, sd: dict) -> np.ndarray:
        """``T_world_sensor = T_world_ego ∘ T_ego_sensor`` (both from quaternion + translation)."""
        ego_token = _field(sd, "ego_pose_token", f"{self._file('sample_data')} [{sd['token']}]")
        calib_token = sd["calibrated_sensor_token"]
        if ego_token not in self._ego_pose:
            raise ValueError(
                f"{self._file('sample_data')} [{sd['token']}]: field 'ego_pose_token' {ego_token!r} is not in ego_pose.json"
            )
        ego = self._ego_pose[ego_token]
        calib = self._calib[calib_token]
        mats = []
        for name, record, token in (
            ("ego_pose", ego, ego_token),
            ("calibrated_sensor", calib, calib_token),
        ):
            where = f"{self._file(name)} [{token}]"
            rot = quaternion_to_matrix(
                _field(record, "rotation", where), where, "rotation", self.rigid_tol
            )
            mats.append(_transform(rot, _field(record, "translation", where), where, "translation"))
        return mats[0] @ mats[1]

    def __getitem__(self, index: int) -> CoopFrame:
        if not -len(self) <= index < len(self):
            raise IndexError(f"V2XSimDataset index {index} out of range [0, {len(self)})")
        token, scene_name, position = self._frames[index]
        ext = self.extension.get(token, {})
        lidar = self._lidar_by_sample.get(token, {})
        if not lidar:
            raise ValueError(
                f"{self._file('sample_data')}: sample {token!r} has no key-frame LIDAR_TOP_id_k record"
            )
        channels = self._channel_order(token)
        agents = [self._observation(lidar[k], k, ext) for k in channels]
        ego_channel = ext.get("ego_channel", self.ego_channel)
        if ego_channel in lidar:
            ego_index = channels.index(ego_channel)
        else:
            vehicles = [i for i, a in enumerate(agents) if a.kind == "vehicle"]
            ego_index = vehicles[0] if vehicles else 0
        boxes, classes, track_ids, dropped, order = self._boxes(token, ext.get("annotations"))
        visibility = None
        if "visibility" in ext and ext.get("annotations") is not None:
            vis_by_channel = ext["visibility"]
            visibility = np.zeros((len(agents), len(order)), dtype=np.int32)
            for a, k in enumerate(channels):
                row = vis_by_channel.get(f"LIDAR_TOP_id_{k}")
                if row is None:
                    continue
                if not isinstance(row, list) or len(row) != len(ext["annotations"]):
                    raise ValueError(
                        f"{self.table_dir / EXTENSION_FILE} [{token}]: field "
                        f"'visibility.LIDAR_TOP_id_{k}' must be a list of "
                        f"{len(ext['annotations'])} counts (one per 'annotations' entry), got "
                        f"{len(row) if isinstance(row, list) else row!r}"
                    )
                visibility[a] = [row[i] for i in order]
        frame_id = ext.get("frame_id", f"{scene_name}/{position:04d}")
        meta = {
            "source": "v2xsim",
            "sample_token": token,
            "scene": scene_name,
            "dropped_categories": dropped,
        }
        meta.update(ext.get("meta", {}))
        return CoopFrame(frame_id, agents, boxes, classes, track_ids, visibility, ego_index, meta)

    def _channel_order(self, token: str) -> list[int]:
        """The agents' channels ``k`` of sample ``token`` in frame order (our writer's saved
        order first, then ascending ``k``)."""
        ext = self.extension.get(token, {})
        channels = sorted(self._lidar_by_sample.get(token, {}))
        saved_order = [LIDAR_CHANNEL.match(c) for c in ext.get("agent_order", [])]
        saved_rank = {int(m.group(1)): i for i, m in enumerate(saved_order) if m}
        channels.sort(key=lambda k: (saved_rank.get(k, len(saved_rank)), k))
        return channels

    def _observation(self, sd: dict, k: int, ext: dict) -> AgentObservation:
        """Channel ``k``'s scan ``sd``: its points, its pose at its own sensing time
        (``ego_pose`` of that ``sample_data`` ∘ mount), its timestamp (s); agent id and kind
        from our writer's ``ext`` entry of the frame, else the V2X-Sim conventions."""
        where = f"{self._file('sample_data')} [{sd['token']}]"
        channel = f"LIDAR_TOP_id_{k}"
        info = ext.get("agents", {}).get(channel, {})
        kind = info.get("kind", "rsu" if k in self.rsu_channels else "vehicle")
        agent_id = info.get("agent_id", f"{'rsu' if kind == 'rsu' else 'veh'}_{k}")
        filename = _field(sd, "filename", where)
        if not isinstance(filename, str) or not filename.strip():
            raise ValueError(
                f"{where}: field 'filename' must be a non-empty path string, got {filename!r}"
            )
        points = read_pcd_bin(self.root / filename)
        timestamp = _seconds(sd, where)
        try:
            return AgentObservation(agent_id, kind, self._pose(sd), points, timestamp)
        except ValueError as exc:
            message = str(exc)
            if message.startswith(f"{where}: "):  # already names this record: add the channel
                message = message[len(where) + 2 :]
            raise ValueError(f"{where} ({channel}): {message}") from None

    # ------------------------------------------------------------ asynchrony (earlier scans)

    def index_of(self, frame: CoopFrame) -> int:
        """Index of ``frame`` (read from this dataset) in it, by its ``meta["sample_token"]``."""
        token = (frame.meta or {}).get("sample_token")
        if token not in self._index_of:
            raise ValueError(
                f"V2XSimDataset: frame {frame.frame_id!r} is not a frame of {self.table_dir} "
                f"(its meta 'sample_token' {token!r} is not among this dataset's samples)"
            )
        return self._index_of[token]

    def _agent_key(self, index: int, agent: int) -> tuple[str, int]:
        token, scene_name, _ = self._frames[index]
        channels = self._channel_order(token)
        if not 0 <= agent < len(channels):
            raise ValueError(
                f"V2XSimDataset: field 'agent' must be an agent index below {len(channels)} of "
                f"frame {index}, got {agent}"
            )
        return scene_name, channels[agent]

    def sensing_times(self, index: int, agent: int) -> list[float]:
        """Ascending sensing times (s, ``sample_data.timestamp``) of every key-frame scan of
        agent ``agent`` of frame ``index`` (its channel ``LIDAR_TOP_id_k``) in the frame's
        scene."""
        return [t for t, _ in self._history[self._agent_key(index, agent)]]

    def observation_before(self, index: int, agent: int, until_s: float) -> AgentObservation | None:
        """Agent ``agent`` of frame ``index`` as it sensed in its latest key-frame scan of the
        scene sensed at or before ``until_s`` (s, within ``TIME_TOL_S``), with its pose at that
        scan (its ``ego_pose`` ∘ mount) and that scan's timestamp; ``None`` when the scene has
        no scan of it that early (``v2x.datasets.history``)."""
        key = self._agent_key(index, agent)
        rows = self._history[key]
        i = latest_at_or_before([t for t, _ in rows], until_s)
        if i is None:
            return None
        token = rows[i][1]
        return self._observation(
            self._lidar_by_sample[token][key[1]],
            key[1],
            self.extension.get(self._frames[index][0], {}),
        )

    def _boxes(self, sample_token: str, ext_order: list[str] | None):
        anns = self._anns_by_sample.get(sample_token, [])
        rank: dict[str, int] = {}
        if ext_order is not None:
            rank = {t: i for i, t in enumerate(ext_order)}
            have = {a["token"] for a in anns}
            if len(rank) != len(ext_order) or set(rank) != have:
                missing, unknown = sorted(have - set(rank)), sorted(set(rank) - have)
                raise ValueError(
                    f"{self.table_dir / EXTENSION_FILE} [{sample_token}]: field 'annotations' "
                    f"must list each of the sample's {len(have)} sample_annotation tokens once; "
                    f"got {len(ext_order)} ({len(missing)} missing, e.g. "
                    f"{missing[:1]}; {len(unknown)} not the sample's, e.g. {unknown[:1]})"
                )
            anns = sorted(anns, key=lambda a: rank.get(a["token"], len(rank)))
        boxes, classes, track_ids, order = [], [], [], []
        dropped: dict[str, int] = {}
        for ann in anns:
            where = f"{self._file('sample_annotation')} [{ann['token']}]"
            instance_token = _field(ann, "instance_token", where)
            if instance_token not in self._instance:
                raise ValueError(
                    f"{where}: field 'instance_token' {instance_token!r} is not in instance.json"
                )
            category_token = _field(
                self._instance[instance_token],
                "category_token",
                f"{self._file('instance')} [{instance_token}]",
            )
            if category_token not in self._category:
                raise ValueError(
                    f"{self._file('instance')} [{instance_token}]: field 'category_token' {category_token!r} is not in category.json"
                )
            name = _field(
                self._category[category_token],
                "name",
                f"{self._file('category')} [{category_token}]",
            )
            if not isinstance(name, str):
                raise ValueError(
                    f"{self._file('category')} [{category_token}]: field 'name' must be a "
                    f"category name string (e.g. 'vehicle.car'), got {name!r}"
                )
            attr_tokens = ann.get("attribute_tokens", [])
            if not isinstance(attr_tokens, list):
                raise ValueError(
                    f"{where}: field 'attribute_tokens' must be a list of tokens, got "
                    f"{attr_tokens!r}"
                )
            if self._attribute:
                for t in attr_tokens:
                    if t not in self._attribute:
                        raise ValueError(
                            f"{where}: field 'attribute_tokens' holds {t!r}, which is not in "
                            "attribute.json"
                        )
            attrs = [self._attribute.get(t, {}).get("name", "") for t in attr_tokens]
            cls = category_to_class(name, attrs)
            if cls is None:
                label = name + (f" ({WITHOUT_RIDER})" if WITHOUT_RIDER in attrs else "")
                dropped[label] = dropped.get(label, 0) + 1
                continue
            rot = quaternion_to_matrix(
                _field(ann, "rotation", where), where, "rotation", self.rigid_tol
            )
            centre = _transform(rot, _field(ann, "translation", where), where, "translation")[:3, 3]
            size = _field(ann, "size", where)
            try:
                w, length, h = (float(v) for v in size)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{where}: field 'size' must be 3 numbers [w, l, h], got {size!r}"
                ) from None
            if not np.all(np.isfinite([w, length, h])):
                raise ValueError(f"{where}: field 'size' must be finite [w, l, h], got {size!r}")
            if min(w, length, h) <= 0:
                raise ValueError(
                    f"{where}: field 'size' must be positive [w, l, h], got {ann['size']}"
                )
            yaw = float(np.arctan2(rot[1, 0], rot[0, 0]))
            boxes.append([*centre, length, w, h, yaw])
            classes.append(cls)
            track_ids.append(track_id_from_token(instance_token))
            order.append(rank.get(ann["token"], -1) if ext_order is not None else len(order))
        return (
            np.asarray(boxes, dtype=np.float64).reshape(-1, 7),
            np.asarray(classes, dtype=np.int64),
            np.asarray(track_ids, dtype=np.int64),
            dropped,
            order,
        )


# ------------------------------------------------------------------------------------- writer


def _token(*parts: object) -> str:
    return uuid.uuid5(_TOKEN_NAMESPACE, "/".join(str(p) for p in parts)).hex


def _instance_token(scene: str, track_id: int, frame_id: str, box_index: int) -> str:
    """Instance token: 16 hex digits of the scene + the track id (recoverable by
    ``track_id_from_token``); boxes without a track (id < 0) get a one-off instance."""
    if track_id >= 0:
        return _token("scene", scene)[:16] + f"{track_id & ((1 << 64) - 1):016x}"
    return _token("untracked", scene, frame_id, box_index)


def _scene_of(frame: CoopFrame) -> str:
    scene = frame.meta.get("scene") if isinstance(frame.meta, dict) else None
    if scene:
        return str(scene)
    return frame.frame_id.rsplit("/", 1)[0] if "/" in frame.frame_id else "scene_0"


def _json_safe(value):
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def _extend_plan(plan: dict[str, int], frame: CoopFrame) -> None:
    """Agent id → ``k`` of ``LIDAR_TOP_id_k`` within one scene, grown frame by frame: the first
    RSU met (lowest agent id in its frame) is ``0`` (V2X-Sim's convention), every other agent
    gets ``1, 2, …`` in order of first appearance."""
    if 0 not in plan.values():
        rsus = sorted(
            a.agent_id for a in frame.agents if a.kind == "rsu" and a.agent_id not in plan
        )
        if rsus:
            plan[rsus[0]] = 0
    for agent in frame.agents:
        if agent.agent_id not in plan:
            plan[agent.agent_id] = sum(1 for v in plan.values() if v > 0) + 1


def _write_json(path: Path, rows) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(rows, handle, indent=1)


def points_in_boxes(frame: CoopFrame) -> np.ndarray:
    """``[M]`` int64: how many LiDAR points of all the frame's agents lie in each world box
    (boundary included), the ``num_lidar_pts`` written when ``frame.visibility`` is unknown.

    Each agent's points go to the world (``pose``), then into each box's frame (centre, yaw):
    a point counts when ``|x| <= l/2``, ``|y| <= w/2`` and ``|z| <= h/2``.
    """
    counts = np.zeros(frame.boxes.shape[0], dtype=np.int64)
    if not counts.size:
        return counts
    for agent in frame.agents:
        world = agent.points[:, :3].astype(np.float64) @ agent.pose[:3, :3].T + agent.pose[:3, 3]
        for m, (x, y, z, length, w, h, yaw) in enumerate(frame.boxes.tolist()):
            dx, dy, dz = world[:, 0] - x, world[:, 1] - y, world[:, 2] - z
            c, s = np.cos(yaw), np.sin(yaw)
            inside = (
                (np.abs(c * dx + s * dy) <= length / 2)
                & (np.abs(-s * dx + c * dy) <= w / 2)
                & (np.abs(dz) <= h / 2)
            )
            counts[m] += int(inside.sum())
    return counts


def _check_mounts(sensor_to_ego: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """``sensor_to_ego`` as float64 ``[4, 4]`` rigid transforms keyed by agent kind; a key that is
    not a kind or a matrix that is not rigid raises ``ValueError`` naming it."""
    mounts = {}
    for kind, matrix in (sensor_to_ego or {}).items():
        field_name = f"sensor_to_ego[{kind!r}]"
        if kind not in AGENT_KINDS:
            raise ValueError(
                f"write_v2xsim: field '{field_name}' is not an agent kind; "
                f"expected keys among {AGENT_KINDS}"
            )
        mounts[kind] = check_rigid_matrix(matrix, "write_v2xsim", field_name)
    return mounts


def write_v2xsim(
    frames: Iterable[CoopFrame],
    root: str | os.PathLike,
    *,
    version: str = "v2.0",
    sensor_to_ego: dict[str, np.ndarray] | None = None,
    log_location: str = "v2x-export",
) -> dict:
    """Write frames as a V2X-Sim 2.0 dataset (nuScenes tables + ``.pcd.bin`` sweeps).

    Consecutive frames with the same scene (``frame.meta["scene"]``, else the ``frame_id`` part
    before its last ``/``) form one ``scene`` with linked ``sample``s.

    Args:
        frames: the frames, in time order within each scene.
        root: output folder (created).
        version: table folder name.
        sensor_to_ego: per agent kind (a key of ``AGENT_KINDS``), the rigid ``[4, 4]`` LiDAR→ego
            mount written to ``calibrated_sensor`` (the ``ego_pose`` is then ``pose ∘ mount⁻¹``);
            identity for kinds not given. Another key, or a matrix that is not a rigid
            transform (a quaternion cannot hold it), raises ``ValueError`` naming the key.
        log_location: ``log.location`` string.

    Returns:
        a summary dict (``scenes``, ``samples``, ``annotations``, ``root``).

    Raises:
        ValueError: a bad ``sensor_to_ego``, a scene revisited after leaving it, or no frames.
    """
    root = Path(root)
    sensor_to_ego = _check_mounts(sensor_to_ego)
    t = {name: [] for name in (*TABLES_REQUIRED, *TABLES_OPTIONAL)}
    extension: list[dict] = []
    for level, (token, desc) in enumerate(
        [
            ("v0-40", "visibility of whole object is between 0 and 40%"),
            ("v40-60", "visibility of whole object is between 40 and 60%"),
            ("v60-80", "visibility of whole object is between 60 and 80%"),
            ("v80-100", "visibility of whole object is between 80 and 100%"),
        ],
        start=1,
    ):
        t["visibility"].append({"token": str(level), "level": token, "description": desc})
    attr_tokens = {}
    for name in (WITH_RIDER, WITHOUT_RIDER):
        attr_tokens[name] = _token("attribute", name)
        t["attribute"].append({"token": attr_tokens[name], "name": name, "description": name})
    cat_tokens = []
    for cls, name in enumerate(CLASS_TO_CATEGORY):
        cat_tokens.append(_token("category", name))
        t["category"].append(
            {
                "token": cat_tokens[-1],
                "name": name,
                "description": f"v2x class {CLASS_NAMES[cls]}",
                "index": CATEGORY_INDEX[name],
            }
        )
    sensor_tokens: dict[int, str] = {}
    log_token = _token("log", log_location)
    t["log"].append(
        {
            "token": log_token,
            "logfile": "",
            "vehicle": "",
            "date_captured": "",
            "location": log_location,
        }
    )
    t["map"].append(
        {
            "token": _token("map", log_location),
            "log_tokens": [log_token],
            "category": "semantic_prior",
            "filename": "",
        }
    )
    n_ann = 0
    calib_written: set[str] = set()
    scene_names: list[str] = []
    state: dict = {}

    def close_scene() -> None:
        if not state:
            return
        t["scene"].append(
            {
                "token": state["token"],
                "log_token": log_token,
                "nbr_samples": len(state["samples"]),
                "first_sample_token": state["samples"][0]["token"],
                "last_sample_token": state["samples"][-1]["token"],
                "name": state["name"],
                "description": "exported by v2x.datasets.v2xsim",
            }
        )
        state.clear()

    for frame in frames:
        scene_name = _scene_of(frame)
        if not state or state["name"] != scene_name:
            if scene_name in scene_names:
                raise ValueError(
                    f"{root}: field 'frames' revisits scene {scene_name!r} after leaving it; "
                    "frames of one scene must be consecutive"
                )
            close_scene()
            scene_names.append(scene_name)
            state.update(
                name=scene_name,
                token=_token("scene", scene_name),
                safe=re.sub(r"[^A-Za-z0-9_.-]", "_", scene_name),
                plan={},
                samples=[],
                last_sd={},
                instances={},
                last_ann={},
            )
        plan, last_sd = state["plan"], state["last_sd"]
        instances, last_ann = state["instances"], state["last_ann"]
        safe_scene, scene_token = state["safe"], state["token"]
        _extend_plan(plan, frame)
        i = len(state["samples"])
        sample_token = _token("sample", scene_name, i)
        if state["samples"]:
            state["samples"][-1]["next"] = sample_token
        sample = {
            "token": sample_token,
            "timestamp": int(round(frame.ego.timestamp * 1e6)),
            "prev": state["samples"][-1]["token"] if state["samples"] else "",
            "next": "",
            "scene_token": scene_token,
        }
        state["samples"].append(sample)
        t["sample"].append(sample)
        agents_ext = {}
        vis_ext = {}
        for a, agent in enumerate(frame.agents):
            k = plan[agent.agent_id]
            channel = f"LIDAR_TOP_id_{k}"
            if k not in sensor_tokens:
                sensor_tokens[k] = _token("sensor", channel)
                t["sensor"].append(
                    {"token": sensor_tokens[k], "channel": channel, "modality": "lidar"}
                )
            calib_token = _token("calibrated_sensor", scene_name, channel)
            mount = sensor_to_ego.get(agent.kind, np.eye(4))
            if calib_token not in calib_written:
                calib_written.add(calib_token)
                t["calibrated_sensor"].append(
                    {
                        "token": calib_token,
                        "sensor_token": sensor_tokens[k],
                        "translation": mount[:3, 3].tolist(),
                        "rotation": matrix_to_quaternion(mount[:3, :3]),
                        "camera_intrinsic": [],
                    }
                )
            ego = agent.pose @ np.linalg.inv(mount)
            sd_token = _token("sample_data", scene_name, i, channel)
            stamp = int(round(agent.timestamp * 1e6))
            t["ego_pose"].append(
                {
                    "token": sd_token,
                    "timestamp": stamp,
                    "rotation": matrix_to_quaternion(ego[:3, :3]),
                    "translation": ego[:3, 3].tolist(),
                }
            )
            filename = f"sweeps/{channel}/{safe_scene}_{i:06d}.pcd.bin"
            record = {
                "token": sd_token,
                "sample_token": sample_token,
                "ego_pose_token": sd_token,
                "calibrated_sensor_token": calib_token,
                "timestamp": stamp,
                "fileformat": "pcd",
                "is_key_frame": True,
                "height": 0,
                "width": 0,
                "filename": filename,
                "prev": last_sd[k]["token"] if k in last_sd else "",
                "next": "",
            }
            if k in last_sd:
                last_sd[k]["next"] = sd_token
            last_sd[k] = record
            t["sample_data"].append(record)
            cloud = np.zeros((agent.points.shape[0], POINT_FLOATS), dtype="<f4")
            cloud[:, :4] = agent.points
            atomic_write_bytes(root / filename, cloud.tobytes())
            agents_ext[channel] = {"agent_id": agent.agent_id, "kind": agent.kind}
            if frame.visibility is not None:
                vis_ext[channel] = frame.visibility[a].tolist()
        ann_tokens = []
        if frame.visibility is not None:
            lidar_pts = frame.visibility.sum(axis=0)
        else:
            lidar_pts = points_in_boxes(frame)
        for m in range(frame.boxes.shape[0]):
            x, y, z, length, w, h, yaw = frame.boxes[m].tolist()
            cls = int(frame.classes[m])
            inst = _instance_token(scene_name, int(frame.track_ids[m]), frame.frame_id, m)
            ann_token = _token("sample_annotation", scene_name, i, m)
            ann_tokens.append(ann_token)
            ann = {
                "token": ann_token,
                "sample_token": sample_token,
                "instance_token": inst,
                "visibility_token": "",
                "attribute_tokens": [attr_tokens[WITH_RIDER]] if cls == 3 else [],
                "translation": [x, y, z],
                "size": [w, length, h],
                "rotation": [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))],
                "prev": last_ann[inst]["token"] if inst in last_ann else "",
                "next": "",
                "num_lidar_pts": int(lidar_pts[m]),
                "num_radar_pts": 0,
            }
            if inst in last_ann:
                last_ann[inst]["next"] = ann_token
            last_ann[inst] = ann
            t["sample_annotation"].append(ann)
            if inst not in instances:
                instances[inst] = {
                    "token": inst,
                    "category_token": cat_tokens[cls],
                    "nbr_annotations": 0,
                    "first_annotation_token": ann_token,
                    "last_annotation_token": ann_token,
                }
                t["instance"].append(instances[inst])
            instances[inst]["nbr_annotations"] += 1
            instances[inst]["last_annotation_token"] = ann_token
            n_ann += 1
        ego_k = plan[frame.ego.agent_id]
        entry = {
            "token": sample_token,
            "frame_id": frame.frame_id,
            "ego_channel": ego_k,
            "agents": agents_ext,
            "agent_order": list(agents_ext),
            "annotations": ann_tokens,
        }
        if frame.visibility is not None:
            entry["visibility"] = vis_ext
        meta = {
            k: v
            for k, v in (frame.meta or {}).items()
            if _json_safe(v) is not None and k not in ("dropped_categories", "sample_token")
        }
        if meta:
            entry["meta"] = meta
        extension.append(entry)
    close_scene()
    if not t["sample"]:
        raise ValueError(f"write_v2xsim: field 'frames' is empty; nothing written under {root}")
    table_dir = root / version
    for name, rows in t.items():
        _write_json(table_dir / f"{name}.json", rows)
    _write_json(table_dir / EXTENSION_FILE, extension)
    return {
        "root": str(root),
        "scenes": len(scene_names),
        "samples": len(t["sample"]),
        "annotations": n_ann,
    }
