"""Link adaptation over a fade whose gain moves within a code block (fast fading, or fading
blocks shorter than a code block: ``FadeStatistics.looks``): the EESM of the fade's points
against Rayleigh's closed form, blocks of a few draws against direct simulation, and the
digital codec's plan against what the fast decoder then loses on the air."""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import pytest
import torch

from v2x.channels import build_channel
from v2x.channels.fade_statistics import FADE_POINTS, FastFade, flat_fade_statistics
from v2x.channels.link import LinkState
from v2x.semcom.bler_table import load_bler_table
from v2x.semcom.digital import DigitalCodec
from v2x.semcom.digital_blocks import block_code_len
from v2x.semcom.link_adaptation import (
    eesm_over_draws_db,
    faded_block_bler,
    select_mcs_over_fade,
)
from v2x.semcom.mcs import MCS_TABLE, shannon_gap_thresholds_db

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RAYLEIGH = build_channel("rayleigh").fade_statistics()
# a new, independent gain every symbol: Gauss–Markov with ρ = J0(2π f_d T_s) = 0
IID_DOPPLER_HZ = 2.404825557695773 / (2 * math.pi) * 1e7
IID = {"name": "rayleigh_fast", "fast_model": "ar1", "doppler_hz": IID_DOPPLER_HZ}


def _beta() -> np.ndarray:
    """``[29]`` EESM β of 38.214 table 1 (Sionna SYS's calibration, what ``eesm_db`` uses)."""
    text = resources.files("sionna.sys").joinpath("esm_params/eesm_beta_table.json").read_text()
    return np.asarray(json.loads(text)["index"]["1"], dtype=np.float64)


def test_eesm_of_the_rayleigh_fade_is_the_closed_form():
    """Perfect CSI, Rayleigh of mean gain 1: ``E[exp(−γ g / β)] = 1 / (1 + γ/β)``, so the EESM
    of the fade is ``β ln(1 + γ/β)``. The 256 points give it within their quantisation error:
    with ``a = γ/β`` the points' mean of ``exp(−a g) = v^a`` (``v = 1 − u``) is the midpoint
    rule for ``∫₀¹ v^a dv``, wrong by about ``a / (24 G²)`` (the rule's ``h²/24 · ∫ f''``), a
    relative ``a (1 + a) / (24 G²)`` and, through ``−β ln``, ``a (1 + a) / (24 G² ln(1 + a))``
    of the effective SINR (0.17 dB at 30 dB and MCS 0, ``a = 625``); where ``a → 0`` the EESM
    tends to the points' mean gain, which the last cell's cut of the exponential's tail leaves
    0.13 % short (0.006 dB). The bound is their sum plus 0.002 dB of float32, checked at every
    MCS from −10 to 30 dB."""
    beta = _beta()
    snr = torch.arange(-10.0, 30.5, 1.0, dtype=torch.float64)
    point_sinr = RAYLEIGH.sinr_db(snr)  # [S, G]
    g = FADE_POINTS
    tail_db = abs(10.0 * math.log10(float(RAYLEIGH.gains.mean())))
    assert tail_db < 0.006
    for m in MCS_TABLE:
        got = eesm_over_draws_db(point_sinr, m.index, g)  # [S, 1]: all the points, one block
        assert got.shape == (snr.numel(), 1)
        gamma = 10.0 ** (snr.numpy() / 10.0)
        a = gamma / beta[m.index]
        exact = 10.0 * np.log10(beta[m.index] * np.log1p(a))
        midpoint = 10.0 / math.log(10.0) * a * (1.0 + a) / (24.0 * g * g * np.log1p(a))
        tol = midpoint + tail_db + 2e-3
        err = np.abs(got[:, 0].numpy() - exact)
        assert bool((err <= tol).all()), (m.index, float(np.max(err - tol)))


