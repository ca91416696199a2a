"""The sweep's vocabulary (``v2x-sweep list``) and its console results table."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from v2x.results import AP_METRICS
from v2x.setting_labels import setting_differences
from v2x.sweep_plan import DATA_SOURCES, SNR_MODES

log = logging.getLogger(__name__)


def _per_class_columns(table: pa.Table) -> dict[str, tuple[str, str]]:
    """``{"ap_50/car": ("car", "0.5"), ...}`` for the per-class APs the rows carry (AP@0.5)."""
    if "per_class_ap" not in table.column_names:
        return {}
    classes: dict[str, None] = {}
    for text in table.column("per_class_ap").to_pylist():
        for cls in json.loads(text) if text else {}:
            classes.setdefault(cls)
    return {f"ap_50/{cls}": (cls, "0.5") for cls in classes}


def vocabulary() -> dict[str, tuple[str, list[str]]]:
    """Every name the sweep config accepts, per axis: ``{axis: (config field, names)}``."""
    from v2x.channels import CHANNELS, LINKS
    from v2x.network import LOS_MODES
    from v2x.perception.fusion import FUSIONS
    from v2x.scheduling import LATE_POLICIES, SCHEDULERS
    from v2x.semcom import CODECS
    from v2x.semcom import _load_all as _load_codecs

    _load_codecs()
    return {
        "channels": ("grid.channels", CHANNELS.names()),
        "codecs": ("grid.codecs", CODECS.names()),
        "fusions": ("grid.fusions", FUSIONS.names()),
        "snr modes": ("grid.snr_mode", list(SNR_MODES)),
        "link models": ("network.link_models", LINKS.names()),
        "los modes": ("network.los_mode", list(LOS_MODES)),
        "schedulers": ("budget.scheduler", SCHEDULERS.names()),
        "late policies": ("budget.late_policy", list(LATE_POLICIES)),
        "data sources": ("data.source", list(DATA_SOURCES)),
    }


def vocabulary_text() -> str:
    """``vocabulary()`` as one line per axis (what ``v2x-sweep list`` prints)."""
    rows = vocabulary()
    width = max(len(f"{axis} ({field_name}):") for axis, (field_name, _) in rows.items())
    return "\n".join(
        f"{f'{axis} ({field_name}):':<{width}} {', '.join(names)}"
        for axis, (field_name, names) in rows.items()
    )


#: Per-link columns the table derives from per-frame sums: ``{column: per-frame column}``.
PER_LINK = {
    "source_bits_per_link": "mean_source_bits_per_frame",
    "channel_uses_per_link": "mean_channel_uses_per_frame",
}


def _any(table: pa.Table, name: str) -> bool:
    """True when column ``name`` exists and some row holds a true / non-zero value."""
    return name in table.column_names and any(table.column(name).to_pylist())


def per_link(row: dict, source: str) -> float:
    """Per-link value of the per-frame column ``source`` of a results ``row``: the frame's
    total over its links that sent (``mean_links_per_frame``; NaN when none did)."""
    links = row["mean_links_per_frame"]
    return float(row[source]) / float(links) if links else math.nan


#: condition columns the table shows where the rows differ in them (rows that differ only in
#: a hidden axis would read as repeats)
VARYING_AXES = (
    "harq_max_rounds", "pose_noise_m", "pose_noise_yaw_rad", "scheduler", "deadline_s",
    "bandwidth_hz", "added_delay_s", "late_policy",
)  # fmt: skip


#: What, besides its condition, tells two settings apart (the frames, the detector, the codec's
#: weights, the code), with the short name the figures' labels give it (``v2x.plots``).
SETTING_COLUMNS = {
    "dataset": "data",
    "data_hash": "frames",
    "num_frames": "n",
    "detector_sha256": "detector",
    "codec_sha256": "codec",
    "code_hash": "code",
}
#: Hash columns, shown by their first 8 characters.
_HASHES = ("data_hash", "detector_sha256", "codec_sha256", "code_hash", "setting_key", "config_hash")


def _setting_columns(table: pa.Table, condition: Sequence[str]) -> list[str]:
    """The ``SETTING_COLUMNS`` in which rows of one shown ``condition`` differ (results of other
    frames, detectors or code merged from several files); where they differ in none of them,
    ``setting_key`` (or ``config_hash`` for rows from before it): without the column, such rows
    would read as repeats of one cell with different numbers."""
    names = [c for c in condition if c in table.column_names]
    groups: dict[tuple, list[dict]] = {}
    for r in table.to_pylist():
        key = tuple(None if isinstance(r[c], float) and r[c] != r[c] else r[c] for c in names)
        groups.setdefault(key, []).append(r)
    clashes = [g for g in groups.values() if len(g) > 1]
    if not clashes:
        return []
    shown = [
        name
        for name in SETTING_COLUMNS
        if name in table.column_names and any(len({r[name] for r in g}) > 1 for g in clashes)
    ]
    for name in ("setting_key", "config_hash"):
        if shown or name not in table.column_names:
            continue
        if any(len({r[name] for r in g}) > 1 for g in clashes):
            described = "setting" in table.column_names and all(r["setting"] for g in clashes for r in g)
            shown.append("setting" if described and name == "setting_key" else name)
    return shown


def _described_settings(rows: list[dict], condition: Sequence[str]) -> None:
    """Replace each row's ``setting`` JSON with the leaves of it in which the rows of its shown
    ``condition`` differ (``v2x.setting_labels.setting_differences``), or its key's first 8
    hex digits where they differ in none."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(str(r[c]) for c in condition if c != "setting"), []).append(r)
    for group in groups.values():
        for r, text in zip(group, setting_differences(group), strict=True):
            r["setting"] = text or str(r["setting_key"])[:8]


