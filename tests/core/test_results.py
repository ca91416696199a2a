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


def test_written_files_hold_the_table_with_only_text_columns_dictionary_encoded(tmp_path):
    """``atomic_write_parquet``: reading the file back gives the very table (values, nulls,
    NaN, types), and in Parquet's column metadata only the text columns carry a dictionary
    page; the numbers are stored plain."""
    rows = [_row(0.0), _row(10.0, ap=math.nan)]
    store = ResultsStore(tmp_path, "abc")
    ledger = pa.concat_tables([_ledger(rows[0]["cell_id"], 3), _ledger(rows[1]["cell_id"], 2)])
    ledger = ledger.set_column(
        ledger.schema.get_field_index("channel_uses"),
        "channel_uses",
        pa.array([1.5, math.nan, None, 7.0, 7.0], ledger.schema.field("channel_uses").type),
    )
    store.add(rows, ledger)
    for path, table in ((store.path, store.results), (store.ledger_path, store.ledger)):
        back = pq.read_table(path)
        assert back.schema.equals(table.schema)
        assert _same_with_nan(back, table)
        meta = pq.ParquetFile(path).metadata.row_group(0)
        for i, field in enumerate(back.schema):
            dictionary = meta.column(i).dictionary_page_offset is not None
            assert dictionary == pa.types.is_string(field.type), field.name


def _same_with_nan(a: pa.Table, b: pa.Table) -> bool:
    """Row by row equal, NaN equal to NaN."""

    def same(x, y) -> bool:
        both_nan = isinstance(x, float) and isinstance(y, float) and x != x and y != y
        return x == y or both_nan

    return all(
        same(x[k], y[k]) for x, y in zip(a.to_pylist(), b.to_pylist(), strict=True) for k in x
    )


def test_files_keep_the_given_cell_order_whatever_order_cells_are_added_in(tmp_path):
    """A sweep adds its groups in computing order (feature groups first, or per device); the
    files hold the grid's order at every write, a cell's ledger rows in theirs, and cells the
    order does not name last, as added (the oracle: the order written out by hand)."""
    a, b, c, extra = (_row(s) for s in (0.0, 10.0, 20.0, 30.0))
    order = [a["cell_id"], b["cell_id"], c["cell_id"]]

    def ledger(row: dict, n: int) -> pa.Table:
        t = _ledger(row["cell_id"], n)
        frames = [f"{row['snr_db']}-{i}" for i in range(n)]
        return t.set_column(t.schema.get_field_index("frame_id"), "frame_id", pa.array(frames))

    store = ResultsStore(tmp_path, "o", order=order)
    store.add([extra, c], pa.concat_tables([ledger(extra, 1), ledger(c, 3)]))
    store.add([a], ledger(a, 2))
    assert pq.read_table(store.path).column("snr_db").to_pylist() == [0.0, 20.0, 30.0]
    store = ResultsStore(tmp_path, "o", order=order)  # resumed: the missing cell slots in
    store.add([b], ledger(b, 1))
    assert pq.read_table(store.path).column("snr_db").to_pylist() == [0.0, 10.0, 20.0, 30.0]
    frames = pq.read_table(store.ledger_path).column("frame_id").to_pylist()
    assert frames == ["0.0-0", "0.0-1", "10.0-0", "20.0-0", "20.0-1", "20.0-2", "30.0-0"]


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


# ----------------------------------------------------------------- keys, provenance, merging
def test_file_digest_is_sha256_of_the_file_and_follows_every_rewrite(tmp_path, monkeypatch):
    """``file_digest`` (checkpoints' keys) is hashlib's SHA-256 of the bytes. Remembered per file
    state, it still sees a file rewritten with the same size, at once or with its modification
    time set back to the remembered one (the status-change time moves)."""
    import hashlib
    import os
    import time

    import v2x.provenance as provenance

    path = tmp_path / "ckpt.pt"
    for content in (b"a" * 4096, b"b" * 4096):  # same size, rewritten at once (not remembered)
        path.write_bytes(content)
        assert provenance.file_digest(path) == hashlib.sha256(content).hexdigest()
    later = time.time_ns() + 10**10  # every file is now over 2 s old: digests are remembered
    monkeypatch.setattr(provenance.time, "time_ns", lambda: later)
    first = path.stat()
    assert provenance.file_digest(path) == hashlib.sha256(b"b" * 4096).hexdigest()
    assert provenance._file_state(path) in provenance._DIGESTS
    path.write_bytes(b"c" * 4096)
    os.utime(path, ns=(first.st_atime_ns, first.st_mtime_ns))  # same size and modification time
    assert provenance.file_digest(path) == hashlib.sha256(b"c" * 4096).hexdigest()


