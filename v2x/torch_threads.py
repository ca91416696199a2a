"""torch's CPU intra-op threads for a while, and how many a GPU sweep's own process keeps.

On a GPU host a sweep's process shares the cores with its worker processes: the AP workers
(``v2x.sweep_rows.CELL_PROCESSES``: they read the frames, then compute APs and intervals) and
the scoring processes (``v2x.sweep_scoring.SCORING_PROCESSES``). torch's CPU operators in the
sweep's process (collating a batch, its ground truth, loading and folding the detector) then
start a team of one thread per core, and each operator waits until every thread of the team
has had a core. Measured on an H200 host (16 cores, 8 AP workers, 4 scoring processes): the
detector's fold 0.16–0.29 s on 16 threads against 0.04–0.06 s on one; a warm ``run_sweep``
(bench_sweep's issue-16 setting) 1,681–1,811 frame-conditions/s with the process's threads
limited to the 4 cores the workers leave, against 1,427–1,676 on 16, in the same call
(``docs/results/h200_2026-12-03g/``). The number of threads changes no value: the project's
CPU operators compute each element alike on any number of threads (tested: a sweep whose
process runs on one thread gives the results and ledger of one on torch's own count).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["sweep_process_threads", "torch_threads"]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block, the previous count restored after
    it (also when it raises). ``None``, or the count already set: nothing changes."""
    previous = torch.get_num_threads()
    change = threads is not None and int(threads) != previous
    if change:
        if int(threads) < 1:
            raise ValueError(f"torch threads: expected a count >= 1, got {threads!r}")
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(previous)


def sweep_process_threads(device: torch.device, cores: int | None = None) -> int | None:
    """The intra-op threads a sweep's own process keeps while it runs its groups on ``device``:
    on a GPU, the cores its worker processes leave (``cores`` − AP workers − scoring processes,
    at least 1; ``cores``: default ``os.cpu_count()``); ``None`` (torch's own count) on the
    CPU, where the detector's work is this process's, or where the sweep has no worker
    processes."""
    from v2x.sweep_rows import CELL_PROCESSES
    from v2x.sweep_scoring import SCORING_PROCESSES

    workers = CELL_PROCESSES + SCORING_PROCESSES
    if device.type == "cpu" or workers <= 0:
        return None
    return max(1, (cores or os.cpu_count() or 1) - workers)
