"""OPV2V (OpenCDA's recordings as OpenCOOD reads them): frames checked against OpenCOOD's own
transforms written out here (``x_to_world``, ``create_bbx`` + ``corner_to_center``) on files
made the way OpenCDA makes them (Open3D's ``write_point_cloud`` with ``[intensity, 0, 0]``
colours, a YAML of its fields), OpenCOOD's agent order, range and ground truth, write → read
round trips, and bad input named."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from v2x.datasets.opv2v_reader import OPV2VDataset

# ----------------------------------------------------------------- OpenCOOD's math, written out


def x_to_world(pose):
    """opencood.utils.transformation_utils.x_to_world."""
    x, y, z, roll, yaw, pitch = pose
    c_y, s_y = np.cos(np.radians(yaw)), np.sin(np.radians(yaw))
    c_r, s_r = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    c_p, s_p = np.cos(np.radians(pitch)), np.sin(np.radians(pitch))
    m = np.identity(4)
    m[0, 3], m[1, 3], m[2, 3] = x, y, z
    m[0, 0] = c_p * c_y
    m[0, 1] = c_y * s_p * s_r - s_y * c_r
    m[0, 2] = -c_y * s_p * c_r - s_y * s_r
    m[1, 0] = s_y * c_p
    m[1, 1] = s_y * s_p * s_r + c_y * c_r
    m[1, 2] = -s_y * s_p * c_r + c_y * s_r
    m[2, 0] = s_p
    m[2, 1] = -c_p * s_r
    m[2, 2] = c_p * c_r
    return m


def opencood_box_in_lidar(entry, lidar_pose):
    """opencood.utils.box_utils.project_world_objects for one vehicle: (x, y, z, l, w, h, yaw)
    in the LiDAR frame of ``lidar_pose`` (create_bbx, then corner_to_center)."""
    loc, center, angle, ext = entry["location"], entry["center"], entry["angle"], entry["extent"]
    obj = [loc[0] + center[0], loc[1] + center[1], loc[2] + center[2], *angle]
    to_lidar = np.linalg.inv(x_to_world(lidar_pose)) @ x_to_world(obj)
    e = ext
    bbx = np.array([[e[0], -e[1], -e[2]], [e[0], e[1], -e[2]], [-e[0], e[1], -e[2]],
                    [-e[0], -e[1], -e[2]], [e[0], -e[1], e[2]], [e[0], e[1], e[2]],
                    [-e[0], e[1], e[2]], [-e[0], -e[1], e[2]]]).T  # fmt: skip
    c = (to_lidar @ np.r_[bbx, np.ones((1, 8))]).T[:, :3]
    xyz = c[[0, 3, 5, 6]].mean(0)
    h = abs(np.mean(c[4:, 2] - c[:4, 2]))
    length = np.mean([np.hypot(*(c[i, :2] - c[j, :2])) for i, j in ((0, 3), (2, 1), (4, 7), (5, 6))])
    width = np.mean([np.hypot(*(c[i, :2] - c[j, :2])) for i, j in ((0, 1), (2, 3), (4, 5), (6, 7))])
    yaw = np.mean([math.atan2(c[i, 1] - c[j, 1], c[i, 0] - c[j, 0])
                   for i, j in ((1, 2), (0, 3), (5, 6), (4, 7))])  # fmt: skip
    return np.array([*xyz, length, width, h, yaw])


MIRROR = np.diag([1.0, -1.0, 1.0, 1.0])


def in_ego_frame(frame, box):
    """A frame's world box in the ego's LiDAR frame, mirrored back into CARLA's frames."""
    to_ego = np.linalg.inv(frame.ego.pose)
    centre = to_ego @ np.r_[box[:3], 1.0]
    heading = to_ego[:3, :3] @ np.array([math.cos(box[6]), math.sin(box[6]), 0.0])
    yaw = math.atan2(heading[1], heading[0])
    return np.array([centre[0], -centre[1], centre[2], *box[3:6], -yaw])


# ----------------------------------------------------------------- files as OpenCDA writes them


def write_open3d_pcd(path: Path, points: np.ndarray) -> None:
    """OpenCDA's ``save_lidar_points``: Open3D, colours ``[intensity, 0, 0]``, ascii."""
    from v2x.datasets.o3d import import_open3d

    o3d = import_open3d()
    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(points[:, :3].astype(np.float64))
    i = points[:, 3].astype(np.float64)
    cloud.colors = o3d.utility.Vector3dVector(np.c_[i, np.zeros_like(i), np.zeros_like(i)])
    path.parent.mkdir(parents=True, exist_ok=True)
    assert o3d.io.write_point_cloud(str(path), cloud, write_ascii=True)


