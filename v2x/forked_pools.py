"""The sweep's forked worker processes on the host: the AP workers (``v2x.sweep_rows.cell_pool``)
and the scoring processes (``v2x.sweep_scoring.scoring_pools``).

Forked, not spawned: a spawned worker would re-run the user's ``__main__`` script. A pool lives
as long as the process that made it and is shut down when that process exits, before
multiprocessing joins its children (a sweep's device worker, ``v2x.sweep_workers``, is itself a
pool's child: without that its exit waited on these workers forever). Its workers ignore Ctrl-C
and SIGTERM: those are the sweep's to handle (it saves finished groups, whose rows may still be
computing there), and the workers end with it — also when it is killed (``exit_with_parent``:
a worker forked from a CUDA process inherits its open GPU device files, so an orphaned worker
kept the dead sweep's GPU memory allocated for as long as it lived, which was forever: it waits
on a queue whose writing end it holds itself). Workers never touch CUDA (a process forked after
CUDA started cannot use it); they run numpy, and torch on the CPU with one thread.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.util
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

__all__ = ["can_fork_workers", "exit_with_parent", "forked_pool"]


def can_fork_workers() -> bool:
    """Whether this process may make worker processes: Linux (fork), a host with ≥ 4 cores,
    and not itself a daemonic pool worker (which may have no children)."""
    cores = os.cpu_count() or 1
    return sys.platform == "linux" and cores >= 4 and not multiprocessing.current_process().daemon


def _wait_for_exit(pid: int) -> None:
    """Return once process ``pid`` has ended: blocked on its pidfd (Linux ≥ 5.3) where there is
    one, else by checking every 0.5 s whether this process's parent is still ``pid``."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (older kernel, other OS) or already gone
        fd = None
    if fd is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll(None):
            pass
        os.close(fd)
        return
    while os.getppid() == pid:
        threading.Event().wait(0.5)


def exit_with_parent() -> None:
    """End this worker process (``os._exit``) as soon as the process that made it ends, however
    it ends (SIGKILL included), from a daemon thread that waits for it (``_wait_for_exit``).
    Without it a killed sweep's workers lived on as orphans holding the GPU memory of their
    dead parent (module docstring)."""
    parent = os.getppid()

    def watch() -> None:
        _wait_for_exit(parent)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_start(setup: Callable[[], None] | None) -> None:
    """Worker initializer: ended with its parent (``exit_with_parent``), stop signals ignored,
    the objects inherited from the parent at the fork frozen (``gc.freeze``: the cyclic
    collector's full passes then scan only the worker's own objects, not the sweep process's
    whole heap again in every worker), then ``setup``."""
    exit_with_parent()
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
