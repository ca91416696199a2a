"""A sweep group's scoring (its frame batches matched into the cells' AP accumulators), in
processes of their own on hosts with the cores for it.

Matching a frame batch's detections to the ground truth (``v2x.evaluation.accumulate``:
range filters, rotated IoUs, greedy matching, per-group records) is host work of Python and
small numpy and torch calls: about 50 ms per batch of 16 frames × 7 conditions on an H200's
host, 1.9 s of a 4.2 s ``run_sweep`` (35 cells × 128 frames). On the sweep's scorer thread it
shares this process's GIL with the device's thread, whose kernel launches wait on it, and the
device's thread waits on it again before starting a group while the last group's rows are
unfinished (sampled on an H200 host with py-spy: 24 % of the main thread's time).

``GroupScoring`` holds one group's ``K`` accumulators. With scoring processes
(``scoring_pools()``: Linux, ≥ 4 cores, ``SCORING_PROCESSES``) they are filled there: each
batch's detections and ground truth go to one of them as host arrays
(``v2x.evaluation.ScoredArrays``) posted over the process's channel (``v2x.worker_channel``:
written by the scorer thread itself, no thread of this process woken per batch), the group's
batches to the processes in turn, each batch scored into accumulators of its own; when the
group ends its first process joins them in batch order (``APAccumulator.extend``), so every
cell gets the records that adding every batch here, in order, gives, and the group's
accumulators come back sealed there for the sweep
(``SealedAccumulator``: pickled with their digests, passed on to the AP workers unopened).
One process per group fell behind the device (measured on an H200 host: a group's rows waited
0.21–0.68 s for its scoring after its last batch); one process for all groups was the
bottleneck before that. At a sweep's start, before any batch is scored, the same processes
build the frame batches' networks (``v2x.sweep_batches.PreparedBatches``). The same records,
bit for bit (tested). The arrays sent are kept here until then: if a worker dies (e.g. killed
for memory) the group is scored again in this process, with a warning.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from v2x.evaluation import ScoredArrays, accumulate_arrays
from v2x.forked_pools import can_fork_workers
from v2x.perception.ap_config import EvalConfig
from v2x.perception.average_precision import APAccumulator
from v2x.worker_channel import ForkedWorker, forked_worker

__all__ = [
    "SCORING_PROCESSES",
    "GroupScoring",
    "SealedAccumulator",
    "joined_in_batch_order",
    "scoring_pools",
    "warm_scoring_pools",
]

#: Forked scoring processes (``scoring_pools``) on Linux hosts with ≥ 4 cores: one per 4 cores,
#: at most 4 (beside the device's thread and the AP workers, ``v2x.sweep_rows.CELL_PROCESSES``).
#: 0: groups are scored in this process (the caller's thread). The same numbers either way.
SCORING_PROCESSES = min(4, (os.cpu_count() or 1) // 4) if can_fork_workers() else 0

_POOLS: list[ForkedWorker | None] = []  # None: to be forked again
_IDS = itertools.count()  # the groups' keys in the processes
_TURNS = itertools.count()  # which process is the next group's first (the one joining it)


@dataclass
class _Part:
    """One frame batch's ``K`` partial accumulators in a scoring process: ``replica_of[k]``
    is the cell whose records cell ``k`` holds as a replica (itself when scored on its own,
    ``accumulate_arrays``). Pickled with the scored cells only (identity's, late's and
    ego-only's ``K`` cells are one: a 512-frame group's join unpickled 7× the accumulators)."""

    accs: list[APAccumulator]
    replica_of: list[int]

    def __getstate__(self) -> dict:
        own = sorted(set(self.replica_of))
        return {"own": own, "accs": [self.accs[i] for i in own], "replica_of": self.replica_of}

    def __setstate__(self, state: dict) -> None:
        by_cell = dict(zip(state["own"], state["accs"], strict=True))
        self.replica_of = state["replica_of"]
        self.accs = [by_cell[i] for i in self.replica_of]


@dataclass
class _Failed:
    """What stopped a group's scoring in a process: the error of its first batch there that
    could not be scored (``batch``: that batch's number in the group)."""

    batch: int
    error: BaseException


# in the worker: each open group's partial accumulators by frame batch (or what stopped its
# scoring), and its settings
_GROUPS: dict[int, dict[int, _Part] | _Failed] = {}
_SETTINGS: dict[int, tuple[EvalConfig, int]] = {}


def _one_thread() -> None:
    """Worker setup: torch's CPU ops on one thread (a forked child must not start the
    parent's thread pools; the worker is one of several processes on the host's cores)."""
    import torch

    torch.set_num_threads(1)


def scoring_pools() -> list[ForkedWorker]:
    """The ``SCORING_PROCESSES`` scoring processes (forked on first use, each with its pool
    and its channel, ``v2x.worker_channel``); empty where the sweep scores in this process."""
    if SCORING_PROCESSES <= 0 or not can_fork_workers():
        return []
    _POOLS.extend([None] * (SCORING_PROCESSES - len(_POOLS)))
    for i, pool in enumerate(_POOLS):
        if pool is None:
            _POOLS[i] = forked_worker(_one_thread)
    return list(_POOLS)


def warm_scoring_pools() -> None:
    """Start the scoring processes (and their imports) now, e.g. while frames load."""
    scoring_pools()


def _open(group_id: int, config: EvalConfig, k: int) -> None:
    _GROUPS[group_id], _SETTINGS[group_id] = {}, (config, k)


def _add(group_id: int, batch: int, scored: ScoredArrays) -> None:
    """Score frame batch number ``batch`` into accumulators of its own (joined in batch order
    when the group closes, ``APAccumulator.extend``)."""
    parts = _GROUPS[group_id]
    if isinstance(parts, _Failed):  # an earlier batch failed: the group is not scored
        return
    config, k = _SETTINGS[group_id]
    accs = [APAccumulator(config) for _ in range(k)]
    try:
        replica_of = accumulate_arrays(scored, accs)
    except BaseException as err:  # (posted: raised where the group closes)
        _GROUPS[group_id] = _Failed(batch, err)
        return
    parts[batch] = _Part(accs, replica_of)


def _popped(group_id: int) -> dict[int, _Part] | _Failed:
    """The group's partial accumulators by batch, or what stopped its scoring, taken out of
    this worker."""
    _SETTINGS.pop(group_id, None)
    return _GROUPS.pop(group_id)


def _take(group_id: int) -> dict[int, bytes] | _Failed:
    """The group's partial accumulators of this worker's batches, pickled, for the process
    that joins them (``_join``): they pass through the sweep's process as bytes. Or what
    stopped the group's scoring here."""
    parts = _popped(group_id)
    if isinstance(parts, _Failed):
        return parts
    return {b: pickle.dumps(accs, pickle.HIGHEST_PROTOCOL) for b, accs in parts.items()}


def _discard(group_id: int) -> None:
    _GROUPS.pop(group_id, None)
    _SETTINGS.pop(group_id, None)


def _join(group_id: int, taken: dict[int, bytes]) -> list[APAccumulator]:
    """The group's ``K`` accumulators: this worker's partial ones and those ``taken`` from the
    others, joined in batch order (the records scoring every batch in one accumulator gives)."""
    config, _ = _SETTINGS[group_id]
    parts = _popped(group_id)
    if isinstance(parts, _Failed):
        raise parts.error
    parts.update({b: pickle.loads(blob) for b, blob in taken.items()})
    # (a replica's part is its cell's accumulator: the same records)
    return joined_in_batch_order(config, [parts[b].accs for b in sorted(parts)])


@dataclass(frozen=True)
class SealedAccumulator:
    """An ``APAccumulator`` pickled in the scoring process that filled it, with what a
    group's rows read before computing it (``v2x.sweep_rows``: its state digest, which cells
    share one computation, and its IoU thresholds). It goes on to an AP worker as bytes: this
    process never rebuilds its records (thousands of small arrays per cell, unpickled and
    pickled again with this process's GIL held, where the device's thread needs it)."""

    digest: str
    thresholds: np.ndarray
    blob: bytes

    def state_digest(self) -> str:
        return self.digest

    def opened(self) -> APAccumulator:
        """The accumulator itself (the same records)."""
        return pickle.loads(self.blob)


def joined_in_batch_order(
    config: EvalConfig, parts: Sequence[Sequence[APAccumulator | SealedAccumulator]]
) -> list[APAccumulator]:
    """The ``K`` cells' accumulators of consecutive runs over frame batches (``parts[i][k]``:
    cell ``k``'s over the ``i``-th run's batches, sealed or not) joined in that order
    (``APAccumulator.extend``): the records scoring every batch in one accumulator gives."""
    opened: dict[int, APAccumulator] = {}  # a sealed object shared by cells: opened once

    def accumulator(acc: APAccumulator | SealedAccumulator) -> APAccumulator:
        if not isinstance(acc, SealedAccumulator):
            return acc
        if id(acc) not in opened:
            opened[id(acc)] = acc.opened()
        return opened[id(acc)]

    joined = [APAccumulator(config) for _ in parts[0]]
    for part in parts:
        for acc, one in zip(joined, part, strict=True):
            acc.extend(accumulator(one))
    return joined


def _sealed(accs: list[APAccumulator]) -> list[SealedAccumulator]:
    """The group's accumulators sealed; cells whose records are identical (equal digests, e.g.
    identity's SNRs) share one sealed object, pickled and sent back once."""
    sealed: dict[str, SealedAccumulator] = {}
    out = []
    for acc in accs:
        digest = acc.state_digest()
        if digest not in sealed:
            blob = pickle.dumps(acc, pickle.HIGHEST_PROTOCOL)
            sealed[digest] = SealedAccumulator(digest, acc.thresholds, blob)
        out.append(sealed[digest])
    return out


def _join_sealed(group_id: int, taken: dict[int, bytes]) -> list[SealedAccumulator]:
    return _sealed(_join(group_id, taken))


class GroupScoring:
    """The AP accumulators of one group's ``K`` cells, filled batch by batch (``add``, in
    batch order, from one thread at a time) in the scoring processes or, without them, here.

    With several processes the group's frame batches go to them in turn (batch ``i`` to
    ``pools[i % P]``), each scored into accumulators of its own; when the group closes they
    are joined in batch order in the first process (``APAccumulator.extend``: the records
    that scoring every batch into one accumulator gives, tested). A group's scoring then ends
    soon after its last batch, where one process per group fell behind the device (measured
    on an H200 host: the second group's rows waited 0.21–0.68 s for it after its last batch).

    Args:
        config: every cell's evaluation settings.
        k: the group's cells (conditions).
        pool: the scoring processes (pools of one worker; one pool or a list); default: all of
            ``scoring_pools()``, starting with the next in turn, or this process where there
            are none; ``None``: here.
    """

    def __init__(
        self,
        config: EvalConfig,
        k: int,
        pool: ForkedWorker | Sequence[ForkedWorker] | None | str = "default",
    ) -> None:
        self.config, self.k = config, k
        if isinstance(pool, str):  # "default"
            pools = scoring_pools()
            turn = next(_TURNS) % len(pools) if pools else 0
            pools = pools[turn:] + pools[:turn]
        else:
            pools = [] if pool is None else [pool] if isinstance(pool, ForkedWorker) else list(pool)
        self._pools = pools
        self._sent: list[ScoredArrays] = []  # kept until the accumulators are back
        self._lock = threading.Lock()
        self._accs: list[APAccumulator] | None = None  # scored here
        self._done: list | None = None  # what the group's closing returned
        if not self._pools:
            self._accs = [APAccumulator(config) for _ in range(k)]
        else:
            self._id = next(_IDS)
            try:
                for one in self._pools:
                    one.post(_open, self._id, config, k)
            except BrokenProcessPool:
                self._here()

    def add(self, scored: ScoredArrays) -> None:
        """Add one frame batch's ``K·B`` scored frames (``v2x.evaluation.scored_arrays``)."""
        with self._lock:
            if self._accs is not None:
                accumulate_arrays(scored, self._accs)
                return
            batch = len(self._sent)
            self._sent.append(scored)
            try:
                one = self._pools[batch % len(self._pools)]
                one.post(_add, self._id, batch, scored)
            except BrokenProcessPool:
                self._here()

    def accumulators(self) -> list[APAccumulator]:
        """The ``K`` accumulators with every batch added (waits for the scoring processes).

        Raises:
            what scoring a batch raised (e.g. ``ValueError`` for detections that are not
            finite), the first such batch's.
        """
        done = self._closed(_join)
        if any(isinstance(a, SealedAccumulator) for a in done):  # sealed first: opened once
            with self._lock:
                self._done = done = [
                    a.opened() if isinstance(a, SealedAccumulator) else a for a in done
                ]
        return done

    def sealed_accumulators(self) -> list[APAccumulator | SealedAccumulator]:
        """``accumulators`` as a group's rows take them: from the scoring processes sealed
        there (``SealedAccumulator``), without them the accumulators themselves. Raises as
        ``accumulators`` does. The first of the two methods asked closes the group; after
        ``sealed_accumulators``, ``accumulators`` opens the sealed ones (once)."""
        return self._closed(_join_sealed)

    def _closed(self, join: Callable[[int, dict[int, bytes]], list]) -> list:
        with self._lock:
            if self._done is None and self._accs is not None:
                self._done = self._accs
            if self._done is None:
                first, others = self._pools[0], self._pools[1:]
                try:
                    # each process's partial accumulators leave it (also after an error: no
                    # group is left behind there), then the first process joins them
                    taken = [one.call(_take, self._id) for one in others]
                    failed = [t for t in taken if isinstance(t, _Failed)]
                    if failed:  # the first failed batch's error (the first process's too)
                        failed.append(first.call(_take, self._id))
                        raise min(
                            (f for f in failed if isinstance(f, _Failed)), key=lambda f: f.batch
                        ).error
                    parts: dict[int, bytes] = {}
                    for one in taken:
                        parts.update(one)
                    self._done = first.call(join, self._id, parts)
                except BrokenProcessPool:
                    self._here()
                    self._done = self._accs
                self._sent = []
            return self._done

    def _here(self) -> None:
        """A scoring process stopped: score every batch sent so far here instead (the next
        group that would use that process gets a new one)."""
        for one in self._pools:
            if one.broken:
                if one in _POOLS:
                    _POOLS[_POOLS.index(one)] = None
                one.shutdown()
            else:
                with contextlib.suppress(BrokenProcessPool):
                    one.post(_discard, self._id)  # the group's state there, dropped
        warnings.warn(
            "sweep: the scoring process stopped; scoring this group's frame batches in this "
            "process",
            RuntimeWarning,
            stacklevel=3,
        )
        self._accs = [APAccumulator(self.config) for _ in range(self.k)]
        for scored in self._sent:
            accumulate_arrays(scored, self._accs)
        self._sent = []
