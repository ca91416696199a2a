"""The fade a transmitter plans on (``v2x.channels.fade_statistics``) against the channel's own
draws and the closed forms: Rayleigh's exponential, Rician's non-central χ², the LMMSE
estimate's SINR that ``equalize`` reports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from v2x.channels import build_channel
from v2x.channels.base import ChannelState, equalize
from v2x.channels.fade_statistics import (
    FADE_POINTS,
    LOOK_BLOCKS,
    SHARED_LOOKS,
    FastFade,
    flat_fade_statistics,
    look_indices,
)
from v2x.channels.fading import ar1_process, sum_of_sinusoids
from v2x.channels.link import LinkState


def _midpoints(n: int = FADE_POINTS) -> np.ndarray:
    return (np.arange(n) + 0.5) / n


def test_rayleigh_points_are_the_exponentials_quantiles():
    fade = build_channel("rayleigh").fade_statistics()
    assert fade is not None and fade.block_len is None and fade.error_var == 0.0
    np.testing.assert_allclose(fade.gains.numpy(), -np.log(1.0 - _midpoints()), rtol=1e-12)
    assert torch.all(fade.gains[1:] > fade.gains[:-1])  # ascending
    assert float(fade.gains.mean()) == pytest.approx(1.0, abs=5e-3)  # E|h|² = 1


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("rayleigh", {}),
        ("rician", {"k_factor_db": 6.0}),
        ("rician", {"k_factor_db": 15.0, "los_phase": "zero"}),
        ("rayleigh", {"csi_error_var": 0.2}),
        ("rician", {"k_factor_db": 3.0, "csi_error_var": 0.1}),
    ],
)
def test_points_follow_the_gains_the_channel_draws(name: str, kwargs: dict):
    """The channel's own ``|ĥ|²`` over 200,000 transmissions has the distribution the points
    describe (two-sample Kolmogorov–Smirnov distance below its 0.1 % critical value)."""
    torch.manual_seed(1)
    ch = build_channel({"name": name, **kwargs})
    h, los = ch.sample_gains(200_000, 1, torch.device("cpu"))
    h_hat = ch.estimate(h, los)
    drawn = h_hat.abs().square().double().reshape(-1).numpy()
    fade = ch.fade_statistics()
    assert fade is not None and fade.error_var == pytest.approx(kwargs.get("csi_error_var", 0.0))
    ks = stats.ks_2samp(drawn, fade.gains.numpy())
    n, m = drawn.size, fade.gains.numel()
    critical = 1.95 * math.sqrt((n + m) / (n * m))
    assert ks.statistic < critical


def test_rician_points_are_the_scaled_noncentral_chi_square():
    k = 10.0 ** 0.6
    fade = build_channel({"name": "rician", "k_factor_db": 6.0}).fade_statistics()
    scale = 0.5 / (k + 1.0)  # |m + d|² = (σ²/2) · χ'²(2, 2|m|²/σ²), σ² = 1/(K+1)
    expect = scale * stats.ncx2.ppf(_midpoints(), 2, 2.0 * k)
    np.testing.assert_allclose(fade.gains.numpy(), expect, rtol=1e-9)


def test_sinr_is_what_the_equaliser_reports():
    """At the fade's points the SINR is ``|ĥ|² s / (1 + σe² s)``: the ``1 / no_eff`` that
    ``equalize`` gives for the same ``ĥ``."""
    ch = build_channel({"name": "rayleigh", "csi_error_var": 0.1})
    fade = ch.fade_statistics()
    snr_db = torch.tensor([-3.0, 12.0])
    got = fade.sinr_db(snr_db)  # [2, G]
    assert got.shape == (2, fade.gains.numel()) and got.dtype == torch.float64
    for row, snr in enumerate(snr_db.tolist()):
        h_hat = fade.gains.sqrt().to(torch.complex64)[None, :]
        no = torch.tensor([10.0 ** (-snr / 10.0)])
        state = ChannelState(no=no, h=h_hat, h_hat=h_hat, err_var=0.1)
        _, no_eff = equalize(torch.zeros(1, h_hat.shape[1], dtype=torch.complex64), state)
        expect = -10.0 * torch.log10(no_eff.double().reshape(-1))
        torch.testing.assert_close(got[row], expect, rtol=0, atol=1e-4)


def test_channels_without_an_unseen_flat_fade_have_none():
    assert build_channel("awgn").fade_statistics() is None
    assert build_channel({"name": "rician", "k_factor_db": float("inf")}).fade_statistics() is None
    assert flat_fade_statistics(0.5, 0.0) is None


def test_block_length_and_wrappers():
    fade = build_channel({"name": "rayleigh", "block_len": 500}).fade_statistics()
    assert fade.block_len == 500 and fade.shared_by(500) and not fade.shared_by(501)
    assert build_channel("rayleigh").fade_statistics().shared_by(10**9)
    wrapped = build_channel({"name": "erasure_iid", "inner": {"name": "rayleigh"}})
    assert wrapped.fade_statistics() is not None
    link = LinkState.before_sending(wrapped, torch.tensor([5.0, 5.0]))
    assert link.fade is wrapped.fade_statistics() and link.sinr_feedback is None
    assert LinkState.before_sending(build_channel("awgn"), torch.tensor([5.0])).fade is None


def test_fast_fading_is_a_fade_drawn_every_symbol():
    """``rayleigh_fast`` / ``rician_fast``: the same points as their block twins (the gain's
    distribution at any one symbol) and the Doppler that moves the gain: at 30 m/s, 5.9 GHz and
    10 Msymbol/s a code block (185 to 4,370 symbols at 1024 bits) sees about one draw, a
    20,000-symbol transmission about three."""
    fade = build_channel("rayleigh_fast").fade_statistics()
    assert fade is not None and fade.block_len is None
    assert fade.fast == FastFade(30.0 * 5.9e9 / 299_792_458.0 / 10e6, "sos", 32)
    torch.testing.assert_close(fade.gains, build_channel("rayleigh").fade_statistics().gains)
    assert fade.looks(185) == pytest.approx(1.0, abs=1e-3)
    assert 1.0 < fade.looks(4370) < 1.3 and 2.5 < fade.looks(20_000) < 3.5
    assert fade.shared_by(2000) and not fade.shared_by(20_000)
    assert fade.looks(2000) < SHARED_LOOKS <= fade.looks(4370)
    rician = build_channel({"name": "rician_fast", "k_factor_db": 6.0}).fade_statistics()
    block = build_channel({"name": "rician", "k_factor_db": 6.0}).fade_statistics()
    torch.testing.assert_close(rician.gains, block.gains)
    ar1 = build_channel({"name": "rayleigh_fast", "fast_model": "ar1", "doppler_hz": 0.0})
    assert ar1.fade_statistics().fast == FastFade(0.0, "ar1", 32)
    assert ar1.fade_statistics().looks(10**5) == 1.0  # no Doppler: one draw however long


def test_block_fading_looks():
    assert build_channel("rayleigh").fade_statistics().looks(10**6) == 1.0
    fade = build_channel({"name": "rayleigh", "block_len": 100}).fade_statistics()
    assert fade.looks(1000) == 10.0 and fade.looks(250) == 2.5 and fade.looks(40) == 1.0
    assert fade.fast is None


def _window_looks(gains: torch.Tensor) -> float:
    """``1 / Var`` of the mean power over each row (``[rows, S]`` complex gains)."""
    return 1.0 / float(gains.abs().square().double().mean(dim=1).var())


@pytest.mark.parametrize(
    ("model", "fd_ts", "symbols"),
    [("ar1", 0.01, 600), ("ar1", 0.05, 200), ("ar1", 0.3827, 300),
     ("sos", 1e-3, 600), ("sos", 0.01, 600), ("sos", 0.05, 200), ("sos", 0.3, 400)],
)  # fmt: skip
def test_fast_looks_against_the_generators_draws(model: str, fd_ts: float, symbols: int):
    """``FastFade.looks`` is ``1 / Var`` of the gain's mean power over the window, measured on
    the channel's own generators (3,000 rows: the estimate's relative error is about
    ``√((2 + 6/L) / 3000) ≤ 5 %``): the Gauss–Markov formula within 12 %; the sum of sinusoids'
    within 12 % above and 30 % below (its independent-angle variance errs low: the generator's
    stratified angles vary less)."""
    torch.manual_seed(4)
    if model == "ar1":
        from scipy.special import j0

        rho = max(0.0, float(j0(2 * math.pi * fd_ts)))
        gains = ar1_process(3000, symbols, rho)
    else:
        gains = torch.cat([sum_of_sinusoids(500, symbols, fd_ts) for _ in range(6)])
    measured = _window_looks(gains)
    formula = FastFade(fd_ts, model, 32).looks(symbols)
    low = 0.88 if model == "ar1" else 0.7
    assert low * measured <= formula <= 1.12 * measured, (formula, measured)


def test_look_indices_are_a_latin_hypercube():
    """Every column holds each point ``LOOK_BLOCKS / G`` times (so a function of one draw
    averages over the blocks as over the points); the layout is the same every call and
    leaves torch's generator alone."""
    state = torch.random.get_rng_state()
    index = look_indices(37)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert index.shape == (LOOK_BLOCKS, 37) and index.dtype == torch.int64
    counts = torch.stack([torch.bincount(c, minlength=FADE_POINTS) for c in index.T])
    assert bool((counts == LOOK_BLOCKS // FADE_POINTS).all())
    assert not torch.equal(index[:, 0], index[:, 1])  # each column an order of its own
    look_indices.cache_clear()
    assert torch.equal(look_indices(37), index)  # seeded: the same layout afresh
