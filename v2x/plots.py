"""Figures from sweep results: ``make_plots(results paths) -> files``.

* ``ap_vs_snr``: the chosen AP metric against SNR, one line per (fusion, codec, ratio), one
  panel per channel (ego-only / late / early fusion, which use no codec, appear in every panel).
* ``ap_vs_bandwidth``: AP against channel uses per frame (from the ledger sums; log axis), one
  line per (fusion, codec, ratio), plus the Pareto frontier over every cell.
* ``latency_aoi_cdf``: empirical CDFs of per-link latency and age of information (ledger rows).
* ``snr_map``: every link of the ledger drawn over the town, coloured by its geometric SNR.
* ``ap_vs_delay`` (results with more than one ``added_delay_s``): the AP metric against the
  added delay and against the mean age of information (ledger), one line per (fusion, codec,
  ratio, late policy) and SNR, ego-only as a reference line.
* ``ap_vs_payload`` (settings that differ only in their codec's or fusion's options, e.g.
  where2comm's ``max_fraction``): the AP metric against the payload per collaborator and against
  its mean latency (ledger), one line per bandwidth: where a larger, slower payload stops paying.

Results are never mixed: rows are grouped by everything that defines a cell but the seed
(condition and ``setting_key``: code, checkpoints, data, config) and averaged over seeds
(``v2x.seed_aggregation.aggregate_seeds``); lines of different settings are drawn and labelled apart
(the label names what differs: dataset, frames, detector, codec, code). Every AP carries its
95 % interval — bootstrap over sequences or frames for one seed (``bootstrap_unit``),
for several seeds the Student-t interval over seeds and the frames' bootstrap error added in
quadrature (``bootstrap_unit`` ``seed+sequence``) — drawn as
error bars and printed in the table. Conflicting duplicates (the same cell with different
numbers in two files) stop ``read_results`` with both files named.

Each figure is written in every requested format (PNG and PDF by default); a plain-text table
of the results goes to the console.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from v2x.common import check_switch
from v2x.figures import legend as _legend
from v2x.figures import pyplot as _plt
from v2x.figures import save_figure as _save
from v2x.output_folders import writable_folder
from v2x.plots_ledger import plot_latency_aoi, plot_snr_map  # noqa: F401 - also reachable here
from v2x.results import AP_METRICS, read_results_and_ledger
from v2x.results_table import SETTING_COLUMNS, ratio_text
from v2x.seed_aggregation import aggregate_seeds
from v2x.setting_labels import setting_differences

METRICS = AP_METRICS
#: The figures' metric unless one is named: the README's headline, vehicle AP@0.7 (cars and
#: trucks, OpenCOOD's convention); results from before the vehicle columns fall back on
#: ``FALLBACK_METRIC`` (AP@0.5 pooled over every class), with a warning.
DEFAULT_METRIC = "vehicle_ap_70"
FALLBACK_METRIC = "ap_50"
log = logging.getLogger(__name__)
#: Bandwidths from this one up (1 THz) are labelled "ideal link" (latency ≈ 0).
IDEAL_BANDWIDTH_HZ = 1e12
#: Provenance that tells two settings of one line apart, with its short name in labels.
_DISTINGUISH = (*SETTING_COLUMNS.items(), ("seeds", "seeds"))


def _short(value: object) -> str:
    text = str(value)
    return text[:8] if len(text) == 64 else text


def label_settings(rows: list[dict]) -> None:
    """Set ``row["label"]`` to ``_series_label`` plus, where one label covers several settings
    (``setting_key``), the provenance that differs between them, else the leaves of their
    ``setting`` that differ (``v2x.setting_labels``: ``eval.precision=fp16``), else the key."""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_label[_series_label(r)].append(r)
    for base, others in by_label.items():
        if len({str(o.get("setting_key") or o.get("config_hash")) for o in others}) == 1:
            for r in others:
                r["label"] = base
            continue
        differing = [(n, short) for n, short in _DISTINGUISH if len({str(o.get(n)) for o in others}) > 1]
        for r, difference in zip(others, setting_differences(others), strict=True):
            parts = [f"{short}={_short(r.get(name))}" for name, short in differing]
            if not parts:
                key = _short(r.get("setting_key") or r.get("config_hash"))[:8]
                parts = [difference or f"setting={key}"]
            r["label"] = f"{base} [{', '.join(parts)}]"


def _interval(row: dict, metric: str) -> tuple[float, float]:
    """(below, above) error-bar lengths of ``metric`` (NaN where the interval is unknown)."""
    value, lo, hi = row[metric], row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if lo is None or hi is None or not (lo == lo and hi == hi and value == value):
        return math.nan, math.nan
    return max(value - lo, 0.0), max(hi - value, 0.0)


def _ego_level(ax, rows: list[dict], metric: str, label: str = "ego only") -> None:
    """Ego-only ``metric`` as a grey reference line (mean over its rows, which no link changes)
    with its 95 % interval as a grey band (mean of the rows' bounds; none where unknown); one
    line per setting (``label_settings``' labels: other frames, detector, code) where the rows
    hold several, never one mean of different settings' APs."""
    ego = [r for r in rows if r["fusion"] == "none" and r[metric] == r[metric]]
    settings: dict[str, list[dict]] = defaultdict(list)
    for r in ego:
        settings[r.get("label") or _series_label(r)].append(r)
    for k, name in enumerate(sorted(settings)):
        group = settings[name]
        suffix = name.removeprefix(_series_label(group[0])).strip() if len(settings) > 1 else ""
        ax.axhline(
            float(np.mean([r[metric] for r in group])),
            color="grey",
            ls=("--", ":", "-.")[k % 3],
            lw=1,
            label=f"{label} {suffix}".strip(),
        )
        bounds = [(r.get(f"{metric}_lo"), r.get(f"{metric}_hi")) for r in group]
        if all(lo is not None and hi is not None and lo == lo and hi == hi for lo, hi in bounds):
            lo, hi = np.mean(bounds, axis=0)
            ax.axhspan(float(lo), float(hi), color="grey", alpha=0.15, lw=0)


def _draw(ax, pts: list[tuple], style: str, label: str, **kwargs) -> None:
    """A line through ``(x, y, below, above)`` points, with error bars where known."""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    below = [0.0 if p[2] != p[2] else p[2] for p in pts]
    above = [0.0 if p[3] != p[3] else p[3] for p in pts]
    if any(p[2] == p[2] for p in pts):
        ax.errorbar(xs, ys, yerr=[below, above], fmt=style, marker="o", ms=3, capsize=2,
                    label=label, **kwargs)
    else:
        ax.plot(xs, ys, style, marker="o", ms=3, label=label, **kwargs)


def _series_label(row: dict) -> str:
    label = row["fusion"]
    if row["codec"] != "n/a":
        label += f" + {row['codec']}"
        if row["bandwidth_ratio"] == row["bandwidth_ratio"]:  # not NaN
            label += f" (ρ={ratio_text(row['bandwidth_ratio'])})"
        if row.get("bits_per_value"):
            label += f" ({row['bits_per_value']} bit/value)"
        if row.get("bits_estimated"):
            label += " [bits estimated]"
    if row["pose_noise_m"] or row["pose_noise_yaw_rad"]:
        label += f" [σ={row['pose_noise_m']:g} m, {row['pose_noise_yaw_rad']:g} rad]"
    if row.get("harq_max_rounds"):
        label += f" [{row['harq_max_rounds']} retx rounds]"
    return label + _delay_label(row)


def _delay_label(row: dict, with_delay: bool = True) -> str:
    """`` [+Δ ms, policy]`` for rows off today's defaults (no added delay, ``drop``)."""
    parts = []
    delay = row.get("added_delay_s") or 0.0
    if with_delay and delay == delay and delay:
        parts.append(f"+{delay * 1e3:g} ms")
    if row.get("late_policy") not in (None, "", "drop"):
        parts.append(str(row["late_policy"]))
    return f" [{', '.join(parts)}]" if parts else ""


def plot_ap_vs_rounds(
    rows: list[dict], metric: str, out_dir: Path, formats: Sequence[str]
) -> list[Path]:
    """``metric`` against ``harq_max_rounds`` (retransmission rounds), one line per (fusion,
    codec, channel, SNR); drawn only when the results hold more than one number of rounds."""
    if len({r.get("harq_max_rounds", 0) for r in rows}) < 2:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    series: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    for r in rows:
        if r["codec"] == "n/a":
            continue
        label = f"{r['fusion']} + {r['codec']} / {r['channel']} @ {r['snr_db']:g} dB"
        series[label].append((r.get("harq_max_rounds", 0), r[metric], *_interval(r, metric)))
    for label in sorted(series):
        _draw(ax, sorted(series[label]), "-", label)
    ax.set_xlabel("retransmission rounds (HARQ / ARQ, harq_max_rounds)")
    ax.set_ylabel(metric_label(metric))
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=7)
    fig.suptitle(f"{metric_label(metric)} vs retransmission rounds")
    files = _save(fig, out_dir, "ap_vs_rounds", formats)
    plt.close(fig)
    return files


def metric_label(metric: str) -> str:
    """A results column as the field writes it: ``ap_50`` → ``AP@0.5``, ``vehicle_ap_70`` →
    ``vehicle AP@0.7``, ``ap_70_invisible`` → ``AP@0.7 (ego-invisible)``, ``ap_50/car`` →
    ``car AP@0.5``; anything else as it is."""
    match = re.fullmatch(r"(?:(\w+?)_)?ap_(\d\d)(_invisible)?(?:/(\w+))?", metric)
    if match is None:
        return metric
    group, threshold, invisible, cls = match.groups()
    who = " ".join(x for x in (group, cls) if x)
    text = f"AP@{int(threshold) / 100:g}" + (" (ego-invisible)" if invisible else "")
    return f"{who} {text}" if who else text


def plot_ap_vs_snr(
    rows: list[dict], metric: str, out_dir: Path, formats: Sequence[str]
) -> list[Path]:
    plt = _plt()
    channels = sorted({r["channel"] for r in rows if r["channel"] != "n/a"}) or ["n/a"]
    fig, axes = plt.subplots(1, len(channels), figsize=(6 * len(channels), 4.5), squeeze=False)
    for ax, channel in zip(axes[0], channels):
        series: dict[str, list[tuple[float, ...]]] = defaultdict(list)
        for r in rows:
            if r["channel"] in (channel, "n/a"):
                series[r.get("label") or _series_label(r)].append(
                    (r["snr_db"], r[metric], *_interval(r, metric))
                )
        for label in sorted(series):
            pts = sorted(series[label])
            _draw(ax, pts, "--" if " + " not in label else "-", label)
        geometric = any(r.get("snr_mode") == "geometric" for r in rows)
        ax.set_xlabel(  # Es/N0 per complex channel use (docs/channels.md), not Eb/N0
            "offset over each link's geometric Es/N0 (dB)" if geometric else "Es/N0 per link (dB)"
        )
        ax.set_ylabel(metric_label(metric))
        ax.set_title(f"channel: {channel}")
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7)
    fig.suptitle(f"{metric_label(metric)} vs SNR (Es/N0)")
    files = _save(fig, out_dir, "ap_vs_snr", formats)
    plt.close(fig)
    return files


