"""HARQ (digital chain) and ARQ (erasure channels) against closed forms and the ledger."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.channels import build_channel
from v2x.channels.base import ChannelState
from v2x.channels.link import LinkState
from v2x.scheduling import BudgetConfig, schedule
from v2x.semcom.base import Cost, Transmission, reception
from v2x.semcom.digital import DigitalCodec
from v2x.semcom.digital_blocks import block_code_len
from v2x.semcom.digital_stream import MapStream
from v2x.semcom.fec import block_code
from v2x.semcom.harq import harq_decode_blocks, transmit
from v2x.semcom.identity import AnalogCodec
from v2x.semcom.selective import SelectiveCodec

THREE_DB = 10 * math.log10(2.0)


def _awgn_resend(snr_db: float):
    channel = build_channel("awgn")

    def resend(x, spp, mask=None):
        return channel(x, torch.full((x.shape[0],), snr_db))

    return resend


def _blocks_tx(codec: DigitalCodec, mcs: int, num_blocks: int, snr_db: float):
    """A one-row Transmission of ``num_blocks`` random code blocks through AWGN at ``snr_db``."""
    code = block_code(mcs, codec.block_bits, codec.num_iter, codec.cn_update)
    bits = torch.randint(0, 2, (num_blocks, code.payload_bits)).float()
    x = code.encode(bits).reshape(1, -1)
    cost = Cost(*(torch.zeros(1, dtype=torch.float64) for _ in range(5)))
    meta = {"num_blocks": [num_blocks], "mcs": torch.tensor([mcs]), "streams": []}
    tx = Transmission(symbols=x, cost=cost, meta=meta)
    y, state = _awgn_resend(snr_db)(x, None)
    return tx.received(y, state), x


def test_chase_combining_of_two_qpsk_copies_is_the_llr_of_one_copy_at_3db_more():
    # QPSK LLRs are linear in y: LLR(y1, no) + LLR(y2, no) == LLR((y1 + y2) / 2, no / 2)
    # exactly, the LLR of one copy whose noise has half the variance (+3.01 dB).
    torch.manual_seed(0)
    code = block_code(4, 256)
    assert code.mcs.qm == 2
    x = code.encode(torch.randint(0, 2, (50, code.payload_bits)).float())
    no = 0.8
    noise = (torch.randn(2, *x.shape) + 1j * torch.randn(2, *x.shape)) * math.sqrt(no / 2)
    y1, y2 = x + noise[0], x + noise[1]
    combined = code.llr(y1, torch.full(x.shape, no)) + code.llr(y2, torch.full(x.shape, no))
    single = code.llr((y1 + y2) / 2, torch.full(x.shape, no / 2))
    assert torch.allclose(combined, single, rtol=1e-4, atol=1e-3)


@pytest.mark.slow  # exact BP on 3 x 240 blocks: about 40 s on a shared 2-core CPU
def test_two_round_chase_bler_matches_one_round_at_3db_more_exact_decoder():
    # Block error rate after 2 chase-combined rounds at s equals that of one round at
    # s + 3.01 dB (QPSK: exact in distribution). At s one round fails almost always, so
    # without combining (decoding the second copy alone) the residual would be ≈ BLER(s)² ≈ 1.
    torch.manual_seed(1)
    n, s = 240, -4.5
    codec = DigitalCodec(mcs=4, decoder="exact", block_bits=64, num_iter=10, harq_max_rounds=1)
    rx, x = _blocks_tx(codec, 4, n, s)
    blocks, *_ = harq_decode_blocks(codec, rx, x, _awgn_resend(s))
    two_rounds = 1 - float(blocks[0][0].float().mean())
    one = DigitalCodec(mcs=4, decoder="exact", block_bits=64, num_iter=10)
    rx1, _ = _blocks_tx(one, 4, n, s + THREE_DB)
    one_round = 1 - float(one.decode_blocks(rx1)[0][0].float().mean())
    first = 1 - float(one.decode_blocks(rx)[0][0].float().mean())  # round 1 alone at s
    assert first > 0.9
    p = (two_rounds + one_round) / 2
    sigma = math.sqrt(max(p * (1 - p), 0.01) * 2 / n)
    assert abs(two_rounds - one_round) < 5 * sigma
    assert two_rounds < first**2 - 5 * sigma  # combining, not two independent tries


def test_fast_decoder_chase_rounds_read_the_table_at_the_combined_snr():
    # Fast decoder: after R chase rounds on AWGN the combined SNR is s + 10 log10(R + 1); the
    # residual block failure rate is the table's BLER there (binomial tolerance, 5 sigma).
    torch.manual_seed(2)
    n, s, m = 4000, 3.0, 9
    for rounds in (1, 2):
        codec = DigitalCodec(mcs=m, decoder="fast", harq_max_rounds=rounds)
        rx, x = _blocks_tx(codec, m, n, s)
        blocks, uses, _, packets = harq_decode_blocks(codec, rx, x, _awgn_resend(s))
        residual = 1 - float(blocks[0][0].float().mean())
        snr = torch.tensor([s + 10 * math.log10(rounds + 1)], dtype=torch.float64)
        expect = float(codec.table.bler(torch.tensor([m]), snr))
        sigma = math.sqrt(max(expect * (1 - expect), 1e-3) / n)
        assert abs(residual - expect) < 5 * sigma
        assert float(uses[0]) > 0 and float(uses[0]) % block_code_len(m, 1024) == 0


def test_incremental_redundancy_sends_other_bits_and_decodes_a_lost_first_copy():
    # RV 2 starts elsewhere in the circular buffer; a block whose first copy was erased (zero
    # LLRs) decodes from clean retransmissions: chase (RV 0 again) in one round; IR sends RV 2
    # (not self-decodable: mostly parity) then RV 3 (self-decodable), so two rounds.
    torch.manual_seed(3)
    code = block_code(9, 1024)
    bits = torch.randint(0, 2, (4, code.payload_bits)).float()
    assert not torch.equal(code.encode(bits, rv=2), code.encode(bits))
    for combining, rounds in (("chase", 1), ("ir", 2)):
        codec = DigitalCodec(
            mcs=9, decoder="exact", harq_max_rounds=rounds, harq_combining=combining
        )
        x = code.encode(bits).reshape(1, -1)
        cost = Cost(*(torch.zeros(1, dtype=torch.float64) for _ in range(5)))
        data = np.packbits(bits.reshape(-1).to(torch.uint8).numpy()).tobytes()
        meta = {"num_blocks": [4], "mcs": torch.tensor([9]), "streams": [MapStream(data, 0, [], 8)]}
        erased = torch.ones_like(x, dtype=torch.bool)
        rx = Transmission(
            symbols=torch.zeros_like(x),
            cost=cost,
            meta=meta,
            state=ChannelState(no=torch.tensor([0.01]), erased=erased),
        )
        blocks, *_ = harq_decode_blocks(codec, rx, x, _awgn_resend(20.0))
        ok, u = blocks[0]
        assert bool(ok.all()), combining
        assert torch.equal(u.float(), bits)


def _ledger_pair(rounds: int, channel: str, codec, **channel_kw):
    torch.manual_seed(5)
    feats = torch.randn(3, 4, 16, 16)
    snr = torch.tensor([4.0, 5.0, 6.0])
    link = LinkState(snr_db=snr)
    ch = build_channel(channel, **channel_kw)
    torch.manual_seed(6)
    tx = codec.encode(feats, link)
    _, rx = transmit(codec, ch, tx, snr, link)
    return tx, rx, reception(rx)


def test_harq_ledger_latency_grows_by_exactly_the_airtime_of_the_resent_blocks():
    base_tx, base, base_rec = _ledger_pair(0, "awgn", DigitalCodec(mcs=14))
    codec = DigitalCodec(mcs=14, harq_max_rounds=2)
    tx, rx, rec = _ledger_pair(2, "awgn", codec)
    s = block_code_len(14, 1024)
    extra = rx.cost.channel_uses - base.cost.channel_uses
    assert torch.equal(base.cost.packets, rx.cost.packets)  # the payload's packets
    assert bool((extra > 0).any()) and bool((extra % s == 0).all())
    # every round resends at most the payload's blocks
    assert bool((extra <= 2 * base.cost.channel_uses).all())
    assert bool((rec.retransmissions >= extra / s / codec.blocks_per_packet).all())
    assert bool((rec.retransmissions > 0).any()) and bool((base_rec.retransmissions == 0).all())
    # residual losses can only fall with retransmissions (same first round: same seed)
    assert bool((rec.packets_crc_failed <= base_rec.packets_crc_failed).all())
    cfg = BudgetConfig(bandwidth_hz=1e6, deadline_s=1.0)
    sent = torch.ones(1, 1, 4, dtype=torch.bool)
    sent[..., 0] = False

    def latency(cost):
        uses = torch.cat([torch.zeros(1), cost.channel_uses]).view(1, 1, 4)
        return schedule(cfg, sent, uses, uses, torch.zeros(1, 1, 4)).latency_s[0, 0, 1:]

    share = 1 / 3
    assert torch.allclose(
        latency(rx.cost) - latency(base.cost), extra / (share * cfg.bandwidth_hz), rtol=1e-12
    )


def test_retransmissions_that_miss_the_deadline_follow_late_policy():
    codec = DigitalCodec(mcs=14, harq_max_rounds=3)
    _, rx, _ = _ledger_pair(3, "awgn", codec)
    uses = torch.cat([torch.zeros(1), rx.cost.channel_uses]).view(1, 1, 4)
    first = uses.clone()
    first[0, 0, 1:] = _ledger_pair(0, "awgn", DigitalCodec(mcs=14))[1].cost.channel_uses
    sent = torch.tensor([[[False, True, True, True]]])
    # a deadline the first round meets and the retransmissions do not
    deadline = float((first[0, 0, 1:] / (1e6 / 3)).max()) * 1.01
    assert bool((uses[0, 0, 1:] / (1e6 / 3) > deadline).any())
    for policy, delivered in (("drop", False), ("stale", True)):
        cfg = BudgetConfig(bandwidth_hz=1e6, deadline_s=deadline, late_policy=policy)
        ok = schedule(cfg, sent, first, first, torch.zeros(1, 1, 4))
        assert bool(ok.delivered[0, 0, 1:].all())
        late = schedule(cfg, sent, uses, uses, torch.zeros(1, 1, 4))
        missed = ~late.on_time[0, 0, 1:]
        assert bool(missed.any())
        assert bool((late.delivered[0, 0, 1:][missed] == delivered).all())


def test_arq_residual_loss_and_transmissions_per_packet_match_closed_forms():
    # i.i.d. erasures p, R rounds: residual loss p^(R+1), mean transmissions (1-p^(R+1))/(1-p).
    torch.manual_seed(7)
    p, r = 0.3, 2
    ch = build_channel("erasure_iid", loss_prob=p, symbols_per_packet=1, arq_max_rounds=r)
    x = torch.ones(8, 4000, dtype=torch.complex64)
    y, st = ch(x, 20.0)
    n = x.numel()
    lost = st.extra["packet_lost"]
    residual = float(lost.float().mean())
    q = p ** (r + 1)
    assert abs(residual - q) < 5 * math.sqrt(q * (1 - q) / n)
    sends = 1 + float(st.extra["arq"]["retransmitted_packets"].sum()) / n
    mean = (1 - q) / (1 - p)
    probs = [p ** (k - 1) * (1 - p) for k in range(1, r + 1)] + [p**r]
    var = sum(pk * k * k for k, pk in enumerate(probs, 1)) - mean**2
    assert abs(sends - mean) < 5 * math.sqrt(var / n)
    assert torch.equal(st.erased, lost)  # one use per packet
    # every use holds the copy that arrived (equalised; 20 dB noise), erased ones are 0
    assert bool(((y[~st.erased] - 1).abs() < 0.6).all()) and bool((y[st.erased] == 0).all())
    assert bool(st.equalized) and bool(torch.isinf(st.no_eff[st.erased]).all())
    assert float(st.extra["arq"]["retransmitted_uses"].sum()) == float(
        st.extra["arq"]["retransmitted_packets"].sum()
    )


def test_arq_ledger_charges_the_resent_packets_of_a_codec():
    codec = AnalogCodec()
    _, base, base_rec = _ledger_pair(0, "erasure_iid", codec, loss_prob=0.3)
    _, rx, rec = _ledger_pair(2, "erasure_iid", codec, loss_prob=0.3, arq_max_rounds=2)
    arq = rx.state.extra["arq"]
    assert torch.equal(rx.cost.channel_uses - base.cost.channel_uses, arq["retransmitted_uses"])
    assert torch.equal(rec.retransmissions, arq["retransmitted_packets"])
    assert bool((rec.retransmissions > 0).all())
    assert bool((rec.packets_erased < base_rec.packets_erased).all())
    assert torch.equal(base_rec.retransmissions, torch.zeros(3, dtype=torch.float64))
    # a resent packet costs its payload channel uses
    spp = base.symbols_per_packet
    assert bool((arq["retransmitted_uses"] <= arq["retransmitted_packets"] * spp).all())


#: Coded bits per channel use of 38.214 MCS table 1, index 14: 16-QAM (written out, not read from
#: the codec's MCS table).
QM_MCS14 = 4


@pytest.mark.parametrize(
    ("make", "bits_per_use"),
    [
        (AnalogCodec, 0),
        (lambda: DigitalCodec(mcs=14), QM_MCS14),
        (lambda: SelectiveCodec(inner=AnalogCodec(), keep_fraction=1.0), 0),
        (lambda: SelectiveCodec(inner=DigitalCodec(mcs=14), keep_fraction=0.25), QM_MCS14),
    ],
    ids=["analog", "digital", "selective-analog", "selective-digital"],
)
def test_arq_charges_the_coded_bits_the_resent_channel_uses_carry(make, bits_per_use):
    """An ARQ round resends packets of the codec's symbols, so the coded bits it adds are those
    its resent channel uses carry: the MCS's modulation order per use for the digital chain,
    none for analog values (an analog codec's only coded bits are its error-free side
    information, and the selective codec's selection map travels error-free on its control
    channel: neither is resent). Until 2026-12 every resent use was charged the payload's mean
    coded bits per use (control uses included): fractions of a bit for analog, too few for a
    digital payload behind a QPSK selection map."""
    codec = make()
    tx, rx, rec = _ledger_pair(2, "erasure_iid", codec, loss_prob=0.7, arq_max_rounds=2)
    extra_uses = rx.cost.channel_uses - tx.cost.channel_uses
    assert bool((rec.retransmissions > 0).any()) and bool((extra_uses > 0).any())
    assert torch.equal(rx.cost.coded_bits - tx.cost.coded_bits, extra_uses * bits_per_use)
    assert torch.equal(rx.cost.coded_bits, rx.cost.coded_bits.round())  # whole bits


def test_bad_retransmission_settings():
    with pytest.raises(ValueError, match="harq_max_rounds"):
        DigitalCodec(harq_max_rounds=-1)
    with pytest.raises(ValueError, match="harq_combining"):
        DigitalCodec(harq_combining="soft")
    with pytest.raises(ValueError, match="decoder='exact'"):
        DigitalCodec(harq_max_rounds=1, harq_combining="ir", decoder="fast")
    with pytest.raises(ValueError, match="arq_max_rounds"):
        build_channel("erasure_iid", arq_max_rounds=1.5)
    codec = DigitalCodec(mcs=14, harq_max_rounds=1)
    ch = build_channel("erasure_iid", arq_max_rounds=1)
    feats = torch.randn(1, 4, 8, 8)
    link = LinkState(snr_db=torch.tensor([10.0]))
    with pytest.raises(ValueError, match="set one of them to 0"):
        transmit(codec, ch, codec.encode(feats, link), link.snr_db, link)


@pytest.mark.slow  # exact BP, 4 x 120 blocks: about 40 s on a shared 2-core CPU
def test_incremental_redundancy_beats_chase_combining_at_a_high_code_rate():
    # MCS 16 (16-QAM, R = 0.64), 5 dB, one retransmission: chase combining is a 3 dB gain on
    # the same rate-0.64 code; RV 0 + RV 2 is a lower-rate code (new parity bits), whose
    # BLER at 5 dB is far lower (measured on 200 blocks: 0.745 vs 0.0).
    n, s, m = 120, 5.0, 16
    residual = {}
    for combining in ("chase", "ir"):
        torch.manual_seed(8)
        codec = DigitalCodec(
            mcs=m, decoder="exact", block_bits=256, harq_max_rounds=1, harq_combining=combining
        )
        code = block_code(m, 256)
        bits = torch.randint(0, 2, (n, code.payload_bits)).float()
        x = code.encode(bits).reshape(1, -1)
        data = np.packbits(bits.reshape(-1).to(torch.uint8).numpy()).tobytes()
        meta = {"num_blocks": [n], "mcs": torch.tensor([m]), "streams": [MapStream(data, 0, [], 8)]}
        y, state = _awgn_resend(s)(x, None)
        cost = Cost(*(torch.zeros(1, dtype=torch.float64) for _ in range(5)))
        rx = Transmission(symbols=y, cost=cost, meta=meta, state=state)
        blocks, *_ = harq_decode_blocks(codec, rx, x, _awgn_resend(s))
        ok, u = blocks[0]
        assert torch.equal(u[ok].float(), bits[ok])  # a block that passes carries its bits
        residual[combining] = 1 - float(ok.float().mean())
    # binomial sigma at p = 0.5, n = 120: 0.046; the gap must exceed 5 sigma of a difference
    assert residual["chase"] - residual["ir"] > 5 * math.sqrt(2 * 0.25 / n)
