"""Figure plumbing shared by the plot modules: matplotlib on the Agg backend, atomic saving."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from v2x.common import atomic_path


def save_figure(fig, out_dir: Path, name: str, formats: Sequence[str]) -> list[Path]:
    """Write ``fig`` as ``out_dir/name.<fmt>`` for each format (atomically, 150 dpi)."""
    files = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight", format=fmt)
        files.append(path)
    return files


def legend(ax, **kwargs) -> None:
    """``ax.legend(**kwargs)`` when ``ax`` has labelled artists; none otherwise (matplotlib
    would warn "No artists with labels found to put in legend", e.g. for ego-only results)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
