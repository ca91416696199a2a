"""The results store: one Parquet file per sweep job, written atomically, resumable by cell.

A **cell** is one condition of the grid evaluated over the job's whole frame set; its id
(``cell_id``) is a hash of its condition columns together with everything else that changes its
numbers (the sweep's ``setting_key``: the code that produced them, ``code_hash``; the detector's
and codec's checkpoint hashes; the frames' content hash; every config field that reaches the
pipeline; and the seed). Equal ids mean equal numbers, so cells are reused across jobs and files
(``v2x.sweep``) and merged without duplicates (``read_results``). A job writes
``<dir>/sweep-<hash>.parquet`` (the results, a row per cell) and
``<dir>/sweep-<hash>.ledger.parquet`` (those cells' ledger rows, ``LEDGER_SCHEMA``), ``<hash>``
the job's config hash, each through a temporary file moved into place (``os.replace``), the
ledger first: a killed job leaves the old or the new file, never half of one, and a ledger row
whose cell is not in the results is ignored (and rewritten) on resume.

Results columns (``RESULTS_SCHEMA``, each described in docs/sweeps.md, "Results schema"): the
condition (``CONDITION_COLUMNS``), the frame set, the APs (``AP_METRICS``) with their bootstrap
95 % intervals (``<metric>_lo`` / ``_hi``), the unit they resample and how many of them there
are (``bootstrap_unit``, ``bootstrap_units``), the ground-truth counts, the ledger sums
(``v2x.ledger.LEDGER_SUMS``), ``config_hash`` (the job), ``v2x_version`` and the provenance that
keys the cell (``PROVENANCE_COLUMNS``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from v2x import __version__
from v2x.common import atomic_path
from v2x.ledger import LEDGER_SCHEMA, LEDGER_SUMS
from v2x.provenance import CODE_PACKAGES, code_hash, source_tree_hash, stable_hash  # noqa: F401

log = logging.getLogger(__name__)

CONDITION_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("channel", pa.string()),
    ("snr_mode", pa.string()),
    ("snr_db", pa.float64()),
    ("codec", pa.string()),
    ("bandwidth_ratio", pa.float64()),
    ("fusion", pa.string()),
    ("pose_noise_m", pa.float64()),
    ("pose_noise_yaw_rad", pa.float64()),
    ("scheduler", pa.string()),
    ("deadline_s", pa.float64()),
    ("bandwidth_hz", pa.float64()),
    ("added_delay_s", pa.float64()),
    ("late_policy", pa.string()),
    ("harq_max_rounds", pa.int64()),
    ("bits_per_value", pa.int64()),
)

#: The AP metrics of a results row; each has a bootstrap interval ``<metric>_lo``/``<metric>_hi``.
AP_METRICS: tuple[str, ...] = ("ap_30", "ap_50", "ap_70", "ap_70_invisible") + tuple(
    f"vehicle_{m}" for m in ("ap_30", "ap_50", "ap_70")
)

#: Provenance of a row: what, besides its condition, determines its numbers.
PROVENANCE_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("seed", pa.int64()),
    ("data_path", pa.string()),
    ("data_hash", pa.string()),
    ("detector_sha256", pa.string()),
    ("codec_sha256", pa.string()),
    ("code_hash", pa.string()),
    ("setting_key", pa.string()),
    ("setting", pa.string()),  # what setting_key hashes, as JSON (``v2x.sweep_group.setting_text``)
)

#: Columns added after results files were first written, with the value older files imply
#: (``""``: unknown provenance; such rows are never reused by a sweep, their ``cell_id`` being
#: a hash of the condition alone).
ADDED_COLUMNS: dict[str, object] = {
    "snr_mode": "fixed",
    "added_delay_s": 0.0,
    "late_policy": "",  # unknown: older files kept it in the budget only
    "harq_max_rounds": 0,
    "retransmission_rounds": float("nan"), "mcs": float("nan"),  # older ledger files: unknown
    "feedback_s": 0.0,  # ledger files from before the column: feedback was instantaneous
    **{m: float("nan") for m in ("vehicle_ap_30", "vehicle_ap_50", "vehicle_ap_70")},  # (unscored)
    "bits_per_value": 0,
    "bits_estimated": False,
    **{f"{m}_{end}": float("nan") for m in AP_METRICS for end in ("lo", "hi")},
    "bootstrap_unit": "frame",  # before the column, every interval resampled frames
    "bootstrap_units": 0,  # unknown: files from before the column
    "seed": -1,
    "data_path": "",
    "data_hash": "",
    "detector_sha256": "",
    "codec_sha256": "",
    "code_hash": "",
    "setting_key": "", "setting": "",
    "per_class_ap": "",
}

RESULTS_SCHEMA = pa.schema(
    [("cell_id", pa.string())]
    + list(CONDITION_COLUMNS)
    + [
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("num_frames", pa.int32()),
    ]
    + [(m, pa.float64()) for m in AP_METRICS]
    + [(f"{m}_{end}", pa.float64()) for m in AP_METRICS for end in ("lo", "hi")]
    + [
        ("bootstrap_unit", pa.string()),
        ("bootstrap_units", pa.int32()),
        ("num_gt", pa.int64()),
        ("num_gt_invisible", pa.int64()),
        ("eval_convention", pa.string()),
        ("realised_ratio", pa.float64()),
        ("bits_estimated", pa.bool_()),
    ]
    + [(name, pa.float64()) for name in LEDGER_SUMS]
    + [("per_class_ap", pa.string())]
    + [("config_hash", pa.string()), ("v2x_version", pa.string())]
    + list(PROVENANCE_COLUMNS)
)

#: Columns that may differ between two rows of the same cell (who wrote them, when).
NOT_NUMBERS: tuple[str, ...] = ("config_hash", "v2x_version", "data_path")


class CorruptResultsError(ValueError):
    """A results or ledger file that cannot be read or has the wrong schema."""


class ConflictingResultsError(ValueError):
    """Two results files hold the same cell (same ``cell_id``) with different numbers."""


def cell_id(
    condition: Mapping[str, object], setting_key: str | None = None, seed: int | None = None
) -> str:
    """Id of a cell: a hash of its condition columns (names of ``CONDITION_COLUMNS``) and, for
    sweep cells, of its ``setting_key`` (everything else that changes its numbers) and seed."""
    # conditions written before a column existed take the value older files imply
    condition = {
        **{k: v for k, v in ADDED_COLUMNS.items() if k in dict(CONDITION_COLUMNS)},
        **condition,
    }
    missing = [name for name, _ in CONDITION_COLUMNS if name not in condition]
    if missing:
        raise ValueError(f"results: condition lacks field(s) {missing}")
    key: dict[str, object] = {name: condition[name] for name, _ in CONDITION_COLUMNS}
    for name in ("harq_max_rounds", "bits_per_value"):
        if not key.get(name):
            # no retransmission / no fixed bit depth: the ids (hence seeds) of cells from
            # before the column existed
            key.pop(name, None)
    for name, kind in CONDITION_COLUMNS:
        if name in key and kind == pa.float64():
            key[name] = float(key[name])
    if setting_key is not None or seed is not None:
        key = {"condition": key, "setting": setting_key, "seed": seed}
    return stable_hash(key, 16)


def atomic_write_parquet(table: pa.Table, path: str | os.PathLike) -> None:
    """Write ``table`` to a temporary file beside ``path`` and ``os.replace`` it into place.

    The file gets the permissions of any file the user creates (``0666`` less the umask).
    Only text columns are dictionary-encoded (ids, names: few distinct values per file); the
    numbers are stored plain, which Parquet's writer does without building a hash table of
    every value (a 71,680-row ledger: half the write time, a fifth of the read time, no larger).
    """
    text = [f.name for f in table.schema if pa.types.is_string(f.type)]
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, use_dictionary=text)


def read_table(path: str | os.PathLike, schema: pa.Schema) -> pa.Table:
    """Read a Parquet file and check it has ``schema``'s columns; errors name the file."""
    path = Path(path)
    what = "ledger file" if schema.equals(LEDGER_SCHEMA) else "results file"
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupt file
        raise CorruptResultsError(f"{what} {path} cannot be read ({exc})") from exc
    own = table.column_names
    for name, value in ADDED_COLUMNS.items():  # files from before a column existed
        if name in schema.names and name not in table.column_names:
            kind = schema.field(name).type
            table = table.append_column(name, pa.array([value] * table.num_rows, kind))
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise CorruptResultsError(
            f"{what} {path} lacks column(s) {_names(missing)}; it has "
            f"{_names(own)}, expected those of v2x.results."
            f"{'LEDGER' if what == 'ledger file' else 'RESULTS'}_SCHEMA"
        )
    columns = []
    for f in schema:  # one by one: a failure names its column (Arrow's message, the value)
        try:
            columns.append(table.column(f.name).cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            was, where = table.schema.field(f.name).type, f"{what} {path}"
            msg = f"{where} has wrong column types: '{f.name}' is {was}, expected {f.type} ({exc})"
            raise CorruptResultsError(msg) from exc
    return pa.Table.from_arrays(columns, schema=schema)


def _names(names: Sequence[str]) -> str:
    """Column names for a message: the first 8, and how many in all."""
    return "[" + ", ".join(names[:8]) + (f", … ({len(names)} in all)]" if names[8:] else "]")


def rows_to_table(rows: Sequence[Mapping[str, object]]) -> pa.Table:
    """Results rows (dicts with every ``RESULTS_SCHEMA`` column; those of ``ADDED_COLUMNS`` may
    be left out) → a table."""
    if not rows:
        return RESULTS_SCHEMA.empty_table()
    rows = [{**ADDED_COLUMNS, **r} for r in rows]  # columns newer than the row's writer
    missing = [f.name for f in RESULTS_SCHEMA if f.name not in rows[0]]
    if missing:
        raise ValueError(f"results: row lacks column(s) {missing}")
    return pa.Table.from_pylist(
        [{f.name: r[f.name] for f in RESULTS_SCHEMA} for r in rows], schema=RESULTS_SCHEMA
    )


def move_aside(path: Path) -> Path:
    """Rename an unreadable file to ``<name>.corrupt`` (``.corrupt.1``, ``.corrupt.2``, … when
    earlier ones exist: a moved-aside file is never overwritten); returns the new path."""
    aside = path.with_name(path.name + ".corrupt")
    n = 0
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt.{n}")
    os.rename(path, aside)
    return aside


class ResultsStore:
    """The results and ledger files of one job.

    Args:
        directory: folder of the job's files.
        config_hash: the job's config hash (names the files; stored in every row).
        allow_corrupt: when an existing file cannot be read, move that file (only that one)
            aside (``<name>.corrupt``, never overwriting an earlier one) and recompute its cells
            instead of raising ``CorruptResultsError``.
        order: cell ids in the order the files keep their rows (a sweep's grid order), whatever
            order the cells are added in (computing order, devices, resumed runs); cells not
            named follow, in the order they were added. Ledger rows follow their cells (a
            cell's own rows keep their order). Empty: the order of adding.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        config_hash: str,
        allow_corrupt: bool = False,
        order: Sequence[str] = (),
    ) -> None:
        self.directory = Path(directory)
        self.config_hash = config_hash
        self._order = pa.array(list(order), pa.string())
        self.path = self.directory / f"sweep-{config_hash}.parquet"
        self.ledger_path = self.directory / f"sweep-{config_hash}.ledger.parquet"
        self.results = RESULTS_SCHEMA.empty_table()
        self.ledger = LEDGER_SCHEMA.empty_table()
        self._load(allow_corrupt)

    def _aside(self, path: Path, exc: CorruptResultsError, allow_corrupt: bool) -> None:
        if not allow_corrupt:
            raise CorruptResultsError(
                f"{exc}; pass allow_corrupt=true to move it aside and recompute its cells"
            ) from exc
        aside = move_aside(path)
        log.warning("results: %s; moved it to %s, its cells will be recomputed", exc, aside)

    def _load(self, allow_corrupt: bool) -> None:
        if self.path.exists():
            try:
                results = read_table(self.path, RESULTS_SCHEMA)
                hashes = set(results.column("config_hash").to_pylist())
                if hashes - {self.config_hash}:
                    raise CorruptResultsError(
                        f"results file {self.path} holds rows of another config "
                        f"({sorted(hashes)}, expected {self.config_hash})"
                    )
                ids = results.column("cell_id").to_pylist()
                if len(ids) != len(set(ids)):
                    raise CorruptResultsError(f"results file {self.path} has duplicate cells")
                self.results = results
            except CorruptResultsError as exc:
                self._aside(self.path, exc, allow_corrupt)
        if self.results.num_rows and not self.ledger_path.exists():  # deleted, not copied
            exc = CorruptResultsError(
                f"results file {self.path} has no ledger file {self.ledger_path.name} beside it"
            )
            if not allow_corrupt:
                raise CorruptResultsError(f"{exc}; pass allow_corrupt=true to recompute its cells")
            log.warning("results: %s; its cells will be recomputed", exc)
            self.results = RESULTS_SCHEMA.empty_table()  # (as for an unreadable ledger)
        if self.ledger_path.exists() and self.results.num_rows:
            try:
                ledger = read_table(self.ledger_path, LEDGER_SCHEMA)
            except CorruptResultsError as exc:
                self._aside(self.ledger_path, exc, allow_corrupt)
                # Results without their ledger rows would plot as cells that sent nothing.
                self.results = RESULTS_SCHEMA.empty_table()
                return
            import pyarrow.compute as pc

            done = pa.array(sorted(self.done_cells()), pa.string())
            self.ledger = ledger.filter(pc.is_in(ledger.column("cell_id"), value_set=done))

    def done_cells(self) -> set[str]:
        """Ids of the cells in the job's results file."""
        return set(self.results.column("cell_id").to_pylist())

    def add(self, rows: Sequence[Mapping[str, object]], ledger: pa.Table | None = None) -> None:
        """Append finished cells (and their ledger rows) and rewrite both files atomically.

        Cells already present are skipped (never duplicated); every row gets this job's
        ``config_hash`` (cells reused from other jobs' files are re-homed here).
        """
        done = self.done_cells()
        new_rows = [dict(r) for r in rows if r["cell_id"] not in done]
        if not new_rows:
            return
        for r in new_rows:
            r["config_hash"] = self.config_hash
            r.setdefault("v2x_version", __version__)
            for name, value in ADDED_COLUMNS.items():
                r.setdefault(name, value)
        new_ids = {r["cell_id"] for r in new_rows}
        if ledger is not None and ledger.num_rows:
            import pyarrow.compute as pc

            keep = pc.is_in(
                ledger.column("cell_id"), value_set=pa.array(sorted(new_ids), pa.string())
            )
            self.ledger = pa.concat_tables([self.ledger, ledger.cast(LEDGER_SCHEMA).filter(keep)])
            self.ledger = self._in_order(self.ledger)
        self.results = self._in_order(pa.concat_tables([self.results, rows_to_table(new_rows)]))
        atomic_write_parquet(self.ledger, self.ledger_path)
        atomic_write_parquet(self.results, self.path)

    def _in_order(self, table: pa.Table) -> pa.Table:
        """``table``'s rows by their cell's place in ``order`` (a stable sort: rows of one cell,
        and of cells ``order`` does not name, keep theirs)."""
        if not len(self._order):
            return table
        import pyarrow.compute as pc

        rank = pc.index_in(table.column("cell_id"), value_set=self._order)
        rank = pc.fill_null(rank, len(self._order))
        return table.take(pc.sort_indices(rank))  # Arrow's sort_indices is stable


def results_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The results files named by ``paths`` (folders are searched for ``sweep-*.parquet``)."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(
                f for f in p.rglob("sweep-*.parquet") if not f.name.endswith(".ledger.parquet")
            )
        elif p.name.endswith(".ledger.parquet"):
            raise ValueError(
                f"results: {p} is a ledger file; expected a results file "
                f"({p.name.replace('.ledger.parquet', '.parquet')}) or the folder holding it"
            )
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(
                f"results: {p} does not exist; expected a results file (sweep-*.parquet) or a "
                "folder holding them (a sweep's output_dir)"
            )
    return files


