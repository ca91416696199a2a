"""Hand-built V2X-Sim 2.0 and DAIR-V2X-C datasets with known sensing times (asynchrony tests).

Both are written in the published formats (nuScenes JSON tables + ``.pcd.bin``; DAIR-V2X-C's
``data_info.json`` files, calibration JSON, binary PCD, world-frame cooperative labels). Every
scan's points carry an intensity that names the scan, so a test can tell which scan was served.
Imported by file path (``load``) from the tests that use it.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path

import numpy as np

S2 = math.sqrt(0.5)

# ------------------------------------------------------------------------------ V2X-Sim 2.0

#: Sample times (µs): 5 Hz, one scene of four samples.
V2XSIM_SAMPLE_US = [1_000_000, 1_200_000, 1_400_000, 1_600_000]
#: The RSU (LIDAR_TOP_id_0) scans 30 ms before each sample; the vehicles at the sample time.
V2XSIM_RSU_LEAD_US = 30_000
#: A non-key-frame sweep of LIDAR_TOP_id_2 at 1.5 s (ignored: only key frames are served).
V2XSIM_SWEEP_US = 1_500_000


def _tok(*parts: object) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def v2xsim_ego_pose(k: int, i: int) -> tuple[list[float], list[float]]:
    """``(rotation [w, x, y, z], translation)`` of channel ``k``'s ego at sample ``i``: the RSU
    stands at (20, 20, 0); the ego vehicle (id_1) drives +x at 10 m/s from (10, 0, 0); id_2
    drives +x at 15 m/s from (30, 5, 0), turned +90° about z at sample 1 only."""
    if k == 0:
        return [1.0, 0.0, 0.0, 0.0], [20.0, 20.0, 0.0]
    if k == 1:
        return [1.0, 0.0, 0.0, 0.0], [10.0 + 2.0 * i, 0.0, 0.0]
    rotation = [S2, 0.0, 0.0, S2] if i == 1 else [1.0, 0.0, 0.0, 0.0]
    return rotation, [30.0 + 3.0 * i, 5.0, 0.0]


def v2xsim_intensity(k: int, i: int) -> float:
    """Intensity of the one point of channel ``k``'s scan at sample ``i`` (names the scan)."""
    return round(0.1 * k + 0.01 * i, 4)


def v2xsim_car_centre(i: int) -> list[float]:
    """The annotated car's centre at sample ``i`` (world frame)."""
    return [40.0 + 5.0 * i, 10.0, 1.0]


