"""``v2x.perception.ego_fusion.fuse_at_ego``: the ego's maps shared by blocks of conditions, and
which path it takes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from v2x.common import triton_available
from v2x.perception.bev import BEVGrid
from v2x.perception.ego_fusion import _kernel_mode, fuse_at_ego
from v2x.perception.fusion import build_fusion
from v2x.perception.warp import relative_level_transforms, warp_sampling_grid


class _Head(nn.Module):
    """A stand-in for the detector: its head returns two slices of the fused map."""

    def head(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return fused[:, :2], fused[:, 2:]


def _inputs(e: int, u: int, m: int, c: int = 6, seed: int = 0):
    grid = BEVGrid(x_range_m=(-6.4, 6.4), y_range_m=(-3.2, 3.2))
    h, w, n = 8, 16, e * u
    g = torch.Generator().manual_seed(seed)
    poses = torch.eye(4, dtype=torch.float64).repeat(n, m + 1, 1, 1)
    poses[..., 0, 3] = torch.rand(n, m + 1, generator=g, dtype=torch.float64) * 4.0
    if m == 0:  # the ego alone
        sample_grid, coverage = (
            torch.zeros(0, h, w, 2),
            torch.zeros(n, 0, 1, h, w, dtype=torch.bool),
        )
    else:
        rel = relative_level_transforms(poses)[:, 1:]
        sample_grid, coverage = warp_sampling_grid(rel, grid, h, w)
    valid = coverage.view(n, m, 1, h, w) & (torch.rand(n, m, 1, h, w, generator=g) < 0.7)
    ego = torch.randn(e, 1, c, h, w, generator=g)
    ego[0, 0, 1, 2, 3] = float("nan")
    return ego, torch.randn(n, m, c, h, w, generator=g), sample_grid, valid


@pytest.mark.parametrize("fusion", ["max", "mean", "attention", "none"])
@pytest.mark.parametrize("m", [0, 3])
def test_ego_rows_are_shared_by_the_blocks_of_conditions(fusion: str, m: int) -> None:
    """``E`` ego maps for ``N = u·E`` fused maps give what ``E = N`` (the ego repeated per block,
    as the pipeline built it before) gives, bit for bit."""
    ego, collab, sample_grid, valid = _inputs(e=2, u=3, m=m)
    fuse = build_fusion(fusion)
    shared = fuse_at_ego(_Head(), fuse, ego, collab, sample_grid, valid)
    repeated = fuse_at_ego(_Head(), fuse, ego.repeat(3, 1, 1, 1, 1), collab, sample_grid, valid)
    for a, b in zip(shared, repeated):
        assert a.shape[0] == 6
        assert torch.equal(a, b)


def test_ego_rows_must_divide_the_fused_maps() -> None:
    ego, collab, sample_grid, valid = _inputs(e=2, u=3, m=2)
    with pytest.raises(ValueError, match="4 ego maps do not divide 6"):
        fuse_at_ego(
            _Head(), build_fusion("max"), ego.repeat(2, 1, 1, 1, 1), collab, sample_grid, valid
        )


def test_the_kernel_is_taken_only_for_cuda_inference_of_max_and_attention() -> None:
    """On CPU tensors never; the fusion's ``forward`` decides the mode (subclasses that keep
    max's ``forward`` are max), and other fusions have none."""
    ego, collab, _, _ = _inputs(e=1, u=1, m=1)
    for name in ("max", "attention", "mean", "max_extrapolated"):
        assert _kernel_mode(build_fusion(name), ego, collab) is None  # CPU
    if triton_available():
        ego, collab = ego.cuda(), collab.cuda()
        modes = {
            n: _kernel_mode(build_fusion(n), ego, collab)
            for n in ("max", "attention", "mean", "max_extrapolated")
        }
        assert modes == {
            "max": "max",
            "attention": "attention",
            "mean": None,
            "max_extrapolated": "max",
        }
        collab.requires_grad_(True)
        assert _kernel_mode(build_fusion("max"), ego, collab) is None  # training: torch
