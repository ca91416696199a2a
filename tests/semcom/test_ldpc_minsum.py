"""The batched min-sum LDPC decoder (v2x.semcom.ldpc_minsum) against Sionna's 5G encoder and BP
decoder: noiseless codewords of both base graphs and every lifting-size set, identical decoded
bits wherever both decoders recover a block of the digital chain, block error rates within
binomial noise of Sionna's, early termination, and the digital codec with ``ldpc_decoder:
minsum``. The BLER curves (MCS 5/14/20/27, 0.2 dB goal at BLER 1e-2) are measured by
benchmarks/ldpc_bler.py (docs/digital.md).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from v2x.semcom.fec import block_code
from v2x.semcom.ldpc_minsum import LDPC5GMinSumDecoder
from v2x.semcom.mcs import MCS_TABLE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _encoder(k: int, n: int, qm: int | None = None):
    from sionna.phy.fec.ldpc import LDPC5GEncoder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rate > 948/1024 warning
        return LDPC5GEncoder(k, n, num_bits_per_symbol=qm)


# (k, n, Qm): base graph 2 and 1 with a lifting size from each of the eight sets of 38.212
# table 5.3.2-1 (Z = 2, 7, 18, 26, 44, 120, 320, 384; 24, 72, 128, 160, 288, 384).
CODES = [
    (12, 60, None), (40, 100, 2), (100, 300, 4), (200, 1000, None), (350, 600, 6),
    (1200, 2400, 2), (3000, 4504, 8), (3840, 19000, 4),
    (500, 600, 2), (1500, 2000, None), (2800, 3500, 4), (3300, 4002, 6), (6000, 7000, 8),
    (8448, 9000, 2),
]  # fmt: skip


@pytest.mark.parametrize("k,n,qm", CODES)
def test_noiseless_codewords_decode_exactly(k: int, n: int, qm: int | None):
    enc = _encoder(k, n, qm)
    dec = LDPC5GMinSumDecoder(enc, num_iter=5)
    g = torch.Generator().manual_seed(k)
    u = torch.randint(0, 2, (3, k), generator=g).float()
    c = enc(u)
    llr = 4.0 * (2.0 * c - 1.0)  # logits: positive favours 1 (Sionna's convention)
    res = dec.decode(llr, return_codeword=True)
    assert torch.equal(res.bits, u) and torch.equal(res.codeword, c)
    assert bool(res.converged.all()) and int(res.iterations.max()) <= 2  # punctured bits
    assert dec(llr).dtype == torch.float32


def test_every_mcs_code_of_the_chain_decodes_noiseless_codewords():
    """The chain's 29 codes (1024-bit blocks: base graph 2, Z = 104 up to rate 2/3, then
    base graph 1, Z = 48), as ``BlockCode`` builds them."""
    g = torch.Generator().manual_seed(0)
    graphs = set()
    for m in MCS_TABLE:
        enc = block_code(m.index, 1024).ldpc_encoder
        graphs.add((enc._bg, enc.z))
        u = torch.randint(0, 2, (2, 1024), generator=g).float()
        llr = 3.0 * (2.0 * enc(u) - 1.0)
        assert torch.equal(LDPC5GMinSumDecoder(enc, num_iter=3)(llr), u), m.index
    assert graphs == {("bg2", 104), ("bg1", 48)}


def test_pruning_and_row_groups_follow_the_rate():
    """Only rows whose parity bits are sent are decoded (Sionna's prune_pcm); orthogonal
    consecutive rows share a step; the syndrome covers exactly Sionna's pruned checks."""
    from sionna.phy.fec.ldpc import LDPC5GDecoder

    for k, n in [(1024, 2768), (1024, 1900), (1024, 1158), (100, 300)]:
        enc = _encoder(k, n)
        dec = LDPC5GMinSumDecoder(enc)
        ref = LDPC5GDecoder(enc)
        assert dec.n_used == ref._n_pruned
        assert dec._syn_np[1][0] == ref.pcm.shape[0]  # one syndrome row per Sionna check
        assert [r for g in dec.row_groups for r in g] == dec.rows == list(range(len(dec.rows)))
        for g in dec.row_groups:
            cols = [set((dec.base_graph[r] >= 0).nonzero()[0]) for r in g]
            assert all(not (a & b) for i, a in enumerate(cols) for b in cols[i + 1 :])


@pytest.fixture(scope="module")
def chain_blocks():
    """MCS 14 blocks of the digital chain (1024 bits incl. CRC) over AWGN, decoded by the
    chain (demapper, descrambler, CRC) at three SNRs 0.2 dB apart around the 10 % BLER point:
    by both decoders (same blocks, same noise) at the outer two, by min-sum (float32 and
    float16 storage) at the middle one.
    ``{snr: (sent payload bits, {decoder: (decoded bits, CRC ok)})}``."""
    from v2x.semcom.bler_table import load_bler_table

    m, n_blocks = 14, 160
    snr0 = float(load_bler_table(1024).thresholds_db(0.1)[m])
    g = torch.Generator().manual_seed(7)
    codes = {d: block_code(m, 1024, ldpc_decoder=d) for d in ("sionna", "minsum", "minsum-fp16")}
    both = ["sionna", "minsum"]
    mid = ["minsum", "minsum-fp16"]
    out = {}
    for snr, decoders in ((snr0 - 0.3, both), (snr0 - 0.1, mid), (snr0 + 0.1, both)):
        bits = torch.randint(0, 2, (n_blocks, codes["sionna"].payload_bits), generator=g).float()
        x = codes["sionna"].encode(bits)
        assert torch.equal(x, codes["minsum"].encode(bits))
        no = 10.0 ** (-snr / 10.0)
        y = x + torch.view_as_complex(torch.randn(*x.shape, 2, generator=g) * math.sqrt(no / 2))
        out[snr] = (bits, {d: codes[d].decode(y, torch.full((1,), no)) for d in decoders})
    return out


def test_identical_bits_wherever_both_decoders_succeed(chain_blocks):
    both_total = 0
    for bits, dec in chain_blocks.values():
        (u_m, ok_m) = dec["minsum"]
        assert torch.equal(u_m[ok_m], bits[ok_m].to(torch.uint8))  # no undetected error
        if "sionna" in dec:
            u_s, ok_s = dec["sionna"]
            both = ok_s & ok_m
            both_total += int(both.sum())
            assert torch.equal(u_s[both], u_m[both])
    assert both_total >= 150  # the comparison is not vacuous


@pytest.mark.parametrize("decoder", ["minsum", "minsum-fp16"])
def test_block_error_rate_within_0p2_db_of_sionna(chain_blocks, decoder: str):
    """Min-sum at SNR s fails no more often than Sionna's BP at s − 0.2 dB, up to the binomial
    spread of two independent estimates (3σ, σ² = Σ p (1 − p) / N, plus 1/N); and the check has
    teeth: Sionna fails clearly more often at s − 0.2 dB than at s + 0.2 dB. Also with float16
    storage, which never passes a CRC with wrong bits here."""
    (lo, mid, hi) = sorted(chain_blocks)
    n = chain_blocks[mid][0].shape[0]
    u_m, ok_m = chain_blocks[mid][1][decoder]
    assert torch.equal(u_m[ok_m], chain_blocks[mid][0][ok_m].to(torch.uint8))
    p_m = (~ok_m).float().mean().item()
    p_lo, p_hi = ((~chain_blocks[s][1]["sionna"][1]).float().mean().item() for s in (lo, hi))
    sigma = math.sqrt((p_m * (1 - p_m) + p_lo * (1 - p_lo)) / n)
    assert p_m <= p_lo + 3 * sigma + 1 / n, (p_lo, p_m, p_hi)
    assert p_lo - p_hi >= 0.2, (p_lo, p_hi)


def test_early_termination_stops_converged_blocks_only():
    enc = block_code(20, 1024).ldpc_encoder
    g = torch.Generator().manual_seed(3)
    u = torch.randint(0, 2, (64, 1024), generator=g).float()
    sign = 2.0 * enc(u) - 1.0
    noise = torch.randn(sign.shape, generator=g)
    llr = torch.cat([2.5 * sign[:48] + 1.2 * noise[:48], 0.3 * sign[48:] + noise[48:]])  # good|bad
    fast = LDPC5GMinSumDecoder(enc).decode(llr)
    full = LDPC5GMinSumDecoder(enc, early_stop=False).decode(llr)
    assert bool(fast.converged[:48].all()) and int(fast.iterations[:48].max()) < 20
    assert bool((fast.iterations[~fast.converged] == 20).all())
    assert not bool(fast.converged[48:].any())
    assert bool((full.iterations == 20).all())
    both = fast.converged & full.converged
    assert torch.equal(fast.bits[both], full.bits[both])
    assert torch.equal(fast.bits[:48], u[:48])
    # a block's output and iterations do not depend on the rest of the batch
    alone = LDPC5GMinSumDecoder(enc).decode(llr[37:50])
    assert torch.equal(alone.bits, fast.bits[37:50])
    assert torch.equal(alone.iterations, fast.iterations[37:50])


def test_redundancy_versions_combine_as_sionnas_harq_mode():
    """harq_mode: the LLRs of several redundancy versions add up in the circular buffer, as in
    Sionna's HARQ-mode decoder: noiseless self-decodable combinations decode, the decoded bits
    equal Sionna's wherever both recover a block, and a single RV 0 decodes as the pruned
    decoder does."""
    from sionna.phy.fec.ldpc import LDPC5GDecoder

    enc = block_code(14, 1024).ldpc_encoder
    dec = LDPC5GMinSumDecoder(enc, harq_mode=True)
    g = torch.Generator().manual_seed(2)
    u = torch.randint(0, 2, (64, 1024), generator=g).float()
    order = [0, 2, 3, 1]
    c = enc(u, rv=order)  # [B, 4, n]
    for rv in ([0], [3], [0, 2], [2, 3], [0, 2, 3, 1]):
        idx = [order.index(r) for r in rv]
        assert torch.equal(dec(4.0 * (2.0 * c[:, idx] - 1.0), rv=rv), u), rv
    sionna = LDPC5GDecoder(enc, num_iter=20, harq_mode=True)
    noisy = 2.0 * ((2.0 * c - 1.0) + 1.6 * torch.randn(c.shape, generator=g)) / 1.6**2
    rv = [0, 2, 3]
    u_m, u_s = dec(noisy[:, :3], rv=rv), sionna(noisy[:, :3], rv=rv)
    both = (u_m == u).all(1) & (u_s == u).all(1)
    assert torch.equal(u_m[both], u_s[both])
    assert int(both.sum()) >= 32  # not vacuous (one RV alone recovers none of these blocks)
    assert not bool((dec(noisy[:, :1], rv=[0]) == u).all(1).any())
    pruned, full = LDPC5GMinSumDecoder(enc).decode(noisy[:, 0]), dec.decode(noisy[:, 0])
    assert torch.equal(pruned.bits, full.bits)
    assert torch.equal(pruned.iterations, full.iterations)
    with pytest.raises(ValueError, match="harq_mode"):
        LDPC5GMinSumDecoder(enc)(noisy[:, :2], rv=[0, 2])
    with pytest.raises(ValueError, match="rv"):
        dec(noisy[:, :2], rv=[0, 4])


def test_redundancy_versions_land_in_the_circular_buffer_in_order():
    """The versions' LLRs in the circular buffer (``_versions_in_buffer``, one gather each)
    against 38.212's placement written out: input column ``c`` of version ``r`` adds at index
    ``(out_int[c] + k0_r) mod buf_len``, versions in the order sent, from 0, then clamped.
    Bit for bit, signs of zero included (MCS 0 with its repeats' buffer wrap, and MCS 14)."""
    for mcs in (0, 14):
        enc = block_code(mcs, 1024).ldpc_encoder
        dec = LDPC5GMinSumDecoder(enc, harq_mode=True)
        tab = dec._tables_on(torch.device("cpu"))
        out_int = enc.out_int.cpu().numpy() if hasattr(enc, "out_int") else np.arange(dec.n)
        g = torch.Generator().manual_seed(mcs)
        rv = [0, 2, 3, 1, 0]
        x = torch.randn(5, len(rv), dec.n, generator=g) * 30.0
        x[:, :, ::7] = -0.0  # signed zeros must add as in a running sum
        want = np.zeros((5, dec._buf_len + 2), dtype=np.float32)
        for i, r in enumerate(rv):
            at = (out_int + dec._rv_start[r]) % dec._buf_len
            for c in range(dec.n):
                want[:, at[c]] += x[:, i, c].numpy()
        want = np.clip(want, -dec.llr_max, dec.llr_max)
        got = dec._versions_in_buffer(x, rv, tab).numpy()
        assert got.tobytes() == want.tobytes(), mcs


def test_harq_rounds_of_the_codec_use_the_minsum_decoder():
    """With ``ldpc_decoder: minsum`` every HARQ round decodes with it (chase and incremental
    redundancy): a block whose first copy was erased is recovered from the retransmissions."""
    import numpy as np

    from v2x.channels import build_channel
    from v2x.channels.base import ChannelState
    from v2x.semcom.base import Cost, Transmission
    from v2x.semcom.digital import DigitalCodec
    from v2x.semcom.digital_stream import MapStream
    from v2x.semcom.harq import harq_decode_blocks

    def resend(x, spp, mask=None):
        return build_channel("awgn")(x, torch.full((x.shape[0],), 20.0))

    torch.manual_seed(3)
    m = 9
    for combining, rounds in (("chase", 1), ("ir", 2)):
        codec = DigitalCodec(
            mcs=m, decoder="exact", harq_max_rounds=rounds, harq_combining=combining,
            ldpc_decoder="minsum",
        )  # fmt: skip
        code = codec.block_code_for(m, "cpu")
        assert isinstance(code._ldpc_dec, LDPC5GMinSumDecoder)
        bits = torch.randint(0, 2, (4, code.payload_bits)).float()
        x = code.encode(bits).reshape(1, -1)
        data = np.packbits(bits.reshape(-1).to(torch.uint8).numpy()).tobytes()
        meta = {"num_blocks": [4], "mcs": torch.tensor([m]), "streams": [MapStream(data, 0, [], 8)]}
        rx = Transmission(
            symbols=torch.zeros_like(x),
            cost=Cost(*(torch.zeros(1, dtype=torch.float64) for _ in range(5))),
            meta=meta,
            state=ChannelState(
                no=torch.tensor([0.01]), erased=torch.ones_like(x, dtype=torch.bool)
            ),
        )
        blocks, *_ = harq_decode_blocks(codec, rx, x, resend)
        ok, u = blocks[0]
        assert bool(ok.all()) and torch.equal(u.float(), bits), combining
    assert isinstance(code._ldpc_dec_harq, LDPC5GMinSumDecoder)  # IR's HARQ-mode decoder


def test_shapes_empty_batch_and_bad_arguments():
    enc = _encoder(100, 300)
    dec = LDPC5GMinSumDecoder(enc)
    llr = 3.0 * (2.0 * enc(torch.zeros(2, 3, 100)) - 1.0)
    res = dec.decode(llr)
    assert res.bits.shape == (2, 3, 100) and res.converged.shape == (2, 3)
    assert dec(torch.zeros(0, 300)).shape == (0, 100)
    with pytest.raises(ValueError, match="n=300"):
        dec(torch.zeros(2, 299))
    with pytest.raises(ValueError, match="alpha"):
        LDPC5GMinSumDecoder(enc, alpha=0.0)
    with pytest.raises(ValueError, match="backend"):
        LDPC5GMinSumDecoder(enc, backend="cuda")
    with pytest.raises(ValueError, match="num_iter"):
        LDPC5GMinSumDecoder(enc, num_iter=-1)
    zero = LDPC5GMinSumDecoder(enc, num_iter=0).decode(llr)  # hard decision of the channel
    assert bool((zero.iterations == 0).all())


def test_digital_codec_round_trips_with_the_minsum_decoder():
    from v2x.channels import build_channel
    from v2x.channels.link import LinkState
    from v2x.semcom.digital import DigitalCodec
    from v2x.semcom.quantize import dequantize, quantize

    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(3, 8, 32, 32, generator=g))
    x = x * (torch.rand(3, 1, 32, 32, generator=g) < 0.3)
    codec = DigitalCodec(bits=6, decoder="exact", rows_per_segment=4, ldpc_decoder="minsum")
    torch.manual_seed(0)
    link = LinkState.from_snr(torch.tensor([25.0, 8.0, -15.0]))
    tx = codec.encode(x, link)
    y, state = build_channel("awgn")(tx.symbols, link.snr_db)
    rx = tx.received(y, state)
    out = codec.decode(rx, link)
    ref = dequantize(quantize(x, 6))
    assert torch.equal(out[:2], ref[:2])  # link adaptation: every block passes its CRC
    assert bool((out[2] == 0).all())  # MCS 0 at -15 dB: every block lost
    assert tx.meta["mcs"].tolist()[2] == 0


