"""Figures for the channel models: ``python -m v2x.channels.plots --out docs/figures``.

Writes ``pathloss_<model>.png`` for every link model (median LOS / NLOS(v) / expected curves vs
distance), ``pathloss_all.png`` (all models, expected path loss), ``ber_vs_snr.png`` (BPSK and QPSK
simulated through ``awgn`` and ``rayleigh`` vs the closed forms) and ``thz_absorption.png``
(molecular absorption 100–450 GHz with the 300 GHz window).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from v2x.channels import LINKS, absorption_coefficient, build_channel, build_link, equalize

DISTANCES = {"thz": (1.0, 200.0), "umi_street_canyon": (10.0, 2000.0)}


def _curve(name: str, mode: str, d: np.ndarray) -> np.ndarray:
    model = build_link(name=name, los_mode=mode, shadowing=False)
    st = model(distance_m=torch.tensor(d))
    return st.path_loss_db.numpy()


def plot_path_loss(out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig_all, ax_all = plt.subplots(figsize=(7, 5))
    for name in LINKS.names():
        lo, hi = DISTANCES.get(name, (10.0, 1000.0))
        d = np.geomspace(lo, hi, 200)
        model = build_link(name=name, shadowing=False)
        fig, ax = plt.subplots(figsize=(6, 4))
        modes = ["los"] if model.los_mode == "los" else ["los", "nlos", "expected"]
        for mode in modes:
            label = {"los": "LOS", "nlos": "NLOSv" if "v2v" in name else "NLOS"}.get(
                mode, "expected"
            )
            ax.semilogx(d, _curve(name, mode, d), label=label)
        if name.startswith("v2v"):
            m = build_link(name=name, los_mode="geometric", shadowing=False)
            nl = m(distance_m=torch.tensor(d), los=torch.full((len(d),), 1)).path_loss_db
            ax.semilogx(d, nl.numpy(), "--", label="NLOS (building)")
        ax.set(xlabel="ground distance (m)", ylabel="path loss (dB)", title=_title(model))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        p = out / f"pathloss_{name}.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
        mode = "los" if model.los_mode == "los" else "expected"
        ax_all.semilogx(d, _curve(name, mode, d), label=name)
    ax_all.set(
        xlabel="ground distance (m)", ylabel="median path loss (dB)", title="All link models"
    )
    ax_all.grid(True, which="both", alpha=0.3)
    ax_all.legend(fontsize=8)
    fig_all.tight_layout()
    p = out / "pathloss_all.png"
    fig_all.savefig(p, dpi=120)
    plt.close(fig_all)
    return [*paths, p]


def _title(model) -> str:
    h = f"h_tx={model.h_tx_m:g} m, h_rx={model.h_rx_m:g} m"
    return f"{model.name}: {model.carrier_hz / 1e9:g} GHz, {h}"


def _ber(channel: str, modulation: str, snr_db: np.ndarray, n: int) -> np.ndarray:
    kw = {"block_len": 1} if channel == "rayleigh" else {}
    ch = build_channel(channel, **kw)
    out = []
    for ebno in snr_db:
        if modulation == "bpsk":
            bits = torch.randint(0, 2, (1, n))
            x = (1.0 - 2.0 * bits).to(torch.complex64)
            y, st = ch(x, float(ebno))
            det = (equalize(y, st, "zf")[0].real < 0).long()
        else:
            bits = torch.randint(0, 2, (1, n // 2, 2))
            s = (1.0 - 2.0 * bits.float()) / math.sqrt(2)
            y, st = ch(torch.complex(s[..., 0], s[..., 1]), float(ebno) + 10 * math.log10(2))
            xh = equalize(y, st, "zf")[0]
            det = torch.stack([xh.real < 0, xh.imag < 0], -1).long()
        out.append(float((det != bits).float().mean()))
    return np.array(out)


def plot_ber(out: Path, n: int = 2_000_000) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.special import erfc

    torch.manual_seed(0)
    ebno = np.arange(0, 31, 2.0)
    g = 10 ** (ebno / 10)
    theory = {"awgn": 0.5 * erfc(np.sqrt(g)), "rayleigh": 0.5 * (1 - np.sqrt(g / (1 + g)))}
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for channel, color in (("awgn", "C0"), ("rayleigh", "C1")):
        ax.semilogy(ebno, theory[channel], color=color, label=f"{channel} theory")
        for mod, marker in (("bpsk", "o"), ("qpsk", "x")):
            sim = _ber(channel, mod, ebno, n)
            sim = np.where(sim > 0, sim, np.nan)
            ax.semilogy(ebno, sim, marker, color=color, ls="none", label=f"{channel} {mod} sim")
    ax.set(
        xlabel="Eb/N0 (dB)",
        ylabel="bit error rate",
        ylim=(1e-6, 1),
        title="BER: simulated vs closed form",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out / "ber_vs_snr.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def plot_thz(out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = np.linspace(100e9, 450e9, 1000)
    fig, ax = plt.subplots(figsize=(6, 4))
    for rh in (20.0, 50.0, 90.0):
        k = absorption_coefficient(torch.tensor(f), relative_humidity=rh).numpy()
        ax.semilogy(f / 1e9, k * 10 * math.log10(math.e) * 1e3, label=f"RH {rh:g} %")
    f18 = np.linspace(275e9, 400e9, 300)
    k18 = absorption_coefficient(torch.tensor(f18), "kokkoniemi2018").numpy()
    ax.semilogy(f18 / 1e9, k18 * 4343, "k--", lw=0.8, label="EuCAP'18 (RH 50 %)")
    ax.set(
        xlabel="frequency (GHz)", ylabel="absorption (dB/km)", title="Molecular absorption, 296 K"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    p = out / "thz_absorption.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--ber-symbols", type=int, default=2_000_000, help="symbols per BER point")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = [*plot_path_loss(args.out), plot_ber(args.out, args.ber_symbols), plot_thz(args.out)]
    for p in paths:
        print(p)
    return paths


if __name__ == "__main__":
    main()
