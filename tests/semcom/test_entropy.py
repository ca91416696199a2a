"""Entropy coders (v2x.semcom.entropy): exact round trips, measured sizes against entropy."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from v2x.semcom import entropy

BACKENDS = [
    pytest.param(
        b,
        marks=pytest.mark.skipif(
            b == "ans" and importlib.util.find_spec("constriction") is None,
            reason="constriction not installed",
        ),
    )
    for b in entropy.CODERS  # the estimating backend codes nothing: test_entropy_estimate.py
]


def _sparse_symbols(n: int, alphabet: int, p_nonzero: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < p_nonzero, rng.integers(0, alphabet, n), 0).astype(np.int64)


def _round_trip(s: np.ndarray, alphabet: int, backend: str) -> tuple[bytes, bytes]:
    model = entropy.EntropyModel.fit(s, alphabet, backend)
    data = entropy.encode(s, model)
    side = model.to_bytes()
    rx_model = entropy.EntropyModel.from_bytes(side, alphabet, backend)
    out = entropy.decode(data, s.size, rx_model)
    assert out.dtype == np.int64
    assert np.array_equal(out, s)
    return data, side


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alphabet", [2, 256, 4096])
def test_exact_round_trip(backend: str, alphabet: int):
    for p in (0.05, 0.5, 1.0):
        _round_trip(_sparse_symbols(5000, alphabet, p), alphabet, backend)
    _round_trip(np.array([alphabet - 1]), alphabet, backend)  # a single, extreme symbol


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_data_compresses_below_raw(backend: str):
    s = _sparse_symbols(20000, 256, 0.1)
    data, side = _round_trip(s, 256, backend)
    raw_bytes = s.size  # 8 bits per symbol
    assert len(data) + len(side) < 0.5 * raw_bytes


@pytest.mark.skipif(importlib.util.find_spec("constriction") is None, reason="needs constriction")
def test_ans_size_is_close_to_empirical_entropy():
    s = _sparse_symbols(50000, 64, 0.3, seed=3)
    data, _ = _round_trip(s, 64, "ans")
    counts = np.bincount(s, minlength=64)
    p = counts[counts > 0] / s.size
    entropy_bits = -float((counts[counts > 0] * np.log2(p)).sum())  # oracle: Shannon, by hand
    assert entropy_bits - 64 <= len(data) * 8 <= entropy_bits * 1.01 + 64


def test_empty_segment_and_corruption_detected():
    model = entropy.EntropyModel.fit(np.zeros(0, dtype=np.int64), 16, "zlib")
    assert entropy.encode(np.zeros(0, dtype=np.int64), model) == b""
    assert entropy.decode(b"", 0, model).size == 0
    s = _sparse_symbols(3000, 16, 0.5)
    data = bytearray(entropy.encode(s, model))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ValueError, match="entropy decode"):
        entropy.decode(bytes(data), s.size, model)
    with pytest.raises(ValueError, match="entropy decode"):
        entropy.decode(entropy.encode(s, model), s.size + 1, model)


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        entropy.EntropyModel.fit(np.zeros(3), 4, "huffman")
    with pytest.raises(ValueError, match="outside"):
        entropy.encode(np.array([5]), entropy.EntropyModel("zlib", 4))


@pytest.mark.parametrize("backend", [*BACKENDS, "ans_estimate"])
def test_encode_segments_equals_encode_per_segment(backend: str):
    """Oracle: one ``encode`` call per segment (empty segments included)."""
    s = _sparse_symbols(5000, 16, 0.3, seed=3)
    bounds = np.array([0, 0, 17, 900, 900, 2500, 5000])
    model = entropy.EntropyModel.fit(s, 16, backend)
    got = entropy.encode_segments(s, bounds, model)
    assert got == [entropy.encode(s[a:z], model) for a, z in zip(bounds[:-1], bounds[1:])]
    with pytest.raises(ValueError, match="outside"):
        entropy.encode_segments(np.array([0, 16]), np.array([0, 2]), model)
    if backend.startswith("ans"):  # a symbol the model gives no probability
        rare = entropy.EntropyModel.fit(np.zeros(4, dtype=np.int64), 16, backend)
        with pytest.raises(ValueError, match="not fitted"):
            entropy.encode_segments(np.array([0, 1]), np.array([0, 1, 2]), rare)