def test_ldpc_decoder_is_a_config_field():
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from v2x.semcom.digital import DigitalCodec

    conf = Path(__file__).resolve().parents[2] / "conf"
    for name in ("digital", "digital_fixed"):  # digital_fixed composes digital's (defaults)
        with initialize_config_dir(str(conf), version_base=None):
            cfg = compose(f"codec/{name}")["codec"]
        assert cfg.ldpc_decoder == "sionna"  # the reference stays the default
    assert DigitalCodec(ldpc_decoder="minsum", decoder="exact").ldpc_decoder == "minsum"
    with pytest.raises(ValueError, match="ldpc_decoder"):
        DigitalCodec(ldpc_decoder="bp")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_torch_and_triton_paths_match_the_cpu_decoder():
    from v2x.common import triton_available

    enc = block_code(14, 1024).ldpc_encoder
    g = torch.Generator().manual_seed(5)
    u = torch.randint(0, 2, (300, 1024), generator=g).float()
    llr = 1.3 * (2.0 * enc(u) - 1.0) + torch.randn(300, enc.n, generator=g)
    ref = LDPC5GMinSumDecoder(enc).decode(llr)
    backends = ["torch"] + (["triton"] if triton_available() else [])
    for backend in backends:
        res = LDPC5GMinSumDecoder(enc, backend=backend).decode(llr.cuda())
        assert torch.equal(res.bits.cpu(), ref.bits), backend
        assert torch.equal(res.iterations.cpu(), ref.iterations), backend


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_redundancy_versions_decode_as_on_the_cpu_in_deterministic_mode():
    """HARQ mode on CUDA with the sweep's deterministic algorithms on: the versions' buffer
    (gathers, no sort-based ``index_add_``) and the decoder give the CPU's bits and iterations
    on every path (per-layer torch and Triton, persistent)."""
    from v2x.common import triton_available

    enc = block_code(0, 1024).ldpc_encoder  # MCS 0: the repeats' buffer wrap
    g = torch.Generator().manual_seed(6)
    u = torch.randint(0, 2, (200, 1024), generator=g).float()
    rv = [0, 2, 3]
    order = [0, 2, 3, 1]
    c = enc(u, rv=order)[:, [order.index(r) for r in rv]]
    gain = torch.linspace(0.45, 0.3, 200)[:, None, None]  # about half the blocks converge
    llr = gain * (2.0 * c - 1.0) + torch.randn(c.shape, generator=g)
    ref = LDPC5GMinSumDecoder(enc, harq_mode=True).decode(llr, rv=rv)
    assert 0 < int((ref.bits == u).all(1).sum()) < 200
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        for backend in ["torch"] + (["triton"] if triton_available() else []):
            for launch in ("per-layer", "persistent") if backend == "triton" else ("per-layer",):
                dec = LDPC5GMinSumDecoder(enc, harq_mode=True, backend=backend, launch=launch)
                res = dec.decode(llr.cuda(), rv=rv)
                assert torch.equal(res.bits.cpu(), ref.bits), (backend, launch)
                assert torch.equal(res.iterations.cpu(), ref.iterations), (backend, launch)
    finally:
        torch.use_deterministic_algorithms(was)


