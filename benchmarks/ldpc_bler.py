"""Block error rate of the digital chain with the min-sum LDPC decoder against Sionna's BP
decoder on AWGN, and the SNR each needs for BLER 10⁻².

    python benchmarks/ldpc_bler.py --device cuda --blocks 20000 --out docs/results/ldpc_bler.json
    python benchmarks/ldpc_bler.py --decoders minsum:10 --like docs/results/ldpc_bler.json \\
        --out docs/results/ldpc_bler.json      # add a decoder on the same grid and channels
    python benchmarks/ldpc_bler.py --plot docs/results/ldpc_bler.json   # figure + markdown table

Per MCS (default 5, 14, 20, 27; the project's MCS table, ``v2x.semcom.mcs``) the chain's code
blocks (``block_bits`` incl. CRC24A → 5G LDPC at the MCS rate → scrambling → Gray QAM,
``v2x.semcom.fec.BlockCode``) are sent over AWGN (Es/N0) by
``v2x.semcom.bler_table.simulate_bler`` and decoded by each decoder of ``--decoders``:
``sionna`` (BP, boxplus-phi, flooding: the chain's reference) and ``minsum``
(``v2x.semcom.ldpc_minsum``), with ``--num-iter`` iterations or those after a colon
(``minsum:10``). A block error is a failed CRC. Every decoder sees the same blocks and the same
noise at a point (its generator seed depends only on ``--seed``, the MCS and the point). The
grid starts 0.4 dB below the shipped table's 10 % point and steps ``--step-db`` up until every
BLER is below ``--stop-bler``. The SNR at BLER 10⁻² is interpolated log-linearly between the
grid points around it (``threshold_from_curve``); differences are against the first decoder.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from v2x.common import atomic_write_text
from v2x.semcom.bler_table import load_bler_table, simulate_bler, threshold_from_curve
from v2x.semcom.fec import device_string
from v2x.semcom.mcs import get_mcs

TARGET = 1e-2


def _spec(label: str, num_iter: int) -> tuple[str, int]:
    """``"minsum:10"`` → ``("minsum", 10)``; ``"sionna"`` → ``("sionna", num_iter)``."""
    name, _, iters = label.partition(":")
    return name, int(iters) if iters else num_iter


def measure(args: argparse.Namespace) -> dict:
    import sionna

    table = load_bler_table(args.block_bits)
    like = json.loads(args.like.read_text()) if args.like else None
    out = like or {
        "meta": {
            "block_bits": args.block_bits,
            "blocks_per_point": args.blocks,
            "seed": args.seed,
            "sionna": sionna.__version__,
        },
        "mcs": {},
    }
    meta = out["meta"]
    if like and (meta["blocks_per_point"], meta["seed"]) != (args.blocks, args.seed):
        raise SystemExit(f"--like {args.like}: measured with other --blocks / --seed")
    dev = device_string(torch.device(args.device))  # Sionna wants "cuda:0", not "cuda"
    device = torch.cuda.get_device_name(dev) if dev.startswith("cuda") else "cpu"
    labels = args.decoders.split(",")
    for m in [int(s) for s in args.mcs.split(",")]:
        curve = out["mcs"].setdefault(str(m), {"snr_db": [], "decoders": {}})
        grid = list(curve["snr_db"]) if like else []
        start = float(table.thresholds_db(0.1)[m]) - 0.4 if table else 0.0
        for label in labels:
            name, iters = _spec(label, args.num_iter)
            curve["decoders"][label] = {
                "ldpc_decoder": name, "num_iter": iters, "failures": [], "blocks": [],
                "device": device, "torch": torch.__version__,
                "date": datetime.date.today().isoformat(),
            }  # fmt: skip
        for i in range(len(grid) if like else args.max_points):
            snr = grid[i] if like else round(start + i * args.step_db, 3)
            if not like:
                curve["snr_db"].append(snr)
            line = f"MCS {m:2d} {snr:6.2f} dB:"
            for label in labels:
                name, iters = _spec(label, args.num_iter)
                t0 = time.time()
                gen = torch.Generator().manual_seed(args.seed * 1_000_003 + m * 1000 + i)
                fails, n = simulate_bler(
                    m, args.block_bits, snr, args.blocks, iters,
                    device=dev, batch=args.batch, generator=gen, ldpc_decoder=name,
                )  # fmt: skip
                curve["decoders"][label]["failures"].append(fails)
                curve["decoders"][label]["blocks"].append(n)
                line += f"  {label} {fails / n:.5f} ({time.time() - t0:.1f} s)"
            print(line, flush=True)
            last = [curve["decoders"][d]["failures"][-1] for d in labels]
            if not like and all(f < args.stop_bler * args.blocks for f in last):
                break
        summarise(m, curve)
        if args.out:
            atomic_write_text(args.out, _dumps(out))
    return out


def summarise(m: int, curve: dict, resamples: int = 1000) -> None:
    """Adds ``bler``, ``snr_at_target`` (dB) and, against the first decoder, ``delta_db`` with
    its bootstrap standard deviation ``delta_sd_db`` to every decoder of ``curve``.

    The bootstrap redraws every point's failures from Binomial(blocks, measured BLER),
    independently for the two decoders: the decoders see the same channel, so their errors
    are positively correlated and the true spread of the difference is smaller.
    """
    decs = curve["decoders"]
    rng = np.random.default_rng(0)
    draws = {}
    for label, c in decs.items():
        c["bler"] = [f / n for f, n in zip(c["failures"], c["blocks"])]
        c["snr_at_target"] = _snr_at_target(curve["snr_db"], c["bler"])
        fails = rng.binomial(c["blocks"], c["bler"], size=(resamples, len(c["bler"])))
        draws[label] = np.array(
            [_snr_at_target(curve["snr_db"], f / np.asarray(c["blocks"])) for f in fails]
        )
    ref = next(iter(decs))
    for label, c in decs.items():
        c["delta_db"] = c["snr_at_target"] - decs[ref]["snr_at_target"]
        diff = draws[label] - draws[ref]
        diff = diff[np.isfinite(diff)]
        c["delta_sd_db"] = float(np.std(diff)) if label != ref and diff.size > 1 else 0.0
    print(
        f"MCS {m:2d}: SNR at BLER {TARGET:g}: "
        + ", ".join(
            f"{k} {c['snr_at_target']:.3f} dB ({c['delta_db']:+.3f} ± {c['delta_sd_db']:.3f})"
            for k, c in decs.items()
        ),
        flush=True,
    )


def _modulation(qm: int) -> str:
    return "QPSK" if qm == 2 else f"{2**qm}-QAM"


def _snr_at_target(snr_db: list[float], bler) -> float:
    return threshold_from_curve({"snr_db": snr_db, "bler": list(bler)}, TARGET)


def plot(results: dict, figure: Path) -> str:
    """BLER curves (one panel per MCS) → ``figure``; returns the markdown table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = results["mcs"]
    labels = list(next(iter(curves.values()))["decoders"])
    ref = labels[0]
    cols = min(2, len(curves))
    rows_ = math.ceil(len(curves) / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.6 * cols, 3.4 * rows_), squeeze=False)
    head = " | ".join(f"{k} (dB)" if k == ref else f"{k} − {ref} (dB)" for k in labels)
    rows = [f"| MCS | modulation, rate | {head} |", "|---|---|" + "---|" * len(labels)]
    styles = ["o-", "s--", "^:", "v-.", "D-"]
    for ax, (m, c) in zip(axes.reshape(-1), curves.items()):
        mcs = get_mcs(int(m))
        cells = []
        for i, (label, d) in enumerate(c["decoders"].items()):
            style = styles[i % len(styles)]  # zip with the styles dropped a 5th decoder
            seen = [(x, b) for x, b in zip(c["snr_db"], d["bler"]) if b > 0]  # no failure: off
            ax.semilogy(
                *zip(*seen),
                style,
                ms=4,
                label=f"{label} ({d['snr_at_target']:.2f} dB)"
                if math.isfinite(d["snr_at_target"])
                else f"{label} (off the grid)",
            )
            if not math.isfinite(d["snr_at_target"]):
                cells.append(f"> {c['snr_db'][-1]:.2f} (off the grid)")
            elif label == ref:
                cells.append(f"{d['snr_at_target']:.2f}")
            else:
                cells.append(f"{d['delta_db']:+.2f} ± {d['delta_sd_db']:.2f}")
        ax.axhline(TARGET, color="grey", lw=0.8, ls=":")
        ax.set_title(f"MCS {m}: {_modulation(mcs.qm)}, R = {mcs.rate_x1024}/1024", fontsize=9)
        ax.set_xlabel("Es/N0 (dB)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        rows.append(
            f"| {m} | {_modulation(mcs.qm)}, {mcs.rate_x1024}/1024 | " + " | ".join(cells) + " |"
        )
    for ax in axes[:, 0]:
        ax.set_ylabel("BLER (CRC failures per block)")
    meta = results["meta"]
    fig.suptitle(
        f"Digital chain, {meta['block_bits']}-bit blocks, AWGN, {meta['blocks_per_point']} "
        "blocks per point\n(iterations after the colon, else 20; points without a failure not "
        "drawn; SNR at BLER 1e-2 in brackets)",
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
    p.add_argument("--decoders", default="sionna,minsum", help="name[:iterations],...")
    p.add_argument("--block-bits", type=int, default=1024)
    p.add_argument("--blocks", type=int, default=2000, help="blocks per SNR point")
    p.add_argument("--batch", type=int, default=256, help="blocks per decoder call")
    p.add_argument("--num-iter", type=int, default=20)
    p.add_argument("--step-db", type=float, default=0.2)
    p.add_argument("--max-points", type=int, default=12)
    p.add_argument("--stop-bler", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--like", type=Path, help="results JSON whose grid (and curves) to extend")
    p.add_argument("--out", type=Path, default=None, help="results JSON")
    p.add_argument("--plot", type=Path, nargs="+", help="plot (and merge) these results instead")
    p.add_argument("--figure", type=Path, default=Path("docs/figures/ldpc_bler.png"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.plot:
        results = merge([json.loads(f.read_text()) for f in args.plot])
        for m, c in results["mcs"].items():
            summarise(int(m), c)
        if args.out:
            atomic_write_text(args.out, _dumps(results))
    else:
        results = measure(args)
    print(plot(results, args.figure))
    for m, c in results["mcs"].items():
        off = [k for k, d in c["decoders"].items() if not math.isfinite(d["snr_at_target"])]
        if off:
            print(f"MCS {m}: {off} did not reach BLER {TARGET:g} on the grid (more points)")


def _dumps(results: dict) -> str:
    """JSON text; a threshold not reached on the grid (inf) is written as null."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return None if isinstance(x, float) and not math.isfinite(x) else x

    return json.dumps(clean(results), indent=1)


def merge(parts: list[dict]) -> dict:
    """One results dict from several (e.g. one per MCS): same blocks per point and seed; an
    MCS in several parts must have the same grid (its decoders are combined)."""
    out = {"meta": parts[0]["meta"], "mcs": {}}
    for part in parts:
        if (part["meta"]["blocks_per_point"], part["meta"]["seed"]) != (
            out["meta"]["blocks_per_point"],
            out["meta"]["seed"],
        ):
            raise SystemExit("results with different blocks per point or seeds")
        for m, c in part["mcs"].items():
            have = out["mcs"].setdefault(m, {"snr_db": c["snr_db"], "decoders": {}})
            if have["snr_db"] != c["snr_db"]:
                raise SystemExit(f"MCS {m}: results on different SNR grids")
            have["decoders"].update(c["decoders"])
    out["mcs"] = dict(sorted(out["mcs"].items(), key=lambda kv: int(kv[0])))
    return out


if __name__ == "__main__":
    main()
