"""Cooperative detector throughput, network only (OpenCOOD's benchmark setting).

5 agents on OpenCOOD's 704 x 200 BEV grid (x ±140.8 m, y ±40 m, 0.4 m pillars), ~25k points
per agent: pillar encoder + backbone for every agent, warp to the ego, attention fusion, centre
head. Reports cooperative frames/s in fp32 and bf16 autocast, and the ratio against OpenCOOD's
PointPillar attention-fusion reference (6.6 M parameters) measured on one H200 with torch 2.11
(124.5 frames/s at batch 1 and 135.7 at batch 8 in fp32, 176.7 at batch 8 in fp16; the
project's reference numbers) and against our own fp32 run in this process.

    python benchmarks/bench_detector.py --device cuda --model pointpillars
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import torch
import yaml

import v2x.conf
from v2x.checkpoint import detector_config_from_dict
from v2x.perception.bev import BEVGrid
from v2x.perception.detector import CoopDetector
from v2x.perception.fusion import build_fusion
from v2x.perception.warp import relative_level_transforms, warp_to_ego

# (batch, precision) -> reference cooperative frames/s on one H200 (batch 1 fp16 not measured:
# the batch-8 figure is used for both batches there).
OPENCOOD_FPS = {(1, "fp32"): 124.5, (8, "fp32"): 135.7, (1, "fp16"): 176.7, (8, "fp16"): 176.7}


def make_inputs(batch: int, agents: int, points: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(batch, agents, points, 3, generator=g) * torch.tensor([281.6, 80.0, 4.0]) - torch.tensor([140.8, 40.0, 2.0])
    pts = torch.cat([xyz, torch.rand(batch, agents, points, 1, generator=g)], -1)
    poses = torch.eye(4, dtype=torch.float64).repeat(batch, agents, 1, 1)
    poses[..., 0, 3] = torch.linspace(0, 40, agents, dtype=torch.float64)
    poses[..., 2, 3] = 1.8
    return pts.to(device), torch.ones(batch, agents, points, dtype=torch.bool, device=device), poses.to(device)


def network(model: CoopDetector, fusion, pts, mask, poses):
    feats = model.encode(pts, mask, poses)
    warped, cov = warp_to_ego(feats, relative_level_transforms(poses), model.grid)
    return model.head(fusion(warped, cov))


def measure(model, fusion, inputs, dtype, iters: int, device) -> float:
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for _ in range(3):
            network(model, fusion, *inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(iters):
            network(model, fusion, *inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--agents", type=int, default=5)
    ap.add_argument("--points", type=int, default=25_000)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--model", default="small", help="conf/model name: small (pillars_center) or pointpillars")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    grid = BEVGrid(x_range_m=(-140.8, 140.8), y_range_m=(-40.0, 40.0), z_range_m=(-1.0, 5.0))
    name = "pillars_center" if args.model == "small" else args.model
    data = yaml.safe_load((Path(v2x.conf.__file__).parent / "model" / f"{name}.yaml").read_text())
    data.pop("grid", None)
    config = detector_config_from_dict({**data, "grid": dataclasses.asdict(grid)})
    model = CoopDetector(config).to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    model = model.to(memory_format=torch.channels_last)
    fusion = build_fusion("attention")
    print(f"device {device}, model {args.model} ({params / 1e6:.2f} M parameters), grid "
          f"{grid.width}x{grid.height}, agents {args.agents}, points/agent {args.points}")
    for b in args.batch:
        inputs = make_inputs(b, args.agents, args.points, device)
        fp32 = measure(model, fusion, inputs, torch.float32, args.iters, device)
        half = measure(model, fusion, inputs, torch.bfloat16 if device.type == "cuda" else torch.float32, args.iters, device)
        fps32, fps16 = b / fp32, b / half
        ref32, ref16 = OPENCOOD_FPS.get((b, "fp32"), math.nan), OPENCOOD_FPS.get((b, "fp16"), math.nan)
        print(f"batch {b}: fp32 {fps32:8.1f} coop frames/s ({fps32 / ref32:.2f}x reference fp32) | "
              f"bf16 {fps16:8.1f} frames/s ({fps16 / ref16:.2f}x reference fp16; "
              f"{fps16 / fps32:.2f}x our fp32 in this run)")


if __name__ == "__main__":
    main()
