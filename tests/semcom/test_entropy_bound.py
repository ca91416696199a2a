"""The digital codec skips bit depths that cannot fit its budget without coding them
(``entropy.min_coded_bytes`` of ``quantize.level_histograms``). Oracles: constriction's real
output (never below the bound), ``quantize`` itself (the same histograms), and the codec with
the skip switched off (the same streams, byte for byte)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from v2x.semcom import entropy
from v2x.semcom.digital import DigitalCodec
from v2x.semcom.quantize import level_histograms, quantize


def _histogram(rng: np.random.Generator, trial: int, alphabet: int) -> np.ndarray:
    kind = trial % 4
    if kind == 0:
        return rng.dirichlet(np.ones(alphabet) * rng.choice([0.01, 0.1, 1.0, 10.0]))
    if kind == 1:  # one dominant symbol (sparse maps)
        p = np.ones(alphabet)
        p[0] = 1e5
        return p / p.sum()
    if kind == 2:
        return np.ones(alphabet) / alphabet
    p = np.exp(-np.arange(alphabet) * rng.uniform(0.1, 3.0))
    return p / p.sum()


def test_real_ans_output_is_never_below_the_bound():
    pytest.importorskip("constriction")
    rng = np.random.default_rng(0)
    for trial in range(300):
        alphabet = 2 ** int(rng.integers(1, 9))
        n = int(rng.choice([1, 3, 10, 100, 1000, 20000]))
        symbols = rng.choice(alphabet, size=n, p=_histogram(rng, trial, alphabet))
        counts = np.bincount(symbols, minlength=alphabet)
        model = entropy.EntropyModel.fit(symbols, alphabet, "ans")
        segments = np.array_split(symbols, int(rng.integers(1, 6)))
        real = sum(len(entropy.encode(s, model)) for s in segments if s.size)
        info_bits = -(counts[counts > 0] * np.log2(counts[counts > 0] / n)).sum()
        assert real * 8 >= info_bits - 1e-9, (trial, alphabet, n)  # the bound's premise
        assert real >= entropy.min_coded_bytes(counts)
        estimated = sum(
            len(entropy.encode(s, entropy.EntropyModel.fit(symbols, alphabet, "ans_estimate")))
            for s in segments
            if s.size
        )
        assert estimated >= entropy.min_coded_bytes(counts)


def test_min_coded_bytes_by_hand():
    assert entropy.min_coded_bytes(np.array([0, 0])) == 0
    assert entropy.min_coded_bytes(np.array([5, 0])) == 0  # one symbol: no information
    # 1000 fair bits: 1000 bits of information, 0.9 x 125 bytes
    assert entropy.min_coded_bytes(np.array([500, 500])) == 112


@pytest.mark.parametrize("per_channel", [True, False])
def test_level_histograms_equal_quantize(per_channel):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 6, 9, 11, generator=g) * torch.rand(1, 6, 1, 1, generator=g) * 5
    x = x * (torch.rand(1, 1, 9, 11, generator=g) < 0.6)  # empty cells
    x[0, 2] = 0.7  # a constant channel (zero span)
    hist = level_histograms(x, range(1, 11), per_channel)
    for bits in range(1, 11):
        q = quantize(x, bits, per_channel)
        expected = np.bincount(
            q.levels[0][:, q.occupied[0]].reshape(-1).numpy(), minlength=2**bits
        )
        np.testing.assert_array_equal(hist[bits], expected)
    empty = level_histograms(torch.zeros(1, 3, 4, 4), [4], per_channel)
    assert empty[4].sum() == 0 and empty[4].shape == (16,)


def test_skipping_depths_gives_the_same_streams(monkeypatch):
    pytest.importorskip("constriction")
    g = torch.Generator().manual_seed(5)
    x = torch.relu(torch.randn(2, 24, 32, 32, generator=g))
    x = x * (torch.rand(2, 1, 32, 32, generator=g) < 0.5)
    skipped = []
    original = DigitalCodec._cannot_fit

    def counting(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        skipped.append(out)
        return out

    for budget in (2_000, 20_000, 60_000, 400_000):
        codec = DigitalCodec(max_channel_uses=budget)
        monkeypatch.setattr(DigitalCodec, "_cannot_fit", counting)
        fast = [codec._fit_stream(x, r, m, {}) for r in range(2) for m in (3, 14, 27)]
        monkeypatch.setattr(DigitalCodec, "_cannot_fit", lambda *a, **k: False)
        slow = [codec._fit_stream(x, r, m, {}) for r in range(2) for m in (3, 14, 27)]
        for a, b in zip(fast, slow):
            assert a.data == b.data and a.bits == b.bits and a.segment_bytes == b.segment_bytes
    assert any(skipped) and not all(skipped)  # both branches taken
