"""Fading statistics, imperfect CSI, equalisers, gradients and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import special, stats

from v2x.channels import CHANNELS, ChannelState, build_channel, equalize
from v2x.channels.fading import (
    _fading_real,
    ar1_process,
    doppler_from_velocities,
    doppler_hz,
    sum_of_sinusoids,
)


def gaussian_symbols(batch: int, n: int) -> torch.Tensor:
    return torch.view_as_complex(torch.randn(batch, n, 2) * math.sqrt(0.5))


# Statistical checks below compare an estimate with a closed form within 5 σ, σ the standard error
# of the estimate derived from the sample (independent rows: σ = std(row statistic)/√rows), so a
# correct channel fails about once in 1.7 million runs; every test is seeded as well.
FIVE_SIGMA = 5.0


def row_mean_and_sigma(per_row: torch.Tensor) -> tuple[float, float]:
    """Mean of i.i.d. per-row statistics ``[R]`` and its standard error ``std/√R``."""
    v = per_row.double()
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


def test_block_rayleigh_gain_shapes_and_power() -> None:
    torch.manual_seed(0)
    x = torch.ones(20_000, 64, dtype=torch.complex64)
    _, st = build_channel("rayleigh")(x, 10.0)
    assert st.h.shape == (20_000, 1)
    # |h|² ~ Exp(1): mean 1, variance 1, so σ = 1/√20000 = 0.0071.
    sigma = 1 / math.sqrt(20_000)
    assert abs(float(st.h.abs().square().double().mean()) - 1) < FIVE_SIGMA * sigma
    _, st = build_channel("rayleigh", block_len=16)(x[:100], 10.0)
    assert st.h.shape == (100, 64)
    assert torch.equal(st.h[:, :16], st.h[:, :1].expand(100, 16))
    assert not torch.equal(st.h[:, 16], st.h[:, 0])


def test_clarke_autocorrelation_is_bessel_j0() -> None:
    """E[g(t+k) g*(t)] = J0(2π f_d T_s k) at several lags (ensemble over rows), within 5 σ."""
    torch.manual_seed(1)
    fd_ts, rows = 0.02, 8000
    g = sum_of_sinusoids(rows, 200, fd_ts, num_sinusoids=32)
    for lag in (0, 3, 8, 15, 25, 40):
        per_row = (g[:, lag:] * g[:, : g.shape[1] - lag].conj()).mean(dim=1)
        re, s_re = row_mean_and_sigma(per_row.real)
        im, s_im = row_mean_and_sigma(per_row.imag)
        assert FIVE_SIGMA * max(s_re, s_im) < 0.05, (lag, s_re, s_im)  # the check has teeth
        assert abs(re - special.j0(2 * math.pi * fd_ts * lag)) < FIVE_SIGMA * s_re, (lag, re)
        assert abs(im) <= FIVE_SIGMA * s_im, (lag, im)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.95])
def test_ar1_gauss_markov_correlation(rho: float) -> None:
    """E|h|² = 1 and E[h(t+k) h*(t)] = ρ^k (Gauss–Markov), and the channel's lag-1 correlation is
    J0(2π f_d T_s); all within 5 σ of the per-row estimates' standard error."""
    torch.manual_seed(9)
    g = ar1_process(4000, 400, rho)  # several chunks for rho < 1
    m2, s2 = row_mean_and_sigma(g.abs().square().mean(dim=1))
    assert abs(m2 - 1) < FIVE_SIGMA * s2, (m2, s2)
    for lag in (1, 3, 10):
        per_row = (g[:, lag:] * g[:, : g.shape[1] - lag].conj()).mean(dim=1)
        re, s_re = row_mean_and_sigma(per_row.real)
        im, s_im = row_mean_and_sigma(per_row.imag)
        assert FIVE_SIGMA * max(s_re, s_im) < 0.03, (lag, s_re, s_im)
        assert abs(re - rho**lag) < FIVE_SIGMA * s_re and abs(im) < FIVE_SIGMA * s_im, (lag, re, im)
    ch = build_channel("rayleigh_fast", fast_model="ar1", doppler_hz=1000.0, symbol_rate_hz=1e4)
    _, st = ch(torch.ones(20_000, 50, dtype=torch.complex64), 10.0)
    r1, s1 = row_mean_and_sigma((st.h[:, 1:] * st.h[:, :-1].conj()).real.mean(dim=1))
    assert FIVE_SIGMA * s1 < 0.03
    assert abs(r1 - special.j0(2 * math.pi * 0.1)) < FIVE_SIGMA * s1, (r1, s1)


