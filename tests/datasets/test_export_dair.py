"""What the DAIR-V2X-C exporter writes, read the way the official DAIR-V2X tools read it rather
than by our own reader (a round trip cannot catch a format error both sides share).

The loader steps below are re-implemented from AIR-THU/DAIR-V2X (``v2x/dataset/
dair_v2x_for_detection.py`` ``VICDataset``/``VICAsyncDataset``, ``base_dataset.
build_path_to_info``, ``dataset_utils/frame.py`` ids from ``image_path[-10:-4]``,
``dataset_utils/label.py`` ``Label``, ``v2x_utils/transformation_utils.py``
``Coord_transformation`` and ``get_3d_8points``, ``config.name2id``): nothing of ours is used to
read. PCD files are parsed from the PCL v0.7 spec by a parser written here (LZF included) and,
when installed, by ``pypcd4``.
"""

from __future__ import annotations

import itertools
import json
import math
import os.path as osp
import struct
from pathlib import Path

import numpy as np
import pytest

from v2x.datasets.export import export_frames

SMALL_TOWN = {
    "num_vehicle_agents": 2,
    "vehicle_lidar": {"preset": "vlp16", "columns": 128},
    "rsu_lidar": {"preset": "vlp16", "columns": 128},
    "uav_lidar": {"preset": "uav_down", "beams": 8, "columns": 64},
}
# config.name2id of the official tools (lower-cased type -> class id).
NAME2ID = {
    "car": 2,
    "van": 2,
    "truck": 2,
    "bus": 2,
    "cyclist": 1,
    "tricyclist": 3,
    "motorcyclist": 3,
    "barrow": 3,
    "barrowlist": 3,
    "pedestrian": 0,
    "trafficcone": 3,
}
OFFSET = {"delta_x": 0.7, "delta_y": -0.4}


