"""Where a detector checkpoint loses vehicle AP: localisation errors of its matched boxes per
fusion strategy on the synthetic test towns (ideal link), and the IoU each error source costs
(``v2x.perception.box_errors``). The vehicles are those AP counts: cars and trucks inside the
evaluation range (all corners) that some agent's LiDAR hits.

    python scripts/diagnose_detector.py --model pointpillars --sequences 60 --frames 1
    python scripts/diagnose_detector.py --checkpoint best.pt --device cuda --sequences 100 --out errors.json
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from v2x.channels import build_channel
from v2x.datasets.build import sequence_seed
from v2x.datasets.frame import collate_frames
from v2x.datasets.synthetic import generate_sequence
from v2x.datasets.synthetic_config import SyntheticConfig
from v2x.evaluation import VEHICLE_LABELS, default_eval_config, ego_ground_truth
from v2x.perception.ap_range import range_mask
from v2x.perception.box_errors import ERROR_FIELDS, matched_box_errors
from v2x.perception.checkpoint import load_detector
from v2x.perception.fusion import build_fusion
from v2x.pipeline import CooperativePipeline
from v2x.semcom import build_codec


def fusion_errors(model, frames, fusion: str, device, batch: int) -> dict[str, np.ndarray]:
    """``matched_box_errors`` of every counted vehicle of ``frames``, concatenated."""
    pipe = CooperativePipeline(model, build_fusion(fusion), build_codec("identity"),
                               build_channel("awgn")).to(device).eval()  # fmt: skip
    eval_range = default_eval_config(model.grid).eval_range
    vehicles = torch.tensor(VEHICLE_LABELS)
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ERROR_FIELDS}
    torch.manual_seed(0)
    for start in range(0, len(frames), batch):
        b = collate_frames(frames[start : start + batch]).to(device)
        gt = ego_ground_truth(b, model.grid)
        with torch.no_grad():
            det = pipe.run(b, torch.tensor([30.0], device=device)).detections
        for i in range(b.boxes.shape[0]):
            boxes, _, labels = (t.cpu() for t in det.frame(i))
            g_boxes, g_labels = gt.boxes[i].cpu(), gt.labels[i].cpu()
            counted = (gt.present[i] & ~gt.ignored[i]).cpu() & torch.isin(g_labels, vehicles)
            counted &= range_mask(g_boxes, eval_range)
            errors = matched_box_errors(boxes[torch.isin(labels, vehicles)], g_boxes[counted])
            for k in ERROR_FIELDS:
                rows[k].append(errors[k])
    return {k: torch.cat(v).numpy() for k, v in rows.items()}


def summary(e: dict[str, np.ndarray]) -> dict[str, float]:
    """Shares of IoU bands; over matches (IoU > 0.5): error quantiles, flips, oracle IoUs."""
    iou, m = e["iou"], e["iou"] > 0.5
    out = {"vehicles": int(iou.size), "share_iou_over_0.7": float(np.mean(iou > 0.7)),
           "share_iou_0.5_0.7": float(np.mean(m & (iou <= 0.7))),
           "share_iou_at_most_0.5": float(np.mean(~m)), "matched": int(m.sum()),
           "mean_iou_matched": float(iou[m].mean()) if m.any() else math.nan}  # fmt: skip
    for k in ("along_m", "across_m", "length_m", "width_m"):
        out[f"{k}_mean"] = float(e[k][m].mean()) if m.any() else math.nan
        out[f"{k}_abs_p90"] = float(np.percentile(np.abs(e[k][m]), 90)) if m.any() else math.nan
    axis = np.degrees(np.abs(e["axis_rad"][m]))
    for q in (50, 75, 90):
        out[f"axis_deg_p{q}"] = float(np.percentile(axis, q)) if m.any() else math.nan
    out["flipped_share"] = float(np.mean(e["flipped"][m])) if m.any() else math.nan
    mid = m & (iou <= 0.7)
    for k in ("iou_true_centre", "iou_true_size", "iou_true_axis"):
        out[f"mean_{k}"] = float(e[k][m].mean()) if m.any() else math.nan
        out[f"lifted_over_0.7_by_{k}"] = float(np.mean(e[k][mid] > 0.7)) if mid.any() else math.nan
    # the AP@0.5 misses that are boxes in the right place turned the wrong way
    miss = ~m & np.isfinite(e["iou_true_axis"])
    out["misses_over_0.7_with_true_axis"] = float(np.mean(e["iou_true_axis"][miss] > 0.7)) if miss.any() else math.nan  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None, help="detector checkpoint (default: shipped)")
    ap.add_argument("--model", choices=("small", "pointpillars"), default="pointpillars")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sequences", type=int, default=60, help="test towns")
    ap.add_argument("--frames", type=int, default=1, help="frames per town")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--fusions", nargs="+", default=["max", "early", "none"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    model = load_detector(args.checkpoint, device, backbone=args.model)
    syn = SyntheticConfig(device=args.device if device.type == "cuda" else "cpu")
    frames = [f for s in range(args.sequences)
              for f in generate_sequence(syn, sequence_seed(args.seed, "test", s), args.frames)]  # fmt: skip
    result = {}
    for fusion in args.fusions:
        result[fusion] = summary(fusion_errors(model, frames, fusion, device, args.batch))
        print(fusion, json.dumps({k: round(v, 4) for k, v in result[fusion].items()}), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"frames": len(frames), "test_seed": args.seed, "rows": result}, fh, indent=1)


if __name__ == "__main__":
    main()