def opencood_points(path: Path) -> np.ndarray:
    """opencood.utils.pcd_utils.pcd_to_np."""
    from v2x.datasets.o3d import import_open3d

    cloud = import_open3d().io.read_point_cloud(str(path))
    xyz = np.asarray(cloud.points)
    return np.hstack((xyz, np.asarray(cloud.colors)[:, :1])).astype(np.float32)


def write_yaml(path: Path, lidar_pose, vehicles) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"lidar_pose": list(lidar_pose), "vehicles": vehicles, "ego_speed": 12.5,
            "true_ego_pos": list(lidar_pose), "plan_trajectory": [[1.0, 2.0, 3.0]]}  # fmt: skip
    path.write_text(yaml.safe_dump(data))


def car(x, y, yaw, z=0.0):
    return {"location": [x, y, z], "center": [0.2, -0.1, 0.75], "angle": [0.0, yaw, 0.0],
            "extent": [2.2, 0.95, 0.75], "speed": 3.0}  # fmt: skip


POSES = {  # agent -> lidar pose (CARLA: x, y, z, roll, yaw, pitch)
    "1045": [100.0, 50.0, 1.9, 0.0, 30.0, 0.0],
    "652": [120.0, 60.0, 1.8, 0.5, -150.0, 1.0],  # (string order puts "1045" first)
    "-3": [90.0, 40.0, 5.0, 0.0, 0.0, 0.0],  # roadside unit
    "2001": [300.0, 50.0, 1.9, 0.0, 0.0, 0.0],  # 200 m away: out of range
}
VEHICLES = {
    "1045": {652: car(118.0, 58.0, -150.0), 7: car(110.0, 45.0, 95.0), 8: car(80.0, 52.0, 179.0)},
    "652": {1045: car(98.0, 49.0, 30.0), 7: car(110.5, 45.5, 90.0), 9: car(130.0, 70.0, -45.0)},
    "-3": {1045: car(98.0, 49.0, 30.0), 10: car(85.0, 30.0, 10.0)},
    "2001": {11: car(310.0, 55.0, 0.0)},
}


def build(root: Path, stems=("000068", "000070"), shift=0.0) -> dict:
    """One scenario ``2021_08_18_19_48_05`` in ``root/test`` with the agents above; per frame the
    agents move ``shift`` m along x. Returns the points written, by (agent, stem)."""
    rng = np.random.default_rng(0)
    points = {}
    for k, stem in enumerate(stems):
        for agent, pose in POSES.items():
            folder = root / "test" / "2021_08_18_19_48_05" / agent
            moved = [pose[0] + k * shift, *pose[1:]]
            write_yaml(folder / f"{stem}.yaml", moved, VEHICLES[agent])
            pts = np.c_[rng.normal(0, 10, (40, 3)), rng.uniform(0, 1, 40)].astype(np.float32)
            write_open3d_pcd(folder / f"{stem}.pcd", pts)
            points[agent, stem] = pts
        (root / "test" / "2021_08_18_19_48_05" / "1045" / f"{stem}_camera0.png").write_bytes(b"")
    (root / "test" / "2021_08_18_19_48_05" / "data_protocol.yaml").write_text("x: 1\n")
    return points


# ----------------------------------------------------------------- against OpenCOOD


def test_agents_range_and_ground_truth_are_opencoods(tmp_path):
    """Ego = "1045" (the first name as text), the RSU "-3" moved last, "2001" 200 m away left
    out with the vehicles only it lists; the ground truth is every vehicle a kept agent lists,
    once (the ego's own car, listed by "652" and "-3", included), each box where OpenCOOD puts
    it in the ego's LiDAR frame."""
    build(tmp_path)
    ds = OPV2VDataset(tmp_path, "test")
    assert len(ds) == 2
    frame = ds[0]
    assert [a.agent_id for a in frame.agents] == ["1045", "652", "-3"]
    assert [a.kind for a in frame.agents] == ["vehicle", "vehicle", "rsu"]
    assert frame.meta["agents_out_of_range"] == ["2001"]
    assert frame.frame_id == "opv2v/2021_08_18_19_48_05/000068"
    assert frame.sequence == "opv2v/2021_08_18_19_48_05"
    assert frame.agents[0].timestamp == pytest.approx(68 * 0.05)
    assert sorted(frame.track_ids.tolist()) == [7, 8, 9, 10, 652, 1045]
    assert frame.classes.tolist() == [0] * 6
    first = {**VEHICLES["1045"], **{k: v for k, v in VEHICLES["652"].items() if k not in VEHICLES["1045"]}}
    first = {**first, **{k: v for k, v in VEHICLES["-3"].items() if k not in first}}
    for box, track in zip(frame.boxes, frame.track_ids, strict=True):
        expected = opencood_box_in_lidar(first[int(track)], POSES["1045"])
        got = in_ego_frame(frame, box)
        np.testing.assert_allclose(got[:6], expected[:6], atol=1e-9)
        assert math.remainder(got[6] - expected[6], 2 * math.pi) == pytest.approx(0.0, abs=1e-9)


