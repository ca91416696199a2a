"""DAIR-V2X-C (cooperative vehicle–infrastructure) reader and writer for ``CoopFrame``.

Layout (``root`` = ``cooperative-vehicle-infrastructure/``), as published:

* ``cooperative/data_info.json``: a list of pairs with ``vehicle_pointcloud_path``,
  ``infrastructure_pointcloud_path``, ``vehicle_image_path``, ``infrastructure_image_path``,
  ``cooperative_label_path`` (``cooperative/label_world/<vehicle id>.json``) and
  ``system_error_offset`` ``{delta_x, delta_y}`` (metres; values may be ``""``). Paths are
  relative to ``root``; a frame id is the file name without extension (``015344``).
* ``vehicle-side/data_info.json`` and ``infrastructure-side/data_info.json``: per-frame
  records with ``pointcloud_path``, ``pointcloud_timestamp`` (µs), ``label_lidar_std_path``, the
  calibration paths and ``batch_id``; paths there are relative to the side's folder. When a
  side's file is missing, the conventional paths below are used and timestamps read as 0.
* ``vehicle-side/velodyne/<id>.pcd`` and ``infrastructure-side/velodyne/<id>.pcd``: PCD files
  (``binary`` or ``binary_compressed``) with fields ``x y z intensity``, intensity 0–255.
* calibrations, each mapping its source frame into its target frame as
  ``p_target = R p_source + t`` (``rotation`` 3×3, ``translation`` 3×1):
  ``vehicle-side/calib/lidar_to_novatel/<id>.json`` (wrapped in ``"transform"``),
  ``vehicle-side/calib/novatel_to_world/<id>.json``,
  ``infrastructure-side/calib/virtuallidar_to_world/<id>.json`` (also holds ``relative_error``).
* labels: ``vehicle-side/label/lidar/<id>.json`` (vehicle LiDAR frame),
  ``infrastructure-side/label/virtuallidar/<id>.json`` (infrastructure virtual-LiDAR frame) and
  the cooperative ``cooperative/label_world/<vehicle id>.json``.

Coordinate conversions (each documented where it happens, in ``dair_format`` and ``dair_reader``):

* vehicle LiDAR → world: ``T_world_novatel ∘ T_novatel_lidar``.
* infrastructure LiDAR → world: ``[R | t + (delta_x, delta_y, 0)]`` — the system-error offset is
  added to the virtuallidar→world translation, in the world frame, as the official
  ``Coord_Infrastructure_lidar2Vehicle_lidar`` does before world → novatel → vehicle LiDAR.
  The offset comes from the pair's ``system_error_offset``; if absent, from the calib's
  ``relative_error``; ``""`` reads as 0. With it, both agents share the vehicle's world frame.
* labels: ``3d_location`` is the box centre, ``3d_dimensions`` ``{h, w, l}``, ``rotation`` the yaw
  about +z from +x with ``l`` along the heading. A box in a sensor frame goes to the world as
  ``c_w = R c + t`` and ``yaw_w = atan2`` of the rotated heading vector ``R (cos yaw, sin yaw, 0)``.
* cooperative labels are in the **world** frame in DAIR-V2X-C (the official ``VICDataset`` loads
  ``cooperative_label_path`` and applies ``World → Vehicle_lidar``; OpenCOOD/CoAlign read their
  ``world_8_points`` the same way). (V2X-Seq/SPD's ``cooperative/label/`` is in the vehicle LiDAR
  frame instead: ``coop_label_frame="vehicle_lidar"`` reads that.) When ``world_8_points`` is
  present (corner order DAIR's: ``0–3`` bottom, ``4–7`` top, ``c0 − c3`` along the length) the
  corners are the box (``box_from_corners``): centre, ``l``, ``w``, ``h`` and the yaw (``atan2``;
  one official converter uses ``atan`` and loses half the circle) all come from them, as the
  official ``Label`` and HEAL/CoAlign's ``corner_to_center`` read them — DAIR's README gives the
  cooperative annotation as ``type``, ``world_8_points``, ``system_error_offset`` and calls its
  other 3D fields unusable, so ``3d_location``/``rotation`` are ignored and ``3d_dimensions`` is
  optional (when present, a zero size still drops the box, as the official loader does).
  Without corners: ``3d_location``, ``3d_dimensions`` and ``rotation``.

Labels — the vehicle-only / infrastructure-only subtlety: the cooperative label merges both sides
(objects seen by either, matched and fused, originally only Car/Truck/Van/Bus), whereas
``vehicle-side/label/lidar`` holds what the vehicle sees (in DAIR-V2X-C: within the camera's
view) and ``infrastructure-side/label/virtuallidar`` what the roadside unit sees. ``labels``
chooses one of ``"cooperative"`` (default, the evaluation ground truth), ``"vehicle"`` or
``"infrastructure"``; the other two are never mixed in (that would count objects twice).

Type mapping (case-insensitive) into ``CLASS_NAMES``: Car, Van → car; Truck, Bus → truck;
Pedestrian → pedestrian; Cyclist, Motorcyclist, Tricyclist → cyclist. Barrowlist, TrafficCone
and any other type are dropped and counted per type in ``frame.meta["dropped_categories"]``;
boxes with a zero size (present in the release; the official loader skips them too) are
dropped and counted in ``frame.meta["dropped_zero_size"]``; a negative size is malformed and
raises ``ValueError`` naming the label file and object.

Track ids: DAIR-V2X-C labels have none; boxes get ``-1`` unless a label carries ``track_id``
(V2X-Seq does, and so do files our writer makes), hashed by
``v2x.datasets.v2xsim_format.track_id_from_token``.

One module per job: ``dair_format`` (types ↔ classes, fields, calibrations, box corners),
``dair_reader`` (``DAIRV2XCDataset``) and ``dair_writer`` (``write_dair_v2x_c``). This module
keeps the import path ``v2x.datasets.dair`` of each name.
"""

from __future__ import annotations

from v2x.common import atomic_open
from v2x.datasets.dair_format import (
    CLASS_TO_TYPE,
    COOP_LABEL_FRAMES,
    INF,
    LABEL_SOURCES,
    TYPE_TO_CLASS,
    VEH,
    box_corners,
    box_from_corners,
    box_to_world,
    rigid_from_calib,
    yaw_from_corners,
)
from v2x.datasets.dair_reader import FAR_FROM_WORLD_ZERO_M, DAIRV2XCDataset, log
from v2x.datasets.dair_writer import MAX_FRAME_ID, write_dair_v2x_c
from v2x.datasets.frame import AgentObservation, CoopFrame, check_rigid_matrix
from v2x.datasets.history import latest_at_or_before
from v2x.datasets.pcd import PCD_DATA_KINDS, read_pcd_xyzi, write_pcd
from v2x.datasets.v2xsim_format import track_id_from_token

__all__ = [
    "CLASS_TO_TYPE",
    "COOP_LABEL_FRAMES",
    "DAIRV2XCDataset",
    "FAR_FROM_WORLD_ZERO_M",
    "INF",
    "LABEL_SOURCES",
    "MAX_FRAME_ID",
    "TYPE_TO_CLASS",
    "VEH",
    "box_corners",
    "box_from_corners",
    "box_to_world",
    "log",
    "rigid_from_calib",
    "write_dair_v2x_c",
    "yaw_from_corners",
    # imported here before the split: kept importable
    "PCD_DATA_KINDS",
    "AgentObservation",
    "CoopFrame",
    "atomic_open",
    "check_rigid_matrix",
    "latest_at_or_before",
    "read_pcd_xyzi",
    "track_id_from_token",
    "write_pcd",
]