def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by one with fewer-or-equal cost and higher-or-equal AP (sorted by cost)."""
    front: list[tuple[float, float]] = []
    best = -math.inf
    for cost, ap in sorted(points, key=lambda p: (p[0], -p[1])):
        if ap > best:
            front.append((cost, ap))
            best = ap
    return front


def plot_ap_vs_bandwidth(
    rows: list[dict], metric: str, out_dir: Path, formats: Sequence[str]
) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    for r in rows:
        uses = r["mean_channel_uses_per_frame"]
        if uses > 0 and r[metric] == r[metric]:
            label = f"{r.get('label') or _series_label(r)} / {r['channel']}"
            series[label].append((uses, r[metric], *_interval(r, metric)))
    for label in sorted(series):
        pts = sorted(series[label])
        _draw(ax, pts, "-", label, lw=1)
    front = pareto_front(p[:2] for pts in series.values() for p in pts)
    if front:
        ax.step(
            [p[0] for p in front],
            [p[1] for p in front],
            "k:",
            where="post",
            lw=1.5,
            label="frontier",
        )
    _ego_level(ax, rows, metric, "ego only (no bandwidth)")
    if series:
        ax.set_xscale("log")
    ax.set_xlabel("channel uses per frame (all links, ledger)")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{metric_label(metric)} vs bandwidth")
    ax.grid(alpha=0.3, which="both")
    _legend(ax, fontsize=6)
    files = _save(fig, out_dir, "ap_vs_bandwidth", formats)
    plt.close(fig)
    return files


def plot_ap_vs_delay(
    rows: list[dict], metric: str, out_dir: Path, formats: Sequence[str]
) -> list[Path]:
    """``metric`` against the added delay (ms) and against the mean age of information (ms,
    the ledger's: LiDAR phase + latency of the fused payloads), one line per setting (fusion,
    codec, ratio, pose noise, late policy) and SNR; ego-only fusion as a grey reference."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    by_delay: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    by_age: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    snrs = {r["snr_db"] for r in rows}
    for r in rows:
        if r["fusion"] == "none" or r[metric] != r[metric]:
            continue
        base = r["fusion"]
        if r["codec"] != "n/a":
            base += f" + {r['codec']}"
            if r["bandwidth_ratio"] == r["bandwidth_ratio"]:
                base += f" (ρ={ratio_text(r['bandwidth_ratio'])})"
        if r["pose_noise_m"] or r["pose_noise_yaw_rad"]:
            base += f" [σ={r['pose_noise_m']:g} m, {r['pose_noise_yaw_rad']:g} rad]"
        label = base + _delay_label(r, with_delay=False)
        if len(snrs) > 1:
            label += f" @ {r['snr_db']:g} dB"
        point = (r.get("added_delay_s") or 0.0) * 1e3, r[metric], *_interval(r, metric)
        by_delay[label].append(point)
        aoi = r.get("mean_aoi_s")
        if aoi is not None and aoi == aoi:
            by_age[label].append((aoi * 1e3, r[metric], *_interval(r, metric)))
    for ax, series, xlabel in (
        (axes[0], by_delay, "added delay per payload (ms)"),
        (axes[1], by_age, "mean age of information at fusion (ms, ledger)"),
    ):
        for label in sorted(series):
            _draw(ax, sorted(series[label]), "-", label, lw=1)
        _ego_level(ax, rows, metric)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric_label(metric))
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7)
    fig.suptitle(f"{metric_label(metric)} vs delay and age of information")
    files = _save(fig, out_dir, "ap_vs_delay", formats)
    plt.close(fig)
    return files


