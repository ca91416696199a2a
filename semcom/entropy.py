"""Lossless entropy coding of quantised symbols: real coders, measured bytes, exact decoding.

Backends (``backend=``):

* ``"ans"`` — asymmetric numeral systems (``constriction.stream.stack.AnsCoder``, a maintained
  Rust library with manylinux wheels) with a static categorical model: the symbol histogram of
  the whole map, sent once as side information (``model_bytes``: the ``uint32`` counts,
  deflate-compressed). Codes each segment within a few bits of its empirical entropy.
* ``"zlib"``, ``"lzma"``, ``"bz2"`` — Python's standard library on the symbols' bytes (``uint8``
  for ≤ 8-bit levels, little-endian ``uint16`` above); no model side information.
* ``"ans_estimate"`` — no coding: ``"ans"``'s model and side information, but each segment is
  a placeholder of zero bytes whose length is ``estimate_bytes``, the estimated size of
  ``"ans"``'s output (its information content under the model plus the coder's flush, in
  32-bit words). Its bit counts are **estimates** (``DigitalCodec.bits_estimated``; results
  column ``bits_estimated``); its bytes cannot be decoded (``decode`` raises), so the digital
  codec keeps the symbols for the receiver (``MapStream.decoded``). Measured against
  ``"ans"``'s real output on the shipped detector's maps: docs/digital.md.

Every call encodes one independently decodable segment; ``decode`` needs the symbol count (the
receiver derives it from the occupancy map and the feature shape). A corrupted segment raises
``ValueError`` (the codec then treats the segment as lost).
"""

from __future__ import annotations

import bz2
import lzma
import math
import zlib

import numpy as np

#: Backends that code: their bytes decode back to the symbols exactly.
CODERS = ("ans", "zlib", "lzma", "bz2")
BACKENDS = (*CODERS, "ans_estimate")
#: Backends whose segments are estimated sizes, not coded bytes.
ESTIMATED = frozenset({"ans_estimate"})
#: Bits the ANS coder adds to a segment's information content before rounding up to whole
#: 32-bit words (its state flush; calibrated on the shipped detector's maps, docs/digital.md).
ANS_FLUSH_BITS = 16.0
_ANS_WORD_BITS = 32


def _constriction():
    try:
        import constriction
    except ImportError:
        raise ImportError(
            "entropy coder 'ans' needs the constriction package (pip install constriction); "
            "or choose entropy_coder zlib, lzma or bz2"
        ) from None
    return constriction


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(
            f"entropy coder 'backend' must be one of {', '.join(BACKENDS)}, got {backend!r}"
        )


class EntropyModel:
    """A symbol model shared by encoder and decoder (``None`` probabilities for stdlib backends).

    Attributes:
        backend: one of ``BACKENDS``.
        alphabet: number of symbols (``2^bits``).
        counts: ``[alphabet]`` uint32 histogram (``ans`` only).
    """

    def __init__(self, backend: str, alphabet: int, counts: np.ndarray | None = None) -> None:
        check_backend(backend)
        self.backend = backend
        self.alphabet = int(alphabet)
        self.counts = counts
        self._model = None
        if backend == "ans" and counts is not None and counts.sum() > 0:
            constriction = _constriction()
            probs = counts.astype(np.float64) / float(counts.sum())
            self._model = constriction.stream.model.Categorical(probs, perfect=False)

    @classmethod
    def fit(cls, symbols: np.ndarray, alphabet: int, backend: str) -> EntropyModel:
        """Model for ``symbols`` (any shape, ints in ``0 … alphabet − 1``)."""
        check_backend(backend)
        if not _has_model(backend):
            return cls(backend, alphabet)
        counts = np.bincount(np.asarray(symbols, dtype=np.int64).reshape(-1), minlength=alphabet)
        if counts.size > alphabet:
            raise ValueError(f"entropy model: symbol {counts.size - 1} outside alphabet {alphabet}")
        return cls(backend, alphabet, counts.astype(np.uint32))

    def to_bytes(self) -> bytes:
        """Side information the decoder needs (empty for stdlib backends)."""
        if not _has_model(self.backend):
            return b""
        return zlib.compress(self.counts.astype("<u4").tobytes(), 9)

    @classmethod
    def from_bytes(cls, data: bytes, alphabet: int, backend: str) -> EntropyModel:
        if not _has_model(backend):
            return cls(backend, alphabet)
        try:
            counts = np.frombuffer(zlib.decompress(data), dtype="<u4")
        except zlib.error as e:
            raise ValueError(f"entropy model: corrupted model bytes ({e})") from None
        if counts.size != alphabet:
            raise ValueError(f"entropy model: {counts.size} counts for an alphabet of {alphabet}")
        return cls(backend, alphabet, counts.astype(np.uint32))


