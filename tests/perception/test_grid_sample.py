"""The fixed-order bilinear ``grid_sample``: its forward is torch's, its gradients equal torch's
backward (the oracle), and ``sample_maps`` takes it only on CUDA with gradients in torch's
deterministic mode (where, on a GPU, two backward passes agree to the bit)."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from v2x.perception.grid_sample import bilinear_sample
from v2x.perception.warp import sample_maps


def _inputs(device: str = "cpu", n: int = 2, c: int = 3, size: tuple = (5, 7)):
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(n, c, *size, generator=g).to(device)
    grid = (torch.rand(n, 4, 6, 2, generator=g) * 2.6 - 1.3).to(device)  # some outside [-1, 1]
    grid[0, 0, 0] = torch.tensor([-1.0, 1.0])  # exactly on the corners and on a cell centre
    grid[0, 0, 1] = torch.tensor([1.0, -1.0])
    grid[0, 0, 2] = torch.tensor([0.0, 0.0])
    grid[1, 0, 0] = torch.tensor([float("nan"), 0.0])  # a NaN position reads and gets nothing
    return maps, grid


@contextlib.contextmanager
def _deterministic():
    """torch's deterministic mode for the block, then the mode the session had."""
    state = torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(state, warn_only=warn)


def _grads(fn, maps, grid, upstream):
    maps = maps.clone().requires_grad_(True)
    grid = grid.clone().requires_grad_(True)
    out = fn(maps, grid)
    (out * upstream).nan_to_num().sum().backward()
    return out.detach(), maps.grad, grid.grad


def test_forward_is_torchs_and_the_gradients_equal_torchs_backward():
    maps, grid = _inputs()
    upstream = torch.randn(2, 3, 4, 6, generator=torch.Generator().manual_seed(1))

    def torchs(m, g):
        return F.grid_sample(m, g, mode="bilinear", padding_mode="zeros", align_corners=False)

    ours = _grads(bilinear_sample, maps, grid, upstream)
    ref = _grads(torchs, maps, grid, upstream)
    assert torch.equal(ours[0].nan_to_num(), ref[0].nan_to_num())
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours[2].nan_to_num(), ref[2].nan_to_num(), rtol=0, atol=0)


def test_sample_maps_keeps_torchs_kernel_on_the_cpu(monkeypatch):
    import v2x.perception.warp as warp

    monkeypatch.setattr(warp, "bilinear_sample", lambda *a: pytest.fail("not on the CPU"))
    maps, grid = _inputs()
    with _deterministic():
        sample_maps(maps.requires_grad_(True), grid).sum().backward()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_the_gpu_the_map_gradient_is_the_same_bits_every_time():
    maps, grid = _inputs("cuda", n=4, c=64, size=(96, 96))
    grid = torch.rand(4, 96, 96, 2, device="cuda") * 0.5  # many outputs share input cells
    upstream = torch.randn(4, 64, 96, 96, device="cuda")
    with _deterministic():
        first = _grads(sample_maps, maps, grid, upstream)[1]
        for _ in range(3):
            assert torch.equal(_grads(sample_maps, maps, grid, upstream)[1], first)
    # Accuracy against a float64 oracle: no worse than torch's own float32 kernel. (The two float32
    # results differ from each other by up to ~2.5e-5 on an H200: each input cell sums dozens of
    # terms in a different order, so comparing them to each other at 1e-5 tested rounding noise.)
    def torchs(m, g):
        return F.grid_sample(m, g, align_corners=False)

    exact = _grads(torchs, maps.double(), grid.double(), upstream.double())[1]
    torch32 = _grads(torchs, maps, grid, upstream)[1]
    ours_err = (first.double() - exact).abs()
    torch_err = (torch32.double() - exact).abs()
    assert ours_err.max() <= 2 * torch_err.max() + 1e-12
    assert ours_err.mean() <= 2 * torch_err.mean() + 1e-12


def test_the_map_gradient_with_many_outputs_per_input_cell_matches_torchs():
    """A zoomed grid: up to ~16 output cells read each input cell (long runs in the sort)."""
    g = torch.Generator().manual_seed(3)
    maps = torch.randn(2, 5, 12, 12, generator=g, dtype=torch.float64)
    grid = torch.rand(2, 24, 24, 2, generator=g, dtype=torch.float64) * 0.5
    upstream = torch.randn(2, 5, 24, 24, generator=g, dtype=torch.float64)

    def torchs(m, gr):
        return F.grid_sample(m, gr, mode="bilinear", padding_mode="zeros", align_corners=False)

    ours = _grads(bilinear_sample, maps, grid, upstream)[1]
    ref = _grads(torchs, maps, grid, upstream)[1]
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