def _mixed_llrs(enc, nb: int, seed: int, best: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Bits ``[nb, k]`` and logits ``[nb, n]`` from good (signal gain ``best``, unit noise) to
    hopeless channels (some blocks converge at different iterations, some never)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(0, 2, (nb, enc.k), generator=g).float()
    gain = torch.linspace(best, 0.2, nb)[:, None]
    return u, gain * (2.0 * enc(u) - 1.0) + torch.randn(nb, enc.n, generator=g)


_INTERPRETED = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from test_ldpc_minsum import LDPC5GMinSumDecoder, _encoder, _mixed_llrs
enc = _encoder(12, 60)
u, llr = _mixed_llrs(enc, 24, seed=11)
out = {}
for precision in ("fp32", "fp16"):
    kw = {"num_iter": 6, "precision": precision}
    ref = LDPC5GMinSumDecoder(enc, backend="torch", **kw).decode(llr)
    out[precision] = {"converged": int(ref.converged.sum()), "iters": sorted(set(ref.iterations.tolist()))}
    for state in ("compressed", "edges") if precision == "fp32" else ("compressed",):
        res = LDPC5GMinSumDecoder(
            enc, backend="triton", check_state=state, launch="per-layer", **kw
        ).decode(llr)
        out[precision][state] = [
            torch.equal(getattr(res, f), getattr(ref, f)) for f in ("bits", "iterations", "converged")
        ]
print(json.dumps(out))
"""


_LOAD_AND_BITS = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from test_ldpc_minsum import LDPC5GMinSumDecoder, _encoder
from v2x.semcom.ldpc_minsum_launch import _words_ok
out = {}
enc = _encoder(40, 100, 2)  # base graph 2, Z = 7: punctured, filler and padding rows
g = torch.Generator().manual_seed(3)
x = 30.0 * torch.randn(70, enc.n, generator=g)  # beyond ±llr_max: clamped
x[0, :5] = torch.tensor([0.0, -0.0, float("nan"), 20.0, -20.0])
for precision in ("fp32", "fp16"):
    dec = LDPC5GMinSumDecoder(enc, backend="triton", precision=precision)
    tab = dec._tables_on(x.device)
    ref = torch.empty(dec._num_vns + dec.z, 70, dtype=dec._dtype)
    dec._channel_llr_torch(x, None, ref, tab)
    got = torch.full_like(ref, 7.0)
    dec._channel_llr_triton(x, got, tab)
    # bit patterns: NaN where torch has NaN, +0 where torch has +0
    out[precision] = torch.equal(got.view(torch.int16 if precision == "fp16" else torch.int32),
                                 ref.view(torch.int16 if precision == "fp16" else torch.int32))
    # packed hard decisions of 70 columns (3 words) → the bits of some of them, as torch gives
    ref[: dec._num_vns, [1, 33, 66]] = 5.0  # the all-zero codeword: these pass every check
    llr = ref.float()
    bad, hard = dec._syndrome_words_triton(ref, tab, dec._checks(None))
    # the syndrome words unpacked on the host: the torch path's per-column verdict
    ok_torch, _ = dec._syndrome_ok(ref.float(), tab, dec._checks(None))
    ok = _words_ok(bad.numpy(), 70)
    out[precision + "_ok"] = bool((ok == ok_torch.numpy()).all()) and ok.sum().item() == 3
    cols = torch.tensor([0, 5, 31, 32, 33, 63, 64, 69])
    dest = torch.tensor([7, 0, 3, 1, 2, 6, 5, 4])
    bits = torch.full((8, dec.k), 5.0)
    dec._hard_bits_triton(hard, cols, dest, bits)
    want = torch.full((8, dec.k), 5.0)
    want[dest] = (llr[: dec.k, cols] <= 0.0).t().float()
    out[precision + "_bits"] = torch.equal(bits, want)
print(json.dumps(out))
"""


def test_llr_loading_and_bit_output_kernels_in_the_interpreter(triton_interpreted):
    """The decoder's two Triton passes at its ends, under Triton's CPU interpreter: the channel
    logits placed, clamped and negated as the torch path does it (bit patterns equal, NaN, −0,
    clamping, punctured, filler and padding rows included; float32 and float16 storage), and
    the finished blocks' bits read from the syndrome check's packed words (three words of 32
    blocks, scattered to output rows) as torch's ``(llr[:k, cols] <= 0)ᵀ``, and the syndrome
    words unpacked on the host as the torch path's verdict (three codeword columns)."""
    from pathlib import Path

    here = str(Path(__file__).resolve().parent)
    out = triton_interpreted(_LOAD_AND_BITS.replace("sys.argv[1]", repr(here)))
    assert all(out.values()) and len(out) == 6, out


@pytest.mark.slow
def test_triton_kernels_match_the_torch_path_in_the_interpreter():
    """Compressed check state (float32 and float16 storage) and the per-edge kernel (float32):
    the same bits, iteration counts and codeword flags as the torch path, bit for bit, under
    Triton's CPU interpreter (a tiny code: it runs one program at a time; ~1–3 min), the
    syndrome kernels included (same iterations). A subprocess: the interpreter must be on
    before Triton is first imported."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    here = str(Path(__file__).resolve().parent)
    run = subprocess.run(
        [sys.executable, "-c", _INTERPRETED, here], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    for precision, r in out.items():
        assert 0 < r["converged"] < 24 and len(r["iters"]) >= 3, (precision, r)  # not vacuous
        states = ("compressed", "edges") if precision == "fp32" else ("compressed",)
        for state in states:
            assert r[state] == [True, True, True], (precision, state)


def test_float16_storage_decodes_as_float32_on_good_channels():
    """``precision="fp16"`` rounds the stored LLRs and messages only: noiseless and good
    channels decode to the sent bits exactly as in float32 (iterations included), and a
    hopeless block does not converge."""
    enc = block_code(14, 1024).ldpc_encoder
    u, llr = _mixed_llrs(enc, 32, seed=4)
    f32 = LDPC5GMinSumDecoder(enc).decode(llr)
    f16 = LDPC5GMinSumDecoder(enc, precision="fp16").decode(llr)
    ok = f32.converged & (f32.bits == u).all(1)
    assert int(ok.sum()) >= 8 and not bool(f16.converged[-4:].any())
    assert torch.equal(f16.bits[:8], u[:8]) and torch.equal(f16.iterations[:8], f32.iterations[:8])
    both = ok & f16.converged
    assert torch.equal(f16.bits[both], u[both])
    noiseless = 4.0 * (2.0 * enc(u) - 1.0)
    assert torch.equal(LDPC5GMinSumDecoder(enc, precision="fp16")(noiseless), u)


def test_kernel_traffic_model_and_new_arguments():
    """Bytes per block and iteration of the Triton kernels, by hand: 16 B per edge with one
    float32 message per edge (8 B in float16); compressed (and the default ``auto``'s per-layer
    kernels): 8 B per edge for L plus 2 × 12 B per check (2 × 8 B in float16). Bad
    ``precision``/``check_state`` name the field."""
    enc = block_code(14, 1024).ldpc_encoder
    dec = LDPC5GMinSumDecoder(enc, check_state="compressed")
    checks = len(dec.rows) * dec.z
    e = dec.num_edges
    assert dec.kernel_bytes_per_iteration() == 8 * e + 24 * checks
    fp16 = LDPC5GMinSumDecoder(enc, precision="fp16", check_state="compressed")
    assert fp16.kernel_bytes_per_iteration() == (4 * e + 16 * checks)
    edges = LDPC5GMinSumDecoder(enc, check_state="edges")
    assert edges.kernel_bytes_per_iteration() == 16 * e
    default = LDPC5GMinSumDecoder(enc)  # "auto": the per-layer kernels keep the compressed state
    assert default.check_state == "auto"
    assert default.kernel_bytes_per_iteration() == dec.kernel_bytes_per_iteration()
    assert 8 * e + 24 * checks < 16 * e  # mean check degree > 3
    with pytest.raises(ValueError, match="precision"):
        LDPC5GMinSumDecoder(enc, precision="bf8")
    with pytest.raises(ValueError, match="check_state"):
        LDPC5GMinSumDecoder(enc, check_state="dense")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_check_is_read_without_waiting_for_the_work_queued_after_it():
    """The early-termination check's verdict reaches the host while the device still runs what
    was queued after the check (the next iteration's row kernels, here a 2·10⁹-cycle sleep):
    the decoder's host never drains the device to read it. The verdict is the torch path's."""
    from v2x.common import triton_available

    if not triton_available():
        pytest.skip("needs triton")
    dec = LDPC5GMinSumDecoder(block_code(14, 1024).ldpc_encoder, backend="triton")
    device = torch.device("cuda")
    tab = dec._tables_on(device)
    llr = torch.randn(dec._num_vns + dec.z, 200, device=device)
    llr[: dec._num_vns, 50:120] = 5.0  # the all-zero codeword in 70 columns
    read, _ = dec._check(llr, tab, dec._checks(None), use_torch=False)
    torch.cuda._sleep(2_000_000_000)
    ok = read()
    assert not torch.cuda.current_stream().query()  # the sleep queued after the check still runs
    torch.cuda.synchronize()
    want, _ = dec._syndrome_ok(llr, tab, dec._checks(None))
    assert np.array_equal(ok, want.cpu().numpy()) and ok.sum() == 70


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_triton_modes_match_the_torch_path(precision: str):
    """On CUDA: compressed and per-edge Triton kernels equal the torch path (same precision)
    bit for bit, iterations included, on the chain's MCS 5 and 27 codes (both base graphs)."""
    from v2x.common import triton_available

    if not triton_available():
        pytest.skip("needs triton")
    for m in (5, 27):
        enc = block_code(m, 1024).ldpc_encoder
        u, llr = _mixed_llrs(enc, 700, seed=m)
        ref = LDPC5GMinSumDecoder(enc, backend="torch", precision=precision).decode(llr.cuda())
        for state, launch in (
            ("compressed", "per-layer"),
            ("edges", "per-layer"),
            ("edges", "persistent"),
            ("edges", "auto"),  # 700 blocks: the persistent kernel
        ):
            res = LDPC5GMinSumDecoder(
                enc, backend="triton", check_state=state, precision=precision, launch=launch
            ).decode(llr.cuda())
            assert torch.equal(res.bits, ref.bits), (m, state, launch)
            assert torch.equal(res.iterations, ref.iterations), (m, state, launch)
            assert torch.equal(res.converged, ref.converged), (m, state, launch)


_PERSISTENT = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from test_ldpc_minsum import LDPC5GMinSumDecoder, _encoder, _mixed_llrs
from v2x.semcom.fec import block_code
fields = ("bits", "iterations", "converged", "codeword")
out = {}
def case(name, enc, llr, rv=None, harq=False, **kw):
    ref = LDPC5GMinSumDecoder(enc, backend="torch", harq_mode=harq, **kw)
    ref = ref.decode(llr, return_codeword=rv is None, rv=rv)
    dec = LDPC5GMinSumDecoder(enc, backend="triton", launch="persistent", harq_mode=harq, **kw)
    res = dec.decode(llr, return_codeword=rv is None, rv=rv)
    out[name] = {
        "equal": [
            torch.equal(getattr(res, f), getattr(ref, f)) if getattr(ref, f) is not None
            else getattr(res, f) is None for f in fields
        ],
        "converged": int(ref.converged.sum()),
        "iters": sorted(set(ref.iterations.tolist())),
    }
enc = _encoder(12, 60)  # base graph 2, Z = 2
u, llr = _mixed_llrs(enc, 20, seed=11)
case("bg2_z2", enc, llr, num_iter=6)
case("bg2_z2_fp16", enc, llr, num_iter=6, precision="fp16")
case("bg2_z2_no_early_stop", enc, llr, num_iter=3, early_stop=False)
case("bg2_z2_zero_iterations", enc, llr, num_iter=0)
enc = _encoder(40, 100, 2)  # base graph 2, Z = 7, interleaved
u, llr = _mixed_llrs(enc, 12, seed=3, best=3.0)
case("bg2_z7_qam", enc, llr, num_iter=5)
enc = _encoder(500, 600)  # base graph 1, Z = 24
u, llr = _mixed_llrs(enc, 10, seed=5, best=6.0)
case("bg1_z24", enc, llr, num_iter=4)
enc = block_code(27, 1024).ldpc_encoder  # the chain's base graph 1 code, Z = 48
u, llr = _mixed_llrs(enc, 6, seed=6, best=8.0)
case("bg1_z48_chain", enc, llr, num_iter=3)
enc = _encoder(12, 60)
c = enc(torch.randint(0, 2, (6, 12), generator=torch.Generator().manual_seed(1)), rv=[0, 2])
llr = 1.5 * (2.0 * c - 1.0) + torch.randn(c.shape, generator=torch.Generator().manual_seed(2))
case("bg2_z2_harq_rv02", enc, llr, rv=[0, 2], harq=True, num_iter=4)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_persistent_kernel_matches_the_torch_path_in_the_interpreter():
    """The one-launch persistent kernel (``launch="persistent"``: iterations, syndrome and
    early termination in the kernel, 4 slots per program and 2 programs, so finished blocks'
    slots are refilled) gives the torch path's bits, iteration counts, codeword flags and
    codewords bit for bit under Triton's CPU interpreter: base graphs 1 and 2, Z = 2 to 48,
    float32 and float16 storage, with and without early termination, zero iterations, and
    HARQ redundancy versions (~2–4 min: the interpreter runs one program at a time). A
    subprocess: the interpreter must be on before Triton is first imported."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    env.pop("V2X_LDPC_PERSISTENT", None)
    here = str(Path(__file__).resolve().parent)
    run = subprocess.run(
        [sys.executable, "-c", _PERSISTENT, here], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(out) == 8
    for name, r in out.items():
        assert r["equal"] == [True] * 4, (name, r)
    assert 0 < out["bg2_z2"]["converged"] < 20 and len(out["bg2_z2"]["iters"]) >= 3
    for name in ("bg2_z7_qam", "bg1_z24", "bg1_z48_chain"):  # not vacuous
        assert out[name]["converged"] > 0, (name, out[name])
    assert out["bg2_z2_zero_iterations"]["iters"] == [0]
    assert out["bg2_z2_no_early_stop"]["iters"] == [3]


def test_persistent_launch_configurations():
    """Every launch configuration fits a tile of degree-32 checks (tile ≥ 32 · slots) and
    ``V2X_LDPC_PERSISTENT`` forces one; a bad ``launch`` names the field; the per-layer path
    stays selectable."""
    from v2x.semcom import ldpc_persistent as lp

    for cfg in (*lp.CONFIGS, lp.INTERPRET_CONFIG):
        assert cfg.tile >= 32 * cfg.cb and cfg.cb % 4 == 0, cfg
    assert len(set(lp.CONFIGS)) == len(lp.CONFIGS)
    enc = _encoder(100, 300)
    with pytest.raises(ValueError, match="launch"):
        LDPC5GMinSumDecoder(enc, launch="fused")
    # auto: persistent up to AUTO_PERSISTENT_MAX_BLOCKS per call (faster there on an H200)
    assert LDPC5GMinSumDecoder(enc).launch == "auto"
    assert LDPC5GMinSumDecoder(enc, launch="per-layer").launch == "per-layer"


def test_persistent_configuration_from_the_environment(monkeypatch):
    from v2x.semcom import ldpc_persistent as lp

    monkeypatch.setenv("V2X_LDPC_PERSISTENT", "16,2,2048,8")
    assert lp._forced() == lp.PersistentConfig(16, 2, 2048, 8)
    monkeypatch.delenv("V2X_LDPC_PERSISTENT")
    assert lp._forced() is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_persistent_configurations_and_tuning_match_the_per_layer_kernel(monkeypatch):
    """On CUDA: every launch configuration of the persistent kernel, and the tuned call on a
    batch large enough to be tuned, give the per-layer kernel's bits, iterations and codeword
    flags (MCS 14 with and without early termination, MCS 27: both base graphs)."""
    from v2x.common import triton_available
    from v2x.semcom import ldpc_persistent as lp

    if not triton_available():
        pytest.skip("needs triton")
    for m, earlies in ((14, (True, False)), (27, (True,))):
        enc = block_code(m, 1024).ldpc_encoder
        _, llr = _mixed_llrs(enc, lp.TUNE_MIN_BLOCKS, seed=m, best=3.0)
        llr = llr.cuda()
        for early in earlies:
            kw = {"backend": "triton", "early_stop": early, "num_iter": 12}
            ref = LDPC5GMinSumDecoder(enc, launch="per-layer", **kw).decode(llr)
            assert 0 < int(ref.converged.sum()) < llr.shape[0]  # not vacuous
            dec = LDPC5GMinSumDecoder(enc, launch="persistent", **kw)
            for _ in range(2):  # the first call tunes, the second uses the tuned configuration
                res = dec.decode(llr)
                for f in ("bits", "iterations", "converged"):
                    assert torch.equal(getattr(res, f), getattr(ref, f)), (m, early, f)
            for cfg in lp.CONFIGS:
                env = f"{cfg.cb},{cfg.pps},{cfg.tile},{cfg.num_warps}"
                monkeypatch.setenv("V2X_LDPC_PERSISTENT", env)
                part = dec.decode(llr[:3000])
                monkeypatch.delenv("V2X_LDPC_PERSISTENT")
                for f in ("bits", "iterations", "converged"):
                    assert torch.equal(getattr(part, f), getattr(ref, f)[:3000]), (m, early, env)


def test_triton_batch_columns_are_padded_to_the_alignment_with_a_kept_column():
    """A compaction's kept columns, padded for the Triton kernels' aligned batch: the kept
    columns in order, then the last one repeated up to a multiple of the alignment (16 in the
    decoder); a batch already aligned, or the torch path's alignment of 1, is unchanged."""
    from v2x.semcom.ldpc_minsum import _BATCH_ALIGN, _aligned, _padded_index

    assert _BATCH_ALIGN == 16
    assert [_aligned(n, 16) for n in (1, 15, 16, 17, 33)] == [16, 16, 16, 32, 48]
    keep = np.array([2, 5, 9])
    padded = _padded_index(keep, 16)
    assert padded.tolist() == [2, 5, 9] + [9] * 13 and padded.dtype == keep.dtype
    assert _padded_index(keep, 1) is keep
    full = np.arange(32)
    assert _padded_index(full, 16) is full


def _numba_against_torch(enc, llr, rv=None, harq=False, **kw) -> tuple[int, set[int]]:
    """``backend="numba"`` against ``backend="torch"`` on ``llr``: bits, iteration counts,
    convergence flags and (without ``rv``) codewords equal; returns the converged blocks and
    the iteration counts seen (so that a case is known not to be vacuous)."""
    ref = LDPC5GMinSumDecoder(enc, backend="torch", harq_mode=harq, **kw)
    ref = ref.decode(llr, return_codeword=rv is None, rv=rv)
    dec = LDPC5GMinSumDecoder(enc, backend="numba", harq_mode=harq, **kw)
    res = dec.decode(llr, return_codeword=rv is None, rv=rv)
    for field in ("bits", "iterations", "converged", "codeword"):
        want, got = getattr(ref, field), getattr(res, field)
        assert (got is None) if want is None else torch.equal(got, want), field
    return int(ref.converged.sum()), set(ref.iterations.tolist())


def test_numba_backend_gives_the_torch_paths_numbers():
    """The CPU's compiled backend (``ldpc_numba``: the persistent kernel's algorithm, 64 block
    slots side by side, a finished block's slot refilled) gives the torch path's bits,
    iteration counts, convergence flags and codewords bit for bit: base graphs 1 and 2, Z = 2
    to 48, QAM's interleaving, early termination on and off, zero iterations, plain and offset
    min-sum, HARQ redundancy versions, and batches larger than the slots (refills)."""
    pytest.importorskip("numba")
    enc = _encoder(12, 60)  # base graph 2, Z = 2
    u, llr = _mixed_llrs(enc, 150, seed=11)  # > 64 slots: refilled slots
    converged, iters = _numba_against_torch(enc, llr, num_iter=6)
    assert 0 < converged < 150 and len(iters) >= 3
    assert _numba_against_torch(enc, llr[:20], num_iter=3, early_stop=False)[1] == {3}
    assert _numba_against_torch(enc, llr[:20], num_iter=0)[1] == {0}
    _numba_against_torch(enc, llr[:40], num_iter=6, alpha=1.0, beta=0.0)
    enc = _encoder(40, 100, 2)  # base graph 2, Z = 7, interleaved
    u, llr = _mixed_llrs(enc, 12, seed=3, best=3.0)
    assert _numba_against_torch(enc, llr, num_iter=5)[0] > 0
    enc = _encoder(500, 600)  # base graph 1, Z = 24
    u, llr = _mixed_llrs(enc, 10, seed=5, best=6.0)
    assert _numba_against_torch(enc, llr, num_iter=4)[0] > 0
    for m in (0, 5, 27):  # the chain's codes: MCS 0's repetition, BG2 and BG1 (Z = 48)
        enc = block_code(m, 1024).ldpc_encoder
        u, llr = _mixed_llrs(enc, 80, seed=m, best=8.0)
        assert _numba_against_torch(enc, llr)[0] > 0, m
    enc = _encoder(12, 60)
    c = enc(torch.randint(0, 2, (70, 12), generator=torch.Generator().manual_seed(1)), rv=[0, 2])
    llr = 1.5 * (2.0 * c - 1.0) + torch.randn(c.shape, generator=torch.Generator().manual_seed(2))
    assert _numba_against_torch(enc, llr, rv=[0, 2], harq=True, num_iter=4)[0] > 0


def test_numba_backend_is_the_cpus_default_and_threads_do_not_change_it():
    """``backend="auto"`` on CPU tensors with float32 storage is the compiled backend (the
    same numbers on 1 and 2 threads, each thread its own blocks); float16 storage runs the
    torch path; ``backend="numba"`` refuses float16 storage by name."""
    pytest.importorskip("numba")
    from v2x.semcom import ldpc_numba

    enc = block_code(14, 1024).ldpc_encoder
    u, llr = _mixed_llrs(enc, 200, seed=4, best=6.0)
    calls = []
    real = ldpc_numba.decode_numba

    def counted(inp):
        calls.append(inp.l0.shape[0])
        return real(inp)

    ldpc_numba.decode_numba = counted
    try:
        one = LDPC5GMinSumDecoder(enc).decode(llr)
        previous = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            two = LDPC5GMinSumDecoder(enc).decode(llr)
        finally:
            torch.set_num_threads(previous)
        LDPC5GMinSumDecoder(enc, precision="fp16").decode(llr[:8])
    finally:
        ldpc_numba.decode_numba = real
    assert calls == [200, 200]  # (not the float16 decoder's)
    for field in ("bits", "iterations", "converged"):
        assert torch.equal(getattr(one, field), getattr(two, field)), field
    assert int(one.converged.sum()) > 0
    with pytest.raises(ValueError, match="precision='fp32'"):
        LDPC5GMinSumDecoder(enc, backend="numba", precision="fp16").decode(llr[:2])
