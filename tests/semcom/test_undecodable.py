"""Blocks declared failed without decoding (v2x.semcom.undecodable, the meta-converse bound).

Oracles: the BPSK capacity by Gauss–Hermite quadrature (the information density's mean), the
min-sum decoder itself (no block it decodes is ever declared undecodable), the receiver's
outputs with the bound off, and the channel model each channel's ``linear_gaussian`` claims.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.channels import CHANNELS, build_channel
from v2x.channels.link import LinkState
from v2x.semcom.digital_payload import DigitalPayloadCodec
from v2x.semcom.fec import block_code
from v2x.semcom.harq import transmit
from v2x.semcom.undecodable import MARGIN_BITS, bound_applies, decodable, information_bits

BLOCK_BITS = 1024


def _bpsk_capacity(snr: float) -> float:
    """Bits per real dimension of equiprobable ±√snr over N(0, 1) noise:
    ``1 − E[log2(1 + exp(−2·snr − 2·√snr·z))]``, ``z ~ N(0, 1)``, by Gauss–Hermite quadrature."""
    z, w = np.polynomial.hermite_e.hermegauss(120)
    loss = np.logaddexp(0.0, -2.0 * snr - 2.0 * math.sqrt(snr) * z) / math.log(2.0)
    return float(1.0 - (w * loss).sum() / math.sqrt(2.0 * math.pi))


def _qpsk(n: int, s: int, g: torch.Generator) -> torch.Tensor:
    signs = torch.randint(0, 2, (n, s, 2), generator=g).float() * 2 - 1
    return torch.complex(signs[..., 0], signs[..., 1]) / math.sqrt(2.0)


def _noise(shape: tuple[int, ...], no: float, g: torch.Generator) -> torch.Tensor:
    re, im = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    return torch.complex(re, im) * math.sqrt(no / 2.0)


@pytest.mark.parametrize("snr_db", [-10.0, -3.0, 4.0])
def test_information_density_averages_to_the_bpsk_capacity(snr_db: float) -> None:
    g = torch.Generator().manual_seed(0)
    n, s = 400, 256
    no = 10.0 ** (-snr_db / 10.0)
    x = _qpsk(n, s, g)
    y = x + _noise((n, s), no, g)
    per_dim = information_bits(y, torch.full((n, s), no), x, rows_per_call=64) / (2 * s)
    oracle = _bpsk_capacity(1.0 / no)  # per real dimension: a² / (no / 2) = 1 / no
    se = float(per_dim.std()) / math.sqrt(n)
    assert abs(float(per_dim.mean()) - oracle) < 4 * se + 1e-4, (float(per_dim.mean()), oracle)


@pytest.mark.parametrize("mcs", [5, 9])
def test_the_density_is_the_decoders_llrs_against_the_sent_codeword(mcs: int) -> None:
    """Per coded bit, ``1 − log2(1 + exp(−(2c − 1)·L))`` with ``c`` from Sionna's CRC and LDPC
    encoders and ``L`` the receiver's descrambled LLRs (Sionna's convention, ``log p(1)/p(0)``):
    summed over the block, the density computed from the symbols alone."""
    from sionna.phy.fec.crc import CRCEncoder

    code = block_code(mcs, BLOCK_BITS, ldpc_decoder="minsum")
    assert code.ldpc_bits == code.coded_bits  # no repeated bits: one LLR per coded bit
    g = torch.Generator().manual_seed(6)
    bits = torch.randint(0, 2, (16, code.payload_bits), generator=g).float()
    x = code.encode(bits)
    no = 1.3
    y = x + _noise(tuple(x.shape), no, g)
    nos = torch.full(y.shape, no)
    c = code.ldpc_encoder(CRCEncoder("CRC24A")(bits))
    per_bit = 1.0 - torch.nn.functional.softplus(-(2 * c - 1) * code.llr(y, nos)) / math.log(2.0)
    torch.testing.assert_close(
        information_bits(y, nos, x), per_bit.sum(dim=1).double(), rtol=1e-5, atol=1e-2
    )


def test_erased_symbols_carry_no_information() -> None:
    g = torch.Generator().manual_seed(1)
    x = _qpsk(3, 64, g)
    no = torch.full((3, 64), 0.5)
    no[:, 32:] = float("inf")
    y = x + _noise((3, 64), 0.5, g)
    y[:, 32:] = 0
    full = information_bits(y[:, :32], no[:, :32], x[:, :32])
    torch.testing.assert_close(information_bits(y, no, x), full)


def test_the_bound_never_skips_a_block_the_decoder_decodes() -> None:
    """MCS 0 (QPSK, the code used below its cliff) from far below the cliff to above it: the
    blocks the bound declares undecodable all fail the min-sum decoder; far below, the bound
    catches nearly every block; above the cliff, none."""
    code = block_code(0, BLOCK_BITS, num_iter=20, ldpc_decoder="minsum")
    g = torch.Generator().manual_seed(2)
    n = 48
    bits = torch.randint(0, 2, (n, code.payload_bits), generator=g).float()
    x = code.encode(bits)
    caught = {}
    for snr_db in (-10.0, -8.5, -7.0, -5.5):
        no = 10.0 ** (-snr_db / 10.0)
        y = x + _noise(tuple(x.shape), no, g)
        nos = torch.full(y.shape, no)
        keep = decodable(information_bits(y, nos, x), BLOCK_BITS)
        decoded, ok = code.decode(y, nos)
        assert not bool((ok & ~keep).any()), f"a decodable block skipped at {snr_db} dB"
        right = (decoded.float() == bits).all(dim=1)
        assert bool((right == ok).all())
        caught[snr_db] = float((~keep).float().mean())
    assert caught[-10.0] >= 0.95
    assert caught[-5.5] == 0.0


def _round_trip(skip: bool, snr_db: float, harq: int, channel: str, device: str = "cpu", **kw):
    codec = DigitalPayloadCodec(
        bits=4, harq_max_rounds=harq, harq_combining="ir", skip_undecodable=skip, **kw
    )
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(2, 8, 16, 16, generator=g)).to(device)
    ch = build_channel(channel)
    torch.manual_seed(1)
    snr = torch.full((2,), snr_db, device=device)
    link = LinkState.before_sending(ch, snr)
    return transmit(codec, ch, codec.encode(x, link), snr, link)


@pytest.mark.parametrize(
    "snr_db,harq,channel,kw",
    [
        (-10.0, 0, "awgn", {}),
        (-10.0, 1, "awgn", {}),
        (-5.0, 0, "awgn", {}),
        (6.0, 1, "rayleigh", {"mcs": 2}),
    ],
)
def test_the_receiver_reports_the_same_with_and_without_the_bound(snr_db, harq, channel, kw):
    on, rx_on = _round_trip(True, snr_db, harq, channel, **kw)
    off, rx_off = _round_trip(False, snr_db, harq, channel, **kw)
    assert torch.equal(on, off)
    for key in ("delivered", "corrupt", "retransmission_rounds"):
        assert torch.equal(rx_on.meta[key], rx_off.meta[key]), key
    assert torch.equal(rx_on.cost.channel_uses, rx_off.cost.channel_uses)
    assert float(rx_off.meta["undecodable_blocks"].sum()) == 0.0
    skipped = rx_on.meta["undecodable_blocks"]
    if snr_db == -10.0:  # the first transmission's blocks, all of them (MCS 0, far below)
        assert skipped.tolist() == [float(n) for n in rx_on.meta["num_blocks"]]
    if snr_db == -5.0:
        assert float(skipped.sum()) == 0.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("ldpc_decoder", ["minsum", "minsum-fp16"])
def test_on_cuda_the_receiver_reports_the_same_with_and_without_the_bound(ldpc_decoder):
    """The Triton paths (LLRs, min-sum decoder) with a chunk of blocks skipped and the HARQ
    round decoded: the same maps and reports as decoding every block."""
    for snr_db in (-10.0, -8.5):
        kw = {"ldpc_decoder": ldpc_decoder, "device": "cuda"}
        on, rx_on = _round_trip(True, snr_db, 1, "awgn", **kw)
        off, rx_off = _round_trip(False, snr_db, 1, "awgn", **kw)
        assert torch.equal(on, off)
        assert torch.equal(rx_on.meta["delivered"], rx_off.meta["delivered"])
        assert float(rx_on.meta["undecodable_blocks"].sum()) > 0


def test_the_bound_applies_only_where_the_likelihoods_are_exact() -> None:
    x = _qpsk(2, 40, torch.Generator().manual_seed(3)).reshape(2, 40)
    snr = torch.full((2,), 0.0)
    assert bound_applies(build_channel("awgn")(x, snr)[1], 2)
    assert bound_applies(build_channel("rayleigh")(x, snr)[1], 2)
    assert bound_applies(build_channel("rician_fast")(x, snr)[1], 2)
    assert not bound_applies(build_channel("awgn")(x, snr)[1], 4)  # 16-QAM: not symmetric
    assert not bound_applies(build_channel("rayleigh", csi_error_var=0.1)(x, snr)[1], 2)
    erasure = build_channel("erasure", inner={"name": "awgn"}, loss_prob=0.3)
    assert bound_applies(erasure(x, snr)[1], 2)
    arq = build_channel("erasure", inner={"name": "awgn"}, loss_prob=0.3, arq_max_rounds=1)
    assert not bound_applies(arq(x, snr)[1], 2)  # copies merged: y is an estimate


@pytest.mark.parametrize("name", sorted(set(CHANNELS.names()) - {"tdl", "cdl"}))
def test_a_channel_that_claims_linear_gaussian_is(name: str) -> None:
    """``linear_gaussian`` promises ``y = h·x + n`` with ``n ~ CN(0, no)``: the residual's mean,
    per-dimension variance and its independence of ``x`` are checked on 40,000 symbols."""
    kwargs = {"inner": {"name": "awgn"}} if name.startswith("erasure") else {}
    ch = build_channel(name, **kwargs)
    g = torch.Generator().manual_seed(4)
    x = _qpsk(4, 10_000, g).reshape(4, 10_000)
    torch.manual_seed(5)
    y, state = ch(x, torch.full((4,), 20.0))  # (packets of the erasure channels arrive)
    if not state.linear_gaussian:
        return
    h = torch.ones(()) if state.h is None else state.h
    kept = torch.ones_like(y.real, dtype=torch.bool) if state.erased is None else ~state.erased
    n = (y - h * x)[kept]
    no = float(state.no[0])
    m = n.numel()
    assert m > 20_000, f"{name}: {m} symbols arrived"
    for part in (n.real, n.imag):
        assert abs(float(part.mean())) < 5 * math.sqrt(no / 2 / m)
        assert abs(float(part.var()) / (no / 2) - 1.0) < 5 * math.sqrt(2.0 / m)
    corr = float((n.real * x[kept].real).mean()) / math.sqrt(no / 2 * 0.5)
    assert abs(corr) < 5 / math.sqrt(m)


def test_margin_is_documented_as_the_skip_probability() -> None:
    assert 2.0**-MARGIN_BITS < 1e-12
