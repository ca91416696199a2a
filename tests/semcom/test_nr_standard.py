"""The digital chain's code blocks against the 3GPP text, written out here as the oracle.

CRC (TS 38.212 § 5.1), base graph (§ 7.2.2), lifting size and filler bits (§ 5.2.2, table
5.3.2-1), rate matching (§ 5.4.2.1 bit selection with ``k0`` of table 5.4.2.1-2, § 5.4.2.2 bit
interleaving), scrambling (TS 38.211 § 7.3.1.1 with the Gold sequence of § 5.2.1) and modulation
(TS 38.211 § 5.1). Only the LDPC mother codeword is Sionna's (checked against its parity-check
matrix). The chain's documented departures (docs/digital.md, "Where the chain departs from
3GPP") are pinned as such: one code block per CRC24A, ``E = ceil(K / (R Qm)) Qm``, and below the
mother code's rate a repeated codeword instead of the circular buffer's wrap.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("sionna")

from v2x.semcom.digital import DigitalCodec  # noqa: E402
from v2x.semcom.fec import SCRAMBLING_C_INIT, BlockCode, block_code  # noqa: E402

# 38.212 § 5.1: gCRC24A(D) = D^24 + D^23 + D^18 + D^17 + D^14 + D^11 + D^10 + D^7 + D^6 + D^5
# + D^4 + D^3 + D + 1.
CRC24A = (24, 23, 18, 17, 14, 11, 10, 7, 6, 5, 4, 3, 1, 0)
# 38.212 table 5.3.2-1: Z = a · 2^j ≤ 384, a ∈ {2, 3, 5, 7, 9, 11, 13, 15}.
LIFTING_SIZES = sorted(a * 2**j for a in (2, 3, 5, 7, 9, 11, 13, 15) for j in range(8))
LIFTING_SIZES = [z for z in LIFTING_SIZES if z <= 384]


def crc_bits(bits: np.ndarray, exponents: tuple[int, ...]) -> np.ndarray:
    """Parity bits of 38.212 § 5.1: the remainder of ``bits(D) · D^L`` by ``g(D)``."""
    length = exponents[0]
    g = np.zeros(length + 1, dtype=np.int64)
    g[[length - e for e in exponents]] = 1
    reg = np.concatenate([bits, np.zeros(length, dtype=np.int64)])
    for i in range(len(bits)):
        if reg[i]:
            reg[i : i + length + 1] ^= g
    return reg[-length:]


def gold_sequence(n: int, c_init: int) -> np.ndarray:
    """38.211 § 5.2.1: ``c(n) = (x1(n + Nc) + x2(n + Nc)) mod 2``, ``Nc = 1600``."""
    nc = 1600
    x1 = np.zeros(nc + n + 31, dtype=np.int64)
    x2 = np.zeros(nc + n + 31, dtype=np.int64)
    x1[0] = 1
    x2[:31] = [(c_init >> i) & 1 for i in range(31)]
    for i in range(nc + n):
        x1[i + 31] = (x1[i + 3] + x1[i]) % 2
        x2[i + 31] = (x2[i + 3] + x2[i + 2] + x2[i + 1] + x2[i]) % 2
    return (x1[nc : nc + n] + x2[nc : nc + n]) % 2


def qam_points(qm: int) -> np.ndarray:
    """``[2^Qm]`` complex: 38.211 § 5.1.3–5.1.5, the label's first bit the most significant."""
    out = []
    for label in range(2**qm):
        s = [1 - 2 * ((label >> (qm - 1 - i)) & 1) for i in range(qm)]
        if qm == 2:
            x = (s[0] + 1j * s[1]) / math.sqrt(2)
        elif qm == 4:
            x = (s[0] * (2 - s[2]) + 1j * s[1] * (2 - s[3])) / math.sqrt(10)
        elif qm == 6:
            x = s[0] * (4 - s[2] * (2 - s[4])) + 1j * s[1] * (4 - s[3] * (2 - s[5]))
            x /= math.sqrt(42)
        else:  # 256-QAM
            x = s[0] * (8 - s[2] * (4 - s[4] * (2 - s[6])))
            x += 1j * s[1] * (8 - s[3] * (4 - s[5] * (2 - s[7])))
            x /= math.sqrt(170)
        out.append(x)
    return np.array(out)


