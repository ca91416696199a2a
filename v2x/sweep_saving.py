"""When a sweep writes its finished groups to the results store (``GroupSaver``).

Every write rewrites the whole results and ledger files (``ResultsStore.add``); on the device's
thread it delays the next group. So finished groups are held and written together: when the
device has computed every group, when the sweep stops short (an error, Ctrl-C, a lack of
memory: what was computed is written before the error is raised), and, while the device is
still computing, by a timer thread once a held group has waited ``SAVE_EVERY_S`` seconds, which
bounds what a process killed outright (``SIGKILL``, the kernel's out-of-memory killer) loses.
A sweep whose groups all finish within that time writes its files once. The files' content is
the same whichever groups are written together (``ResultsStore`` keeps the grid's order).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa

from v2x.ledger import LEDGER_SCHEMA
from v2x.results import ResultsStore

log = logging.getLogger("v2x.sweep")

#: The longest a finished group waits to be written while the device computes others (s).
SAVE_EVERY_S = 10.0


class GroupSaver:
    """Finished groups' results rows and ledgers, held and written to the store together.

    Args:
        open_store: opens the job's store on the first write (a sweep that reads its frames
            while the device starts names its file by their hash, known once all are read).
        store: the store, when already open.
        every_s: the longest a held group waits to be written (default ``SAVE_EVERY_S`` as it
            is when the saver is made; 0: each group is written as it is held, on the
            caller's thread).
    """

    def __init__(
        self,
        open_store: Callable[[], ResultsStore],
        store: ResultsStore | None = None,
        every_s: float | None = None,
    ) -> None:
        self._open_store = open_store
        self.store = store
        self.saved = 0  # cells written
        self._every_s = SAVE_EVERY_S if every_s is None else every_s
        self._held: list[tuple[Sequence[Mapping[str, object]], pa.Table | None]] = []
        self._held_since: float | None = None  # when the oldest held group was held
        self._lock = threading.Condition()
        self._timer: threading.Thread | None = None
        self._closed = False
        self._failed: BaseException | None = None  # a write that failed (not tried again)

    def hold(self, rows: Sequence[Mapping[str, object]], ledger: pa.Table | None) -> None:
        """Hold a finished group's ``rows`` and ``ledger`` until the next write."""
        with self._lock:
            self._raise_failed()
            self._held.append((rows, ledger))
            if self._held_since is None:
                self._held_since = time.monotonic()
            if self._every_s <= 0:
                self._write()
                return
            if self._timer is None and not self._closed:
                self._timer = threading.Thread(target=self._on_time, name="v2x-save", daemon=True)
                self._timer.start()
            self._lock.notify_all()

    def save(self) -> None:
        """Write every held group now, in one ``ResultsStore.add``."""
        with self._lock:
            self._raise_failed()
            self._write()

    def save_after_error(self) -> None:
        """``save`` while an error propagates: the groups computed before it are written,
        unless writing is what failed (then it is not tried again); a write that fails here
        is logged, not raised, so that the error that stopped the sweep is the one reported."""
        with self._lock:
            if self._failed is not None or not self._held:
                return
            try:
                self._write()
            except Exception:  # noqa: BLE001 - the sweep's own error is raised after this
                log.exception("sweep: the groups computed before the error could not be saved")

    def close(self) -> None:
        """Stop the timer thread (held groups stay held: ``save`` first)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            timer = self._timer
        if timer is not None:
            timer.join()

    def _on_time(self) -> None:
        """The timer thread: writes the held groups once the oldest has waited ``every_s``."""
        with self._lock:
            while not self._closed and self._failed is None:
                if self._held_since is None:
                    self._lock.wait()
                    continue
                wait = self._held_since + self._every_s - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                try:
                    self._write()
                except BaseException:  # noqa: BLE001 - raised on the sweep's thread (_failed)
                    return

    def _write(self) -> None:
        """Write every held group (the lock held)."""
        if not self._held:
            return
        try:
            if self.store is None:
                self.store = self._open_store()
            rows = [row for group_rows, _ in self._held for row in group_rows]
            ledgers = [t.cast(LEDGER_SCHEMA) for _, t in self._held if t is not None]
            self.store.add(rows, pa.concat_tables(ledgers) if ledgers else None)
        except BaseException as exc:
            self._failed = exc
            raise
        self.saved += len(rows)
        self._held.clear()
        self._held_since = None

    def _raise_failed(self) -> None:
        """Raise the error of a write that failed on the timer thread on the caller's (the lock
        held): the same exception, so that its message reaches the user as if the sweep's own
        thread had written (e.g. a results file of another job, ``CorruptResultsError``)."""
        if self._failed is not None:
            raise self._failed


__all__ = ["SAVE_EVERY_S", "GroupSaver"]
