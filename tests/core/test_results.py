"""Results store: schema, atomic writes, resume without loss or duplicates, corrupt files."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from v2x.ledger import LEDGER_SCHEMA, LEDGER_SUMS
from v2x.results import (
    RESULTS_SCHEMA,
    CorruptResultsError,
    ResultsStore,
    atomic_write_parquet,
    cell_id,
    read_results,
)


def _row(snr: float, ap: float = 0.5) -> dict:
    cond = {
        "channel": "awgn",
        "snr_mode": "fixed",
        "snr_db": snr,
        "codec": "analog",
        "bandwidth_ratio": math.nan,
        "fusion": "max",
        "pose_noise_m": 0.0,
        "pose_noise_yaw_rad": 0.0,
        "scheduler": "equal",
        "deadline_s": 0.1,
        "bandwidth_hz": 2e7,
    }
    row = {
        "cell_id": cell_id(cond),
        **cond,
        "dataset": "synthetic",
        "split": "test",
        "num_frames": 4,
        "ap_30": ap,
        "ap_50": ap,
        "ap_70": ap,
        "ap_70_invisible": math.nan,
        "num_gt": 10,
        "num_gt_invisible": 0,
        "eval_convention": "{}",
        "realised_ratio": 0.5,
    }
    row.update({name: 1.0 for name in LEDGER_SUMS})
    return row


def _ledger(cell: str, n: int) -> pa.Table:
    rows = {f.name: [None] * n for f in LEDGER_SCHEMA}
    rows["cell_id"] = [cell] * n
    return pa.table(rows, schema=LEDGER_SCHEMA)


def test_cell_id_depends_on_every_condition_column():
    base = _row(0.0)
    assert cell_id(base) == _row(0.0)["cell_id"]
    assert cell_id({**base, "snr_db": 1.0}) != base["cell_id"]
    assert cell_id({**base, "codec": "identity"}) != base["cell_id"]
    assert cell_id({**base, "snr_mode": "geometric"}) != base["cell_id"]
    with pytest.raises(ValueError, match="condition lacks"):
        cell_id({"snr_db": 1.0})


def test_resume_keeps_rows_and_never_duplicates(tmp_path):
    store = ResultsStore(tmp_path, "abc")
    rows = [_row(0.0), _row(10.0)]
    store.add(
        rows, pa.concat_tables([_ledger(rows[0]["cell_id"], 3), _ledger(rows[1]["cell_id"], 2)])
    )
    again = ResultsStore(tmp_path, "abc")
    assert again.done_cells() == {r["cell_id"] for r in rows}
    again.add([_row(10.0, ap=0.9), _row(20.0)], _ledger(_row(20.0)["cell_id"], 1))
    table = pq.read_table(store.path)
    assert table.num_rows == 3
    assert sorted(table.column("snr_db").to_pylist()) == [0.0, 10.0, 20.0]
    assert table.column("ap_50").to_pylist()[1] == 0.5  # the first result of a cell is kept
    assert set(table.column("config_hash").to_pylist()) == {"abc"}
    assert pq.read_table(store.ledger_path).num_rows == 6
    assert table.schema.equals(RESULTS_SCHEMA)


def test_ledger_rows_of_unfinished_cells_are_dropped_on_resume(tmp_path):
    store = ResultsStore(tmp_path, "h1")
    store.add([_row(0.0)], _ledger(_row(0.0)["cell_id"], 2))
    # a ledger written for a cell whose results write never happened (killed in between)
    atomic_write_parquet(
        pa.concat_tables([pq.read_table(store.ledger_path), _ledger("orphan", 4)]),
        store.ledger_path,
    )
    again = ResultsStore(tmp_path, "h1")
    assert again.ledger.num_rows == 2


def test_interrupted_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path, "h2")
    store.add([_row(0.0)])
    before = store.path.read_bytes()

    def broken(table, where, *args, **kwargs):
        with open(where, "wb") as handle:
            handle.write(b"PAR1 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(KeyboardInterrupt):
        store.add([_row(5.0)])
    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert pq.read_table(store.path).column("snr_db").to_pylist() == [0.0]
    assert not list(tmp_path.glob(".*.tmp"))


def test_corrupt_file_is_reported_and_skipped_only_on_request(tmp_path):
    good = ResultsStore(tmp_path / "a", "g")
    good.add([_row(0.0)])
    bad = tmp_path / "b" / "sweep-bad.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(CorruptResultsError, match=str(bad)):
        read_results([tmp_path])
    merged = read_results([tmp_path], allow_corrupt=True)
    assert merged.num_rows == 1
    with pytest.raises(CorruptResultsError, match="sweep-bad.parquet"):
        ResultsStore(tmp_path / "b", "bad")
    store = ResultsStore(tmp_path / "b", "bad", allow_corrupt=True)
    assert store.done_cells() == set()
    assert (tmp_path / "b" / "sweep-bad.parquet.corrupt").exists()


def test_wrong_schema_and_foreign_config_are_corrupt(tmp_path):
    path = tmp_path / "sweep-x.parquet"
    pq.write_table(pa.table({"snr_db": [1.0]}), path)
    with pytest.raises(CorruptResultsError, match="lacks column"):
        ResultsStore(tmp_path, "x")
    other = ResultsStore(tmp_path / "o", "y")
    other.add([_row(0.0)])
    other.path.rename(tmp_path / "o" / "sweep-z.parquet")
    with pytest.raises(CorruptResultsError, match="another config"):
        ResultsStore(tmp_path / "o", "z")


def test_read_results_merges_and_dedupes(tmp_path):
    a = ResultsStore(tmp_path / "a", "same")
    a.add([_row(0.0), _row(10.0)])
    b = ResultsStore(tmp_path / "b", "same")
    b.add([_row(10.0), _row(20.0)])
    merged = read_results([tmp_path / "a", b.path])
    assert sorted(merged.column("snr_db").to_pylist()) == [0.0, 10.0, 20.0]
    with pytest.raises(FileNotFoundError):
        read_results([tmp_path / "missing"])


def test_results_written_before_snr_mode_existed_read_as_fixed(tmp_path):
    from v2x.results import RESULTS_SCHEMA, read_table, rows_to_table

    rows = [{**_row(s), "config_hash": "abc", "v2x_version": "0"} for s in (0.0, 10.0)]
    table = rows_to_table(rows)
    old = table.drop_columns(["snr_mode"])
    path = tmp_path / "old.parquet"
    pq.write_table(old, path)
    back = read_table(path, RESULTS_SCHEMA)
    assert back.column("snr_mode").to_pylist() == ["fixed", "fixed"]
    assert back.column("snr_db").to_pylist() == [0.0, 10.0]
