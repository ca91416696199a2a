"""The sweep's forked worker processes on the host: the AP workers (``v2x.sweep_rows.cell_pool``)
and the scoring processes (``v2x.sweep_scoring.scoring_pools``).

Forked, not spawned: a spawned worker would re-run the user's ``__main__`` script. A pool lives
as long as the process that made it and is shut down when that process exits, before
multiprocessing joins its children (a sweep's device worker, ``v2x.sweep_workers``, is itself a
pool's child: without that its exit waited on these workers forever). Its workers ignore Ctrl-C
and SIGTERM: those are the sweep's to handle (it saves finished groups, whose rows may still be
computing there), and the workers end with it. Workers never touch CUDA (a process forked after
CUDA started cannot use it); they run numpy, and torch on the CPU with one thread.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

__all__ = ["can_fork_workers", "forked_pool"]


def can_fork_workers() -> bool:
    """Whether this process may make worker processes: Linux (fork), a host with ≥ 4 cores,
    and not itself a daemonic pool worker (which may have no children)."""
    cores = os.cpu_count() or 1
    return sys.platform == "linux" and cores >= 4 and not multiprocessing.current_process().daemon


def _worker_start(setup: Callable[[], None] | None) -> None:
    """Worker initializer: stop signals ignored, the objects inherited from the parent at the
    fork frozen (``gc.freeze``: the cyclic collector's full passes then scan only the worker's
    own objects, not the sweep process's whole heap again in every worker), then ``setup``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    gc.freeze()
    if setup is not None:
        setup()


def forked_pool(workers: int, setup: Callable[[], None] | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` forked processes that end with this one (module docstring);
    ``setup()`` runs first in each worker."""
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_start, initargs=(setup,)
    )
    # at this process's exit, before its children are joined (a multiprocessing child's exit
    # runs no threading atexit hook, which shuts pools down in a main process) and before the
    # queues' own exit finalizers (priority 10) stop the feeder thread that carries the
    # shutdown's sentinels to the workers
    multiprocessing.util.Finalize(
        None, pool.shutdown, kwargs={"cancel_futures": True}, exitpriority=100
    )
    return pool
