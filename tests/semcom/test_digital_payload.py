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
from v2x.semcom.digital import DigitalCodec, decode_map_stream
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
    assert sorted(st.decoded) == [0, 1, 2, 3]


def test_decode_memo_never_serves_bytes_that_differ_from_the_sent_ones():
    st, ref = _stream(1)
    delivered_plain, delivered_memo = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    decode_map_stream(st.data, np.zeros(len(st.data), bool), (3, 8, 8), 16, "ans", sent=st)
    assert len(st.decoded) == 4
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
