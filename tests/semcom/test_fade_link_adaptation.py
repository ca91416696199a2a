"""Link adaptation over a fade the transmitter cannot see (block Rayleigh / Rician,
``LinkState.fade``): the ε-outage rule against Rayleigh's closed-form outage, the planned
segment loss against numerical integration over the exponential, and the digital codec's
plan against what the fast decoder then loses on the air."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from v2x.channels import build_channel
from v2x.channels.link import LinkState
from v2x.semcom.bler_table import load_bler_table
from v2x.semcom.digital import DigitalCodec
from v2x.semcom.fec import CRC_BITS
from v2x.semcom.link_adaptation import (
    expected_segment_loss,
    faded_block_bler,
    planned_segment_loss,
    select_mcs_over_fade,
)
from v2x.semcom.mcs import MCS_TABLE, shannon_gap_thresholds_db

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PAYLOAD_BITS = 1024 - CRC_BITS
RAYLEIGH = build_channel("rayleigh").fade_statistics()


def _rayleigh_outage(snr_db: float, threshold_db: float) -> float:
    """``P(|h|² s < t)`` for ``|h|² ~ Exp(1)``: ``1 − exp(−t / s)``."""
    return -math.expm1(-(10.0 ** ((threshold_db - snr_db) / 10.0)))


def _over_exponential(f) -> float:
    """``E f(g)`` for ``g ~ Exp(1)`` by adaptive quadrature over its two decades of interest
    and the tail (``∫ f(g) e^(−g) dg``)."""
    edges = [0.0, 1e-3, 1e-2, 0.1, 1.0, 10.0, 60.0]
    parts = [integrate.quad(lambda g: f(g) * math.exp(-g), a, b, limit=200, epsabs=1e-7)[0]
             for a, b in zip(edges[:-1], edges[1:])]  # fmt: skip
    return float(sum(parts))


@pytest.mark.parametrize("target", [0.01, 0.1, 0.3])
def test_threshold_rule_over_rayleigh_is_the_closed_form_outage(target: float):
    """Without a table the error rate is the threshold rule's step, so its mean over the fade is
    the outage probability: within ``1 / (2G)`` of ``1 − exp(−t/s)`` for every MCS, and the MCS
    chosen is the highest whose closed-form outage is ≤ the target (SNRs whose outage lies within
    that resolution of the target left out)."""
    thresholds = shannon_gap_thresholds_db()
    snr = torch.arange(-5.0, 45.0, 0.7, dtype=torch.float64)
    outage = faded_block_bler(snr, RAYLEIGH, thresholds_db=thresholds).mean(dim=1)  # [S, 29]
    tol = 0.5 / RAYLEIGH.gains.numel() + 1e-12
    chosen = select_mcs_over_fade(snr, RAYLEIGH, target, thresholds_db=thresholds)
    checked = 0
    for i, s in enumerate(snr.tolist()):
        exact = [_rayleigh_outage(s, float(t)) for t in thresholds]
        np.testing.assert_allclose(outage[i].numpy(), exact, atol=tol)
        if any(abs(e - target) <= tol for e in exact):
            continue
        ok = [m.index for m, e in zip(MCS_TABLE, exact) if e <= target]
        assert int(chosen[i]) == (max(ok) if ok else 0)
        checked += 1
    assert checked > 25


def test_table_rule_is_the_table_averaged_over_the_fade_by_quadrature():
    """With the table: the mean block error rate over the fade's points equals
    ``∫ BLER(snr + 10 log10 g) e^(−g) dg`` (adaptive quadrature) within the points' resolution."""
    table = load_bler_table(1024)
    snr = torch.tensor([0.0, 12.0, 27.0], dtype=torch.float64)
    rates = faded_block_bler(snr, RAYLEIGH, table).mean(dim=1)  # [3, 29]
    for i, s in enumerate(snr.tolist()):
        for m in (0, 9, 17, 28):

            def bler(g: float, m: int = m, s: float = s) -> float:
                sinr = torch.tensor([s + 10.0 * math.log10(max(g, 1e-300))])
                return float(table.bler(torch.tensor([m]), sinr)[0])

            exact = _over_exponential(bler)
            assert float(rates[i, m]) == pytest.approx(exact, abs=3e-3)


def test_planned_segment_loss_shared_fade_by_quadrature():
    """One fade over the whole transmission: the planned loss is ``E_g[loss(BLER(s·g))]`` (the
    blocks fail together), against quadrature; each block a fade of its own: the loss at the
    fade-averaged block error rate. The shared fade loses less, and one point is the plain
    ``expected_segment_loss``."""
    table = load_bler_table(1024)
    header, sizes = 220, [900, 0, 1300, 64, 2500]
    snr, m = 14.0, 9
    rates = faded_block_bler(torch.tensor([snr]), RAYLEIGH, table)[0, :, m].numpy()

    def loss_at(g: float) -> float:
        sinr = torch.tensor([snr + 10.0 * math.log10(max(g, 1e-300))])
        p = float(table.bler(torch.tensor([m]), sinr)[0])
        return expected_segment_loss(header, sizes, PAYLOAD_BITS, p)

    exact = _over_exponential(loss_at)
    shared = planned_segment_loss(header, sizes, PAYLOAD_BITS, rates, shared=True)
    assert shared == pytest.approx(exact, abs=3e-3)
    apart = planned_segment_loss(header, sizes, PAYLOAD_BITS, rates, shared=False)
    assert apart == expected_segment_loss(header, sizes, PAYLOAD_BITS, float(np.mean(rates)))
    assert apart > shared
    one = np.array([0.07])
    assert planned_segment_loss(header, sizes, PAYLOAD_BITS, one, True) == expected_segment_loss(
        header, sizes, PAYLOAD_BITS, 0.07
    )


