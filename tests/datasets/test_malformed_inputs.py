"""Malformed real-data inputs: each gets one ``ValueError`` naming the file, the field and the value.

Every case copies a small dataset written by our own writers (DAIR-V2X-C, V2X-Sim 2.0, the
generated store) or a hand-written PCD, breaks one thing, and checks the reader's message.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from v2x.datasets.dair_reader import DAIRV2XCDataset
from v2x.datasets.dair_writer import write_dair_v2x_c
from v2x.datasets.frame import AgentObservation, CoopFrame
from v2x.datasets.pcd import read_pcd_xyzi
from v2x.datasets.store import load_split, read_manifest, write_frame, write_manifest
from v2x.datasets.v2xsim_reader import V2XSimDataset
from v2x.datasets.v2xsim_writer import write_v2xsim

V = "vehicle-side"
I = "infrastructure-side"  # noqa: E741


def _pose(x: float, y: float, yaw: float = 0.0) -> np.ndarray:
    pose = np.eye(4)
    c, s = np.cos(yaw), np.sin(yaw)
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[:3, 3] = [x, y, 1.5]
    return pose


def _frames(n: int = 2) -> list[CoopFrame]:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        agents = [
            AgentObservation(
                "veh_0", "vehicle", _pose(i, 0, 0.3), rng.normal(size=(20, 4)), 0.1 * i
            ),
            AgentObservation("rsu_0", "rsu", _pose(10, 5, 1.0), rng.normal(size=(30, 4)), 0.1 * i),
        ]
        boxes = [[5 + i, 1, 0.8, 4, 2, 1.6, 0.2], [8, -3, 0.9, 0.8, 0.6, 1.7, -1.0]]
        frames.append(
            CoopFrame(f"town/{i:04d}", agents, boxes, [0, 2], [3, 4], [[5, 0], [2, 1]], 0, {})
        )
    return frames


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("written")
    write_dair_v2x_c(_frames(), base / "dair")
    write_v2xsim(_frames(), base / "v2xsim")
    store = base / "store"
    (store / "train").mkdir(parents=True)
    sha = write_frame(store / "train/a_0.npz", _frames(1)[0])
    entry = {"file": "train/a_0.npz", "frame_id": "town/0000", "sha256": sha}
    write_manifest(store, {"format": "v2x-coop-store", "version": 1, "splits": {"train": [entry]}})
    return {"dair": base / "dair", "v2xsim": base / "v2xsim", "store": store}


def _copy(written: dict[str, Path], kind: str, tmp_path: Path) -> Path:
    root = tmp_path / kind
    shutil.copytree(written[kind], root)
    return root


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _read_dair(root: Path, **kw) -> None:
    ds = DAIRV2XCDataset(root, **kw)
    for i in range(len(ds)):
        ds[i]


def _read_v2xsim(root: Path) -> None:
    ds = V2XSimDataset(root)
    for i in range(len(ds)):
        ds[i]


def test_written_datasets_read_back(written, tmp_path):
    """The unbroken copies read: every failure below comes from the one change it makes."""
    assert len(DAIRV2XCDataset(_copy(written, "dair", tmp_path))) == 2
    assert len(V2XSimDataset(_copy(written, "v2xsim", tmp_path))) == 2
    assert len(load_split(written["store"], "train")) == 1


# ------------------------------------------------------------------------------------------- PCD

HEADER = (
    "VERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT {count}\n"
    "WIDTH {width}\nHEIGHT 1\nPOINTS {points}\nDATA {data}\n"
)


def _pcd(path: Path, rows: int = 3, *, count="1 1 1 1", width=None, points=None, body=None):
    header = HEADER.format(
        count=count,
        width=rows if width is None else width,
        points=rows if points is None else points,
        data="binary",
    )
    data = b"".join(struct.pack("<4f", k, k, k, 9) for k in range(rows)) if body is None else body
    path.write_bytes(header.encode() + data)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"body": struct.pack("<4f", 0, 0, 0, 0) * 4},
            r"field 'DATA' \(binary\) holds more points than the header promises: 64 bytes, expected 48",
        ),
        (
            {"points": 2, "body": struct.pack("<4f", 0, 0, 0, 0) * 2},
            r"field 'POINTS' is 2 but WIDTH x HEIGHT is 3 x 1 = 3",
        ),
        ({"width": 5}, r"field 'POINTS' is 3 but WIDTH x HEIGHT is 5 x 1 = 5"),
        ({"count": "0 1 1 1"}, r"field 'COUNT' of 'x' is 0; expected an integer >= 1"),
        ({"count": "-1 1 1 1"}, r"field 'COUNT' of 'x' is -1; expected an integer >= 1"),
        ({"count": "2 1 1 1", "body": b"\0" * 60}, r"field 'COUNT' of 'x' is 2; expected 1"),
    ],
)
def test_pcd_header_and_data_disagreements(tmp_path, kwargs, message):
    path = tmp_path / "cloud.pcd"
    _pcd(path, **kwargs)
    with pytest.raises(ValueError, match=r"cloud\.pcd: " + message):
        read_pcd_xyzi(path)


def test_pcd_ascii_names_the_bad_point_and_extra_lines(tmp_path):
    path = tmp_path / "cloud.pcd"
    header = HEADER.format(count="1 1 1 1", width=2, points=2, data="ascii")
    path.write_text(header + "1 2 3 4\n1 2 oops 4\n")
    with pytest.raises(
        ValueError,
        match=r"cloud\.pcd: field 'DATA' \(ascii\) point 1 \('1 2 oops 4'\) is not 4 numbers",
    ):
        read_pcd_xyzi(path)
    path.write_text(header + "1 2 3 4\n1 2 3 4\n5 6 7 8\n")
    with pytest.raises(
        ValueError,
        match=r"cloud\.pcd: field 'DATA' \(ascii\) is longer than the header promises: 3 lines, expected POINTS 2",
    ):
        read_pcd_xyzi(path)


# ------------------------------------------------------------------------------------ DAIR-V2X-C

PAIRS = "cooperative/data_info.json"
LABEL = "cooperative/label_world/000000.json"
N2W = f"{V}/calib/novatel_to_world/000000.json"


def _set_pair(index, key, value):
    return lambda d: d[index].__setitem__(key, value)


def _label_obj(change):
    return lambda objects: change(objects[0])


DAIR_CASES = [
    # (file, change, regex on the message)
    (
        PAIRS,
        lambda d: d.clear(),
        r"cooperative/data_info\.json: holds no frame pairs \(an empty list\)",
    ),
    (
        PAIRS,
        _set_pair(1, "vehicle_pointcloud_path", None),
        r"data_info\.json \[1\]: field 'vehicle_pointcloud_path' must be a non-empty path string, got None",
    ),
    (
        PAIRS,
        _set_pair(1, "vehicle_pointcloud_path", 5),
        r"data_info\.json \[1\]: field 'vehicle_pointcloud_path' must be a non-empty path string, got 5",
    ),
    (
        PAIRS,
        _set_pair(0, "infrastructure_pointcloud_path", ""),
        r"data_info\.json \[0\]: field 'infrastructure_pointcloud_path' must be a non-empty path string, got ''",
    ),
    (
        PAIRS,
        lambda d: d.append(d[0]),
        r"data_info\.json \[2\]: field 'vehicle_pointcloud_path' repeats vehicle frame '000000' of record \[0\]",
    ),
    (
        PAIRS,
        _set_pair(0, "system_error_offset", [1.0, 2.0]),
        r"data_info\.json \[vehicle 000000\]: field 'system_error_offset' must be an object .*got \[1\.0, 2\.0\]",
    ),
    (
        f"{V}/data_info.json",
        lambda d: d[1].__setitem__("pointcloud_path", d[0]["pointcloud_path"]),
        r"vehicle-side/data_info\.json \[1\]: field 'pointcloud_path' repeats frame '000000' of record \[0\]",
    ),
    (
        f"{V}/data_info.json",
        lambda d: d[0].__setitem__("pointcloud_path", None),
        r"vehicle-side/data_info\.json \[0\]: field 'pointcloud_path' must be a non-empty path string, got None",
    ),
    (
        f"{I}/data_info.json",
        lambda d: d.pop(1),
        r"infrastructure-side/data_info\.json \[000001\]: frame '000001' is missing",
    ),
    (
        N2W,
        lambda c: c["rotation"][0].__setitem__(1, float("nan")),
        r"novatel_to_world/000000\.json: field 'rotation' must be finite, got \[\[.*nan",
    ),
    (
        N2W,
        lambda c: c["translation"].__setitem__(0, [float("nan")]),
        r"novatel_to_world/000000\.json: field 'translation' must be finite, got \[\[nan\]",
    ),
    (
        N2W,
        lambda c: c.__setitem__("rotation", [[1, 0], [0, 1]]),
        r"novatel_to_world/000000\.json: field 'rotation' must be a 3x3 matrix of numbers, got \[\[1, 0\], \[0, 1\]\]",
    ),
    (
        LABEL,
        _label_obj(lambda o: o["3d_dimensions"].__setitem__("l", -4.0)),
        r"label_world/000000\.json \[object 0\]: field '3d_dimensions' must not be negative, got \{h: 1\.6, w: 2, l: -4\}",
    ),
    (
        LABEL,
        _label_obj(lambda o: o.__setitem__("type", None)),
        r"label_world/000000\.json \[object 0\]: field 'type' must be a class name string .*got None",
    ),
    (
        LABEL,
        _label_obj(lambda o: o["world_8_points"][2].__setitem__(0, float("nan"))),
        r"label_world/000000\.json \[object 0\]: field 'world_8_points' must be finite, got \[\[.*nan",
    ),
    (
        LABEL,
        _label_obj(lambda o: o.__setitem__("world_8_points", [[1, 2, 3]] * 8)),
        r"label_world/000000\.json \[object 0\]: field 'world_8_points' has no heading",
    ),
]


@pytest.mark.parametrize(("rel", "change", "message"), DAIR_CASES)
def test_dair_bad_input_names_file_field_and_value(written, tmp_path, rel, change, message):
    root = _copy(written, "dair", tmp_path)
    _edit_json(root / rel, change)
    with pytest.raises(ValueError, match=message):
        _read_dair(root)


def test_dair_side_label_negative_size_and_zero_size_still_dropped(written, tmp_path):
    root = _copy(written, "dair", tmp_path)
    label = root / f"{V}/label/lidar/000000.json"
    _edit_json(label, lambda objects: objects[0]["3d_dimensions"].__setitem__("w", 0))
    frame = DAIRV2XCDataset(root, labels="vehicle")[0]  # zero size: dropped and counted, as before
    assert frame.meta["dropped_zero_size"] == 1
    _edit_json(label, lambda objects: objects[0]["3d_dimensions"].__setitem__("w", -2))
    with pytest.raises(
        ValueError,
        match=r"label/lidar/000000\.json \[object 0\]: field '3d_dimensions' must not be negative, got \{h: 1\.6, w: -2, l: 4\}",
    ):
        DAIRV2XCDataset(root, labels="vehicle")[0]


def test_dair_split_must_be_a_list(written, tmp_path):
    root = _copy(written, "dair", tmp_path)
    (root / "split.json").write_text(json.dumps({"train": "000000"}))
    with pytest.raises(
        ValueError,
        match=r"split\.json: field 'train' must be a list of vehicle frame ids, got '000000'",
    ):
        DAIRV2XCDataset(root, split="train", split_file="split.json")


def test_a_binary_pcd_with_less_than_a_point_after_its_data_still_reads(tmp_path):
    """(A writer's trailing newline or padding is not a point the header left out.)"""
    from v2x.datasets.pcd import read_pcd_xyzi

    path = tmp_path / "cloud.pcd"
    rows = b"".join(struct.pack("<4f", k, k, k, 9) for k in range(3))
    _pcd(path, rows=3, body=rows + b"\n")
    points, _ = read_pcd_xyzi(path)
    assert points[:, 0].tolist() == [0.0, 1.0, 2.0]


def test_dair_pcd_with_trailing_bytes_names_the_cloud(written, tmp_path):
    root = _copy(written, "dair", tmp_path)
    pcd = root / f"{V}/velodyne/000001.pcd"
    pcd.write_bytes(pcd.read_bytes() + b"\0" * 16)
    with pytest.raises(
        ValueError,
        match=r"velodyne/000001\.pcd: field 'DATA' \(binary\) holds more points than the header promises",
    ):
        _read_dair(root)


# ---------------------------------------------------------------------------------- V2X-Sim 2.0


def _table(root: Path, name: str) -> Path:
    return root / "v2.0" / f"{name}.json"


def _first(change):
    return lambda rows: change(rows[0])


V2XSIM_CASES = [
    ("scene", lambda rows: rows.clear(), r"scene\.json: holds no scenes \(an empty list\)"),
    (
        "sample_annotation",
        lambda rows: rows.append(dict(rows[0])),
        r"sample_annotation\.json: record 4 field 'token' '[0-9a-f]+' repeats record 0",
    ),
    (
        "ego_pose",
        lambda rows: rows.append(dict(rows[0], translation=[9, 9, 9])),
        r"ego_pose\.json: record 4 field 'token' '[0-9a-f]+' repeats record 0",
    ),
    (
        "sample",
        _first(lambda r: r.__setitem__("token", ["a"])),
        r"sample\.json: record 0 field 'token' must be a string, got \['a'\]",
    ),
    (
        "sample_annotation",
        _first(lambda r: r.__setitem__("sample_token", "deadbeef")),
        r"sample_annotation\.json \[[0-9a-f]+\]: field 'sample_token' 'deadbeef' is not in sample\.json",
    ),
    (
        "sample_data",
        _first(lambda r: r.__setitem__("sample_token", "deadbeef")),
        r"sample_data\.json \[[0-9a-f]+\]: field 'sample_token' 'deadbeef' is not in sample\.json",
    ),
    (
        "sample_data",
        lambda rows: rows.append(dict(rows[0], token="ab" * 16)),
        r"sample_data\.json \[(ab)+\]: sample '[0-9a-f]+' already has key-frame LIDAR_TOP_id_\d record",
    ),
    (
        "sample_data",
        _first(lambda r: r.__setitem__("timestamp", "noon")),
        r"sample_data\.json \[[0-9a-f]+\]: field 'timestamp' must be a number \(µs\), got 'noon'",
    ),
    (
        "sample_data",
        _first(lambda r: r.__setitem__("timestamp", None)),
        r"sample_data\.json \[[0-9a-f]+\]: field 'timestamp' must be a number \(µs\), got None",
    ),
    (
        "sample_data",
        _first(lambda r: r.__setitem__("filename", None)),
        r"sample_data\.json \[[0-9a-f]+\]: field 'filename' must be a non-empty path string, got None",
    ),
    (
        "sample_data",
        _first(lambda r: r.__setitem__("filename", "sweeps")),
        r"v2xsim/sweeps: is a folder \(expected a \.pcd\.bin point cloud\)",
    ),
    (
        "category",
        _first(lambda r: r.__setitem__("name", None)),
        r"category\.json \[[0-9a-f]+\]: field 'name' must be a category name string .*got None",
    ),
    (
        "sample_annotation",
        _first(lambda r: r.__setitem__("size", [float("nan"), 2, 3])),
        r"sample_annotation\.json \[[0-9a-f]+\]: field 'size' must be finite \[w, l, h\], got \[nan, 2, 3\]",
    ),
    (
        "sample_annotation",
        _first(lambda r: r.__setitem__("attribute_tokens", ["deadbeef"])),
        r"sample_annotation\.json \[[0-9a-f]+\]: field 'attribute_tokens' holds 'deadbeef', which is not in attribute\.json",
    ),
    (
        "sample_annotation",
        _first(lambda r: r["translation"].__setitem__(0, float("nan"))),
        r"sample_annotation\.json \[[0-9a-f]+\]: field 'translation' must be finite, got \[nan, ",
    ),
    (
        "ego_pose",
        _first(lambda r: r["rotation"].__setitem__(0, float("nan"))),
        r"ego_pose\.json \[[0-9a-f]+\]: field 'rotation' must be 4 finite numbers \[w, x, y, z\], got \[nan, ",
    ),
    (
        "v2x_frames",
        _first(lambda r: r["annotations"].pop(0)),
        r"v2x_frames\.json \[[0-9a-f]+\]: field 'annotations' must list each of the sample's 2 sample_annotation tokens once; got 1 \(1 missing",
    ),
    (
        "v2x_frames",
        _first(lambda r: r["visibility"].__setitem__("LIDAR_TOP_id_1", [1])),
        r"v2x_frames\.json \[[0-9a-f]+\]: field 'visibility\.LIDAR_TOP_id_1' must be a list of 2 counts .*got 1",
    ),
    (
        "v2x_frames",
        _first(lambda r: r.__setitem__("meta", [1, 2])),
        r"v2x_frames\.json \[[0-9a-f]+\]: field 'meta' must be an object, got \[1, 2\]",
    ),
    (
        "v2x_frames",
        _first(lambda r: r.__setitem__("agents", [1, 2])),
        r"v2x_frames\.json \[[0-9a-f]+\]: field 'agents' must be an object .*got \[1, 2\]",
    ),
    (
        "v2x_frames",
        _first(lambda r: r.__setitem__("ego_channel", "x")),
        r"v2x_frames\.json \[[0-9a-f]+\]: field 'ego_channel' must be an integer .*got 'x'",
    ),
    (
        "v2x_frames",
        _first(lambda r: r.__setitem__("token", "deadbeef")),
        r"v2x_frames\.json \[deadbeef\]: field 'token' 'deadbeef' is not in sample\.json",
    ),
]


@pytest.mark.parametrize(("table", "change", "message"), V2XSIM_CASES)
def test_v2xsim_bad_input_names_file_field_and_value(written, tmp_path, table, change, message):
    root = _copy(written, "v2xsim", tmp_path)
    _edit_json(_table(root, table), change)
    with pytest.raises(ValueError, match=message):
        _read_v2xsim(root)


def test_v2xsim_dangling_ego_pose_names_the_record_once(written, tmp_path):
    root = _copy(written, "v2xsim", tmp_path)
    _edit_json(_table(root, "sample_data"), _first(lambda r: r.__setitem__("ego_pose_token", "x")))
    with pytest.raises(ValueError) as info:
        _read_v2xsim(root)
    message = str(info.value)
    assert message.count("sample_data.json") == 1
    assert (
        "(LIDAR_TOP_id_" in message
        and "field 'ego_pose_token' 'x' is not in ego_pose.json" in message
    )


def test_v2xsim_pcd_bin_with_a_partial_float(written, tmp_path):
    root = _copy(written, "v2xsim", tmp_path)
    name = json.loads(_table(root, "sample_data").read_text())[0]["filename"]
    cloud = root / name
    cloud.write_bytes(cloud.read_bytes() + b"abc")
    with pytest.raises(
        ValueError,
        match=rf"{Path(name).name}: field 'data' is truncated or malformed: \d+ bytes is not a whole number of float32 values",
    ):
        _read_v2xsim(root)


# ----------------------------------------------------------------------------------------- store


def _edit_npz(root: Path, **arrays) -> None:
    path = root / "train/a_0.npz"
    with np.load(path) as data:
        content = {k: data[k] for k in data.files}
    content.update(arrays)
    np.savez(path, **content)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"ego_index": np.array([0, 1])},
            r"field 'ego_index' must be a single integer, got shape \(2,\)",
        ),
        ({"ego_index": np.array("x")}, r"field 'ego_index' must hold numbers, got dtype <U1"),
        (
            {"timestamps": np.array(["a", "b"])},
            r"field 'timestamps' must hold numbers, got dtype <U1",
        ),
        (
            {"point_counts": np.array([19.5, 30.5])},
            r"field 'point_counts' must hold integers, got dtype float64",
        ),
        (
            {"frame_id": np.array(["a", "b"])},
            r"field 'frame_id' must be a single string, got array\(\['a', 'b'\]",
        ),
        (
            {"meta_json": np.array("[1, 2]")},
            r"field 'meta_json' must hold a JSON object, got list \[1, 2\]",
        ),
    ],
)
def test_store_frame_fields_name_file_field_and_value(written, tmp_path, arrays, message):
    root = _copy(written, "store", tmp_path)
    _edit_npz(root, **arrays)
    with pytest.raises(ValueError, match=r"a_0\.npz: " + message):
        load_split(root, "train", verify=False)[0]


