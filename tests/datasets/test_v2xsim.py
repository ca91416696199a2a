"""V2X-Sim 2.0 reader/writer: a hand-written nuScenes-table fixture and a write→read round trip."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from v2x.datasets import AgentObservation, CoopFrame
from v2x.datasets.v2xsim_format import track_id_from_token
from v2x.datasets.v2xsim_reader import V2XSimDataset
from v2x.datasets.v2xsim_writer import write_v2xsim

S2 = math.sqrt(0.5)
_NAMES = (
    "scene",
    "log",
    "s0",
    "s1",
    "sens0",
    "sens1",
    "senscam",
    "cal0",
    "cal1",
    "calcam",
    "sd0a",
    "sd1a",
    "sd0b",
    "sd1b",
    "sdsweep",
    "sdcam",
    "ep0a",
    "ep1a",
    "ep0b",
    "ep1b",
    "epsweep",
    "epcam",
    "catcar",
    "catped",
    "catcone",
    "catbike",
    "attrno",
    "attrwith",
    "inst_car",
    "inst_ped",
    "inst_cone",
    "inst_bike",
    "inst_park",
    "a_car0",
    "a_car1",
    "a_ped0",
    "a_cone0",
    "a_bike0",
    "a_park0",
)
TOK = {name: f"{i:02x}" * 16 for i, name in enumerate(_NAMES)}
CAR_INSTANCE = "0123456789abcdef0123456789abcdef"
TOK["inst_car"] = CAR_INSTANCE


def _write_tables(root: Path, tables: dict[str, list[dict]]) -> None:
    (root / "v2.0").mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (root / "v2.0" / f"{name}.json").write_text(json.dumps(rows))


def _sd(token, sample, ego, cal, stamp, filename, key=True):
    return {
        "token": TOK[token],
        "sample_token": TOK[sample],
        "ego_pose_token": TOK[ego],
        "calibrated_sensor_token": TOK[cal],
        "timestamp": stamp,
        "fileformat": "pcd",
        "is_key_frame": key,
        "height": 0,
        "width": 0,
        "filename": filename,
        "prev": "",
        "next": "",
    }


def _ann(token, sample, inst, translation, size, rotation, attrs=()):
    return {
        "token": TOK[token],
        "sample_token": TOK[sample],
        "instance_token": TOK[inst],
        "visibility_token": "4",
        "attribute_tokens": [TOK[a] for a in attrs],
        "translation": translation,
        "size": size,
        "rotation": rotation,
        "prev": "",
        "next": "",
        "num_lidar_pts": 5,
        "num_radar_pts": 0,
    }


def build_fixture(root: Path) -> dict[str, list[dict]]:
    """One scene, two samples; agent id_0 = RSU, id_1 = vehicle, as V2X-Sim 2.0 publishes them."""
    tables = {
        "scene": [
            {
                "token": TOK["scene"],
                "log_token": TOK["log"],
                "nbr_samples": 2,
                "first_sample_token": TOK["s0"],
                "last_sample_token": TOK["s1"],
                "name": "scene_7",
                "description": "",
            }
        ],
        "sample": [
            {
                "token": TOK["s0"],
                "timestamp": 1_000_000,
                "prev": "",
                "next": TOK["s1"],
                "scene_token": TOK["scene"],
            },
            {
                "token": TOK["s1"],
                "timestamp": 1_200_000,
                "prev": TOK["s0"],
                "next": "",
                "scene_token": TOK["scene"],
            },
        ],
        "sensor": [
            {"token": TOK["sens0"], "channel": "LIDAR_TOP_id_0", "modality": "lidar"},
            {"token": TOK["sens1"], "channel": "LIDAR_TOP_id_1", "modality": "lidar"},
            {"token": TOK["senscam"], "channel": "CAM_FRONT_id_1", "modality": "camera"},
        ],
        # RSU: mounted 5 m up and turned 180° about z; vehicle LiDAR 1 m ahead, 1.8 m up.
        "calibrated_sensor": [
            {
                "token": TOK["cal0"],
                "sensor_token": TOK["sens0"],
                "translation": [0.0, 0.0, 5.0],
                "rotation": [0.0, 0.0, 0.0, 1.0],
                "camera_intrinsic": [],
            },
            {
                "token": TOK["cal1"],
                "sensor_token": TOK["sens1"],
                "translation": [1.0, 0.0, 1.8],
                "rotation": [1.0, 0.0, 0.0, 0.0],
                "camera_intrinsic": [],
            },
            {
                "token": TOK["calcam"],
                "sensor_token": TOK["senscam"],
                "translation": [0.0, 0.0, 0.0],
                "rotation": [1.0, 0.0, 0.0, 0.0],
                "camera_intrinsic": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
            },
        ],
        # vehicle ego turned +90° about z at (10, 5, 0); RSU ego at (20, 20, 0).
        "ego_pose": [
            {"token": TOK[t], "timestamp": 0, "rotation": q, "translation": tr}
            for t, q, tr in [
                ("ep0a", [1.0, 0.0, 0.0, 0.0], [20.0, 20.0, 0.0]),
                ("ep1a", [S2, 0.0, 0.0, S2], [10.0, 5.0, 0.0]),
                ("ep0b", [1.0, 0.0, 0.0, 0.0], [20.0, 20.0, 0.0]),
                ("ep1b", [S2, 0.0, 0.0, S2], [11.0, 5.0, 0.0]),
                ("epsweep", [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
                ("epcam", [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
            ]
        ],
        "sample_data": [
            _sd(
                "sd0a",
                "s0",
                "ep0a",
                "cal0",
                1_000_000,
                "sweeps/LIDAR_TOP_id_0/scene_7_000000.pcd.bin",
            ),
            _sd(
                "sd1a",
                "s0",
                "ep1a",
                "cal1",
                1_000_050,
                "sweeps/LIDAR_TOP_id_1/scene_7_000000.pcd.bin",
            ),
            _sd(
                "sd0b",
                "s1",
                "ep0b",
                "cal0",
                1_200_000,
                "sweeps/LIDAR_TOP_id_0/scene_7_000001.pcd.bin",
            ),
            _sd(
                "sd1b",
                "s1",
                "ep1b",
                "cal1",
                1_200_000,
                "sweeps/LIDAR_TOP_id_1/scene_7_000001.pcd.bin",
            ),
            _sd(
                "sdsweep",
                "s0",
                "epsweep",
                "cal1",
                1_100_000,
                "sweeps/LIDAR_TOP_id_1/not_a_key_frame.pcd.bin",
                key=False,
            ),
            _sd("sdcam", "s0", "epcam", "calcam", 1_000_000, "sweeps/CAM_FRONT_id_1/img.jpg"),
        ],
        "category": [
            {"token": TOK["catcar"], "name": "vehicle.car", "description": ""},
            {"token": TOK["catped"], "name": "human.pedestrian.adult", "description": ""},
            {"token": TOK["catcone"], "name": "movable_object.trafficcone", "description": ""},
            {"token": TOK["catbike"], "name": "vehicle.bicycle", "description": ""},
        ],
        "attribute": [
            {"token": TOK["attrno"], "name": "cycle.without_rider", "description": ""},
            {"token": TOK["attrwith"], "name": "cycle.with_rider", "description": ""},
        ],
        "instance": [
            {
                "token": TOK[i],
                "category_token": TOK[c],
                "nbr_annotations": 1,
                "first_annotation_token": "",
                "last_annotation_token": "",
            }
            for i, c in [
                ("inst_car", "catcar"),
                ("inst_ped", "catped"),
                ("inst_cone", "catcone"),
                ("inst_bike", "catbike"),
                ("inst_park", "catbike"),
            ]
        ],
        "sample_annotation": [
            # car: centre (12, 8, 1), size [w, l, h] = [2, 4.5, 1.6], turned +90° about z.
            _ann("a_car0", "s0", "inst_car", [12.0, 8.0, 1.0], [2.0, 4.5, 1.6], [S2, 0.0, 0.0, S2]),
            _ann(
                "a_ped0", "s0", "inst_ped", [15.0, 2.0, 0.9], [0.6, 0.7, 1.8], [1.0, 0.0, 0.0, 0.0]
            ),
            _ann(
                "a_cone0",
                "s0",
                "inst_cone",
                [14.0, 3.0, 0.3],
                [0.3, 0.3, 0.6],
                [1.0, 0.0, 0.0, 0.0],
            ),
            _ann(
                "a_bike0",
                "s0",
                "inst_bike",
                [16.0, 1.0, 0.8],
                [0.6, 1.8, 1.6],
                [0.0, 0.0, 0.0, 1.0],
                ["attrwith"],
            ),
            _ann(
                "a_park0",
                "s0",
                "inst_park",
                [17.0, 1.0, 0.5],
                [0.6, 1.8, 1.0],
                [1.0, 0.0, 0.0, 0.0],
                ["attrno"],
            ),
            # same car one sample later, turned by 180° about z: yaw π.
            _ann(
                "a_car1", "s1", "inst_car", [12.5, 8.0, 1.0], [2.0, 4.5, 1.6], [0.0, 0.0, 0.0, 1.0]
            ),
        ],
        "visibility": [{"token": "4", "level": "v80-100", "description": ""}],
        "log": [
            {
                "token": TOK["log"],
                "logfile": "",
                "vehicle": "",
                "date_captured": "",
                "location": "town",
            }
        ],
        "map": [{"token": "m", "log_tokens": [TOK["log"]], "category": "", "filename": ""}],
    }
    _write_tables(root, tables)
    clouds = {
        "sweeps/LIDAR_TOP_id_0/scene_7_000000.pcd.bin": [[2.0, 0.0, 0.0, 0.5, 3.0]],
        "sweeps/LIDAR_TOP_id_1/scene_7_000000.pcd.bin": [
            [1.0, 0.0, 0.0, 0.25, 7.0],
            [0.0, 2.0, -1.0, 0.75, 9.0],
        ],
        "sweeps/LIDAR_TOP_id_0/scene_7_000001.pcd.bin": [[0.0, 0.0, 0.0, 0.0, 0.0]],
        "sweeps/LIDAR_TOP_id_1/scene_7_000001.pcd.bin": [[1.0, 1.0, 1.0, 1.0, 1.0]],
    }
    for rel, rows in clouds.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.asarray(rows, dtype="<f4").tofile(root / rel)  # float32 × 5: x y z intensity ring
    return tables


def _wrap(angle):
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def test_hand_written_fixture_poses_points_boxes(tmp_path):
    build_fixture(tmp_path)
    ds = V2XSimDataset(tmp_path)
    assert len(ds) == 2
    frame = ds[0]
    assert [a.agent_id for a in frame.agents] == ["rsu_0", "veh_1"]
    assert [a.kind for a in frame.agents] == ["rsu", "vehicle"]
    assert frame.ego.agent_id == "veh_1" and frame.frame_id == "scene_7/0000"
    rsu, veh = frame.agents
    # vehicle: ego Rz(90°) at (10, 5, 0) ∘ mount (1, 0, 1.8): sensor origin at (10, 6, 1.8);
    # its point (1, 0, 0) lands at (10, 7, 1.8), (0, 2, -1) at (8, 6, 0.8).
    world = (veh.pose @ np.c_[veh.points[:, :3], np.ones(2)].T).T[:, :3]
    np.testing.assert_allclose(world, [[10.0, 7.0, 1.8], [8.0, 6.0, 0.8]], atol=1e-6)
    np.testing.assert_array_equal(veh.points[:, 3], [0.25, 0.75])  # intensity; ring dropped
    # RSU: ego (20, 20, 0) ∘ mount up 5 m turned 180°: (2, 0, 0) → (18, 20, 5).
    np.testing.assert_allclose(rsu.pose @ [2.0, 0.0, 0.0, 1.0], [18.0, 20.0, 5.0, 1.0], atol=1e-12)
    assert veh.timestamp == pytest.approx(1.00005) and rsu.timestamp == pytest.approx(1.0)
    # boxes: car (size [w, l, h] → l=4.5, w=2), quaternion of +90° about z → yaw π/2;
    # pedestrian; bicycle with rider (quaternion of 180° → yaw ±π). Cone and riderless bike dropped.
    np.testing.assert_allclose(frame.boxes[0, :6], [12.0, 8.0, 1.0, 4.5, 2.0, 1.6])
    assert frame.boxes[0, 6] == pytest.approx(math.pi / 2)
    np.testing.assert_allclose(frame.boxes[1], [15.0, 2.0, 0.9, 0.7, 0.6, 1.8, 0.0])
    assert abs(_wrap(frame.boxes[2, 6] - math.pi)) < 1e-12
    assert frame.classes.tolist() == [0, 2, 3]
    assert frame.meta["dropped_categories"] == {
        "movable_object.trafficcone": 1,
        "vehicle.bicycle (cycle.without_rider)": 1,
    }
    # track id: the 32-hex-digit instance token's low 63 bits, stable across samples.
    car_id = int(CAR_INSTANCE, 16) & ((1 << 63) - 1)
    assert frame.track_ids[0] == car_id == ds[1].track_ids[0]
    assert abs(_wrap(ds[1].boxes[0, 6] - math.pi)) < 1e-12


def test_skip_channels_leaves_the_rsu_out(tmp_path):
    # HEAL/CoAlign's V2X-Sim 2.0 loader reads lidar_path_1 ... lidar_path_<agent_num>: no RSU
    build_fixture(tmp_path)
    full = V2XSimDataset(tmp_path)[0]
    frame = V2XSimDataset(tmp_path, skip_channels=[0])[0]
    assert [a.agent_id for a in frame.agents] == ["veh_1"] and frame.ego.agent_id == "veh_1"
    np.testing.assert_array_equal(frame.ego.points, full.ego.points)
    np.testing.assert_array_equal(frame.ego.pose, full.ego.pose)
    np.testing.assert_array_equal(frame.boxes, full.boxes)  # the ground truth is the scene's
    with pytest.raises(ValueError, match=r"field 'skip_channels' \[1\] holds the ego's channel"):
        V2XSimDataset(tmp_path, skip_channels=[1])
    with pytest.raises(ValueError, match="field 'skip_channels' must list agent ids"):
        V2XSimDataset(tmp_path, skip_channels=["0"])


def test_scene_selection_and_split(tmp_path):
    build_fixture(tmp_path)
    assert len(V2XSimDataset(tmp_path, scenes=["scene_7"])) == 2
    assert len(V2XSimDataset(tmp_path, split="val", split_scenes={"val": [0], "train": []})) == 2
    assert len(V2XSimDataset(tmp_path, split="train", split_scenes={"val": [0], "train": []})) == 0
    with pytest.raises(ValueError, match="scene 'nope'"):
        V2XSimDataset(tmp_path, scenes=["nope"])


def test_a_scene_the_data_lacks_names_the_setting_that_chose_it(tmp_path):
    """A split of V2X-Sim 2.0's 100 scenes on other data (e.g. an export: one scene) said
    "field 'name' has no scene 1 (field 'scenes' takes names or indices below 1)": it blamed
    'scenes', which the user never set. The message now names the split, what the file holds
    and the way out; a misspelled split lists the splits there are."""
    build_fixture(tmp_path)  # one scene, 'scene_7'
    scene_json = re.escape(str(tmp_path / "v2.0" / "scene.json"))
    held = re.escape("it holds 1 scene(s): indices 0-0, names ['scene_7']")
    with pytest.raises(ValueError, match=(
        rf"^{scene_json}: has no scene 1 \(chosen by field 'split' = 'val' from 'split_scenes'\); "
        rf"{held}; .* expected split: null \(every scene\), 'scenes', or a 'split_scenes' of"
    )):  # fmt: skip
        V2XSimDataset(tmp_path, split="val", split_scenes={"val": [1, 3], "train": [0]})
    with pytest.raises(
        ValueError, match=rf"^{scene_json}: has no scene 2 \(field 'scenes'\); {held}"
    ):
        V2XSimDataset(tmp_path, scenes=[2])
    with pytest.raises(ValueError, match=(
        r"^V2XSimDataset: field 'split' is 'vall'; expected a key of 'split_scenes' "
        r"\(train, val\), or null for every scene$"
    )):  # fmt: skip
        V2XSimDataset(tmp_path, split="vall", split_scenes={"val": [0], "train": []})


def test_track_id_from_token():
    assert track_id_from_token("0007") == 7
    assert track_id_from_token("f" * 32) == (1 << 63) - 1
    assert track_id_from_token("car-12") == track_id_from_token("car-12") >= 0


def _rigid(yaw: float, t) -> np.ndarray:
    pose = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[:3, 3] = t
    return pose


def make_frames(seed: int = 0, scenes=("townA", "townB"), per_scene: int = 3) -> list[CoopFrame]:
    rng = np.random.default_rng(seed)
    frames = []
    for scene in scenes:
        for i in range(per_scene):
            tilt = _rigid(0.0, [0, 0, 0])
            tilt[:3, :3] = tilt[:3, :3] @ np.array(
                [[1, 0, 0], [0, math.cos(0.1), -math.sin(0.1)], [0, math.sin(0.1), math.cos(0.1)]]
            )
            agents = [
                AgentObservation(
                    "car_1",
                    "vehicle",
                    _rigid(0.2 * i, [i, 3.0, 1.7]),
                    rng.normal(size=(40, 4)),
                    0.1 * i,
                ),
                AgentObservation(
                    "rsu_a",
                    "rsu",
                    _rigid(-2.5, [30.0, -4.0, 6.0]),
                    rng.normal(size=(25, 4)),
                    0.1 * i + 2e-3,
                ),
                AgentObservation(
                    "car_2",
                    "vehicle",
                    _rigid(3.0, [-20.0, 1.0, 1.7]) @ tilt,
                    rng.normal(size=(10, 4)),
                    0.1 * i,
                ),
                AgentObservation(
                    "uav_9", "uav", _rigid(1.0, [0.0, 0.0, 45.0]), np.zeros((0, 4)), 0.1 * i
                ),
                AgentObservation(
                    "rsu_b", "rsu", _rigid(0.7, [-30.0, 9.0, 5.5]), rng.normal(size=(5, 4)), 0.1 * i
                ),
            ]
            m = 5
            boxes = np.c_[
                rng.normal(scale=15, size=(m, 2)),
                rng.normal(size=m),
                rng.uniform(0.5, 6, (m, 3)),
                rng.uniform(-math.pi, math.pi, m),
            ]
            frames.append(
                CoopFrame(
                    f"{scene}/{i:04d}",
                    agents,
                    boxes,
                    [0, 1, 2, 3, 0],
                    [4, 11, -1, 2**40, 5 + i],
                    rng.integers(0, 30, (len(agents), m)),
                    ego_index=2 if i == 1 else 0,
                )
            )
    return frames


def assert_frames_equal(expected: CoopFrame, got: CoopFrame, *, tracks: bool = True) -> None:
    assert [a.agent_id for a in got.agents] == [a.agent_id for a in expected.agents]
    assert got.ego_index == expected.ego_index
    for a, b in zip(expected.agents, got.agents):
        assert a.kind == b.kind
        np.testing.assert_allclose(b.pose, a.pose, atol=1e-9)
        np.testing.assert_array_equal(b.points, a.points)
        assert b.timestamp == pytest.approx(a.timestamp, abs=1e-6)
    np.testing.assert_allclose(got.boxes[:, :6], expected.boxes[:, :6], atol=1e-9)
    np.testing.assert_allclose(_wrap(got.boxes[:, 6] - expected.boxes[:, 6]), 0, atol=1e-9)
    np.testing.assert_array_equal(got.classes, expected.classes)
    if tracks:
        keep = expected.track_ids >= 0
        np.testing.assert_array_equal(got.track_ids[keep], expected.track_ids[keep])


def test_write_read_round_trip(tmp_path):
    frames = make_frames()
    mount = {"vehicle": _rigid(0.05, [0.8, 0.0, 1.6]), "rsu": _rigid(0.0, [0.0, 0.0, 4.0])}
    summary = write_v2xsim(frames, tmp_path, sensor_to_ego=mount)
    assert summary == {"root": str(tmp_path), "scenes": 2, "samples": 6, "annotations": 30}
    ds = V2XSimDataset(tmp_path)
    assert len(ds) == len(frames)
    for expected, got in zip(frames, ds):
        assert got.frame_id == expected.frame_id
        assert_frames_equal(expected, got)
        np.testing.assert_array_equal(got.visibility, expected.visibility)
    # untracked boxes (id −1) get a fresh instance each; tracked ones keep one across samples.
    assert ds[0].track_ids[2] != ds[1].track_ids[2]
    # RSU convention: the first RSU is LIDAR_TOP_id_0.
    sensors = json.loads((tmp_path / "v2.0" / "sensor.json").read_text())
    assert sorted(s["channel"] for s in sensors) == [f"LIDAR_TOP_id_{k}" for k in range(5)]
    assert (
        json.loads((tmp_path / "v2.0" / "v2x_frames.json").read_text())[0]["agents"][
            "LIDAR_TOP_id_0"
        ]["agent_id"]
        == "rsu_a"
    )


def test_written_tables_follow_nuscenes_links(tmp_path):
    frames = make_frames(scenes=("only",))
    write_v2xsim(frames, tmp_path)
    load = lambda name: json.loads((tmp_path / "v2.0" / f"{name}.json").read_text())  # noqa: E731
    samples = {s["token"]: s for s in load("sample")}
    scene = load("scene")[0]
    chain, token = [], scene["first_sample_token"]
    while token:
        chain.append(token)
        token = samples[token]["next"]
    assert len(chain) == scene["nbr_samples"] == 3 and chain[-1] == scene["last_sample_token"]
    anns = {a["token"]: a for a in load("sample_annotation")}
    for inst in load("instance"):
        walk, token = [], inst["first_annotation_token"]
        while token:
            walk.append(token)
            token = anns[token]["next"]
        assert len(walk) == inst["nbr_annotations"] and walk[-1] == inst["last_annotation_token"]
    for ann in anns.values():
        assert len(ann["size"]) == 3 and len(ann["rotation"]) == 4
        assert "channel" not in ann
    assert all("channel" not in sd for sd in load("sample_data"))
    for name in (
        "attribute",
        "visibility",
        "log",
        "map",
        "calibrated_sensor",
        "ego_pose",
        "category",
    ):
        assert load(name), name


def test_bad_inputs_name_file_and_field(tmp_path):
    tables = build_fixture(tmp_path)
    ds = V2XSimDataset(tmp_path)
    (tmp_path / "sweeps/LIDAR_TOP_id_1/scene_7_000000.pcd.bin").unlink()
    with pytest.raises(ValueError, match=r"scene_7_000000\.pcd\.bin: file not found"):
        ds[0]
    np.zeros(7, dtype="<f4").tofile(tmp_path / "sweeps/LIDAR_TOP_id_1/scene_7_000000.pcd.bin")
    with pytest.raises(ValueError, match=r"scene_7_000000\.pcd\.bin: field 'data' is truncated"):
        ds[0]

    bad = json.loads(json.dumps(tables))
    bad["ego_pose"][3]["rotation"] = [1.0, 0.0, 0.0, 0.5]  # norm 1.118: not a rotation
    _write_tables(tmp_path / "q", bad)
    (tmp_path / "q" / "sweeps").symlink_to(tmp_path / "sweeps")
    with pytest.raises(
        ValueError, match=r"ego_pose\.json \[.*\]: field 'rotation' is not a rigid rotation"
    ):
        V2XSimDataset(tmp_path / "q")[1]

    bad = json.loads(json.dumps(tables))
    del bad["sample_annotation"][5]["size"]
    _write_tables(tmp_path / "s", bad)
    (tmp_path / "s" / "sweeps").symlink_to(tmp_path / "sweeps")
    with pytest.raises(
        ValueError, match=r"sample_annotation\.json \[.*\]: field 'size' is missing"
    ):
        V2XSimDataset(tmp_path / "s")[1]

    (tmp_path / "s" / "v2.0" / "instance.json").unlink()
    with pytest.raises(ValueError, match=r"instance\.json: file not found"):
        V2XSimDataset(tmp_path / "s")


def test_a_table_folder_of_another_name_is_named_in_the_error(tmp_path):
    """Releases name the tables' folder differently (nuScenes' v1.0-trainval / v1.0-mini,
    V2X-Sim's v2.0-mini): a root without the configured folder said only "folder not found";
    it now names the folders of the root that hold scene.json, or that the root is missing."""
    tables = build_fixture(tmp_path / "release")
    (tmp_path / "release" / "v2.0").rename(tmp_path / "release" / "v1.0-trainval")
    with pytest.raises(ValueError) as caught:
        V2XSimDataset(tmp_path / "release")
    message = str(caught.value)
    assert str(tmp_path / "release" / "v2.0") in message and "field 'version'" in message
    assert "v1.0-trainval" in message
    ds = V2XSimDataset(tmp_path / "release", version="v1.0-trainval")  # as the message says
    assert len(ds) == len(tables["sample"])
    with pytest.raises(ValueError, match=r"dataset root .*missing.* does not exist.*'root'"):
        V2XSimDataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no folder of .*empty holds scene\.json"):
        V2XSimDataset(tmp_path / "empty")


SMALL_TOWN = {
    "num_vehicle_agents": 2,
    "vehicle_lidar": {"preset": "vlp16", "columns": 128},
    "rsu_lidar": {"preset": "vlp16", "columns": 128},
    "uav_lidar": {"preset": "uav_down", "beams": 8, "columns": 64},
}


def test_export_synthetic_frames_round_trip(tmp_path):
    from v2x.datasets.export import export_frames
    from v2x.datasets.synthetic import generate_sequence

    frames = list(generate_sequence(SMALL_TOWN, seed=1, num_frames=2))
    summary = export_frames(frames, tmp_path, "v2xsim")
    assert summary["samples"] == 2
    got = list(V2XSimDataset(tmp_path))
    for expected, frame in zip(frames, got):
        assert frame.frame_id == expected.frame_id
        assert_frames_equal(expected, frame)
        if expected.visibility is not None:
            np.testing.assert_array_equal(frame.visibility, expected.visibility)


def test_hydra_config_builds_the_reader(tmp_path):
    from importlib.resources import files

    from omegaconf import OmegaConf

    cfg = OmegaConf.load(str(files("v2x.conf") / "dataset" / "v2xsim.yaml"))
    kwargs = OmegaConf.to_container(cfg, resolve=True)
    assert kwargs.pop("name") == "v2xsim"
    build_fixture(tmp_path)
    kwargs["root"] = str(tmp_path)
    assert len(V2XSimDataset(**kwargs)) == 2
    assert sorted(kwargs["split_scenes"]) == ["test", "train", "val"]
    with pytest.raises(ValueError, match="no scene 82"):  # the fixture has only scene 0
        V2XSimDataset(**{**kwargs, "split": "train"})
