"""The AP-vs-SNR figure says which SNR it plots: the sweep's ``snr_db`` is Es/N0 per complex
channel use; "SNR per link (dB)" left a Sionna user to guess between Es/N0 and the Eb/N0 of
``ebnodb2no``, 10·log10(Qm·R) dB apart (Sionna-user audit)."""

from __future__ import annotations

import pytest

from v2x import plots


def _row(snr_db: float, mode: str) -> dict:
    return {"channel": "awgn", "snr_db": snr_db, "ap_50": 0.5, "fusion": "max", "codec": "analog",
            "bandwidth_ratio": float("nan"), "pose_noise_m": 0.0, "pose_noise_yaw_rad": 0.0,
            "snr_mode": mode}  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "label"),
    [
        ("fixed", "Es/N0 per link (dB)"),
        ("geometric", "offset over each link's geometric Es/N0 (dB)"),
    ],
)
def test_the_snr_axis_names_es_over_n0(monkeypatch, tmp_path, mode, label):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, *args: figures.append(fig) or [])
    plots.plot_ap_vs_snr([_row(0.0, mode), _row(10.0, mode)], "ap_50", tmp_path, ["png"])
    (fig,) = figures
    assert [ax.get_xlabel() for ax in fig.axes] == [label]
    assert "Es/N0" in fig.get_suptitle()
