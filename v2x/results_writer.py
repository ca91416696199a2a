"""A sweep's finished groups written to its ``ResultsStore`` on one background thread, in the
order they finish, while the device goes on with the next group.

``ResultsStore.add`` rewrites the results and ledger files whole (atomically), which grows with
the ledger (≈ 0.05–0.1 s a group at 512 frames on an H200 host, most of it Arrow's sorting
and Parquet writing, which release the GIL): on the device's thread it held the next group
back. A write's error is raised by the next ``add`` or by ``wait``; ``wait`` also says how many
rows are on disk, so a sweep that stops (Ctrl-C, out of memory) reports what was saved.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa

from v2x.results import ResultsStore


class StoreWriter:
    """``add`` queues one group's rows and ledger for ``store.add``; ``saved`` counts the rows
    of the writes finished so far. Use as a context manager: leaving it waits for every write
    queued (and raises the first error, unless another exception is leaving already)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2x-store")
        self._pending: list[tuple[Future, int]] = []
        self.saved = 0

    def add(
        self, store: ResultsStore, rows: Sequence[Mapping[str, object]], ledger: pa.Table | None
    ) -> None:
        """Queue ``store.add(rows, ledger)`` after the writes queued before it; first raise the
        error of any write already finished."""
        self._collect(block=False)
        self._pending.append((self._pool.submit(store.add, rows, ledger), len(rows)))

    def wait(self) -> int:
        """Wait for every queued write; the rows saved (raises the first write's error)."""
        self._collect(block=True)
        return self.saved

    def _collect(self, block: bool) -> None:
        while self._pending and (block or self._pending[0][0].done()):
            future, rows = self._pending[0]
            future.result()  # (raises the write's error; the ones after it stay queued)
            self._pending.pop(0)
            self.saved += rows

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self.wait()
            else:  # keep what was computed: finish the writes queued, without masking the error
                with contextlib.suppress(Exception):  # (the error leaving already is raised)
                    self.wait()
        finally:
            self._pool.shutdown(wait=True)


__all__ = ["StoreWriter"]