def ledger_path_of(results_file: Path) -> Path:
    """The ledger file beside a results file."""
    return results_file.with_name(results_file.name.replace(".parquet", ".ledger.parquet"))


def _same_numbers(a: Mapping[str, object], b: Mapping[str, object]) -> list[str]:
    """Columns (other than ``NOT_NUMBERS``) in which rows ``a`` and ``b`` differ (NaN = NaN)."""
    differ = []
    for name in a:
        if name in NOT_NUMBERS:
            continue
        x, y = a[name], b.get(name)
        if x == y or (isinstance(x, float) and isinstance(y, float) and x != x and y != y):
            continue
        differ.append(name)
    return differ


def _row_key(row: Mapping[str, object]) -> tuple:
    """Rows with the same key are the same cell: the cell id of rows with provenance; rows from
    before provenance existed only within their own config (their id is the condition's)."""
    if row.get("setting_key"):
        return ("cell", row["cell_id"])
    return ("legacy", row["config_hash"], row["cell_id"])


def read_results(
    paths: Iterable[str | os.PathLike], allow_corrupt: bool = False, ledger: bool = False
) -> pa.Table:
    """Merge results files (folders are searched for ``sweep-*.parquet``).

    ``ledger=True`` reads the matching ``*.ledger.parquet`` files instead. A file that cannot
    be read raises ``CorruptResultsError`` naming it, unless ``allow_corrupt`` (then it is
    reported in the log and skipped). A cell held by several files (same ``cell_id``: same
    condition, code, checkpoints, data, config and seed) is kept once, and its ledger rows are
    those of the file whose results row is kept; the same cell with different numbers in two
    files raises ``ConflictingResultsError`` naming both.
    """
    return _read(paths, allow_corrupt, ledger)[bool(ledger)]