def _mount() -> np.ndarray:
    c, s = math.cos(0.1), math.sin(0.1)
    mount = np.eye(4)
    mount[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    mount[:3, 3] = [0.3, 0.0, 1.2]
    return mount


def _frames():
    from v2x.datasets.synthetic import generate_sequence

    frames = list(
        itertools.chain.from_iterable(generate_sequence(SMALL_TOWN, seed, 2) for seed in (1, 2))
    )
    for frame in frames:
        frame.meta["system_error_offset"] = dict(OFFSET)
    return frames


# ------------------------------------------------------------- PCD from the spec (PCL v0.7)


def lzf_decode(data: bytes, size: int) -> bytes:
    """liblzf: ctrl < 32 → ctrl+1 literals; else length ctrl>>5 (7 → +next byte) + 2, offset
    ((ctrl & 31) << 8 | next) + 1 back."""
    out, i = bytearray(), 0
    while i < len(data):
        ctrl = data[i]
        i += 1
        if ctrl < 32:
            out += data[i : i + ctrl + 1]
            i += ctrl + 1
            continue
        length = ctrl >> 5
        if length == 7:
            length += data[i]
            i += 1
        ref = len(out) - ((ctrl & 31) << 8) - data[i] - 1
        i += 1
        for k in range(length + 2):
            out.append(out[ref + k])
    assert len(out) == size
    return bytes(out)


def parse_pcd(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    header, pos = {}, 0
    while True:
        end = raw.index(b"\n", pos)
        line = raw[pos:end].decode("ascii").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        header[key] = values
        if key == "DATA":
            break
    names, sizes, types = header["FIELDS"], header["SIZE"], header["TYPE"]
    assert header["COUNT"] == ["1"] * len(names)
    n = int(header["POINTS"][0])
    assert n == int(header["WIDTH"][0]) * int(header["HEIGHT"][0])
    dtype = np.dtype(
        [(nm, {"F": "<f", "U": "<u", "I": "<i"}[t] + sz) for nm, sz, t in zip(names, sizes, types)]
    )
    body, kind = raw[pos:], header["DATA"][0]
    if kind == "ascii":
        rows = np.loadtxt(body.decode("ascii").splitlines(), ndmin=2)
        return {nm: rows[:, k].astype(dtype[nm]) for k, nm in enumerate(names)}
    if kind == "binary":
        rec = np.frombuffer(body, dtype=dtype, count=n)
        return {nm: rec[nm] for nm in names}
    assert kind == "binary_compressed"
    packed, plain = struct.unpack("<II", body[:8])
    columns = lzf_decode(body[8 : 8 + packed], plain)
    out, at = {}, 0
    for nm in names:  # struct of arrays
        out[nm] = np.frombuffer(columns, dtype=dtype[nm], count=n, offset=at)
        at += n * dtype[nm].itemsize
    return out


# --------------------------------------------------------- the official loader, re-implemented


def _json(path) -> object:
    with open(path) as handle:
        return json.load(handle)


def _rt(calib: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.array(calib["rotation"]).reshape(3, 3), np.array(calib["translation"]).reshape(3, 1)


def _compose(ra, ta, rb, tb):
    """``muilt_coord``: A→B then B→C."""
    return rb @ ra, rb @ ta + tb


def _reverse(r, t):
    ri = np.linalg.inv(r)
    return ri, -ri @ t


def official_transforms(root: Path, veh_name: str, inf_name: str):
    """``Coord_transformation``: (Vehicle_lidar→World, World→Vehicle_lidar,
    Infrastructure_lidar→Vehicle_lidar), each ``(R 3x3, t 3x1)``."""
    l2n = _json(root / f"vehicle-side/calib/lidar_to_novatel/{veh_name}.json")["transform"]
    n2w = _json(root / f"vehicle-side/calib/novatel_to_world/{veh_name}.json")
    v2w = _json(root / f"infrastructure-side/calib/virtuallidar_to_world/{inf_name}.json")
    veh_to_world = _compose(*_rt(l2n), *_rt(n2w))
    world_to_veh = _compose(*_reverse(*_rt(n2w)), *_reverse(*_rt(l2n)))
    dx, dy = v2w["relative_error"]["delta_x"], v2w["relative_error"]["delta_y"]
    dx, dy = (0 if dx == "" else dx), (0 if dy == "" else dy)
    # the official code adds to the translation exactly as written (3x1 nested list)
    translation = v2w["translation"] + np.array([dx, dy, 0]).reshape(3, 1)
    rotation = np.array(v2w["rotation"]).reshape(3, 3)
    inf_to_veh = _compose(rotation, np.array(translation).reshape(3, 1), *world_to_veh)
    return veh_to_world, world_to_veh, inf_to_veh


def get_3d_8points(size_lwh, yaw, bottom_centre) -> np.ndarray:
    length, w, h = size_lwh
    rot = np.array(
        [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
    )
    corners = np.array(
        [
            [length / 2, length / 2, -length / 2, -length / 2] * 2,
            [w / 2, -w / 2, -w / 2, w / 2] * 2,
            [0, 0, 0, 0, h, h, h, h],
        ]
    )
    return (rot @ corners + np.array(bottom_centre).reshape(3, 1)).T


def official_label(path: Path) -> tuple[np.ndarray, list[int]]:
    """``Label``: ``world_8_points`` when present, else corners from centre/size/rotation."""
    boxes, classes = [], []
    for label in _json(path):
        size = label["3d_dimensions"]
        if size["l"] == 0 or size["w"] == 0 or size["h"] == 0:
            continue
        if "world_8_points" in label:
            box = label["world_8_points"]
        else:
            pos = label["3d_location"]
            box = get_3d_8points(
                [float(size["l"]), float(size["w"]), float(size["h"])],
                float(label["rotation"]),
                [float(pos["x"]), float(pos["y"]), float(pos["z"]) - float(size["h"]) / 2],
            )
        boxes.append(np.asarray(box, dtype=np.float64))
        classes.append(NAME2ID[label["type"].lower()])
    return np.array(boxes).reshape(-1, 8, 3), classes


def _apply(rt, points: np.ndarray) -> np.ndarray:
    r, t = rt
    return points @ r.T + t.reshape(3)


def _expected_corners(box) -> np.ndarray:
    x, y, z, length, w, h, yaw = box
    return get_3d_8points([length, w, h], yaw, [x, y, z - h / 2])


def _pick(frame):
    vehicle = frame.ego
    rsus = [a for a in frame.agents if a.kind == "rsu"]
    rsu = min(rsus, key=lambda a: np.linalg.norm(a.pose[:2, 3] - vehicle.pose[:2, 3]))
    return frame.agents.index(vehicle), frame.agents.index(rsu)


def _check_export(root: Path, frames, read_points) -> None:
    inf_path2info = {
        osp.join("infrastructure-side", e["pointcloud_path"]): e
        for e in _json(root / "infrastructure-side/data_info.json")
        if e["pointcloud_path"] != ""
    }
    veh_path2info = {
        osp.join("vehicle-side", e["pointcloud_path"]): e
        for e in _json(root / "vehicle-side/data_info.json")
        if e["pointcloud_path"] != ""
    }
    pairs = _json(root / "cooperative/data_info.json")
    assert len(pairs) == len(frames)
    for pair, frame in zip(pairs, frames):
        inf = inf_path2info[pair["infrastructure_pointcloud_path"]]
        veh = veh_path2info[pair["vehicle_pointcloud_path"]]
        veh_name, inf_name = veh["image_path"][-10:-4], inf["image_path"][-10:-4]
        assert (
            veh["pointcloud_path"][-10:-4] == veh_name
            and inf["pointcloud_path"][-10:-4] == inf_name
        )
        assert pair["vehicle_image_path"] == osp.join("vehicle-side", veh["image_path"])
        # the calib paths in data_info are the ones the official code hard-codes from the id
        for key, folder in (
            ("calib_lidar_to_novatel_path", "lidar_to_novatel"),
            ("calib_novatel_to_world_path", "novatel_to_world"),
        ):
            assert veh[key] == f"calib/{folder}/{veh_name}.json"
        assert inf["calib_virtuallidar_to_world_path"] == (
            f"calib/virtuallidar_to_world/{inf_name}.json"
        )
        assert pair["system_error_offset"] == OFFSET
        iv, ir = _pick(frame)
        vehicle, rsu = frame.agents[iv], frame.agents[ir]
        veh_to_world, world_to_veh, inf_to_veh = official_transforms(root, veh_name, inf_name)
        np.testing.assert_allclose(veh_to_world[0], vehicle.pose[:3, :3], atol=1e-12)
        np.testing.assert_allclose(veh_to_world[1][:, 0], vehicle.pose[:3, 3], atol=1e-9)
        ours = np.linalg.inv(vehicle.pose) @ rsu.pose
        np.testing.assert_allclose(inf_to_veh[0], ours[:3, :3], atol=1e-12)
        np.testing.assert_allclose(inf_to_veh[1][:, 0], ours[:3, 3], atol=1e-9)
        # timestamps: µs strings, as the official async code does int(...) on them
        assert int(veh["pointcloud_timestamp"]) == round(vehicle.timestamp * 1e6)
        assert int(inf["pointcloud_timestamp"]) == round(rsu.timestamp * 1e6)
        # points: x y z intensity, intensity stored 0-255
        for side, info, agent in (
            ("vehicle-side", veh, vehicle),
            ("infrastructure-side", inf, rsu),
        ):
            fields = read_points(root / side / info["pointcloud_path"])
            got = np.stack([fields[k].astype(np.float32) for k in ("x", "y", "z")], axis=1)
            np.testing.assert_array_equal(got, agent.points[:, :3])
            np.testing.assert_allclose(fields["intensity"], agent.points[:, 3] * 255.0, rtol=1e-6)
        # cooperative label: world_8_points, to the vehicle LiDAR as VICDataset does
        corners, classes = official_label(root / pair["cooperative_label_path"])
        assert len(corners) == len(frame.boxes)
        assert classes == [
            NAME2ID[("car", "truck", "pedestrian", "cyclist")[c]] for c in frame.classes
        ]
        for got, box in zip(corners, frame.boxes):
            expected = _apply(world_to_veh, _expected_corners(box))
            np.testing.assert_allclose(_apply(world_to_veh, got), expected, atol=1e-9)
        # side labels (centre, size, rotation in the side's LiDAR frame) → world corners
        for side, folder, key, index, to_world in (
            ("vehicle-side", "label/lidar", "label_lidar_std_path", iv, veh_to_world),
            ("infrastructure-side", "label/virtuallidar", "label_lidar_std_path", ir, None),
        ):
            info = veh if side == "vehicle-side" else inf
            assert info[key] == f"{folder}/{info['pointcloud_path'][-10:-4]}.json"
            side_corners, _ = official_label(root / side / info[key])
            seen = frame.visibility[index] > 0
            assert len(side_corners) == int(seen.sum())
            pose = frame.agents[index].pose
            for got, box in zip(side_corners, frame.boxes[seen]):
                world = (
                    got @ pose[:3, :3].T + pose[:3, 3]
                    if to_world is None
                    else _apply(to_world, got)
                )
                np.testing.assert_allclose(world, _expected_corners(box), atol=1e-9)
    # VICAsyncDataset's previous infrastructure frame: id - k within [batch_start_id, ...]
    for info in inf_path2info.values():
        index = int(info["pointcloud_path"][-10:-4])
        start, end = int(info["batch_start_id"]), int(info["batch_end_id"])
        assert start <= index <= end
        if index - 1 >= start:
            prev = inf_path2info[f"infrastructure-side/velodyne/{index - 1:06d}.pcd"]
            assert prev["batch_id"] == info["batch_id"]
    assert len({i["batch_id"] for i in inf_path2info.values()}) == 2  # two sequences


@pytest.mark.parametrize("pcd_data", ["binary", "binary_compressed", "ascii"])
def test_official_dair_loading_reads_the_export(tmp_path, pcd_data):
    frames = _frames()
    export_frames(frames, tmp_path, "dair_v2x", pcd_data=pcd_data, lidar_to_novatel=_mount())
    _check_export(tmp_path, frames, parse_pcd)


@pytest.mark.parametrize("pcd_data", ["binary", "binary_compressed", "ascii"])
def test_pypcd4_reads_the_exported_point_clouds(tmp_path, pcd_data):
    pypcd4 = pytest.importorskip("pypcd4")
    frames = _frames()
    export_frames(frames, tmp_path, "dair_v2x", pcd_data=pcd_data, lidar_to_novatel=_mount())

    def read(path: Path) -> dict[str, np.ndarray]:
        cloud = pypcd4.PointCloud.from_path(path)
        return {name: cloud.pc_data[name] for name in cloud.fields}

    _check_export(tmp_path, frames, read)


def test_bad_writer_options_name_the_field_and_value(tmp_path):
    frames = _frames()[:2]
    scaled = np.diag([2.0, 1.0, 1.0, 1.0])
    cases = [
        ({"lidar_to_novatel": scaled}, r"field 'lidar_to_novatel' is not rigid.*2\.0"),
        ({"lidar_to_novatel": np.eye(3)}, r"field 'lidar_to_novatel' must be a 4x4 matrix"),
        ({"pcd_data": "bin"}, r"write_dair_v2x_c: field 'pcd_data' must be one of .*'bin'"),
        ({"intensity_scale": float("nan")}, r"field 'intensity_scale' must be .*nan"),
        ({"first_id": -1}, r"field 'first_id' must be a whole number in \[0, 999999\].*-1"),
        # the official tools read the id as image_path[-10:-4]: 1000000 would read as 000000
        ({"first_id": 999_999}, r"field 'first_id' 999999 \+ frame 1 .* gives id 1000000"),
    ]
    for n, (kwargs, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message):
            export_frames(frames, tmp_path / str(n), "dair_v2x", **kwargs)
    for n in range(5):  # option errors come before anything is written
        assert not (tmp_path / str(n)).exists()


@pytest.mark.parametrize(
    "offset", [{"delta_x": "abc", "delta_y": 0}, (1.0, 2.0, 3.0), {"dx": 1.0}, (float("nan"), 0)]
)
def test_bad_system_error_offset_names_the_frame_and_value(tmp_path, offset):
    frame = _frames()[0]
    frame.meta["system_error_offset"] = offset
    with pytest.raises(ValueError) as info:
        export_frames([frame], tmp_path, "dair_v2x")
    text = str(info.value)
    assert repr(frame.frame_id) in text and "system_error_offset" in text and repr(offset) in text


def test_empty_string_offset_is_zero_as_in_the_format(tmp_path):
    frame = _frames()[0]
    frame.meta["system_error_offset"] = {"delta_x": "", "delta_y": ""}
    export_frames([frame], tmp_path, "dair_v2x")
    calib = _json(tmp_path / "infrastructure-side/calib/virtuallidar_to_world/000000.json")
    assert calib["relative_error"] == {"delta_x": 0.0, "delta_y": 0.0}
