"""A sweep group's scoring (its frame batches matched into the cells' AP accumulators), in a
process of its own on hosts with the cores for it.

Matching a frame batch's detections to the ground truth (``v2x.evaluation.accumulate``:
range filters, rotated IoUs, greedy matching, per-group records) is host work of Python and
small numpy and torch calls: about 50 ms per batch of 16 frames × 7 conditions on an H200's
host, 1.9 s of a 4.2 s ``run_sweep`` (35 cells × 128 frames). On the sweep's scorer thread it
shares this process's GIL with the device's thread, whose kernel launches wait on it, and the
device's thread waits on it again before starting a group while the last group's rows are
unfinished (sampled on an H200 host with py-spy: 24 % of the main thread's time).

``GroupScoring`` holds one group's ``K`` accumulators. With scoring processes
(``scoring_pools()``: Linux, ≥ 4 cores, ``SCORING_PROCESSES``) they live in one of them, the
groups taking turns: each batch's detections and ground truth go there as host arrays
(``v2x.evaluation.ScoredArrays``) and are added in the order they were sent (a pool of one
worker reads its queue in order), so every accumulator gets the very calls it would get here,
and the group's accumulators come back when it is finished, sealed there for the sweep
(``SealedAccumulator``: pickled with their digests, passed on to the AP workers unopened).
Consecutive groups are scored in different processes, side by side (one process for all was
the bottleneck: measured on an H200 host, the device's thread then waited on it as long as on
the scorer thread before). At a sweep's start, before any batch is scored, the same processes build the frame batches'
networks (``v2x.sweep_batches.PreparedBatches``).
The same records, bit for bit (tested). The arrays sent are kept here until then: if the worker
dies (e.g. killed for memory) the group is scored again in this process, with a warning.
"""

from __future__ import annotations

import itertools
import os
import pickle
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from v2x.evaluation import ScoredArrays, accumulate_arrays
from v2x.forked_pools import can_fork_workers, forked_pool
from v2x.perception.average_precision import APAccumulator, EvalConfig

__all__ = [
    "SCORING_PROCESSES",
    "GroupScoring",
    "SealedAccumulator",
    "scoring_pools",
    "warm_scoring_pools",
]