def _has_model(backend: str) -> bool:
    """True for backends with a symbol histogram as side information."""
    return backend in ("ans", "ans_estimate")


def estimate_bytes(symbols: np.ndarray, model: EntropyModel) -> int:
    """Estimated length of ``encode(symbols, model)`` with the ``"ans"`` backend, without coding.

    ``4 · ceil((Σ −log2 p(s) + ANS_FLUSH_BITS) / 32)`` bytes, with ``p`` the model's histogram
    probabilities: the information content of the symbols, the coder's flush, and whole 32-bit
    words. ``symbols``: ints in ``0 … alphabet − 1`` that the model was fitted on; ``model``: an
    ``"ans"`` or ``"ans_estimate"`` model.
    """
    s = np.asarray(symbols).reshape(-1)
    if s.size == 0:
        return 0
    if not _has_model(model.backend) or model.counts is None or model.counts.sum() == 0:
        raise ValueError(f"entropy estimate: needs a fitted ans model, got {model.backend!r}")
    counts = model.counts.astype(np.float64)
    used = np.bincount(s.astype(np.int64), minlength=counts.size)
    if used.size > counts.size or np.any(counts[used > 0] == 0):
        raise ValueError("entropy estimate: the model was not fitted on these symbols")
    nz = used > 0
    info = float(-(used[nz] * np.log2(counts[nz] / counts.sum())).sum())
    words = math.ceil((info + ANS_FLUSH_BITS) / _ANS_WORD_BITS)
    return 4 * words


#: Backends whose segments cost at least the symbols' information content under the map's
#: histogram (``min_coded_bytes``).
BOUNDED = frozenset({"ans", "ans_estimate"})


def min_coded_bytes(counts: np.ndarray) -> int:
    """A lower bound on the bytes of all segments of a map whose symbol histogram is ``counts``
    (``[alphabet]``), entropy-coded by an ``"ans"`` or ``"ans_estimate"`` model fitted on it.

    ``floor(0.9 · n·H / 8)`` with ``n·H = Σ −count · log2(count / n)``, the symbols' information
    content under their own histogram. Under any other probability model (the ANS model's
    quantised probabilities included) these symbols carry at least that much information
    (Gibbs' inequality: ``Σ −log2 q(s) ≥ n·H`` for every ``q``); the estimate's placeholders are
    never shorter than their information content, and constriction's real output was never
    below ``n·H`` on 300 random histograms, segmentations and alphabets
    (``tests/semcom/test_entropy_bound.py``); the factor 0.9 is a margin for the coder's
    rounding. The digital codec uses
    it to skip bit depths that cannot fit a channel-use budget without coding them.
    """
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    n = c.sum()
    if n == 0:
        return 0
    info = float(-(c * np.log2(c / n)).sum())
    return int(math.floor(0.9 * info / 8))


def _dtype(alphabet: int) -> str:
    return "u1" if alphabet <= 256 else "<u2"