def test_source_tree_hash_is_location_free_and_sees_every_edit(tmp_path):
    from v2x.results import source_tree_hash

    def tree(root, files):
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return root

    files = {"a.py": "x = 1\n", "sub/b.py": "y = 2\n", "data.yaml": "z: 3\n"}
    one = tree(tmp_path / "one" / "pkg", files)
    two = tree(tmp_path / "elsewhere" / "deeper" / "pkg", files)
    base = source_tree_hash({"v2x.channels": one})
    assert source_tree_hash({"v2x.channels": two}) == base  # same sources anywhere: same hash
    (two / "__pycache__").mkdir()
    (two / "__pycache__" / "a.py").write_text("compiled junk")
    assert source_tree_hash({"v2x.channels": two}) == base
    (two / "data.yaml").write_text("z: 4\n")  # not Python source
    assert source_tree_hash({"v2x.channels": two}) == base
    (two / "sub" / "b.py").write_text("y = 3\n")
    assert source_tree_hash({"v2x.channels": two}) != base
    (two / "sub" / "b.py").write_text("y = 2\n")
    (two / "sub" / "b.py").rename(two / "sub" / "c.py")
    assert source_tree_hash({"v2x.channels": two}) != base
    assert source_tree_hash({"v2x.semcom": one}) != base  # the package path is part of the key
    # a table the code reads (the digital chain's bler_table.json) is part of the code: edited
    # in place it was resumed as the old one; a table beside a module of its name counts apart
    (two / "sub" / "c.py").rename(two / "sub" / "b.py")
    assert source_tree_hash({"v2x.channels": two}) == base
    (two / "a.json").write_text('{"snr_db": [1.0]}')
    with_table = source_tree_hash({"v2x.channels": two})
    assert with_table != base
    (two / "a.json").write_text('{"snr_db": [5.0]}')
    assert source_tree_hash({"v2x.channels": two}) not in (base, with_table)


def test_code_hash_covers_every_installed_package_and_is_stable_across_processes():
    import subprocess
    import sys
    import tomllib
    from pathlib import Path

    from v2x.results import CODE_PACKAGES, code_hash

    root = Path(__file__).resolve().parents[2]
    listed = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    with_code = {p for p in listed if not p.startswith("v2x.conf.") and not p.endswith(".assets")}
    assert set(CODE_PACKAGES) == with_code
    other = subprocess.run(
        [sys.executable, "-c", "from v2x.results import code_hash; print(code_hash())"],
        capture_output=True, text=True, cwd="/",
    )
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == code_hash() and len(code_hash()) == 64


def test_cell_id_with_a_setting_and_seed_differs_from_the_bare_condition():
    base = _row(0.0)
    keyed = cell_id(base, "setting-a", 0)
    assert keyed != base["cell_id"]
    assert cell_id(base, "setting-b", 0) != keyed
    assert cell_id(base, "setting-a", 1) != keyed
    assert cell_id(base, "setting-a", 0) == keyed


def _keyed_row(snr: float, ap: float = 0.5, seed: int = 0, setting: str = "s1") -> dict:
    row = _row(snr, ap)
    row.update(
        cell_id=cell_id(row, setting, seed), seed=seed, setting_key=setting, code_hash="c" * 64,
        data_hash="d" * 64, detector_sha256="untrained", codec_sha256="", data_path="",
        config_hash="job", v2x_version="0",
    )
    return row


