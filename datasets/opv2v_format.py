"""The pieces of the OPV2V layout (OpenCDA's recordings, OpenCOOD's reader): poses, boxes, the
point clouds' intensity, the YAML files and the folders.

Layout (``root/<split>/<scenario>/<cav id>/``, one folder per connected agent, named by its
CARLA actor id; V2XSet's roadside units have negative ids): per 10 Hz frame ``<frame>.yaml``
and ``<frame>.pcd`` (``<frame>`` the CARLA frame number, six digits; camera images beside them
are not read). The YAML holds

* ``lidar_pose: [x, y, z, roll, yaw, pitch]``: the LiDAR in the world, metres and degrees, made
  a matrix by OpenCOOD's ``x_to_world`` (``pose_matrix`` here);
* ``vehicles: {actor id: {location, center, angle, extent, speed}}``: the vehicles the agent
  knows of (never itself): a box's centre is ``location + center`` added in world axes (as
  OpenCOOD's ``project_world_objects`` adds them), ``extent`` its half sizes (l/2, w/2, h/2),
  ``angle = [roll, yaw, pitch]`` degrees; the BEV box keeps the yaw (``vehicle_box``);
* other fields (``true_ego_pos``, ``ego_speed``, cameras, ``plan_trajectory``), not read.

The ``.pcd`` files are Open3D's: ``x y z rgb`` with the LiDAR intensity in the red byte (OpenCDA
stores ``[intensity, 0, 0]`` as the colour and OpenCOOD reads ``colors[:, 0]``, i.e. red / 255;
``rgb`` is ``F`` in older Open3D files, its float's bits holding the bytes, and ``U`` in newer);
a file with an ``intensity`` field is read from that (``read_points``).

**Handedness.** CARLA's frames are left-handed (x forward, y right, z up) and OpenCOOD keeps
them as they are. ``CoopFrame`` is right-handed, so every pose, point and box is mirrored
across the x–z plane (``y → −y``, yaws negated; ``MIRROR``): the same scene seen in a mirror,
with every distance, overlap and IoU unchanged, so APs are those of OpenCOOD's frames.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from v2x.datasets.pcd import finite_xyzi, read_pcd, scalar_field

#: ``y → −y``: CARLA's left-handed frames as right-handed ones (``S @ T @ S`` for a pose).
MIRROR = np.diag([1.0, -1.0, 1.0, 1.0])
#: A frame's files: ``<CARLA frame number>.yaml`` and ``.pcd`` (OpenCOOD also skips names with
#: ``additional``; any name that is not a number is skipped here).
FRAME_FILE = re.compile(r"^(\d+)\.yaml$")
#: OpenCOOD's ``COM_RANGE``: agents farther than this from the ego (m, in x–y) are left out.
COMM_RANGE_M = 70.0
#: OpenCOOD's ``max_cav`` default: agents of a scenario beyond this many are not read.
MAX_CAVS = 7
#: What the ground truth does with the ego's own vehicle, listed by the other agents.
EGO_BOX_CHOICES = ("keep", "drop")


def pose_matrix(pose: Any, where: str, field: str = "lidar_pose") -> np.ndarray:
    """``[4, 4]`` float64 sensor → world of ``[x, y, z, roll, yaw, pitch]`` (m, degrees),
    OpenCOOD's ``x_to_world``, in CARLA's left-handed frames (``MIRROR`` makes it
    right-handed)."""
    values = numbers(pose, 6, where, field)
    x, y, z, roll, yaw, pitch = values
    cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    return np.array(
        [
            [cp * cy, cy * sp * sr - sy * cr, -cy * sp * cr - sy * sr, x],
            [sy * cp, sy * sp * sr + cy * cr, -sy * sp * cr + cy * sr, y],
            [sp, -cp * sr, cp * cr, z],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def pose_values(matrix: np.ndarray) -> list[float]:
    """``[x, y, z, roll, yaw, pitch]`` (m, degrees) of a rigid ``pose_matrix``: its inverse."""
    r = matrix[:3, :3]
    pitch = math.asin(max(-1.0, min(1.0, float(r[2, 0]))))
    roll = math.atan2(-float(r[2, 1]), float(r[2, 2]))
    yaw = math.atan2(float(r[1, 0]), float(r[0, 0]))
    x, y, z = (float(v) for v in matrix[:3, 3])
    return [x, y, z, *(math.degrees(a) for a in (roll, yaw, pitch))]


def mirrored(pose: np.ndarray) -> np.ndarray:
    """A pose between two frames, both mirrored (``MIRROR``; its own inverse)."""
    return MIRROR @ pose @ MIRROR


def vehicle_box(entry: Any, where: str) -> np.ndarray:
    """``[7]`` world box (x, y, z, l, w, h, yaw rad) of a ``vehicles`` entry, in CARLA's frame:
    centre ``location + center``, sizes ``2 · extent``, yaw ``angle[1]`` (roll and pitch are
    left out: the evaluation's boxes turn about z only)."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: must be a mapping with location, center, angle and extent")
    location = numbers(_field(entry, "location", where), 3, where, "location")
    center = numbers(_field(entry, "center", where), 3, where, "center")
    angle = numbers(_field(entry, "angle", where), 3, where, "angle")
    extent = numbers(_field(entry, "extent", where), 3, where, "extent")
    if min(extent) < 0:
        raise ValueError(f"{where}: field 'extent' holds half sizes >= 0, got {extent}")
    centre = [a + b for a, b in zip(location, center, strict=True)]
    return np.array([*centre, *(2.0 * e for e in extent), math.radians(angle[1])])


def mirrored_boxes(boxes: np.ndarray) -> np.ndarray:
    """``[M, 7]`` boxes across the x–z plane (``y`` and yaw negated)."""
    out = np.array(boxes, dtype=np.float64).reshape(-1, 7)
    out[:, 1] *= -1.0
    out[:, 6] *= -1.0
    return out


def read_points(path: Path) -> tuple[np.ndarray, int]:
    """``points [N, 4]`` float32 (x, y, z, intensity) of an OPV2V ``.pcd`` in its sensor's
    (CARLA) frame, and the number of rows with a non-finite x, y or z left out. Intensity is
    the ``intensity`` field where there is one, else the ``rgb`` / ``rgba`` field's red byte
    / 255 (what OpenCOOD reads through Open3D)."""
    cloud = read_pcd(path)
    names = " ".join(cloud.fields)
    for name in ("x", "y", "z"):
        if name not in cloud.fields:
            raise ValueError(
                f"{path}: field '{name}' missing from the PCD header FIELDS ({names}); "
                "expected x y z with rgb (Open3D's, OPV2V) or intensity"
            )
    if "intensity" in cloud.fields:
        intensity = scalar_field(cloud, "intensity", path).astype(np.float64)
    else:
        colour_name = next((n for n in ("rgb", "rgba") if n in cloud.fields), None)
        if colour_name is None:
            raise ValueError(
                f"{path}: the PCD header FIELDS ({names}) has neither 'intensity' nor 'rgb'; "
                "expected OPV2V's x y z rgb (intensity in the red byte)"
            )
        colour = scalar_field(cloud, colour_name, path)
        if colour.dtype.itemsize != 4:
            raise ValueError(
                f"{path}: field '{colour_name}' is {colour.dtype.itemsize} bytes per point; expected 4 "
                "(Open3D's packed colour)"
            )
        packed = np.ascontiguousarray(colour).view(np.uint32)  # (F: the float's bits)
        intensity = ((packed >> 16) & 0xFF).astype(np.float64) / 255.0
    return finite_xyzi(cloud, intensity, path)


def load_yaml(path: Path) -> dict:
    """One OPV2V YAML file as a dict; ``ValueError`` naming the file when it is missing or not a
    YAML mapping. Floats without a dot (``1e-3``) read as floats, as OpenCOOD's loader reads
    them; Python-object tags (which no field read here needs) read as ``None``."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found (expected an OPV2V frame's YAML)") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a YAML mapping (lidar_pose, vehicles, ...)")
    return data


def _yaml_loader() -> type:
    """A safe YAML loader with OpenCOOD's float rule, on libyaml's parser where PyYAML has it
    (a 30 kB OPV2V frame file: 10 ms against 150 ms in pure Python)."""
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        pass

    Loader.add_implicit_resolver(  # OpenCOOD's float resolver (YAML 1.1 needs a dot)
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+][0-9]+)?
            |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *_: None)
    return Loader


_Loader = _yaml_loader()


def numbers(value: Any, count: int, where: str, field: str) -> list[float]:
    """``value`` as ``count`` finite floats; ``ValueError`` naming the file and field else."""
    ok = isinstance(value, list | tuple) and len(value) == count
    if ok:
        try:
            out = [float(v) for v in value if not isinstance(v, bool)]
        except (TypeError, ValueError):
            out = []
        ok = len(out) == count and all(math.isfinite(v) for v in out)
    if not ok:
        raise ValueError(f"{where}: field '{field}' must be {count} finite numbers, got {value!r:.200}")
    return out


def _field(entry: Mapping, name: str, where: str) -> Any:
    if name not in entry:
        raise ValueError(f"{where}: field '{name}' is missing")
    return entry[name]


def scenario_agents(folder: Path, max_cavs: int | None) -> list[str]:
    """The agent folders of a scenario in OpenCOOD's order: names sorted as strings, a first one
    that is negative (a roadside unit) moved to the end, the first ``max_cavs`` kept; the first
    is the ego. ``ValueError`` naming the folder when it has no agent or a name is not an id."""
    names = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    for name in names:
        if not re.fullmatch(r"-?\d+", name):
            raise ValueError(
                f"{folder / name}: an OPV2V scenario holds one folder per agent, named by its "
                "CARLA actor id (negative for roadside units); got a folder that is not an id"
            )
    if not names:
        raise ValueError(
            f"{folder}: holds no agent folder; expected an OPV2V scenario (one folder per "
            "connected agent, named by its actor id)"
        )
    if int(names[0]) < 0:
        names = names[1:] + names[:1]
    return names[:max_cavs] if max_cavs else names


def frame_names(folder: Path) -> list[str]:
    """The frame numbers (file stems, ``FRAME_FILE``) of an agent folder, ascending."""
    stems = [m.group(1) for m in map(FRAME_FILE.match, os.listdir(folder)) if m]
    return sorted(stems, key=int)
