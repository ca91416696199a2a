"""A procedural town with traffic and ray-cast LiDAR: the built-in cooperative world.

The town is a square grid of ``blocks × blocks`` city blocks on a torus of side
``L = blocks * block_size_m`` centred on the world origin. Roads run along x and y at
``-L/2 + k * block_size_m``; each road corridor holds, on each side of its centre line, a car lane,
a bike lane, a parking strip and a sidewalk (two pedestrian sub-lanes, one per walking direction).
Blocks hold box buildings (or are empty lots).

Traffic moves at ``fps`` (10 Hz) along straight lanes (right-hand traffic) and wraps around the
torus; an object that leaves at one edge re-enters at the other under a new track id. All lanes cross at intersections governed by one traffic-light cycle: an agent may enter
a perpendicular road corridor only while its axis is green and if it can clear the corridor
before the cross axis turns green; agents keep a minimum gap to their leader. Hence no two
objects ever overlap. Parked cars and trucks sit in the parking strips.

Sensors: ``num_vehicle_agents`` moving cars carry a roof LiDAR (the ego is the one nearest the
town centre), ``num_rsus`` roadside units stand at intersection corners with an elevated LiDAR,
and ``num_uavs`` UAVs hover at 20–60 m with a downward-looking LiDAR. Each agent's points are
ray cast against the boxes and the ground (``v2x.datasets.raycast``), so buildings and vehicles
occlude. Points are returned in each agent's sensor frame; ``visibility[a, m]`` counts agent
``a``'s points on object ``m``.

Time is continuous: within a frame period every object moves at the constant velocity of that
step (``SyntheticWorld.objects(time_s)`` / ``sensor_poses(boxes, time_s)`` give the scene at any
instant up to the current one; before the first frame objects keep the first step's velocity),
so a LiDAR can be cast at any instant (``FrameRenderer.observe``). Each collaborator's LiDAR may
scan at its own phase (``sensing_phase_max_s``: agent ``a`` scans at ``t − phase_a``, its pose
and points are those of that instant) and stamp its data with its own clock
(``clock_offset_std_s``: ``timestamp = sensing instant + clock_offset_a``); the ego is the time
reference (phase and clock offset 0). Both default to 0, which gives the frames of generator
version 5 bit for bit.

Everything is a pure function of ``(config, seed, frame index)``.

One module per job: ``synthetic_config`` (``SyntheticConfig``, class sizes and reflectivities,
``GENERATOR_VERSION``), ``synthetic_town`` (the seeded layout and first state),
``synthetic_world`` (``SyntheticWorld``: traffic in continuous time, ground truth, sensor poses)
and ``synthetic_render`` (``FrameRenderer``: the LiDARs cast into a ``CoopFrame``). This module
generates frames and sequences (``generate_frame``, ``generate_sequence``) and keeps the import
path ``v2x.datasets.synthetic`` of each name.
"""

from __future__ import annotations

from collections.abc import Iterator

from v2x.common import check_whole
from v2x.datasets.frame import CLASS_NAMES, AgentObservation, CoopFrame
from v2x.datasets.lidar import LidarConfig, LidarModel, build_lidar, check_finite
from v2x.datasets.raycast import make_raycaster
from v2x.datasets.raycast_scene import BoxScene, Raycaster, RayHits, box_corners
from v2x.datasets.synthetic_config import (
    BUILDING_REFLECTIVITY,
    CAR,
    CLASS_REFLECTIVITY,
    CLASS_SIZES,
    CYCLIST,
    GENERATOR_VERSION,
    PEDESTRIAN,
    TRUCK,
    SyntheticConfig,
)
from v2x.datasets.synthetic_render import FrameRenderer
from v2x.datasets.synthetic_world import SyntheticWorld

__all__ = [
    "BUILDING_REFLECTIVITY",
    "CAR",
    "CLASS_REFLECTIVITY",
    "CLASS_SIZES",
    "CYCLIST",
    "FrameRenderer",
    "GENERATOR_VERSION",
    "PEDESTRIAN",
    "SyntheticConfig",
    "SyntheticWorld",
    "TRUCK",
    "generate_frame",
    "generate_sequence",
    # imported here before the split: kept importable
    "CLASS_NAMES",
    "AgentObservation",
    "BoxScene",
    "CoopFrame",
    "LidarConfig",
    "LidarModel",
    "RayHits",
    "Raycaster",
    "box_corners",
    "build_lidar",
    "check_finite",
    "check_whole",
    "make_raycaster",
]


def generate_sequence(
    cfg: SyntheticConfig | dict,
    seed: int,
    num_frames: int,
    start_index: int = 0,
    caster: Raycaster | None = None,
) -> Iterator[CoopFrame]:
    """Frames ``start_index .. start_index + num_frames - 1`` of the sequence ``seed`` (10 Hz).

    Track ids are stable across the sequence; frame ``i`` is identical to
    ``generate_frame(cfg, seed, i)``.
    """
    cfg = SyntheticConfig.from_dict(cfg)
    if num_frames < 0 or start_index < 0:
        raise ValueError("generate_sequence: 'num_frames' and 'start_index' must be >= 0")
    world = SyntheticWorld(cfg, seed)
    renderer = FrameRenderer(cfg, caster)
    for _ in range(start_index):
        world.step()
    for k in range(num_frames):
        if k:
            world.step()
        yield renderer.render(world, start_index + k)


def generate_frame(
    cfg: SyntheticConfig | dict | None = None,
    seed: int = 0,
    index: int = 0,
    caster: Raycaster | None = None,
) -> CoopFrame:
    """Frame ``index`` of the sequence ``seed`` (a pure function of its arguments)."""
    cfg = SyntheticConfig() if cfg is None else cfg
    return next(generate_sequence(cfg, seed, 1, start_index=index, caster=caster))
