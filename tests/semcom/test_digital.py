"""The digital codec (v2x.semcom.digital): costs, bit exactness, block-wise loss, link adaptation,
fast vs exact decoding, channel-use budget, empty inputs.

Sionna's LDPC decoder is slow on CPU: payloads here are a few code blocks.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

from v2x.channels import build_channel
from v2x.channels.link import LinkState
from v2x.semcom.bler_table import load_bler_table
from v2x.semcom.digital import DigitalCodec
from v2x.semcom.digital_blocks import effective_snr_db
from v2x.semcom.digital_stream import decode_map_stream
from v2x.semcom.mcs import MCS_TABLE, shannon_gap_thresholds_db
from v2x.semcom.quantize import dequantize, quantize

BLOCK_BITS = 1024


def _features(b: int, c: int, h: int, w: int, density: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(b, c, h, w, generator=g))
    return x * (torch.rand(b, 1, h, w, generator=g) < density)


def _send(codec: DigitalCodec, x: torch.Tensor, snr_db, seed: int = 0):
    torch.manual_seed(seed)
    link = LinkState.from_snr(
        torch.as_tensor(snr_db, dtype=torch.float32).reshape(-1).expand(x.shape[0]).clone()
    )
    tx = codec.encode(x, link)
    y, state = build_channel("awgn")(tx.symbols, link.snr_db)
    return tx, tx.received(y, state), link


def _segments_exact_or_zero(out: torch.Tensor, ref: torch.Tensor, rows: int) -> tuple[int, int]:
    """Every segment of BEV rows is either the quantised map exactly or exactly 0."""
    exact = zero = 0
    for i in range(out.shape[0]):
        for r0 in range(0, out.shape[2], rows):
            o, r = out[i, :, r0 : r0 + rows], ref[i, :, r0 : r0 + rows]
            if torch.equal(o, r) and bool(r.any()):
                exact += 1
            elif bool((o == 0).all()):
                zero += 1
            else:
                raise AssertionError(f"row {i} segment {r0}: garbage, neither exact nor zero")
    return exact, zero


def test_mcs_table_matches_sionna_38214_table1():
    from sionna.phy.nr.utils import decode_mcs_index

    idx = torch.arange(len(MCS_TABLE))
    qm, rate = decode_mcs_index(idx, table_index=1, is_pusch=False, device="cpu")
    assert [m.qm for m in MCS_TABLE] == qm.tolist()
    assert np.allclose([m.rate for m in MCS_TABLE], rate.numpy(), atol=1e-6)


def test_shipped_table_thresholds_respect_shannon_and_grow_with_mcs():
    table = load_bler_table(BLOCK_BITS)
    assert table is not None, "semcom/bler_table.json must ship a table for block_bits=1024"
    thr = table.thresholds_db(0.1)
    shannon = shannon_gap_thresholds_db(0.0)  # 10 log10(2^(Qm R) - 1): no code beats capacity
    assert bool((thr >= shannon).all())
    assert bool((thr <= shannon + 6.0).all())  # a sane 5G LDPC is within a few dB of it
    assert bool((thr[1:] >= thr[:-1] - 0.3).all())  # up to the table's statistical noise


def test_link_adaptation_picks_higher_mcs_at_higher_snr():
    codec = DigitalCodec(decoder="fast")
    snr = torch.tensor([-15.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 30.0])
    mcs = codec.select_mcs(snr, len(snr))
    assert mcs[0] == 0 and mcs[-1] == 28
    assert bool((mcs[1:] >= mcs[:-1]).all())
    assert len(set(mcs.tolist())) >= 6
    # The chosen MCS meets the target BLER, the next one does not.
    table = codec.table
    for s, m in zip(snr.tolist()[1:], mcs.tolist()[1:]):
        assert table.bler(torch.tensor([m]), torch.tensor([s])).item() <= 0.1 + 1e-9
        if m < 28:
            assert table.bler(torch.tensor([m + 1]), torch.tensor([s])).item() > 0.1 - 0.05
    assert DigitalCodec(mcs=7, decoder="fast").select_mcs(snr, len(snr)).tolist() == [7] * len(snr)


def test_costs_match_a_hand_computed_case():
    # All-zero map C=2, H=4, W=8, zlib, 8 bits, per channel, one segment per BEV row, MCS 14.
    codec = DigitalCodec(bits=8, entropy_coder="zlib", mcs=14, decoder="exact")
    x = torch.zeros(1, 2, 4, 8)
    tx = codec.encode(x, LinkState.from_snr(20.0, batch=1))
    # Header: bits+flags 2 B, varint(4) 1 B + occupancy bitmap 32 bits = 4 B (deflate would be
    # longer), offsets 2x4 B, steps 2x4 B, varint(model length 0) 1 B, 4 segment lengths 4x1 B.
    assert len(zlib.compress(bytes(4), 9)) > 4
    header = 2 + 1 + 4 + 8 + 8 + 1 + 4
    assert tx.cost.source_bits.tolist() == [header * 8.0]
    # MCS 14: 16-QAM (Qm 4), R = 553/1024; 1024-bit blocks (1000 payload + CRC24A):
    # n = ceil(1024 * 1024 / 553 / 4) * 4 = 475 * 4 = 1900 coded bits, 475 channel uses.
    assert tx.cost.coded_bits.tolist() == [1900.0]
    assert tx.cost.channel_uses.tolist() == [475.0]
    assert tx.cost.packets.tolist() == [1.0]
    assert tx.cost.raw_bits.tolist() == [2 * 4 * 8 * 32.0]
    assert tx.symbols.shape == (1, 475) and bool(tx.mask.all())


def test_costs_add_up_per_row_with_mixed_snr():
    codec = DigitalCodec(bits=6, decoder="fast", rows_per_segment=2)
    x = _features(3, 8, 16, 16, density=0.5)
    snr = torch.tensor([3.0, 12.0, 25.0])
    tx = codec.encode(x, LinkState.from_snr(snr))
    mcs = tx.meta["mcs"].tolist()
    assert mcs[0] < mcs[1] < mcs[2]
    c = tx.cost
    for i, m in enumerate(mcs):
        qm, r = MCS_TABLE[m].qm, MCS_TABLE[m].rate_x1024
        blocks = tx.meta["num_blocks"][i]
        n = math.ceil(BLOCK_BITS * 1024 / r / qm) * qm
        assert blocks == math.ceil(c.source_bits[i].item() / (BLOCK_BITS - 24))
        assert c.coded_bits[i].item() == blocks * n
        assert c.channel_uses[i].item() == blocks * n / qm
        assert int(tx.mask[i].sum()) == c.channel_uses[i].item()
        assert bool((tx.symbols[i, ~tx.mask[i]] == 0).all())
        assert c.source_bits[i].item() == len(tx.meta["streams"][i].data) * 8
        # a packet carries whole code blocks: 11 of 1000 information bits in 1460 bytes
        assert codec.blocks_per_packet == 1460 * 8 // (BLOCK_BITS - 24) == 11
        assert c.packets[i].item() == math.ceil(blocks / 11)
        assert tx.symbols_per_packet[i].item() == 11 * n / qm
        used = tx.symbols[i, tx.mask[i]].to(torch.complex128)
        assert used.abs().square().mean().item() == pytest.approx(1.0, abs=0.08)
    assert bool((c.source_bits < c.raw_bits).all())


def test_bit_exact_at_high_snr_with_the_exact_decoder():
    codec = DigitalCodec(bits=6, decoder="exact", rows_per_segment=4)
    x = _features(2, 4, 16, 16)
    tx, rx, link = _send(codec, x, 30.0)
    assert tx.meta["mcs"].tolist() == [28, 28]
    assert 2 <= max(tx.meta["num_blocks"]) <= 4
    out = codec.decode(rx, link)
    assert torch.equal(out, dequantize(quantize(x, 6)))


def test_blocks_are_lost_not_garbage_at_low_snr():
    codec = DigitalCodec(bits=6, decoder="exact", mcs=14, rows_per_segment=4)
    x = _features(1, 4, 16, 16)
    tx, rx, link = _send(codec, x, -5.0)
    ok, _ = codec.decode_blocks(rx)[0]
    assert ok.numel() == tx.meta["num_blocks"][0] and not bool(ok.any())
    assert bool((codec.decode(rx, link) == 0).all())


def test_lost_segment_zeroes_only_its_rows_and_lost_header_zeroes_the_map():
    codec = DigitalCodec(bits=5, decoder="fast", rows_per_segment=2, entropy_coder="zlib")
    x = _features(1, 3, 8, 8, density=0.8)
    tx = codec.encode(x, LinkState.from_snr(30.0, batch=1))
    st = tx.meta["streams"][0]
    ref = dequantize(quantize(x, 5))[0].numpy()
    lost = np.zeros(len(st.data), dtype=bool)
    assert np.array_equal(decode_map_stream(st.data, lost, (3, 8, 8), 16, "zlib"), ref)
    # Lose one byte of segment 1 (rows 2-3).
    lost[st.header_bytes + st.segment_bytes[0]] = True
    out = decode_map_stream(st.data, lost, (3, 8, 8), 16, "zlib")
    assert np.all(out[:, 2:4] == 0) and np.any(ref[:, 2:4] != 0)
    keep = np.r_[0:2, 4:8]
    assert np.array_equal(out[:, keep], ref[:, keep])
    lost[:] = False
    lost[3] = True  # a header byte
    assert np.all(decode_map_stream(st.data, lost, (3, 8, 8), 16, "zlib") == 0)


def test_a_header_of_arbitrary_bytes_gives_zeros_not_an_error():
    """A failed block's bits are arbitrary: header flags without a dense or deflated occupancy,
    then nine 0xFF bytes and 0x7F where the occupancy's varint length lies, read as 2**70 - 1,
    past any index (an OverflowError in numpy, raised out of a sweep on an H100 before). Lost,
    the header is never parsed; not marked lost (an error past the CRC), it is unparsable:
    zeros either way, as a lost header gives."""
    from v2x.semcom.digital_stream import _FLAG_DENSE, _FLAG_OCC_DEFLATE

    codec = DigitalCodec(bits=5, decoder="fast", rows_per_segment=2, entropy_coder="ans")
    x = _features(1, 3, 8, 8, density=0.5)
    st = codec.encode(x, LinkState.from_snr(30.0, batch=1)).meta["streams"][0]
    flags = st.data[1] & ~_FLAG_DENSE & ~_FLAG_OCC_DEFLATE
    data = st.data[:1] + bytes([flags]) + b"\xff" * 9 + b"\x7f" + st.data[12:]
    lost = np.zeros(len(data), dtype=bool)
    for lost_bytes in (slice(1, 12), slice(0, 0)):
        lost[:] = False
        lost[lost_bytes] = True
        delivered = np.ones((8, 8), dtype=bool)
        out = decode_map_stream(data, lost, (3, 8, 8), 16, "ans", delivered)
        assert not out.any() and not delivered.any()


def test_cells_per_segment_splits_a_single_row_map():
    codec = DigitalCodec(bits=4, decoder="fast", cells_per_segment=16, entropy_coder="zlib")
    x = _features(1, 4, 1, 64, density=0.9)  # a 1 x k cell list, as the selective codec sends
    tx = codec.encode(x, LinkState.from_snr(30.0, batch=1))
    st = tx.meta["streams"][0]
    assert len(st.segment_bytes) == 4
    ref = dequantize(quantize(x, 4))[0].numpy()
    lost = np.zeros(len(st.data), dtype=bool)
    lost[st.header_bytes + st.segment_bytes[0] + st.segment_bytes[1]] = True  # in segment 2
    out = decode_map_stream(st.data, lost, (4, 1, 64), 16, "zlib")
    assert np.all(out[:, :, 32:48] == 0) and np.any(ref[:, :, 32:48] != 0)
    keep = np.r_[0:32, 48:64]
    assert np.array_equal(out[:, :, keep], ref[:, :, keep])


def test_effective_snr_is_the_snr_on_awgn_and_drops_with_erasures():
    no = torch.full((2, 100), 10 ** (-0.7))
    assert effective_snr_db(no, 10).tolist() == pytest.approx([7.0, 7.0], abs=1e-6)
    no[1, :50] = float("inf")
    assert effective_snr_db(no, 10)[1].item() < 7.0 - 1.0


def test_fast_decoder_agrees_with_exact_decoder():
    """Block failure rates of fast (table) and exact (BP) decoding agree around the threshold."""
    m = 24  # 64-QAM, R = 772/1024: short codewords (227 symbols per block), cheap on CPU
    table = load_bler_table(BLOCK_BITS)
    curve = table.curves[m]
    grid, bler = np.asarray(curve["snr_db"]), np.asarray(curve["bler"])
    n_table = min(curve["blocks"])
    x = torch.rand(2, 12, 16, 16)  # dense, incompressible at 8 bits: about 25 blocks per row
    exact = DigitalCodec(bits=8, mcs=m, decoder="exact", entropy_coder="zlib", rows_per_segment=4)
    fast = DigitalCodec(bits=8, mcs=m, decoder="fast", entropy_coder="zlib", rows_per_segment=4)
    partial_seen = False
    for target in (0.9, 0.5, 0.1):
        snr = float(grid[np.argmin(np.abs(bler - target))])
        tx, rx, link = _send(exact, x, snr, seed=1)
        blocks = exact.decode_blocks(rx)
        ok = torch.cat([o for o, _ in blocks])
        n = ok.numel()
        assert n >= 40
        p_exact = 1.0 - ok.float().mean().item()
        torch.manual_seed(2)
        fails = [
            1.0 - torch.cat([o for o, _ in fast.decode_blocks(rx)]).float().mean().item()
            for _ in range(50)
        ]
        p_fast = float(np.mean(fails))
        p_tab = table.bler(torch.tensor([m]), torch.tensor([snr])).item()
        assert p_fast == pytest.approx(p_tab, abs=0.03)
        sigma = math.sqrt(max(p_tab * (1 - p_tab), 0.02) * (1 / n + 1 / n_table))
        print(f"snr {snr:.2f} dB: exact {p_exact:.3f} ({n} blocks), fast {p_fast:.3f}")
        assert abs(p_exact - p_fast) <= 3 * sigma + 0.02, (snr, p_exact, p_fast)
        # Exact decoding: what survives is exact, what is lost is zero.
        out = exact.reconstruct(rx, blocks)
        e, z = _segments_exact_or_zero(out, dequantize(quantize(x, 8)), 4)
        partial_seen |= e > 0 and z > 0
    assert partial_seen
    # Far from the threshold both modes agree exactly.
    for snr, expect_ok in ((grid[0] - 2.0, False), (grid[-1] + 2.0, True)):
        tx, rx, link = _send(exact, x[:1, :4], snr, seed=3)
        for codec in (exact, fast):
            ok = torch.cat([o for o, _ in codec.decode_blocks(rx)])
            assert bool((ok == expect_ok).all())


def test_fixed_mcs_shows_the_cliff():
    codec = DigitalCodec(bits=6, mcs=14, decoder="fast", rows_per_segment=2)
    thr = codec.link_adaptation.thresholds_db[14].item()
    x = _features(1, 4, 16, 16, density=0.6)
    ref = dequantize(quantize(x, 6))
    for snr, expect in ((thr + 3.0, "exact"), (thr - 3.0, "zero")):
        tx, rx, link = _send(codec, x, snr)
        out = codec.decode(rx, link)
        assert torch.equal(out, ref) if expect == "exact" else bool((out == 0).all())


def test_channel_use_budget_lowers_bits_then_drops_rows():
    x = _features(1, 8, 16, 16, density=0.7)
    free = DigitalCodec(bits=8, decoder="fast").encode(x, LinkState.from_snr(30.0, batch=1))
    full = free.cost.channel_uses.item()
    budget = int(full * 0.6)
    codec = DigitalCodec(bits=8, decoder="fast", max_channel_uses=budget)
    tx, rx, link = _send(codec, x, 30.0)
    assert tx.cost.channel_uses.item() <= budget
    bits = tx.meta["bits"][0]
    assert 2 <= bits < 8
    assert torch.equal(codec.decode(rx, link), dequantize(quantize(x, bits)))
    # No bit reduction allowed: whole BEV rows are dropped, the rest is exact.
    rows = DigitalCodec(bits=8, min_bits=8, decoder="fast", max_channel_uses=budget)
    tx, rx, link = _send(rows, x, 30.0)
    assert tx.cost.channel_uses.item() <= budget
    e, z = _segments_exact_or_zero(rows.decode(rx, link), dequantize(quantize(x, 8)), 1)
    assert e > 0 and z > 0
    # A budget below one code block: nothing is sent.
    none = DigitalCodec(bits=8, decoder="fast", max_channel_uses=10)
    tx, rx, link = _send(none, x, 30.0)
    assert tx.cost.channel_uses.item() == 0 and tx.cost.source_bits.item() == 0
    assert bool((none.decode(rx, link) == 0).all())


def test_empty_map_and_empty_batch():
    codec = DigitalCodec(bits=8, decoder="exact", mcs=28)
    x = torch.zeros(1, 4, 8, 8)
    tx, rx, link = _send(codec, x, 30.0)
    assert tx.meta["num_blocks"] == [1]
    assert bool((codec.decode(rx, link) == 0).all())
    e = torch.zeros(0, 4, 8, 8)
    tx = codec.encode(e, LinkState(snr_db=torch.zeros(0)))
    assert tx.symbols.shape == (0, 0)
    for f in ("source_bits", "coded_bits", "channel_uses", "packets", "raw_bits"):
        assert getattr(tx.cost, f).shape == (0,)
    assert codec.decode(tx, LinkState(snr_db=torch.zeros(0))).shape == (0, 4, 8, 8)


def test_registered_and_configs_build():
    from pathlib import Path

    from omegaconf import OmegaConf

    from v2x.semcom import _CODEC_MODULES
    from v2x.semcom.base import CODECS

    assert "v2x.semcom.digital" in _CODEC_MODULES
    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[2] / "conf"
    for name in ("digital", "digital_fixed"):  # digital_fixed composes digital's (defaults)
        with initialize_config_dir(str(conf), version_base=None):
            cfg = OmegaConf.to_container(compose(f"codec/{name}"))["codec"]
        codec = CODECS.build(cfg.pop("name"), **cfg)
        assert isinstance(codec, DigitalCodec)
        assert (codec.mcs == "auto") == (name == "digital")
    assert codec.mcs == 14


def test_bad_config():
    with pytest.raises(ValueError, match="decoder"):
        DigitalCodec(decoder="approx")
    with pytest.raises(ValueError, match="mcs"):
        DigitalCodec(mcs=29)
    with pytest.raises(ValueError, match="block_bits"):
        DigitalCodec(block_bits=9000)
    with pytest.raises(ValueError, match="BLER table"):
        DigitalCodec(decoder="fast", block_bits=512)
    with pytest.raises(ValueError, match="num_iter"):
        DigitalCodec(decoder="fast", num_iter=5)
    with pytest.raises(ValueError, match="entropy"):
        DigitalCodec(entropy_coder="huffman")


@pytest.mark.slow
@pytest.mark.parametrize("m", [3, 12, 24])
def test_table_matches_exact_decoder_at_three_snrs(m: int):
    """Slow: fresh exact-decoder block error rates at the table's 10/50/90 % points."""
    from v2x.semcom.bler_table import simulate_bler

    table = load_bler_table(BLOCK_BITS)
    curve = table.curves[m]
    grid, bler = np.asarray(curve["snr_db"]), np.asarray(curve["bler"])
    n_table = min(curve["blocks"])
    gen = torch.Generator().manual_seed(123)
    for target in (0.1, 0.5, 0.9):
        snr = float(grid[np.argmin(np.abs(bler - target))])
        fails, n = simulate_bler(m, BLOCK_BITS, snr, 160, generator=gen)
        p_tab = table.bler(torch.tensor([m]), torch.tensor([snr])).item()
        sigma = math.sqrt(max(p_tab * (1 - p_tab), 0.02) * (1 / n + 1 / n_table))
        assert abs(fails / n - p_tab) <= 3 * sigma + 0.02, (m, snr, fails / n, p_tab)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("decoder", ["exact", "fast"])
