"""The DAIR-V2X-C reader: ``DAIRV2XCDataset``, a sequence of two-agent ``CoopFrame`` (vehicle =
ego, infrastructure = RSU), with each side's earlier frames of its recorded sequence
(asynchrony).

The layout, the coordinate conversions and the labels' subtleties are described in
``v2x.datasets.dair``; the format's pieces are in ``v2x.datasets.dair_format``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from v2x.datasets.dair_format import (
    COOP_LABEL_FRAMES,
    INF,
    LABEL_SOURCES,
    TYPE_TO_CLASS,
    VEH,
    _corner_array,
    _frame_id,
    _get,
    _has_heading,
    _load_json,
    _number,
    _offset,
    _path,
    box_from_corners,
    box_to_world,
    rigid_from_calib,
)
from v2x.datasets.frame import AgentObservation, CoopFrame
from v2x.datasets.history import latest_at_or_before
from v2x.datasets.pcd import read_pcd_xyzi
from v2x.datasets.v2xsim_format import track_id_from_token

# The logger of ``v2x.datasets.dair``, where the reader lived (its records keep that name).
log = logging.getLogger("v2x.datasets.dair")

#: A vehicle LiDAR farther than this from world z = 0 (m) is said once per dataset: the
#: detector measures point heights above ``model.grid.ground_z_m`` (default 0) and keeps only
#: ``model.grid.z_range_m`` (default −1…5 m), so with a world frame whose ground lies metres
#: above or below 0 every point would fall outside the pillars' heights without a word.
FAR_FROM_WORLD_ZERO_M = 5.0


class DAIRV2XCDataset:
    """DAIR-V2X-C as a sequence of two-agent ``CoopFrame`` (vehicle = ego, infrastructure = RSU).

    Args:
        root: the ``cooperative-vehicle-infrastructure`` folder.
        split: ``None`` (every pair) or a key of the split file (``"train"``, ``"val"``, …).
        split_file: JSON split (official ``cooperative-split-data.json``: ``{"cooperative_split":
            {"train": [vehicle ids], …}}`` or plain ``{"train": […]}``); relative to ``root`` or
            absolute. Required when ``split`` is set.
        labels: ``"cooperative"``, ``"vehicle"`` or ``"infrastructure"`` (see ``v2x.datasets.dair``).
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
        if not self._info_path.is_file():  # (e.g. data.path names another folder)
            raise ValueError(
                f"DAIR-V2X-C: {self.root} has no cooperative/data_info.json; expected the "
                "release's folder (cooperative/, vehicle-side/, infrastructure-side/; "
                "docs/real_data.md), e.g. data.path=/data/cooperative-vehicle-infrastructure"
            )
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
        batch = str(info[frame].get("batch_id") or "")
        if not batch.strip():  # (else every such frame would be one sequence)
            raise ValueError(
                f"{path} [{frame}]: field 'batch_id' is missing or empty; asynchrony needs the "
                "recorded sequence of every frame to find its earlier scans"
            )
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
