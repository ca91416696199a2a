"""A results store's files written on a thread of their own while a sweep goes on.

``ResultsStore.add`` rewrites both of a job's files (the ledger grows with every group: at 512
frames × 35 cells, 72,000 rows, ≈ 0.1 s a write with its ``fsync``). A sweep adds each group's
rows on the device's thread, which then launched nothing meanwhile. ``StoreWriter.add`` puts the
rows into the store's tables (``ResultsStore.append``) and returns; one thread writes the
store's latest tables (``ResultsStore.write``: the same atomic writes, ledger first), so adds
that arrive while a write runs are written together by the next one. ``close`` waits for the
last write and raises what a write raised. The files on disk are always ones ``add`` would have
written; they lag the tables by at most the write in progress and the one after it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from types import TracebackType

import pyarrow as pa

from v2x.results import ResultsStore

__all__ = ["StoreWriter"]


class StoreWriter:
    """Writes ``store``'s files on one thread as rows are added (module docstring); use as a
    context manager or call ``close``."""

    def __init__(self, store: ResultsStore) -> None:
        self.store = store
        self._cond = threading.Condition()
        self._tables: tuple[pa.Table, pa.Table] | None = None  # the next write's
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="v2x-results", daemon=True)
        self._thread.start()

    def add(self, rows: Sequence[Mapping[str, object]], ledger: pa.Table | None = None) -> None:
        """``store.add(rows, ledger)`` whose files are written on the writer's thread.

        Raises:
            what an earlier write raised (e.g. ``OSError`` for a full disk).
        """
        with self._cond:
            if self._closed:
                raise RuntimeError("StoreWriter.add: the writer is closed")
            self._raise()
            if self.store.append(rows, ledger):
                self._tables = (self.store.ledger, self.store.results)
                self._cond.notify_all()

    def close(self) -> None:
        """Wait for every added row to be written, stop the thread; raises what a write raised.
        Calling it again does nothing more."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._tables is None and not self._closed:
                    self._cond.wait()
                if self._tables is None:  # closed, nothing left to write
                    return
                tables, self._tables = self._tables, None
            try:
                self.store.write(*tables)
            except BaseException as err:  # noqa: BLE001 - raised on the caller's next call
                with self._cond:
                    self._error = err

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
