"""One GPU job: train DeepJSCC for the task on the shipped detector (distillation + detection +
reconstruction), calibrate its SNR gate on validation frames, and measure retention on test
frames. Writes the checkpoint, the training log and JSON results to --out."""
import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from v2x.channels import build_channel  # noqa: E402
from v2x.checkpoint import load_detector  # noqa: E402
from v2x.codec_calibration import ap_per_snr, calibrate_snr_gate  # noqa: E402
from v2x.codec_training import CodecTrainConfig, train_codec_for_task  # noqa: E402
from v2x.datasets.synthetic import SyntheticConfig, generate_sequence  # noqa: E402
from v2x.fusion_evaluation import evaluate_fusions as evaluate  # noqa: E402
from v2x.perception.fusion import build_fusion  # noqa: E402
from v2x.pipeline import CooperativePipeline  # noqa: E402
from v2x.semcom import build_codec  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--device", default="cuda")
ap.add_argument("--sequences", type=int, default=60)
ap.add_argument("--frames", type=int, default=10)
ap.add_argument("--val-sequences", type=int, default=8)
ap.add_argument("--test-sequences", type=int, default=8)
ap.add_argument("--seconds", type=float, default=330)
ap.add_argument("--steps", type=int, default=100_000)
ap.add_argument("--batch", type=int, default=4)
ap.add_argument("--hidden", type=int, default=64)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--snr", type=float, nargs="+", default=[-10, -7.5, -5, -2.5, 0, 2.5, 5, 7.5, 10, 15, 20, 30])
ap.add_argument("--init", default=None)
ap.add_argument("--checkpoint", default=None, help="skip training: calibrate and evaluate this one")
ap.add_argument("--skip-retention", action="store_true")
ap.add_argument("--out", required=True)
args = ap.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
device = torch.device(args.device)
t0 = time.perf_counter()
syn = SyntheticConfig(device=args.device)


def frames_of(seed0: int, count: int) -> list:
    return [f for s in range(count) for f in generate_sequence(syn, seed0 + s, args.frames)]


train = frames_of(1000, args.sequences) if args.checkpoint is None else []
val = frames_of(900_000, args.val_sequences)
test = frames_of(950_000, args.test_sequences)
print(f"generated {len(train)} + {len(val)} + {len(test)} frames in {time.perf_counter() - t0:.0f} s", flush=True)
model = load_detector(None, device)
rng = random.Random(0)
ratios = (1 / 512, 1 / 256, 1 / 128, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4)
cc = CodecTrainConfig(
    steps=args.steps, batch_size=args.batch, lr=args.lr, ratios=ratios,
    ratio_weights=(1, 1, 2, 3, 2, 1, 1, 1), out_path=str(out / "deepjscc.pt"),
    log_path=str(out / "codec_log.csv"), log_every=200, max_seconds=args.seconds, quiet=True,
)
# The detector's features are signed (its last layer is a 1x1 conv): no output clamp.
codec = build_codec("deepjscc", hidden=args.hidden, checkpoint=args.checkpoint)
if args.init:  # warm start (e.g. from the previously shipped weights); the gate is recalibrated
    codec.warm_start(args.init)
t = time.perf_counter()
if args.checkpoint is None:
    losses = train_codec_for_task(codec, model, lambda s, n: rng.sample(train, n), cc, device)
    print(f"codec: {len(losses)} steps in {time.perf_counter() - t:.0f} s, last-200 mean loss "
          f"{sum(losses[-200:]) / len(losses[-200:]):.3f}", flush=True)
codec = codec.to(device).eval()
t = time.perf_counter()
calib = calibrate_snr_gate(model, codec, val, snr_db=args.snr)
codec.save_checkpoint(str(out / "deepjscc.pt"))
(out / "gate_calibration.json").write_text(json.dumps(calib.to_dict(), indent=1))
print(f"gate {calib.thresholds_db} in {time.perf_counter() - t:.0f} s", flush=True)

if args.skip_retention:
    sys.exit(0)
# Retention on the test frames: uncompressed vs deepjscc per ratio at 10 dB, AWGN and Rayleigh.
kw = {"hidden": args.hidden, "checkpoint": str(out / "deepjscc.pt")}
rows = {"uncompressed": evaluate(model, test, device, fusions=("none", "max"), snr_db=10.0)}
for channel in ("awgn", "rayleigh"):
    for r in ratios:
        res = evaluate(model, test, device, fusions=("max",), codec="deepjscc",
                       codec_kwargs={**kw, "bandwidth_ratio": r}, channel=channel, snr_db=10.0)
        rows[f"deepjscc {channel} 1/{round(1 / r)}"] = res
(out / "retention_10db.json").write_text(json.dumps(rows, indent=1))

# Held-out check of "never below ego-only" with the gate on: AP vs SNR on the test frames.
gated = build_codec("deepjscc", **kw).to(device).eval()
ego_pipe = CooperativePipeline(model, build_fusion("none"), gated, build_channel("awgn")).to(device)
held = {"ego": ap_per_snr(ego_pipe.eval(), test, args.snr[:1], (0.5, 0.7), 4, device)}
for channel in ("awgn", "rayleigh"):
    pipe = CooperativePipeline(model, build_fusion("max"), gated, build_channel(channel)).to(device)
    for r in (1 / 512, 1 / 128, 1 / 64, 1 / 8):
        gated.bandwidth_ratio = r
        held[f"{channel}@{r:g}"] = ap_per_snr(pipe.eval(), test, args.snr, (0.5, 0.7), 4, device)
        below = [s for i, s in enumerate(args.snr) for t in (0.5, 0.7)
                 if held[f"{channel}@{r:g}"][t][i] < held["ego"][t][0]]
        print(f"gated {channel} 1/{round(1 / r)}: AP@0.7 "
              f"{[round(v, 3) for v in held[f'{channel}@{r:g}'][0.7]]}; below ego-only at {below}")
held["snr_db"] = args.snr
(out / "gated_test_curves.json").write_text(json.dumps({k: v if k == "snr_db" else {str(t): x for t, x in v.items()} for k, v in held.items()}, indent=1))
base = rows["uncompressed"]["rows"]["max"]
for name, res in rows.items():
    for fusion, row in res["rows"].items():
        print(f"{name:28s} {fusion:5s} AP@0.5 {row['AP@0.5']:.3f} AP@0.7 {row['AP@0.7']:.3f} "
              f"({row['AP@0.7'] / max(base['AP@0.7'], 1e-9):.0%} of uncompressed AP@0.7)", flush=True)
print(f"total {time.perf_counter() - t0:.0f} s")
