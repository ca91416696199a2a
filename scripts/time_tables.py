"""Markdown tables of the README's "Time and asynchrony" figures from sweep results.

    python scripts/time_tables.py outputs/asynchrony outputs/payload_latency [--metric vehicle_ap_70]

(a) the metric of every fusion at every added delay (with the mean age of information);
(c) how much of late fusion's loss its latency compensation (``late_extrapolated``) recovers:
``(AP_comp(d) − AP_late(d)) / (AP_late(0) − AP_late(d))``; (b) the metric of every payload
size, with its latency, at each bandwidth (the largest payload that still pays is marked).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from v2x.results import aggregate_seeds, read_results


def _fmt(row: dict, metric: str) -> str:
    lo, hi = row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    value = f"{row[metric]:.3f}"
    if lo is not None and hi is not None and lo == lo and hi == hi:
        value += f" [{lo:.3f}, {hi:.3f}]"
    return value


def delay_tables(rows: list[dict], metric: str) -> str:
    """Tables (a) and (c) from the rows of a ``sweep_asynchrony`` run."""
    by = {(r["fusion"], round(r["added_delay_s"], 6)): r for r in rows}
    delays = sorted({d for _, d in by})
    fusions = [f for f in ("none", "max", "late", "late_extrapolated") if (f, delays[0]) in by]
    fusions += sorted({f for f, _ in by} - set(fusions))
    head = "| fusion | " + " | ".join(f"+{d * 1e3:g} ms" for d in delays) + " |"
    out = [head, "|---" * (len(delays) + 1) + "|"]
    for f in fusions:
        out.append(f"| {f} | " + " | ".join(_fmt(by[f, d], metric) if (f, d) in by else "–"
                                            for d in delays) + " |")  # fmt: skip
    ages = [by[f, d].get("mean_aoi_s") for f in ("max",) for d in delays if (f, d) in by]
    if ages:
        out.append("| mean AoI (max) | " + " | ".join(f"{a * 1e3:.0f} ms" for a in ages) + " |")
    if ("late", delays[0]) in by and ("late_extrapolated", delays[0]) in by:
        out += ["", "| added delay | late | late_extrapolated | loss of late | recovered |",
                "|---|---|---|---|---|"]  # fmt: skip
        base = by["late", delays[0]][metric]
        for d in delays:
            late, comp = by["late", d][metric], by["late_extrapolated", d][metric]
            loss = base - late
            share = f"{(comp - late) / loss:.0%}" if loss > 1e-9 else "–"
            out.append(f"| {d * 1e3:g} ms | {late:.3f} | {comp:.3f} | {loss:.3f} | {share} |")
    return "\n".join(out)


def payload_table(rows: list[dict], metric: str) -> str:
    """Table (b) from the rows of a ``sweep_payload_latency`` run (one column per bandwidth)."""
    ego = [r[metric] for r in rows if r["fusion"] == "none"]
    series: dict[float, list[dict]] = defaultdict(list)
    for r in rows:
        if r["fusion"] != "none" and r.get("mean_links_per_frame"):
            series[r["bandwidth_hz"]].append(r)
    out = []
    for bw in sorted(series):
        pts = sorted(series[bw], key=lambda r: r["mean_source_bits_per_frame"])
        best = max(pts, key=lambda r: r[metric])
        name = "ideal link" if bw >= 1e12 else f"{bw / 1e6:g} MHz"
        out += [f"**{name}** (ego only: {sum(ego) / max(len(ego), 1):.3f})", "",
                "| Mbit per collaborator | mean latency | " + metric + " |", "|---|---|---|"]  # fmt: skip
        for r in pts:
            mbit = r["mean_source_bits_per_frame"] / r["mean_links_per_frame"] / 1e6
            mark = " **(best)**" if r is best else ""
            out.append(f"| {mbit:.3g} | {r['mean_latency_s'] * 1e3:.3g} ms | "
                       f"{_fmt(r, metric)}{mark} |")  # fmt: skip
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("asynchrony", help="results of sweep_asynchrony")
    parser.add_argument("payload", nargs="?", help="results of sweep_payload_latency")
    parser.add_argument("--metric", default="vehicle_ap_70")
    args = parser.parse_args()
    rows = aggregate_seeds(read_results([args.asynchrony])).to_pylist()
    print(delay_tables(rows, args.metric))
    if args.payload:
        print()
        print(payload_table(aggregate_seeds(read_results([args.payload])).to_pylist(), args.metric))


if __name__ == "__main__":
    main()
