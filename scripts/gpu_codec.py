"""Train the shipped DeepJSCC codec for the task on a GPU (frozen shipped detector)."""
import argparse
import random
import time

import torch

from v2x.checkpoint import load_detector
from v2x.codec_training import CodecTrainConfig, train_codec_for_task
from v2x.datasets.synthetic import SyntheticConfig, generate_sequence
from v2x.semcom import build_codec

ap = argparse.ArgumentParser()
ap.add_argument("--sequences", type=int, default=40)
ap.add_argument("--steps", type=int, default=3000)
ap.add_argument("--seconds", type=float, default=300)
ap.add_argument("--out", required=True)
args = ap.parse_args()
t = time.perf_counter()
syn = SyntheticConfig(device="cuda")
frames = [f for s in range(args.sequences) for f in generate_sequence(syn, 2000 + s, 10)]
print(f"generated {len(frames)} frames in {time.perf_counter() - t:.0f} s", flush=True)
rng = random.Random(0)
cfg = CodecTrainConfig(steps=args.steps, batch_size=4, out_path=f"{args.out}/deepjscc_synthetic.pt",
                       log_path=f"{args.out}/codec_log.csv", log_every=100, max_seconds=args.seconds)
losses = train_codec_for_task(build_codec("deepjscc", hidden=64), load_detector(), lambda s, n: rng.sample(frames, n),
                              cfg, torch.device("cuda"))
print(f"trained {len(losses)} steps; first {losses[0]:.3f} last-100 mean {sum(losses[-100:]) / len(losses[-100:]):.3f}")