def build_v2xsim(root: Path) -> None:
    """One scene (``scene_3``), four samples, three agents (id_0 RSU, id_1 ego, id_2 vehicle)."""
    n = len(V2XSIM_SAMPLE_US)
    samples = [
        {
            "token": _tok("sample", i),
            "timestamp": V2XSIM_SAMPLE_US[i],
            "prev": _tok("sample", i - 1) if i else "",
            "next": _tok("sample", i + 1) if i < n - 1 else "",
            "scene_token": _tok("scene"),
        }
        for i in range(n)
    ]
    sensors, calibs, ego_poses, sample_data, clouds = [], [], [], [], {}
    for k in range(3):
        sensors.append(
            {"token": _tok("sensor", k), "channel": f"LIDAR_TOP_id_{k}", "modality": "lidar"}
        )
        mount = [0.0, 0.0, 5.0] if k == 0 else [1.0, 0.0, 1.8]
        calibs.append(
            {
                "token": _tok("calib", k),
                "sensor_token": _tok("sensor", k),
                "translation": mount,
                "rotation": [1.0, 0.0, 0.0, 0.0],
                "camera_intrinsic": [],
            }
        )
        for i in range(n):
            stamp = V2XSIM_SAMPLE_US[i] - (V2XSIM_RSU_LEAD_US if k == 0 else 0)
            rotation, translation = v2xsim_ego_pose(k, i)
            ego_poses.append(
                {
                    "token": _tok("ego", k, i),
                    "timestamp": stamp,
                    "rotation": rotation,
                    "translation": translation,
                }
            )
            filename = f"sweeps/LIDAR_TOP_id_{k}/scene_3_{i:06d}.pcd.bin"
            sample_data.append(
                {
                    "token": _tok("sd", k, i),
                    "sample_token": _tok("sample", i),
                    "ego_pose_token": _tok("ego", k, i),
                    "calibrated_sensor_token": _tok("calib", k),
                    "timestamp": stamp,
                    "fileformat": "pcd",
                    "is_key_frame": True,
                    "height": 0,
                    "width": 0,
                    "filename": filename,
                    "prev": _tok("sd", k, i - 1) if i else "",
                    "next": _tok("sd", k, i + 1) if i < n - 1 else "",
                }
            )
            clouds[filename] = [[1.0, 0.0, 0.0, v2xsim_intensity(k, i), 0.0]]
    ego_poses.append(
        {
            "token": _tok("ego", "sweep"),
            "timestamp": V2XSIM_SWEEP_US,
            "rotation": [1.0, 0.0, 0.0, 0.0],
            "translation": [0.0, 0.0, 0.0],
        }
    )
    sample_data.append(
        {
            "token": _tok("sd", "sweep"),
            "sample_token": _tok("sample", 2),
            "ego_pose_token": _tok("ego", "sweep"),
            "calibrated_sensor_token": _tok("calib", 2),
            "timestamp": V2XSIM_SWEEP_US,
            "fileformat": "pcd",
            "is_key_frame": False,
            "height": 0,
            "width": 0,
            "filename": "sweeps/LIDAR_TOP_id_2/not_a_key_frame.pcd.bin",
            "prev": "",
            "next": "",
        }
    )
    clouds["sweeps/LIDAR_TOP_id_2/not_a_key_frame.pcd.bin"] = [[1.0, 0.0, 0.0, 0.99, 0.0]]
    annotations = [
        {
            "token": _tok("ann", i),
            "sample_token": _tok("sample", i),
            "instance_token": _tok("instance"),
            "visibility_token": "4",
            "attribute_tokens": [],
            "translation": v2xsim_car_centre(i),
            "size": [2.0, 4.5, 1.6],
            "rotation": [1.0, 0.0, 0.0, 0.0],
            "prev": _tok("ann", i - 1) if i else "",
            "next": _tok("ann", i + 1) if i < n - 1 else "",
            "num_lidar_pts": 1,
            "num_radar_pts": 0,
        }
        for i in range(n)
    ]
    tables = {
        "scene": [
            {
                "token": _tok("scene"),
                "log_token": _tok("log"),
                "nbr_samples": n,
                "first_sample_token": samples[0]["token"],
                "last_sample_token": samples[-1]["token"],
                "name": "scene_3",
                "description": "",
            }
        ],
        "sample": samples,
        "sample_data": sample_data,
        "ego_pose": ego_poses,
        "calibrated_sensor": calibs,
        "sensor": sensors,
        "sample_annotation": annotations,
        "instance": [
            {
                "token": _tok("instance"),
                "category_token": _tok("category"),
                "nbr_annotations": n,
                "first_annotation_token": annotations[0]["token"],
                "last_annotation_token": annotations[-1]["token"],
            }
        ],
        "category": [{"token": _tok("category"), "name": "vehicle.car", "description": ""}],
    }
    (root / "v2.0").mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (root / "v2.0" / f"{name}.json").write_text(json.dumps(rows))
    for rel, rows in clouds.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.asarray(rows, dtype="<f4").tofile(root / rel)  # float32 × 5: x y z intensity ring


# ------------------------------------------------------------------------------ DAIR-V2X-C

#: A real-sized epoch (µs), so the float64 seconds carry the datasets' rounding.
T0_US = 1_626_155_120_000_000
#: Vehicle frames 000100..000103 at T0 + 0, 100, 200, 300 ms (batch "7").
DAIR_VEH_US = {f"{100 + i:06d}": T0_US + 100_000 * i for i in range(4)}
#: Infrastructure frames 000010..000014 at T0 − 20, 80, 180, 280, 380 ms (batch "7", 10 Hz),
#: and 000099 of another sequence (batch "8") at T0 + 250 ms, never to be served for batch 7.
DAIR_INF_US = {f"{10 + j:06d}": T0_US - 20_000 + 100_000 * j for j in range(5)}
DAIR_OTHER_BATCH = ("000099", T0_US + 250_000)
#: Cooperative pairs (vehicle, infrastructure): the infrastructure scan 20 ms before the
#: vehicle's (000103 ↔ 000013, 000101 ↔ 000011), and 80 ms after it (000102 ↔ 000013).
DAIR_PAIRS = [("000103", "000013"), ("000101", "000011"), ("000102", "000013")]
DAIR_OFFSET_X = 0.5  # the pairs' system_error_offset delta_x (m); the calibs say 9


def dair_inf_translation(frame: str) -> list[float]:
    """``virtuallidar_to_world`` translation written for infrastructure frame ``frame``
    (distinct per frame, so the pose tells which frame's calibration was used)."""
    return [95.0 + (int(frame) % 100), 205.0, 6.0]


def dair_veh_translation(frame: str) -> list[float]:
    """``novatel_to_world`` translation of vehicle frame ``frame`` (it drives +x at 10 m/s)."""
    return [100.0 + (int(frame) - 100), 200.0, 10.0]


def dair_intensity(frame: str) -> float:
    """Stored intensity (0–255) of the one point of a frame's scan (names the frame)."""
    return float(int(frame) % 100)


