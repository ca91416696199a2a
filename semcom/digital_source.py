"""The digital chain's source coding on the host (``v2x.semcom.digital``): a map's stream
within the channel-use budget (the budget rule of ``DigitalCodec``: lower ``bits`` one at a
time down to ``min_bits``, then drop the segments of least L1 energy per byte), the
source-coding memo keyed by the map's content (``map_digest``, ``Codec.source_memo``), and the
worker processes that entropy-code and -decode streams (``Codec.source_executor``; the same
bytes and maps as in this process).

``DigitalSourceCoding`` is a part of ``DigitalCodec``; shapes and units as there.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from v2x.common import tensor_identity
from v2x.semcom import entropy
from v2x.semcom.digital_stream import (
    MapStream,
    _assemble,
    _encode_map_parts,
    _levels_on_host,
    _MapParts,
    _varint,
    code_map,
    decode_whole,
)
from v2x.semcom.fec import CRC_BITS, coded_bits_per_block
from v2x.semcom.mcs import get_mcs
from v2x.semcom.quantize import OccupiedLevels, level_histograms, quantize_occupied


def map_digest(
    feature_map: torch.Tensor, cache: dict, host: Callable[[], np.ndarray] | None = None
) -> bytes:
    """SHA-256 digest (its first 128 bits) of ``feature_map``'s values (its C-order bytes on the
    host), the key of the source-coding memo (SHA-256 rather than BLAKE2b: 2.4× faster where
    the CPU has SHA instructions, 1.5 against 0.6 GB/s on the development VM).

    Memoised in ``cache`` per tensor identity (``v2x.common.tensor_identity``: the same
    storage, alive, offset, shape, strides, dtype and version counter). A sweep sends
    the same map at ``K`` SNRs: the ``K − 1`` repeats skip the host copy and the hash.
    ``host()`` gives the host copy when one is needed (default: copied here).
    """
    ref, key = _digest_key(feature_map)
    hit = _known_digest(cache, key)
    if hit is not None:
        return hit
    values = host() if host is not None else feature_map.detach().cpu().numpy()
    cache[key] = (ref, _sha256_128(values))
    return cache[key][1]


def map_digests(features: torch.Tensor, cache: dict) -> None:
    """``map_digest`` of every row of ``features [B, C, H, W]`` put in ``cache`` at once: the
    rows it lacks copied to the host together (one copy from a GPU, not one per row) and
    hashed side by side on ``_hashers`` (``hashlib`` lets go of the GIL while it hashes). The
    same digests as row by row; the rows' own ``map_digest`` calls then find them."""
    rows = []
    for r in range(features.shape[0]):
        ref, key = _digest_key(features[r].detach())
        if _known_digest(cache, key) is None:
            rows.append((r, ref, key))
    if len(rows) < 2:
        return  # one map: map_digest hashes it where it is needed
    maps = features.detach()
    if maps.device.type == "cpu":
        host = [maps[r].numpy() for r, _, _ in rows]  # the rows themselves, no copy
    else:
        host = maps[[r for r, _, _ in rows]].cpu().numpy()  # gathered there, one copy
    digests = list(_hashers().map(_sha256_128, host))
    for (_, ref, key), digest in zip(rows, digests):
        cache[key] = (ref, digest)


def _digest_key(feature_map: torch.Tensor) -> tuple[Any, tuple]:
    """``(weak reference to the storage, memo key)`` of ``map_digest``'s entry for this map."""
    ref, identity = tensor_identity(feature_map)
    return ref, ("map_digest", *identity)


def _known_digest(cache: dict, key: tuple) -> bytes | None:
    """The digest ``cache`` holds under ``key`` while its map's storage lives, else ``None``."""
    hit = cache.get(key)
    return None if hit is None or hit[0].expired() else hit[1]


