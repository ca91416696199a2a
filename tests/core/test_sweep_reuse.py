"""share_source_coding: a codec that declares ``memoises_source_coding`` gets one shared memo,
and what it encodes with the memo is what it encodes without (the memo only saves work)."""

from __future__ import annotations

import pytest
import torch

from v2x.channels.link import LinkState
from v2x.semcom import build_codec
from v2x.sweep_reuse import share_source_coding

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _encode(codec, maps: torch.Tensor, snr_db: float):
    torch.manual_seed(1)  # the same draws (e.g. padding bits) for both codecs
    return codec.encode(maps, LinkState.from_snr(snr_db, maps.shape[0]))


def test_the_digital_chain_shares_its_source_coding_across_calls():
    maps = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = build_codec("digital", bits=6)
    shared = build_codec("digital", bits=6)
    memo = share_source_coding(shared)
    assert shared.source_memo is memo and plain.source_memo is None
    for snr in (5.0, 20.0):  # two cells of one group: the same maps at two SNRs
        a, b = _encode(plain, maps, snr), _encode(shared, maps, snr)
        assert torch.equal(a.symbols, b.symbols) and torch.equal(a.mask, b.mask)
        for name in ("source_bits", "coded_bits", "channel_uses", "packets"):
            assert torch.equal(getattr(a.cost, name), getattr(b.cost, name)), name
        if snr == 5.0:
            filled = dict(memo)
            assert filled  # the first cell's source coding is kept ...
    assert memo.keys() == filled.keys()  # ... and the second cell found it there
    for name in ("identity", "analog"):  # nothing to memoise: left as is
        codec = build_codec(name)
        assert share_source_coding(codec) == {} and codec.source_memo is None


def test_worker_processes_code_only_for_groups_on_a_gpu(monkeypatch):
    """The host's worker processes (``cell_pool``) take the digital chain's source coding when
    the group runs on a GPU; on a CPU the cores run torch's threads, so the codec codes in its
    own process."""
    import v2x.sweep_rows as sweep_rows

    pool = object()
    monkeypatch.setattr(sweep_rows, "cell_pool", lambda: pool)
    codec = build_codec("digital", bits=6)
    share_source_coding(codec, "cpu")
    assert codec.source_executor is None
    share_source_coding(codec, torch.device("cuda", 0))  # no GPU needed: only the decision
    assert codec.source_executor is pool
    monkeypatch.setattr(sweep_rows, "cell_pool", lambda: None)  # a host without workers
    share_source_coding(codec, "cuda")
    assert codec.source_executor is None