def test_digital_chain_on_cuda(decoder: str):
    dev = torch.device("cuda")
    codec = DigitalCodec(bits=6, decoder=decoder, rows_per_segment=4)
    x = _features(2, 8, 32, 32).to(dev)
    link = LinkState.from_snr(torch.tensor([30.0, -15.0]))
    tx = codec.encode(x, link)
    assert tx.symbols.device.type == "cuda" and tx.mask.device.type == "cuda"
    y, state = build_channel("awgn")(tx.symbols, link.snr_db.to(dev))
    out = codec.decode(tx.received(y, state), link)
    assert out.device.type == "cuda"
    assert torch.equal(out[0], dequantize(quantize(x[:1], 6))[0])
    assert bool((out[1] == 0).all())  # MCS 0 at -15 dB: every block lost


@pytest.mark.parametrize("per_channel", [True, False])
def test_stream_bytes_follow_the_documented_layout(per_channel: bool):
    """The stream parsed by hand from the module docstring's layout: ``bits``, flags, the
    deflated occupancy bitmap, float32 offsets and steps, the zlib'd ``uint32`` histogram, the
    varint segment lengths, then each segment an ANS code (constriction, read directly) of its
    occupied cells' levels, cell-major. Oracle: ``quantize`` of the map."""
    import constriction

    x = _features(1, 5, 12, 8, density=0.3, seed=4)
    codec = DigitalCodec(bits=4, per_channel=per_channel, rows_per_segment=3)
    stream = codec._fit_stream(x, 0, 10)
    q = quantize(x, 4, per_channel)
    data, pos = stream.data, 2
    assert data[0] == 4 and data[1] == (1 if per_channel else 0)  # per channel; not dense
    n, pos = data[pos], pos + 1  # one-byte varint: the bitmap is short
    assert n == 12 and len(zlib.compress(data[pos : pos + n], 9)) >= n
    occ = np.unpackbits(np.frombuffer(data[pos : pos + n], np.uint8))
    assert np.array_equal(occ.reshape(12, 8).astype(bool), q.occupied[0].numpy())
    pos += n
    g = 5 if per_channel else 1
    assert np.array_equal(np.frombuffer(data, "<f4", g, pos), q.offset[0].numpy())
    assert np.array_equal(np.frombuffer(data, "<f4", g, pos + 4 * g), q.step[0].numpy())
    pos += 8 * g
    n, pos = data[pos], pos + 1
    counts = np.frombuffer(zlib.decompress(data[pos : pos + n]), "<u4")
    levels, occupied = q.levels[0].numpy(), q.occupied[0].numpy()
    assert np.array_equal(counts, np.bincount(levels[:, occupied].reshape(-1), minlength=16))
    pos += n
    lengths = list(data[pos : pos + 4])  # four segments of 3 rows, each shorter than 128 bytes
    pos += 4
    assert pos == stream.header_bytes and lengths == stream.segment_bytes
    model = constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)
    for j, n in enumerate(lengths):
        rows = slice(3 * j, 3 * j + 3)
        want = levels[:, rows][:, occupied[rows]].T.reshape(-1)  # cell-major, raster order
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data[pos : pos + n], "<u4"))
        assert np.array_equal(coder.decode(model, want.size), want) and coder.is_empty()
        pos += n
    assert pos == len(data)


