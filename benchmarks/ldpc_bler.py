"""Block error rate of the digital chain with the min-sum LDPC decoder against Sionna's BP
decoder on AWGN, and the SNR each needs for BLER 10⁻².

    python benchmarks/ldpc_bler.py --device cuda --blocks 20000 --out docs/results/ldpc_bler.json
    python benchmarks/ldpc_bler.py --plot docs/results/ldpc_bler.json   # figure + markdown table

Per MCS (default 5, 14, 20, 27; the project's MCS table, ``v2x.semcom.mcs``) the chain's code
blocks (``block_bits`` incl. CRC24A → 5G LDPC at the MCS rate → scrambling → Gray QAM,
``v2x.semcom.fec.BlockCode``) are sent over AWGN (Es/N0) by
``v2x.semcom.bler_table.simulate_bler`` and decoded with ``ldpc_decoder="sionna"`` (BP,
boxplus-phi, flooding) and ``"minsum"`` (``v2x.semcom.ldpc_minsum``), both with ``--num-iter``
iterations; a block error is a failed CRC. Both decoders see the same blocks and the same
noise (one generator seed per point). The grid starts 0.4 dB below the shipped table's 10 %
point and steps ``--step-db`` up until both BLERs are below ``--stop-bler``. The SNR at BLER
10⁻² is interpolated log-linearly between the two grid points around it
(``threshold_from_curve``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
from pathlib import Path

import torch

from v2x.common import atomic_write_text
from v2x.semcom.bler_table import load_bler_table, simulate_bler, threshold_from_curve
from v2x.semcom.mcs import get_mcs

DECODERS = ("sionna", "minsum")
TARGET = 1e-2


def measure(args: argparse.Namespace) -> dict:
    import sionna

    table = load_bler_table(args.block_bits)
    out = {
        "meta": {
            "block_bits": args.block_bits,
            "blocks_per_point": args.blocks,
            "num_iter": args.num_iter,
            "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
            "torch": torch.__version__,
            "sionna": sionna.__version__,
            "seed": args.seed,
            "date": datetime.date.today().isoformat(),
        },
        "mcs": {},
    }
    for m in [int(s) for s in args.mcs.split(",")]:
        start = float(table.thresholds_db(0.1)[m]) - 0.4 if table else 0.0
        curve: dict = {"snr_db": [], **{d: {"failures": [], "blocks": []} for d in DECODERS}}
        for i in range(args.max_points):
            snr = round(start + i * args.step_db, 3)
            curve["snr_db"].append(snr)
            line = f"MCS {m:2d} {snr:6.2f} dB:"
            for dec in DECODERS:
                t0 = time.time()
                gen = torch.Generator().manual_seed(args.seed * 1_000_003 + m * 1000 + i)
                fails, n = simulate_bler(
                    m, args.block_bits, snr, args.blocks, args.num_iter,
                    device=args.device, batch=args.batch, generator=gen, ldpc_decoder=dec,
                )  # fmt: skip
                curve[dec]["failures"].append(fails)
                curve[dec]["blocks"].append(n)
                line += f"  {dec} {fails / n:.5f} ({time.time() - t0:.1f} s)"
            print(line, flush=True)
            if all(curve[d]["failures"][-1] < args.stop_bler * args.blocks for d in DECODERS):
                break
        summarise(m, curve)
        out["mcs"][str(m)] = curve
        if args.out:
            atomic_write_text(args.out, json.dumps(out, indent=1))
    return out


def summarise(m: int, curve: dict) -> None:
    """Adds ``bler`` per decoder and ``snr_at_target`` (dB) to ``curve``."""
    curve["snr_at_target"] = {}
    for dec in DECODERS:
        c = curve[dec]
        c["bler"] = [f / n for f, n in zip(c["failures"], c["blocks"])]
        snr = threshold_from_curve({"snr_db": curve["snr_db"], "bler": c["bler"]}, TARGET)
        curve["snr_at_target"][dec] = snr
    s = curve["snr_at_target"]
    print(
        f"MCS {m:2d}: SNR at BLER {TARGET:g}: sionna {s['sionna']:.3f} dB, minsum "
        f"{s['minsum']:.3f} dB, minsum − sionna {s['minsum'] - s['sionna']:+.3f} dB",
        flush=True,
    )


def plot(results: dict, figure: Path) -> str:
    """BLER curves (one panel per MCS) → ``figure``; returns the markdown table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = results["mcs"]
    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.4), squeeze=False)
    rows = [
        "| MCS | Qm | R | SNR at BLER 10⁻², Sionna BP (dB) | min-sum (dB) | min-sum − BP (dB) |",
        "|---|---|---|---|---|---|",
    ]
    for ax, (m, c) in zip(axes[0], curves.items()):
        mcs = get_mcs(int(m))
        for dec, style in (("sionna", "o-"), ("minsum", "s--")):
            bler = [max(b, 0.5 / n) for b, n in zip(c[dec]["bler"], c[dec]["blocks"])]
            ax.semilogy(
                c["snr_db"], bler, style, ms=4, label=f"{dec} ({c['snr_at_target'][dec]:.2f} dB)"
            )
        ax.axhline(TARGET, color="grey", lw=0.8, ls=":")
        ax.set_title(f"MCS {m}: {2**mcs.qm}-QAM, R = {mcs.rate_x1024}/1024", fontsize=9)
        ax.set_xlabel("Es/N0 (dB)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        s = c["snr_at_target"]
        rows.append(
            f"| {m} | {mcs.qm} | {mcs.rate_x1024}/1024 | {s['sionna']:.2f} | {s['minsum']:.2f} "
            f"| {s['minsum'] - s['sionna']:+.2f} |"
        )
    axes[0][0].set_ylabel("BLER (CRC failure per block)")
    meta = results["meta"]
    fig.suptitle(
        f"{meta['block_bits']}-bit blocks, AWGN, {meta['num_iter']} iterations, "
        f"{meta['blocks_per_point']} blocks per point ({meta['device']})",
        fontsize=9,
    )
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--mcs", default="5,14,20,27")
    p.add_argument("--block-bits", type=int, default=1024)
    p.add_argument("--blocks", type=int, default=2000, help="blocks per SNR point")
    p.add_argument("--batch", type=int, default=256, help="blocks per decoder call")
    p.add_argument("--num-iter", type=int, default=20)
    p.add_argument("--step-db", type=float, default=0.2)
    p.add_argument("--max-points", type=int, default=12)
    p.add_argument("--stop-bler", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--out", type=Path, default=None, help="results JSON")
    p.add_argument("--plot", type=Path, default=None, help="plot this results JSON instead")
    p.add_argument("--figure", type=Path, default=Path("docs/figures/ldpc_bler.png"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.plot:
        results = json.loads(args.plot.read_text())
        for m, c in results["mcs"].items():
            summarise(int(m), c)
    else:
        results = measure(args)
    print(plot(results, args.figure))
    worst = max(
        abs(c["snr_at_target"]["minsum"] - c["snr_at_target"]["sionna"])
        for c in results["mcs"].values()
    )
    print(f"largest |min-sum − BP| at BLER {TARGET:g}: {worst:.3f} dB (goal ≤ 0.2 dB)")
    if not math.isfinite(worst):
        raise SystemExit("a curve did not reach BLER 1e-2: extend --max-points")


if __name__ == "__main__":
    main()
