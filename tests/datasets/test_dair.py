"""DAIR-V2X-C reader/writer: a hand-written fixture in the published layout and a round trip."""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from v2x.datasets.dair_reader import DAIRV2XCDataset
from v2x.datasets.dair_writer import write_dair_v2x_c

RZ90 = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
RZ180 = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]
PCD_HEADER = (
    "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z intensity\n"
    "SIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\nWIDTH {n}\nHEIGHT 1\n"
    "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n"
)


def _json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def _pcd_binary(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = b"".join(struct.pack("<4f", *r) for r in rows)
    path.write_bytes(PCD_HEADER.format(n=len(rows), data="binary").encode() + body)


def _pcd_compressed(path: Path, rows) -> None:
    """binary_compressed with a literal-only LZF stream of the struct-of-arrays bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soa = b"".join(struct.pack(f"<{len(rows)}f", *[r[k] for r in rows]) for k in range(4))
    lzf = b"".join(
        bytes([len(soa[i : i + 32]) - 1]) + soa[i : i + 32] for i in range(0, len(soa), 32)
    )
    header = PCD_HEADER.format(n=len(rows), data="binary_compressed").encode()
    path.write_bytes(header + struct.pack("<II", len(lzf), len(soa)) + lzf)


def _obj(type_, h, w, l, x, y, z, rotation, **extra):  # noqa: E741
    return {
        "type": type_,
        "occluded_state": 0,
        "truncated_state": 0,
        "2d_box": {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1},
        "3d_dimensions": {"h": h, "w": w, "l": l},
        "3d_location": {"x": x, "y": y, "z": z},
        "rotation": rotation,
        **extra,
    }


def build_fixture(root: Path) -> None:
    """One cooperative pair: vehicle frame 015344, infrastructure frame 000009."""
    _json(
        root / "cooperative/data_info.json",
        [
            {
                "infrastructure_image_path": "infrastructure-side/image/000009.jpg",
                "infrastructure_pointcloud_path": "infrastructure-side/velodyne/000009.pcd",
                "vehicle_image_path": "vehicle-side/image/015344.jpg",
                "vehicle_pointcloud_path": "vehicle-side/velodyne/015344.pcd",
                "cooperative_label_path": "cooperative/label_world/015344.json",
                "system_error_offset": {
                    "delta_x": "0.5",
                    "delta_y": "",
                },  # strings and "" as released
            }
        ],
    )
    _json(
        root / "vehicle-side/data_info.json",
        [
            {
                "image_path": "image/015344.jpg",
                "image_timestamp": "1626155123877000",
                "pointcloud_path": "velodyne/015344.pcd",
                "pointcloud_timestamp": "1626155123880000",
                "label_lidar_std_path": "label/lidar/015344.json",
                "label_camera_std_path": "label/camera/015344.json",
                "calib_lidar_to_camera_path": "calib/lidar_to_camera/015344.json",
                "calib_lidar_to_novatel_path": "calib/lidar_to_novatel/015344.json",
                "calib_novatel_to_world_path": "calib/novatel_to_world/015344.json",
                "calib_camera_intrinsic_path": "calib/camera_intrinsic/015344.json",
                "batch_id": "42",
                "intersection_loc": "Yizhuang10",
                "batch_start_id": "015300",
                "batch_end_id": "015400",
            }
        ],
    )
    _json(
        root / "infrastructure-side/data_info.json",
        [
            {
                "image_path": "image/000009.jpg",
                "image_timestamp": "1626155123800000",
                "pointcloud_path": "velodyne/000009.pcd",
                "pointcloud_timestamp": "1626155123830000",
                "label_lidar_std_path": "label/virtuallidar/000009.json",
                "label_camera_std_path": "label/camera/000009.json",
                "calib_virtuallidar_to_world_path": "calib/virtuallidar_to_world/000009.json",
                "calib_camera_intrinsic_path": "calib/camera_intrinsic/000009.json",
                "batch_id": "42",
                "intersection_loc": "Yizhuang10",
                "batch_start_id": "000000",
                "batch_end_id": "000050",
            }
        ],
    )
    # vehicle LiDAR → NovAtel: turned +90° about z, (1, 0, 1.5); NovAtel → world: (100, 200, 10).
    _json(
        root / "vehicle-side/calib/lidar_to_novatel/015344.json",
        {"transform": {"rotation": RZ90, "translation": [[1.0], [0.0], [1.5]]}},
    )
    _json(
        root / "vehicle-side/calib/novatel_to_world/015344.json",
        {"rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "translation": [[100.0], [200.0], [10.0]]},
    )
    # infrastructure virtual LiDAR → world: turned 180°, (150, 210, 6); its own relative_error is
    # superseded by the pair's system_error_offset.
    _json(
        root / "infrastructure-side/calib/virtuallidar_to_world/000009.json",
        {
            "rotation": RZ180,
            "translation": [[150.0], [210.0], [6.0]],
            "relative_error": {"delta_x": "9", "delta_y": "9"},
        },
    )
    _pcd_binary(
        root / "vehicle-side/velodyne/015344.pcd", [(1.0, 0.0, 0.0, 51.0), (0.0, 0.0, 0.0, 255.0)]
    )
    _pcd_compressed(root / "infrastructure-side/velodyne/000009.pcd", [(2.0, 0.0, 0.0, 102.0)])
    # cooperative label (world frame): a car at (105, 203, 11), l=4, w=2, h=1.5 heading +y, given
    # by DAIR-ordered corners (c0..c3 bottom: (+l/2,+w/2), (+,-), (-,-), (-,+) in the box frame);
    # its "rotation" field is deliberately not the world yaw: the corners decide.
    bottom, top = 11 - 0.75, 11 + 0.75
    corners = [
        [104, 205, bottom],
        [106, 205, bottom],
        [106, 201, bottom],
        [104, 201, bottom],
        [104, 205, top],
        [106, 205, top],
        [106, 201, top],
        [104, 201, top],
    ]
    offset = {"delta_x": "0.5", "delta_y": ""}
    _json(
        root / "cooperative/label_world/015344.json",
        [
            _obj(
                "Car",
                1.5,
                2.0,
                4.0,
                105.0,
                203.0,
                11.0,
                0.123,
                world_8_points=corners,
                system_error_offset=offset,
            ),
            _obj(
                "Van",
                "1.9",
                "1.8",
                "4.6",
                "110.0",
                "190.0",
                "10.9",
                "-1.0",
                system_error_offset=offset,
            ),
            _obj("TrafficCone", 0.6, 0.3, 0.3, 101.0, 201.0, 10.3, 0.0, system_error_offset=offset),
            _obj("Car", 0.0, 0.0, 0.0, 120.0, 220.0, 10.0, 0.0, system_error_offset=offset),
        ],
    )
    # vehicle-side label (vehicle LiDAR frame) and infrastructure-side label (virtual LiDAR frame).
    _json(
        root / "vehicle-side/label/lidar/015344.json",
        [_obj("Pedestrian", 1.7, 0.6, 0.5, 10.0, 0.0, -1.0, 0.0)],
    )
    _json(
        root / "infrastructure-side/label/virtuallidar/000009.json",
        [
            _obj("Truck", 3.0, 2.5, 8.0, 2.0, 0.0, 0.0, 0.5),
            _obj("Barrowlist", 1.5, 0.8, 1.2, 5.0, 5.0, 0.0, 0.0),
        ],
    )


def _wrap(angle):
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def test_fixture_poses_and_points_follow_hand_computed_calib(tmp_path):
    build_fixture(tmp_path)
    frame = DAIRV2XCDataset(tmp_path)[0]
    veh, inf = frame.agents
    assert (veh.kind, inf.kind, frame.ego_index) == ("vehicle", "rsu", 0)
    # vehicle point (1, 0, 0): novatel = Rz90·p + (1, 0, 1.5) = (1, 1, 1.5); world + (100, 200, 10).
    np.testing.assert_allclose(veh.pose @ [1, 0, 0, 1], [101.0, 201.0, 11.5, 1.0], atol=1e-12)
    # infrastructure point (2, 0, 0): Rz180·p + (150, 210, 6) + offset (0.5, 0, 0) = (148.5, 210, 6).
    np.testing.assert_allclose(inf.pose @ [2, 0, 0, 1], [148.5, 210.0, 6.0, 1.0], atol=1e-12)
    # the same point in the vehicle LiDAR frame, chained by hand: world → novatel subtracts
    # (100, 200, 10): (48.5, 10, −4); novatel → lidar: Rz90ᵀ((48.5, 10, −4) − (1, 0, 1.5)) =
    # Rz(−90°)·(47.5, 10, −5.5) = (10, −47.5, −5.5).
    in_vehicle = np.linalg.inv(veh.pose) @ inf.pose @ [2, 0, 0, 1]
    np.testing.assert_allclose(in_vehicle, [10.0, -47.5, -5.5, 1.0], atol=1e-9)
    # intensity stored 0-255 → 0-1; points stay in each agent's own frame.
    np.testing.assert_allclose(veh.points, [[1, 0, 0, 0.2], [0, 0, 0, 1.0]], atol=1e-7)
    np.testing.assert_allclose(inf.points, [[2, 0, 0, 0.4]], atol=1e-7)
    assert veh.timestamp == pytest.approx(1626155123.88) and inf.timestamp == pytest.approx(
        1626155123.83
    )
    assert frame.meta["system_error_offset"] == {"delta_x": 0.5, "delta_y": 0.0}
    assert (
        frame.meta["vehicle_frame"] == "015344" and frame.meta["infrastructure_frame"] == "000009"
    )
    # the vehicle's drive (batch_id) is the frame's sequence, not the "dair/" of every frame id
    assert frame.frame_id == "dair/015344" and frame.sequence == "dair/42"


def test_fixture_cooperative_labels_world_frame(tmp_path):
    build_fixture(tmp_path)
    frame = DAIRV2XCDataset(tmp_path)[0]
    assert frame.classes.tolist() == [0, 0]  # Car, Van → car
    np.testing.assert_allclose(frame.boxes[0, :6], [105.0, 203.0, 11.0, 4.0, 2.0, 1.5])
    assert frame.boxes[0, 6] == pytest.approx(math.pi / 2)  # from the corners, not "rotation"
    np.testing.assert_allclose(frame.boxes[1], [110.0, 190.0, 10.9, 4.6, 1.8, 1.9, -1.0])
    assert frame.meta["dropped_categories"] == {"TrafficCone": 1}
    assert frame.meta["dropped_zero_size"] == 1
    assert frame.track_ids.tolist() == [-1, -1]


def test_fixture_side_labels_go_through_their_calib(tmp_path):
    build_fixture(tmp_path)
    veh_frame = DAIRV2XCDataset(tmp_path, labels="vehicle")[0]
    # (10, 0, −1) in the vehicle LiDAR: novatel (0, 10, −1) + (1, 0, 1.5) → world (101, 210, 10.5);
    # heading +x turns by +90°.
    np.testing.assert_allclose(
        veh_frame.boxes[0], [101.0, 210.0, 10.5, 0.5, 0.6, 1.7, math.pi / 2], atol=1e-12
    )
    assert veh_frame.classes.tolist() == [2]
    inf_frame = DAIRV2XCDataset(tmp_path, labels="infrastructure")[0]
    np.testing.assert_allclose(
        inf_frame.boxes[0, :6], [148.5, 210.0, 6.0, 8.0, 2.5, 3.0], atol=1e-12
    )
    assert abs(_wrap(inf_frame.boxes[0, 6] - (0.5 + math.pi))) < 1e-12
    assert inf_frame.classes.tolist() == [1] and inf_frame.meta["dropped_categories"] == {
        "Barrowlist": 1
    }


def test_side_labels_follow_the_published_label_lidar_std_path(tmp_path):
    """The released side data_info.json names each frame's LiDAR label ``label_lidar_std_path``
    (AIR-THU/DAIR-V2X ``DAIRV2XV``/``DAIRV2XI`` read ``elem["label_lidar_std_path"]``): a label
    moved out of the conventional folder is read from where that field says."""
    build_fixture(tmp_path)
    for side, folder, fid in (
        ("vehicle-side", "label/lidar", "015344"),
        ("infrastructure-side", "label/virtuallidar", "000009"),
    ):
        moved = tmp_path / side / "label" / "elsewhere" / f"{fid}.json"
        moved.parent.mkdir(parents=True)
        (tmp_path / side / folder / f"{fid}.json").rename(moved)
        info_path = tmp_path / side / "data_info.json"
        info = json.loads(info_path.read_text())
        info[0]["label_lidar_std_path"] = f"label/elsewhere/{fid}.json"
        _json(info_path, info)
    veh_frame = DAIRV2XCDataset(tmp_path, labels="vehicle")[0]
    np.testing.assert_allclose(
        veh_frame.boxes[0], [101.0, 210.0, 10.5, 0.5, 0.6, 1.7, math.pi / 2], atol=1e-12
    )
    inf_frame = DAIRV2XCDataset(tmp_path, labels="infrastructure")[0]
    np.testing.assert_allclose(
        inf_frame.boxes[0, :6], [148.5, 210.0, 6.0, 8.0, 2.5, 3.0], atol=1e-12
    )


def test_coop_labels_in_vehicle_lidar_frame_option(tmp_path):
    build_fixture(tmp_path)
    _json(
        tmp_path / "cooperative/label_world/015344.json",
        [_obj("Bus", 3, 2.5, 10, 10.0, 0.0, -1.0, 0.0)],
    )
    frame = DAIRV2XCDataset(tmp_path, coop_label_frame="vehicle_lidar")[0]
    np.testing.assert_allclose(
        frame.boxes[0], [101.0, 210.0, 10.5, 10.0, 2.5, 3.0, math.pi / 2], atol=1e-12
    )


def _dair_8_points(length, w, h, x, y, z, yaw):
    """DAIR's ``get_lidar_3d_8points`` (AIR-THU/DAIR-V2X tools/dataset_converter/README.md),
    written out: local (±l/2, ±w/2, ±h/2) as (+,+), (+,−), (−,−), (−,+), bottom then top,
    rotated by Rz(yaw) about the centre (x, y, z); "forward direction: 3 -> 0"."""
    lx = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * length / 2
    ly = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * w / 2
    lz = np.array([-1, -1, -1, -1, 1, 1, 1, 1]) * h / 2
    c, s = math.cos(yaw), math.sin(yaw)
    return np.stack([x + c * lx - s * ly, y + s * lx + c * ly, z + lz], axis=1).tolist()


def test_cooperative_corners_decide_the_whole_box(tmp_path):
    """DAIR-V2X data/README.md, "Cooperative Annotation File": ``{type, world_8_points,
    system_error_offset}``; the zh README adds that the file's other 3D fields are not usable
    (the box is to be read from the corners). The official ``Label`` builds the GT from the
    corners and HEAL's ``project_world_objects_dairv2x`` takes centre, l, w, h and yaw from them
    (``corner_to_center``). We read the centre and the size from ``3d_location`` /
    ``3d_dimensions`` instead: a file in the published form failed ("field '3d_dimensions' is
    missing") and stale fields gave a box at (12, -3, -1) of 4.4 x 1.9 x 1.6 where the corners
    say (105, 203, 11), 4 x 2 x 1.5."""
    build_fixture(tmp_path)
    offset = {"delta_x": "0.5", "delta_y": ""}
    truth = [  # (l, w, h, x, y, z, yaw) in the world
        (4.0, 2.0, 1.5, 105.0, 203.0, 11.0, math.pi / 2),
        (4.6, 1.8, 1.9, 130.25, 190.5, 10.9, math.pi - 0.01),  # heading just short of +pi
        (10.0, 2.5, 3.2, 90.0, 230.0, 11.6, -math.pi + 0.02),  # just past -pi
        (3.9, 1.7, 1.4, 101.0, 199.0, 10.5, -0.7),
    ]
    objects = [
        {"type": "Car", "world_8_points": _dair_8_points(*truth[0]), "system_error_offset": offset},
        # the fields a release also carries, deliberately stale: the corners decide
        {
            "type": "Van",
            "world_8_points": _dair_8_points(*truth[1]),
            "3d_dimensions": {"h": 1.6, "w": 1.9, "l": 4.4},
            "3d_location": {"x": 12.0, "y": -3.0, "z": -1.0},
            "rotation": 0.3,
            "system_error_offset": offset,
        },
        {"type": "Bus", "world_8_points": _dair_8_points(*truth[2]), "system_error_offset": offset},
        {"type": "Car", "world_8_points": _dair_8_points(*truth[3])},
        # a zero 3d_dimensions (with its collapsed corners) still drops the box (the official
        # Label skips it)
        {
            "type": "Car",
            "world_8_points": _dair_8_points(0.0, 0.0, 0.0, 80.0, 180.0, 10.0, 0.0),
            "3d_dimensions": {"h": 0, "w": 0, "l": 0},
        },
    ]
    _json(tmp_path / "cooperative/label_world/015344.json", objects)
    frame = DAIRV2XCDataset(tmp_path)[0]
    assert frame.classes.tolist() == [0, 0, 1, 0]
    assert frame.meta["dropped_zero_size"] == 1
    for got, (length, w, h, x, y, z, yaw) in zip(frame.boxes, truth, strict=True):
        np.testing.assert_allclose(got[:6], [x, y, z, length, w, h], atol=1e-9)
        assert abs(_wrap(got[6] - yaw)) < 1e-9


def test_offset_falls_back_to_calib_relative_error(tmp_path):
    build_fixture(tmp_path)
    info = json.loads((tmp_path / "cooperative/data_info.json").read_text())
    del info[0]["system_error_offset"]
    _json(tmp_path / "cooperative/data_info.json", info)
    frame = DAIRV2XCDataset(tmp_path)[0]
    np.testing.assert_allclose(
        frame.agents[1].pose @ [2, 0, 0, 1], [157.0, 219.0, 6.0, 1.0], atol=1e-12
    )


def test_split_file(tmp_path):
    build_fixture(tmp_path)
    split = {"train": ["015344", "000002"], "val": ["000001"], "ints": [15344], "none": []}
    _json(tmp_path / "split.json", {"cooperative_split": split})
    assert len(DAIRV2XCDataset(tmp_path, split="train", split_file="split.json")) == 1
    # a split none of whose ids is a frame here gave 0 frames without a word (an empty run)
    for name, shown in [("val", "'000001'"), ("ints", "'15344'"), ("none", "0 vehicle")]:
        with pytest.raises(
            ValueError, match=rf"split.json: field '{name}' names .*{shown}.*'015344'"
        ):
            DAIRV2XCDataset(tmp_path, split=name, split_file="split.json")
    with pytest.raises(ValueError, match="split_file"):
        DAIRV2XCDataset(tmp_path, split="train")


def _rigid(yaw: float, t) -> np.ndarray:
    pose = np.eye(4)
    pose[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    pose[:3, 3] = t
    return pose


@pytest.mark.parametrize("pcd_data", ["binary", "binary_compressed"])
def test_write_read_round_trip(tmp_path, pcd_data):
    from v2x.datasets import AgentObservation, CoopFrame

    rng = np.random.default_rng(5)
    frames = []
    for i in range(3):
        points = rng.normal(scale=10, size=(60, 4))
        points[:, 3] = rng.integers(0, 256, 60) / 255.0
        agents = [
            AgentObservation("uav_1", "uav", _rigid(0.3, [0, 0, 40]), points[:5], 0.1 * i),
            AgentObservation(
                "ego", "vehicle", _rigid(0.4 + 0.1 * i, [3.0 * i, 2.0, 1.7]), points, 1e4 + 0.1 * i
            ),
            AgentObservation(
                "rsu_far", "rsu", _rigid(0.0, [500.0, 0.0, 6.0]), points[:3], 1e4 + 0.1 * i
            ),
            AgentObservation(
                "rsu_near", "rsu", _rigid(-2.0, [20.0, 5.0, 6.5]), points[:30], 1e4 + 0.1 * i + 0.03
            ),
        ]
        boxes = np.c_[
            rng.normal(scale=20, size=(4, 3)), rng.uniform(0.5, 8, (4, 3)), rng.uniform(-3, 3, 4)
        ]
        visibility = np.array([[1, 1, 1, 1], [3, 0, 5, 0], [0, 0, 0, 0], [0, 2, 2, 0]])
        frames.append(
            CoopFrame(
                f"seq/{i}",
                agents,
                boxes,
                [0, 1, 2, 3],
                [7, -1, 9, 2**33],
                visibility,
                ego_index=1,
                meta={"system_error_offset": {"delta_x": 0.3 * i, "delta_y": -0.2}},
            )
        )
    summary = write_dair_v2x_c(
        frames, tmp_path, lidar_to_novatel=_rigid(0.02, [0.9, 0.1, 1.5]), pcd_data=pcd_data
    )
    assert summary["pairs"] == 3 and summary["agents_not_written"] == 6
    ds = DAIRV2XCDataset(tmp_path)
    for expected, got in zip(frames, ds):
        for a, b in zip((expected.agents[1], expected.agents[3]), got.agents):
            np.testing.assert_allclose(b.pose, a.pose, atol=1e-9)
            np.testing.assert_allclose(b.points, a.points, atol=2e-6)
            assert b.timestamp == pytest.approx(a.timestamp, abs=1e-6)
        np.testing.assert_allclose(got.boxes[:, :6], expected.boxes[:, :6], atol=1e-9)
        np.testing.assert_allclose(_wrap(got.boxes[:, 6] - expected.boxes[:, 6]), 0, atol=1e-9)
        assert got.classes.tolist() == [0, 1, 2, 3] and got.track_ids.tolist() == [7, -1, 9, 2**33]
    # side labels: what each side sees (visibility > 0), in its own frame, mapped back to world.
    veh = DAIRV2XCDataset(tmp_path, labels="vehicle")[0]
    inf = DAIRV2XCDataset(tmp_path, labels="infrastructure")[0]
    np.testing.assert_allclose(veh.boxes[:, :6], frames[0].boxes[[0, 2], :6], atol=1e-9)
    np.testing.assert_allclose(inf.boxes[:, :6], frames[0].boxes[[1, 2], :6], atol=1e-9)


def test_bad_inputs_name_file_and_field(tmp_path):
    build_fixture(tmp_path)
    ds = DAIRV2XCDataset(tmp_path)
    pcd = tmp_path / "vehicle-side/velodyne/015344.pcd"
    original = pcd.read_bytes()
    pcd.write_bytes(original[:-3])
    with pytest.raises(ValueError, match=r"015344\.pcd: field 'DATA' \(binary\) is truncated"):
        ds[0]
    pcd.unlink()
    with pytest.raises(ValueError, match=r"015344\.pcd: file not found"):
        ds[0]
    pcd.write_bytes(original)

    label = tmp_path / "cooperative/label_world/015344.json"
    objects = json.loads(label.read_text())
    del objects[1]["3d_dimensions"]["l"]
    label.write_text(json.dumps(objects))
    with pytest.raises(
        ValueError, match=r"015344\.json \[object 1\] 3d_dimensions: field 'l' is missing"
    ):
        ds[0]
    del objects[1]["3d_dimensions"]
    label.write_text(json.dumps(objects))
    with pytest.raises(
        ValueError, match=r"015344\.json \[object 1\]: field '3d_dimensions' is missing"
    ):
        ds[0]
    objects[1]["3d_dimensions"] = {"h": 1, "w": 1, "l": "wide"}
    label.write_text(json.dumps(objects))
    with pytest.raises(ValueError, match=r"\[object 1\]: field '3d_dimensions.l' must be a number"):
        ds[0]

    calib = tmp_path / "vehicle-side/calib/novatel_to_world/015344.json"
    calib.write_text(
        json.dumps(
            {"rotation": [[1.1, 0, 0], [0, 1, 0], [0, 0, 1]], "translation": [[0], [0], [0]]}
        )
    )
    with pytest.raises(
        ValueError, match=r"novatel_to_world/015344\.json: field 'rotation' is not rigid"
    ):
        ds[0]
    calib.unlink()
    with pytest.raises(ValueError, match=r"novatel_to_world/015344\.json: file not found"):
        ds[0]
    shutil.rmtree(tmp_path / "cooperative")
    with pytest.raises(
        ValueError,
        match=rf"^DAIR-V2X-C: {tmp_path} has no cooperative/data_info\.json; expected the "
        r"release's folder \(cooperative/, vehicle-side/, infrastructure-side/",
    ):
        DAIRV2XCDataset(tmp_path)


def test_export_synthetic_frames_round_trip(tmp_path):
    from v2x.datasets.export import export_frames
    from v2x.datasets.synthetic import generate_sequence

    town = {
        "num_vehicle_agents": 2,
        "vehicle_lidar": {"preset": "vlp16", "columns": 128},
        "rsu_lidar": {"preset": "vlp16", "columns": 128},
        "uav_lidar": {"preset": "uav_down", "beams": 8, "columns": 64},
    }
    frames = list(generate_sequence(town, seed=1, num_frames=2))
    summary = export_frames(frames, tmp_path, "dair_v2x")
    assert summary["pairs"] == 2
    for expected, got in zip(frames, DAIRV2XCDataset(tmp_path)):
        rsu = next(a for a in expected.agents if a.kind == "rsu")
        for a, b in zip((expected.ego, rsu), got.agents):
            np.testing.assert_allclose(b.pose, a.pose, atol=1e-9)
            np.testing.assert_allclose(b.points, a.points, atol=2e-6)
        np.testing.assert_allclose(got.boxes[:, :6], expected.boxes[:, :6], atol=1e-9)
        np.testing.assert_allclose(_wrap(got.boxes[:, 6] - expected.boxes[:, 6]), 0, atol=1e-9)
        np.testing.assert_array_equal(got.classes, expected.classes)
        np.testing.assert_array_equal(got.track_ids, expected.track_ids)


def test_hydra_config_builds_the_reader(tmp_path):
    from importlib.resources import files

    from omegaconf import OmegaConf

    cfg = OmegaConf.load(str(files("v2x.conf") / "dataset" / "dair_v2x.yaml"))
    kwargs = OmegaConf.to_container(cfg, resolve=True)
    assert kwargs.pop("name") == "dair_v2x"
    build_fixture(tmp_path)
    kwargs["root"] = str(tmp_path)
    frame = DAIRV2XCDataset(**kwargs)[0]
    np.testing.assert_allclose(frame.agents[0].points[:, 3], [0.2, 1.0], atol=1e-7)  # 0-255 → 0-1


def test_a_vehicle_lidar_far_from_world_zero_is_said_once(tmp_path, caplog):
    """The fixture's vehicle LiDAR is at world z 11.5 m (novatel z 10 + lidar z 1.5): with the
    default ground_z_m = 0 every point would be 9-13 m 'high' and outside the default pillars'
    heights (-1..5 m), dropped without a word. One warning per dataset says so; a LiDAR near
    world z = 0 says nothing."""
    import json
    import logging

    build_fixture(tmp_path)
    dataset = DAIRV2XCDataset(tmp_path)
    with caplog.at_level(logging.WARNING, logger="v2x.datasets.dair"):
        dataset[0]
        dataset[0]
    said = [r.getMessage() for r in caplog.records if r.name == "v2x.datasets.dair"]
    assert len(said) == 1 and "the vehicle LiDAR is at world z = 11.50 m" in said[0]
    assert "model.grid.ground_z_m" in said[0]
    calib = tmp_path / "vehicle-side/calib/novatel_to_world/015344.json"
    data = json.loads(calib.read_text())
    data["translation"] = [[100.0], [200.0], [0.3]]  # LiDAR at z 1.8
    calib.write_text(json.dumps(data))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="v2x.datasets.dair"):
        DAIRV2XCDataset(tmp_path)[0]
    assert not [r for r in caplog.records if r.name == "v2x.datasets.dair"]
