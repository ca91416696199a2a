"""What the V2X-Sim 2.0 exporter writes, checked against the nuScenes format itself rather than
against our own reader (a round trip cannot catch a format error both sides share).

Two checks of the same files:

* dependency-free (runs in CI): the published nuScenes schema (``schema.md`` of the devkit,
  v1.0: every table's fields and their types) written out below, foreign keys that resolve,
  prev/next chains, and the boxes, poses and points decoded with math written in this file
  (Hamilton quaternions ``[w, x, y, z]``, ``size = [w, l, h]``, ``.pcd.bin`` float32 × 5);
* with ``nuscenes-devkit`` when installed (``pip install --no-deps nuscenes-devkit`` plus
  ``pyquaternion opencv-python-headless scikit-learn cachetools``; its numpy < 2 pin is why it is
  not a dependency): ``NuScenes(...)`` loads the export, ``get_sample_data`` boxes,
  ``LidarPointCloud.from_file`` and ``points_in_box`` agree with our frames.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from v2x.datasets.export import export_frames
from v2x.datasets.frame import AgentObservation, CoopFrame

SMALL_TOWN = {
    "num_vehicle_agents": 2,
    "vehicle_lidar": {"preset": "vlp16", "columns": 128},
    "rsu_lidar": {"preset": "vlp16", "columns": 128},
    "uav_lidar": {"preset": "uav_down", "beams": 8, "columns": 64},
}

# nuScenes schema (devkit docs/schema_nuscenes.md), field -> expected JSON type.
TOKEN, TEXT, INT, NUM = "token", "text", "int", "num"
SCHEMA: dict[str, dict[str, object]] = {
    "attribute": {"token": TOKEN, "name": TEXT, "description": TEXT},
    "calibrated_sensor": {
        "token": TOKEN,
        "sensor_token": TOKEN,
        "translation": [NUM] * 3,
        "rotation": [NUM] * 4,
        "camera_intrinsic": "list",
    },
    "category": {"token": TOKEN, "name": TEXT, "description": TEXT, "index": INT},
    "ego_pose": {"token": TOKEN, "translation": [NUM] * 3, "rotation": [NUM] * 4, "timestamp": INT},
    "instance": {
        "token": TOKEN,
        "category_token": TOKEN,
        "nbr_annotations": INT,
        "first_annotation_token": TOKEN,
        "last_annotation_token": TOKEN,
    },
    "log": {
        "token": TOKEN,
        "logfile": TEXT,
        "vehicle": TEXT,
        "date_captured": TEXT,
        "location": TEXT,
    },
    "map": {"token": TOKEN, "log_tokens": "list", "category": TEXT, "filename": TEXT},
    "sample": {"token": TOKEN, "timestamp": INT, "scene_token": TOKEN, "next": TEXT, "prev": TEXT},
    "sample_annotation": {
        "token": TOKEN,
        "sample_token": TOKEN,
        "instance_token": TOKEN,
        "attribute_tokens": "list",
        "visibility_token": TEXT,
        "translation": [NUM] * 3,
        "size": [NUM] * 3,
        "rotation": [NUM] * 4,
        "num_lidar_pts": INT,
        "num_radar_pts": INT,
        "next": TEXT,
        "prev": TEXT,
    },
    "sample_data": {
        "token": TOKEN,
        "sample_token": TOKEN,
        "ego_pose_token": TOKEN,
        "calibrated_sensor_token": TOKEN,
        "filename": TEXT,
        "fileformat": TEXT,
        "width": INT,
        "height": INT,
        "timestamp": INT,
        "is_key_frame": "bool",
        "next": TEXT,
        "prev": TEXT,
    },
    "scene": {
        "token": TOKEN,
        "name": TEXT,
        "description": TEXT,
        "log_token": TOKEN,
        "nbr_samples": INT,
        "first_sample_token": TOKEN,
        "last_sample_token": TOKEN,
    },
    "sensor": {"token": TOKEN, "channel": TEXT, "modality": TEXT},
    "visibility": {"token": TOKEN, "level": TEXT, "description": TEXT},
}
# (table, field) -> table it points to.
FOREIGN_KEYS = {
    ("calibrated_sensor", "sensor_token"): "sensor",
    ("instance", "category_token"): "category",
    ("instance", "first_annotation_token"): "sample_annotation",
    ("instance", "last_annotation_token"): "sample_annotation",
    ("sample", "scene_token"): "scene",
    ("sample_annotation", "sample_token"): "sample",
    ("sample_annotation", "instance_token"): "instance",
    ("sample_data", "sample_token"): "sample",
    ("sample_data", "ego_pose_token"): "ego_pose",
    ("sample_data", "calibrated_sensor_token"): "calibrated_sensor",
    ("scene", "log_token"): "log",
    ("scene", "first_sample_token"): "sample",
    ("scene", "last_sample_token"): "sample",
}
# nuScenes-lidarseg category indices (published class list, v1.0) for the names we write.
NUSCENES_CATEGORY_INDEX = {
    "human.pedestrian.adult": 2,
    "vehicle.bicycle": 14,
    "vehicle.car": 17,
    "vehicle.truck": 23,
}


def _rot(roll: float, pitch: float, yaw: float) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = (f(a) for a in (roll, pitch, yaw) for f in (math.cos, math.sin))
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _rigid(roll: float, pitch: float, yaw: float, t) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = _rot(roll, pitch, yaw)
    pose[:3, 3] = t
    return pose


MOUNTS = {
    "vehicle": _rigid(0.02, -0.03, 0.05, [0.8, 0.1, 1.6]),
    "rsu": _rigid(0.0, 0.1, -0.4, [0.0, 0.0, 4.0]),
    "uav": _rigid(0.0, 1.2, 0.0, [0.0, 0.0, -0.3]),
}


def quat_to_matrix(q) -> np.ndarray:
    """Hamilton ``[w, x, y, z]`` (unit) → rotation matrix."""
    w, x, y, z = (float(v) for v in q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _pose(record: dict) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = quat_to_matrix(record["rotation"])
    pose[:3, 3] = record["translation"]
    return pose


def _yaw_matrix(yaw: float) -> np.ndarray:
    return _rot(0.0, 0.0, yaw)


def count_in_box(points_world: np.ndarray, box) -> int:
    """Points in a box (boundary included), the devkit's way: project on the box's edges from
    one corner (``0 <= p·e <= e·e``), corners built from centre, l, w, h and yaw."""
    x, y, z, length, w, h, yaw = box
    rot = _yaw_matrix(yaw)
    corner = np.array([x, y, z]) + rot @ np.array([-length, -w, -h]) / 2
    count = np.ones(len(points_world), dtype=bool)
    for axis, extent in zip(rot.T, (length, w, h)):
        edge = axis * extent
        proj = (points_world - corner) @ edge
        count &= (proj >= 0) & (proj <= edge @ edge)
    return int(count.sum())


def _load(root: Path) -> dict[str, list[dict]]:
    return {name: json.loads((root / "v2.0" / f"{name}.json").read_text()) for name in SCHEMA}


def _synthetic_export(root: Path):
    from v2x.datasets.synthetic import generate_sequence

    frames = list(generate_sequence(SMALL_TOWN, seed=1, num_frames=3))
    export_frames(frames, root, "v2xsim", sensor_to_ego=MOUNTS)
    return frames


def _agents_by_channel(root: Path) -> dict[str, dict[str, str]]:
    """sample token → channel → agent id (our side table, read only to pair files with frames)."""
    ext = json.loads((root / "v2.0" / "v2x_frames.json").read_text())
    return {e["token"]: {ch: v["agent_id"] for ch, v in e["agents"].items()} for e in ext}


def _hand_frames_without_visibility(seed: int = 3) -> list[CoopFrame]:
    """Frames with no ``visibility`` (as a reader of another format gives): points scattered
    around the boxes, none within 1 mm of a face, so "in the box" has one answer."""
    rng = np.random.default_rng(seed)
    boxes = np.array(
        [
            [4.0, 1.0, 0.8, 4.5, 1.9, 1.6, 0.3],
            [-6.0, 3.0, 1.5, 8.0, 2.5, 3.0, 2.4],
            [10.0, -5.0, 0.9, 0.7, 0.6, 1.8, -1.0],
            [30.0, 30.0, 1.0, 4.0, 2.0, 1.5, 0.0],  # far from every point: 0
        ]
    )
    frames = []
    for i in range(2):
        agents = []
        for k, (kind, pose) in enumerate(
            [
                ("vehicle", _rigid(0.0, 0.0, 0.2 * i, [0.0, 0.0, 1.7])),
                ("rsu", _rigid(0.0, 0.05, -2.0, [15.0, -10.0, 5.0])),
            ]
        ):
            world = np.c_[rng.uniform(-12, 14, 3000), rng.uniform(-8, 6, 3000)]
            world = np.c_[world, rng.uniform(-0.5, 3.5, 3000)]
            keep = np.ones(len(world), dtype=bool)
            for x, y, z, length, w, h, yaw in boxes:
                local = (world - [x, y, z]) @ _yaw_matrix(yaw)
                gap = np.min(np.abs(np.abs(local) - np.array([length, w, h]) / 2), axis=1)
                keep &= gap > 1e-3
            world = world[keep]
            local = (world - pose[:3, 3]) @ pose[:3, :3]
            points = np.c_[local, rng.uniform(0, 1, len(local))].astype(np.float32)
            agents.append(AgentObservation(f"{kind}_{k}", kind, pose, points, 0.1 * i))
        frames.append(
            CoopFrame(f"hand/{i:04d}", agents, boxes, [0, 1, 2, 0], [1, 2, 3, 4], visibility=None)
        )
    return frames


def _world_points(agent: AgentObservation) -> np.ndarray:
    """Agent points in the world, through float32 as a file reader sees them."""
    pts = agent.points[:, :3].astype(np.float64)
    return pts @ agent.pose[:3, :3].T + agent.pose[:3, 3]


# ------------------------------------------------------------------ dependency-free checks


def _chain(rows: dict[str, dict], first: str, owner_field: str, owner: dict) -> list[str]:
    """The tokens from ``first`` along ``next``, each row's ``prev`` the one before it and its
    ``owner_field`` the ``owner``'s token (a scene's samples, an instance's annotations)."""
    chain, token, prev = [], first, ""
    while token:
        row = rows[token]
        assert row["prev"] == prev and row[owner_field] == owner["token"], row
        chain.append(token)
        prev, token = token, row["next"]
    return chain