def encode(symbols: np.ndarray, model: EntropyModel) -> bytes:
    """Entropy-code a 1-D array of ints in ``0 … alphabet − 1`` into bytes."""
    s = np.asarray(symbols).reshape(-1)
    if s.size == 0:
        return b""
    if int(s.min()) < 0 or int(s.max()) >= model.alphabet:
        raise ValueError(f"entropy encode: symbols outside 0..{model.alphabet - 1}")
    if model.backend == "ans_estimate":
        return bytes(estimate_bytes(s, model))  # a placeholder of the estimated length
    if model.backend == "ans":
        constriction = _constriction()
        if model._model is None or np.any(model.counts[s] == 0):
            raise ValueError("entropy encode: the ans model was not fitted on these symbols")
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(s.astype(np.int32), model._model)
        return coder.get_compressed().astype("<u4").tobytes()
    raw = s.astype(_dtype(model.alphabet)).tobytes()
    if model.backend == "zlib":
        return zlib.compress(raw, 9)
    if model.backend == "lzma":
        return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
    return bz2.compress(raw, 9)


def encode_segments(symbols: np.ndarray, bounds: np.ndarray, model: EntropyModel) -> list[bytes]:
    """``encode`` of every segment ``symbols[bounds[j] : bounds[j + 1]]`` of one flat array
    (``bounds``: ``[S + 1]`` non-decreasing offsets); the same bytes as ``S`` calls of
    ``encode``, with the range checks and the ``int32`` conversion done once for all."""
    s = np.asarray(symbols).reshape(-1)
    cuts = np.asarray(bounds, dtype=np.int64).tolist()
    if model.backend != "ans" or s.size == 0:
        return [encode(s[a:z], model) for a, z in zip(cuts[:-1], cuts[1:])]
    if int(s.min()) < 0 or int(s.max()) >= model.alphabet:
        raise ValueError(f"entropy encode: symbols outside 0..{model.alphabet - 1}")
    used = np.bincount(s.astype(np.int64, copy=False), minlength=model.alphabet) > 0
    if model._model is None or np.any(model.counts[used] == 0):
        raise ValueError("entropy encode: the ans model was not fitted on these symbols")
    stack = _constriction().stream.stack
    s32 = s.astype(np.int32)
    out = []
    for a, z in zip(cuts[:-1], cuts[1:]):
        if z == a:
            out.append(b"")
            continue
        coder = stack.AnsCoder()
        coder.encode_reverse(s32[a:z], model._model)
        out.append(coder.get_compressed().astype("<u4").tobytes())
    return out


def decode(data: bytes, count: int, model: EntropyModel) -> np.ndarray:
    """Inverse of ``encode``: ``count`` int64 symbols; ``ValueError`` if ``data`` is corrupted."""
    if count == 0:
        if data:
            raise ValueError("entropy decode: bytes given for an empty segment")
        return np.zeros(0, dtype=np.int64)
    if model.backend == "ans_estimate":
        raise ValueError("entropy decode: an ans_estimate segment is a placeholder, not a code")
    try:
        if model.backend == "ans":
            constriction = _constriction()
            if model._model is None or len(data) % 4:
                raise ValueError("entropy decode: bad ans stream")
            coder = constriction.stream.stack.AnsCoder(
                np.frombuffer(data, dtype="<u4").astype(np.uint32)
            )
            out = np.asarray(coder.decode(model._model, count), dtype=np.int64)
            if not coder.is_empty():
                raise ValueError("entropy decode: ans stream has trailing data")
            return out
        if model.backend == "zlib":
            raw = zlib.decompress(data)
        elif model.backend == "lzma":
            raw = lzma.decompress(data, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
        else:
            raw = bz2.decompress(data)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, RuntimeError) as e:
        raise ValueError(f"entropy decode: corrupted segment ({e})") from None
    out = np.frombuffer(raw, dtype=_dtype(model.alphabet)).astype(np.int64)
    if out.size != count:
        raise ValueError(f"entropy decode: {out.size} symbols decoded, {count} expected")
    return out
