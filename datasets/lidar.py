"""LiDAR beam patterns and the sensor model applied to ray-cast hits.

A ``LidarModel`` is a set of unit ray directions in the sensor frame (x forward, z up) plus the
physics applied to the returns: range limits, Gaussian range noise, random dropout and an
intensity model. Rotating sensors are ``beams × columns`` grids of (elevation, azimuth); the UAV
pattern is a downward-looking cone (all elevations below the horizon).

Presets (vertical field of view in degrees, elevations evenly spaced):

======== ===== ================ ==========================================
name     beams elevation (deg)  models
======== ===== ================ ==========================================
vlp16    16    -15 .. +15       Velodyne VLP-16 (Puck)
hdl32    32    -30.67 .. +10.67 Velodyne HDL-32E
hdl64    64    -24.9 .. +2.0    Velodyne HDL-64E
os128    128   -22.5 .. +22.5   Ouster OS1-128 / 128-beam rotating
rsu32    32    -25 .. +5        roadside unit, tilted towards the road
uav_down 64    -88 .. -20       UAV, downward-looking cone (just off nadir: no coincident rays)
======== ===== ================ ==========================================
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from v2x.common import check_whole

LIDAR_PRESETS: dict[str, tuple[int, float, float]] = {
    "vlp16": (16, -15.0, 15.0),
    "hdl32": (32, -30.67, 10.67),
    "hdl64": (64, -24.9, 2.0),
    "os128": (128, -22.5, 22.5),
    "rsu32": (32, -25.0, 5.0),
    "uav_down": (64, -88.0, -20.0),
}


@dataclass
class LidarConfig:
    """Config of one LiDAR (a Hydra-friendly dataclass).

    Attributes:
        preset: name in ``LIDAR_PRESETS`` giving beams and vertical field of view.
        columns: azimuth steps per revolution (horizontal resolution = 360 / columns degrees).
        beams: override of the preset's beam count (0 = keep the preset's).
        fov_down_deg, fov_up_deg: override of the preset's elevation range (None = keep).
        max_range_m: returns farther than this are lost.
        min_range_m: returns closer than this are lost (the sensor's blind zone).
        range_noise_m: standard deviation of the Gaussian noise added along each ray.
        dropout: probability that a valid return is lost (i.i.d. per ray).
        intensity_noise: standard deviation of the additive intensity noise.
    """

    preset: str = "hdl32"
    columns: int = 1024
    beams: int = 0
    fov_down_deg: float | None = None
    fov_up_deg: float | None = None
    max_range_m: float = 70.0
    min_range_m: float = 0.5
    range_noise_m: float = 0.02
    dropout: float = 0.0
    intensity_noise: float = 0.02

    def __post_init__(self) -> None:
        """Refuse a value the sensor model cannot use, naming the field (``lidar: …``)."""
        check_whole("lidar: field 'columns'", self.columns, 1)
        check_whole("lidar: field 'beams'", self.beams, 0)
        for name in ("fov_down_deg", "fov_up_deg"):
            if getattr(self, name) is not None:
                check_finite(f"lidar: field '{name}'", getattr(self, name), -90.0, 90.0)
        for name in ("max_range_m", "min_range_m", "range_noise_m", "intensity_noise"):
            check_finite(f"lidar: field '{name}'", getattr(self, name))
        if self.max_range_m <= self.min_range_m:
            raise ValueError(
                "lidar: need 0 <= min_range_m < max_range_m, "
                f"got {self.min_range_m}, {self.max_range_m}"
            )
        if not check_finite("lidar: field 'dropout'", self.dropout, 0.0, 1.0) < 1.0:
            raise ValueError(f"lidar: field 'dropout' must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_dict(cls, data: dict | LidarConfig, where: str = "lidar") -> LidarConfig:
        """Build from a mapping, rejecting unknown keys and bad values with a message naming
        them (``where``: e.g. ``dataset.vehicle_lidar``)."""
        if isinstance(data, LidarConfig):
            return data
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; valid: {sorted(names)}")
        try:
            return cls(**dict(data))
        except ValueError as exc:
            raise ValueError(str(exc).replace("lidar:", f"{where}:", 1)) from None

    def to_dict(self) -> dict:
        """The fields as a plain dict (``from_dict`` builds the same config back)."""
        return asdict(self)


def check_finite(where: str, value: object, least: float = 0.0, most: float = math.inf) -> float:
    """``float(value)`` when it is a finite real number in ``[least, most]``; else ``ValueError``
    naming ``where`` (e.g. ``"lidar: field 'max_range_m'"``) and the value (NaN fails every
    comparison, so a plain ``value < 0`` test would let it through)."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (real and math.isfinite(value) and least <= value <= most):
        bounds = f">= {least:g}" if most == math.inf else f"in [{least:g}, {most:g}]"
        raise ValueError(f"{where} must be a finite number {bounds}, got {value!r}")
    return float(value)


@dataclass
class LidarModel:
    """A LiDAR's ray pattern and return model.

    Attributes:
        directions: ``[R, 3]`` float64 unit rays in the sensor frame, ordered beam-major
            (``R = beams * columns``, ray ``b * columns + c``).
        beams, columns: pattern grid size.
        config: the ``LidarConfig`` it was built from.
    """

    directions: np.ndarray
    beams: int
    columns: int
    config: LidarConfig = field(default_factory=LidarConfig)

    @property
    def num_rays(self) -> int:
        return int(self.directions.shape[0])

    def apply(
        self,
        ranges: np.ndarray,
        hit: np.ndarray,
        cos_incidence: np.ndarray,
        reflectivity: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Turn geometric hits into returns.

        Args:
            ranges: ``[R]`` true hit distance in metres (``inf`` for a miss).
            hit: ``[R]`` bool, the ray hit something.
            cos_incidence: ``[R]`` |cos| of the angle between ray and surface normal.
            reflectivity: ``[R]`` surface reflectivity in [0, 1].
            rng: generator for noise and dropout (seeded by the caller).

        Returns:
            ``points`` ``[N, 4]`` float32 (x, y, z, intensity) in the sensor frame and ``keep``
            ``[R]`` bool, the rays that produced those points (in order).
        """
        cfg = self.config
        r = ranges.shape[0]
        noisy = ranges + rng.normal(0.0, cfg.range_noise_m, r) if cfg.range_noise_m > 0 else ranges
        keep = hit & np.isfinite(ranges) & (noisy <= cfg.max_range_m) & (noisy >= cfg.min_range_m)
        if cfg.dropout > 0:
            keep &= rng.random(r) >= cfg.dropout
        falloff = 1.0 / (1.0 + (ranges / max(cfg.max_range_m, 1e-6)) ** 2)
        intensity = reflectivity * (0.3 + 0.7 * cos_incidence) * falloff
        if cfg.intensity_noise > 0:
            intensity = intensity + rng.normal(0.0, cfg.intensity_noise, r)
        idx = np.flatnonzero(keep)
        pts = np.empty((idx.size, 4), dtype=np.float32)
        pts[:, :3] = self.directions[idx] * noisy[idx, None]
        pts[:, 3] = np.clip(intensity[idx], 0.0, 1.0)
        return pts, keep


def rotating_directions(
    beams: int, columns: int, fov_down_deg: float, fov_up_deg: float
) -> np.ndarray:
    """Unit rays of a rotating multi-beam LiDAR.

    Elevations are evenly spaced from ``fov_down_deg`` to ``fov_up_deg`` inclusive; azimuths
    are ``2π c / columns`` for ``c = 0 .. columns-1`` starting at +x, counter-clockwise.

    Returns:
        ``[beams * columns, 3]`` float64, beam-major.
    """
    if beams < 1 or columns < 1:
        raise ValueError(f"lidar: 'beams' and 'columns' must be >= 1, got {beams}, {columns}")
    if not -90.0 <= fov_down_deg <= fov_up_deg <= 90.0:
        raise ValueError(
            f"lidar: need -90 <= fov_down_deg <= fov_up_deg <= 90, got {fov_down_deg}, {fov_up_deg}"
        )
    elev = np.deg2rad(np.linspace(fov_down_deg, fov_up_deg, beams))
    azim = 2.0 * np.pi * np.arange(columns) / columns
    el, az = np.meshgrid(elev, azim, indexing="ij")
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
    return dirs.reshape(-1, 3)


def build_lidar(config: LidarConfig | dict | str) -> LidarModel:
    """Build a ``LidarModel`` from a config, a mapping or a preset name."""
    if isinstance(config, str):
        config = LidarConfig(preset=config)
    config = LidarConfig.from_dict(config)
    if config.preset not in LIDAR_PRESETS:
        raise ValueError(
            f"lidar: field 'preset' must be one of {sorted(LIDAR_PRESETS)}, got {config.preset!r}"
        )
    beams, down, up = LIDAR_PRESETS[config.preset]
    beams = config.beams or beams
    down = down if config.fov_down_deg is None else config.fov_down_deg
    up = up if config.fov_up_deg is None else config.fov_up_deg
    dirs = rotating_directions(beams, config.columns, down, up)
    return LidarModel(directions=dirs, beams=beams, columns=config.columns, config=config)