def test_export_follows_the_published_nuscenes_schema(tmp_path):
    frames = _synthetic_export(tmp_path)
    tables = _load(tmp_path)
    by_token = {name: {r["token"]: r for r in rows} for name, rows in tables.items()}
    for name, fields in SCHEMA.items():
        assert tables[name], f"{name}.json is empty"
        for row in tables[name]:
            assert set(fields) <= set(row), (name, sorted(set(fields) - set(row)))
            for key, kind in fields.items():
                value = row[key]
                if isinstance(kind, list):
                    assert len(value) == len(kind), (name, key, value)
                    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
                elif kind in (TOKEN, TEXT):
                    assert isinstance(value, str), (name, key, value)
                    if kind == TOKEN:
                        assert value, (name, key)
                elif kind == INT:
                    assert isinstance(value, int) and not isinstance(value, bool), (name, key)
                elif kind == "bool":
                    assert isinstance(value, bool), (name, key)
                else:
                    assert isinstance(value, list), (name, key)
    for (table, key), target in FOREIGN_KEYS.items():
        for row in tables[table]:
            assert row[key] in by_token[target], (table, key, row[key])
    for row in tables["sample_annotation"]:
        # '' is accepted by the devkit's own 2D exporter (default visibilities '', '1'..'4').
        assert row["visibility_token"] == "" or row["visibility_token"] in by_token["visibility"]
        assert all(a in by_token["attribute"] for a in row["attribute_tokens"])
    for row in tables["map"]:
        assert all(t in by_token["log"] for t in row["log_tokens"])
    assert {s["modality"] for s in tables["sensor"]} == {"lidar"}
    for row in tables["category"]:
        assert row["index"] == NUSCENES_CATEGORY_INDEX[row["name"]], row
    # prev/next chains: samples per scene, sample_data per channel, annotations per instance.
    for scene in tables["scene"]:
        chain = _chain(by_token["sample"], scene["first_sample_token"], "scene_token", scene)
        assert len(chain) == scene["nbr_samples"] and chain[-1] == scene["last_sample_token"]
    for inst in tables["instance"]:
        rows = by_token["sample_annotation"]
        chain = _chain(rows, inst["first_annotation_token"], "instance_token", inst)
        assert len(chain) == inst["nbr_annotations"] and chain[-1] == inst["last_annotation_token"]
    for sd in tables["sample_data"]:
        if sd["next"]:
            nxt = by_token["sample_data"][sd["next"]]
            assert nxt["prev"] == sd["token"]
            assert nxt["calibrated_sensor_token"] == sd["calibrated_sensor_token"]
            assert nxt["timestamp"] > sd["timestamp"]

    # Poses, points and boxes decoded here, compared with the frames.
    channel_of = {
        c["token"]: by_token["sensor"][c["sensor_token"]]["channel"]
        for c in tables["calibrated_sensor"]
    }
    agents_of = _agents_by_channel(tmp_path)
    samples = [s for s in tables["sample"]]
    assert len(samples) == len(frames)
    for sample, frame in zip(samples, frames):
        agents = {a.agent_id: a for a in frame.agents}
        sds = [sd for sd in tables["sample_data"] if sd["sample_token"] == sample["token"]]
        assert len(sds) == len(frame.agents)
        for sd in sds:
            agent = agents[agents_of[sample["token"]][channel_of[sd["calibrated_sensor_token"]]]]
            ego = _pose(by_token["ego_pose"][sd["ego_pose_token"]])
            mount = _pose(by_token["calibrated_sensor"][sd["calibrated_sensor_token"]])
            np.testing.assert_allclose(ego @ mount, agent.pose, atol=1e-9)
            np.testing.assert_allclose(mount, MOUNTS[agent.kind], atol=1e-12)
            assert sd["timestamp"] == round(agent.timestamp * 1e6)
            raw = np.fromfile(tmp_path / sd["filename"], dtype="<f4")
            assert raw.size == 5 * len(agent.points)
            np.testing.assert_array_equal(raw.reshape(-1, 5)[:, :4], agent.points)
        anns = [a for a in tables["sample_annotation"] if a["sample_token"] == sample["token"]]
        assert len(anns) == len(frame.boxes)
        for ann, box in zip(anns, frame.boxes):
            x, y, z, length, w, h, yaw = box
            np.testing.assert_allclose(ann["translation"], [x, y, z], atol=1e-12)
            np.testing.assert_allclose(ann["size"], [w, length, h], atol=1e-12)  # [w, l, h]
            np.testing.assert_allclose(
                quat_to_matrix(ann["rotation"]), _yaw_matrix(yaw), atol=1e-12
            )


