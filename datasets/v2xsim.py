"""V2X-Sim 2.0 reader and writer (nuScenes table layout) producing/consuming ``CoopFrame``.

Layout (``root/``):

* ``<version>/`` (``v2.0`` by default) holds the nuScenes JSON tables: ``scene``, ``sample``,
  ``sample_data``, ``ego_pose``, ``calibrated_sensor``, ``sensor``, ``sample_annotation``,
  ``instance``, ``category``, ``attribute``, ``visibility``, ``log``, ``map``.
* One ``sample`` is one cooperative frame: every agent's key-frame ``sample_data`` whose sensor
  channel is ``LIDAR_TOP_id_<k>`` belongs to it. ``sample_data`` has no channel field: the channel
  is found through ``calibrated_sensor.sensor_token → sensor.channel``. ``id_0`` is the roadside
  unit (RSU), with its own ``ego_pose`` and ``calibrated_sensor`` like any agent.
* Point clouds live where ``sample_data.filename`` says (often ``sweeps/LIDAR_TOP_id_k/…``):
  ``.pcd.bin`` files of float32 × 5 per point (x, y, z, intensity, ring) in the sensor frame.

Coordinate conventions (plain nuScenes math, no axis mirroring):

* quaternions are ``[w, x, y, z]``; ``T_world_sensor = T_world_ego(ego_pose) ∘
  T_ego_sensor(calibrated_sensor)``;
* ``sample_annotation`` boxes are in the global (world) frame: ``translation`` is the box centre,
  ``size`` is ``[w, l, h]``, ``rotation`` turns the box frame (x along the length) into the world,
  so ``yaw = atan2(R[1, 0], R[0, 0])`` of that rotation.

Category mapping (nuScenes-style names, matched by prefix; ``CLASS_NAMES`` index in brackets):

* ``vehicle.car``, ``vehicle.emergency.*`` → car [0];
* ``vehicle.truck``, ``vehicle.bus.*``, ``vehicle.trailer``, ``vehicle.construction`` → truck [1];
* ``human.pedestrian.*`` → pedestrian [2];
* ``vehicle.bicycle``, ``vehicle.motorcycle`` → cyclist [3], except annotations carrying the
  attribute ``cycle.without_rider`` (a parked bicycle is not a cyclist);
* everything else (``movable_object.*``, ``static_object.*``, ``animal``, other ``vehicle.*``) is
  dropped; each frame counts what it dropped in ``frame.meta["dropped_categories"]``.

Track ids: the instance token's low 63 bits (tokens are 32 hex digits), see ``track_id_from_token``.

Our writer adds one non-nuScenes file, ``<version>/v2x_frames.json``, that the nuScenes devkit
ignores: per sample, our frame id, agent ids and kinds (V2X-Sim has only vehicles and one RSU;
this keeps UAVs and extra RSUs), the ego channel, the box order and per-agent visibility. The
reader uses it when present and falls back to the V2X-Sim conventions otherwise.

One module per job: ``v2xsim_format`` (tables, channels, categories, track ids, quaternions,
``.pcd.bin``), ``v2xsim_reader`` (``V2XSimDataset``) and ``v2xsim_writer`` (``write_v2xsim``,
``points_in_boxes``). This module keeps the import path ``v2x.datasets.v2xsim`` of each name.
"""

from __future__ import annotations

from v2x.common import atomic_open, atomic_write_bytes
from v2x.datasets.frame import (
    AGENT_KINDS,
    CLASS_NAMES,
    AgentObservation,
    CoopFrame,
    check_rigid_matrix,
)
from v2x.datasets.history import latest_at_or_before
from v2x.datasets.v2xsim_format import (
    CATEGORY_INDEX,
    CATEGORY_PREFIXES,
    CLASS_TO_CATEGORY,
    EXTENSION_FILE,
    LIDAR_CHANNEL,
    POINT_FLOATS,
    TABLES_OPTIONAL,
    TABLES_REQUIRED,
    WITH_RIDER,
    WITHOUT_RIDER,
    category_to_class,
    matrix_to_quaternion,
    quaternion_to_matrix,
    read_pcd_bin,
    track_id_from_token,
)
from v2x.datasets.v2xsim_reader import V2XSimDataset
from v2x.datasets.v2xsim_writer import points_in_boxes, write_v2xsim

__all__ = [
    "CATEGORY_INDEX",
    "CATEGORY_PREFIXES",
    "CLASS_TO_CATEGORY",
    "EXTENSION_FILE",
    "LIDAR_CHANNEL",
    "POINT_FLOATS",
    "TABLES_OPTIONAL",
    "TABLES_REQUIRED",
    "V2XSimDataset",
    "WITHOUT_RIDER",
    "WITH_RIDER",
    "category_to_class",
    "matrix_to_quaternion",
    "points_in_boxes",
    "quaternion_to_matrix",
    "read_pcd_bin",
    "track_id_from_token",
    "write_v2xsim",
    # imported here before the split: kept importable
    "AGENT_KINDS",
    "CLASS_NAMES",
    "AgentObservation",
    "CoopFrame",
    "atomic_open",
    "atomic_write_bytes",
    "check_rigid_matrix",
    "latest_at_or_before",
]