@pytest.mark.parametrize(
    ("looks", "snr_db", "mcs"), [(2, 4.0, 6), (8, 10.0, 14), (16, 6.5, 9), (64, -5.5, 0)]
)
def test_blocks_of_a_few_draws_against_direct_simulation(looks: int, snr_db: float, mcs: int):
    """A code block spanning ``n`` independent Rayleigh draws fails at the table's BLER at its
    EESM; the planned rate (``LOOK_BLOCKS`` Latin-hypercube blocks of the fade's points)
    matches 40,000 blocks of ``n`` exponential draws within 0.02 (the estimates' spread at
    rates near 0.1–0.5 is under 0.01; the points' quantisation adds a little). Block fading of
    about ``S / n`` symbols is such a fade."""
    table = load_bler_table(1024)
    s = block_code_len(mcs, 1024)
    block_len = next(b for b in range(1, s) if int(s / b) == looks)
    fade = build_channel({"name": "rayleigh", "block_len": block_len}).fade_statistics()
    planned = faded_block_bler(torch.tensor([snr_db]), fade, table, block_bits=1024)
    assert torch.equal(planned[0, :, mcs], planned[0, :1, mcs].expand(FADE_POINTS))
    gen = torch.Generator().manual_seed(11)
    draws = -torch.log(torch.rand(40_000, looks, generator=gen, dtype=torch.float64))
    sinr_db = snr_db + 10.0 * torch.log10(draws)
    from v2x.channels.effective_sinr import eesm_db

    eff = eesm_db(torch.pow(10.0, sinr_db / 10.0), mcs).double()
    direct = table.bler(torch.full(eff.shape, mcs), eff).mean()
    assert 0.15 < float(direct) < 0.35  # a rate that tells plans apart
    assert float(planned[0, 0, mcs]) == pytest.approx(float(direct), abs=0.02)


def test_one_draw_per_block_is_the_block_fading_plan():
    """A fast fade without Doppler, or fading blocks at least a code block long, give every
    block one draw: the same rates as one fade per transmission (point by point)."""
    table = load_bler_table(1024)
    snr = torch.tensor([3.0, 14.0, 25.0])
    block = faded_block_bler(snr, RAYLEIGH, table)
    still = flat_fade_statistics(0.0, 1.0, fast=FastFade(0.0))
    long_blocks = build_channel({"name": "rayleigh", "block_len": 5000}).fade_statistics()
    for fade in (still, long_blocks):
        torch.testing.assert_close(faded_block_bler(snr, fade, table, block_bits=1024), block)
    with pytest.raises(ValueError, match="needs 'block_bits'"):
        faded_block_bler(snr, still, table)


def test_threshold_rule_over_a_fade_of_many_draws():
    """Without a table, a block of at least 256 draws (all the points) fails where the closed
    form ``β ln(1 + γ/β)`` is below the MCS's threshold: the MCS chosen over an i.i.d. fade is
    the highest whose closed-form EESM clears it (among MCS of ≥ 256 symbols per block; SNRs
    within 0.05 dB of a threshold left out)."""
    fade = build_channel(IID).fade_statistics()
    thresholds = shannon_gap_thresholds_db()
    beta = _beta()
    wide = [m.index for m in MCS_TABLE if fade.looks(block_code_len(m.index, 1024)) >= FADE_POINTS]
    assert wide == list(range(23))
    snr = torch.arange(-6.0, 24.0, 0.35, dtype=torch.float64)
    rates = faded_block_bler(snr, fade, thresholds_db=thresholds, block_bits=1024)
    checked = 0
    for i, s in enumerate(snr.tolist()):
        closed = [10 * math.log10(beta[m] * math.log1p(10 ** (s / 10) / beta[m])) for m in wide]
        if any(abs(c - float(thresholds[m])) < 0.05 for m, c in zip(wide, closed)):
            continue
        for m, c in zip(wide, closed):
            assert float(rates[i, 0, m]) == float(c < float(thresholds[m]))
        checked += 1
    assert checked > 60
    chosen = select_mcs_over_fade(snr, fade, 0.1, thresholds_db=thresholds, block_bits=1024)
    assert bool((chosen[1:] >= chosen[:-1]).all())