def test_pack_bits_is_numpy_packbits():
    """``pack_bits`` (how a GPU packs the decoded bits before the copy to the host) against
    ``numpy.packbits``, for uint8 and float bits."""
    from v2x.semcom.digital_blocks import pack_bits

    bits = torch.randint(0, 2, (8 * 1001,), generator=torch.Generator().manual_seed(5))
    want = np.packbits(bits.numpy().astype(np.uint8))
    for dtype in (torch.uint8, torch.float32, torch.int64):
        got = pack_bits(bits.to(dtype))
        assert got.dtype == torch.uint8 and np.array_equal(got.numpy(), want)


def test_received_streams_packed_on_the_device_equal_numpy_per_row():
    """The GPU path of the receiver (rows' bits cut, joined, packed by ``pack_bits`` and split
    back) run on the CPU against numpy's per-row ``packbits``: rows of different lengths, a row
    with nothing sent and a fast-mode row without bits."""
    from v2x.semcom.digital_blocks import received_streams
    from v2x.semcom.digital_stream import MapStream

    g = torch.Generator().manual_seed(6)
    streams, blocks = [], []
    for n in (130, 0, 977, 1, 125):
        nb = max(1, -(-n * 8 // 1000))
        streams.append(MapStream(bytes(n), 0, [], 4))
        blocks.append(
            (
                torch.ones(nb, dtype=torch.bool),
                torch.randint(0, 2, (nb, 1000), generator=g, dtype=torch.uint8),
            )
        )
    blocks[3] = (blocks[3][0], None)
    host = received_streams(streams, blocks, on_device=False)
    assert sorted(host) == [0, 2, 4] and [len(host[i]) for i in (0, 2, 4)] == [130, 977, 125]
    assert received_streams(streams, blocks, on_device=True) == host


@pytest.mark.parametrize("budget", [None, 1500])
def test_source_coding_in_worker_processes_gives_the_same_transmission(budget, monkeypatch):
    """``source_executor`` (forked workers running ``code_map``) against coding in this process:
    the same streams, symbols and costs, with a repeated map in the batch and, with a channel-use
    budget, depths that the budget loop skips or steps down from."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import v2x.semcom.digital_source as digital_source

    x = _features(5, 6, 12, 10, density=0.5, seed=9)
    x[3] = x[1]  # the same map twice: coded once
    link = LinkState.from_snr(torch.tensor([0.0, 8.0, 15.0, 8.0, 25.0]))
    kwargs = {"bits": 6, "rows_per_segment": 2, "max_channel_uses": budget, "min_bits": 2}
    torch.manual_seed(0)  # the fast decoder's transmitter draws its symbols
    here = DigitalCodec(**kwargs).encode(x, link)
    calls = []
    original = digital_source._encode_map_parts
    monkeypatch.setattr(
        digital_source, "_encode_map_parts", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    codec = DigitalCodec(**kwargs)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        codec.source_executor = pool
        torch.manual_seed(0)
        workers = codec.encode(x, link)
    streams = [(s.data, s.segment_bytes, s.bits) for s in workers.meta["streams"]]
    assert streams == [(s.data, s.segment_bytes, s.bits) for s in here.meta["streams"]]
    assert torch.equal(workers.symbols, here.symbols) and torch.equal(workers.mask, here.mask)
    for f in ("source_bits", "coded_bits", "channel_uses", "packets"):
        assert torch.equal(getattr(workers.cost, f), getattr(here.cost, f)), f
    if budget is None:  # every map's one coding ran in the workers
        assert calls == []


@pytest.mark.parametrize("decoder", ["fast", "exact"])
def test_receiver_decoding_in_worker_processes_gives_the_same_maps(decoder):
    """``source_executor`` at the receiver (whole receptions entropy-decoded by ``decode_whole``
    in forked workers) against decoding in this process: the same maps and delivered cells, at
    SNRs where some maps arrive whole and others lose segments."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    x = _features(5, 6, 12, 10, density=0.5, seed=10)
    x[3] = x[1]
    snr = [-1.0, 25.0, 3.0, 25.0, 30.0]
    kwargs = {"bits": 6, "rows_per_segment": 2, "decoder": decoder, "ldpc_decoder": "minsum"}
    out = {}
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        for name, executor in (("here", None), ("workers", pool)):
            codec = DigitalCodec(**kwargs, mcs=14)  # fixed: the low SNRs lose blocks
            codec.source_executor = executor
            tx, rx, link = _send(codec, x, snr, seed=1)
            out[name] = (codec.decode(rx, link), rx.meta["delivered"])
    assert torch.equal(out["workers"][0], out["here"][0])
    assert torch.equal(out["workers"][1], out["here"][1])
    delivered = out["here"][1].reshape(5, -1).float().mean(1)
    assert bool((delivered == 1).any()) and bool((delivered < 1).any())  # both kinds of rows


def test_whole_decoding_starts_on_the_workers_when_the_streams_are_formed():
    """With workers, ``encode`` starts each new stream's whole decoding (``decode_whole``) at
    once; a reception that arrives whole takes that decoding (no job submitted at the
    receiver) and gives the maps decoded in this process; the next SNR's encode of the same
    maps starts nothing (the receiver's memo has them)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from v2x.semcom.digital_stream import decode_whole

    class Counting:
        def __init__(self, pool):
            self.pool, self.calls = pool, []

        def submit(self, fn, *args, **kwargs):
            self.calls.append(fn)
            return self.pool.submit(fn, *args, **kwargs)

    x = _features(4, 6, 12, 10, density=0.5, seed=13)
    kwargs = {"bits": 6, "rows_per_segment": 2, "ldpc_decoder": "minsum"}
    here = DigitalCodec(**kwargs)
    _, rx, link = _send(here, x, [30.0] * 4, seed=2)
    want = here.decode(rx, link)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        codec = DigitalCodec(**kwargs)
        codec.source_memo = {}
        codec.source_executor = counting = Counting(pool)
        tx = codec.encode(x, LinkState.from_snr(torch.full((4,), 30.0)))
        started = [f for f in counting.calls if f is decode_whole]
        assert len(started) == 4 and all("ahead" in s.decoded for s in tx.meta["streams"])
        _, rx, link = _send(codec, x, [30.0] * 4, seed=2)
        counting.calls.clear()
        got = codec.decode(rx, link)
        assert decode_whole not in counting.calls  # taken from the decodings already started
        assert torch.equal(got, want)
        codec.encode(x, LinkState.from_snr(torch.full((4,), 25.0)))
        assert decode_whole not in counting.calls


def test_effective_snr_of_blocks_with_one_noise_variance_is_computed_on_one_symbol():
    """Blocks whose symbols share one noise variance take one symbol each: bit for bit the EESM
    over all of them (oracle: the full computation), which equals that SNR (the closed form);
    a block with differing symbols keeps the full computation for all."""
    from v2x.semcom.digital_blocks import _effective_snr_db

    g = torch.Generator().manual_seed(11)
    per_block = torch.cat(
        [
            10 ** (-torch.rand(61, 1, generator=g) * 5 + 1),
            torch.tensor([[0.0], [float("inf")], [1e-300]]),
        ]
    )
    for m in (0, 10, 27):
        for width in (1, 7, 1000):
            no = per_block.expand(-1, width).to(torch.float32)
            fast, full = effective_snr_db(no, m), _effective_snr_db(no, m)
            assert torch.equal(fast, full)
            closed = 10 * torch.log10(
                (1 / no[:, 0].double()).nan_to_num(posinf=1e12).clamp_min(1e-12)
            )
            assert torch.allclose(fast, closed, rtol=0, atol=1e-9)
        mixed = no.clone()
        mixed[3, 5] = 2.0
        assert torch.equal(effective_snr_db(mixed, m), _effective_snr_db(mixed, m))


def test_a_broken_worker_pool_warns_and_codes_in_this_process():
    """Workers that died (``BrokenProcessPool`` from their futures): the codec says so once,
    drops the pool and codes and decodes in its own process — the same transmission."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    class Broken:
        def submit(self, *args, **kwargs):
            f = Future()
            f.set_exception(BrokenProcessPool("a worker died"))
            return f

    x = _features(3, 4, 8, 8, density=0.5, seed=12)
    kwargs = {"bits": 5, "rows_per_segment": 2}
    torch.manual_seed(0)
    here = DigitalCodec(**kwargs).encode(x, LinkState.from_snr(torch.full((3,), 20.0)))
    codec = DigitalCodec(**kwargs)
    codec.source_executor = Broken()
    torch.manual_seed(0)
    with pytest.warns(RuntimeWarning, match="source-coding workers stopped"):
        tx = codec.encode(x, LinkState.from_snr(torch.full((3,), 20.0)))
    assert codec.source_executor is None
    assert [s.data for s in tx.meta["streams"]] == [s.data for s in here.meta["streams"]]
    codec.source_executor = Broken()
    rx = tx.received(tx.symbols, None)
    with pytest.warns(RuntimeWarning, match="decoding in this process"):
        out = codec.decode(rx, LinkState.from_snr(torch.full((3,), 20.0)))
    assert codec.source_executor is None
    assert torch.equal(out, dequantize(quantize(x, 5)))


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[pytest.mark.gpu,
                   pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")],
        ),
    ],
)  # fmt: skip
def test_failed_block_symbols_marks_each_failed_blocks_channel_uses(device):
    """The mask of failed code blocks' channel uses (rows of mixed MCS and block counts, rows
    with no failure, an empty row) equals the per-block oracle: block ``j`` of row ``i`` covers
    uses ``[j·s, (j+1)·s)`` with ``s = block_code_len(mcs_i, block_bits)``."""
    from v2x.semcom.digital_blocks import block_code_len, failed_block_symbols

    g = torch.Generator().manual_seed(0)
    mcs = torch.tensor([0, 27, 0, 14, 5, 27])
    nblocks = [3, 5, 2, 4, 0, 1]
    oks = [torch.rand(nb, generator=g) > 0.5 for nb in nblocks]
    oks[3][:] = True  # nothing failed there
    oks[0][:] = False
    blocks = [(ok, None) for ok in oks]
    n = max(nb * block_code_len(int(m), 1024) for nb, m in zip(nblocks, mcs))
    got = failed_block_symbols(blocks, mcs, 1024, n, device).cpu()
    want = torch.zeros(len(blocks), n, dtype=torch.bool)
    for i, ok in enumerate(oks):
        s = block_code_len(int(mcs[i]), 1024)
        for j, good in enumerate(ok.tolist()):
            want[i, j * s : (j + 1) * s] = not good
    assert want.any() and torch.equal(got, want)


