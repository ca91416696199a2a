"""Uniform quantiser and occupancy map (v2x.semcom.quantize)."""

from __future__ import annotations

import pytest
import torch

from v2x.semcom.quantize import dequantize, occupancy, quantize, quantize_occupied


def _sparse_features(
    seed: int = 0, b: int = 3, c: int = 5, h: int = 12, w: int = 9
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g) * torch.linspace(0.1, 10.0, c).reshape(1, c, 1, 1)
    cells = torch.rand(b, 1, h, w, generator=g) < 0.4
    return x * cells


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("bits", [1, 3, 8, 12])
def test_error_bounded_by_half_step_and_empty_cells_exact(bits: int, per_channel: bool):
    x = _sparse_features()
    q = quantize(x, bits, per_channel)
    xr = dequantize(q)
    occ = occupancy(x)
    # Independent oracle: the step is (max - min) / (2^bits - 1) over occupied cells, by hand.
    for i in range(x.shape[0]):
        vals = x[i][:, occ[i]]  # [C, cells]
        lo, hi = (vals.amin(1), vals.amax(1)) if per_channel else (vals.min(), vals.max())
        step = (hi - lo) / (2**bits - 1)
        assert torch.allclose(q.step[i], torch.as_tensor(step).reshape(-1), rtol=1e-6)
        err = (xr[i][:, occ[i]] - vals).abs()
        bound = torch.as_tensor(step).reshape(-1, 1) / 2 if per_channel else step / 2
        assert bool((err <= bound * (1 + 1e-5) + 1e-6).all())
    assert bool((xr[~occ[:, None].expand_as(x)] == 0).all())
    assert int(q.levels.min()) >= 0 and int(q.levels.max()) <= 2**bits - 1
    assert int(q.levels.max()) == 2**bits - 1  # the maximum maps to the top level


def test_constant_and_all_zero_maps():
    x = torch.zeros(2, 3, 4, 4)
    x[0, :, 1, 2] = 7.5  # one occupied cell, constant value: step falls back to 1, exact
    q = quantize(x, 4)
    assert torch.equal(dequantize(q), x)
    assert not bool(q.occupied[1].any())


def test_reconstruction_error_shrinks_with_bits():
    x = _sparse_features(1)
    errs = [(dequantize(quantize(x, b)) - x).abs().max().item() for b in (2, 4, 6, 8)]
    assert all(a > b for a, b in zip(errs, errs[1:]))


def test_bad_input():
    with pytest.raises(ValueError, match="bits"):
        quantize(torch.zeros(1, 1, 2, 2), 0)
    with pytest.raises(ValueError, match="bits"):
        quantize(torch.zeros(1, 1, 2, 2), 17)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        quantize(torch.zeros(2, 2), 4)


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("bits", [1, 4, 9, 16])
def test_quantize_occupied_equals_quantize_on_the_occupied_cells(bits: int, per_channel: bool):
    """Oracle: ``quantize`` of the whole map, read at its occupied cells (raster order)."""
    x = _sparse_features(seed=bits, b=1, c=6, h=11, w=7)
    x[0, 2] = 0.0  # a channel empty at every cell
    x[0, 4] = 3.5  # a constant channel (zero span: step 1)
    for fm in (x[0], torch.zeros_like(x[0]), x[0, :1]):
        q = quantize(fm[None], bits, per_channel)
        occ = quantize_occupied(fm, bits, per_channel)
        assert torch.equal(occ.occupied, q.occupied[0])
        assert torch.equal(occ.levels, q.levels[0][:, q.occupied[0]])
        assert torch.equal(occ.offset, q.offset[0]) and torch.equal(occ.step, q.step[0])
        assert occ.bits == bits
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        quantize_occupied(x, bits)