def test_poses_and_points_are_opencoods_mirrored(tmp_path):
    """Each agent's pose is x_to_world of its lidar_pose and its points pcd_to_np's (Open3D
    reading OpenCDA's file), both mirrored (y → −y): a point lands in the world where
    OpenCOOD's matrices put it, mirrored; the intensity is the red byte / 255."""
    written = build(tmp_path)
    frame = OPV2VDataset(tmp_path, "test")[1]
    for agent in frame.agents:
        path = tmp_path / "test" / "2021_08_18_19_48_05" / agent.agent_id / "000070.pcd"
        theirs = opencood_points(path)
        np.testing.assert_allclose(agent.points[:, [0, 2, 3]], theirs[:, [0, 2, 3]], atol=0)
        np.testing.assert_allclose(agent.points[:, 1], -theirs[:, 1], atol=0)
        np.testing.assert_allclose(agent.points[:, 3], np.rint(written[agent.agent_id, "000070"][:, 3] * 255) / 255, atol=1e-7)
        world_theirs = (x_to_world(POSES[agent.agent_id]) @ np.c_[theirs[:, :3], np.ones(len(theirs))].T).T
        world_ours = (agent.pose @ np.c_[agent.points[:, :3], np.ones(len(theirs))].T).T
        np.testing.assert_allclose(world_ours, world_theirs @ MIRROR, atol=1e-9)


def test_old_open3d_files_with_a_float_rgb_read_the_same(tmp_path):
    """Open3D before 0.18 wrote ``rgb`` as ``TYPE F``, the float whose bits hold the bytes
    (``%.10g``, a denormal for a red byte alone): the same intensity as the ``U`` field."""
    build(tmp_path, stems=("000068",))
    path = tmp_path / "test" / "2021_08_18_19_48_05" / "1045" / "000068.pcd"
    new = OPV2VDataset(tmp_path, "test")[0].agents[0].points
    header, body = path.read_text().split("DATA ascii\n")
    rows = []
    for line in body.splitlines():
        x, y, z, rgb = line.split()
        as_float = struct.unpack("<f", struct.pack("<I", int(rgb)))[0]
        rows.append(f"{x} {y} {z} {as_float:.10g}")
    path.write_text(header.replace("TYPE F F F U", "TYPE F F F F") + "DATA ascii\n" + "\n".join(rows) + "\n")
    assert "TYPE F F F F" in path.read_text()
    old = OPV2VDataset(tmp_path, "test")[0].agents[0].points
    np.testing.assert_array_equal(old, new)
    np.testing.assert_allclose(old[:, 3], opencood_points(path)[:, 3], atol=0)


def test_options_range_agents_and_the_egos_own_box(tmp_path):
    build(tmp_path)
    every = OPV2VDataset(tmp_path, "test", comm_range_m=None)[0]
    assert [a.agent_id for a in every.agents] == ["1045", "2001", "652", "-3"]
    assert 11 in every.track_ids.tolist()
    two = OPV2VDataset(tmp_path, "test", comm_range_m=None, max_cavs=2)[0]
    assert [a.agent_id for a in two.agents] == ["1045", "2001"]
    dropped = OPV2VDataset(tmp_path, "test", ego_box="drop")[0]
    own = dropped.meta["agent_box_index"]
    assert dropped.track_ids[own[0]] == 1045 and dropped.track_ids[own[1]] == 652 and own[2] == -1
    from v2x.datasets.frame import collate_frames

    kept = OPV2VDataset(tmp_path, "test")[0]
    assert int(collate_frames([kept]).box_mask.sum()) == 6
    assert int(collate_frames([dropped]).box_mask.sum()) == 5  # the ego's own car left out
    only = OPV2VDataset(tmp_path / "test", scenarios=["2021_08_18_19_48_05"])
    assert len(only) == 2


# ----------------------------------------------------------------- round trip and the sweep