def test_num_lidar_pts_is_counted_when_visibility_is_unknown(tmp_path):
    """``num_lidar_pts`` is the number of LiDAR points in the box; the nuScenes evaluator (and
    mmdet3d's/OpenPCDet's converters) drop boxes whose count is 0. Frames without visibility
    used to be written with 0 for every box."""
    frames = _hand_frames_without_visibility()
    export_frames(frames, tmp_path, "v2xsim")
    anns = _load(tmp_path)["sample_annotation"]
    got = [a["num_lidar_pts"] for a in anns]
    expected = [
        sum(count_in_box(_world_points(a), box) for a in frame.agents)
        for frame in frames
        for box in frame.boxes
    ]
    assert got == expected
    assert min(expected[:3]) > 0 and expected[3] == 0  # the check is not vacuous


def test_bad_sensor_to_ego_names_the_key_and_value(tmp_path):
    frames = _hand_frames_without_visibility()[:1]
    scaled = np.diag([2.0, 1.0, 1.0, 1.0])  # not a rotation: a quaternion cannot hold it
    with pytest.raises(ValueError, match=r"sensor_to_ego\['vehicle'\]' is not rigid.*2\.0"):
        export_frames(frames, tmp_path / "a", "v2xsim", sensor_to_ego={"vehicle": scaled})
    with pytest.raises(ValueError, match=r"sensor_to_ego\['car'\]' is not an agent kind"):
        export_frames(frames, tmp_path / "b", "v2xsim", sensor_to_ego={"car": np.eye(4)})
    with pytest.raises(ValueError, match=r"sensor_to_ego\['rsu'\]' must be a 4x4 matrix"):
        export_frames(frames, tmp_path / "c", "v2xsim", sensor_to_ego={"rsu": np.eye(3)})
    assert not (tmp_path / "a" / "v2.0").exists()


