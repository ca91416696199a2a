"""PointPillars-style pillar feature net with scatter-based voxelisation (pure torch).

No spconv, no custom CUDA: points are bucketed into pillars by a flat cell index, pillar
statistics come from ``index_add_`` (on CUDA in torch's deterministic mode: fixed-order sums
over the points sorted by pillar, ``v2x.perception.segments``) and per-pillar max pooling from
``scatter_reduce``.
"""

from __future__ import annotations

import torch
from torch import nn

from v2x.perception.bev import BEVGrid
from v2x.perception.segments import sums_by_key

POINT_FEATURES = 9  # x, y, z, intensity, dx/dy/dz to pillar mean, dx/dy to pillar centre
#: Rows past the pillars that the eval path's dropped points are spread over
#: (``PillarEncoder._forward_static``): few enough to stay small (1 MiB at 64 channels), many
#: enough that no row's atomic maxima queue up.
DUMP_ROWS = 4096


def sorted_pillar_sums(points: torch.Tensor) -> bool:
    """Whether the pillar sums take the sorted fixed-order path: CUDA in deterministic mode."""
    return points.is_cuda and torch.are_deterministic_algorithms_enabled()


class PillarEncoder(nn.Module):
    """Points → pseudo-image.

    Args:
        grid: the BEV grid.
        out_channels: pillar feature channels ``C``.

    Forward:
        points: ``[S, N, 4]`` float32 (x, y, z above ground, intensity) in the levelled frame.
        mask: ``[S, N]`` bool, valid points.
        returns ``[S, C, H, W]`` float32 (zeros in empty pillars; the autocast dtype under
        ``torch.autocast``).

    Training runs the kept points only; eval mode runs a fixed-shape path with the same result
    (``_forward_static``) that CUDA graphs and ``torch.compile`` can capture whole.
    """

    def __init__(self, grid: BEVGrid, out_channels: int = 64) -> None:
        super().__init__()
        self.grid = grid
        self.out_channels = out_channels
        self.linear = nn.Linear(POINT_FEATURES, out_channels, bias=False)
        self.norm = nn.BatchNorm1d(out_channels, eps=1e-3, momentum=0.01)
        # return the pseudo-image with channels-last strides (CoopDetector.configure_inference)
        self.channels_last = False

    def forward(self, points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self._forward_masked(points, mask)
        return self._forward_static(points, mask)

    def _cells(self, points: torch.Tensor, mask: torch.Tensor):
        """Pillar column/row of every point ``[S, N]`` int64 and whether it is kept ``[S, N]``."""
        grid = self.grid
        x, y, z = points[..., 0], points[..., 1], points[..., 2]
        ix = torch.floor((x - grid.x_range_m[0]) / grid.resolution_m).long()
        iy = torch.floor((y - grid.y_range_m[0]) / grid.resolution_m).long()
        h, w = grid.height, grid.width
        keep = (
            mask
            & (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
            & (z >= grid.z_range_m[0]) & (z < grid.z_range_m[1])
        )  # fmt: skip
        return ix, iy, keep

    def _point_features(
        self, pts: torch.Tensor, mean: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor
    ) -> torch.Tensor:
        """``[P, 9]`` decorated points (module constant ``POINT_FEATURES``) from ``pts [P, 4]``,
        their pillar means ``[P, 3]`` and pillar indices ``[P]``."""
        grid = self.grid
        cx = grid.x_range_m[0] + (ix.float() + 0.5) * grid.resolution_m
        cy = grid.y_range_m[0] + (iy.float() + 0.5) * grid.resolution_m
        return torch.cat(
            [pts, pts[:, :3] - mean, (pts[:, 0] - cx)[:, None], (pts[:, 1] - cy)[:, None]], dim=1
        )

    def _to_image(self, pooled: torch.Tensor, s: int) -> torch.Tensor:
        """``[S·H·W, C]`` pillar rows → ``[S, C, H, W]`` (channels-last strides if
        ``self.channels_last``: the permuted view already has them, no copy)."""
        image = pooled.view(s, self.grid.height, self.grid.width, self.out_channels)
        image = image.permute(0, 3, 1, 2)
        return image if self.channels_last else image.contiguous()

    def _decorated(
        self, points: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every point's pillar row ``flat [S·N]`` int64 (dropped points → the extra "dump" row
        ``S·H·W``), whether it is kept ``[S·N]`` bool, and its decorated features ``[S·N, 9]``
        (``_point_features``; dropped points zeroed first, so they may hold anything). Fixed
        shapes: no boolean indexing, no host synchronisation."""
        grid = self.grid
        s, n, _ = points.shape
        h, w = grid.height, grid.width
        ix, iy, keep = self._cells(points, mask)
        num_cells = s * h * w
        sensor = torch.arange(s, device=points.device)[:, None]
        flat = sensor * (h * w) + iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)
        flat = torch.where(keep, flat, num_cells).reshape(-1)  # dropped points -> dump row
        pts = torch.where(keep[..., None], points, 0.0).reshape(-1, points.shape[-1])
        if sorted_pillar_sums(points):
            # Fixed-order sums without atomics and without torch's sort-based index_add_ (which
            # adds the dump row's many padding points in one thread): every dropped point is a
            # pillar of its own, so no pillar has more than n points.
            keys = torch.where(
                keep.reshape(-1), flat, num_cells + torch.arange(s * n, device=points.device)
            )
            sums, counts = sums_by_key(keys, pts[:, :3], longest=n)
            mean = sums / counts[:, None].clamp_min(1)
        else:
            counts = torch.zeros(num_cells + 1, device=points.device).index_add_(
                0, flat, keep.reshape(-1).float()
            )
            sums = torch.zeros(num_cells + 1, 3, device=points.device).index_add_(
                0, flat, pts[:, :3]
            )
            mean = sums[flat] / counts[flat, None].clamp_min(1.0)
        return (
            flat,
            keep.reshape(-1),
            self._point_features(pts, mean, ix.reshape(-1), iy.reshape(-1)),
        )

    def _forward_masked(self, points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Training path: batch-norm statistics over the kept points only. The linear layer runs
        on every point, the same matrix product as ``_forward_static``'s, so the kept rows carry
        its exact bits (a BLAS may round a row differently in a product of another shape)."""
        s = points.shape[0]
        num_cells = s * self.grid.height * self.grid.width
        flat, keep, feats = self._decorated(points, mask)
        feats, flat = self.linear(feats)[keep], flat[keep]
        feats = (
            torch.relu(self.norm(feats))
            if feats.shape[0] > 1 or not self.training
            else torch.relu(feats)
        )
        pooled = torch.zeros(num_cells, self.out_channels, device=points.device, dtype=feats.dtype)
        pooled = pooled.scatter_reduce(
            0, flat[:, None].expand_as(feats), feats, reduce="amax", include_self=True
        )
        return self._to_image(pooled, s)

    def _forward_static(self, points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Inference path with fixed shapes (no boolean indexing, no host synchronisation: what
        CUDA graphs and ``torch.compile`` need): every point goes through the pillar net and the
        dropped ones are scattered into "dump" rows that are cut off (``DUMP_ROWS``). The kept
        points' sums, means and maxima are those of the masked path (eval-mode batch norm is
        per point).
        """
        s = points.shape[0]
        num_cells = s * self.grid.height * self.grid.width
        flat, keep, feats = self._decorated(points, mask)
        feats = torch.relu(self.norm(self.linear(feats)))
        # The dropped points (padding, out of range) go to DUMP_ROWS rows cut off below, in
        # turn: all in one row, their atomic maxima on its C values ran one after another (on
        # an H200, 15 ms of a 16-frame, five-agent batch's encoding; the maxima are the same).
        dump = min(DUMP_ROWS, flat.numel())
        spread = torch.arange(flat.numel(), device=flat.device).remainder_(dump).add_(num_cells)
        rows = torch.where(keep, flat, spread)
        pooled = torch.zeros(
            num_cells + dump, self.out_channels, device=points.device, dtype=feats.dtype
        )
        pooled.scatter_reduce_(  # in place: no copy of the S·H·W·C map
            0, rows[:, None].expand_as(feats), feats, reduce="amax", include_self=True
        )
        return self._to_image(pooled[:num_cells], s)