def test_synthetic_frames_written_and_read_back(tmp_path):
    """``write_opv2v`` → ``OPV2VDataset``: poses, points (intensity to 1/255), boxes and track
    ids of the vehicles and the first RSU; UAVs counted as not written."""
    from v2x.datasets.opv2v_writer import write_opv2v
    from v2x.datasets.synthetic import generate_sequence
    from v2x.datasets.synthetic_config import SyntheticConfig

    frames = list(generate_sequence(SyntheticConfig(), 3, 2))
    summary = write_opv2v(frames, tmp_path, pcd_data="binary_compressed")
    kinds = [a.kind for a in frames[0].agents]
    assert summary["frames"] == 2 and summary["agents_not_written"] == 2 * kinds.count("uav") + 2 * max(kinds.count("rsu") - 1, 0)
    assert summary["boxes_not_written"] == sum(int((f.classes > 1).sum()) for f in frames)
    ds = OPV2VDataset(tmp_path, "test", comm_range_m=None, max_cavs=None, ego_box="drop")
    assert len(ds) == 2
    for frame, back in zip(frames, ds, strict=True):
        written = [a for a in frame.agents if a.kind == "vehicle" or a is frame.ego]
        written += [a for a in frame.agents if a.kind == "rsu"][:1]
        assert len(back.agents) == len(written)
        for a, b in zip(sorted(written, key=lambda a: a is not frame.ego), back.agents, strict=True):
            np.testing.assert_allclose(b.pose, a.pose, atol=1e-9)
            np.testing.assert_allclose(b.points[:, :3], a.points[:, :3], atol=0)
            np.testing.assert_allclose(b.points[:, 3], a.points[:, 3], atol=0.5 / 255 + 1e-7)
            assert b.timestamp == pytest.approx(a.timestamp)
        vehicles = frame.boxes[frame.classes <= 1]  # cars and trucks: OPV2V's vehicles
        assert 0 < len(vehicles) < len(frame.boxes) and back.classes.tolist() == [0] * len(vehicles)
        order = np.lexsort(vehicles[:, :2].T)
        back_order = np.lexsort(back.boxes[:, :2].T)
        diff = back.boxes[back_order] - vehicles[order]
        diff[:, 6] = np.remainder(diff[:, 6] + np.pi, 2 * np.pi) - np.pi
        np.testing.assert_allclose(diff, 0.0, atol=1e-9)
        from v2x.datasets.frame import collate_frames

        mask = collate_frames([frame]).box_mask[0, : len(frame.boxes)].numpy()
        assert int(collate_frames([back]).box_mask.sum()) == int(mask[frame.classes <= 1].sum())


def test_a_sweep_reads_opv2v(tmp_path):
    """data.source=opv2v through the sweep's loader (the dataset group's fields as reader
    options), and recorded asynchrony serves an agent's earlier frame."""
    from v2x.loading import load_frames, open_reader

    build(tmp_path, stems=("000068", "000070", "000072"), shift=1.0)
    data = {"source": "opv2v", "path": str(tmp_path), "num_frames": 2, "reader": {"split": "test"}}
    frames = load_frames(data)
    assert [f.frame_id[-6:] for f in frames] == ["000068", "000070"]
    reader = open_reader(data)
    i = reader.index_of(frames[1])
    assert reader.sensing_times(i, 1) == pytest.approx([3.4, 3.5, 3.6])
    earlier = reader.observation_before(i, 1, 3.45)  # the 000068 scan of agent "652"
    assert earlier.timestamp == pytest.approx(3.4)
    np.testing.assert_allclose(earlier.pose, OPV2VDataset(tmp_path, "test")[0].agents[1].pose)
    assert reader.observation_before(i, 1, 3.3) is None


def test_the_dataset_group_builds_the_reader(tmp_path):
    from importlib.resources import files

    from omegaconf import OmegaConf

    cfg = OmegaConf.load(str(files("v2x.conf") / "dataset" / "opv2v.yaml"))
    kwargs = OmegaConf.to_container(cfg, resolve=True)
    assert kwargs.pop("name") == "opv2v"
    build(tmp_path, stems=("000068",))
    kwargs["root"] = str(tmp_path)
    assert len(OPV2VDataset(**kwargs)[0].agents) == 3


# ----------------------------------------------------------------- bad input