#: Forked scoring processes (``scoring_pools``) on Linux hosts with ≥ 4 cores: one per 4 cores,
#: at most 4 (beside the device's thread and the AP workers, ``v2x.sweep_rows.CELL_PROCESSES``).
#: 0: groups are scored in this process (the caller's thread). The same numbers either way.
SCORING_PROCESSES = min(4, (os.cpu_count() or 1) // 4) if can_fork_workers() else 0

_POOLS: list[ProcessPoolExecutor | None] = []  # one worker each; None: to be forked again
_IDS = itertools.count()  # the groups' keys in the processes
_TURNS = itertools.count()  # which process scores the next group

# in the worker: each open group's accumulators (or the error that stopped its scoring)
_GROUPS: dict[int, list[APAccumulator] | BaseException] = {}


def _one_thread() -> None:
    """Worker setup: torch's CPU ops on one thread (a forked child must not start the
    parent's thread pools; the worker is one of several processes on the host's cores)."""
    import torch

    torch.set_num_threads(1)


def scoring_pools() -> list[ProcessPoolExecutor]:
    """The ``SCORING_PROCESSES`` scoring processes (pools of one worker, forked on first use,
    ``v2x.forked_pools``); empty where the sweep scores in this process."""
    if SCORING_PROCESSES <= 0 or not can_fork_workers():
        return []
    _POOLS.extend([None] * (SCORING_PROCESSES - len(_POOLS)))
    for i, pool in enumerate(_POOLS):
        if pool is None:
            _POOLS[i] = forked_pool(1, _one_thread)
    return list(_POOLS)


def warm_scoring_pools() -> None:
    """Start the scoring processes (and their imports) now, e.g. while frames load."""
    for pool in scoring_pools():
        pool.submit(int)


def _open(group_id: int, config: EvalConfig, k: int) -> None:
    _GROUPS[group_id] = [APAccumulator(config) for _ in range(k)]


def _add(group_id: int, scored: ScoredArrays) -> None:
    accs = _GROUPS[group_id]
    if isinstance(accs, BaseException):  # an earlier batch failed: the group is not scored
        return
    try:
        accumulate_arrays(scored, accs)
    except BaseException as err:
        _GROUPS[group_id] = err
        raise


def _close(group_id: int) -> list[APAccumulator]:
    accs = _GROUPS.pop(group_id)
    if isinstance(accs, BaseException):
        raise accs
    return accs


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


def _close_sealed(group_id: int) -> list[SealedAccumulator]:
    """The group's accumulators sealed; cells whose records are identical (equal digests, e.g.
    identity's SNRs) share one sealed object, pickled and sent back once."""
    sealed: dict[str, SealedAccumulator] = {}
    out = []
    for acc in _close(group_id):
        digest = acc.state_digest()
        if digest not in sealed:
            blob = pickle.dumps(acc, pickle.HIGHEST_PROTOCOL)
            sealed[digest] = SealedAccumulator(digest, acc.thresholds, blob)
        out.append(sealed[digest])
    return out


class GroupScoring:
    """The AP accumulators of one group's ``K`` cells, filled batch by batch (``add``, in
    batch order, from one thread at a time) in the scoring process or, without one, here.

    Args:
        config: every cell's evaluation settings.
        k: the group's cells (conditions).
        pool: the scoring process (a pool of one worker); default: the next of
            ``scoring_pools()`` in turn, or this process where there are none; ``None``: here.
    """

    def __init__(
        self, config: EvalConfig, k: int, pool: ProcessPoolExecutor | None | str = "default"
    ) -> None:
        self.config, self.k = config, k
        if pool == "default":
            pools = scoring_pools()
            pool = pools[next(_TURNS) % len(pools)] if pools else None
        self._pool = pool
        self._sent: list[ScoredArrays] = []  # kept until the accumulators are back
        self._added: list[Future] = []
        self._lock = threading.Lock()
        self._accs: list[APAccumulator] | None = None  # scored here
        self._done: list | None = None  # what the group's closing returned
        if self._pool is None:
            self._accs = [APAccumulator(config) for _ in range(k)]
        else:
            self._id = next(_IDS)
            try:
                self._pool.submit(_open, self._id, config, k)
            except BrokenProcessPool:
                self._here()

    def add(self, scored: ScoredArrays) -> None:
        """Add one frame batch's ``K·B`` scored frames (``v2x.evaluation.scored_arrays``)."""
        with self._lock:
            if self._accs is not None:
                accumulate_arrays(scored, self._accs)
                return
            self._sent.append(scored)
            try:
                self._added.append(self._pool.submit(_add, self._id, scored))
            except BrokenProcessPool:
                self._here()

    def accumulators(self) -> list[APAccumulator]:
        """The ``K`` accumulators with every batch added (waits for the scoring process).

        Raises:
            what scoring a batch raised (e.g. ``ValueError`` for detections that are not
            finite), once every batch before it was added.
        """
        done = self._closed(_close)
        if any(isinstance(a, SealedAccumulator) for a in done):  # sealed first: opened once
            with self._lock:
                self._done = done = [
                    a.opened() if isinstance(a, SealedAccumulator) else a for a in done
                ]
        return done

    def sealed_accumulators(self) -> list[APAccumulator | SealedAccumulator]:
        """``accumulators`` as a group's rows take them: from the scoring process sealed there
        (``SealedAccumulator``), without one the accumulators themselves. Raises as
        ``accumulators`` does. The first of the two methods asked closes the group; after
        ``sealed_accumulators``, ``accumulators`` opens the sealed ones (once)."""
        return self._closed(_close_sealed)

    def _closed(self, close: Callable[[int], list]) -> list:
        with self._lock:
            if self._done is None and self._accs is not None:
                self._done = self._accs
            if self._done is None:
                try:
                    # closed first (after every batch, in queue order), so that a batch's error
                    # raised below leaves no group behind in the process
                    closed = self._pool.submit(close, self._id)
                    for added in self._added:
                        added.result()
                    self._done = closed.result()
                except BrokenProcessPool:
                    self._here()
                    self._done = self._accs
                self._sent, self._added = [], []
            return self._done

    def _here(self) -> None:
        """The scoring process stopped: score every batch sent so far here instead (the next
        group that would use that process gets a new one)."""
        if self._pool in _POOLS:
            _POOLS[_POOLS.index(self._pool)] = None
        warnings.warn(
            "sweep: the scoring process stopped; scoring this group's frame batches in this "
            "process",
            RuntimeWarning,
            stacklevel=3,
        )
        self._accs = [APAccumulator(self.config) for _ in range(self.k)]
        for scored in self._sent:
            accumulate_arrays(scored, self._accs)
        self._sent, self._added = [], []
