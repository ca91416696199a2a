"""v2x.sweep_saving: finished groups are written together (at the end, when the sweep stops
short, and by a timer once one has waited SAVE_EVERY_S seconds), and the files hold what
writing each group as it finished gave."""

from __future__ import annotations

import math
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import v2x.results as results
import v2x.sweep_saving as saving
from v2x.ledger import LEDGER_SCHEMA
from v2x.sweep import run_sweep

from .test_sweep import tiny_config


class _Store:
    """Records each ``add``: the rows' cell ids, the ledger's row count and the thread."""

    def __init__(self, fail: bool = False) -> None:
        self.adds: list[tuple[list[str], int]] = []
        self.threads: list[str] = []
        self.fail = fail
        self.added = threading.Event()

    def add(self, rows, ledger) -> None:
        self.threads.append(threading.current_thread().name)
        self.added.set()
        if self.fail:
            raise OSError("disk full")
        self.adds.append(([r["cell_id"] for r in rows], 0 if ledger is None else ledger.num_rows))


def _ledger(rows: int) -> pa.Table:
    """``rows`` ledger rows of nulls (only their count is checked)."""
    return pa.Table.from_pylist([dict.fromkeys(LEDGER_SCHEMA.names)] * rows, schema=LEDGER_SCHEMA)


def test_groups_are_held_and_written_in_one_add():
    store = _Store()
    saver = saving.GroupSaver(lambda: store, every_s=3600)
    saver.hold([{"cell_id": "a"}, {"cell_id": "b"}], _ledger(3))
    saver.hold([{"cell_id": "c"}], _ledger(2))
    assert store.adds == [] and saver.saved == 0
    saver.save()
    assert store.adds == [(["a", "b", "c"], 5)] and saver.saved == 3
    saver.save()  # nothing held: nothing written
    assert len(store.adds) == 1
    saver.close()


def test_a_group_that_waited_every_s_is_written_by_the_timer():
    store = _Store()
    saver = saving.GroupSaver(lambda: store, every_s=0.01)
    saver.hold([{"cell_id": "a"}], _ledger(1))
    assert store.added.wait(60)  # (a liveness bound, not a speed limit)
    saver.close()
    assert store.adds == [(["a"], 1)] and store.threads == ["v2x-save"] and saver.saved == 1
    saver.save()  # nothing left to write
    assert len(store.adds) == 1


def test_a_write_that_failed_on_the_timer_is_raised_on_the_sweeps_thread():
    store = _Store(fail=True)
    saver = saving.GroupSaver(lambda: store, every_s=0.01)
    saver.hold([{"cell_id": "a"}], None)
    assert store.added.wait(60)
    saver.close()
    with pytest.raises(OSError, match="disk full"):  # the timer's own error
        saver.hold([{"cell_id": "b"}], None)
    saver.save_after_error()  # not tried again
    assert store.threads == ["v2x-save"]


def test_the_store_opens_at_the_first_write_and_every_s_0_writes_each_group():
    opened = []

    def open_store():
        opened.append(_Store())
        return opened[-1]

    saver = saving.GroupSaver(open_store, every_s=0.0)
    assert opened == []
    saver.hold([{"cell_id": "a"}], None)
    saver.hold([{"cell_id": "b"}], _ledger(1))
    assert len(opened) == 1 and opened[0].adds == [(["a"], 0), (["b"], 1)]
    assert opened[0].threads == ["MainThread"] * 2  # (written as held, on the caller's thread)


def test_after_an_error_held_groups_are_written_unless_writing_failed(caplog):
    store = _Store()
    saver = saving.GroupSaver(lambda: store, every_s=3600)
    saver.hold([{"cell_id": "a"}], None)
    saver.save_after_error()
    assert store.adds == [(["a"], 0)]
    saver.close()

    broken = _Store(fail=True)
    saver = saving.GroupSaver(lambda: broken, every_s=3600)
    saver.hold([{"cell_id": "a"}], None)
    with pytest.raises(OSError, match="disk full"):
        saver.save()
    broken.fail = False
    saver.save_after_error()  # the write that failed is not tried again
    assert broken.adds == [] and saver.saved == 0
    saver.close()

    flaky = _Store(fail=True)
    saver = saving.GroupSaver(lambda: flaky, every_s=3600)
    saver.hold([{"cell_id": "a"}], None)
    saver.save_after_error()  # logged, not raised: the sweep's own error is the one reported
    assert "could not be saved" in caplog.text
    saver.close()


def test_a_sweep_writes_its_files_once_with_what_each_group_written_alone_gave(
    tmp_path, monkeypatch
):
    cache_dir = tmp_path / "frames"
    writes: list[str] = []
    original = results.atomic_write_parquet

    def counted(table, path):
        writes.append(str(path))
        original(table, path)

    monkeypatch.setattr(results, "atomic_write_parquet", counted)
    monkeypatch.setattr(saving, "SAVE_EVERY_S", 3600.0)  # (no timer write on a slow machine)
    together = run_sweep(tiny_config(cache_dir, tmp_path / "together"))
    assert len(writes) == 2  # the results file and its ledger, once, for the 4 groups

    writes.clear()
    monkeypatch.setattr(saving, "SAVE_EVERY_S", 0.0)
    alone = run_sweep(tiny_config(cache_dir, tmp_path / "alone"))
    assert len(writes) == 2 * 4  # each group as it finished
    for name in (together.name, together.name.replace(".parquet", ".ledger.parquet")):
        # the same rows in the same (the grid's) order
        assert _rows(together.parent / name) == _rows(alone.parent / name)


def _rows(path) -> list[dict]:
    """The file's rows, NaN as None (so that equal rows compare equal)."""
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in pq.read_table(path).to_pylist()
    ]