def _payload_series(rows: list[dict], metric: str) -> dict[str, list[tuple[float, ...]]]:
    """``{label: [(payload Mbit per link, metric, below, above, mean latency ms), ...]}``: the
    rows of one setting but the codec's or the fusion's options (e.g. where2comm's
    ``max_fraction``, the ``selective`` codec's ``keep_fraction``) on one line per bandwidth,
    sorted by payload size; only lines of two sizes or more."""
    series: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    snrs = {r["snr_db"] for r in rows}
    bandwidths = {r["bandwidth_hz"] for r in rows}
    for r in rows:
        links = r.get("mean_links_per_frame") or 0.0
        if r["fusion"] == "none" or r["codec"] == "n/a" or r[metric] != r[metric] or not links:
            continue
        label = _series_label(r) + (f" @ {r['snr_db']:g} dB" if len(snrs) > 1 else "")
        if len(bandwidths) > 1:  # e.g. the payloads over an ideal link: content without age
            bw = r["bandwidth_hz"]
            label += " @ ideal link" if bw >= IDEAL_BANDWIDTH_HZ else f" @ {bw / 1e6:g} MHz"
        mbit = r["mean_source_bits_per_frame"] / links / 1e6
        latency = (r.get("mean_latency_s") or math.nan) * 1e3
        series[label].append((mbit, r[metric], *_interval(r, metric), latency))
    return {k: sorted(v) for k, v in series.items() if len({p[0] for p in v}) > 1}


