"""One GPU job: generate frames, train the detector, evaluate per fusion, train DeepJSCC for the
task on the new detector, evaluate again. Writes everything to --out."""
import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from v2x.checkpoint import load_detector  # noqa: E402
from v2x.codec_training import CodecTrainConfig, train_codec_for_task  # noqa: E402
from v2x.datasets.synthetic import SyntheticConfig, generate_sequence  # noqa: E402
from v2x.fusion_evaluation import evaluate_fusions as evaluate  # noqa: E402
from v2x.perception.train import TrainConfig, frame_sampler, train_detector  # noqa: E402
from v2x.semcom import build_codec  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--device", default="cuda")
ap.add_argument("--sequences", type=int, default=60)
ap.add_argument("--val-sequences", type=int, default=4)
ap.add_argument("--steps", type=int, default=3500)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--codec-seconds", type=float, default=150)
ap.add_argument("--codec-hidden", type=int, default=64)
ap.add_argument("--out", required=True)
args = ap.parse_args()
out = Path(args.out)
device = torch.device(args.device)
t0 = time.perf_counter()
syn = SyntheticConfig(device=args.device)
frames = [f for s in range(args.sequences) for f in generate_sequence(syn, 1000 + s, 10)]
val = [f for s in range(args.val_sequences) for f in generate_sequence(syn, 900_000 + s, 10)]
print(f"generated {len(frames)} + {len(val)} frames in {time.perf_counter() - t0:.0f} s", flush=True)
tc = TrainConfig(steps=args.steps, batch_size=args.batch, out_dir=str(out / "train"), quiet=True,
                 checkpoint_every=500, device=args.device)
t = time.perf_counter()
ckpt = train_detector(tc, frame_sampler(frames, 0), resume=False)
print(f"detector: {args.steps} steps in {time.perf_counter() - t:.0f} s", flush=True)
state = torch.load(ckpt, map_location="cpu", weights_only=False)
state["optimizer"] = state["scheduler"] = None
torch.save(state, out / "detector_synthetic.pt")
model = load_detector(out / "detector_synthetic.pt", device)
result = evaluate(model, val, device, ('none', 'late', 'early', 'max', 'mean', 'attention', 'where2comm'))
(out / "fusion_eval.json").write_text(json.dumps(result, indent=1))
rng = random.Random(0)
cc = CodecTrainConfig(steps=100_000, batch_size=4, out_path=str(out / "deepjscc_synthetic.pt"),
                      log_path=str(out / "codec_log.csv"), log_every=200, max_seconds=args.codec_seconds,
                      quiet=False)
codec = build_codec("deepjscc", hidden=args.codec_hidden)
losses = train_codec_for_task(codec, model, lambda s, n: rng.sample(frames, n), cc, device)
print(f"codec: {len(losses)} steps, last-100 mean loss {sum(losses[-100:]) / len(losses[-100:]):.3f}", flush=True)
res2 = evaluate(model, val, device, fusions=("max", "attention"), codec="deepjscc",
                codec_kwargs={"hidden": args.codec_hidden, "checkpoint": str(out / "deepjscc_synthetic.pt")})
(out / "deepjscc_eval.json").write_text(json.dumps(res2, indent=1))
print(f"total {time.perf_counter() - t0:.0f} s")
