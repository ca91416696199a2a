"""Detector training throughput: the model's own forward/backward rate against the full loop.

On one device: (a) *model only* — forward, backward and optimiser step on batches already
collated and resident on the device (the ceiling); (b) *full loop* — ``train_detector`` with
its sampler, augmentation, collation and host→device copies (what training gets). Samples/s
of both and their ratio (≥ 0.9: data loading does not starve the GPU). DDP scaling is measured
by running ``v2x-train`` under ``torchrun`` with 1 and 2 processes (see docs/benchmarks.md).

    python benchmarks/bench_train.py --device cuda --model pointpillars --batch 8
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch
import yaml

import v2x.conf
from v2x.datasets.frame import collate_frames
from v2x.datasets.synthetic import generate_sequence
from v2x.datasets.synthetic_config import SyntheticConfig
from v2x.perception.checkpoint import detector_config_from_dict
from v2x.perception.detector import CoopDetector
from v2x.perception.train import TrainConfig, train_detector


def model_only(model, batches, steps: int, device: torch.device, modes) -> float:
    """Samples/s of forward + backward + AdamW step on resident batches (bf16 autocast on GPU)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = device.type == "cuda"
    model.train()

    def step(i: int) -> None:
        batch = batches[i % len(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = model(batch, modes[i % len(modes)])["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(3 * len(modes)):  # every mode's shapes autotuned (cudnn.benchmark) first
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batches[0].batch_size / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="pointpillars")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--sequences", type=int, default=4)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    name = "pillars_center" if args.model == "small" else args.model
    data = yaml.safe_load((Path(v2x.conf.__file__).parent / "model" / f"{name}.yaml").read_text())
    config = detector_config_from_dict(data)
    t = time.perf_counter()
    syn = SyntheticConfig(device=args.device)
    frames = [f for s in range(args.sequences) for f in generate_sequence(syn, 1000 + s, 10)]
    print(f"generated {len(frames)} frames in {time.perf_counter() - t:.1f} s "
          f"({len(frames) / (time.perf_counter() - t):.1f} frames/s)")  # fmt: skip
    modes = TrainConfig.modes
    rng = random.Random(0)
    batches = [collate_frames(rng.sample(frames, args.batch)).to(device) for _ in range(4)]
    model = CoopDetector(config).to(device)
    ceiling = model_only(model, batches, args.steps, device, modes)
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(steps=args.steps + 5, batch_size=args.batch, out_dir=out, quiet=True,
                          augment=True, device=args.device, checkpoint_every=10**9,
                          log_every=1, model=config)  # fmt: skip

        def sample(step: int, rank: int, count: int):
            r = random.Random(step * 31 + rank)
            return [frames[r.randrange(len(frames))] for _ in range(count)]

        train_detector(cfg, sample, resume=False)
        rows = (Path(out) / "log.csv").read_text().splitlines()[1:]
        # the last row's rate counts every step; take the rate over the steps after the first 5
        first = rows[4].split(",")
        last = rows[-1].split(",")
        steps_first, steps_last = int(first[0]) + 1, int(last[0]) + 1
        t_first = steps_first * args.batch / float(first[-1])
        t_last = steps_last * args.batch / float(last[-1])
        loop = (steps_last - steps_first) * args.batch / (t_last - t_first)
    print(f"model {args.model}, batch {args.batch}, device {device}")
    print(f"model only (resident batches): {ceiling:8.1f} samples/s")
    print(f"full loop (sample+augment+collate+copy): {loop:8.1f} samples/s "
          f"({loop / ceiling:.2f}x the model-only rate)")


if __name__ == "__main__":
    main()
