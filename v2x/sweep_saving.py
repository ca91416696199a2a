"""When a sweep writes its finished groups to the results store (``GroupSaver``).

Every write rewrites the whole results and ledger files (``ResultsStore.add``), and it runs on
the device's thread, between two groups. So finished groups are held and written together: when
the device has computed every group, when the sweep stops short (an error, Ctrl-C, a lack of
memory: what was computed is written before the error is raised), and otherwise at most every
``SAVE_EVERY_S`` seconds, which bounds what a process killed outright (``SIGKILL``) loses. The
files' content is the same whichever groups are written together (``ResultsStore`` keeps the
grid's order).
"""

from __future__ import annotations

import logging
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
        every_s: write held groups once this long has passed since the last write (default
            ``SAVE_EVERY_S`` as it is when the saver is made; 0: each group as it finishes).
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
        self._last = time.monotonic()
        self._failed = False

    def hold(self, rows: Sequence[Mapping[str, object]], ledger: pa.Table | None) -> None:
        """Hold a finished group's ``rows`` and ``ledger``; write everything held when
        ``every_s`` has passed since the last write."""
        self._held.append((rows, ledger))
        if time.monotonic() - self._last >= self._every_s:
            self.save()

    def save(self) -> None:
        """Write every held group in one ``ResultsStore.add``."""
        if not self._held:
            return
        try:
            if self.store is None:
                self.store = self._open_store()
            rows = [row for group_rows, _ in self._held for row in group_rows]
            ledgers = [t.cast(LEDGER_SCHEMA) for _, t in self._held if t is not None]
            self.store.add(rows, pa.concat_tables(ledgers) if ledgers else None)
        except BaseException:
            self._failed = True
            raise
        self.saved += len(rows)
        self._held.clear()
        self._last = time.monotonic()

    def save_after_error(self) -> None:
        """``save`` while an error propagates: the groups computed before it are written,
        unless writing is what failed (then it is not tried again); a write that fails here
        is logged, not raised, so that the error that stopped the sweep is the one reported."""
        if self._failed or not self._held:
            return
        try:
            self.save()
        except Exception:  # noqa: BLE001 - the sweep's own error is raised after this
            log.exception("sweep: the groups computed before the error could not be saved")


__all__ = ["SAVE_EVERY_S", "GroupSaver"]
