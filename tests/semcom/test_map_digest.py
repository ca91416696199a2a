"""``v2x.semcom.digital_source.map_digest``: the source-coding memo's key, memoised per tensor identity.

Oracle: the first 128 bits of SHA-256 of the map's C-order bytes (``hashlib`` on ``numpy.tobytes``)."""

from __future__ import annotations

import gc
import hashlib

import torch

from v2x.semcom.digital import DigitalCodec
from v2x.semcom.digital_source import map_digest, map_digests


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


def test_map_digests_of_a_batch_are_each_rows_own() -> None:
    """``map_digests`` hashes the rows the memo lacks, once each, side by side: the rows'
    ``map_digest`` calls then find them without a host copy; after an in-place write to the
    batch the rows are hashed again."""
    import v2x.semcom.digital_source as digital_source

    base = torch.randn(5, 6, 8, 8)
    cache: dict = {}
    map_digest(base[3], cache)  # already known: not hashed again
    hashed = []
    original = digital_source._sha256_128

    def counted(values):
        hashed.append(1)
        return original(values)

    digital_source._sha256_128 = counted
    try:
        map_digests(base, cache)
        assert len(hashed) == 4

        def no_copy():
            raise AssertionError("map_digest copied a row map_digests had hashed")

        for r in range(5):
            assert map_digest(base[r], cache, no_copy) == _oracle(base[r]), r
        base[1, 0, 0, 0] += 1.0  # bumps the storage's version: every row is hashed again
        map_digests(base, cache)
        assert len(hashed) == 4 + 5
        for r in range(5):
            assert map_digest(base[r], cache, no_copy) == _oracle(base[r]), r
    finally:
        digital_source._sha256_128 = original


def _digests_in_child(rows: torch.Tensor, queue) -> None:
    cache: dict = {}
    map_digests(rows, cache)
    queue.put([map_digest(rows[r], cache) for r in range(rows.shape[0])])


def test_map_digests_in_a_forked_child_of_a_process_that_used_them() -> None:
    """A forked child has its parent's thread pool object but none of its threads: it starts
    its own (a pool taken over from the parent would never run the child's hashing)."""
    import multiprocessing

    rows = torch.randn(3, 4, 8, 8)
    map_digests(rows, {})  # the parent's pool is started
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_digests_in_child, args=(rows, queue))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    assert queue.get(timeout=10) == [_oracle(rows[r]) for r in range(3)]


def test_the_benchmark_runs_and_checks_its_digests(capsys) -> None:
    from tests.benchmark_scripts import load_benchmark

    load_benchmark("bench_map_digest").main(["--maps", "3", "--shape", "2", "4", "4", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "map_digest row by row (reference)" in out and "map_digests batched" in out
