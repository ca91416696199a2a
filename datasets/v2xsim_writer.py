"""The V2X-Sim 2.0 writer: ``write_v2xsim`` writes frames as nuScenes tables and ``.pcd.bin``
sweeps, plus our side table ``v2x_frames.json`` (``v2x.datasets.v2xsim`` describes the layout).

Tokens are UUID5 hex strings of what they name (``_token``), so the same frames give the same
files; instance tokens keep the track id (``track_id_from_token`` reads it back).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from v2x.common import atomic_open, atomic_write_bytes
from v2x.datasets.frame import AGENT_KINDS, CLASS_NAMES, CoopFrame, check_rigid_matrix
from v2x.datasets.v2xsim_format import (
    CATEGORY_INDEX,
    CLASS_TO_CATEGORY,
    EXTENSION_FILE,
    POINT_FLOATS,
    TABLES_OPTIONAL,
    TABLES_REQUIRED,
    WITH_RIDER,
    WITHOUT_RIDER,
    matrix_to_quaternion,
)

_TOKEN_NAMESPACE = uuid.UUID("6f1c2a57-0b6e-4f57-9a0e-2b8f3c1d9e41")


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