def test_conflicting_duplicates_are_refused_naming_both_files(tmp_path):
    from v2x.results import ConflictingResultsError

    a = ResultsStore(tmp_path / "a", "job1")
    a.add([_keyed_row(0.0, ap=0.5)])
    b = ResultsStore(tmp_path / "b", "job2")
    b.add([_keyed_row(0.0, ap=0.5), _keyed_row(10.0)])
    # the same cell with the same numbers (another job, another folder): kept once
    merged = read_results([tmp_path])
    assert sorted(merged.column("snr_db").to_pylist()) == [0.0, 10.0]
    c = ResultsStore(tmp_path / "c", "job3")
    c.add([_keyed_row(0.0, ap=0.7)])
    with pytest.raises(ConflictingResultsError, match=r"(?s)ap_30.*sweep-job1.parquet.*sweep-job3"):
        read_results([tmp_path])


def test_ledger_rows_of_a_cell_held_twice_are_read_once(tmp_path):
    row = _keyed_row(0.0)
    for name in ("a", "b"):
        ResultsStore(tmp_path / name, f"job-{name}").add([row], _ledger(row["cell_id"], 3))
    assert read_results([tmp_path]).num_rows == 1
    assert read_results([tmp_path], ledger=True).num_rows == 3


def test_seeds_average_with_a_t_interval_and_settings_stay_apart():
    from scipy import stats

    from v2x.results import aggregate_seeds, rows_to_table

    aps = [0.4, 0.5, 0.9]
    rows = [_keyed_row(0.0, ap=a, seed=s) for s, a in enumerate(aps)]
    one = {**_keyed_row(0.0, ap=0.3, setting="s2"), "ap_50_lo": 0.2, "ap_50_hi": 0.4}
    table = aggregate_seeds(rows_to_table([*rows, one]))
    assert table.num_rows == 2
    by_setting = {r["setting_key"]: r for r in table.to_pylist()}
    mean = sum(aps) / 3
    sd = (sum((a - mean) ** 2 for a in aps) / 2) ** 0.5
    half = stats.t.ppf(0.975, 2) * sd / 3**0.5
    avg = by_setting["s1"]
    assert avg["num_seeds"] == 3 and avg["seeds"] == "0,1,2"
    assert avg["ap_50"] == pytest.approx(mean)
    # mean ± half is (-0.06, 1.26): an AP's interval stays within [0, 1]
    assert mean - half < 0 and mean + half > 1
    assert (avg["ap_50_lo"], avg["ap_50_hi"]) == pytest.approx((0.0, 1.0))
    narrow = aggregate_seeds(rows_to_table([_keyed_row(0.0, ap=a, seed=s)
                                            for s, a in enumerate((0.5, 0.52))])).to_pylist()[0]
    half = stats.t.ppf(0.975, 1) * (0.02**2 / 2) ** 0.5 / 2**0.5
    assert (narrow["ap_50_lo"], narrow["ap_50_hi"]) == pytest.approx((0.51 - half, 0.51 + half))
    assert avg["bootstrap_unit"] == "seed"  # the interval is over seeds now
    single = by_setting["s2"]
    assert single["num_seeds"] == 1 and (single["ap_50_lo"], single["ap_50_hi"]) == (0.2, 0.4)
    assert single["bootstrap_unit"] == "frame"  # kept (rows without the column: frames)