def test_arrays_in_one_copy_give_each_tensor_as_its_own_copy_would():
    """``arrays_in_one_copy`` (one copy of the tensors' bytes, split on the host; the digital
    chain's levels, occupancy, offsets and steps leave a GPU so) gives what each tensor's own
    ``.cpu().numpy()`` gives: dtype, shape and values, unaligned parts included."""
    from v2x.semcom.digital_stream import _levels_on_host, arrays_in_one_copy
    from v2x.semcom.quantize import quantize_occupied

    g = torch.Generator().manual_seed(5)
    tensors = [
        torch.randint(0, 255, (3, 7), generator=g).to(torch.uint8),  # 21 bytes: the next unaligned
        torch.rand(5, 3, generator=g) > 0.5,
        torch.randn(4, generator=g),
        torch.randint(-(2**31), 2**31 - 1, (2, 3), generator=g, dtype=torch.int32),
        torch.randn(3, 3, generator=g)[:, 1],  # not contiguous
        torch.zeros(0, 4),
    ]
    got = arrays_in_one_copy(tensors)
    for t, a in zip(tensors, got):
        want = t.numpy()
        assert a.dtype == want.dtype and a.shape == want.shape and np.array_equal(a, want)
    for bits in (4, 10):  # uint8 and int32 levels
        q = quantize_occupied(_features(1, 6, 9, 7, density=0.6, seed=bits)[0], bits)
        parts = (q.levels.to(torch.uint8 if bits <= 8 else torch.int32), q.occupied, q.offset, q.step)
        for a, b in zip(_levels_on_host(q), arrays_in_one_copy(parts)):
            assert a.dtype == b.dtype and np.array_equal(a, b)


