"""A sweep group's scoring (its frame batches matched into the cells' AP accumulators), in a
process of its own on hosts with the cores for it.

Matching a frame batch's detections to the ground truth (``v2x.evaluation.accumulate``:
range filters, rotated IoUs, greedy matching, per-group records) is host work of Python and
small numpy and torch calls: about 50 ms per batch of 16 frames × 7 conditions on an H200's
host, 1.9 s of a 4.4 s ``run_sweep`` (35 cells × 128 frames). On the sweep's scorer thread it
shares this process's GIL with the device's thread, whose kernel launches wait on it, and the
device's thread waits on it again before starting a group while the last group's rows are
unfinished (sampled on an H200 host with py-spy: 24 % of the main thread's time).

``GroupScoring`` holds one group's ``K`` accumulators. With ``scoring_pool()`` (Linux, ≥ 4
cores: ``SCORING_PROCESS``) they live in one forked worker process: each batch's detections
and ground truth go there as host arrays (``v2x.evaluation.ScoredArrays``) and are added in the
order they were sent (one worker reads the pool's queue in order), so every accumulator gets
the very calls it would get here, and the group's accumulators come back when it is finished.
The same records, bit for bit (tested). The arrays sent are kept here until then: if the worker
dies (e.g. killed for memory) the group is scored again in this process, with a warning.
"""

from __future__ import annotations

import itertools
import threading
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from v2x.evaluation import ScoredArrays, accumulate_arrays
from v2x.forked_pools import can_fork_workers, forked_pool
from v2x.perception.average_precision import APAccumulator, EvalConfig

__all__ = ["SCORING_PROCESS", "GroupScoring", "scoring_pool", "warm_scoring_pool"]

#: Score in a forked worker process (``scoring_pool``): on Linux hosts with ≥ 4 cores, where a
#: core is free for it beside the device's thread and the AP workers. ``False``: in this
#: process (the caller's thread). The same numbers either way.
SCORING_PROCESS = can_fork_workers()

_POOL: list[ProcessPoolExecutor] = []
_IDS = itertools.count()

# in the worker: each open group's accumulators (or the error that stopped its scoring)
_GROUPS: dict[int, list[APAccumulator] | BaseException] = {}


def _one_thread() -> None:
    """Worker setup: torch's CPU ops on one thread (a forked child must not start the
    parent's thread pools; the worker is one of several processes on the host's cores)."""
    import torch

    torch.set_num_threads(1)


def scoring_pool() -> ProcessPoolExecutor | None:
    """The scoring process (one worker, forked on first use; ``v2x.forked_pools``), or
    ``None`` where the sweep scores in this process (``SCORING_PROCESS``)."""
    if not SCORING_PROCESS or not can_fork_workers():
        return None
    if not _POOL:
        _POOL.append(forked_pool(1, _one_thread))
    return _POOL[0]


def warm_scoring_pool() -> None:
    """Start the scoring process (and its imports) now, e.g. while frames load."""
    pool = scoring_pool()
    if pool is not None:
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


class GroupScoring:
    """The AP accumulators of one group's ``K`` cells, filled batch by batch (``add``, in
    batch order, from one thread at a time) in the scoring process or, without one, here.

    Args:
        config: every cell's evaluation settings.
        k: the group's cells (conditions).
        pool: the scoring process (default: ``scoring_pool()``); ``None``: score here.
    """

    def __init__(
        self, config: EvalConfig, k: int, pool: ProcessPoolExecutor | None | str = "default"
    ) -> None:
        self.config, self.k = config, k
        self._pool = scoring_pool() if pool == "default" else pool
        self._sent: list[ScoredArrays] = []  # kept until the accumulators are back
        self._added: list[Future] = []
        self._lock = threading.Lock()
        self._accs: list[APAccumulator] | None = None
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
        with self._lock:
            if self._accs is None:
                try:
                    for added in self._added:
                        added.result()
                    self._accs = self._pool.submit(_close, self._id).result()
                except BrokenProcessPool:
                    self._here()
                self._sent, self._added = [], []
            return self._accs

    def _here(self) -> None:
        """The scoring process stopped: score every batch sent so far here instead."""
        _POOL.clear()
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
