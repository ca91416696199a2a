"""Give a detector checkpoint the heading-axis channels (``DetectorConfig.yaw_axis``) without
training the network: every other weight stays, the two new output channels of the head's 3×3
regression convolution are the ridge-regression solution of ``(sin 2·yaw, cos 2·yaw)`` on the
frozen head features (the 3×3 neighbourhood that convolution reads) at the centre cells of the
ground-truth boxes of training towns (``data.seed`` 1000 + s, the towns of
conf/train_pointpillars.yaml), seen through each of ``--fusions`` — the last layer trained in
closed form, as a linear probe is. Boxes of ``--classes`` count (pedestrians are near-square:
their axis is noise to the fit and costs their IoU nothing).

    git show 8889c8c:v2x/assets/detector_pointpillars.pt > /tmp/pointpillars_v1.pt  # no axis
    python scripts/fit_axis_head.py --checkpoint /tmp/pointpillars_v1.pt --towns 60 --out axis.pt

(The shipped detector has had trained axis channels since 2026-12-01; the script refuses a
checkpoint that already has them.)
"""

from __future__ import annotations

import argparse

import torch

from v2x.channels import build_channel
from v2x.datasets.frame import CLASS_NAMES, collate_frames
from v2x.datasets.synthetic import generate_sequence
from v2x.datasets.synthetic_config import SyntheticConfig
from v2x.evaluation import ego_ground_truth
from v2x.perception.axis_fit import centre_samples, ridge, with_axis_channels
from v2x.perception.checkpoint import load_detector, save_checkpoint
from v2x.perception.fusion import build_fusion
from v2x.pipeline import CooperativePipeline
from v2x.semcom import build_codec


def axis_samples(model, frames, fusion: str, classes: list[int], device, batch: int):
    """``centre_samples`` of the counted GT boxes of ``classes`` on the ego's fused map of
    ``fusion`` (the head's shared features), over ``frames``."""
    pipe = CooperativePipeline(model, build_fusion(fusion), build_codec("identity"),
                               build_channel("awgn")).to(device).eval()  # fmt: skip
    seen: list[torch.Tensor] = []
    hook = model.head.shared.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    xs, ys = [], []
    wanted = torch.tensor(classes, device=device)
    try:
        for start in range(0, len(frames), batch):
            b = collate_frames(frames[start : start + batch]).to(device)
            gt = ego_ground_truth(b, model.grid)
            seen.clear()
            with torch.no_grad():
                pipe.run(b, torch.tensor([30.0], device=device))
            shared = seen[-1]  # the head's last call: the ego's fused map [B, C, h, w]
            if shared.shape[0] != b.boxes.shape[0]:
                raise RuntimeError(f"fit_axis_head: {fusion}'s last head call is not the ego's")
            for i in range(shared.shape[0]):
                keep = gt.present[i] & ~gt.ignored[i] & torch.isin(gt.labels[i], wanted)
                x, y = centre_samples(shared[i], gt.boxes[i][keep], model)
                xs.append(x)
                ys.append(y)
    finally:
        hook.remove()
    return torch.cat(xs), torch.cat(ys)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None, help="detector checkpoint (default: shipped)")
    ap.add_argument("--model", choices=("small", "pointpillars"), default="pointpillars")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--towns", type=int, default=60, help="training towns (seeds 1000 + s)")
    ap.add_argument("--frames", type=int, default=1, help="frames per town")
    ap.add_argument("--seed", type=int, default=1000, help="data.seed of the training run")
    ap.add_argument("--fusions", nargs="+", default=["max", "early"])
    ap.add_argument("--classes", nargs="+", default=["car", "truck", "cyclist"])
    ap.add_argument("--ridge", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    device = torch.device(args.device)
    shipped = load_detector(args.checkpoint, device, backbone=args.model)
    if shipped.config.yaw_axis:
        raise SystemExit("fit_axis_head: the checkpoint already has heading-axis channels")
    syn = SyntheticConfig(device=args.device if device.type == "cuda" else "cpu")
    frames = [f for s in range(args.towns)
              for f in generate_sequence(syn, args.seed + s, args.frames)]  # fmt: skip
    classes = [CLASS_NAMES.index(c) for c in args.classes]
    parts = [axis_samples(shipped, frames, f, classes, device, args.batch) for f in args.fusions]
    x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    weight, bias = ridge(x, y, args.ridge)
    model = with_axis_channels(shipped, weight.float().to(device), bias.float().to(device))
    fit = x @ weight + bias
    axis_err = torch.rad2deg(
        (torch.atan2(fit[:, 0], fit[:, 1]) - torch.atan2(y[:, 0], y[:, 1])).remainder(2 * torch.pi)
    )
    axis_err = torch.minimum(axis_err, 360 - axis_err) / 2  # folded axis error, degrees
    print(f"{len(y)} boxes from {len(frames)} frames x {args.fusions}: fitted axis error "
          f"p50 {axis_err.median():.2f} deg, p90 {axis_err.quantile(0.9):.2f} deg")  # fmt: skip
    save_checkpoint(args.out, model, 0, extra={"axis_fit": {
        "towns": args.towns, "frames": args.frames, "seed": args.seed, "fusions": args.fusions,
        "classes": args.classes, "ridge": args.ridge, "boxes": len(y),
        "source": args.checkpoint or f"shipped:{args.model}"}})  # fmt: skip
    print(f"checkpoint: {args.out}")


if __name__ == "__main__":
    main()