def test_bad_input_is_named(tmp_path):
    build(tmp_path, stems=("000068",))
    scenario = tmp_path / "test" / "2021_08_18_19_48_05"
    with pytest.raises(ValueError, match=r"looks like the dataset's root; choose a split folder with '\+data.reader.split=test'"):
        OPV2VDataset(tmp_path)
    with pytest.raises(ValueError, match=r"nowhere is not a folder; expected the dataset's root"):
        OPV2VDataset(tmp_path / "nowhere", "test")
    with pytest.raises(ValueError, match=r"field 'split' is 'val', expected one of the split folders .*\['test'\]"):
        OPV2VDataset(tmp_path, "val")
    with pytest.raises(ValueError, match=r"field 'ego_box' must be one of \('keep', 'drop'\), got 'yes'"):
        OPV2VDataset(tmp_path, "test", ego_box="yes")
    with pytest.raises(ValueError, match=r"field 'scenarios' names \['nope'\]"):
        OPV2VDataset(tmp_path, "test", scenarios=["nope"])
    (scenario / "-3" / "000068.yaml").write_text("lidar_pose: [1, 2, 3]\nvehicles: {}\n")
    with pytest.raises(ValueError, match=r"-3/000068.yaml: field 'lidar_pose' must be 6 finite numbers, got \[1, 2, 3\]"):
        OPV2VDataset(tmp_path, "test")[0]
    (scenario / "-3" / "000068.yaml").write_text("lidar_pose: [95, 45, 5, 0, 0, 0]\nvehicles: {5: {location: [1, 2]}}\n")
    with pytest.raises(ValueError, match=r"000068.yaml: vehicles\[5\]: field 'location' must be 3 finite"):
        OPV2VDataset(tmp_path, "test")[0]
    (scenario / "-3" / "000068.yaml").write_text("lidar_pose: [1, 2, 3, 0, 0, 0\n")
    with pytest.raises(ValueError, match=r"-3/000068.yaml: not valid YAML"):
        OPV2VDataset(tmp_path, "test")[0]
    (scenario / "-3" / "000068.yaml").unlink()
    with pytest.raises(ValueError, match=r"-3/000068.yaml: file not found; OPV2V's agents share their frame numbers"):
        OPV2VDataset(tmp_path, "test")[0]
    (scenario / "-3").rename(scenario / "rsu")
    with pytest.raises(ValueError, match=r"rsu: an OPV2V scenario holds one folder per agent"):
        OPV2VDataset(tmp_path, "test")
    (scenario / "rsu").rename(scenario / "-3")
    write_yaml(scenario / "-3" / "000068.yaml", POSES["-3"], VEHICLES["-3"])
    (scenario / "652" / "000068.pcd").write_text("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 0\nHEIGHT 1\nPOINTS 0\nDATA ascii\n")
    with pytest.raises(ValueError, match=r"652/000068.pcd: the PCD header FIELDS \(x y z\) has neither 'intensity' nor 'rgb'"):
        OPV2VDataset(tmp_path, "test")[0]
    for counts, name in (("2 1 1 1", "x"), ("1 1 1 3", "rgb")):
        (scenario / "652" / "000068.pcd").write_text(
            f"VERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F U\nCOUNT {counts}\n"
            "WIDTH 0\nHEIGHT 1\nPOINTS 0\nDATA ascii\n"
        )
        with pytest.raises(ValueError, match=rf"652/000068.pcd: field 'COUNT' of '{name}' is [23]; expected 1 \(one value per point\)"):
            OPV2VDataset(tmp_path, "test")[0]


def test_a_sweep_config_with_a_bad_reader_option_is_one_line(tmp_path):
    from v2x.loading import open_reader

    build(tmp_path, stems=("000068",))
    data = {"source": "opv2v", "path": str(tmp_path), "reader": {"splitt": "test"}}
    with pytest.raises(ValueError, match=r"field 'data.reader' has unknown field\(s\) \['splitt'\] for opv2v"):
        open_reader(data)


def test_the_yaml_files_read_as_opencoods_loader_reads_them(tmp_path):
    """OpenCOOD's ``load_yaml`` reads ``1e-3`` (no dot) as a float; a Python tag (numpy's
    scalars in some dumps) is no field read here and loads as None instead of failing."""
    from v2x.datasets.opv2v_format import load_yaml

    path = tmp_path / "000001.yaml"
    path.write_text("lidar_pose: [1e-3, 2, -3.5e+2, 0, 90, 0]\n"
                    "ego_speed: !!python/object/apply:numpy.core.multiarray.scalar [x]\n"
                    "vehicles: {12: {speed: 2E1}}\n")  # fmt: skip
    data = load_yaml(path)
    assert data["lidar_pose"] == [0.001, 2, -350.0, 0, 90, 0]
    assert isinstance(data["lidar_pose"][0], float) and data["ego_speed"] is None
    assert data["vehicles"] == {12: {"speed": 20.0}}
    path.write_text("- just a list\n")
    with pytest.raises(ValueError, match=r"000001.yaml: must hold a YAML mapping"):
        load_yaml(path)
