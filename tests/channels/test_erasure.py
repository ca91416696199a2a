"""Packetisation and packet-erasure models vs theory."""

from __future__ import annotations

import math

import pytest
import torch

from v2x.channels import Packetizer, build_channel
from v2x.channels.erasure import gilbert_elliott_states, normal_approx_bler


def test_packetizer_accounting_by_hand() -> None:
    p = Packetizer(mtu_bytes=1500, header_bytes=52, bits_per_symbol=4.0)
    assert p.payload_symbols == (1500 - 52) * 8 // 4 == 2896
    assert p.header_symbols == 52 * 8 // 4 == 104
    assert p.num_packets(2896) == 1 and p.num_packets(2897) == 2
    assert p.channel_uses(5000) == 5000 + 2 * 104
    idx = p.packet_index(5000)
    assert idx[2895] == 0 and idx[2896] == 1 and idx[-1] == 1
    with pytest.raises(ValueError, match="header_bytes"):
        Packetizer(mtu_bytes=40, header_bytes=40)


def test_iid_loss_rate_and_masks() -> None:
    torch.manual_seed(0)
    ch = build_channel("erasure_iid", loss_prob=0.2, symbols_per_packet=10)
    x = torch.ones(400, 1000, dtype=torch.complex64)
    y, st = ch(x, 30.0)
    lost = st.extra["packet_lost"]
    assert lost.shape == (400, 100) and st.extra["num_packets"] == 100
    assert abs(float(lost.float().mean()) - 0.2) < 5 * math.sqrt(0.16 / 40_000)
    assert torch.equal(st.erased, lost.repeat_interleave(10, dim=1))
    assert bool((y[st.erased] == 0).all()) and bool((y[~st.erased] != 0).all())


def _runs(mask: torch.Tensor) -> tuple[int, int]:
    """(number of runs of True, total True) over rows of a [B, P] bool tensor."""
    starts = mask[:, 1:] & ~mask[:, :-1]
    return int(starts.sum() + mask[:, 0].sum()), int(mask.sum())


def test_gilbert_elliott_stationary_loss_and_burst_length() -> None:
    torch.manual_seed(1)
    p, r = 0.05, 0.25
    bad = gilbert_elliott_states(300, 1500, p, r)
    pi_b = p / (p + r)
    # Markov chain, λ = 1 − p − r = 0.7: σ² = π_B(1−π_B)(1+λ)/(1−λ)/N → σ = 0.0013; 0.01 = 7.6 σ.
    # Burst (gap) lengths: ≈ 18 750 geometric runs, σ/mean = 0.63 % (0.71 %): 4 % (5 %) ≥ 6 σ.
    # Channel: loss indicators carry the state's correlation, σ ≈ 0.0016 → 0.01 = 6.2 σ.
    assert abs(float(bad.float().mean()) - pi_b) < 0.01
    runs, total = _runs(bad)
    assert total / runs == pytest.approx(1 / r, rel=0.04)  # mean burst length 1/r
    gaps, gap_total = _runs(~bad)
    assert gap_total / gaps == pytest.approx(1 / p, rel=0.05)  # mean gap 1/p
    # Through the channel with per-state loss probabilities.
    ch = build_channel(
        "erasure_ge", p_gb=p, p_bg=r, loss_good=0.01, loss_bad=0.8, symbols_per_packet=1
    )
    _, st = ch(torch.ones(200, 1000, dtype=torch.complex64), 20.0)
    expected = (1 - pi_b) * 0.01 + pi_b * 0.8
    assert ch.expected_loss_rate() == pytest.approx(expected)
    assert abs(float(st.erased.float().mean()) - expected) < 0.01


def test_bler_mode_table_and_normal_approximation() -> None:
    torch.manual_seed(2)
    x = torch.ones(200, 200, dtype=torch.complex64)
    ch = build_channel(
        "erasure_bler", inner="awgn", bler_table=[[0.0, 0.3], [20.0, 0.3]], symbols_per_packet=20
    )
    # 20 000 independent packets (was 2 000 with ±0.02, under 2 σ): 5 σ = 5·√(0.21/20 000) = 0.016.
    _, st = ch(x.repeat(10, 1), 10.0)
    lost = st.extra["packet_lost"]
    assert lost.numel() == 20_000
    assert abs(float(lost.double().mean()) - 0.3) < 5 * math.sqrt(0.3 * 0.7 / lost.numel())
    # Normal approximation: rate-2 code (2 bits/use) needs SNR > 3 → 4.8 dB; 100-use packets.
    ch = build_channel("erasure_bler", inner="awgn", symbols_per_packet=100, bits_per_symbol=2.0)
    assert float(ch(x, 12.0)[1].erased.float().mean()) == 0.0
    assert float(ch(x, 0.0)[1].erased.float().mean()) == 1.0
    eps = normal_approx_bler(torch.tensor([10**0.6]), 100.0, 200.0)
    p = 10**0.6
    c, v = math.log2(1 + p), p * (p + 2) / (p + 1) ** 2 * math.log2(math.e) ** 2
    z = (100 * c - 200 + 0.5 * math.log2(100)) / math.sqrt(100 * v)
    assert float(eps) == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-4)


def test_erasure_config_errors() -> None:
    with pytest.raises(ValueError, match="loss_prob"):
        build_channel("erasure_iid", loss_prob=1.5)
    with pytest.raises(ValueError, match="model"):
        build_channel("erasure", model="burst")
    with pytest.raises(ValueError, match="name"):
        build_channel("erasure_iid", inner={"block_len": 3})
