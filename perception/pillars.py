"""PointPillars-style pillar feature net with scatter-based voxelisation (pure torch).

No spconv, no custom CUDA: points are bucketed into pillars by a flat cell index, pillar
statistics come from ``scatter_add`` and per-pillar max pooling from ``scatter_reduce``.
"""

from __future__ import annotations

import torch
from torch import nn

from v2x.perception.bev import BEVGrid

POINT_FEATURES = 9  # x, y, z, intensity, dx/dy/dz to pillar mean, dx/dy to pillar centre


class PillarEncoder(nn.Module):
    """Points → pseudo-image.

    Args:
        grid: the BEV grid.
        out_channels: pillar feature channels ``C``.

    Forward:
        points: ``[S, N, 4]`` float32 (x, y, z above ground, intensity) in the levelled frame.
        mask: ``[S, N]`` bool, valid points.
        returns ``[S, C, H, W]`` float32 (zeros in empty pillars).
    """

    def __init__(self, grid: BEVGrid, out_channels: int = 64) -> None:
        super().__init__()
        self.grid = grid
        self.out_channels = out_channels
        self.linear = nn.Linear(POINT_FEATURES, out_channels, bias=False)
        self.norm = nn.BatchNorm1d(out_channels, eps=1e-3, momentum=0.01)

    def forward(self, points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        grid = self.grid
        s, n, _ = points.shape
        h, w = grid.height, grid.width
        x, y, z = points[..., 0], points[..., 1], points[..., 2]
        ix = torch.floor((x - grid.x_range_m[0]) / grid.resolution_m).long()
        iy = torch.floor((y - grid.y_range_m[0]) / grid.resolution_m).long()
        keep = (
            mask
            & (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
            & (z >= grid.z_range_m[0]) & (z < grid.z_range_m[1])
        )
        sensor = torch.arange(s, device=points.device)[:, None].expand(s, n)
        flat = (sensor * (h * w) + iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1))[keep]
        pts = points[keep]
        num_cells = s * h * w
        # Pillar means of (x, y, z).
        counts = torch.zeros(num_cells, device=points.device).index_add_(
            0, flat, torch.ones_like(flat, dtype=torch.float32)
        )
        sums = torch.zeros(num_cells, 3, device=points.device).index_add_(0, flat, pts[:, :3])
        mean = sums[flat] / counts[flat, None]
        cx = grid.x_range_m[0] + (ix[keep].float() + 0.5) * grid.resolution_m
        cy = grid.y_range_m[0] + (iy[keep].float() + 0.5) * grid.resolution_m
        feats = torch.cat(
            [
                pts,
                pts[:, :3] - mean,
                (pts[:, 0] - cx)[:, None],
                (pts[:, 1] - cy)[:, None],
            ],
            dim=1,
        )
        feats = torch.relu(self.norm(self.linear(feats))) if feats.shape[0] > 1 or not self.training else torch.relu(self.linear(feats))
        pooled = torch.zeros(num_cells, self.out_channels, device=points.device, dtype=feats.dtype)
        pooled = pooled.scatter_reduce(
            0, flat[:, None].expand_as(feats), feats, reduce="amax", include_self=True
        )
        return pooled.view(s, h, w, self.out_channels).permute(0, 3, 1, 2).contiguous()