def results_table_text(table: pa.Table, columns: Sequence[str] | None = None) -> str:
    """A plain-text table of results rows (one line per cell), sorted by condition.

    An AP with a known 95 % interval (``<metric>_lo`` / ``_hi`` columns) prints as
    ``value [lo, hi]``; rows with per-class AP (``eval.per_class=true``) get an ``ap_50/<class>``
    column per class; rows averaged over seeds get ``num_seeds``.
    """
    if columns is None:
        columns = ["fusion", "codec", "channel", "bandwidth_ratio"]
        if "snr_mode" in table.column_names and "geometric" in table.column("snr_mode").to_pylist():
            columns.append("snr_mode")  # snr_db is then an offset over each link's own SNR
        for name in VARYING_AXES:  # the grid's other axes, where swept
            if name in table.column_names and len(set(table.column(name).to_pylist())) > 1:
                columns.append(name)
        if _any(table, "bits_per_value"):  # codecs at a fixed bit depth (digital_payload)
            columns.append("bits_per_value")
        columns += _setting_columns(table, [*columns, "snr_db"])
        columns += [
            "snr_db",
            "ap_30",
            "ap_50",
            "ap_70",
            "ap_70_invisible",
            "mean_channel_uses_per_frame",
            "mean_source_bits_per_frame",
            "mean_latency_s",
        ]
        vehicle = [  # vehicle AP (cars and trucks, OpenCOOD's): the field's headline metric
            name for name in ("vehicle_ap_50", "vehicle_ap_70")
            if name in table.column_names
            and any(v is not None and v == v for v in table.column(name).to_pylist())
        ]  # fmt: skip
        columns[columns.index("ap_70_invisible") + 1 : 0] = vehicle
        if _any(table, "bits_per_value"):  # realistic payloads: what one link needs
            columns[columns.index("mean_latency_s") : 0] = list(PER_LINK)
        if _any(table, "bits_estimated"):
            columns.append("bits_estimated")
    columns = list(columns)
    if "num_seeds" in table.column_names and max(table.column("num_seeds").to_pylist() or [1]) > 1:
        columns.append("num_seeds")  # rows are means over seeds (v2x.seed_aggregation.aggregate_seeds)
    per_class = _per_class_columns(table)
    condition = columns[: columns.index("snr_db") + 1] if "snr_db" in columns else columns[:5]
    extra = [
        f"{c}_{end}"
        for c in columns
        for end in ("lo", "hi")
        if f"{c}_{end}" in table.column_names and f"{c}_{end}" not in columns
    ]
    derived = [c for c in columns if c in PER_LINK]
    stored = [c for c in columns + extra if c not in PER_LINK]
    stored += [PER_LINK[c] for c in derived] + (["mean_links_per_frame"] if derived else [])
    stored += [c for c in ("bootstrap_unit", "bootstrap_units") if c in table.column_names]
    if "setting" in columns:
        stored.append("setting_key")
    rows = table.select(list(dict.fromkeys(stored))).to_pylist()
    if "setting" in columns:
        _described_settings(rows, condition)
    for row in rows:
        for name in derived:
            row[name] = per_link(row, PER_LINK[name])
    if per_class:
        for row, text in zip(rows, table.column("per_class_ap").to_pylist()):
            values = json.loads(text) if text else {}
            for name, (cls, thr) in per_class.items():
                row[name] = float(values.get(cls, {}).get(thr, math.nan))
        columns += list(per_class)

    def order(row: dict) -> tuple:
        key = []
        for c in condition:
            v = row[c]
            key.append(
                (0, v) if isinstance(v, str) else (1, -math.inf if v is None or v != v else v)
            )
        return tuple(key)

    rows.sort(key=order)

    formats = {
        c: column_format(
            [r[c] for r in rows]
            + [r[f"{c}_{end}"] for r in rows if _has_interval(r, c) for end in ("lo", "hi")],
            ap=c in AP_METRICS or c in per_class,
        )
        for c in columns
    }

    def cell(r: dict, c: str) -> str:
        fmt = formats[c]
        if c in _HASHES:
            return str(r[c])[:8]  # (as the figures' labels: enough to tell settings apart)
        if c == "bandwidth_ratio" and isinstance(r[c], float) and r[c] == r[c]:
            return ratio_text(r[c])
        if _has_interval(r, c):
            lo, hi = r[f"{c}_lo"], r[f"{c}_hi"]
            return f"{fmt(r[c])} [{fmt(lo)}, {fmt(hi)}]"  # the AP's 95 % interval
        return fmt(r[c])

    cells = [[cell(r, c) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
        for i, c in enumerate(columns)
    ]
    line = "  ".join(c.rjust(w) for c, w in zip(columns, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    out += _interval_notes([r for r in rows if any(_has_interval(r, c) for c in columns)])
    bare = [c for c in columns if c in AP_METRICS and any(_bare(r, c) for r in rows)]
    if bare:  # never an AP shown as if it were exact without saying so
        out.append(
            f"no interval: {', '.join(bare)} of some rows (computed with eval.bootstrap=0, or "
            "no resample of the frames had ground truth); a difference there may be noise"
        )
    return "\n".join(out)


def _decimals(values: list[float], most: int = 3) -> int | None:
    """The fewest decimals (0 to ``most``) that print every one of ``values`` exactly; ``None``
    when some needs more."""
    for d in range(most + 1):
        if all(abs(round(v, d) - v) <= 1e-9 * max(1.0, abs(v)) for v in values):
            return d
    return None


def column_format(values: Sequence[Any], ap: bool = False) -> Callable[[Any], str]:
    """How one table column prints its values: one notation and one number of decimals for the
    whole column (``3.65e+04`` beside ``3664.750``, or ``-10.000`` for a setting of -10 dB, read
    as different kinds of number). NaN prints ``-``, a non-float as ``str``.

    * ``ap`` (an AP and its interval): 3 decimals, the interval's too (``0.001 [0.000, 0.004]``);
    * a column reaching 1e6 (bits, channel uses): scientific, one mantissa width
      (``7.5e+06``, ``1.0e+00``), at most 3 decimals;
    * one reaching 1e4: whole numbers (``36500``, ``3665``);
    * otherwise the fewest decimals (up to 3) that print every value exactly (``-10``, ``-7.5``,
      ``0.1``), else 3, or 3 significant digits of its smallest non-zero value below 0.1
      (at most 6 decimals: ``0.000400``)."""
    floats = [float(v) for v in values if isinstance(v, float) and math.isfinite(v)]
    big = max((abs(v) for v in floats), default=0.0)
    if ap:
        spec = ".3f"
    elif big >= 1e6:
        mantissas = [float(f"{v:.3e}".split("e")[0]) for v in floats]  # (3 decimals at most)
        spec = f".{_decimals(mantissas) or 0}e"
    elif big >= 1e4:
        spec = ".0f"
    else:
        exact = _decimals(floats)
        small = min((abs(v) for v in floats if v), default=1.0)
        digits = max(3, min(6, 2 - math.floor(math.log10(small))))  # 3 significant of the least
        spec = f".{exact if exact is not None else digits}f"

    def fmt(v: Any) -> str:
        if not isinstance(v, float):
            return str(v)
        if math.isnan(v):
            return "-"
        text = f"{v:{spec}}"
        return text[1:] if text.startswith("-") and not text.strip("-0.e+") else text  # no -0

    return fmt


def ratio_text(ratio: float) -> str:
    """A bandwidth ratio as ``1/N`` when ``1 / ratio`` is a whole number (``1/64``, ``1/822``:
    the README's notation; three decimals made 1/822 and 1/1024 both ``0.001``), else with four
    significant digits (``0.0039``)."""
    inverse = 1.0 / ratio
    if abs(inverse - round(inverse)) > 1e-9 * inverse:
        return f"{ratio:.4g}"
    return "1" if round(inverse) == 1 else f"1/{round(inverse)}"


def table_with_convention(table: pa.Table, columns: Sequence[str] | None = None) -> str:
    """``results_table_text`` followed by one ``AP convention: {…}`` line per evaluation
    convention of the rows (matching procedure, AP interpolation, score sort, IoU mode, range;
    the IoU thresholds are the columns' ``ap_30``/``ap_50``/``ap_70``): what every app prints,
    so that no AP is shown without the convention it was computed under."""
    found = set(table.column("eval_convention").to_pylist()) - {None, ""}
    return "\n".join(
        [
            results_table_text(table, columns),
            *(f"AP convention: {c}" for c in sorted(found)),
            AP_COLUMNS_NOTE,
        ]
    )


#: What the AP columns pool (``v2x.sweep_rows``: ``overall`` and ``group/vehicle``), printed under
#: every table: OpenCOOD's AP@0.3/0.5/0.7 is one vehicle class, ``ap_30``/``ap_50``/``ap_70`` are not.
AP_COLUMNS_NOTE = (
    "AP columns: ap_30/ap_50/ap_70 pool every class (car, truck, pedestrian, cyclist) in one "
    "ranking (labels matched only with eval.class_aware); ap_70_invisible: of those, the boxes "
    "the ego sees no point of; vehicle_ap_30/vehicle_ap_50/vehicle_ap_70: cars and trucks only "
    "(OpenCOOD's vehicle AP)"
)


#: Fewer resampled units than this get the footnote's warning: a percentile bootstrap over a few
#: clusters draws only a few distinct multisets (C(2m - 1, m) for m units) and covers less than
#: its nominal 95 % (Cameron, Gelbach & Miller 2008, "Bootstrap-based improvements for inference
#: with clustered errors").
FEW_UNITS = 10


def _interval_notes(rows: list[dict]) -> list[str]:
    """The table's footnote on its intervals: what the ``rows`` (those showing an interval)
    resample and how many units (``bootstrap_units``; 0: unknown), and a warning below
    ``FEW_UNITS``. ``[]`` without such rows."""
    if not rows:
        return []
    counts: dict[str, set[int]] = {}
    for r in rows:
        counts.setdefault(r.get("bootstrap_unit") or "frame", set()).add(
            r.get("bootstrap_units") or 0
        )
    kinds = []
    for unit, found in sorted(counts.items(), key=lambda kv: _INTERVAL_KINDS.get(kv[0], kv[0])):
        known = sorted(found - {0})
        kind = _INTERVAL_KINDS.get(unit, unit)
        if known and unit != "seed":  # "seed+sequence": the sequences of each seed's rows
            span = str(known[0]) if len(known) == 1 else f"{known[0]}-{known[-1]}"
            each = " per seed" if unit.startswith("seed+") else ""
            kind += f" ({span} {unit.removeprefix('seed+')}s{each})"
        kinds.append(kind)
    notes = [f"[lo, hi]: 95 % interval, {'; '.join(kinds)}"]
    few = few_units_note(min((n for found in counts.values() for n in found if n), default=0))
    return notes + ([few] if few else [])


def few_units_note(units: int) -> str:
    """The warning under intervals resampled from ``units`` (1 ≤ units < ``FEW_UNITS``)
    sequences or frames; ``""`` otherwise (0: unknown)."""
    if not 0 < units < FEW_UNITS:
        return ""
    return (
        f"few units: an interval drawn from {units} units is coarse and covers less than 95 % "
        "(read it as the spread between them; more towns/scenes or frames narrow it honestly)"
    )


def _has_interval(row: dict, column: str) -> bool:
    """Whether ``row`` holds a known interval of ``column`` (finite ``_lo`` and ``_hi``)."""
    lo, hi = row.get(f"{column}_lo"), row.get(f"{column}_hi")
    return isinstance(lo, float) and isinstance(hi, float) and lo == lo and hi == hi


def _bare(row: dict, column: str) -> bool:
    """An AP shown without its interval: finite, with no known interval."""
    value = row.get(column)
    return isinstance(value, float) and math.isfinite(value) and not _has_interval(row, column)


#: what each ``bootstrap_unit`` means, for the table's footnote
_INTERVAL_KINDS = {
    "frame": "bootstrap over frames",
    "sequence": "bootstrap over whole sequences",
    "seed": "Student-t over seeds",
    "seed+frame": "over seeds: Student-t over seeds and bootstrap over frames in quadrature",
    "seed+sequence": "over seeds: Student-t over seeds and bootstrap over sequences in quadrature",
}