def test_seed_intervals_keep_the_frames_sampling_error():
    """Over seeds the interval was the seeds' spread alone: a cell the seed does not change
    (e.g. a noiseless link) got a zero-wide interval however few frames it had. Averaging over
    seeds on the same frames does not shrink the frames' error, so both now add in quadrature."""
    from scipy import stats

    from v2x.results import aggregate_seeds, rows_to_table

    def seeded(seed: int, ap: float, lo: float, hi: float, setting: str) -> dict:
        row = _keyed_row(0.0, ap=ap, seed=seed, setting=setting)
        for metric in ("ap_30", "ap_50", "ap_70"):
            row.update({f"{metric}_lo": lo, f"{metric}_hi": hi})
        return {**row, "bootstrap_unit": "sequence"}

    same = [seeded(s, 0.6, 0.5, 0.75, "same") for s in range(3)]
    spread = [seeded(0, 0.45, 0.40, 0.50, "spread"), seeded(1, 0.47, 0.40, 0.55, "spread")]
    by_setting = {
        r["setting_key"]: r for r in aggregate_seeds(rows_to_table([*same, *spread])).to_pylist()
    }
    flat = by_setting["same"]  # every seed the same AP: the frames' interval, not [0.6, 0.6]
    assert (flat["ap_50_lo"], flat["ap_50_hi"]) == pytest.approx((0.5, 0.75))
    assert flat["bootstrap_unit"] == "seed+sequence" and flat["num_seeds"] == 3
    from v2x.results_table import results_table_text

    footnote = results_table_text(aggregate_seeds(rows_to_table(same))).splitlines()[-1]
    assert footnote == (
        "[lo, hi]: 95 % interval, over seeds: Student-t over seeds and bootstrap over "
        "sequences in quadrature"
    )
    mixed = by_setting["spread"]
    h_seed = stats.t.ppf(0.975, 1) * (0.02**2 / 2) ** 0.5 / 2**0.5  # sd of (0.45, 0.47) / √2
    below, above = (0.05 + 0.07) / 2, (0.05 + 0.08) / 2  # the seeds' mean half-widths
    assert mixed["ap_50"] == pytest.approx(0.46)
    assert mixed["ap_50_lo"] == pytest.approx(0.46 - (h_seed**2 + below**2) ** 0.5)
    assert mixed["ap_50_hi"] == pytest.approx(0.46 + (h_seed**2 + above**2) ** 0.5)
    # an AP shown without an interval is said to have none
    lone = results_table_text(rows_to_table([_keyed_row(0.0)])).splitlines()[-1]
    assert lone.startswith("no interval: ap_30, ap_50, ap_70 of some rows (computed with eval")
    # a seed row without its interval: the seeds' spread alone, and said so
    bare = {**spread[1], "ap_50_lo": math.nan, "ap_50_hi": math.nan}
    alone = aggregate_seeds(rows_to_table([spread[0], bare])).to_pylist()[0]
    assert alone["bootstrap_unit"] == "seed"
    assert alone["ap_30_hi"] - alone["ap_30"] == pytest.approx(h_seed)


def test_allow_corrupt_moves_aside_only_the_unreadable_file_and_keeps_earlier_ones(tmp_path):
    store = ResultsStore(tmp_path, "j")
    store.add([_row(0.0)], _ledger(_row(0.0)["cell_id"], 2))
    store.path.write_bytes(b"garbage 1")
    ledger_before = store.ledger_path.read_bytes()
    with pytest.raises(CorruptResultsError, match="allow_corrupt=true"):
        ResultsStore(tmp_path, "j")
    again = ResultsStore(tmp_path, "j", allow_corrupt=True)
    assert again.done_cells() == set()
    assert (tmp_path / "sweep-j.parquet.corrupt").read_bytes() == b"garbage 1"
    assert store.ledger_path.read_bytes() == ledger_before  # the readable ledger stays
    assert not (tmp_path / "sweep-j.ledger.parquet.corrupt").exists()
    again.add([_row(5.0)])
    again.path.write_bytes(b"garbage 2")
    ResultsStore(tmp_path, "j", allow_corrupt=True)
    assert (tmp_path / "sweep-j.parquet.corrupt").read_bytes() == b"garbage 1"
    assert (tmp_path / "sweep-j.parquet.corrupt.1").read_bytes() == b"garbage 2"


