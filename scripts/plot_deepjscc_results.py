"""Figure of the shipped DeepJSCC codec from the H100 result files (docs/deepjscc.md):
AP@0.7 vs channel uses per link at 10 dB (the bandwidth-accuracy frontier, 95 % goal line) and
AP@0.7 vs SNR with the calibrated gate (never below ego-only).

    python scripts/plot_deepjscc_results.py [--retention R.json] [--curves C.json] [--out docs/figures]

(defaults: the shipped results in docs/results, retention_10db and gated_test_curves as the
removed scripts/gpu_train_codec.py wrote them)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RAW_VALUES = 64 * 128 * 128  # real values of one [C, H, W] feature map


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--retention", default="docs/results/deepjscc_retention_10db_h100.json")
    ap.add_argument("--curves", default="docs/results/deepjscc_gated_test_curves_h100.json")
    ap.add_argument("--out", default="docs/figures")
    args = ap.parse_args()
    retention = json.loads(Path(args.retention).read_text())
    curves = json.loads(Path(args.curves).read_text())
    base = retention["uncompressed"]["rows"]
    full, ego = base["max"]["AP@0.7"], base["none"]["AP@0.7"]
    frames = retention["uncompressed"]["frames"]

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for channel, marker in (("awgn", "o"), ("rayleigh", "s")):
        pts = []
        for name, entry in retention.items():
            if name.startswith(f"deepjscc {channel} "):
                denominator = int(name.rsplit("/", 1)[1])
                pts.append((RAW_VALUES / denominator, entry["rows"]["max"]["AP@0.7"]))
        pts.sort()
        left.plot(*zip(*pts), marker=marker, label=f"max + deepjscc, {channel}")
    snr = curves["snr_db"]
    for level, style in ((0.0, ":"), (30.0, "--")):  # a few more SNRs (the gated held-out curves)
        idx = snr.index(level)
        pts = sorted(
            (RAW_VALUES * float(key.split("@")[1]), entry["0.7"][idx])
            for key, entry in curves.items()
            if key.startswith("awgn@")
        )
        left.plot(*zip(*pts), ls=style, color="tab:blue", alpha=0.6, marker=".",
                  label=f"awgn, {level:g} dB (gated)")
    left.axhline(full, color="k", lw=1, label="uncompressed max fusion")
    left.axhline(0.95 * full, color="k", lw=1, ls=":", label="95 % of uncompressed")
    left.axhline(ego, color="grey", lw=1, ls="--", label="ego only")
    left.axvline(RAW_VALUES / 64, color="tab:red", lw=0.8, ls="-.", label="ρ = 1/64")
    left.set_xscale("log", base=2)
    left.set_xlabel("complex channel uses per link (ρ = 1/512 … 1/4)")
    left.set_ylabel("AP@0.7")
    left.set_title(f"{frames} held-out frames; solid: 10 dB")
    left.legend(fontsize=7, loc="lower right")

    ego_curve = curves["ego"]["0.7"][0]
    for key, entry in curves.items():
        if key in ("snr_db", "ego") or not key.startswith("awgn"):
            continue
        ratio = float(key.split("@")[1])
        right.plot(snr, entry["0.7"], marker="o", ms=3, label=f"awgn, ρ = 1/{round(1 / ratio)}")
    for key, entry in curves.items():
        if key.startswith("rayleigh") and abs(float(key.split("@")[1]) - 1 / 64) < 1e-9:
            right.plot(snr, entry["0.7"], marker="s", ms=3, ls="--", label="rayleigh, ρ = 1/64")
    right.axhline(ego_curve, color="grey", lw=1, ls="--", label="ego only")
    right.axhline(full, color="k", lw=1, label="uncompressed")
    right.set_xlabel("SNR per link (dB)")
    right.set_ylabel("AP@0.7")
    right.set_title("gated DeepJSCC (max fusion)")
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "deepjscc_frontier_h100.png", dpi=130)
    print(out / "deepjscc_frontier_h100.png")


if __name__ == "__main__":
    main()