# ------------------------------------------------------------------ nuscenes-devkit checks


def test_nuscenes_devkit_reads_the_export(tmp_path):
    pytest.importorskip("nuscenes")
    from nuscenes import NuScenes
    from nuscenes.utils.color_map import get_colormap
    from nuscenes.utils.data_classes import LidarPointCloud

    frames = _synthetic_export(tmp_path)
    nusc = NuScenes(version="v2.0", dataroot=str(tmp_path), verbose=False)
    assert len(nusc.sample) == len(frames) and len(nusc.scene) == 1
    index_of = {name: i for i, name in enumerate(get_colormap())}  # lidarseg order
    for category in nusc.category:
        assert category["index"] == index_of[category["name"]]
    agents_of = _agents_by_channel(tmp_path)
    for sample, frame in zip(nusc.sample, frames):
        agents = {a.agent_id: a for a in frame.agents}
        assert len(sample["data"]) == len(frame.agents) and "LIDAR_TOP_id_0" in sample["data"]
        assert agents[agents_of[sample["token"]]["LIDAR_TOP_id_0"]].kind == "rsu"
        for channel, sd_token in sample["data"].items():
            agent = agents[agents_of[sample["token"]][channel]]
            path, boxes, _ = nusc.get_sample_data(sd_token)  # boxes in the sensor frame
            cloud = LidarPointCloud.from_file(path)
            np.testing.assert_array_equal(cloud.points.T, agent.points)
            assert [b.token for b in boxes] == sample["anns"]
            world_to_sensor = np.linalg.inv(agent.pose)
            for box, (x, y, z, length, w, h, yaw) in zip(boxes, frame.boxes):
                centre = world_to_sensor[:3, :3] @ [x, y, z] + world_to_sensor[:3, 3]
                np.testing.assert_allclose(box.center, centre, atol=1e-9)
                np.testing.assert_allclose(box.wlh, [w, length, h], atol=1e-12)
                np.testing.assert_allclose(
                    box.rotation_matrix, world_to_sensor[:3, :3] @ _yaw_matrix(yaw), atol=1e-9
                )
        for token, (x, y, z, _l, _w, _h, yaw) in zip(sample["anns"], frame.boxes):
            box = nusc.get_box(token)  # global frame
            np.testing.assert_allclose(box.center, [x, y, z], atol=1e-12)
            assert box.orientation.yaw_pitch_roll[0] == pytest.approx(
                math.remainder(yaw, 2 * math.pi), abs=1e-12
            )


