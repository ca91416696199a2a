"""The DAIR-V2X-C writer: ``write_dair_v2x_c`` writes frames in the cooperative layout
(``data_info.json`` files, ``.pcd`` point clouds, calibrations, side and cooperative labels;
``v2x.datasets.dair`` describes it), the ego vehicle and its nearest RSU per frame.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from v2x.common import atomic_open
from v2x.datasets.dair_format import CLASS_TO_TYPE, INF, VEH, _frame_id, box_corners, box_to_world
from v2x.datasets.frame import AgentObservation, CoopFrame, check_rigid_matrix
from v2x.datasets.pcd import PCD_DATA_KINDS, write_pcd


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
