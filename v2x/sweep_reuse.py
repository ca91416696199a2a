"""What a sweep computes once and reuses across its cells, none of which changes a number:
encoder features per frame batch (``EncodeCache``), the digital chain's source coding of a map
(``share_source_coding``) and finished cells held by other results files (``reuse_cells``).
"""

from __future__ import annotations

import ctypes
import inspect
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import torch

from v2x.ledger import LEDGER_SCHEMA
from v2x.results import (
    RESULTS_SCHEMA,
    CorruptResultsError,
    ResultsStore,
    ledger_path_of,
    read_table,
    results_files,
)
from v2x.semcom.base import Codec
from v2x.sweep_config import check_feature_cache

log = logging.getLogger("v2x.sweep")

FLOAT32_BYTES = 4


class EncodeCache:
    """Delegates to the detector but serves ``encode`` from a per-batch cache.

    ``CooperativePipeline`` calls ``model.encode`` once per run; the sweep sets ``batch_index``
    before each run so that every group reuses the features of that batch. Only the points the
    features were computed from are served from the cache (a batch re-sensed at other instants,
    ``v2x.asynchrony``, is encoded afresh). On CUDA the sweep queues the next batch's encoding
    ahead on a side stream (``prefetch``).

    The features are kept as the detector's encoder computes them (``encoded_dtype``: float16
    or bfloat16 at a reduced ``eval.precision``, half the bytes of float32, so twice the frames
    fit and the groups need not run in lockstep) and handed out as ``encode(...,
    float_output)`` asks: float32 (the same values, exactly) or as kept, for the pipeline's
    feature path, which reads them exactly as their float32 copies.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        max_bytes: float,
        reserve_batches: float = 0.0,
        room: tuple[float, float] | None = None,
    ) -> None:
        """``max_bytes``: the most the cached features may take; ``reserve_batches``: room kept
        out of that for what other workers on the same memory compute beside their caches, in
        units of one frame batch's features (the first batch seen sets the unit:
        ``auto_cache_reserve``); ``room``: ``(bytes, batches)``, the memory this worker may use
        in all and its own working set in those units, which the cache leaves free
        (``auto_cache_room``)."""
        self._model = model
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._ego: dict[tuple, tuple[torch.Tensor, Any]] = {}
        self._max_bytes = max_bytes
        self._reserve_batches = reserve_batches
        self._room = room
        self._bytes = 0
        # the last batch's features when the cache could not hold them: the groups that run
        # in lockstep over the batches (v2x.sweep._waves) share them
        self._last: tuple[int, torch.Tensor, torch.Tensor] | None = None
        self.batch_index: int | None = None
        self.encodes = 0
        # features queued on a side stream by ``prefetch``: batch -> (points, features, event)
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor, Any]] = {}
        self._stream: Any = None

    def encode(
        self,
        points: torch.Tensor,
        point_mask: torch.Tensor,
        poses: torch.Tensor,
        float_output: bool = True,
    ) -> torch.Tensor:
        """The detector's ``encode`` of the batch (``CoopDetector.encode``'s arguments), from
        the cache where it holds the current batch's; float32 with ``float_output``, else in
        the encoder's own dtype."""
        features = self._features(points, point_mask, poses)
        return features.float() if float_output else features

    def _features(
        self, points: torch.Tensor, point_mask: torch.Tensor, poses: torch.Tensor
    ) -> torch.Tensor:
        key = self.batch_index
        pending = self._pending.get(key) if key is not None else None
        if pending is not None and pending[0] is points:
            del self._pending[key]
            current = torch.cuda.current_stream(points.device)
            current.wait_event(pending[2])  # (the side stream's encoding is done for this one)
            pending[1].record_stream(current)
            self._cache[key] = pending[:2]
        hit = self._cache.get(key) if key is not None else None
        if hit is not None and hit[0] is points:  # the batch's own scans, not re-sensed ones
            return hit[1]
        last = self._last
        if last is not None and key is not None and last[0] == key and last[1] is points:
            return last[2]
        self._last = None  # (freed before the next batch's features are computed)
        features = self._model.encode(points, point_mask, poses, float_output=False)
        self.encodes += 1
        size = features.numel() * features.element_size()
        self._reserve_for(features.numel() * FLOAT32_BYTES)
        if key is not None and key not in self._cache and self._bytes + size <= self._max_bytes:
            self._cache[key] = (points, features)
            self._bytes += size
        elif key is not None and key not in self._cache:
            self._last = (key, points, features)
        return features

    def prefetch(self, key: int, batch: Any) -> None:
        """Queue the encoding of frame batch ``key`` (a ``CoopBatch`` on a CUDA device) on a
        side stream, into the cache, while this thread goes on with the current batch: the
        device then runs the next batch's encoder in the current batch's gaps (its codec's and
        NMS's host work, the host syncs) instead of after them; ``encode`` takes the features
        for that batch once their stream is done. The same kernels on the same inputs: the same
        features. Nothing happens on the CPU, for a batch the cache holds or has queued, or one
        it could not hold."""
        points = batch.points
        if points.device.type != "cuda" or key in self._cache or key in self._pending:
            return
        if not self.would_hold(batch, batch.batch_size):
            return
        if self._stream is None:
            self._stream = torch.cuda.Stream(points.device)
        stream = self._stream
        stream.wait_stream(torch.cuda.current_stream(points.device))  # the batch's copies
        with torch.cuda.stream(stream):
            features = self._model.encode(
                points, batch.point_mask, batch.poses, float_output=False
            )
            done = torch.cuda.Event()
            done.record(stream)
        for tensor in (points, batch.point_mask, batch.poses):
            tensor.record_stream(stream)
        self.encodes += 1
        self._bytes += features.numel() * features.element_size()
        self._pending[key] = (points, features, done)

    @property
    def map_values(self) -> int:
        """Values of one agent's feature map ``[C, H/stride, W/stride]``."""
        return math.prod(self._model.feature_map_shape)

    def would_hold(self, batch: Any, num_frames: int) -> bool:
        """Whether the cache would hold the features of ``num_frames`` frames, each the size of
        one of ``batch``'s (a ``CoopBatch``: its padded agents' maps, ``map_values`` each, in
        the detector's ``encoded_dtype``)."""
        frame_values = batch.agent_mask.shape[1] * self.map_values
        kept = getattr(self._model, "encoded_dtype", torch.get_default_dtype()).itemsize
        self._reserve_for(frame_values * FLOAT32_BYTES * batch.batch_size)
        return frame_values * kept * num_frames <= self._max_bytes - self._bytes

    def _reserve_for(self, batch_bytes: float) -> None:
        """Take the reserve and this worker's working set out of the limit, once, from the
        first batch's feature bytes as float32 (the unit the reserve and working set are
        counted in: the maps a group computes from the features are float32 whatever the
        dtype the cache keeps them in)."""
        limit = self._max_bytes - self._reserve_batches * batch_bytes
        if self._room is not None:
            room, batches = self._room
            limit = min(limit, room - batches * batch_bytes)
        self._max_bytes = max(0.0, limit)
        self._reserve_batches, self._room = 0.0, None

    @property
    def max_bytes(self) -> float:
        """The most the cached features may take (less the reserve once a batch was seen)."""
        return self._max_bytes

    def shared_ego_detections(
        self, points: torch.Tensor, fusion_key: tuple, compute: Callable[[], Any]
    ) -> Any:
        """The ego-alone detections of the current batch (``compute()``) for fusions keyed
        ``fusion_key`` (``FeatureFusion.ego_alone_key``): computed once per batch and key for
        the whole sweep, for the batch's own scans only. They draw no random numbers and depend
        on nothing else a group sets, so sharing them changes no number; callers do not modify
        them (``repeat_detections`` and the late-payload re-runs copy)."""
        key = None if self.batch_index is None else (self.batch_index, fusion_key)
        hit = self._ego.get(key) if key is not None else None
        if hit is not None and hit[0] is points:
            return hit[1]
        detections = compute()
        if key is not None:
            self._ego[key] = (points, detections)
        return detections

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