def base_graph_38212(a: int, r: float) -> str:
    """38.212 § 7.2.2 (LDPC base graph selection) for payload ``A`` and target code rate ``R``."""
    if a <= 292 or (a <= 3824 and r <= 0.67) or r <= 0.25:
        return "bg2"
    return "bg1"


def rate_match(d: np.ndarray, bg: str, z: int, k: int, k_ldpc: int, e: int, qm: int, rv: int):
    """38.212 § 5.4.2: ``d [N, n_ldpc]`` mother codewords → ``[N, E]`` rate-matched bits.

    Bit selection (§ 5.4.2.1, ``I_LBRM = 0``: ``N_cb = N``): the buffer is ``d`` without its first
    ``2Z`` bits; ``e_j = buffer[(k0 + t) mod N_cb]`` over ``t = 0, 1, …``, skipping the filler
    ``<NULL>`` bits (codeword positions ``K' … K − 1``), with ``k0`` of table 5.4.2.1-2. Bit
    interleaving (§ 5.4.2.2): ``f[i + j Qm] = e[i E / Qm + j]``.
    """
    n_cb = d.shape[1] - 2 * z
    cols, coeff = (66, (0, 17, 33, 56)) if bg == "bg1" else (50, (0, 13, 25, 43))
    k0 = (coeff[rv] * n_cb // (cols * z)) * z
    null = np.zeros(n_cb, dtype=bool)
    null[k - 2 * z : k_ldpc - 2 * z] = True
    picked: list[int] = []
    t = 0
    while len(picked) < e:
        pos = (k0 + t) % n_cb
        if not null[pos]:
            picked.append(pos)
        t += 1
    sel = d[:, 2 * z :][:, picked]
    f = np.empty_like(sel)
    for j in range(e // qm):
        for i in range(qm):
            f[:, i + j * qm] = sel[:, i * (e // qm) + j]
    return f


# (block_bits incl. CRC, MCS): base graph 2 and 1 at the default 1024-bit block, the repetition
# of MCS 0-2, a 300-bit block at MCS 25 (A = 276 ≤ 292: base graph 2 although k / n > 0.67), a
# 4000-bit block at MCS 4 (base graph 1 below its rate 1/3: repeated).
CASES = [(1024, 0), (1024, 2), (1024, 3), (1024, 16), (1024, 22), (1024, 23), (1024, 28),
         (300, 25), (4000, 4)]  # fmt: skip


@pytest.mark.parametrize("block_bits,mcs", CASES)
def test_base_graph_lifting_size_and_fillers_follow_38212(block_bits: int, mcs: int):
    code = block_code(mcs, block_bits)
    enc = code.ldpc_encoder
    a, rate = block_bits - 24, code.mcs.rate_x1024 / 1024
    bg = base_graph_38212(a, rate)
    assert enc.n_ldpc // enc.z == {"bg1": 68, "bg2": 52}[bg]  # columns of the base graph
    # § 5.2.2 (one code block, K' = B = A + 24): K_b, then the smallest Z with K_b Z ≥ K'.
    if bg == "bg1":
        k_b = 22
    else:
        k_b = 10 if block_bits > 640 else 9 if block_bits > 560 else 8 if block_bits > 192 else 6
    z = min(zz for zz in LIFTING_SIZES if k_b * zz >= block_bits)
    assert enc.z == z
    assert enc.k_ldpc == (22 if bg == "bg1" else 10) * z  # K = 22 Z or 10 Z
    assert enc.k_filler == enc.k_ldpc - block_bits  # F = K − K'


@pytest.mark.parametrize("block_bits,mcs", CASES)
def test_block_symbols_are_the_38212_38211_chain_for_every_redundancy_version(
    block_bits: int, mcs: int
):
    """CRC24A → LDPC → rate matching → scrambling → QAM, bit for bit, RV 0, 2, 3, 1.

    ``E`` is the chain's ``coded_bits`` (its departure from 38.212's ``E``, documented). Where
    ``E`` exceeds the mother code (``E > ldpc_bits``: MCS 0–2; base graph 1 below rate 1/3) the
    chain sends the 38.212 rate matching of ``E' = ldpc_bits`` bits repeated cyclically —
    the documented departure from the circular buffer's wrap — and ``E'`` is pinned here."""
    code = BlockCode(mcs, block_bits)
    enc = code.ldpc_encoder
    qm, k = code.mcs.qm, block_bits
    bg = base_graph_38212(k - 24, code.mcs.rate)
    mother_rate_inv = 3 if bg == "bg1" else 5
    assert code.coded_bits == math.ceil(k * 1024 / (code.mcs.rate_x1024 * qm)) * qm
    assert code.ldpc_bits == min(code.coded_bits, (mother_rate_inv * k // qm) * qm)

    gen = torch.Generator().manual_seed(block_bits + mcs)
    payload = torch.randint(0, 2, (3, code.payload_bits), generator=gen)
    info = np.array([np.concatenate([p, crc_bits(p, CRC24A)]) for p in payload.numpy()])
    # the mother codeword: Sionna's encoder (systematic, in the null space of its 38.212 PCM)
    filled = np.concatenate([info, np.zeros((3, enc.k_ldpc - k), dtype=np.int64)], axis=1)
    d = enc._encode_fast(torch.tensor(filled, dtype=torch.float32)).reshape(3, -1)
    d = d.round().numpy().astype(np.int64)
    assert np.array_equal(d[:, : enc.k_ldpc], filled)
    assert not (enc.pcm @ d.T % 2).any()

    scramble = gold_sequence(code.coded_bits, SCRAMBLING_C_INIT)
    points = qam_points(qm)
    for rv in (0, 2, 3, 1):
        f = rate_match(d, bg, enc.z, k, enc.k_ldpc, code.ldpc_bits, qm, rv)
        f = f[:, np.arange(code.coded_bits) % code.ldpc_bits]  # = f when E = ldpc_bits
        b = (f + scramble) % 2
        labels = (b.reshape(3, -1, qm) << np.arange(qm - 1, -1, -1)).sum(-1)
        expected = torch.tensor(points[labels], dtype=torch.complex64)
        got = code.encode(payload.float(), rv=rv)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_a_block_too_long_for_its_base_graph_is_refused_when_the_codec_is_built():
    """38.212 § 5.2.2: a base-graph-2 code block holds at most 3840 bits. With 4000-bit blocks
    MCS 0–3 (R ≤ 0.25) take base graph 2: the standard would segment, the chain refuses."""
    with pytest.raises(ValueError, match="block_bits"):
        DigitalCodec(decoder="exact", block_bits=4000)  # mcs auto: MCS 0-3 may be chosen
    with pytest.raises(ValueError, match="block_bits"):
        DigitalCodec(decoder="exact", block_bits=4000, mcs=3)
    assert DigitalCodec(decoder="exact", block_bits=4000, mcs=4).block_bits == 4000
    # every MCS fits (no BLER table for 3840 bits: the block target's Shannon-gap thresholds)
    assert DigitalCodec(decoder="exact", block_bits=3840, target_unit="block").block_bits == 3840


@pytest.mark.parametrize("qm", [2, 4, 6, 8])
def test_qam_points_and_labels_are_38211s(qm: int):
    """The constellation the chain maps with and ``SeparableQamDemapper`` splits (Sionna's
    ``Mapper("qam", Qm)``; 256-QAM only for the demapper) against 38.211 § 5.1.3–5.1.5."""
    from sionna.phy.mapping import Mapper

    points = torch.tensor(qam_points(qm), dtype=torch.complex64)
    torch.testing.assert_close(Mapper("qam", qm).constellation(), points, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mcs", [0, 1, 2])  # the MCSs whose blocks carry cyclic repeats
@pytest.mark.parametrize("block_bits", [256, 1024, 3840])
def test_cyclic_repeats_add_as_scatter_add_adds_them(mcs: int, block_bits: int):
    """``add_cyclic_repeats`` (slices added in the order sent) gives, bit for bit and signs of
    zero included, what ``scatter_add_`` over coded bit ``j`` → codeword bit
    ``j mod ldpc_bits`` gives (the oracle; CUDA's deterministic mode runs it as a sort)."""
    from v2x.semcom.fec import add_cyclic_repeats

    code = BlockCode(mcs, block_bits)
    assert code.ldpc_bits < code.coded_bits  # repeats present
    g = torch.Generator().manual_seed(mcs * 10_000 + block_bits)
    llr = torch.randn(5, code.coded_bits, generator=g) * 30
    llr[0, : code.ldpc_bits] = -0.0  # signs of zero survive as the scatter leaves them
    llr[1, ::3] = 0.0
    idx = (torch.arange(code.coded_bits) % code.ldpc_bits).expand(5, -1)
    want = torch.zeros(5, code.ldpc_bits).scatter_add_(1, idx, llr)
    got = add_cyclic_repeats(llr, code.ldpc_bits)
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))
