"""The failing CUDA case of test_on_cuda_seeded_conditions_in_one_call_equal_one_call_each
(max / deepjscc / awgn), with its differences printed: ``python diag_streams.py <repo>``."""

import importlib.util
import os
import sys

import torch

spec = importlib.util.spec_from_file_location(
    "tcs", sys.argv[1] + "/tests/core/test_condition_streams.py"
)
tcs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tcs)
torch.set_num_threads(1)
if os.environ.get("CUDNN_BENCHMARK"):
    torch.backends.cudnn.benchmark = True
    print("cudnn.benchmark on")
torch.manual_seed(0)
det = tcs.CoopDetector(
    tcs.DetectorConfig(
        grid=tcs.GRID,
        pillar_channels=8,
        backbone_channels=(8, 16),
        backbone_layers=1,
        feature_channels=tcs.C,
        score_threshold=0.0,
        max_detections=20,
    )
)
with torch.no_grad():
    for mod in det.modules():
        if isinstance(mod, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
det.eval()
f0 = tcs._frame(1, [(0.0, 0.0, 0.0), (5.0, -3.0, 0.7), (-4.0, 6.0, -2.0)])
f1 = tcs._frame(2, [(10.0, 5.0, 1.0), (13.0, 2.0, 2.5)])
batch = tcs.collate_frames([f0, f1])
for case in tcs.CASES[:5]:
    fusion, codec, codec_kw, channel, channel_kw, noise = case
    for device in ("cpu", "cuda"):
        torch.manual_seed(3)
        pipe = tcs.CooperativePipeline(
            det.to(device),
            tcs.build_fusion(fusion),
            tcs.build_codec(codec, **codec_kw).to(device),
            tcs.build_channel(channel, **channel_kw),
            pose_noise_m=noise[0],
            pose_noise_yaw_rad=noise[1],
        ).eval()
        snr = torch.tensor([-5.0, 3.0, 3.0, 20.0])
        seeds = [11, 12, 13, 14]
        with torch.no_grad():
            a = tcs.run_conditions(pipe, batch.to(device), snr, seeds)
            b = tcs._loop(pipe, batch.to(device), snr, seeds)
        da, db = a.detections, b.detections
        valid_eq = torch.equal(da.valid, db.valid)
        diff = (da.boxes - db.boxes).abs()
        print(
            f"{device} {fusion}/{codec}/{channel}: boxes {tuple(da.boxes.shape)} max|d| {diff.max().item():.3e} "
            f"scores max|d| {(da.scores - db.scores).abs().max().item():.3e} valid equal {valid_eq} labels equal {torch.equal(da.labels, db.labels)}"
        )
        if diff.max().item() > 2e-3:
            bad = (diff > 2e-3).any(-1)
            for idx in bad.nonzero().tolist()[:8]:
                t = tuple(idx)
                print(
                    "   slot",
                    t,
                    "scores",
                    da.scores[t].item(),
                    db.scores[t].item(),
                    "valid",
                    da.valid[t].item(),
                    db.valid[t].item(),
                )
                print("     a", [round(v, 4) for v in da.boxes[t].tolist()])
                print("     b", [round(v, 4) for v in db.boxes[t].tolist()])
            # the same set up to order?
            for k in range(da.boxes.shape[0]):
                for bi in range(da.boxes.shape[1]):
                    sa = sorted(da.scores[k, bi][da.valid[k, bi]].tolist())
                    sb = sorted(db.scores[k, bi][db.valid[k, bi]].tolist())
                    if (
                        len(sa) != len(sb)
                        or max((abs(x - y) for x, y in zip(sa, sb)), default=0) > 2e-3
                    ):
                        print("   cond", k, "frame", bi, "sorted scores differ", sa[-5:], sb[-5:])
        for name in ("source_bits", "channel_uses", "cells_sent", "sent"):
            print("   cost", name, torch.equal(getattr(a.cost, name), getattr(b.cost, name)))
det.to("cpu")