#: ``feature_cache_gb: auto``: the share of the device's free memory (CUDA, measured once the
#: detector is loaded) or of the host's available memory (CPU) the cache may fill.
AUTO_CACHE_SHARE = {"cuda": 0.5, "cpu": 0.25}


def feature_cache_bytes(
    value: Any, device: torch.device | str, sharers: int = 1, free: float | None = None
) -> float:
    """Bytes the sweep's ``EncodeCache`` may hold on ``device``: ``value`` GB, or with ``"auto"``
    ``AUTO_CACHE_SHARE`` of the memory free to this process now (``free``, default
    ``free_memory_bytes``), split between the ``sharers`` sweep workers that draw on that
    memory (the CPU workers of one host, or workers given the same GPU). Every frame batch
    whose features fit is then encoded once per sweep instead of once per group; the cache
    changes no number."""
    setting = check_feature_cache(value)
    if setting != "auto":
        return float(setting) * 1e9
    kind = "cuda" if torch.device(device).type == "cuda" else "cpu"
    free = free_memory_bytes(device) if free is None else free
    return AUTO_CACHE_SHARE[kind] * free / max(1, sharers)


def free_memory_bytes(device: torch.device | str) -> float:
    """The memory free to this process on ``device`` now: a CUDA device's free memory and its
    caching allocator's unused reserve, else the host's available memory and the heap glibc
    keeps freed for the process."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # memory this process's caching allocator holds but has not handed out (an earlier
        # sweep's features, freed) is free to it too; the driver counts it as used
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    # likewise the heap glibc keeps freed for this process (v2x.cli.reuse_freed_memory)
    return _available_host_bytes() + _free_heap_bytes()


#: One worker's memory beside its feature cache while it steps a batch, in units of the
#: batch's encoder features per condition stepped at once. Measured on an H200 (standard
#: detector, 5 agents, DeepJSCC's group, batches of 32 frames x 7 SNRs; two workers on the GPU,
#: one out of memory): the other worker held 88.8 GiB (95.3 GB) with its 256 frames' features
#: cached (32.2 GB), so ≈ 62 GB of working set and allocator reserve, 2.2x the 28.2 GB of 7
#: batches' features (every condition's decoded maps, then their warp and fusion); 2.5 leaves
#: a margin.
WORKING_SET_BATCHES_PER_CONDITION = 2.5

#: The same at a reduced precision throughout (``eval.precision`` fp16 / bf16 and DeepJSCC's
#: ``precision`` too), for the codecs measured so (``REDUCED_WORKING_SET_CODECS``). Measured on
#: an H100 (2026-12-07, ``docs/results/h100_2026-12-07j/``; batches of 32 frames x 7 SNRs, no
#: cache): the peak allocated beside one batch's features 1.17 float32 batches per condition
#: (analog's float32 maps), DeepJSCC's group 0.72, every group of the issue-16 sweep one after
#: another 1.23; fp32 DeepJSCC 1.21 (its decoder's one 21 GiB block, which ran out of memory
#: beside a cache sized with 1.6 at fp32: the float32 factor stays). 1.6 leaves a margin: 512
#: frames' float16 features (32.2 GB) beside them on an 80 GB GPU, peak 64.9–66.5 GB.
REDUCED_WORKING_SET_BATCHES_PER_CONDITION = 1.6
REDUCED_WORKING_SET_CODECS = frozenset({"identity", "analog", "deepjscc"})


def working_set_batches(plan: Any, device: torch.device | str) -> float:
    """A worker's own working set per condition for ``plan`` (a ``SweepPlan``) on ``device``,
    in its frame batches' float32 features: ``REDUCED_WORKING_SET_BATCHES_PER_CONDITION`` on a
    CUDA device (where it was measured: its fusion kernel, not the torch path's warped copies)
    where the detector and every codec with a ``precision`` of its own run at a reduced
    precision and every codec is one measured so, else ``WORKING_SET_BATCHES_PER_CONDITION``."""
    from v2x.sweep_parts import codec_class

    if plan.precision == "fp32" or torch.device(device).type != "cuda":
        return WORKING_SET_BATCHES_PER_CONDITION
    for group in plan.groups:
        if group.stage in ("ego", "boxes"):
            continue  # (ego-only and late fusion: measured within it, no maps sent)
        if group.stage != "features" or group.codec not in REDUCED_WORKING_SET_CODECS:
            return WORKING_SET_BATCHES_PER_CONDITION
        own = inspect.signature(codec_class(group.codec)).parameters.get("precision")
        if own is not None and group.codec_kwargs.get("precision", own.default) == "fp32":
            return WORKING_SET_BATCHES_PER_CONDITION
    return REDUCED_WORKING_SET_BATCHES_PER_CONDITION


def auto_cache_reserve(value: Any, sharers: int, conditions: int) -> float:
    """The ``reserve_batches`` of an ``EncodeCache`` sized by ``feature_cache_bytes``: with
    ``auto`` and ``sharers`` workers on one memory, each worker's share leaves room for the
    others' working sets (``WORKING_SET_BATCHES_PER_CONDITION`` x ``conditions`` batches'
    features each, split between the ``sharers``): the free memory ``auto`` leaves uncached
    holds one working set, the others come out of the cache. One worker, or a fixed number of
    GB (the user's choice): 0."""
    if check_feature_cache(value) != "auto" or sharers < 2:
        return 0.0
    return (sharers - 1) / sharers * WORKING_SET_BATCHES_PER_CONDITION * conditions


def auto_cache_room(
    value: Any,
    free: float,
    sharers: int,
    conditions: int,
    per_condition: float = WORKING_SET_BATCHES_PER_CONDITION,
) -> tuple[float, float] | None:
    """The ``room`` of an ``EncodeCache`` sized by ``feature_cache_bytes``: with ``auto``, this
    worker's part of the ``free`` memory (bytes, ``free_memory_bytes``, split between the
    ``sharers``) and its own working set (``per_condition``, ``working_set_batches``, x
    ``conditions`` batches' float32 features), so that its cache never takes what its own
    batches need (one worker on an 80 GB GPU at batches of 32 ran out of memory with half the
    free memory cached); a fixed number of GB (the user's choice): ``None``."""
    if check_feature_cache(value) != "auto":
        return None
    return free / max(1, sharers), per_condition * conditions


def memory_sharers(devices: Sequence[torch.device | str]) -> dict[str, int]:
    """For each device of a sweep's workers, how many workers draw on its memory: every CPU
    worker on the host's, each GPU's workers on that GPU's (keyed by ``str(device)``)."""
    names = [str(torch.device(d)) for d in devices]
    cpu = sum(torch.device(n).type == "cpu" for n in names)
    return {n: cpu if torch.device(n).type == "cpu" else names.count(n) for n in names}


def _available_host_bytes() -> float:
    """The host's available memory (``MemAvailable`` on Linux, else its free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (all ``size_t``)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def _free_heap_bytes() -> float:
    """Bytes freed in this process's malloc heap and kept there for reuse (glibc's
    ``mallinfo2().fordblks``, every arena): this process can allocate them again, but the host's
    available memory leaves them out. 0 where there is no glibc 2.33+."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return 0.0
    mallinfo2.restype = _MallInfo2
    return float(mallinfo2().fordblks)


