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
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from v2x.common import check_whole
from v2x.datasets.frame import CLASS_NAMES, AgentObservation, CoopFrame
from v2x.datasets.lidar import LidarConfig, LidarModel, build_lidar, check_finite
from v2x.datasets.raycast import make_raycaster
from v2x.datasets.raycast_scene import BoxScene, Raycaster, RayHits, box_corners

GENERATOR_VERSION = 5
"""Bumped whenever the same (config, seed) would produce different frames (cache keys use it)."""

CAR, TRUCK, PEDESTRIAN, CYCLIST = (CLASS_NAMES.index(n) for n in CLASS_NAMES)

# Size ranges (l, w, h) in metres per class: (low, high).
CLASS_SIZES: dict[int, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    CAR: ((3.9, 1.7, 1.4), (4.9, 2.0, 1.8)),
    TRUCK: ((6.5, 2.3, 2.8), (10.0, 2.6, 3.6)),
    PEDESTRIAN: ((0.5, 0.5, 1.6), (0.8, 0.7, 1.9)),
    CYCLIST: ((1.6, 0.5, 1.6), (1.9, 0.7, 1.8)),
}
CLASS_REFLECTIVITY = {CAR: 0.6, TRUCK: 0.5, PEDESTRIAN: 0.35, CYCLIST: 0.45}
BUILDING_REFLECTIVITY = 0.25

# Lane kinds.
_CAR_LANE, _BIKE_LANE, _WALK_LANE = 0, 1, 2


#: ``SyntheticConfig`` fields that are probabilities or fractions (in [0, 1]).
_FRACTIONS = ("empty_lot_probability", "parking_lot_probability", "parking_lot_fill",
              "truck_fraction")  # fmt: skip


