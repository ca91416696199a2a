"""Bilinear ``grid_sample`` whose gradient to the sampled maps is order-independent on the GPU.

torch's CUDA ``grid_sample`` backward adds each output cell's gradient into the four input cells
it read with float atomics, in whatever order the threads run: two training runs differ in the
last bits, and torch's deterministic mode has no replacement (it only warns). Here the forward
is ``F.grid_sample`` itself (the same numbers) and the backward sums the four corner terms of
every input cell in a fixed order without atomics: the terms are stably sorted by the input
cell they land in and each run is summed by ``v2x.perception.segments.segment_sums``, and each
input cell reads its run's sum.
``sample_maps`` (``v2x.perception.warp``) takes this path only where it matters: CUDA, gradients
on, deterministic mode on; the CPU kernel is already deterministic and stays as it was.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from v2x.perception.segments import segment_sums

#: ``grid_sampler_2d`` enums: bilinear interpolation, zeros padding.
_BILINEAR, _ZEROS = 0, 0


def bilinear_sample(maps: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``F.grid_sample(maps, grid, "bilinear", "zeros", align_corners=False)`` with the
    fixed-order backward.

    Args:
        maps: ``[N, C, H, W]`` float32; ``grid``: ``[N, h, w, 2]`` normalised ``(x, y)``.

    Returns:
        ``[N, C, h, w]`` float32.
    """
    return _BilinearSample.apply(maps, grid)


class _BilinearSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, maps: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(maps, grid)
        return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        maps, grid = ctx.saved_tensors
        grad_maps = grad_grid = None
        if ctx.needs_input_grad[0]:
            grad_maps = scatter_bilinear(grad_out, grid, maps.shape)
        if ctx.needs_input_grad[1]:  # each output cell writes its own grid gradient: no atomics
            grad_grid = torch.ops.aten.grid_sampler_2d_backward(
                grad_out, maps, grid, _BILINEAR, _ZEROS, False, [False, True]
            )[1]
        return grad_maps, grad_grid


def scatter_bilinear(grad_out: torch.Tensor, grid: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The gradient of bilinear ``grid_sample`` (zeros padding, ``align_corners=False``) to its
    input: every output cell's ``grad_out [N, C, h, w]`` times each of its four corner weights,
    added into that corner of an ``[N, C, H, W]`` (``shape``) zero map; corners outside the map
    are skipped. Weights as torch's kernel computes them."""
    n, c, hi, wi = shape
    grid = grid.to(grad_out.dtype)
    ix = ((grid[..., 0] + 1) * wi - 1) / 2  # [N, h, w] input pixel coordinates
    iy = ((grid[..., 1] + 1) * hi - 1) / 2
    x0, y0 = ix.floor(), iy.floor()
    x1, y1 = x0 + 1, y0 + 1
    corners = (
        (x0, y0, (x1 - ix) * (y1 - iy)),
        (x1, y0, (ix - x0) * (y1 - iy)),
        (x0, y1, (x1 - ix) * (iy - y0)),
        (x1, y1, (ix - x0) * (iy - y0)),
    )
    g = grad_out.permute(0, 2, 3, 1).reshape(1, -1, c)  # [1, M, C], M = N·h·w output cells
    base = torch.arange(n, device=grad_out.device).view(n, 1, 1) * (hi * wi)
    keys, weights = [], []
    for x, y, weight in corners:
        inside = (x >= 0) & (x < wi) & (y >= 0) & (y < hi)
        keys.append(torch.where(inside, base + (y * wi + x).nan_to_num().long(), -1).reshape(-1))
        weights.append(torch.where(inside, weight, 0.0).reshape(-1))
    key = torch.cat(keys)  # [4M] input cell of each term; -1: outside (adds nothing)
    cells = n * hi * wi
    position = torch.arange(key.numel(), device=key.device)
    key = torch.where(key >= 0, key, cells + position)  # outside: a run of its own, never read
    key, order = torch.sort(key, stable=True)
    corner, cell = order // g.shape[1], order % g.shape[1]
    terms = g[0, cell] * torch.stack(weights)[corner, cell, None]  # [4M, C] in key order
    sums = segment_sums(key, terms)
    wanted = torch.arange(cells, device=key.device)
    first = torch.searchsorted(key, wanted).clamp_max(key.numel() - 1)
    hit = key[first] == wanted
    out = torch.where(hit[:, None], sums[first], 0.0)  # [N·H·W, C]
    return out.view(n, hi, wi, c).permute(0, 3, 1, 2)
