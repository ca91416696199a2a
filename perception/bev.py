"""The BEV grid and the levelled agent frame every BEV feature map lives in.

Each agent's BEV frame is its sensor frame with roll and pitch removed (gravity-aligned, yaw
kept), origin at the sensor, and z measured as height above the ground. This makes a
downward-looking UAV LiDAR and an elevated RSU LiDAR produce maps that warp onto the ego's
with a 2D rigid transform (x, y, yaw).

Tensor layout: ``[..., C, H, W]`` with H along +y and W along +x; cell ``(iy, ix)`` has its
centre at ``x = x_min + (ix + 0.5) * res``, ``y = y_min + (iy + 0.5) * res``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BEVGrid:
    """Pillar grid around an agent, in metres.

    Attributes:
        x_range_m, y_range_m: (min, max) extents of the grid.
        z_range_m: (min, max) height above ground of points kept.
        resolution_m: pillar edge length (0.4 m as in PointPillars / OpenCOOD).
        ground_z_m: world z of the ground (the height reference for ``z_range_m``).
    """

    x_range_m: tuple[float, float] = (-51.2, 51.2)
    y_range_m: tuple[float, float] = (-51.2, 51.2)
    z_range_m: tuple[float, float] = (-1.0, 5.0)
    resolution_m: float = 0.4
    ground_z_m: float = 0.0

    def __post_init__(self) -> None:
        for name in ("x_range_m", "y_range_m", "z_range_m"):
            lo, hi = getattr(self, name)
            if not (hi > lo and math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(
                    f"BEVGrid: field '{name}' must be (min, max) with max > min, both finite, "
                    f"got {getattr(self, name)!r}"
                )
        for name, value in (("resolution_m", self.resolution_m), ("ground_z_m", self.ground_z_m)):
            if not math.isfinite(value) or (name == "resolution_m" and value <= 0):
                expected = "a finite number" + (" > 0" if name == "resolution_m" else "")
                raise ValueError(f"BEVGrid: field '{name}' must be {expected}, got {value!r}")
        for name, (lo, hi) in (("x_range_m", self.x_range_m), ("y_range_m", self.y_range_m)):
            cells = (hi - lo) / self.resolution_m
            if abs(cells - round(cells)) > 1e-6:
                raise ValueError(f"BEVGrid: field '{name}' must span a whole number of cells")

    @property
    def width(self) -> int:
        return round((self.x_range_m[1] - self.x_range_m[0]) / self.resolution_m)

    @property
    def height(self) -> int:
        return round((self.y_range_m[1] - self.y_range_m[0]) / self.resolution_m)

    def cell_centers(self, stride: int = 1, device: torch.device | None = None) -> torch.Tensor:
        """``[H/stride, W/stride, 2]`` float32 (x, y) centres of the cells of a strided map."""
        res = self.resolution_m * stride
        xs = self.x_range_m[0] + (torch.arange(self.width // stride, device=device) + 0.5) * res
        ys = self.y_range_m[0] + (torch.arange(self.height // stride, device=device) + 0.5) * res
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([xx, yy], dim=-1).float()


def yaw_of(pose: torch.Tensor) -> torch.Tensor:
    """``[...]`` yaw (rad) of the x axis of ``pose [..., 4, 4]`` projected on the ground plane.

    For a sensor looking straight down the x axis may be vertical; the projection of the
    y axis is then used (rotated back by −π/2).
    """
    x_axis = pose[..., :3, 0]
    y_axis = pose[..., :3, 1]
    yaw_x = torch.atan2(x_axis[..., 1], x_axis[..., 0])
    yaw_y = torch.atan2(y_axis[..., 1], y_axis[..., 0]) - math.pi / 2
    horizontal = x_axis[..., :2].norm(dim=-1) > 0.2
    return torch.where(horizontal, yaw_x, yaw_y)


def level_pose(pose: torch.Tensor) -> torch.Tensor:
    """``[..., 4, 4]`` levelled BEV frame of each sensor: same origin, yaw only, z up."""
    yaw = yaw_of(pose)
    c, s = torch.cos(yaw), torch.sin(yaw)
    out = torch.zeros_like(pose)
    out[..., 0, 0], out[..., 0, 1] = c, -s
    out[..., 1, 0], out[..., 1, 1] = s, c
    out[..., 2, 2] = 1.0
    out[..., 3, 3] = 1.0
    out[..., :3, 3] = pose[..., :3, 3]
    return out


def points_to_level_frame(points: torch.Tensor, pose: torch.Tensor, ground_z_m: float) -> torch.Tensor:
    """Express sensor-frame points in the agent's levelled BEV frame.

    Args:
        points: ``[B, A, N, 4]`` float32 (x, y, z, intensity) in each sensor frame.
        pose: ``[B, A, 4, 4]`` float64 sensor → world.
        ground_z_m: world z of the ground.

    Returns:
        ``[B, A, N, 4]`` float32 with x, y in the levelled frame and z as height above ground.
    """
    level = level_pose(pose)
    # sensor → level = level^-1 @ pose; only the rotation matters (same origin).
    rot = level[..., :3, :3].transpose(-1, -2) @ pose[..., :3, :3]
    xyz = torch.einsum("baij,banj->bani", rot.float(), points[..., :3])
    height = (pose[..., 2, 3] - ground_z_m).float()
    z = xyz[..., 2] + height[..., None]
    return torch.cat([xyz[..., :2], z[..., None], points[..., 3:4]], dim=-1)