@dataclass
class SyntheticConfig:
    """Configuration of the synthetic world (Hydra group ``dataset/synthetic``).

    Attributes (lengths in metres, speeds in m/s, densities in objects per metre of lane):
        name: registry name (``"synthetic"``).
        blocks: the town is ``blocks × blocks`` city blocks (side ``blocks * block_size_m``).
        block_size_m: road-centre to road-centre pitch.
        lane_width_m, bike_lane_width_m, parking_width_m, sidewalk_width_m: road cross-section
            per side of the centre line.
        building_setback_m: gap between sidewalk and buildings.
        building_min_height_m, building_max_height_m: building height range.
        empty_lot_probability: chance that a block has no building.
        parking_lot_probability: chance that a block is a parking lot (rows of cars at a random
            angle: ego-relative yaws other than multiples of 90°).
        parking_lot_fill: share of a parking lot's stalls holding a car.
        num_vehicle_agents, num_rsus, num_uavs: agents per kind (the ego is a vehicle).
        traffic_density: moving cars/trucks per metre of car lane.
        truck_fraction: share of trucks among moving and parked vehicles.
        parked_density: parked vehicles per metre of parking strip.
        pedestrian_density, cyclist_density: per metre of walk / bike lane.
        car_speed_mps, cyclist_speed_mps, pedestrian_speed_mps: mean speeds (±20 % jitter).
        min_gap_m: minimum bumper-to-bumper gap in a lane.
        green_s, clearance_s: traffic-light green and all-red durations.
        fps: frame rate of sequences (10 Hz).
        lidar_mount_m: roof LiDAR height above a vehicle's roof.
        rsu_height_m: RSU LiDAR height.
        uav_min_altitude_m, uav_max_altitude_m: UAV altitude range.
        uav_orbit_radius_m, uav_speed_mps: UAVs circle slowly around their station.
        ego_max_distance_m: the ego starts within this distance of the town centre.
        agent_max_distance_m: collaborating vehicles start within this distance of the ego.
        vehicle_lidar, rsu_lidar, uav_lidar: sensor models per agent kind.
        backend: ray-casting backend (``"torch"`` or ``"open3d"``).
        device: torch device for the torch backend.
        torch_threads: torch CPU threads while a frame is cast on the CPU (restored after;
            0 = leave torch's setting). One thread avoids the large slow-down of torch's
            intra-op parallelism on small tensors when the CPU cores are shared.
        sensing_phase_max_s: unsynchronised LiDARs: each collaborator scans ``phase_a`` seconds
            before the frame instant, ``phase_a`` uniform in ``[0, sensing_phase_max_s)`` (seeded
            per world; at most one frame period ``1 / fps``; the ego's phase is 0).
        clock_offset_std_s: time-synchronisation error: each collaborator's clock runs
            ``clock_offset_a ~ N(0, clock_offset_std_s²)`` s off the ego's (seeded per world); its
            ``AgentObservation.timestamp`` is its sensing instant on that clock.
    """

    name: str = "synthetic"
    blocks: int = 2
    block_size_m: float = 48.0
    lane_width_m: float = 3.5
    bike_lane_width_m: float = 1.5
    parking_width_m: float = 2.5
    sidewalk_width_m: float = 3.0
    building_setback_m: float = 1.0
    building_min_height_m: float = 5.0
    building_max_height_m: float = 18.0
    empty_lot_probability: float = 0.1
    parking_lot_probability: float = 0.3
    parking_lot_fill: float = 0.6
    num_vehicle_agents: int = 3
    num_rsus: int = 1
    num_uavs: int = 1
    traffic_density: float = 0.03
    truck_fraction: float = 0.15
    parked_density: float = 0.04
    pedestrian_density: float = 0.015
    cyclist_density: float = 0.006
    car_speed_mps: float = 8.0
    cyclist_speed_mps: float = 4.0
    pedestrian_speed_mps: float = 1.4
    min_gap_m: float = 2.0
    green_s: float = 20.0
    clearance_s: float = 4.0
    fps: float = 10.0
    lidar_mount_m: float = 0.3
    rsu_height_m: float = 5.5
    uav_min_altitude_m: float = 20.0
    uav_max_altitude_m: float = 60.0
    uav_orbit_radius_m: float = 8.0
    uav_speed_mps: float = 3.0
    ego_max_distance_m: float = 20.0
    agent_max_distance_m: float = 40.0
    vehicle_lidar: LidarConfig = field(
        default_factory=lambda: LidarConfig(preset="hdl32", columns=1024, max_range_m=70.0)
    )
    rsu_lidar: LidarConfig = field(
        default_factory=lambda: LidarConfig(preset="rsu32", columns=1024, max_range_m=80.0)
    )
    uav_lidar: LidarConfig = field(
        default_factory=lambda: LidarConfig(
            preset="uav_down", beams=32, columns=1024, max_range_m=120.0
        )
    )
    backend: str = "torch"
    device: str = "cpu"
    torch_threads: int = 1
    sensing_phase_max_s: float = 0.0
    clock_offset_std_s: float = 0.0

    def __post_init__(self) -> None:
        for key in ("vehicle_lidar", "rsu_lidar", "uav_lidar"):
            setattr(self, key, LidarConfig.from_dict(getattr(self, key), where=f"dataset.{key}"))
        for f in fields(self):  # every count a whole number, every quantity finite and >= 0
            where = f"dataset (synthetic): field '{f.name}'"
            if f.type == "int":
                check_whole(where, getattr(self, f.name), 0)
            elif f.type == "float":
                most = 1.0 if f.name in _FRACTIONS else math.inf
                check_finite(where, getattr(self, f.name), 0.0, most)
        corridor_m = 2 * self.half_corridor_m + 4.0
        roofs_m = self.building_max_height_m + 1.0
        frame_s = 1.0 / self.fps if self.fps > 0 else math.inf
        checks = {  # field: (holds, what is expected)
            "blocks": (self.blocks >= 1, ">= 1"),
            "block_size_m": (
                self.block_size_m > corridor_m,
                f"> 2 × (lane + bike lane + parking + sidewalk widths) + 4 m = {corridor_m:g} m",
            ),
            "num_vehicle_agents": (self.num_vehicle_agents >= 1, ">= 1 (the ego is a vehicle)"),
            "num_rsus": (self.num_rsus >= 0, ">= 0"),
            "num_uavs": (self.num_uavs >= 0, ">= 0"),
            "fps": (self.fps > 0, "> 0 frames per second"),
            "green_s": (self.green_s > 0, "> 0 s"),
            "clearance_s": (self.clearance_s >= 0, ">= 0 s"),
            "uav_max_altitude_m": (
                self.uav_max_altitude_m >= self.uav_min_altitude_m,
                f">= uav_min_altitude_m = {self.uav_min_altitude_m:g} m",
            ),
            "building_max_height_m": (
                self.building_max_height_m >= self.building_min_height_m > 0,
                f">= building_min_height_m = {self.building_min_height_m:g} m, which must be > 0",
            ),
            # UAVs fly above every roof (they orbit over the town).
            "uav_min_altitude_m": (
                self.uav_min_altitude_m > roofs_m,
                f"> building_max_height_m + 1 = {roofs_m:g} m (UAVs fly above every roof)",
            ),
            "backend": (self.backend in ("torch", "open3d"), "'torch' or 'open3d'"),
            "torch_threads": (self.torch_threads >= 0, ">= 0 (0: leave torch's setting)"),
            "sensing_phase_max_s": (
                0.0 <= self.sensing_phase_max_s <= frame_s,
                f"in [0, 1 / fps] = [0, {frame_s:g}] s",
            ),
            "clock_offset_std_s": (self.clock_offset_std_s >= 0.0, ">= 0 s"),
        }
        for key, (ok, expected) in checks.items():
            if not ok:
                raise ValueError(
                    f"dataset (synthetic): field '{key}' is {getattr(self, key)!r}; "
                    f"expected {expected}"
                )
        for key in ("traffic_density", "parked_density", "pedestrian_density", "cyclist_density"):
            if getattr(self, key) < 0:
                raise ValueError(f"dataset (synthetic): field '{key}' must be >= 0")

    @property
    def half_corridor_m(self) -> float:
        return (
            self.lane_width_m
            + self.bike_lane_width_m
            + self.parking_width_m
            + (self.sidewalk_width_m)
        )

    @property
    def town_size_m(self) -> float:
        return self.blocks * self.block_size_m

    @classmethod
    def from_dict(cls, data: dict | SyntheticConfig) -> SyntheticConfig:
        """Build from a (Hydra) mapping; unknown keys raise ``ValueError`` naming them."""
        if isinstance(data, SyntheticConfig):
            return data
        data = dict(data)
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(
                f"dataset (synthetic): unknown field(s) {sorted(unknown)}; valid: {sorted(names)}"
            )
        for key in ("vehicle_lidar", "rsu_lidar", "uav_lidar"):
            if key in data and not isinstance(data[key], LidarConfig):
                data[key] = LidarConfig.from_dict(dict(data[key]), where=f"dataset.{key}")
        return cls(**data)

    def to_dict(self) -> dict:
        """The fields as a dict; the time offsets are left out while they are 0, so that caches
        and stores written before those fields existed keep their identity (same frames)."""
        out = asdict(self)
        for key in _TIME_FIELDS:
            if out[key] == 0.0:
                del out[key]
        return out


#: Fields that desynchronise the agents (0: every LiDAR scans at the frame instant).
_TIME_FIELDS = ("sensing_phase_max_s", "clock_offset_std_s")


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


class SyntheticWorld:
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
