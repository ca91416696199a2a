"""Headline metrics of a detector checkpoint per fusion strategy on the synthetic test towns.

Vehicle AP@0.5/0.7 (cars and trucks matched class-agnostically, OpenCOOD's convention), on the
ego-invisible subset too, pedestrian and cyclist AP at BEV IoU 0.25/0.5, with bootstrap 95 %
intervals over whole test towns (the frames of a town are consecutive and correlated: the
sequence bootstrap; ``--bootstrap-unit frame`` resamples frames); ideal link (identity codec,
30 dB AWGN). The test towns are the dataset store's ``test`` seeds
(``sequence_seed(seed, "test", s)``): never a training or validation town.

    python scripts/evaluate_fusions.py --device cuda --sequences 100 --bootstrap 1000 --out fusions.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from v2x.common import configure_determinism
from v2x.datasets.build import sequence_seed
from v2x.datasets.synthetic import generate_sequence
from v2x.datasets.synthetic_config import SyntheticConfig
from v2x.fusion_evaluation import evaluate_fusions
from v2x.perception.ap_config import BOOTSTRAP_UNITS
from v2x.perception.checkpoint import load_detector
from v2x.perception.inference import PRECISIONS
from v2x.results_table import few_units_note

FUSIONS = (
    "none", "late", "early", "max", "mean", "attention", "where2comm", "semantic_map",
    "object_features",
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None, help="detector checkpoint (default: the shipped one)")
    ap.add_argument("--model", choices=("small", "pointpillars"), default="small",
                    help="which shipped detector (without --checkpoint); default: small, the "
                         "0.57 M CPU detector; the README's tables use pointpillars")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sequences", type=int, default=4, help="test towns")
    ap.add_argument("--frames", type=int, default=10, help="frames per town")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--bootstrap-unit", choices=BOOTSTRAP_UNITS, default="auto",
                    help="resample whole towns (sequence; auto: when towns hold several "
                    "frames) or frames")
    ap.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                    help="detector inference precision (autocast)")
    ap.add_argument("--cuda-graph", action="store_true",
                    help="CUDA: the encoder replays a CUDA graph per batch shape (speed only)")
    ap.add_argument("--fusions", nargs="+", default=list(FUSIONS))
    ap.add_argument("--fusion-options", type=json.loads, default=None,
                    help='constructor kwargs per fusion, JSON, e.g. \'{"semantic_map": {"max_fraction": 0.1}}\'')  # fmt: skip
    ap.add_argument("--sorts", nargs="+", choices=("per_frame", "global"), default=["per_frame"],
                    help="AP sort conventions: the first gives the table's metrics, the others "
                    "are added under 'sort/<name>' (global: HEAL/CoAlign, the textbook AP)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                    help="torch's deterministic kernels: the same numbers on every run "
                    "(--no-deterministic: the GPU may differ in the last bits)")
    args = ap.parse_args()
    configure_determinism(args.deterministic)
    device = torch.device(args.device)
    model = load_detector(args.checkpoint, device, backbone=args.model)
    syn = SyntheticConfig(device=args.device if device.type == "cuda" else "cpu")
    t = time.perf_counter()
    frames = [
        f
        for s in range(args.sequences)
        for f in generate_sequence(syn, sequence_seed(args.seed, "test", s), args.frames)
    ]
    print(f"{len(frames)} test frames in {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    rows = evaluate_fusions(model, frames, args.fusions, device, args.batch,
                            bootstrap=args.bootstrap, seed=args.seed,
                            bootstrap_unit=args.bootstrap_unit, precision=args.precision,
                            fusion_options=args.fusion_options, sorts=args.sorts,
                            cuda_graph=args.cuda_graph)  # fmt: skip
    print(f"evaluated in {time.perf_counter() - t:.0f} s")
    for name, row in rows.items():
        cells = [f"{k} {row[k]:.3f} [{row[k + '_ci'][0]:.3f}, {row[k + '_ci'][1]:.3f}]"
                 for k in ("vehicle_ap_50", "vehicle_ap_70", "vehicle_ap_70_invisible",
                           "pedestrian_ap_25", "cyclist_ap_25") if args.bootstrap]  # fmt: skip
        unit = (f"| 95 % CI over {row['bootstrap_units']} {row['bootstrap_unit']}s "
                if args.bootstrap else "")  # fmt: skip
        bits = f"| {row['source_bits_per_frame'] / 1e6:.2f} Mbit/frame"
        print(name, "|", " | ".join(cells), unit + bits)
        if "gain_over" in row:  # the paired difference from the baseline on the same frames
            print(f"  minus {row['gain_over']} (paired) |", " | ".join(
                f"{k} {row[k + '_gain']:+.3f} [{row[k + '_gain_ci'][0]:+.3f}, "
                f"{row[k + '_gain_ci'][1]:+.3f}]" for k in ("vehicle_ap_50", "vehicle_ap_70")))  # fmt: skip
        for sort in args.sorts[1:]:
            other = row[f"sort/{sort}"]
            print(f"  {sort} sort |", " | ".join(
                f"{k} {other[k]:.3f}" for k in ("vehicle_ap_50", "vehicle_ap_70", "vehicle_ap_70_invisible")))  # fmt: skip
    units = [int(r.get("bootstrap_units", 0)) for r in rows.values()] if args.bootstrap else []
    note = few_units_note(min(units, default=0))
    if note:  # as under the sweep's and v2x-plot's tables
        print(note)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"frames": len(frames), "test_seed": args.seed, "towns": args.sequences,
                       "fusion_options": args.fusion_options, "precision": args.precision,
                       "deterministic": args.deterministic, "rows": rows}, fh, indent=1,
                      default=list)  # fmt: skip


if __name__ == "__main__":
    main()
