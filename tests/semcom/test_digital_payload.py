"""The ``digital_payload`` codec (the whole map at ``bits`` per value) and the receiver's
entropy-decoding memo of ``decode_map_stream`` (``sent=``): same output, fewer decodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.channels import build_channel
from v2x.channels.link import LinkState
from v2x.semcom import build_codec, entropy
from v2x.semcom.digital import DigitalCodec
from v2x.semcom.digital_stream import decode_map_stream
from v2x.semcom.quantize import dequantize, quantize


def _features(b: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(b, c, h, w, generator=g))


def test_digital_payload_sends_the_whole_map_at_its_bits_through_min_sum():
    codec = build_codec("digital_payload", bits=4)
    assert (codec.decoder, codec.ldpc_decoder, codec.min_bits, codec.max_channel_uses) == (
        "exact",
        "minsum",
        4,
        None,
    )
    x = _features(2, 4, 8, 16)
    link = LinkState.from_snr(torch.tensor([30.0, 30.0]))
    torch.manual_seed(0)
    tx = codec.encode(x, link)
    y, state = build_channel("awgn")(tx.symbols, link.snr_db)
    out = codec.decode(tx.received(y, state), link)
    assert torch.equal(out, dequantize(quantize(x, 4)))  # every value, at 4 bits
    streams = tx.meta["streams"]
    assert [s.bits for s in streams] == [4, 4]
    # source bits are the stream's bytes; channel uses its code blocks' symbols
    assert tx.cost.source_bits.tolist() == [len(s.data) * 8.0 for s in streams]
    assert tx.cost.channel_uses.tolist() == tx.mask.sum(1).double().tolist()
    payload = 1024 - 24
    assert tx.meta["num_blocks"] == [math.ceil(len(s.data) * 8 / payload) for s in streams]


@pytest.mark.parametrize(("name", "value"), [("max_channel_uses", 1000), ("min_bits", 2)])
def test_digital_payload_refuses_a_budget(name, value):
    with pytest.raises(ValueError, match=name):
        build_codec("digital_payload", bits=6, **{name: value})


def _stream(seed: int = 0):
    codec = DigitalCodec(bits=6, decoder="fast", rows_per_segment=2)  # ans
    x = _features(1, 3, 8, 8, seed)
    tx = codec.encode(x, LinkState.from_snr(30.0, batch=1))
    return tx.meta["streams"][0], dequantize(quantize(x, 6))[0].numpy()


def test_decode_memo_gives_the_decoder_output_and_decodes_each_segment_once(monkeypatch):
    st, ref = _stream()
    calls = []
    real = entropy.decode
    monkeypatch.setattr(entropy, "decode", lambda *a: calls.append(1) or real(*a))
    lost = np.zeros(len(st.data), dtype=bool)
    plain = decode_map_stream(st.data, lost, (3, 8, 8), 16, "ans")
    assert np.array_equal(plain, ref) and len(calls) == 4
    calls.clear()
    for _ in range(3):  # the same map received intact at three SNRs
        got = decode_map_stream(st.data, lost, (3, 8, 8), 16, "ans", sent=st)
        assert np.array_equal(got, plain)
    assert len(calls) == 4  # once per segment, then from the memo
    assert sorted(k for k in st.decoded if isinstance(k, int)) == [0, 1, 2, 3]


def test_decode_memo_never_serves_bytes_that_differ_from_the_sent_ones():
    st, ref = _stream(1)
    delivered_plain, delivered_memo = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    decode_map_stream(st.data, np.zeros(len(st.data), bool), (3, 8, 8), 16, "ans", sent=st)
    assert len([k for k in st.decoded if isinstance(k, int)]) == 4
    start = st.header_bytes + st.segment_bytes[0]  # segment 1: rows 2-3
    # A byte of segment 1 corrupted but not marked lost (a CRC that passed wrong bits), and a
    # lost byte in segment 2: the memo must not hide either.
    data = bytearray(st.data)
    data[start + 1] ^= 0x5A
    lost = np.zeros(len(data), dtype=bool)
    lost[start + st.segment_bytes[1]] = True
    plain = decode_map_stream(bytes(data), lost, (3, 8, 8), 16, "ans", delivered_plain)
    memo = decode_map_stream(bytes(data), lost, (3, 8, 8), 16, "ans", delivered_memo, sent=st)
    assert np.array_equal(plain, memo) and np.array_equal(delivered_plain, delivered_memo)
    assert np.all(memo[:, 4:6] == 0) and not np.array_equal(memo[:, 2:4], ref[:, 2:4])
    assert np.array_equal(memo[:, [0, 1, 6, 7]], ref[:, [0, 1, 6, 7]])
    # A corrupted header byte: nothing from the memo either (and here: the map is lost).
    data = bytearray(st.data)
    data[2] ^= 0x01
    lost = np.zeros(len(data), dtype=bool)
    assert np.array_equal(
        decode_map_stream(bytes(data), lost, (3, 8, 8), 16, "ans"),
        decode_map_stream(bytes(data), lost, (3, 8, 8), 16, "ans", sent=st),
    )


def test_config_file_builds_the_codec_with_its_defaults():
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load("conf/codec/digital_payload.yaml"))
    codec = build_codec(cfg.pop("name"), **cfg)
    default = build_codec("digital_payload")
    for name in ("bits", "decoder", "ldpc_decoder", "mcs", "entropy_coder", "block_bits"):
        assert getattr(codec, name) == getattr(default, name)


@pytest.mark.parametrize("payload_bits", [1000, 999, 1001, 8, 8424])
def test_lost_bytes_are_the_bytes_with_a_bit_in_a_failed_block(payload_bits):
    from v2x.semcom.digital_blocks import lost_bytes

    rng = np.random.default_rng(payload_bits)
    ok = rng.random(37) < 0.7
    num_bytes = (37 * payload_bits) // 8 - 3
    # oracle: every bit's block, then any lost bit per byte
    bit_lost = np.repeat(~ok, payload_bits)[: num_bytes * 8]
    expected = bit_lost.reshape(-1, 8).any(axis=1)
    assert np.array_equal(lost_bytes(ok, num_bytes, payload_bits), expected)


def test_whole_stream_memo_never_serves_another_stream_of_the_same_map():
    # Two budgets: the same source coding (shared memo) assembled into two different streams
    # (maps wide enough that half the budget holds the header and a segment: a header alone is
    # not sent)
    h, w = 8, 32
    codec = DigitalCodec(bits=6, min_bits=6, decoder="fast", rows_per_segment=2)
    x = _features(1, 3, h, w, 2)
    cache: dict = {}
    full = codec._fit_stream(x, 0, 28, cache)
    codec.max_channel_uses = codec._uses_for_bytes(len(full.data), 28) // 2
    part = codec._fit_stream(x, 0, 28, cache)
    assert 0 < sum(part.segment_bytes) < sum(full.segment_bytes)
    assert part.data != full.data and part.decoded is full.decoded  # one memo
    outs = []
    for st in (full, part, full, part):
        lost = np.zeros(len(st.data), dtype=bool)
        got = np.zeros((h, w), bool)
        out = decode_map_stream(st.data, lost, (3, h, w), 2 * w, "ans", got, sent=st)
        ref_got = np.zeros((h, w), bool)
        ref = decode_map_stream(st.data, lost, (3, h, w), 2 * w, "ans", ref_got)
        assert np.array_equal(out, ref) and np.array_equal(got, ref_got)
        outs.append(out)
    assert not np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])


@pytest.mark.parametrize(
    ("num_bytes", "nblocks", "payload_bits"), [(0, 1, 8), (5, 1, 40), (7, 3, 24)]
)
def test_stream_bits_unpack_msb_first_and_zero_pad(num_bytes, nblocks, payload_bits):
    from v2x.semcom.digital_blocks import _stream_bits
    from v2x.semcom.digital_stream import MapStream

    data = bytes(np.random.default_rng(num_bytes).integers(0, 256, num_bytes, dtype=np.uint8))
    expected = np.zeros(nblocks * payload_bits, dtype=np.float32)
    expected[: num_bytes * 8] = np.unpackbits(np.frombuffer(data, np.uint8))  # oracle: numpy
    stream = MapStream(data, 0, [], 8)  # a stream's bytes: copied to the device once
    got = _stream_bits(stream, nblocks, payload_bits)
    assert got.dtype == torch.float32 and got.shape == (nblocks, payload_bits)
    assert np.array_equal(got.reshape(-1).numpy(), expected)
    assert torch.equal(_stream_bits(stream, nblocks, payload_bits), got)
    assert stream.on_device("cpu") is stream.on_device(torch.device("cpu"))


def test_rows_bits_join_each_rows_blocks_zero_padded():
    """Several rows' streams at once (bytes joined on the device): each row's bits, MSB first,
    zero-padded to its own blocks, one row after the other (numpy's unpackbits per row), with
    rows in any order, an empty stream among them, and the device copy of a stream reused."""
    from v2x.semcom.digital_blocks import _rows_bits
    from v2x.semcom.digital_stream import MapStream

    rng = np.random.default_rng(0)
    sizes = [0, 13, 250, 125, 7]
    streams = [MapStream(bytes(rng.integers(0, 256, n, dtype=np.uint8)), 0, [], 8) for n in sizes]
    payload_bits = 1000  # 125 whole bytes per block
    nblocks = [-(-n * 8 // payload_bits) for n in sizes]
    rows = [3, 0, 2, 4, 1]
    expected = []
    for i in rows:
        row = np.zeros(nblocks[i] * payload_bits, dtype=np.float32)
        row[: sizes[i] * 8] = np.unpackbits(np.frombuffer(streams[i].data, np.uint8))
        expected.append(row)
    got = _rows_bits(streams, rows, nblocks, payload_bits, "cpu")
    assert got.shape == (sum(nblocks), payload_bits) and got.dtype == torch.float32
    assert np.array_equal(got.reshape(-1).numpy(), np.concatenate(expected))
    again = _rows_bits(streams, rows[:2], nblocks, payload_bits, "cpu")
    assert torch.equal(again, got[: nblocks[3] + nblocks[0]])
    assert _rows_bits(streams, [], nblocks, payload_bits, "cpu").shape == (0, payload_bits)


def test_min_sum_calls_on_a_gpu_are_sized_by_its_memory(monkeypatch):
    from types import SimpleNamespace

    from v2x.semcom import digital_blocks

    gib = 1 << 30
    memory = {"total": 141 * 10**9}
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=memory["total"])
    )
    # 2 MiB per block, rounded down to a power of two: 141 GB -> 67,240 -> 65,536
    assert digital_blocks.decode_chunk("minsum", "cuda:0") == 65536
    assert digital_blocks.decode_chunk("minsum-fp16", torch.device("cuda")) == 65536
    memory["total"] = 16 * gib  # 8,192: the floor
    assert digital_blocks.decode_chunk("minsum", "cuda") == 8192
    memory["total"] = 8 * gib  # below the floor: the floor
    assert digital_blocks.decode_chunk("minsum", "cuda") == 8192
    memory["total"] = 40 * gib
    assert digital_blocks.decode_chunk("minsum", "cuda") == 16384
    memory["total"] = 4096 * gib  # capped
    assert digital_blocks.decode_chunk("minsum", "cuda") == 262144
    # the CPU and Sionna's decoder keep their fixed bounds
    assert digital_blocks.decode_chunk("minsum", "cpu") == 8192
    assert digital_blocks.decode_chunk("sionna", "cuda") == 2048


def test_processes_sharing_a_gpu_size_their_min_sum_calls_by_their_share(monkeypatch):
    """Each of a sweep's device workers on one GPU takes its share of the memory
    (``set_memory_share``): sized by the whole GPU, three workers' calls on an 80 GB H100 ran
    it out of memory (docs/benchmarks.md, fifty-third session)."""
    from types import SimpleNamespace

    from v2x.common import memory_share, set_memory_share
    from v2x.semcom import digital_blocks

    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=141 * 10**9)
    )
    monkeypatch.setattr("v2x.devices._MEMORY_SHARE", {})
    assert digital_blocks.decode_chunk("minsum", "cuda:0") == 65536  # alone: 67,240 -> 65,536
    set_memory_share("cuda:0", 2)
    assert memory_share("cuda:0") == 2 and memory_share(torch.device("cuda", 0)) == 2
    assert digital_blocks.decode_chunk("minsum-fp16", "cuda:0") == 32768  # 33,620 -> 32,768
    set_memory_share("cuda:0", 9)
    assert digital_blocks.decode_chunk("minsum", "cuda:0") == 8192  # 7,471: the floor
    # another GPU and the CPU are not shared; a share of 1 forgets it
    assert memory_share("cuda:1") == 1 and digital_blocks.decode_chunk("minsum", "cuda:1") == 65536
    set_memory_share("cpu", 4)
    assert memory_share("cpu") == 1 and digital_blocks.decode_chunk("minsum", "cpu") == 8192
    set_memory_share("cuda:0", 1)
    assert memory_share("cuda:0") == 1 and digital_blocks.decode_chunk("minsum", "cuda:0") == 65536


@pytest.mark.parametrize("combining", ["chase", "ir"])
def test_harq_decodes_in_chunks_with_the_numbers_of_one_call(monkeypatch, combining):
    from v2x.semcom import digital_blocks
    from v2x.semcom.harq import transmit

    x = _features(2, 4, 8, 16, 3)
    codec = build_codec(
        "digital_payload", bits=6, mcs=14, harq_max_rounds=1, harq_combining=combining
    )
    link = LinkState.from_snr(torch.tensor([6.6, 6.6]))  # near MCS 14's threshold: some fail

    def run():
        torch.manual_seed(5)
        tx = codec.encode(x, link)
        out, rx = transmit(codec, build_channel("awgn"), tx, link.snr_db, link)
        return out, rx.cost.channel_uses, rx.meta["retransmissions"]

    whole = run()
    monkeypatch.setitem(digital_blocks._DECODE_CHUNK, "minsum", 3)  # blocks per decoder call
    chunked = run()
    assert whole[2].sum() > 0  # a retransmission round took place
    for a, b in zip(whole, chunked):
        assert torch.equal(a, b)