def test_an_unreadable_ledger_is_moved_aside_alone_and_its_cells_recomputed(tmp_path):
    store = ResultsStore(tmp_path, "k")
    store.add([_row(0.0)], _ledger(_row(0.0)["cell_id"], 2))
    results_before = store.path.read_bytes()
    store.ledger_path.write_bytes(b"garbage")
    again = ResultsStore(tmp_path, "k", allow_corrupt=True)
    assert again.done_cells() == set()  # results without their ledger rows are redone
    assert store.path.read_bytes() == results_before
    assert (tmp_path / "sweep-k.ledger.parquet.corrupt").read_bytes() == b"garbage"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_results_files_follow_the_umask(tmp_path, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        store = ResultsStore(tmp_path, "m")
        store.add([_row(0.0)], _ledger(_row(0.0)["cell_id"], 1))
    finally:
        os.umask(old)
    for path in (store.path, store.ledger_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_the_table_says_how_many_units_its_intervals_resample_and_warns_when_few():
    """An interval from 2 towns was printed like one from 40: a percentile bootstrap over m
    clusters draws at most C(2m - 1, m) distinct resamples (3 for m = 2), so its 95 % is not
    one. The footnote names the count and warns below ``FEW_UNITS``; files from before the
    count read 0 (unknown) and keep the plain footnote."""
    from math import comb

    from v2x.results import rows_to_table
    from v2x.results_table import FEW_UNITS, results_table_text

    def with_interval(snr: float, unit: str, units: int | None) -> dict:
        row = {**_keyed_row(snr), "bootstrap_unit": unit}
        row.update({f"{m}_{end}": v for m in ("ap_30", "ap_50", "ap_70")
                    for end, v in (("lo", 0.4), ("hi", 0.6))})  # fmt: skip
        return row if units is None else {**row, "bootstrap_units": units}

    assert comb(2 * 2 - 1, 2) == 3 and FEW_UNITS == 10
    few = results_table_text(rows_to_table([with_interval(0.0, "sequence", 2)])).splitlines()
    assert few[-2:] == [
        "[lo, hi]: 95 % interval, bootstrap over whole sequences (2 sequences)",
        "few units: an interval drawn from 2 units is coarse and covers less than 95 % (read it "
        "as the spread between them; more towns/scenes or frames narrow it honestly)",
    ]
    many = [with_interval(0.0, "sequence", 40), with_interval(5.0, "frame", 400),
            with_interval(10.0, "frame", 120)]  # fmt: skip
    assert results_table_text(rows_to_table(many)).splitlines()[-1] == (
        "[lo, hi]: 95 % interval, bootstrap over frames (120-400 frames); bootstrap over whole "
        "sequences (40 sequences)"
    )
    old = results_table_text(rows_to_table([with_interval(0.0, "frame", None)])).splitlines()
    assert old[-1] == "[lo, hi]: 95 % interval, bootstrap over frames"


def test_the_table_prints_small_bandwidth_ratios_apart():
    """``bandwidth_ratio`` was rounded to three decimals: 1/822 and 1/1024 both read 0.001 and
    1/512 read 0.002. A ratio whose inverse is whole prints as ``1/N`` (the README's ρ), any
    other with four significant digits; a codec without the knob keeps ``-``."""
    from fractions import Fraction

    from v2x.results import rows_to_table
    from v2x.results_table import results_table_text

    ratios = [1 / 822, 1 / 1024, 1 / 512, 1 / 64, 0.0039, 1.0, math.nan]
    rows = [{**_keyed_row(float(i), setting=f"s{i}"), "bandwidth_ratio": r}
            for i, r in enumerate(ratios)]  # fmt: skip
    lines = results_table_text(rows_to_table(rows)).splitlines()
    header = lines[0].split()
    column, snr = header.index("bandwidth_ratio"), header.index("snr_db")
    by_row = {int(float(ln.split()[snr])): ln.split()[column] for ln in lines[2 : 2 + len(ratios)]}
    printed = [by_row[i] for i in range(len(ratios))]  # (rows print sorted by ratio)
    assert printed == ["1/822", "1/1024", "1/512", "1/64", "0.0039", "1", "-"]
    for text, ratio in zip(printed[:4], ratios, strict=False):  # each names its ratio exactly
        assert float(Fraction(text)) == pytest.approx(ratio, rel=1e-12)
    assert len(set(printed)) == len(printed)


def test_the_note_under_every_table_names_every_ap_column_it_can_show():
    """v2x-eval's table shows vehicle_ap_30, which the footnote on what each AP column pools
    left out (it named vehicle_ap_50/vehicle_ap_70 only). Oracle: ``AP_METRICS``, the AP
    columns of the results."""
    import re

    from v2x.results import AP_METRICS
    from v2x.results_table import AP_COLUMNS_NOTE

    named = set(re.findall(r"\b(?:vehicle_)?ap_\d\d(?:_invisible)?\b", AP_COLUMNS_NOTE))
    assert named == set(AP_METRICS)


def test_a_results_path_that_does_not_exist_says_what_is_expected(tmp_path):
    from v2x.results import results_files

    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=rf"results: {missing} does not exist; expected a "
                       r"results file \(sweep-\*\.parquet\) or a folder holding them"):  # fmt: skip
        results_files([missing])


def test_each_table_column_prints_in_one_notation_with_one_number_of_decimals():
    """A table mixed formats in one column: ``3.65e+04`` beside ``3664.750``, an AP as
    ``0.0007143 [0.000, 0.004]`` (more digits than its own interval), SNRs as ``-10.000``. Each
    column now has one format: APs and their intervals 3 decimals, whole-valued settings none,
    large counts one notation, small latencies 3 significant digits of the least."""
    import re

    from v2x.results import rows_to_table
    from v2x.results_table import results_table_text

    rows = []
    for i, (snr, ap, uses, bits, latency) in enumerate([
        (-10.0, 0.0007143, 36500.0, 2.5e8, 0.0004),
        (-5.0, 0.25, 3664.75, 1.0, 0.05),
        (0.0, 0.5, 0.0, 7.5e6, 0.0123),
        (20.0, 1.0, 12.5, 0.0, 0.0),
    ]):  # fmt: skip
        row = _keyed_row(snr, ap=ap, setting=f"s{i}")
        row.update(ap_50_lo=max(0.0, ap - 0.0001), ap_50_hi=min(1.0, ap + 0.003),
                   mean_channel_uses_per_frame=uses, mean_source_bits_per_frame=bits,
                   mean_latency_s=latency)  # fmt: skip
        rows.append(row)
    lines = results_table_text(rows_to_table(rows)).splitlines()
    header = lines[0].split()
    body = [re.split(r"\s{2,}", ln.strip()) for ln in lines[2:6]]  # (cells: single spaces)
    assert all(len(cells) == len(header) for cells in body), lines
    column = {name: [cells[i] for cells in body] for i, name in enumerate(header)}
    assert column["snr_db"] == ["-10", "-5", "0", "20"]
    assert column["ap_50"] == [
        "0.001 [0.001, 0.004]", "0.250 [0.250, 0.253]", "0.500 [0.500, 0.503]",
        "1.000 [1.000, 1.000]",
    ]  # fmt: skip
    assert column["ap_30"] == ["0.001", "0.250", "0.500", "1.000"]  # no interval, same decimals
    assert column["ap_70_invisible"] == ["-"] * 4
    assert column["mean_channel_uses_per_frame"] == ["36500", "3665", "0", "12"]  # (12.5: even)
    assert column["mean_source_bits_per_frame"] == ["2.5e+08", "1.0e+00", "7.5e+06", "0.0e+00"]
    assert column["mean_latency_s"] == ["0.000400", "0.050000", "0.012300", "0.000000"]
    for cells in column.values():  # one number of decimals per column (digits after the point)
        numbers = [n for c in cells for n in re.findall(r"-?\d+(?:\.\d+)?(?:e[+-]\d+)?", c)]
        decimals = {len(re.sub(r"e.*", "", n).partition(".")[2]) for n in numbers}
        assert len(decimals) <= 1, cells
    # a column of settings with a half step keeps one decimal for all: -7.5 beside -10.0
    halves = [_keyed_row(s, setting=f"h{s}") for s in (-10.0, -7.5, 30.0)]
    lines = results_table_text(rows_to_table(halves)).splitlines()
    snr = lines[0].split().index("snr_db")
    assert [ln.split()[snr] for ln in lines[2:5]] == ["-10.0", "-7.5", "30.0"]