def test_nuscenes_devkit_counts_the_points_we_write(tmp_path):
    pytest.importorskip("nuscenes")
    from nuscenes import NuScenes
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import points_in_box
    from pyquaternion import Quaternion

    export_frames(_hand_frames_without_visibility(), tmp_path, "v2xsim")
    nusc = NuScenes(version="v2.0", dataroot=str(tmp_path), verbose=False)
    for sample in nusc.sample:
        clouds = []
        for sd_token in sample["data"].values():
            sd = nusc.get("sample_data", sd_token)
            cloud = LidarPointCloud.from_file(str(tmp_path / sd["filename"]))
            for record in (
                nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]),
                nusc.get("ego_pose", sd["ego_pose_token"]),
            ):
                cloud.rotate(Quaternion(record["rotation"]).rotation_matrix)
                cloud.translate(np.array(record["translation"]))
            clouds.append(cloud.points[:3])
        for token in sample["anns"]:
            box = nusc.get_box(token)
            inside = sum(int(points_in_box(box, pts).sum()) for pts in clouds)
            assert nusc.get("sample_annotation", token)["num_lidar_pts"] == inside


@pytest.mark.parametrize("fmt", ["v2xsim", "dair_v2x"])
def test_no_frames_is_an_error_not_an_empty_dataset(tmp_path, fmt):
    """An exhausted generator used to give a dataset of empty tables and a zero summary."""
    with pytest.raises(ValueError, match=r"field 'frames' is empty; nothing written under"):
        export_frames(iter([]), tmp_path / "out", fmt)
    assert not (tmp_path / "out").exists()
