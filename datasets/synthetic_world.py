"""``SyntheticWorld``: one seeded town (``v2x.datasets.synthetic_town``) and its traffic in
continuous time: ``step()`` advances it by ``1 / fps`` s, ``objects(time_s)`` and
``sensor_poses(boxes, time_s)`` give the ground truth and the agents' poses at any instant up to
the current one.

``v2x.datasets.synthetic`` describes the traffic rules and the time model.
"""

from __future__ import annotations

import math

import numpy as np

from v2x.datasets.synthetic_config import SyntheticConfig
from v2x.datasets.synthetic_town import TownLayout, _Mover, _wrap


class SyntheticWorld(TownLayout):
    """One seeded town with its traffic state; ``step()`` advances it by ``1 / fps`` s.

    Args:
        cfg: the world's configuration.
        seed: everything (layout, traffic, agents, noise) derives from it.
    """

    def __init__(self, cfg: SyntheticConfig, seed: int) -> None:
        self.cfg = cfg
        self.seed = int(seed)
        self.rng = np.random.default_rng([self.seed, 0])
        self.length = cfg.town_size_m
        self.roads = -self.length / 2 + cfg.block_size_m * np.arange(cfg.blocks)
        self.step_index = 0
        self.light_offset_s = float(self.rng.uniform(0, 2 * (cfg.green_s + cfg.clearance_s)))
        self._build_lanes()
        self.parking_lots: list[tuple[float, float, float]] = []
        self.buildings = self._build_buildings()
        self.parked_boxes, self.parked_classes = self._build_parked()
        self._next_track = len(self.parked_boxes)
        self.movers: list[_Mover] = []
        self.vehicle_agents = self._place_agent_cars()
        self._fill_traffic()
        self.rsus = self._place_rsus()
        self.uavs = self._place_uavs()
        self.agent_phase_s, self.agent_clock_offset_s = self._time_offsets()
        # Progress coordinate and track id of every mover after each step (continuous time).
        self._history: list[tuple[np.ndarray, np.ndarray]] = [self._snapshot()]
        self._first_advance: np.ndarray | None = None

    # --------------------------------------------------------------- traffic
    @property
    def time_s(self) -> float:
        return self.step_index / self.cfg.fps

    def _snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.array([m.u for m in self.movers], dtype=np.float64),
            np.array([m.track_id for m in self.movers], dtype=np.int64),
        )

    def movers_at(self, time_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Progress coordinates ``[N]`` (m) and track ids ``[N]`` of the movers at ``time_s``.

        Within step ``n`` (``n / fps <= time_s < (n + 1) / fps``) every mover moves at that step's
        constant speed; instants within 1 ns of a frame give that frame's state exactly; before
        the first frame the movers keep the first step's velocity. ``time_s`` may not lie after
        the world's current time (``ValueError``).
        """
        fps = self.cfg.fps
        pos = float(time_s) * fps  # in steps
        if not math.isfinite(pos) or pos > self.step_index + 1e-9 * fps:
            raise ValueError(
                f"synthetic world: 'time_s' must be finite and <= the current time "
                f"{self.time_s} s, got {time_s}"
            )
        n = round(pos)
        if abs(pos - n) <= 1e-9 * fps and 0 <= n <= self.step_index:
            u, tracks = self._history[n]
            return u.copy(), tracks.copy()
        if pos < 0:
            u0, tracks = self._history[0]
            return (u0 + pos * self._advance(0)) % self.length, tracks.copy()
        n = int(math.floor(pos))
        u, tracks = self._history[n]
        return (u + (pos - n) * self._advance(n)) % self.length, tracks.copy()

    def _advance(self, n: int) -> np.ndarray:
        """``[N]`` metres each mover advanced during step ``n`` (``n → n + 1``)."""
        if n + 1 < len(self._history):
            return (self._history[n + 1][0] - self._history[n][0]) % self.length
        if self._first_advance is None:  # n = 0 on a world not stepped yet: step a copy
            import copy

            ahead = copy.deepcopy(self)
            ahead.step()
            self._first_advance = (ahead._history[1][0] - ahead._history[0][0]) % self.length
        return self._first_advance

    def _green_left(self, axis: int, time_s: float) -> float:
        """Seconds of green left for ``axis`` (−inf when not green)."""
        c = self.cfg
        cycle = 2 * (c.green_s + c.clearance_s)
        tau = (time_s + self.light_offset_s) % cycle
        start = 0.0 if axis == 0 else c.green_s + c.clearance_s
        into = tau - start
        return c.green_s - into if 0 <= into < c.green_s else -math.inf

    def step(self) -> None:
        """Advance traffic by one frame (``1 / fps`` seconds)."""
        c = self.cfg
        dt = 1.0 / c.fps
        length = self.length
        by_lane: dict[int, list[_Mover]] = {}
        for m in self.movers:
            by_lane.setdefault(m.lane, []).append(m)
        advances: dict[int, float] = {}
        for li, movers in by_lane.items():
            lane = self.lanes[li]
            green = self._green_left(lane.axis, self.time_s)
            movers = sorted(movers, key=lambda m: m.u)
            for i, m in enumerate(movers):
                adv = m.speed * dt
                front = m.u + m.size[0] / 2
                gap = math.inf
                if len(movers) > 1:
                    lead = movers[(i + 1) % len(movers)]
                    gap = (lead.u - lead.size[0] / 2 - front) % length
                    adv = min(adv, max(0.0, gap - c.min_gap_m))
                # Enter a crossing corridor only on green, if it can be cleared before the
                # cross axis turns green, and if there is room behind the leader beyond it.
                need = (self.corridor_length + m.size[0]) / m.speed
                allowed = green + c.clearance_s >= need
                for z in lane.zones:
                    dist = (z - front) % length
                    if dist < adv + 0.5:
                        room = gap >= dist + self.corridor_length + m.size[0] + c.min_gap_m
                        if not (allowed and room):
                            adv = min(adv, max(0.0, dist - 0.5))
                advances[id(m)] = adv
        for m in self.movers:
            before = self.lanes[m.lane].direction * m.u
            m.u = (m.u + advances[id(m)]) % length
            after = self.lanes[m.lane].direction * m.u
            if abs(_wrap(after, length) - _wrap(before, length)) > length / 2:
                # It left the town at one edge and re-enters at the other: a new object.
                m.track_id = self._next_track
                self._next_track += 1
        self.step_index += 1
        self._history.append(self._snapshot())

    # ---------------------------------------------------------------- output
    def objects(self, time_s: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ground truth now (or at ``time_s``, see ``movers_at``): boxes ``[M, 7]`` float64,
        classes ``[M]``, track ids ``[M]``.

        Parked vehicles come first (track ids ``0 .. P-1``), then the movers.
        """
        if time_s is None:
            u = [m.u for m in self.movers]
            track_ids = [m.track_id for m in self.movers]
        else:
            u, track_ids = self.movers_at(time_s)
        boxes = [self.parked_boxes]
        for m, um in zip(self.movers, u):
            lane = self.lanes[m.lane]
            x, y, yaw = self._lane_pose(lane, um)
            # Lateral offset to the left of the travel direction.
            if lane.axis == 0:
                y = y + lane.direction * m.lateral
            else:
                x = x - lane.direction * m.lateral
            yaw = yaw + m.yaw_offset
            boxes.append(np.array([[float(x), float(y), m.size[2] / 2, *m.size, yaw]]))
        classes = np.concatenate([self.parked_classes, [m.cls for m in self.movers]])
        tracks = np.concatenate([np.arange(len(self.parked_boxes)), track_ids])
        return (
            np.concatenate(boxes).reshape(-1, 7),
            classes.astype(np.int64),
            tracks.astype(np.int64),
        )

    def sensor_poses(
        self, boxes: np.ndarray, time_s: float | None = None
    ) -> list[tuple[str, str, np.ndarray, int]]:
        """Agents now (or at ``time_s``, with ``boxes = objects(time_s)[0]``):
        ``(agent_id, kind, pose [4, 4] sensor→world, own box index or −1)``."""
        c = self.cfg
        now = self.time_s if time_s is None else float(time_s)
        out = []
        n_parked = len(self.parked_boxes)
        for k, mover_index in enumerate(self.vehicle_agents):
            b = boxes[n_parked + mover_index]
            z = b[5] + c.lidar_mount_m
            out.append((f"veh_{k}", "vehicle", _pose(b[0], b[1], z, b[6]), n_parked + mover_index))
        for k, (x, y, yaw) in enumerate(self.rsus):
            out.append((f"rsu_{k}", "rsu", _pose(x, y, c.rsu_height_m, yaw), -1))
        for k, u in enumerate(self.uavs):
            omega = u["dir"] * c.uav_speed_mps / max(c.uav_orbit_radius_m, 1e-6)
            ang = u["phase"] + omega * now
            x = u["centre"][0] + c.uav_orbit_radius_m * math.cos(ang)
            y = u["centre"][1] + c.uav_orbit_radius_m * math.sin(ang)
            yaw = ang + u["dir"] * math.pi / 2
            out.append((f"uav_{k}", "uav", _pose(x, y, u["altitude"], yaw), -1))
        return out


def _pose(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    pose[:3, 3] = [x, y, z]
    return pose
