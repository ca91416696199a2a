"""The results store: one Parquet file per sweep job, written atomically, resumable by cell.

A **cell** is one condition of the grid evaluated over the job's whole frame set; its id
(``cell_id``) is a hash of its condition columns. A job writes ``<dir>/sweep-<hash>.parquet``
(the results, one row per cell) and ``<dir>/sweep-<hash>.ledger.parquet`` (the ledger rows of
those cells, ``v2x.ledger.LEDGER_SCHEMA``), where ``<hash>`` is the job's config hash. Each
write goes to a temporary file in the same folder and is moved into place with ``os.replace``,
the ledger first: a killed job leaves either the old or the new file, never half of one, and a
ledger row whose cell is not in the results is ignored (and rewritten) on resume.

Results columns (``RESULTS_SCHEMA``): the condition (``channel``, ``snr_mode``, ``snr_db``, ``codec``,
``bandwidth_ratio``, ``fusion``, ``pose_noise_m``, ``pose_noise_yaw_rad``, ``scheduler``,
``deadline_s``, ``bandwidth_hz``), the frame set (``dataset``, ``split``, ``num_frames``), the
metrics (``ap_30``, ``ap_50``, ``ap_70``, ``ap_70_invisible`` — AP on the objects the ego alone
cannot see, NaN without visibility — ``num_gt``, ``num_gt_invisible``, ``eval_convention``),
``realised_ratio`` (channel uses per real feature value actually sent), the ledger sums
(``v2x.ledger.LEDGER_SUMS``), and ``config_hash``, ``v2x_version``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from v2x import __version__
from v2x.ledger import LEDGER_SCHEMA, LEDGER_SUMS

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
)

#: Columns added after results files were first written, with the value older files imply.
ADDED_COLUMNS = {"snr_mode": "fixed"}

RESULTS_SCHEMA = pa.schema(
    [("cell_id", pa.string())]
    + list(CONDITION_COLUMNS)
    + [
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("num_frames", pa.int32()),
        ("ap_30", pa.float64()),
        ("ap_50", pa.float64()),
        ("ap_70", pa.float64()),
        ("ap_70_invisible", pa.float64()),
        ("num_gt", pa.int64()),
        ("num_gt_invisible", pa.int64()),
        ("eval_convention", pa.string()),
        ("realised_ratio", pa.float64()),
    ]
    + [(name, pa.float64()) for name in LEDGER_SUMS]
    + [("config_hash", pa.string()), ("v2x_version", pa.string())]
)


class CorruptResultsError(ValueError):
    """A results or ledger file that cannot be read or has the wrong schema."""


def stable_hash(data: object, length: int = 12) -> str:
    """Hex digest of the canonical JSON of ``data`` (sorted keys; floats by ``repr``)."""
    text = json.dumps(data, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def cell_id(condition: Mapping[str, object]) -> str:
    """Id of a cell from its condition columns (names of ``CONDITION_COLUMNS``)."""
    missing = [name for name, _ in CONDITION_COLUMNS if name not in condition]
    if missing:
        raise ValueError(f"results: condition lacks field(s) {missing}")
    key = {name: condition[name] for name, _ in CONDITION_COLUMNS}
    for name, kind in CONDITION_COLUMNS:
        if kind == pa.float64():
            key[name] = float(key[name])
    return stable_hash(key, 16)


def atomic_write_parquet(table: pa.Table, path: str | os.PathLike) -> None:
    """Write ``table`` to a temporary file beside ``path`` and ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_table(path: str | os.PathLike, schema: pa.Schema) -> pa.Table:
    """Read a Parquet file and check it has ``schema``'s columns; errors name the file."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupt file
        raise CorruptResultsError(f"results file {path} cannot be read ({exc})") from exc
    for name, value in ADDED_COLUMNS.items():  # files from before a column existed
        if name in schema.names and name not in table.column_names:
            table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise CorruptResultsError(f"results file {path} lacks column(s) {missing}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise CorruptResultsError(f"results file {path} has wrong column types ({exc})") from exc


def rows_to_table(rows: Sequence[Mapping[str, object]]) -> pa.Table:
    """Results rows (dicts with every ``RESULTS_SCHEMA`` column) → a table."""
    if not rows:
        return RESULTS_SCHEMA.empty_table()
    missing = [f.name for f in RESULTS_SCHEMA if f.name not in rows[0]]
    if missing:
        raise ValueError(f"results: row lacks column(s) {missing}")
    return pa.Table.from_pylist(
        [{f.name: r[f.name] for f in RESULTS_SCHEMA} for r in rows], schema=RESULTS_SCHEMA
    )


class ResultsStore:
    """The results and ledger files of one job.

    Args:
        directory: folder of the job's files.
        config_hash: the job's config hash (names the files; stored in every row).
        allow_corrupt: when the existing files cannot be read, move them aside
            (``<name>.corrupt``) and start over instead of raising ``CorruptResultsError``.
    """

    def __init__(
        self, directory: str | os.PathLike, config_hash: str, allow_corrupt: bool = False
    ) -> None:
        self.directory = Path(directory)
        self.config_hash = config_hash
        self.path = self.directory / f"sweep-{config_hash}.parquet"
        self.ledger_path = self.directory / f"sweep-{config_hash}.ledger.parquet"
        self.results = RESULTS_SCHEMA.empty_table()
        self.ledger = LEDGER_SCHEMA.empty_table()
        self._load(allow_corrupt)

    def _load(self, allow_corrupt: bool) -> None:
        try:
            if self.path.exists():
                self.results = read_table(self.path, RESULTS_SCHEMA)
                hashes = set(self.results.column("config_hash").to_pylist())
                if hashes - {self.config_hash}:
                    raise CorruptResultsError(
                        f"results file {self.path} holds rows of another config "
                        f"({sorted(hashes)}, expected {self.config_hash})"
                    )
                ids = self.results.column("cell_id").to_pylist()
                if len(ids) != len(set(ids)):
                    raise CorruptResultsError(f"results file {self.path} has duplicate cells")
            if self.ledger_path.exists() and self.results.num_rows:
                ledger = read_table(self.ledger_path, LEDGER_SCHEMA)
                done = pa.array(sorted(self.done_cells()), pa.string())
                import pyarrow.compute as pc

                self.ledger = ledger.filter(pc.is_in(ledger.column("cell_id"), value_set=done))
        except CorruptResultsError:
            if not allow_corrupt:
                raise
            for p in (self.path, self.ledger_path):
                if p.exists():
                    aside = p.with_name(p.name + ".corrupt")
                    os.replace(p, aside)
                    log.warning("results: %s is corrupt; moved to %s and starting over", p, aside)
            self.results = RESULTS_SCHEMA.empty_table()
            self.ledger = LEDGER_SCHEMA.empty_table()

    def done_cells(self) -> set[str]:
        return set(self.results.column("cell_id").to_pylist())

    def add(self, rows: Sequence[Mapping[str, object]], ledger: pa.Table | None = None) -> None:
        """Append finished cells (and their ledger rows) and rewrite both files atomically.

        Cells already present are skipped (never duplicated).
        """
        done = self.done_cells()
        new_rows = [dict(r) for r in rows if r["cell_id"] not in done]
        if not new_rows:
            return
        for r in new_rows:
            r.setdefault("config_hash", self.config_hash)
            r.setdefault("v2x_version", __version__)
        new_ids = {r["cell_id"] for r in new_rows}
        if ledger is not None and ledger.num_rows:
            import pyarrow.compute as pc

            keep = pc.is_in(
                ledger.column("cell_id"), value_set=pa.array(sorted(new_ids), pa.string())
            )
            self.ledger = pa.concat_tables([self.ledger, ledger.cast(LEDGER_SCHEMA).filter(keep)])
        self.results = pa.concat_tables([self.results, rows_to_table(new_rows)])
        atomic_write_parquet(self.ledger, self.ledger_path)
        atomic_write_parquet(self.results, self.path)


def read_results(
    paths: Iterable[str | os.PathLike], allow_corrupt: bool = False, ledger: bool = False
) -> pa.Table:
    """Merge results files (folders are searched for ``sweep-*.parquet``).

    ``ledger=True`` reads the matching ``*.ledger.parquet`` files instead. A file that cannot
    be read raises ``CorruptResultsError`` naming it, unless ``allow_corrupt`` (then it is
    reported in the log and skipped). Rows repeated across files (same config hash and cell)
    are kept once.
    """
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(
                f for f in p.rglob("sweep-*.parquet") if not f.name.endswith(".ledger.parquet")
            )
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"results: {p} does not exist")
    if ledger:
        files = [f.with_name(f.name.replace(".parquet", ".ledger.parquet")) for f in files]
        files = [f for f in files if f.exists()]
    schema = LEDGER_SCHEMA if ledger else RESULTS_SCHEMA
    tables = []
    for f in files:
        try:
            tables.append(read_table(f, schema))
        except CorruptResultsError as exc:
            if not allow_corrupt:
                raise CorruptResultsError(f"{exc}; pass allow_corrupt=true to skip it") from exc
            log.warning("skipping corrupt file: %s", exc)
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables(tables)
    if not ledger:
        keys = list(
            zip(table.column("config_hash").to_pylist(), table.column("cell_id").to_pylist())
        )
        seen: set = set()
        first = []
        for i, key in enumerate(keys):
            if key not in seen:
                seen.add(key)
                first.append(i)
        table = table.take(pa.array(first, pa.int64()))
    return table