def share_source_coding(codec: Any, device: torch.device | str = "cpu") -> dict:
    """Let every cell of a group reuse the codec's SNR-independent source coding of a map.

    A codec that declares ``memoises_source_coding`` (the digital chain: quantise + entropy
    code, the costliest step of a sweep on the CPU) memoises its source coding per map content
    within one ``encode`` call; cells run one call each, so the sweep sets one shared memo as the
    codec's ``source_memo``, which the caller clears per frame batch. The memo is keyed by the
    map's content and returns what the codec would recompute, so no number changes. When the
    group runs on a GPU (``device``) of a host with worker processes (``v2x.sweep_rows.cell_pool``:
    Linux, ≥ 4 cores), the codec also hands the host part of a batch's source coding and
    decoding to them, several maps at once (the same bytes); on a CPU the cores already run
    torch's threads. Any other codec is left as is. Returns the shared memo.
    """
    from v2x.sweep_rows import cell_pool  # (sweep_rows imports this module's users)

    shared: dict = {}
    if isinstance(codec, Codec) and codec.memoises_source_coding:
        codec.source_memo = shared
        on_gpu = torch.device(device).type == "cuda"
        codec.source_executor = cell_pool() if on_gpu else None
    return shared


def reuse_cells(store: ResultsStore, wanted: set[str]) -> int:
    """Copy cells in ``wanted`` that other results files of the store's folder already hold
    (same ``cell_id``: same condition, code, checkpoints, data, config and seed) into the
    store, with their ledger rows; returns how many. Unreadable files are skipped (logged)."""
    if not wanted or not store.directory.is_dir():
        return 0
    found = 0
    for f in results_files([store.directory]):
        if f == store.path or not wanted:
            continue
        try:
            table = read_table(f, RESULTS_SCHEMA)
            hit = wanted & set(table.column("cell_id").to_pylist())
            if not hit:
                continue
            if not ledger_path_of(f).exists():  # its cells would come without their ledger rows
                log.warning(
                    "sweep: not reusing %d cell(s) of %s: it has no ledger file %s beside it; "
                    "they are recomputed", len(hit), f, ledger_path_of(f).name,
                )  # fmt: skip
                continue
            ledger = read_table(ledger_path_of(f), LEDGER_SCHEMA)
        except CorruptResultsError as exc:
            log.warning("sweep: not reusing cells of an unreadable file: %s", exc)
            continue
        value_set = pa.array(sorted(hit), pa.string())
        rows = table.filter(pc.is_in(table.column("cell_id"), value_set=value_set)).to_pylist()
        store.add(rows, ledger.filter(pc.is_in(ledger.column("cell_id"), value_set=value_set)))
        wanted -= hit
        found += len(hit)
        log.info("sweep: reused %d cell(s) of %s", len(hit), f)
    return found


__all__ = [
    "AUTO_CACHE_SHARE",
    "EncodeCache",
    "REDUCED_WORKING_SET_BATCHES_PER_CONDITION",
    "REDUCED_WORKING_SET_CODECS",
    "WORKING_SET_BATCHES_PER_CONDITION",
    "auto_cache_reserve",
    "auto_cache_room",
    "feature_cache_bytes",
    "free_memory_bytes",
    "memory_sharers",
    "reuse_cells",
    "share_source_coding",
    "working_set_batches",
]