def test_store_manifest_that_is_not_an_object(written, tmp_path):
    root = _copy(written, "store", tmp_path)
    (root / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"manifest\.json: must hold a JSON object .*got list"):
        read_manifest(root)


def test_dair_repeats_the_read_frames_do_not_use_are_taken(written, tmp_path):
    """A release's stray repeat refuses only the frames it makes ambiguous: a repeated vehicle
    frame outside the split, an exact repeat of a side record, and a side frame no pair uses
    claimed by two different records all leave the split's frames readable, as before."""
    root = _copy(written, "dair", tmp_path)
    _edit_json(root / PAIRS, lambda d: d.append(d[1]))  # vehicle frame 000001 twice
    (root / "split.json").write_text(json.dumps({"train": ["000000"]}))
    _edit_json(root / f"{V}/data_info.json", lambda d: d.append(dict(d[0])))  # exact repeat
    _edit_json(
        root / f"{I}/data_info.json",
        lambda d: d.append(dict(d[0], pointcloud_path="velodyne/999999.pcd")),
    )
    _edit_json(
        root / f"{I}/data_info.json",
        lambda d: d.append(dict(d[0], pointcloud_path="velodyne/999999.pcd", batch_id="x")),
    )
    ds = DAIRV2XCDataset(root, split="train", split_file="split.json")
    assert len(ds) == 1 and ds[0].agents[0].points.shape[0] > 0
    with pytest.raises(ValueError, match=r"repeats vehicle frame '000001' of record \[1\]"):
        DAIRV2XCDataset(root)  # every pair: the repeat is read
