"""Average-power normalisation and real ↔ complex packing (v2x.semcom.power)."""

from __future__ import annotations

import pytest
import torch

from v2x.semcom.power import (
    average_power,
    complex_to_real,
    normalize_power,
    prefix_mask,
    real_to_complex,
)


def test_real_complex_pairing_is_adjacent_and_invertible():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.0, -2.0]])
    z = real_to_complex(x)
    expected = torch.tensor([[1 + 2j, 3 + 4j], [-1 + 0.5j, 0 - 2j]], dtype=torch.complex64)
    assert z.dtype == torch.complex64
    assert torch.equal(z, expected)
    assert torch.equal(complex_to_real(z), x)


def test_packing_rejects_bad_input():
    with pytest.raises(ValueError, match="even"):
        real_to_complex(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\[B, 2n\]"):
        real_to_complex(torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="complex"):
        complex_to_real(torch.zeros(2, 2))


def test_unit_power_over_used_symbols_per_transmission():
    g = torch.Generator().manual_seed(0)
    z = torch.complex(torch.randn(5, 300, generator=g), torch.randn(5, 300, generator=g))
    z = z * torch.tensor([1e-3, 1.0, 7.0, 1e3, 0.2]).reshape(-1, 1)  # very different scales
    lengths = torch.tensor([300, 1, 17, 150, 299])
    mask = prefix_mask(lengths, 300)
    out = normalize_power(z, mask)
    for b in range(5):
        used = out[b, : lengths[b]]
        # Independent oracle: mean |x|^2 over the used symbols, in float64.
        assert used.to(torch.complex128).abs().square().mean().item() == pytest.approx(
            1.0, abs=1e-5
        )
        assert torch.all(out[b, lengths[b] :] == 0)
        # Scaling only: the ratio to the input is a positive real constant.
        ratio = used / z[b, : lengths[b]]
        assert torch.allclose(
            ratio.imag, torch.zeros_like(ratio.imag), atol=1e-4 * ratio.real.abs().max()
        )
        assert ratio.real.min() > 0
    assert torch.allclose(average_power(out, mask), torch.ones(5), atol=1e-5)


def test_unit_power_without_mask_and_zero_rows_stay_zero():
    z = torch.zeros(3, 8, dtype=torch.complex64)
    z[1] = 2 + 2j
    out = normalize_power(z)
    assert torch.isfinite(torch.view_as_real(out)).all()
    assert torch.all(out[0] == 0) and torch.all(out[2] == 0)
    assert out[1].abs().square().mean().item() == pytest.approx(1.0, abs=1e-6)
    empty = normalize_power(torch.zeros(0, 8, dtype=torch.complex64))
    assert empty.shape == (0, 8)


def test_normalisation_is_differentiable():
    x = torch.randn(2, 16, requires_grad=True)
    out = normalize_power(real_to_complex(x), prefix_mask(torch.tensor([8, 3]), 8))
    (out.real[:, 0].sum() + out.imag.sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # Unused slots get no gradient.
    assert torch.all(x.grad[1, 6:] == 0)


def test_mask_shape_checked():
    with pytest.raises(ValueError, match="mask"):
        normalize_power(torch.ones(2, 4, dtype=torch.complex64), torch.ones(2, 3, dtype=torch.bool))


def test_prefix_mask_hand_case():
    m = prefix_mask(torch.tensor([0, 2, 4]), 4)
    assert m.tolist() == [[False] * 4, [True, True, False, False], [True] * 4]
