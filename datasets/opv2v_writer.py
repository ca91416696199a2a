"""Write ``CoopFrame``s in OPV2V's layout (``write_opv2v``), readable by ``OPV2VDataset`` and
by OpenCOOD.

One scenario folder per recorded sequence (``CoopFrame.sequence``), one agent folder per agent,
one ``<frame>.yaml`` / ``<frame>.pcd`` pair per frame (``<frame>``: the ego's timestamp over
``tick_s``, six digits). What the format cannot hold:

* agents are named by integer actor ids, and OpenCOOD takes the first name (sorted as text) for
  the ego: the ego is written as ``100``, the other vehicles ``101``, ``102``, …, one roadside
  unit as ``-1`` (the first; OpenCOOD moves one negative name behind the others, so a second
  would become the ego) — further RSUs and UAVs are not written (``agents_not_written``);
* OPV2V labels vehicles only: the cars' and trucks' boxes are written (others are counted in
  ``boxes_not_written``), read back as cars, each listed by every agent (each YAML lists all
  of them but the agent's own, ``meta["agent_box_index"]``): ``vehicles`` keys are the agents'
  ids for their own boxes and ``1000 + track id`` for the others (``10⁹ + index`` without
  one); visibility is not kept;
* intensity is kept to 1/255 (the ``rgb`` field's red byte), points as float32.

Poses, points and boxes are mirrored into CARLA's left-handed frames (``opv2v_format``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from v2x.common import atomic_write_bytes
from v2x.datasets.frame import CLASS_NAMES, CoopFrame, slot_order
from v2x.datasets.opv2v_format import mirrored, mirrored_boxes, pose_values
from v2x.datasets.pcd import PCD_DATA_KINDS, write_pcd

EGO_ID, RSU_ID, OTHER_BOXES, UNTRACKED = 100, -1, 1000, 10**9
#: The classes OPV2V labels (its ``vehicles``): car and truck (``CLASS_NAMES``).
VEHICLE_CLASSES = (CLASS_NAMES.index("car"), CLASS_NAMES.index("truck"))


def write_opv2v(
    frames: Iterable[CoopFrame],
    root: str | os.PathLike,
    split: str = "test",
    pcd_data: str = "ascii",
    tick_s: float = 0.05,
) -> dict:
    """Write ``frames`` under ``root/<split>/`` in OPV2V's layout; returns a summary
    (``root``, ``scenarios``, ``frames``, ``agents_written``, ``agents_not_written``,
    ``boxes_not_written``).

    ``pcd_data``: the point clouds' PCD encoding (OpenCDA writes ``ascii``). ``ValueError`` when
    a sequence changes its ego or its agents, or two of its frames share a frame number.
    """
    import yaml

    if pcd_data not in PCD_DATA_KINDS:
        raise ValueError(f"write_opv2v: field 'pcd_data' must be one of {PCD_DATA_KINDS}, got {pcd_data!r}")
    folder = Path(root) / split
    ids_of: dict[str, dict[str, int]] = {}  # scenario -> agent id -> actor id
    stems: dict[str, set[str]] = {}
    summary = {"root": str(root), "scenarios": 0, "frames": 0, "agents_written": 0,
               "agents_not_written": 0, "boxes_not_written": 0}
    for frame in frames:
        scenario = frame.sequence.replace("/", "_")
        ids, order = _actor_ids(frame)
        if scenario not in ids_of:
            ids_of[scenario], stems[scenario] = ids, set()
            summary["scenarios"] += 1
        elif ids != ids_of[scenario]:
            raise ValueError(
                f"write_opv2v: frame {frame.frame_id!r} has agents {sorted(ids)} (ego "
                f"{frame.ego.agent_id!r}); its sequence {frame.sequence!r} began with "
                f"{sorted(ids_of[scenario])}: an OPV2V scenario keeps its agents and ego"
            )
        stem = f"{round(frame.ego.timestamp / tick_s):06d}"
        if stem in stems[scenario]:
            raise ValueError(
                f"write_opv2v: frame {frame.frame_id!r} has frame number {stem} (timestamp "
                f"{frame.ego.timestamp} s / tick_s {tick_s}), as an earlier frame of its sequence"
            )
        stems[scenario].add(stem)
        own = (frame.meta or {}).get("agent_box_index") or [-1] * frame.num_agents
        keys = [UNTRACKED + j if int(t) < 0 else OTHER_BOXES + int(t)
                for j, t in enumerate(frame.track_ids)]  # fmt: skip
        for a in order:  # an agent's own box is keyed by its actor id
            if 0 <= int(own[a]) < len(keys):
                keys[int(own[a])] = ids[frame.agents[a].agent_id]
        boxes = mirrored_boxes(frame.boxes)
        for a in order:
            agent = frame.agents[a]
            base = folder / scenario / str(ids[agent.agent_id]) / stem
            vehicles = {
                int(keys[j]): _vehicle(boxes[j])
                for j in range(len(keys))
                if j != int(own[a]) and int(frame.classes[j]) in VEHICLE_CLASSES
            }
            pose = mirrored(agent.pose)
            text = yaml.safe_dump({"lidar_pose": pose_values(pose), "vehicles": vehicles})
            atomic_write_bytes(base.with_suffix(".yaml"), text.encode("utf-8"))
            points = np.array(agent.points, dtype=np.float64)
            points[:, 1] *= -1.0
            write_pcd(base.with_suffix(".pcd"), points, pcd_data, intensity_as_rgb=True)
        summary["frames"] += 1
        summary["agents_written"] += len(order)
        summary["agents_not_written"] += frame.num_agents - len(order)
        summary["boxes_not_written"] += int((~np.isin(frame.classes, VEHICLE_CLASSES)).sum())
    return summary


def _actor_ids(frame: CoopFrame) -> tuple[dict[str, int], list[int]]:
    """``({agent id: actor id}, agent indices written)``: the ego ``EGO_ID``, the other
    vehicles after it, the first RSU ``RSU_ID``; other agents are not written."""
    ids: dict[str, int] = {}
    order: list[int] = []
    for a in slot_order(frame):
        agent = frame.agents[a]
        if a == frame.ego_index or agent.kind == "vehicle":
            ids[agent.agent_id] = EGO_ID + len([i for i in ids.values() if i >= EGO_ID])
        elif agent.kind == "rsu" and RSU_ID not in ids.values():
            ids[agent.agent_id] = RSU_ID
        else:
            continue
        order.append(a)
    return ids, order


def _vehicle(box: np.ndarray) -> dict:
    """A ``vehicles`` entry of a (CARLA-frame) box: ``location`` at its bottom, ``center`` the
    half height above it, ``angle [0, yaw°, 0]``, ``extent`` its half sizes."""
    x, y, z, length, width, height, yaw = (float(v) for v in box)
    return {
        "location": [x, y, z - height / 2.0],
        "center": [0.0, 0.0, height / 2.0],
        "angle": [0.0, float(np.degrees(yaw)), 0.0],
        "extent": [length / 2.0, width / 2.0, height / 2.0],
        "speed": 0.0,
    }