def _maps(b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(b, 16, 16, 32, generator=g))


def _sent_and_lost(codec: DigitalCodec, x: torch.Tensor, cfg: dict, snr_db: float):
    """Send ``x`` over the channel ``cfg`` at ``snr_db`` with the fast decoder: the MCS per
    row, the measured code-block error rate and the fraction of the sent cells that arrived."""
    ch = build_channel(cfg)
    link = LinkState.before_sending(ch, torch.full((x.shape[0],), snr_db))
    tx = codec.encode(x, link)
    y, state = ch(tx.symbols, link.snr_db)
    rx = tx.received(y, state)
    state = torch.random.get_rng_state()
    ok = torch.cat([o for o, _ in codec.decode_blocks(rx)])
    torch.random.set_rng_state(state)  # (decode draws the same block failures)
    codec.decode(rx, link)
    sent = tx.meta["sent"].reshape(x.shape[0], -1)
    got = rx.meta["delivered"].reshape(x.shape[0], -1) & sent
    return tx.meta["mcs"], 1.0 - float(ok.double().mean()), float(got.sum() / sent.sum())


FAST = [
    pytest.param(IID, id="iid"),  # a new gain every symbol
    pytest.param({"name": "rayleigh_fast", "doppler_hz": 3e6}, id="sos-0.3"),  # ≈ 30 draws
    pytest.param({"name": "rayleigh_fast"}, id="sos-30mps"),  # 30 m/s: one draw per block
]


@pytest.mark.parametrize("cfg", FAST)
@pytest.mark.parametrize("snr_db", [10.0, 20.0])
def test_block_plan_over_fast_rayleigh_meets_its_target(cfg: dict, snr_db: float):
    """``target_unit: block``, 96 links, the fast decoder failing each block at the table's
    rate for its realised EESM: planned at the average SNR, more than 40 % of the code blocks
    fail over fast Rayleigh (the MCS of the AWGN threshold); planned over the fade's draws, at
    most 15 % (the target 10 %, and the draw: at 30 m/s a row's 20,000 channel uses see about
    three fades, so 96 links hold about 300 of them, ± 0.02 on the rate; seeds 0–5 gave
    0.055–0.11)."""
    x = _maps(96, seed=int(snr_db))
    base = {"bits": 4, "min_bits": 4, "max_channel_uses": 20_000, "decoder": "fast",
            "target_unit": "block"}  # fmt: skip
    torch.manual_seed(5)
    naive_mcs, naive, _ = _sent_and_lost(DigitalCodec(**base), x, cfg, snr_db)
    torch.manual_seed(5)
    aware_mcs, aware, _ = _sent_and_lost(DigitalCodec(**base, fade_aware=True), x, cfg, snr_db)
    assert bool((aware_mcs < naive_mcs).all())
    assert naive > 0.4, naive
    assert aware <= 0.15, aware


@pytest.mark.parametrize("snr_db", [10.0, 20.0])
def test_segment_plan_over_iid_fading_delivers_what_it_planned(snr_db: float):
    """The default segment rule over a new gain every symbol: the average-SNR plan delivers
    under half of the sent cells; planned over the fade's draws (code blocks then fail
    independently, at the EESM's rate), at least 85 %."""
    x = _maps(48, seed=3 + int(snr_db))
    base = {"bits": 4, "min_bits": 4, "max_channel_uses": 20_000, "decoder": "fast"}
    torch.manual_seed(6)
    _, _, naive = _sent_and_lost(DigitalCodec(**base), x, IID, snr_db)
    torch.manual_seed(6)
    _, _, aware = _sent_and_lost(DigitalCodec(**base, fade_aware=True), x, IID, snr_db)
    assert naive < 0.5, naive
    assert aware >= 0.85, aware