def read_results_and_ledger(
    paths: Iterable[str | os.PathLike], allow_corrupt: bool = False
) -> tuple[pa.Table, pa.Table]:
    """``read_results`` and ``read_results(..., ledger=True)`` from one reading of the results
    files: with ``allow_corrupt``, each corrupt file is reported once, not once per table."""
    return _read(paths, allow_corrupt, True)


def _read(paths: Iterable[str | os.PathLike], allow_corrupt: bool, ledger: bool) -> tuple:
    """(results, ledger table or ``None`` unless ``ledger``) of ``read_results``."""
    files = results_files(paths)
    tables: list[tuple[Path, pa.Table]] = []
    for f in files:
        try:
            tables.append((f, read_table(f, RESULTS_SCHEMA)))
        except CorruptResultsError as exc:
            if not allow_corrupt:
                raise CorruptResultsError(f"{exc}; pass allow_corrupt=true to skip it") from exc
            log.warning("leaving out a corrupt file's rows and ledger rows: %s", exc)
    kept: dict[tuple, tuple[Path, dict]] = {}
    by_file: dict[Path, list[int]] = {}
    cells_of: dict[Path, set[str]] = {}
    for f, table in tables:
        for i, row in enumerate(table.to_pylist()):
            key = _row_key(row)
            if key in kept:
                first, other = kept[key]
                differ = _same_numbers(other, row)
                if differ:
                    raise ConflictingResultsError(
                        f"results: cell {row['cell_id']} ({row['fusion']}/{row['codec']}/"
                        f"{row['channel']} at {row['snr_db']} dB) has different {differ} in "
                        f"{first} and {f}; the same code, data, config and seed must give the "
                        "same numbers: remove the wrong file or rerun into a fresh output_dir"
                    )
                continue
            kept[key] = (f, row)
            by_file.setdefault(f, []).append(i)
            cells_of.setdefault(f, set()).add(str(row["cell_id"]))
    parts = [t.take(pa.array(by_file[f], pa.int64())) for f, t in tables if f in by_file]
    results = pa.concat_tables(parts) if parts else RESULTS_SCHEMA.empty_table()
    if not ledger:
        return results, None
    import pyarrow.compute as pc

    parts = []
    for f in (f for f, _ in tables if f in cells_of):
        path = ledger_path_of(f)
        if not path.exists():  # its cells would be missing from every ledger figure
            note = f"results file {f} has no ledger file {path.name} beside it"
            if not allow_corrupt:
                raise CorruptResultsError(f"{note}; pass allow_corrupt=true to read without it")
            log.warning("leaving out the ledger rows of %d cell(s): %s", len(cells_of[f]), note)
            continue
        try:
            table = read_table(path, LEDGER_SCHEMA)
        except CorruptResultsError as exc:
            if not allow_corrupt:
                raise CorruptResultsError(f"{exc}; pass allow_corrupt=true to skip it") from exc
            log.warning("leaving out the ledger rows of %d cell(s): %s", len(cells_of[f]), exc)
            continue
        value_set = pa.array(sorted(cells_of[f]), pa.string())
        parts.append(table.filter(pc.is_in(table.column("cell_id"), value_set=value_set)))
    return results, pa.concat_tables(parts) if parts else LEDGER_SCHEMA.empty_table()


def __getattr__(name: str) -> Any:
    """``aggregate_seeds`` lives in ``v2x.seed_aggregation`` (which builds on this module's
    schema); the import path ``v2x.results.aggregate_seeds`` keeps working."""
    if name == "aggregate_seeds":
        from v2x.seed_aggregation import aggregate_seeds

        return aggregate_seeds
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
