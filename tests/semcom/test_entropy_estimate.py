"""The ``ans_estimate`` entropy backend: estimated sizes within 1 % of the real ANS coder's
bytes (the oracle: constriction's output on the same symbols), labelled as estimated, and a
receiver that still rebuilds exactly what was quantised."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from v2x.channels.link import LinkState
from v2x.semcom import entropy
from v2x.semcom.digital import DigitalCodec
from v2x.semcom.quantize import dequantize, quantize


def _dense_features(seed: int = 0) -> torch.Tensor:
    """A fixed dense sample shaped like the detector's maps (every cell occupied, channels of
    different scales, skewed values): ``[2, 16, 32, 64]``."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.exp(torch.randn(1, 16, 1, 1, generator=g))
    x = torch.relu(torch.randn(2, 16, 32, 64, generator=g) + 0.5) ** 1.5 * scale
    return x + 1e-3  # no empty cell


def _encode(coder: str, bits: int, x: torch.Tensor):
    codec = DigitalCodec(bits=bits, min_bits=bits, entropy_coder=coder)
    return codec, codec.encode(x, LinkState.from_snr(torch.full((x.shape[0],), 30.0)))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_estimated_stream_is_within_one_percent_of_the_real_ans_bytes(bits):
    x = _dense_features()
    _, real = _encode("ans", bits, x)
    _, est = _encode("ans_estimate", bits, x)
    a, b = real.cost.source_bits, est.cost.source_bits
    assert torch.all((b - a).abs() <= 0.01 * a), (a, b)
    for sa, sb in zip(real.meta["streams"], est.meta["streams"]):
        # side information: real bytes in both, but for the varints of the segment lengths
        assert sa.data[:100] == sb.data[:100]
        assert abs(sa.header_bytes - sb.header_bytes) <= len(sa.segment_bytes)
        diff = np.array(sb.segment_bytes) - np.array(sa.segment_bytes)
        assert np.abs(diff).max() <= 4  # each segment within one 32-bit ANS word


def test_estimate_matches_the_coder_word_count_on_a_hand_built_segment():
    # Symbols 0, 1, 2, 3 with counts 1, 1, 2, 4 per 8, 64 times: information 64 · (3 + 3 + 2·2
    # + 4·1) = 896 bits; + 16 flush bits = 912 -> 29 words of 32 bits = 116 bytes, which is
    # what constriction's coder writes.
    symbols = np.tile(np.array([0, 1, 2, 2, 3, 3, 3, 3]), 64)
    model = entropy.EntropyModel.fit(symbols, 4, "ans_estimate")
    assert entropy.estimate_bytes(symbols, model) == 116
    real = entropy.EntropyModel.fit(symbols, 4, "ans")
    assert len(entropy.encode(symbols, real)) == 116
    assert entropy.encode(symbols, model) == bytes(116)  # a placeholder of that length
    with pytest.raises(ValueError, match="placeholder"):
        entropy.decode(bytes(116), symbols.size, model)
    with pytest.raises(ValueError, match="not fitted"):
        entropy.estimate_bytes(np.array([0, 1]), entropy.EntropyModel.fit([1, 1], 4, "ans"))


def test_estimated_codec_is_flagged_and_its_receiver_rebuilds_the_quantised_map():
    x = _dense_features(1)[:1, :, :8]
    codec, tx = _encode("ans_estimate", 5, x)
    assert codec.bits_estimated and not DigitalCodec().bits_estimated
    link = LinkState.from_snr(torch.tensor([30.0]))
    out = codec.decode(tx.received(tx.symbols, None), link)  # noiseless: every block passes
    assert torch.equal(out, dequantize(quantize(x, 5)))
    # a lost block still loses its segments: zeros there, exact values elsewhere
    st = tx.meta["streams"][0]
    ok = torch.ones(tx.meta["num_blocks"][0], dtype=torch.bool)
    ok[-1] = False
    got = codec.reconstruct(tx, [(ok, None)])
    assert bool((got[0, :, -1] == 0).all()) and torch.equal(got[0, :, 0], out[0, :, 0])
    assert len(st.data) * 8 == tx.cost.source_bits.item()


@pytest.mark.slow
def test_estimate_error_on_the_shipped_detector_maps_is_below_one_percent():
    from v2x.datasets.frame import collate_frames
    from v2x.datasets.synthetic import generate_sequence
    from v2x.datasets.synthetic_config import SyntheticConfig
    from v2x.perception.checkpoint import load_detector

    model = load_detector(None, "cpu")
    batch = collate_frames(list(generate_sequence(SyntheticConfig(), 950_000, 1)))
    with torch.no_grad():
        feats = model.encode(batch.points, batch.point_mask, batch.poses)[0, 1:3]
    for bits in (4, 8):
        _, real = _encode("ans", bits, feats)
        _, est = _encode("ans_estimate", bits, feats)
        a, b = real.cost.source_bits, est.cost.source_bits
        assert torch.all((b - a).abs() <= 0.01 * a), (bits, a, b)