def plot_ap_vs_payload(
    rows: list[dict], metric: str, out_dir: Path, formats: Sequence[str]
) -> list[Path]:
    """``metric`` against the payload each collaborator sends (Mbit per link, ledger: source
    bits over links) and against its mean latency (ms, ledger), one line per setting whose
    codec or fusion options alone change the payload (e.g. where2comm's ``max_fraction``) at
    one bandwidth and SNR: where a larger, slower payload stops paying. Several bandwidths
    (e.g. the same sweep over an ideal link: what the payloads carry without their age) are
    drawn apart. Ego-only fusion is the grey reference. Drawn only when such a line exists."""
    series = _payload_series(rows, metric)
    if not series:
        return []
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    bandwidths = sorted({r["bandwidth_hz"] for r in rows if r["fusion"] != "none"})
    for label in sorted(series):
        pts = series[label]
        _draw(axes[0], [p[:4] for p in pts], "-", label, lw=1)
        if not all(p[4] > 1e-3 for p in pts):  # an ideal link (no latency): left panel only
            continue
        _draw(axes[1], sorted((p[4], *p[1:4]) for p in pts), "-", label, lw=1)
        best = max(pts, key=lambda p: p[1])
        axes[0].annotate(
            f"{best[4]:.0f} ms", (best[0], best[1]), textcoords="offset points", xytext=(4, 4),
            fontsize=7,
        )  # fmt: skip
    for ax, xlabel in (
        (axes[0], "payload per collaborator (Mbit, ledger)"),
        (axes[1], "mean latency per payload (ms, ledger)"),
    ):
        _ego_level(ax, rows, metric)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric_label(metric))
        ax.grid(alpha=0.3, which="both")
        _legend(ax, fontsize=7)
    where = ", ".join(
        "ideal link" if b >= IDEAL_BANDWIDTH_HZ else f"{b / 1e6:g} MHz" for b in bandwidths
    )
    fig.suptitle(f"{metric_label(metric)} vs payload size and its latency (bandwidth: {where})")
    files = _save(fig, out_dir, "ap_vs_payload", formats)
    plt.close(fig)
    return files