def test_expected_segment_loss_of_many_rates_is_each_rates():
    rates = np.array([0.0, 0.003, 0.08, 0.5, 1.0])
    for header, sizes in ((300, [900, 60, 0, 1200]), (4, [0, 0]), (0, [10])):
        many = expected_segment_loss(header, sizes, PAYLOAD_BITS, rates)
        one = [expected_segment_loss(header, sizes, PAYLOAD_BITS, float(p)) for p in rates]
        np.testing.assert_allclose(many, one, rtol=1e-12, atol=1e-15)


def _maps(b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(b, 16, 16, 32, generator=g))


def _delivered_fraction(codec: DigitalCodec, x: torch.Tensor, channel: str, snr_db: float):
    """Send ``x`` over ``channel`` at ``snr_db`` with the fast decoder: the MCS per row and the
    fraction of the sent cells that arrived."""
    ch = build_channel(channel)
    link = LinkState.before_sending(ch, torch.full((x.shape[0],), snr_db))
    tx = codec.encode(x, link)
    y, state = ch(tx.symbols, link.snr_db)
    rx = tx.received(y, state)
    codec.decode(rx, link)
    sent = tx.meta["sent"].reshape(x.shape[0], -1)
    got = rx.meta["delivered"].reshape(x.shape[0], -1) & sent
    return tx.meta["mcs"], float(got.sum() / sent.sum())


@pytest.mark.parametrize("snr_db", [10.0, 20.0])
def test_segment_plan_over_block_rayleigh_delivers_what_it_planned(snr_db: float):
    """Over block Rayleigh (one fade per transmission, drawn on air) the plan at the average SNR
    loses about half of the sent cells; planned over the fade, the share lost stays near the
    10 % target (160 links, the fast decoder failing each block at the table's rate for its
    realised SINR: a loose bound for the draw)."""
    x = _maps(160, seed=int(snr_db))
    base = {"bits": 4, "min_bits": 4, "max_channel_uses": 20_000, "decoder": "fast"}
    torch.manual_seed(3)
    naive_mcs, naive = _delivered_fraction(DigitalCodec(**base, fade_aware=False), x, "rayleigh", snr_db)
    torch.manual_seed(3)
    aware = DigitalCodec(**base, fade_aware=True)
    aware_mcs, aware = _delivered_fraction(aware, x, "rayleigh", snr_db)
    assert bool((aware_mcs < naive_mcs).all())
    assert naive < 0.7, naive
    assert aware >= 0.82, aware


def test_awgn_and_the_switch_keep_the_average_snr_plan():
    """No fade (AWGN) or ``fade_aware: false`` (the default): the plan of the average SNR."""
    x = _maps(4, seed=5)
    snr = torch.tensor([3.0, 9.0, 15.0, 22.0])
    codec = DigitalCodec(bits=4, min_bits=4, max_channel_uses=20_000, decoder="fast")
    torch.manual_seed(0)
    awgn = codec.encode(x, LinkState.before_sending(build_channel("awgn"), snr))
    off = DigitalCodec(bits=4, min_bits=4, max_channel_uses=20_000, decoder="fast")
    assert off.fade_aware is False
    torch.manual_seed(0)
    rayleigh_off = off.encode(x, LinkState.before_sending(build_channel("rayleigh"), snr))
    assert torch.equal(awgn.meta["mcs"], rayleigh_off.meta["mcs"])
    assert [s.data for s in awgn.meta["streams"]] == [s.data for s in rayleigh_off.meta["streams"]]
    assert torch.equal(codec.select_mcs(snr, 4), codec.link_adaptation(snr.double()))
    with pytest.raises(ValueError, match=r"'fade_aware' must be true or false, got 'yes'"):
        DigitalCodec(fade_aware="yes")


def test_a_header_that_fits_without_any_segment_is_not_sent():
    """The budget rule: where the header fits but no segment beside it, nothing is sent (a
    header alone carries no cell): 0 channel uses, zeros out; room for the smallest segment's
    blocks more and it goes."""
    x = _maps(1, seed=9)
    whole = DigitalCodec(bits=4, min_bits=4, mcs=5, decoder="fast")
    stream = whole.encode(x, LinkState.from_snr(10.0)).meta["streams"][0]
    assert min(n for n in stream.segment_bytes if n) * 8 > PAYLOAD_BITS  # > one block each
    header_uses = int(whole._uses_for_bytes(stream.header_bytes, 5))
    tight = DigitalCodec(bits=4, min_bits=4, mcs=5, decoder="fast", max_channel_uses=header_uses)
    tx = tight.encode(x, LinkState.from_snr(10.0))
    assert int(tx.cost.channel_uses[0]) == 0 and tx.meta["streams"][0].header_bytes == 0
    assert not bool(tx.meta["sent"].any())
    block_uses = int(whole._uses_for_bytes(1, 5))  # one code block
    smallest = min(n for n in stream.segment_bytes if n)
    roomier = header_uses + (-(-smallest * 8 // PAYLOAD_BITS) + 1) * block_uses
    more = DigitalCodec(bits=4, min_bits=4, mcs=5, decoder="fast", max_channel_uses=roomier)
    sent = more.encode(x, LinkState.from_snr(10.0))
    assert sent.meta["streams"][0].header_bytes > 0 and bool(sent.meta["sent"].any())
