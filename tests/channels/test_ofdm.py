"""OFDM over TDL/CDL through Sionna, hidden behind the [B, n] channel interface."""

from __future__ import annotations

import math

import pytest
import torch

from v2x.channels import build_channel, equalize


def bpsk(batch: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    bits = torch.randint(0, 2, (batch, n))
    return bits, (1.0 - 2.0 * bits).to(torch.complex64)


def test_tdl_perfect_csi_ber_is_rayleigh_and_accounting() -> None:
    """TDL-A taps are Rayleigh, so each RE is CN(0, 1): E|h|² = 1 and BPSK BER = ½(1 − √(γ/(1+γ))).

    Each row is one grid with its own channel realisation, so the per-row statistics are i.i.d.
    and their standard error is std/√rows (taken from the sample: the REs of one grid are
    strongly correlated, 72 subcarriers × 30 kHz being narrow against a 300 ns delay spread, so
    a grid is worth about one independent |h|²). Tolerances are 5 of those σ. Seeded: Sionna's
    generator follows torch's (``sionna_rng``), so this test gives the same numbers in any order.
    """
    torch.manual_seed(0)
    ch = build_channel(
        "tdl",
        model="A",
        delay_spread_s=300e-9,
        speed_mps=0.0,
        estimator="perfect",
        equalizer="none",
    )
    nd = ch.data_per_grid()
    assert nd == 72 * 12  # 14 symbols, 2 pilot symbols
    rows = 4000
    bits, x = bpsk(rows, nd)
    g = 10.0
    y, st = ch(x, 10 * math.log10(g))
    assert y.shape == x.shape and st.h.shape == x.shape
    assert st.extra["num_grids"] == 1  # one grid (one realisation) per row
    power = st.h.abs().square().double().mean(dim=1)
    p_mean, p_sigma = float(power.mean()), float(power.std()) / math.sqrt(rows)
    assert 5 * p_sigma < 0.1  # ≈ 0.013: the check resolves E|h|² to better than ±0.1
    assert abs(p_mean - 1.0) < 5 * p_sigma, (p_mean, p_sigma)
    x_hat, _ = equalize(y, st, "zf")
    per_row = ((x_hat.real < 0).long() != bits).double().mean(dim=1)
    ber, sigma = float(per_row.mean()), float(per_row.std()) / math.sqrt(rows)
    oracle = 0.5 * (1 - math.sqrt(g / (1 + g)))
    assert 5 * sigma < 0.15 * oracle  # ≈ 0.0026 against 0.0233
    assert abs(ber - oracle) < 5 * sigma, (ber, oracle, sigma)
    assert st.extra["resource_elements"] == 14 * 72
    assert st.extra["time_samples"] == 14 * (72 + 6)


@pytest.mark.parametrize("equalizer", ["lmmse", "none"])
def test_ls_estimation_effective_noise_is_consistent(equalizer: str) -> None:
    torch.manual_seed(1)
    ch = build_channel("tdl", model="C", delay_spread_s=100e-9, speed_mps=30.0, equalizer=equalizer)
    x = torch.view_as_complex(torch.randn(64, 1000, 2) * math.sqrt(0.5))
    y, st = ch(x, 15.0)
    assert st.extra["num_grids"] == 2
    x_hat, no_eff = equalize(y, st, "zf")
    assert st.equalized == (equalizer == "lmmse")
    assert st.err_var is not None and float(st.err_var.mean()) > 0
    # Sionna's LMMSE output for SISO is the unbiased one-tap estimate y/ĥ with
    # no_eff = (no + σe²)/|ĥ|²: the same as equalize(..., "zf") on the raw REs.
    err = (x_hat - x).abs().square()
    robust = no_eff < 1.0  # exclude deep fades, where the sample MSE is heavy-tailed
    # Seed 1 gives a ratio of 1.042 (LS error model slightly optimistic); its σ over the 64
    # independent rows (delta method) is 0.017, so rel = 0.2 leaves > 9 σ beyond that bias.
    assert float(err[robust].mean()) == pytest.approx(float(no_eff[robust].mean()), rel=0.2)


def test_cdl_runs_and_gradients_flow() -> None:
    torch.manual_seed(2)
    ch = build_channel(
        "cdl",
        model="D",
        delay_spread_s=50e-9,
        speed_mps=10.0,
        fft_size=24,
        num_ofdm_symbols=4,
        pilot_ofdm_symbol_indices=[0],
    )
    x = torch.view_as_complex(torch.randn(2, 50, 2) * math.sqrt(0.5)).requires_grad_(True)
    y, st = ch(x, 20.0)
    x_hat, _ = equalize(y, st)
    x_hat.abs().square().sum().backward()
    assert bool(torch.isfinite(torch.view_as_real(x.grad)).all()) and bool((x.grad.abs() > 0).all())
    tdl = build_channel("tdl", fft_size=24, num_ofdm_symbols=4, pilot_ofdm_symbol_indices=[0])
    x2 = x.detach().clone().requires_grad_(True)
    y, st = tdl(x2, 20.0)
    y.abs().sum().backward()
    assert bool((x2.grad.abs() > 0).all())


def test_ofdm_bad_parameters() -> None:
    with pytest.raises(ValueError, match="model"):
        build_channel("tdl", model="F")
    with pytest.raises(ValueError, match="pilot_ofdm_symbol_indices"):
        build_channel("tdl", pilot_ofdm_symbol_indices=[20])
    with pytest.raises(ValueError, match="estimator"):
        build_channel("tdl", estimator="ml")
    x = torch.ones(1, 8, dtype=torch.complex64)
    x[0, 0] = complex("nan")
    with pytest.raises(ValueError, match="'x'"):
        build_channel("tdl")(x, 10.0)
