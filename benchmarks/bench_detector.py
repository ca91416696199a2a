"""Cooperative detector throughput, network only (OpenCOOD's benchmark setting).

5 agents on OpenCOOD's 704 x 200 BEV grid (x ±140.8 m, y ±40 m, 0.4 m pillars), ~25k points
per agent: pillar encoder + backbone for every agent, warp to the ego, attention fusion, centre
head. Reports cooperative frames/s in fp32 and bf16 autocast, and the ratio against OpenCOOD's
PointPillar attention-fusion figures measured on an H100 with torch 2.11 (103 fps fp32, 136 fps
fp16; the project's reference numbers) and against our own fp32 run in this process.

    python benchmarks/bench_detector.py --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch

from v2x.perception.bev import BEVGrid
from v2x.perception.detector import CoopDetector, DetectorConfig
from v2x.perception.fusion import build_fusion
from v2x.perception.warp import relative_level_transforms, warp_to_ego

OPENCOOD_FPS = {"fp32": 103.0, "fp16": 136.0}


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
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    grid = BEVGrid(x_range_m=(-140.8, 140.8), y_range_m=(-40.0, 40.0), z_range_m=(-1.0, 5.0))
    model = CoopDetector(DetectorConfig(grid=grid)).to(device).eval()
    model = model.to(memory_format=torch.channels_last)
    fusion = build_fusion("attention")
    print(f"device {device}, grid {grid.width}x{grid.height}, agents {args.agents}, points/agent {args.points}")
    for b in args.batch:
        inputs = make_inputs(b, args.agents, args.points, device)
        fp32 = measure(model, fusion, inputs, torch.float32, args.iters, device)
        half = measure(model, fusion, inputs, torch.bfloat16 if device.type == "cuda" else torch.float32, args.iters, device)
        fps32, fps16 = b / fp32, b / half
        print(f"batch {b}: fp32 {fps32:8.1f} coop frames/s ({fps32 / OPENCOOD_FPS['fp32']:.2f}x OpenCOOD fp32) | "
              f"bf16 {fps16:8.1f} frames/s ({fps16 / OPENCOOD_FPS['fp16']:.2f}x OpenCOOD fp16; "
              f"{fps16 / fps32:.2f}x our fp32 in this run)")


if __name__ == "__main__":
    main()
