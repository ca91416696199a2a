"""The synthetic world's settings: ``SyntheticConfig`` (Hydra group ``dataset/synthetic``), the
object classes' sizes (m) and reflectivities ([0, 1]) and the generator's version (cache keys).

``v2x.datasets.synthetic`` describes the world these settings make.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from v2x.common import check_whole
from v2x.datasets.frame import CLASS_NAMES
from v2x.datasets.lidar import LidarConfig, check_finite

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
