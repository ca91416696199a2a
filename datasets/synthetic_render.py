"""``FrameRenderer``: ray casts every agent's LiDAR in a ``SyntheticWorld`` state (its boxes, the
buildings and the ground) and makes the ``CoopFrame`` of it, agents' points in their own sensor
frames and ``visibility[a, m]`` the points of agent ``a`` on object ``m``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from v2x.datasets.frame import AgentObservation, CoopFrame
from v2x.datasets.lidar import LidarModel, build_lidar
from v2x.datasets.raycast import make_raycaster
from v2x.datasets.raycast_scene import BoxScene, Raycaster, RayHits
from v2x.datasets.synthetic_config import (
    BUILDING_REFLECTIVITY,
    CLASS_REFLECTIVITY,
    GENERATOR_VERSION,
    SyntheticConfig,
)
from v2x.datasets.synthetic_world import SyntheticWorld


class FrameRenderer:
    """Ray casts every agent's LiDAR for a world state (caches sensors and the caster)."""

    def __init__(self, cfg: SyntheticConfig, caster: Raycaster | None = None) -> None:
        self.cfg = cfg
        if caster is None:
            kwargs = (
                {"device": cfg.device, "num_threads": cfg.torch_threads}
                if cfg.backend == "torch"
                else {}
            )
            caster = make_raycaster(cfg.backend, **kwargs)
        self.caster = caster
        self.lidars: dict[str, LidarModel] = {
            "vehicle": build_lidar(cfg.vehicle_lidar),
            "rsu": build_lidar(cfg.rsu_lidar),
            "uav": build_lidar(cfg.uav_lidar),
        }

    def observe(
        self,
        world: SyntheticWorld,
        frame_index: int,
        agents: Sequence[int],
        time_s: float | None = None,
    ) -> tuple[list[AgentObservation], np.ndarray]:
        """Cast the LiDARs of ``agents`` (indices in ``sensor_poses`` order) with the scene, the
        agents' poses and the objects at ``time_s`` (``None``: the world's current time).

        The sensor noise of agent ``a`` is seeded by ``(seed, frame_index, a)`` whatever the
        instant, so casting at the frame's own instant gives that frame's observation bit for
        bit. Returns the observations (timestamps on each agent's clock) and their visibility
        ``[len(agents), M]`` (points on each object of ``objects(time_s)``).
        """
        boxes, classes, _ = world.objects(time_s)
        scene_boxes = np.concatenate([boxes, world.buildings])
        refl = np.concatenate(
            [
                [CLASS_REFLECTIVITY[int(k)] for k in classes],
                np.full(len(world.buildings), BUILDING_REFLECTIVITY),
            ]
        )
        scene = BoxScene(scene_boxes, reflectivity=refl, ground=True, ground_reflectivity=0.12)
        m = len(boxes)
        observations, vis = [], []
        every = world.sensor_poses(boxes, time_s)
        agents = [int(a) for a in agents]
        sensors = [every[a] for a in agents]
        # One cast for the agents' scans (ray i leaves the sensor group[i]). Every agent's
        # origin and range enter the cast, whichever agents are cast: the caster works relative
        # to their mean, so an agent's points do not depend on which others are cast with it.
        dirs_all = [self.lidars[kind].directions @ pose[:3, :3].T for _, kind, pose, _ in sensors]
        counts = [len(dd) for dd in dirs_all]
        group = np.repeat(np.asarray(agents, dtype=np.int64), counts)
        reach = max(self.lidars[kind].config.max_range_m for _, kind, _, _ in every) + 1.0
        all_hits = self.caster.cast_groups(
            scene,
            np.stack([pose[:3, 3] for _, _, pose, _ in every]),
            np.concatenate(dirs_all),
            group,
            max_range_m=reach,
        )
        offsets = np.concatenate([[0], np.cumsum(counts)])
        sensed_at = world.time_s if time_s is None else float(time_s)
        for i, (a, (agent_id, kind, pose, own)) in enumerate(zip(agents, sensors)):
            lidar = self.lidars[kind]
            dirs_world = dirs_all[i]
            rows = slice(offsets[i], offsets[i + 1])
            hits = RayHits(all_hits.t[rows], all_hits.prim[rows], all_hits.normal[rows])
            cos_inc = np.abs(np.einsum("ij,ij->i", hits.normal, dirs_world))
            refl_ray = np.where(
                hits.prim >= 0,
                scene.reflectivity[np.clip(hits.prim, 0, None)],
                scene.ground_reflectivity,
            )
            hit = hits.hit & (hits.prim != own) if own >= 0 else hits.hit
            rng = np.random.default_rng([world.seed, frame_index, 2, a])
            points, keep = lidar.apply(hits.t, hit, cos_inc, refl_ray, rng)
            on_object = hits.prim[keep]
            on_object = on_object[(on_object >= 0) & (on_object < m)]
            vis.append(np.bincount(on_object, minlength=m)[:m])
            observations.append(
                AgentObservation(
                    agent_id=agent_id,
                    kind=kind,
                    pose=pose,
                    points=points,
                    timestamp=sensed_at + world.agent_clock_offset_s[a],
                )
            )
        return observations, np.array(vis, dtype=np.int32).reshape(len(agents), m)

    def render(self, world: SyntheticWorld, frame_index: int) -> CoopFrame:
        """The ``CoopFrame`` of ``world``'s current state: the ground truth at the frame instant
        ``t``, agent ``a`` as it sensed at ``t − phase_a`` (``SyntheticWorld.agent_phase_s``)."""
        boxes, classes, tracks = world.objects()
        sensors = world.sensor_poses(boxes)
        phase = world.agent_phase_s
        if not np.any(phase):
            agents, vis = self.observe(world, frame_index, range(len(sensors)))
        else:  # unsynchronised LiDARs: one cast per distinct sensing instant
            agents, rows = [None] * len(sensors), [None] * len(sensors)
            for offset in np.unique(phase):
                group = np.flatnonzero(phase == offset)
                when = world.time_s if offset == 0 else world.time_s - float(offset)
                obs, vis_group = self.observe(world, frame_index, group, when)
                for j, a in enumerate(group):
                    agents[a], rows[a] = obs[j], vis_group[j]
            vis = np.stack(rows)
        m = len(boxes)
        return CoopFrame(
            frame_id=f"synthetic-{world.seed}/{frame_index:06d}",
            agents=agents,
            boxes=boxes,
            classes=classes,
            track_ids=tracks,
            visibility=np.asarray(vis, dtype=np.int32).reshape(len(agents), m),
            ego_index=0,
            meta={
                "source": "synthetic",
                "seed": world.seed,
                "frame_index": frame_index,
                "time_s": world.time_s,
                "generator_version": GENERATOR_VERSION,
                # Index into ``boxes`` of each agent's own vehicle (−1 for RSUs and UAVs); the
                # ego's own box is ground truth too (collaborators can see it).
                "agent_box_index": [int(own) for _, _, _, own in sensors],
                "buildings": world.buildings.copy(),
            },
        )