def _json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def _pcd(path: Path, rows) -> None:
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z intensity\n"
        f"SIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\nWIDTH {len(rows)}\nHEIGHT 1\n"
        f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(rows)}\nDATA binary\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + b"".join(struct.pack("<4f", *r) for r in rows))


def build_dair(root: Path) -> None:
    """DAIR-V2X-C layout with the frames, sequences and pairs above."""
    ident = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    _json(
        root / "cooperative/data_info.json",
        [
            {
                "infrastructure_image_path": f"infrastructure-side/image/{inf}.jpg",
                "infrastructure_pointcloud_path": f"infrastructure-side/velodyne/{inf}.pcd",
                "vehicle_image_path": f"vehicle-side/image/{veh}.jpg",
                "vehicle_pointcloud_path": f"vehicle-side/velodyne/{veh}.pcd",
                "cooperative_label_path": f"cooperative/label_world/{veh}.json",
                "system_error_offset": {"delta_x": str(DAIR_OFFSET_X), "delta_y": ""},
            }
            for veh, inf in DAIR_PAIRS
        ],
    )
    veh_info = []
    for fid, stamp in DAIR_VEH_US.items():
        veh_info.append(
            {
                "image_path": f"image/{fid}.jpg",
                "image_timestamp": str(stamp - 3000),
                "pointcloud_path": f"velodyne/{fid}.pcd",
                "pointcloud_timestamp": str(stamp),
                "label_lidar_std_path": f"label/lidar/{fid}.json",
                "label_camera_std_path": f"label/camera/{fid}.json",
                "calib_lidar_to_camera_path": f"calib/lidar_to_camera/{fid}.json",
                "calib_lidar_to_novatel_path": f"calib/lidar_to_novatel/{fid}.json",
                "calib_novatel_to_world_path": f"calib/novatel_to_world/{fid}.json",
                "calib_camera_intrinsic_path": f"calib/camera_intrinsic/{fid}.json",
                "batch_id": "7",
                "intersection_loc": "Yizhuang10",
                "batch_start_id": "000100",
                "batch_end_id": "000103",
            }
        )
        _json(
            root / f"vehicle-side/calib/lidar_to_novatel/{fid}.json",
            {"transform": {"rotation": ident, "translation": [[0.0], [0.0], [0.0]]}},
        )
        _json(
            root / f"vehicle-side/calib/novatel_to_world/{fid}.json",
            {"rotation": ident, "translation": [[v] for v in dair_veh_translation(fid)]},
        )
        _pcd(root / f"vehicle-side/velodyne/{fid}.pcd", [(1.0, 0.0, 0.0, dair_intensity(fid))])
    inf_info = []
    frames = [(fid, stamp, "7", "000010", "000014") for fid, stamp in DAIR_INF_US.items()]
    frames.append((*DAIR_OTHER_BATCH, "8", "000099", "000099"))
    for fid, stamp, batch, start, end in frames:
        inf_info.append(
            {
                "image_path": f"image/{fid}.jpg",
                "image_timestamp": str(stamp - 3000),
                "pointcloud_path": f"velodyne/{fid}.pcd",
                "pointcloud_timestamp": str(stamp),
                "label_lidar_std_path": f"label/virtuallidar/{fid}.json",
                "label_camera_std_path": f"label/camera/{fid}.json",
                "calib_virtuallidar_to_world_path": f"calib/virtuallidar_to_world/{fid}.json",
                "calib_camera_intrinsic_path": f"calib/camera_intrinsic/{fid}.json",
                "batch_id": batch,
                "intersection_loc": "Yizhuang10",
                "batch_start_id": start,
                "batch_end_id": end,
            }
        )
        _json(
            root / f"infrastructure-side/calib/virtuallidar_to_world/{fid}.json",
            {
                "rotation": ident,
                "translation": [[v] for v in dair_inf_translation(fid)],
                "relative_error": {"delta_x": "9", "delta_y": "9"},
            },
        )
        # a 5 x 5 patch of points 2-4 m ahead (so the scan shows in the ego's BEV grid)
        patch = [
            (2.0 + 0.5 * a, 0.5 * b, -5.0, dair_intensity(fid)) for a in range(5) for b in range(5)
        ]
        _pcd(root / f"infrastructure-side/velodyne/{fid}.pcd", patch)
    _json(root / "vehicle-side/data_info.json", veh_info)
    _json(root / "infrastructure-side/data_info.json", inf_info)
    for veh, _ in DAIR_PAIRS:
        x = dair_veh_translation(veh)[0] + 8.0
        _json(
            root / f"cooperative/label_world/{veh}.json",
            [
                {
                    "type": "Car",
                    "occluded_state": 0,
                    "truncated_state": 0,
                    "2d_box": {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1},
                    "3d_dimensions": {"h": 1.5, "w": 2.0, "l": 4.0},
                    "3d_location": {"x": x, "y": 203.0, "z": 11.0},
                    "rotation": 0.0,
                }
            ],
        )
