"""StoreWriter: a sweep's finished groups written on one background thread, in order, with
their errors raised and, when the sweep stops, every queued write finished and counted."""

from __future__ import annotations

import threading

import pytest

from v2x.results_writer import StoreWriter


class _Store:
    """Records the groups written, on which thread; ``fail_on`` raises for that group."""

    def __init__(self, fail_on: str | None = None, gate: threading.Event | None = None) -> None:
        self.written: list[str] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on
        self.gate = gate

    def add(self, rows, ledger) -> None:
        if self.gate is not None:
            assert self.gate.wait(10)
        self.threads.add(threading.current_thread().name)
        if rows[0]["cell_id"] == self.fail_on:
            raise OSError(28, "No space left on device")
        self.written.append(rows[0]["cell_id"])


def _rows(name: str, n: int = 2) -> list[dict]:
    return [{"cell_id": name}] * n


def test_groups_are_written_in_order_off_the_callers_thread():
    gate = threading.Event()
    store = _Store(gate=gate)
    with StoreWriter() as writer:
        for name in "abcde":
            writer.add(store, _rows(name), None)
        assert store.written == [] and writer.saved == 0  # queued: the caller went on
        gate.set()
    assert store.written == list("abcde") and writer.saved == 10
    assert store.threads and threading.current_thread().name not in store.threads


def test_a_failed_write_is_raised_by_the_next_add_or_at_the_end():
    store = _Store(fail_on="b")
    writer = StoreWriter()
    writer.add(store, _rows("a"), None)
    writer.add(store, _rows("b"), None)
    with pytest.raises(OSError, match="No space left"):
        writer.wait()
    assert store.written == ["a"] and writer.saved == 2
    with pytest.raises(OSError, match="No space left"), StoreWriter() as other:
        other.add(store, _rows("b"), None)


def test_a_sweep_stopping_finishes_the_queued_writes_and_keeps_its_own_error():
    """Ctrl-C or an out-of-memory error leaving the block: the groups already finished are
    still written and counted (the error message says what was saved), and the error that
    left is the one raised, not a write's."""
    gate = threading.Event()
    store = _Store(gate=gate)
    writer = StoreWriter()
    with pytest.raises(KeyboardInterrupt), writer:
        writer.add(store, _rows("a", 3), None)
        writer.add(store, _rows("b", 4), None)
        gate.set()
        raise KeyboardInterrupt
    assert store.written == ["a", "b"] and writer.saved == 7
    failing = _Store(fail_on="a")
    with pytest.raises(MemoryError), StoreWriter() as writer:
        writer.add(failing, _rows("a"), None)
        raise MemoryError