def _say_unread(paths: Sequence[str | os.PathLike]) -> None:
    """One warning per folder of ``paths`` holding Parquet files that its search does not read
    (``read_results`` reads the ``sweep-*.parquet`` in a folder): a renamed results file, such
    as the README's ``docs/results/main_*.parquet``, is named, not left out without a word."""
    for folder in (Path(p) for p in paths):
        if not folder.is_dir():
            continue
        other = sorted(
            str(f)
            for f in folder.rglob("*.parquet")
            if not f.name.startswith(("sweep-", ".")) and not f.name.endswith(".ledger.parquet")
        )
        if other:
            log.warning(
                "plot: %s holds %d Parquet file(s) not named sweep-*.parquet, not read: %s; "
                "name a file in results=[...] to plot it",
                folder, len(other), ", ".join(other[:3]) + (", …" if other[3:] else ""),
            )  # fmt: skip


def make_plots(
    results: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike = "outputs/plots",
    formats: Sequence[str] = ("png", "pdf"),
    metric: str | None = None,
    allow_corrupt: bool = False,
    table: bool = True,
) -> list[Path]:
    """Draw every figure from the results files/folders in ``results``; returns the files.

    Rows are averaged over seeds per setting (``aggregate_seeds``) and settings are labelled
    apart; APs carry 95 % intervals (error bars, and ``[lo, hi]`` in the table). ``metric``
    ``None``: ``DEFAULT_METRIC`` (vehicle AP@0.7), or ``FALLBACK_METRIC`` (AP@0.5, with a
    warning) for results whose rows do not hold it.

    Raises ``ValueError`` for an unknown metric or format, when no results are found and when
    no row holds ``metric`` but some hold another (files from before its column); an
    unreadable results file raises ``CorruptResultsError`` unless ``allow_corrupt``; the same
    cell with different numbers in two files raises ``ConflictingResultsError`` naming both.
    """
    if metric is not None and metric not in METRICS:
        raise ValueError(f"plot: unknown metric {metric!r}; valid choices: {', '.join(METRICS)}")
    if not str(out_dir or "").strip():  # (e.g. an unset shell variable), not the cwd
        raise ValueError(f"plot: field 'out_dir' must name a folder, got {out_dir!r}")
    check_switch("plot: field 'allow_corrupt'", allow_corrupt)
    check_switch("plot: field 'table'", table)
    formats = [str(f) for f in ([formats] if isinstance(formats, str) else formats)]
    bad = [f for f in formats if f not in ("png", "pdf", "svg")]
    if bad or not formats:
        raise ValueError(
            f"plot: field 'formats' has {bad or formats}; valid choices: png, pdf, svg"
        )
    out = writable_folder(out_dir, "plot: field 'out_dir'")
    paths = [results] if isinstance(results, str | os.PathLike) else list(results)
    _say_unread(paths)
    table_rows, ledger = read_results_and_ledger(paths, allow_corrupt=allow_corrupt)
    if table_rows.num_rows == 0:
        raise ValueError(
            f"plot: no sweep results found in {[str(p) for p in paths]} (field 'results'); "
            "expected folders or files holding sweep-*.parquet results with rows (v2x-sweep's)"
        )
    merged = aggregate_seeds(table_rows)
    rows = merged.to_pylist()
    scored = [m for m in METRICS if any(r.get(m) is not None and r[m] == r[m] for r in rows)]
    if metric is None:
        metric = DEFAULT_METRIC
        if scored and metric not in scored and FALLBACK_METRIC in scored:
            log.warning(
                "plot: no row holds %s (results from before that column): the figures show %s; "
                "set metric=… to choose (%s)", metric, FALLBACK_METRIC, ", ".join(scored),
            )
            metric = FALLBACK_METRIC
    if scored and metric not in scored:  # (files from before its column): empty figures
        raise ValueError(
            f"plot: field 'metric' is {metric!r}, which no row of {[str(p) for p in paths]} "
            f"holds (results written before that column, or not scored); expected one they "
            f"hold: {', '.join(scored)}"
        )
    label_settings(rows)
    files = plot_ap_vs_snr(rows, metric, out, formats)
    files += plot_ap_vs_bandwidth(rows, metric, out, formats)
    if len({r.get("added_delay_s") for r in rows}) > 1:
        files += plot_ap_vs_delay(rows, metric, out, formats)
    files += plot_ap_vs_rounds(rows, metric, out, formats)
    files += plot_ap_vs_payload(rows, metric, out, formats)
    if ledger.num_rows:
        files += plot_latency_aoi(ledger, out, formats)
        files += plot_snr_map(ledger, out, formats)
    if table:
        from v2x.results_table import table_with_convention

        print(table_with_convention(merged))
    return files