def _fast_gains(rows: int, n: int, fd_ts: float, seed: int) -> torch.Tensor:
    """``[rows, n]`` gains of ``rayleigh_fast`` (chunks of 20 000 rows keep memory small)."""
    torch.manual_seed(seed)
    ch = build_channel("rayleigh_fast", doppler_hz=fd_ts * 1e7, symbol_rate_hz=1e7)
    x = torch.ones(20_000, n, dtype=torch.complex64)
    return torch.cat([ch(x, 10.0)[1].h for _ in range(rows // 20_000)])


def test_rayleigh_fast_is_complex_gaussian_per_symbol() -> None:
    """Rayleigh per symbol: E|h|² = 1 and E|h|⁴ = 2 (a sum of 32 equal-amplitude sinusoids gives
    2 − 1/32 = 1.969, 6.8 σ off here), and |h|² at one instant is Exp(1) (Kolmogorov–Smirnov)."""
    h = _fast_gains(100_000, 16, 0.3, seed=20)
    p = h.abs().square().double()
    m2, s2 = row_mean_and_sigma(p.mean(dim=1))
    m4, s4 = row_mean_and_sigma(p.square().mean(dim=1))
    assert abs(m2 - 1) < FIVE_SIGMA * s2, (m2, s2)
    assert abs(m4 - 2) < FIVE_SIGMA * s4, (m4, s4)
    assert s4 < (1 / 32) / 6, s4  # sample large enough to tell 2 from 2 − 1/32 at > 6 σ
    # Column 0: 100 000 independent rows. Two-sided 5 σ ↔ p = 5.7e-7.
    assert stats.kstest(p[:, 0].numpy(), "expon").pvalue > 5.7e-7


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_rayleigh_fast_bpsk_ber_matches_rayleigh_closed_form(snr_db: float) -> None:
    """Coherent BPSK with perfect CSI: BER = ½(1 − √(γ/(1+γ))) (Proakis, eq. 14.3-7), within
    5 σ of the per-row BER's standard error."""
    torch.manual_seed(21 + int(snr_db))
    ch = build_channel("rayleigh_fast", doppler_hz=3e6, symbol_rate_hz=1e7)
    rows, n = 40_000, 64
    errors = []
    for _ in range(rows // 10_000):
        bits = torch.randint(0, 2, (10_000, n))
        y, st = ch((1.0 - 2.0 * bits).to(torch.complex64), snr_db)
        x_hat, _ = equalize(y, st, "zf")
        errors.append(((x_hat.real < 0).long() != bits).double().mean(dim=1))
    ber, sigma = row_mean_and_sigma(torch.cat(errors))
    g = 10 ** (snr_db / 10)
    oracle = 0.5 * (1 - math.sqrt(g / (1 + g)))
    assert abs(ber - oracle) < FIVE_SIGMA * sigma, (ber, oracle, sigma)
    assert FIVE_SIGMA * sigma < 0.15 * oracle  # resolves the BER to better than 15 %


def test_fused_real_fading_kernel_matches_complex_math() -> None:
    torch.manual_seed(10)
    x = torch.view_as_complex(torch.randn(3, 7, 2))
    h = torch.view_as_complex(torch.randn(3, 1, 2))
    y = torch.view_as_complex(
        _fading_real(torch.view_as_real(x), torch.view_as_real(h), torch.zeros(3, 1, 1))
    )
    torch.testing.assert_close(y, h * x)


def test_doppler_from_speed_and_carrier() -> None:
    fd = doppler_from_velocities([[30.0, 0, 0], [10.0, 0, 0]], [[0.0, 40, 0], [10.0, 0, 0]], 5.9e9)
    torch.testing.assert_close(
        fd, torch.tensor([50 * 5.9e9 / 299_792_458.0, 0.0], dtype=torch.float64)
    )
    assert doppler_hz(30.0, 5.9e9) == pytest.approx(30 * 5.9e9 / 299_792_458.0)
    ch = build_channel("rayleigh_fast", speed_mps=30.0, carrier_hz=5.9e9)
    _, st = ch(torch.ones(2, 8, dtype=torch.complex64), 0.0)
    assert st.extra["doppler_hz"] == pytest.approx(590.4, rel=1e-3)
    assert st.h.shape == (2, 8)


def test_imperfect_csi_error_variance_and_orthogonality() -> None:
    torch.manual_seed(2)
    for name, kw in (("rayleigh", {}), ("rician", {"k_factor_db": 3.0})):
        ch = build_channel(name, block_len=1, csi_error_var=0.1, **kw)
        _, st = ch(torch.ones(50, 4000, dtype=torch.complex64), 20.0)
        e = st.h - st.h_hat
        assert abs(float(e.abs().square().mean()) - 0.1) < 0.005
        assert abs(complex((e * st.h_hat.conj()).mean())) < 0.005  # error ⟂ estimate
        assert st.err_var == 0.1


def test_mmse_equaliser_mse_matches_closed_form() -> None:
    """Rayleigh, perfect CSI, Gaussian x: E|x̂−x|² = E[no/(|h|²+no)] = no·e^{no}·E1(no)."""
    torch.manual_seed(3)
    x = gaussian_symbols(20, 20_000)
    for snr_db in (0.0, 10.0):
        no = 10 ** (-snr_db / 10)
        y, st = build_channel("rayleigh", block_len=1)(x, snr_db)
        x_hat, no_eff = equalize(y, st, "mmse_biased")
        mse = float((x_hat - x).abs().square().mean())
        oracle = no * math.exp(no) * special.exp1(no)
        assert mse == pytest.approx(oracle, rel=0.03)
        assert float(no_eff.mean()) == pytest.approx(oracle, rel=0.03)
        x_zf, _ = equalize(y, st, "zf")
        assert float((x_zf - x).abs().square().mean()) > mse  # MMSE beats ZF in MSE


def test_mmse_with_imperfect_csi_reports_its_mse() -> None:
    torch.manual_seed(4)
    x = gaussian_symbols(20, 20_000)
    y, st = build_channel("rayleigh", block_len=1, csi_error_var=0.2)(x, 15.0)
    x_hat, no_eff = equalize(y, st, "mmse_biased")
    assert float((x_hat - x).abs().square().mean()) == pytest.approx(float(no_eff.mean()), rel=0.03)


def test_equalize_awgn_and_erasures_and_prequalized() -> None:
    y = torch.tensor([[1 + 1j, 2 - 1j]], dtype=torch.complex64)
    st = ChannelState(no=torch.tensor([0.5]))
    x_hat, no_eff = equalize(y, st)
    assert torch.equal(x_hat, y) and torch.allclose(no_eff, torch.full((1, 2), 0.5))
    st = ChannelState(no=torch.tensor([0.5]), h=torch.tensor([[2j]], dtype=torch.complex64))
    st = st.with_erasures(torch.tensor([[False, True]]))
    x_hat, no_eff = equalize(y, st, "zf")
    assert torch.allclose(x_hat[0, 0], torch.tensor((1 + 1j) / 2j, dtype=torch.complex64))
    assert x_hat[0, 1] == 0 and math.isinf(float(no_eff[0, 1]))
    assert float(no_eff[0, 0]) == pytest.approx(0.5 / 4)
    x_hat, no_eff = equalize(y, st, "mmse_biased")
    assert torch.allclose(x_hat[0, 0], torch.tensor(-2j * (1 + 1j) / 4.5, dtype=torch.complex64))
    assert float(no_eff[0, 0]) == pytest.approx(0.5 / 4.5)
    x_mmse, no_mmse = equalize(y, st, "mmse")  # unbiased LMMSE = ZF for one tap
    assert torch.allclose(x_mmse[0, 0], torch.tensor((1 + 1j) / 2j, dtype=torch.complex64))
    assert float(no_mmse[0, 0]) == pytest.approx(0.5 / 4)
    pre = ChannelState(no=torch.tensor([0.1]), equalized=True, no_eff=torch.full((1, 2), 0.3))
    x_hat, no_eff = equalize(y, pre)
    assert torch.equal(x_hat, y) and torch.allclose(no_eff, torch.full((1, 2), 0.3))
    with pytest.raises(ValueError, match="method"):
        equalize(y, st, "ml")


def test_mmse_matches_sionna_lmmse_equalizer_with_csi_error() -> None:
    from sionna.phy.mimo import lmmse_equalizer

    torch.manual_seed(8)
    x = gaussian_symbols(4, 500)
    y, st = build_channel("rayleigh", block_len=1, csi_error_var=0.05)(x, 12.0)
    x_hat, no_eff = equalize(y, st, "mmse")
    s = (st.no.reshape(-1, 1) + 0.05).expand(4, 500).reshape(-1, 1, 1).to(torch.complex64)
    xs, ns = lmmse_equalizer(y.reshape(-1, 1), st.h_hat.reshape(-1, 1, 1), s)
    torch.testing.assert_close(x_hat.reshape(-1), xs.reshape(-1), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(no_eff.reshape(-1), ns.reshape(-1).float(), rtol=1e-3, atol=1e-5)


DIFFERENTIABLE = [
    ("awgn", {}),
    ("awgn", {"backend": "sionna"}),
    ("rayleigh", {}),
    ("rayleigh", {"block_len": 4, "csi_error_var": 0.05}),
    ("rician", {}),
    ("rayleigh_fast", {}),
    ("rayleigh_fast", {"fast_model": "ar1"}),
    ("rician_fast", {}),
    ("erasure_iid", {"loss_prob": 0.5, "symbols_per_packet": 8}),
    ("erasure_ge", {"inner": {"name": "rayleigh"}, "symbols_per_packet": 8}),
    ("erasure_bler", {"symbols_per_packet": 8}),
    ("tdl", {"fft_size": 12, "num_ofdm_symbols": 4, "pilot_ofdm_symbol_indices": [0]}),
]


@pytest.mark.parametrize(("name", "kw"), DIFFERENTIABLE)
def test_gradients_flow_through_channel(name: str, kw: dict) -> None:
    torch.manual_seed(5)
    x = gaussian_symbols(4, 64).requires_grad_(True)
    y, st = build_channel(name, **kw)(x, torch.full((4,), 10.0))
    x_hat, _ = equalize(y, st, "mmse")
    (x_hat - 0.5).abs().square().sum().backward()
    assert x.grad is not None and bool(torch.isfinite(torch.view_as_real(x.grad)).all())
    kept = ~st.erased if st.erased is not None else torch.ones(4, 64, dtype=torch.bool)
    assert bool((x.grad[kept].abs() > 0).all())
    if st.erased is not None:
        assert bool((x.grad[st.erased] == 0).all())


@pytest.mark.parametrize("name", ["awgn", "rayleigh", "rician", "rayleigh_fast", "erasure_iid"])
def test_nan_symbols_are_rejected(name: str) -> None:
    x = torch.ones(2, 4, dtype=torch.complex64)
    x[1, 2] = complex("nan")
    with pytest.raises(ValueError, match="'x'"):
        build_channel(name)(x, 10.0)
    with pytest.raises(ValueError, match="complex"):
        build_channel(name)(torch.ones(2, 4), 10.0)
    with pytest.raises(ValueError, match="snr_db"):
        build_channel(name)(torch.ones(2, 4, dtype=torch.complex64), torch.zeros(3))


def test_bad_fading_parameters() -> None:
    with pytest.raises(ValueError, match="block_len"):
        build_channel("rayleigh", block_len=0)
    with pytest.raises(ValueError, match="csi_error_var"):
        build_channel("rician", k_factor_db=10.0, csi_error_var=0.5)
    with pytest.raises(ValueError, match="speed_mps"):
        build_channel("rayleigh_fast", speed_mps=-1.0)
    with pytest.raises(ValueError, match="unknown channel"):
        build_channel("nakagami")
    assert {"awgn", "rayleigh", "rician", "rayleigh_fast", "erasure_iid", "erasure_ge"} <= set(
        CHANNELS.names()
    )