def test_streams_put_on_the_device_together_hold_their_own_bytes():
    """``MapStream.put_on_device`` (one copy for the streams not yet there) gives each stream
    the bytes ``on_device`` alone would, empty streams and repeats included, and copies none
    already there again."""
    from v2x.semcom.digital_stream import MapStream

    streams = [MapStream(bytes(range(i, i + 5 * i)), 0, [], 4) for i in range(4)]  # first empty
    kept = streams[2].on_device("cpu")
    MapStream.put_on_device(streams + streams[1:2], "cpu")
    assert streams[2].on_device("cpu") is kept
    for st in streams:
        assert st.on_device("cpu").tolist() == list(st.data)
    empty = [MapStream(b"", 0, [], 4), MapStream(b"", 0, [], 4)]
    MapStream.put_on_device(empty, "cpu")
    assert all(st.on_device("cpu").numel() == 0 for st in empty)


def test_host_maps_copied_together_are_the_maps():
    """The receiver's maps decoded on the host, copied to the device in one transfer
    (``_maps_on``'s path off the CPU, forced here), are each map as it was, in order."""
    from v2x.semcom.digital_receiver import _maps_on

    g = np.random.default_rng(2)
    arrays = [g.standard_normal((3, 4, 5)).astype(np.float32) for _ in range(4)]
    for together in (True, False):
        out = _maps_on(torch.device("cpu"), arrays, together=together)
        assert len(out) == 4
        assert all(torch.equal(t, torch.from_numpy(a)) for t, a in zip(out, arrays))
    assert _maps_on(torch.device("cpu"), [], together=True) == []
