"""``v2x.semcom.digital_source.map_digest``: the source-coding memo's key, memoised per tensor identity.

Oracle: the first 128 bits of SHA-256 of the map's C-order bytes (``hashlib`` on ``numpy.tobytes``)."""

from __future__ import annotations

import gc
import hashlib

import torch

from v2x.semcom.digital import DigitalCodec
from v2x.semcom.digital_source import map_digest


def _oracle(x: torch.Tensor) -> bytes:
    return hashlib.sha256(x.detach().cpu().numpy().tobytes()).digest()[:16]


def test_digest_is_sha256_of_the_values_in_c_order() -> None:
    x = torch.randn(3, 5, 7)
    for view in (x, x.transpose(1, 2), x[:, 1:4], x[1]):
        assert map_digest(view, {}) == _oracle(view)


def test_repeats_of_one_map_skip_the_host_copy() -> None:
    """Views of the same storage, offset, shape and strides (a sweep's K conditions) hash once;
    another row, an in-place write (version counter) or other strides hash again."""
    base = torch.randn(4, 6, 8, 8)
    cache: dict = {}
    copies = []

    def host_of(t: torch.Tensor):
        return lambda: copies.append(1) or t.detach().numpy()

    for _ in range(5):  # five conditions, a fresh view each
        row = base[2]
        assert map_digest(row, cache, host_of(row)) == _oracle(row)
    assert len(copies) == 1
    assert map_digest(base[1], cache, host_of(base[1])) == _oracle(base[1])
    assert len(copies) == 2
    base[2, 0, 0, 0] += 1.0  # in place: the memo must not answer with the old digest
    assert map_digest(base[2], cache, host_of(base[2])) == _oracle(base[2])
    assert len(copies) == 3
    flipped = base[2].transpose(1, 2)
    assert map_digest(flipped, cache, host_of(flipped)) == _oracle(flipped)
    assert len(copies) == 4


def test_freed_maps_are_never_matched_by_new_ones() -> None:
    """Maps freed and allocated again (the allocator reuses addresses) with other values: each
    digest is its own content's (an entry whose storage died is not a hit)."""
    cache: dict = {}
    for i in range(50):
        x = torch.full((16, 32, 32), float(i))
        assert map_digest(x, cache) == _oracle(x), i
        del x
        gc.collect()


def test_codec_streams_are_unchanged_by_the_memo() -> None:
    """A digital codec with a shared source memo sends, condition after condition, the bytes a
    fresh codec sends (the memo answers repeats without changing them)."""
    from v2x.channels import build_channel
    from v2x.channels.link import LinkState

    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(2, 8, 16, 16, generator=g))
    shared = DigitalCodec(max_channel_uses=4096)
    shared.source_memo = {}
    channel = build_channel("awgn", validate=False)
    for snr in (0.0, 10.0, 0.0, 20.0):
        link = LinkState.before_sending(channel, torch.full((2,), snr))
        torch.manual_seed(1)
        a = shared.encode(x, link)
        torch.manual_seed(1)
        b = DigitalCodec(max_channel_uses=4096).encode(x, link)
        assert torch.equal(a.symbols, b.symbols), snr
        assert torch.equal(a.cost.source_bits, b.cost.source_bits), snr
