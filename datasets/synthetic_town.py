"""The seeded town a ``SyntheticWorld`` starts from: lanes, buildings, parking, parked and moving
vehicles, cyclists and pedestrians in their first places, the agents' cars, the RSUs and UAVs,
and the agents' LiDAR phases and clock offsets.

``v2x.datasets.synthetic`` describes the town (a torus of ``blocks × blocks`` city blocks, its
road corridors and lanes); lengths in metres, speeds in m/s, angles in radians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from v2x.datasets.raycast_scene import box_corners
from v2x.datasets.synthetic_config import CAR, CLASS_SIZES, CYCLIST, PEDESTRIAN, TRUCK

# Lane kinds.
_CAR_LANE, _BIKE_LANE, _WALK_LANE = 0, 1, 2


@dataclass
class _Lane:
    axis: int  # 0: along x, 1: along y
    direction: int  # +1 / -1 along the axis
    offset: float  # coordinate on the other axis
    kind: int  # _CAR_LANE, _BIKE_LANE, _WALK_LANE
    zones: np.ndarray  # [Z] progress coordinate where each crossing corridor starts (mod L)


@dataclass
class _Mover:
    lane: int
    u: float  # progress coordinate of the centre along the lane direction (mod L)
    speed: float
    cls: int
    size: np.ndarray  # (l, w, h)
    track_id: int
    lateral: float = 0.0  # offset from the lane centre line, m (+ = left of travel)
    yaw_offset: float = 0.0  # heading offset from the lane direction, rad


def _wrap(s: np.ndarray | float, length: float) -> np.ndarray | float:
    """Wrap a coordinate to [-L/2, L/2)."""
    return (np.asarray(s) + length / 2) % length - length / 2


class TownLayout:
    """The town's layout and first state, built by ``SyntheticWorld.__init__`` (this class is its
    base: the methods read the world's ``cfg``, ``rng``, ``seed``, ``length`` and ``roads``).

    Every draw comes from the world's ``rng`` in the order ``__init__`` calls these methods (the
    agents' time offsets from a stream of their own), so the town is a pure function of
    ``(config, seed)``.
    """

    # ---------------------------------------------------------------- layout
    def _build_lanes(self) -> None:
        c = self.cfg
        self.lanes: list[_Lane] = []
        hc = c.half_corridor_m
        walk_in = c.lane_width_m + c.bike_lane_width_m + c.parking_width_m
        offsets = {
            _CAR_LANE: [c.lane_width_m / 2],
            _BIKE_LANE: [c.lane_width_m + c.bike_lane_width_m / 2],
            _WALK_LANE: [walk_in + c.sidewalk_width_m * 0.25, walk_in + c.sidewalk_width_m * 0.75],
        }
        for axis in (0, 1):
            for road in self.roads:
                for direction in (1, -1):
                    # Right-hand traffic: moving +x keeps to −y of the centre line; +y → +x.
                    side = -direction if axis == 0 else direction
                    for kind, offs in offsets.items():
                        for j, off in enumerate(offs):
                            # Pedestrians: each sidewalk holds both walking directions.
                            if kind == _WALK_LANE:
                                d = direction if j == 0 else -direction
                            else:
                                d = direction
                            starts = d * self.roads - hc  # progress coordinate u = d * s
                            zones = np.sort(np.mod(starts, self.length))
                            self.lanes.append(_Lane(axis, d, road + side * off, kind, zones))
        self.corridor_length = 2 * hc

    def _build_buildings(self) -> np.ndarray:
        c = self.cfg
        boxes = []
        centres = self.roads + c.block_size_m / 2
        lot = c.block_size_m - 2 * (c.half_corridor_m + c.building_setback_m)
        for cx in centres:
            for cy in centres:
                kind = self.rng.random()
                if kind < c.empty_lot_probability:
                    continue
                if kind < c.empty_lot_probability + c.parking_lot_probability:
                    self.parking_lots.append((float(cx), float(cy), lot))
                    continue
                split = int(self.rng.integers(1, 3))  # 1×1 or 2×2 buildings per block
                cell = lot / split
                for i in range(split):
                    for j in range(split):
                        gap = 1.5 if split > 1 else 0.0
                        lx = (cell - gap) * self.rng.uniform(0.75, 1.0)
                        ly = (cell - gap) * self.rng.uniform(0.75, 1.0)
                        h = self.rng.uniform(c.building_min_height_m, c.building_max_height_m)
                        x = cx - lot / 2 + cell * (i + 0.5)
                        y = cy - lot / 2 + cell * (j + 0.5)
                        boxes.append([x, y, h / 2, lx, ly, h, 0.0])
        return np.array(boxes, dtype=np.float64).reshape(-1, 7)

    def _sample_size(self, cls: int) -> np.ndarray:
        lo, hi = CLASS_SIZES[cls]
        return self.rng.uniform(lo, hi)

    def _lane_pose(self, lane: _Lane, u: np.ndarray | float) -> tuple:
        """World (x, y, yaw) of progress coordinate(s) ``u`` on ``lane``."""
        s = _wrap(lane.direction * np.asarray(u, dtype=np.float64), self.length)
        other = np.full_like(s, lane.offset)
        if lane.axis == 0:
            x, y = s, other
            yaw = 0.0 if lane.direction > 0 else math.pi
        else:
            x, y = other, s
            yaw = math.pi / 2 if lane.direction > 0 else -math.pi / 2
        return x, y, yaw

    def _free_of_zones(self, lane: _Lane, u: float, half_len: float, margin: float) -> bool:
        """True if ``[u - half_len, u + half_len]`` stays clear of every crossing corridor."""
        span = self.corridor_length + 2 * margin + 2 * half_len
        for z in lane.zones:
            into = (u + half_len - (z - margin)) % self.length
            if 0 < into < span:
                return False
        return True

    def _build_parked(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.cfg
        boxes, classes = [], []
        off = c.lane_width_m + c.bike_lane_width_m + c.parking_width_m / 2
        slot = 11.0
        n_slots = int(self.length // slot)
        for axis in (0, 1):
            for road in self.roads:
                for side in (1, -1):
                    lane = _Lane(axis, 1, road + side * off, _CAR_LANE, np.array([]))
                    lane.zones = np.sort(np.mod(self.roads - c.half_corridor_m, self.length))
                    for k in range(n_slots):
                        if self.rng.random() >= min(0.9, c.parked_density * slot):
                            continue
                        cls = TRUCK if self.rng.random() < c.truck_fraction else CAR
                        size = self._sample_size(cls)
                        u = (k + 0.5) * slot + self.rng.uniform(-0.5, 0.5)
                        if not self._free_of_zones(lane, u, size[0] / 2, 1.0):
                            continue
                        x, y, yaw = self._lane_pose(lane, u)
                        yaw = yaw + (math.pi if self.rng.random() < 0.5 else 0.0)
                        if cls == CAR:
                            yaw += math.radians(self.rng.uniform(-2.0, 2.0))
                        boxes.append([float(x), float(y), size[2] / 2, *size, yaw])
                        classes.append(cls)
        for cx, cy, lot in self.parking_lots:
            for box in self._lot_cars(cx, cy, lot):
                boxes.append(box)
                classes.append(CAR)
        return np.array(boxes, dtype=np.float64).reshape(-1, 7), np.array(classes, dtype=np.int64)

    def _lot_cars(self, cx: float, cy: float, lot: float) -> list[list[float]]:
        """Cars in a parking lot: stalls 2.8 m wide in rows 6 m apart, rotated by a random
        angle; every car lies inside the lot square and no two overlap (each fits its stall)."""
        theta = self.rng.uniform(0.0, math.pi / 2)
        c, s = math.cos(theta), math.sin(theta)
        reach = lot * math.sqrt(2) / 2
        cars = []
        for i in np.arange(-reach, reach + 1e-9, 2.8):
            for j in np.arange(-reach, reach + 1e-9, 6.0):
                if self.rng.random() >= self.cfg.parking_lot_fill:
                    continue
                size = self._sample_size(CAR)
                x, y = cx + c * i - s * j, cy + s * i + c * j
                yaw = theta + math.pi / 2 + (math.pi if self.rng.random() < 0.5 else 0.0)
                box = np.array([x, y, size[2] / 2, *size, yaw])
                corners = box_corners(box[None])[0, :4, :2]
                if np.all(np.abs(corners - [cx, cy]) <= lot / 2):
                    cars.append(box.tolist())
        return cars

    def _add_mover(self, lane_index: int, u: float, cls: int) -> _Mover:
        c = self.cfg
        base = {
            CAR: c.car_speed_mps,
            TRUCK: c.car_speed_mps * 0.8,
            CYCLIST: c.cyclist_speed_mps,
            PEDESTRIAN: c.pedestrian_speed_mps,
        }[cls]
        # Lateral and heading jitter (within the lane: no overlap with neighbouring lanes).
        lateral_m, yaw_deg = {CAR: (0.25, 2.0), TRUCK: (0.15, 1.5), CYCLIST: (0.15, 3.0),
                              PEDESTRIAN: (0.1, 15.0)}[cls]  # fmt: skip
        mover = _Mover(
            lane=lane_index,
            u=float(u % self.length),
            speed=float(base * self.rng.uniform(0.8, 1.2)),
            cls=cls,
            size=self._sample_size(cls),
            track_id=self._next_track,
            lateral=float(self.rng.uniform(-lateral_m, lateral_m)),
            yaw_offset=math.radians(self.rng.uniform(-yaw_deg, yaw_deg)),
        )
        self._next_track += 1
        self.movers.append(mover)
        return mover

    def _slots(self, lane_index: int, slot: float) -> list[float]:
        lane = self.lanes[lane_index]
        n = int(self.length // slot)
        return [
            (k + 0.5) * slot
            for k in range(n)
            if self._free_of_zones(lane, (k + 0.5) * slot, slot / 2, 0.5)
        ]

    def _place_agent_cars(self) -> list[int]:
        """Place the agents' cars first (ego near the centre, others near the ego)."""
        c = self.cfg
        slot = 14.0
        self._occupied: set[tuple[int, int]] = set()
        car_lanes = [i for i, ln in enumerate(self.lanes) if ln.kind == _CAR_LANE]
        cands = []
        for li in car_lanes:
            for u in self._slots(li, slot):
                x, y, _ = self._lane_pose(self.lanes[li], u)
                cands.append((li, u, float(x), float(y)))
        if len(cands) < c.num_vehicle_agents:
            raise ValueError("dataset (synthetic): town too small for 'num_vehicle_agents'")
        xy = np.array([[q[2], q[3]] for q in cands])
        dist = np.linalg.norm(xy, axis=1)
        near = np.flatnonzero(dist <= c.ego_max_distance_m)
        ego = int(self.rng.choice(near)) if len(near) else int(np.argmin(dist))
        chosen = [ego]
        d_ego = np.linalg.norm(xy - xy[ego], axis=1)
        order = [i for i in np.argsort(d_ego) if i != ego]
        pool = [i for i in order if d_ego[i] <= c.agent_max_distance_m]
        if len(pool) < c.num_vehicle_agents - 1:
            pool = order[: max(c.num_vehicle_agents - 1, len(pool))]
        extra = self.rng.choice(len(pool), size=c.num_vehicle_agents - 1, replace=False)
        chosen += [int(pool[i]) for i in sorted(extra)]
        indices = []
        for i in chosen:
            li, u, _, _ = cands[i]
            self._occupied.add((li, int(u // slot)))
            indices.append(len(self.movers))
            self._add_mover(li, u, CAR)
        return indices

    def _fill_traffic(self) -> None:
        c = self.cfg
        specs = {
            _CAR_LANE: (14.0, c.traffic_density),
            _BIKE_LANE: (6.0, c.cyclist_density),
            _WALK_LANE: (3.0, c.pedestrian_density),
        }
        for li, lane in enumerate(self.lanes):
            slot, density = specs[lane.kind]
            p = min(0.9, density * slot)
            for u in self._slots(li, slot):
                if (li, int(u // slot)) in self._occupied or self.rng.random() >= p:
                    continue
                if lane.kind == _CAR_LANE:
                    cls = TRUCK if self.rng.random() < c.truck_fraction else CAR
                else:
                    cls = CYCLIST if lane.kind == _BIKE_LANE else PEDESTRIAN
                self._add_mover(li, u + self.rng.uniform(-0.3, 0.3), cls)

    def _place_rsus(self) -> list[np.ndarray]:
        """RSU positions (x, y, yaw): corners of the intersections nearest the centre."""
        c = self.cfg
        xs, ys = np.meshgrid(self.roads, self.roads, indexing="ij")
        inter = np.stack([xs.ravel(), ys.ravel()], axis=1)
        order = np.argsort(np.linalg.norm(inter, axis=1) + 1e-6 * self.rng.random(len(inter)))
        corner = c.half_corridor_m - 0.3
        rsus = []
        for k in range(c.num_rsus):
            ix, iy = inter[order[k % len(order)]]
            sx, sy = self.rng.choice([-1.0, 1.0], size=2)
            x, y = ix + sx * corner, iy + sy * corner
            rsus.append(np.array([x, y, math.atan2(iy - y, ix - x)]))
        return rsus

    def _place_uavs(self) -> list[dict]:
        c = self.cfg
        uavs = []
        for _ in range(c.num_uavs):
            uavs.append(
                {
                    "centre": self.rng.uniform(-c.block_size_m / 4, c.block_size_m / 4, size=2),
                    "altitude": self.rng.uniform(c.uav_min_altitude_m, c.uav_max_altitude_m),
                    "phase": self.rng.uniform(0, 2 * math.pi),
                    "dir": self.rng.choice([-1.0, 1.0]),
                }
            )
        return uavs

    def _time_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Per agent (order of ``sensor_poses``): LiDAR phase ``[A]`` s (the scan happens that
        long before the frame instant) and clock offset ``[A]`` s; the ego's are 0. Drawn from a
        stream of their own, so the rest of the world does not depend on them."""
        c = self.cfg
        a = c.num_vehicle_agents + c.num_rsus + c.num_uavs
        rng = np.random.default_rng([self.seed, 3])
        phase = rng.uniform(0.0, 1.0, size=a) * c.sensing_phase_max_s
        clock = rng.standard_normal(size=a) * c.clock_offset_std_s
        phase[0] = clock[0] = 0.0
        if c.clock_offset_std_s == 0.0:
            clock[:] = 0.0  # never -0.0
        return phase, clock
