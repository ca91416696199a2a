"""ACK/NACK feedback delay of HARQ and ARQ rounds, against the closed form

    latency of k transmissions = k · airtime + (k − 1) · feedback_delay + processing

(every round resends the whole payload when every block / packet fails every round)."""

from __future__ import annotations

import pytest
import torch

from v2x.channels import build_channel
from v2x.channels.link import LinkState
from v2x.scheduling import BudgetConfig, schedule
from v2x.semcom.base import reception
from v2x.semcom.digital import DigitalCodec
from v2x.semcom.harq import transmit
from v2x.semcom.identity import AnalogCodec

BANDWIDTH_HZ = 1e6
PROCESSING_S = 0.003


def _latency(rx, rec) -> torch.Tensor:
    """``[N]`` ledger latency of the ``N`` payloads of ``rx`` sharing one budget equally."""
    n = rx.cost.channel_uses.shape[0]
    sent = torch.ones(1, 1, n + 1, dtype=torch.bool)
    sent[..., 0] = False

    def links(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros(1, dtype=torch.float64), t.double()]).view(1, 1, n + 1)

    cfg = BudgetConfig(
        bandwidth_hz=BANDWIDTH_HZ, deadline_s=100.0, processing_latency_s=PROCESSING_S
    )
    uses = links(rx.cost.channel_uses)
    d = schedule(cfg, sent, uses, uses, torch.zeros(1, 1, n + 1), feedback_s=links(rec.feedback_s))
    return d.latency_s[0, 0, 1:]


def _send(codec, channel, feats: torch.Tensor, snr_db: float, seed: int = 3):
    snr = torch.full((feats.shape[0],), snr_db)
    link = LinkState(snr_db=snr)
    torch.manual_seed(seed)
    tx = codec.encode(feats, link)
    _, rx = transmit(codec, channel, tx, snr, link)
    return rx, reception(rx)


@pytest.mark.parametrize("rounds", [0, 1, 3])
@pytest.mark.parametrize("feedback_s", [0.0, 0.004])
def test_arq_latency_of_k_transmissions_is_k_airtimes_plus_k_minus_1_feedbacks(rounds, feedback_s):
    # every packet lost in every round: k = rounds + 1 transmissions of the whole payload
    feats = torch.randn(3, 2, 8, 8)
    codec = AnalogCodec()
    one, _ = _send(codec, build_channel("erasure_iid", loss_prob=1.0), feats, 10.0)
    airtime = one.cost.channel_uses / (BANDWIDTH_HZ / 3)  # equal shares of the bandwidth
    channel = build_channel(
        "erasure_iid", loss_prob=1.0, arq_max_rounds=rounds, arq_feedback_delay_s=feedback_s
    )
    rx, rec = _send(codec, channel, feats, 10.0)
    k = rounds + 1
    assert torch.equal(
        rec.retransmission_rounds, torch.full((3,), float(rounds), dtype=torch.float64)
    )
    assert torch.equal(rx.cost.channel_uses, k * one.cost.channel_uses)
    expected = k * airtime + (k - 1) * feedback_s + PROCESSING_S
    torch.testing.assert_close(_latency(rx, rec), expected, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("rounds", [1, 2])
def test_harq_latency_of_k_transmissions_is_k_airtimes_plus_k_minus_1_feedbacks(rounds):
    # 64-QAM at -10 dB: every code block fails every round (BLER table: 1)
    feats = torch.randn(2, 2, 8, 8)
    base, _ = _send(DigitalCodec(mcs=20), build_channel("awgn"), feats, -10.0)
    feedback_s = 0.0015
    codec = DigitalCodec(mcs=20, harq_max_rounds=rounds, harq_feedback_delay_s=feedback_s)
    rx, rec = _send(codec, build_channel("awgn"), feats, -10.0)
    k = rounds + 1
    assert torch.equal(rx.cost.channel_uses, k * base.cost.channel_uses)  # all blocks, each round
    assert torch.equal(
        rec.retransmission_rounds, torch.full((2,), float(rounds), dtype=torch.float64)
    )
    airtime = base.cost.channel_uses / (BANDWIDTH_HZ / 2)
    expected = k * airtime + (k - 1) * feedback_s + PROCESSING_S
    torch.testing.assert_close(_latency(rx, rec), expected, rtol=1e-12, atol=0.0)


def test_rounds_count_only_rows_that_resent_and_stop_when_all_arrived():
    # i.i.d. losses: a row's rounds are those in which it still had a packet to resend, each
    # resending 1..3 of its 3 packets; a row still missing a packet at the end used them all
    torch.manual_seed(0)
    codec = AnalogCodec()
    channel = build_channel(
        "erasure_iid", loss_prob=0.5, arq_max_rounds=6, arq_feedback_delay_s=0.002
    )
    feats = torch.randn(64, 2, 30, 25)  # 750 analog symbols: 3 packets of 1500 bytes each
    rx, rec = _send(codec, channel, feats, 20.0)
    assert bool((rx.cost.packets == 3).all())
    rounds, resent = rec.retransmission_rounds, rec.retransmissions
    assert bool((resent >= rounds).all()) and bool((resent <= 3 * rounds).all())
    residual = rec.packets_erased > 0
    assert bool((rounds[residual] == 6).all())
    assert bool((rounds < 6).any()) and bool((rounds == 0).any())  # p^3 = 1/8 lose none
    torch.testing.assert_close(rec.feedback_s, rounds * 0.002, rtol=0.0, atol=0.0)


def test_default_feedback_is_instantaneous_and_keeps_latencies_bit_for_bit():
    feats = torch.randn(2, 2, 8, 8)
    codec = DigitalCodec(mcs=20, harq_max_rounds=2)
    assert codec.harq_feedback_delay_s == 0.0
    rx, rec = _send(codec, build_channel("awgn"), feats, -10.0)
    assert bool((rec.retransmission_rounds == 2).all()) and bool((rec.feedback_s == 0).all())
    n = rx.cost.channel_uses.shape[0]
    sent = torch.ones(1, 1, n + 1, dtype=torch.bool)
    sent[..., 0] = False
    uses = torch.cat([torch.zeros(1, dtype=torch.float64), rx.cost.channel_uses]).view(1, 1, -1)
    cfg = BudgetConfig(bandwidth_hz=BANDWIDTH_HZ, processing_latency_s=PROCESSING_S)
    before = schedule(cfg, sent, uses, uses, torch.zeros(1, 1, n + 1)).latency_s
    assert torch.equal(_latency(rx, rec), before[0, 0, 1:])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DigitalCodec(harq_feedback_delay_s=-0.001), "harq_feedback_delay_s"),
        (lambda: DigitalCodec(harq_feedback_delay_s=float("inf")), "harq_feedback_delay_s"),
        (lambda: DigitalCodec(harq_feedback_delay_s="2ms"), "harq_feedback_delay_s"),
        (lambda: build_channel("erasure_iid", arq_feedback_delay_s=-1.0), "arq_feedback_delay_s"),
    ],
)
def test_bad_feedback_delay_names_the_field(build, message):
    with pytest.raises(ValueError, match=message):
        build()
