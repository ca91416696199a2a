"""Figures from the ledger (one row per link and frame): latency and age-of-information CDFs,
and the links over the town coloured by their geometric SNR."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from v2x.figures import legend as _legend
from v2x.figures import pyplot as _plt
from v2x.figures import save_figure as _save


def plot_latency_aoi(ledger: pa.Table, out_dir: Path, formats: Sequence[str]) -> list[Path]:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rows = ledger.select(
        ["fusion", "codec", "channel", "bandwidth_ratio", "sent", "latency_s", "aoi_s"]
    ).to_pydict()
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"latency_s": [], "aoi_s": []})
    for i in range(ledger.num_rows):
        if not rows["sent"][i]:
            continue
        key = (
            rows["fusion"][i]
            if rows["codec"][i] == "n/a"
            else f"{rows['fusion'][i]} + {rows['codec'][i]}"
        )
        for name in ("latency_s", "aoi_s"):
            v = rows[name][i]
            if v is not None and math.isfinite(v):
                groups[key][name].append(v * 1e3)
    for ax, name, title in (
        (axes[0], "latency_s", "latency"),
        (axes[1], "aoi_s", "age of information"),
    ):
        for key in sorted(groups):
            values = np.sort(groups[key][name])
            if values.size:
                ax.step(
                    values, np.arange(1, values.size + 1) / values.size, where="post", label=key
                )
        ax.set_xlabel(f"{title} (ms)")
        ax.set_ylabel("CDF")
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7)
    fig.suptitle("per-link latency and AoI (ledger)")
    files = _save(fig, out_dir, "latency_aoi_cdf", formats)
    plt.close(fig)
    return files


def plot_snr_map(ledger: pa.Table, out_dir: Path, formats: Sequence[str]) -> list[Path]:
    plt = _plt()
    cols = ledger.select(
        ["frame_id", "tx_agent", "tx_kind", "link_snr_db", "tx_x_m", "tx_y_m", "rx_x_m", "rx_y_m"]
    ).to_pydict()
    seen, links = set(), []
    for i in range(ledger.num_rows):
        key = (cols["frame_id"][i], cols["tx_agent"][i])
        if key in seen:
            continue
        seen.add(key)
        links.append({k: cols[k][i] for k in cols})
    fig, ax = plt.subplots(figsize=(6.5, 6))
    if links:
        snr = np.array([l["link_snr_db"] for l in links], dtype=float)  # noqa: E741
        finite = np.isfinite(snr)
        lo, hi = (np.nanmin(snr[finite]), np.nanmax(snr[finite])) if finite.any() else (0.0, 1.0)
        cmap = plt.get_cmap("viridis")
        for link, value in zip(links, snr):
            colour = (
                cmap((value - lo) / max(hi - lo, 1e-9)) if math.isfinite(value) else "lightgrey"
            )
            ax.plot(
                [link["tx_x_m"], link["rx_x_m"]],
                [link["tx_y_m"], link["rx_y_m"]],
                color=colour,
                lw=0.8,
                alpha=0.6,
            )
        markers = {"vehicle": "o", "rsu": "s", "uav": "^"}
        for kind, marker in markers.items():
            idx = [i for i, l in enumerate(links) if l["tx_kind"] == kind]  # noqa: E741
            if idx:
                ax.scatter(
                    [links[i]["tx_x_m"] for i in idx],
                    [links[i]["tx_y_m"] for i in idx],
                    c=snr[idx],
                    cmap=cmap,
                    vmin=lo,
                    vmax=hi,
                    marker=marker,
                    s=25,
                    label=kind,
                    edgecolors="k",
                    linewidths=0.3,
                )
        rx = {(l["rx_x_m"], l["rx_y_m"]) for l in links}  # noqa: E741
        ax.scatter([p[0] for p in rx], [p[1] for p in rx], marker="*", c="red", s=40, label="ego")
        fig.colorbar(
            plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi)),
            ax=ax,
            label="link SNR (dB)",
        )
        _legend(ax, fontsize=7)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title("links over the town, coloured by geometric SNR")
    files = _save(fig, out_dir, "snr_map", formats)
    plt.close(fig)
    return files