def _sha256_128(values: np.ndarray) -> bytes:
    """The first 128 bits of SHA-256 of ``values``' C-order bytes."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(values)).cast("B")).digest()[:16]


_HASHERS: tuple[int, ThreadPoolExecutor] | None = None  # (the process that started them, pool)


def _hashers() -> ThreadPoolExecutor:
    """The threads ``map_digests`` hashes on (up to 8, at most the host's cores), started once
    per process (a forked child has the parent's pool but none of its threads)."""
    global _HASHERS
    if _HASHERS is None or _HASHERS[0] != os.getpid():
        _HASHERS = (os.getpid(), ThreadPoolExecutor(min(8, os.cpu_count() or 1), "v2x-digest"))
    return _HASHERS[1]


class DigitalSourceCoding:
    """Source coding of ``DigitalCodec`` under its channel-use budget, memoised, and on its
    workers (its ``_fit_stream``, ``_source_code_in_workers``, ``_decode_whole_in_workers``,
    ``_decode_ahead``, ...)."""

    def _uses_for_bytes(self, num_bytes: int, mcs_index: int) -> int:
        blocks = math.ceil(num_bytes * 8 / (self.block_bits - CRC_BITS))
        return (
            blocks
            * coded_bits_per_block(get_mcs(mcs_index), self.block_bits)
            // get_mcs(mcs_index).qm
        )

    def _max_bytes(self, mcs_index: int) -> int | None:
        """Most stream bytes within ``max_channel_uses`` at ``mcs_index`` (``None``: no budget):
        ``_uses_for_bytes(n) <= max_channel_uses`` exactly when ``n <=`` this."""
        if self.max_channel_uses is None:
            return None
        uses_per_block = self._uses_for_bytes(1, mcs_index)
        return (self.max_channel_uses // uses_per_block) * (self.block_bits - CRC_BITS) // 8

    def _cannot_fit(
        self,
        feature_map: torch.Tensor,
        digest: bytes,
        bits: int,
        max_bytes: int | None,
        cache: dict,
    ) -> bool:
        """Whether ``feature_map [C, H, W]`` at ``bits`` is sure to exceed ``max_bytes``: its
        coded segments alone are at least ``entropy.min_coded_bytes`` of its level histogram
        (``ans`` backends only; the histograms of every depth above ``min_bits`` are computed at
        the first call and memoised per map in ``cache``)."""
        if max_bytes is None or self.entropy_coder not in entropy.BOUNDED:
            return False
        hist = cache.get((digest, "levels"))
        if hist is None:  # every depth the loop may skip, at once
            depths = range(self.bits, self.min_bits, -1)
            hist = level_histograms(feature_map[None], depths, self.per_channel)
            cache[(digest, "levels")] = hist
        return entropy.min_coded_bytes(hist[bits]) > max_bytes

    def _cell_energy(self, feature_map: torch.Tensor, digest: bytes, cache: dict) -> np.ndarray:
        """``[H·W]`` float64 L1 norm of each cell of ``feature_map [C, H, W]`` (float32 sums over
        the channels), memoised per map: what orders segments for the budget rule."""
        energy = cache.get((digest, "energy"))
        if energy is None:
            energy = (
                feature_map.abs()
                .sum(0, dtype=torch.float32)
                .reshape(-1)
                .cpu()
                .numpy()
                .astype(np.float64)
            )
            cache[(digest, "energy")] = energy
        return energy

    def _source_code(
        self, feature_map: torch.Tensor, digest: bytes, bits: int, cache: dict
    ) -> _MapParts:
        """Quantise and entropy-code ``feature_map [C, H, W]`` at ``bits`` (on its device; the
        cells' L1 energies, which order segments for the budget rule, memoised per map)."""
        q, energy = self._quantized(feature_map, digest, bits, cache)
        return _encode_map_parts(
            q, energy, self._cells_per_segment(feature_map.shape[2]), self.entropy_coder
        )

    def _quantized(
        self, feature_map: torch.Tensor, digest: bytes, bits: int, cache: dict
    ) -> tuple[OccupiedLevels, np.ndarray]:
        """The map's levels on its occupied cells (on its device) and its cells' energies: what
        the entropy coding of ``feature_map`` at ``bits`` starts from."""
        energy = self._cell_energy(feature_map, digest, cache)
        return quantize_occupied(feature_map, bits, self.per_channel), energy

    def _source_code_in_workers(
        self, features: torch.Tensor, mcs: torch.Tensor, cache: dict
    ) -> None:
        """Source-code at once, on ``source_executor``'s workers, the first depth each row's
        ``_fit_stream`` will code (the one its budget loop reaches first that the memo lacks),
        and put the parts in the memo, where ``_fit_stream`` then finds them. The quantisation
        runs here, on the maps' device; the workers run ``code_map`` on host arrays. Same bytes
        as coding each in this process; a broken pool leaves the work to ``_fit_stream``."""
        jobs: dict[tuple[bytes, int], Any] = {}
        for row in range(features.shape[0]):
            feature_map = features[row].detach()
            digest = map_digest(feature_map, cache)
            max_bytes = self._max_bytes(int(mcs[row]))
            for bits in range(self.bits, self.min_bits - 1, -1):
                key = (digest, bits)
                if key in cache or key in jobs:
                    break  # the loop starts from these parts
                if bits > self.min_bits and self._cannot_fit(
                    feature_map, digest, bits, max_bytes, cache
                ):
                    continue
                jobs[key] = self._submit_source_code(feature_map, digest, bits, cache)
                break
        self._collect(jobs.items(), cache.__setitem__, "coding")  # else _fit_stream codes them

    def _submit_source_code(
        self, feature_map: torch.Tensor, digest: bytes, bits: int, cache: dict
    ) -> Any:
        """``_source_code`` with its host part (``code_map``) submitted to ``source_executor``:
        a future of the ``_MapParts``."""
        q, energy = self._quantized(feature_map, digest, bits, cache)
        assert self.source_executor is not None
        return self.source_executor.submit(
            code_map, *_levels_on_host(q), bits, energy,
            self._cells_per_segment(feature_map.shape[2]), self.entropy_coder,
        )  # fmt: skip

    def _fit_stream(
        self, features: torch.Tensor, row: int, mcs_index: int, cache: dict | None = None
    ) -> MapStream:
        """Stream for one map within ``max_channel_uses`` (the documented budget rule).

        ``cache`` memoises the source coding (quantise + entropy code) per (map content, bits)
        within one ``encode`` call, or across calls in ``source_memo`` when the caller sets one:
        a sweep sends the same map at K SNRs, and only the channel coding depends on the SNR.
        """
        cache = {} if cache is None else cache
        feature_map = features[row].detach()
        digest = map_digest(feature_map, cache)
        budget = self.max_channel_uses
        max_bytes = self._max_bytes(mcs_index)
        parts = None
        for bits in range(self.bits, self.min_bits - 1, -1):
            key = (digest, bits)
            parts = cache.get(key)
            if (
                parts is None
                and bits > self.min_bits
                and self._cannot_fit(feature_map, digest, bits, max_bytes, cache)
            ):
                continue  # what the loop would conclude after coding the map at these bits
            if parts is None:
                parts = cache[key] = self._source_code(feature_map, digest, bits, cache)
            stream = cache.get((digest, bits, "whole"))  # the K - 1 repeats of this map
            if stream is None:
                stream = cache[(digest, bits, "whole")] = _assemble(parts)
            if budget is None or self._uses_for_bytes(len(stream.data), mcs_index) <= budget:
                return stream
        assert parts is not None
        # Drop segments: keep the highest energy per byte first while the stream fits.
        assert max_bytes is not None
        keep = np.zeros(len(parts.segments), dtype=bool)
        nothing = MapStream.unsent(len(parts.segments), parts.bits, parts.cells)
        total = _assemble(parts, keep).header_bytes  # grows by len(varint(n)) - 1 + n per segment
        if total > max_bytes:
            return nothing
        sizes = np.array([len(s) for s in parts.segments])
        order = np.argsort(-(parts.energy / np.maximum(sizes, 1)), kind="stable")
        for i in order:
            extra = len(_varint(int(sizes[i]))) - 1 + int(sizes[i])
            if sizes[i] > 0 and total + extra <= max_bytes:
                keep[i] = True
                total += extra
        if not keep.any() and bool((sizes > 0).any()):  # a header alone carries no cell
            return nothing
        stream = _assemble(parts, keep)
        assert len(stream.data) == total
        return stream

    def _decode_whole_in_workers(
        self, streams: list[MapStream], shape: tuple[int, int, int]
    ) -> None:
        """Entropy-decode at once, on ``source_executor``'s workers (``decode_whole``), each of
        ``streams`` (received whole: every byte as sent) whose map the receiver's memo lacks,
        and memoise each as ``decode_map_stream`` does for a whole reception, where
        ``reconstruct`` then finds it. Not for estimated sizes (their symbols live in this
        process); a broken pool leaves the work to ``decode_map_stream``."""
        cps = self._cells_per_segment(shape[2])
        jobs: dict[int, tuple[MapStream, Any]] = {}
        for st in streams:
            memo = st.decoded.get("whole")
            if id(st.decoded) not in jobs and (memo is None or memo[0] != st.data):
                ahead = st.decoded.get("ahead")  # started by _decode_ahead on these bytes
                same = ahead is not None and ahead[0] is st.data
                job = ahead[1] if same else self._submit_whole(st, shape, cps)
                jobs[id(st.decoded)] = (st, job)

        def memoise(st: MapStream, decoded: tuple[np.ndarray, np.ndarray]) -> None:
            st.decoded["whole"] = (st.data, *decoded)
            if st.decoded.get("ahead", (None,))[0] is st.data:
                del st.decoded["ahead"]

        self._collect(jobs.values(), memoise, "decoding")

    def _decode_ahead(self, streams: list[MapStream], shape: tuple[int, int, int]) -> None:
        """Start ``decode_whole`` of each stream that the receiver's memo lacks on
        ``source_executor``'s workers now, as the transmitter forms it, while the device encodes,
        sends and LDPC-decodes: when the stream is then received whole (every byte as sent),
        ``_decode_whole_in_workers`` takes that decoding of the same bytes instead of starting
        one and waiting for it. A stream never received whole wastes its worker's time, not
        this process's. Only with workers and real entropy coding (not estimated sizes)."""
        if self.source_executor is None or self.entropy_coder in entropy.ESTIMATED:
            return
        cps = self._cells_per_segment(shape[2])
        for st in streams:
            memo, ahead = st.decoded.get("whole"), st.decoded.get("ahead")
            if not st.data or (memo is not None and memo[0] == st.data):
                continue
            if ahead is None or ahead[0] is not st.data:
                st.decoded["ahead"] = (st.data, self._submit_whole(st, shape, cps))

    def _submit_whole(
        self, st: MapStream, shape: tuple[int, int, int], cells_per_segment: int
    ) -> Any:
        """A future of ``decode_whole`` of ``st``'s bytes on ``source_executor``'s workers."""
        assert self.source_executor is not None
        return self.source_executor.submit(
            decode_whole, st.data, shape, cells_per_segment, self.entropy_coder
        )

    def _collect(self, jobs: Any, store: Callable[[Any, Any], None], doing: str) -> None:
        """``store(key, future.result())`` for each ``(key, future)`` of ``jobs`` run on
        ``source_executor``; if a worker died (``BrokenProcessPool``), warn once and drop the
        executor: what is not stored is then done in this process."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            for key, job in jobs:
                store(key, job.result())
        except BrokenProcessPool as err:
            warnings.warn(
                f"digital codec: the source-coding workers stopped ({err}); {doing} in this "
                "process",
                RuntimeWarning,
                stacklevel=3,
            )
            self.source_executor = None
