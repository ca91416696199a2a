"""Encoder passes and the feature cache's budget per run_sweep call, and the encoder's time per batch:
``python enc_probe.py <repo> <frames> <calls>``."""

import logging
import sys
import time
from pathlib import Path

repo, frames, calls = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cache_gb = sys.argv[4] if len(sys.argv) > 4 else "auto"
encoder = len(sys.argv) > 5
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep_batches as sb  # noqa: E402
import v2x.sweep_reuse as sr  # noqa: E402

logging.basicConfig(level=logging.WARNING, format="%(message)s")
logging.getLogger("v2x.sweep").setLevel(logging.INFO)
orig = sr.feature_cache_bytes


def probed(value, device, sharers=1):
    b = orig(value, device, sharers)
    free, total = torch.cuda.mem_get_info(device)
    print(f"  cache budget {b / 1e9:.1f} GB; driver free {free / 1e9:.1f} GB, allocated "
          f"{torch.cuda.memory_allocated(device) / 1e9:.1f}, reserved {torch.cuda.memory_reserved(device) / 1e9:.1f}",
          flush=True)
    return b


sb.feature_cache_bytes = probed
run = cuda_sweep_args(frames=frames)
run.feature_cache_gb = cache_gb
import v2x  # noqa: E402

print("v2x from", v2x.__file__, "cache", cache_gb, flush=True)
for i in range(calls):
    s = bench_run_sweep(run)
    print(f"call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)

# the encoder alone, per batch of 16 five-agent frames
if not encoder:
    sys.exit(0)
from v2x.sweep import load_frames, plan_sweep  # noqa: E402
from v2x.sweep_batches import prepare_device  # noqa: E402

cfg = {"checkpoint": "shipped", "device": "cuda", "data": {"num_frames": 64, "frames_per_sequence": 10, "seed": 0},
       "batch_size": 16, "output_dir": "/tmp/encprobe", "quiet": True}
plan = plan_sweep(cfg)
fr = load_frames(plan.data, True)
cache, batches = prepare_device(plan, fr, torch.device("cuda"))
model = cache._model
with torch.no_grad():
    for _rep in range(2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for item in batches:
            f = model.encode(item.batch.points, item.batch.point_mask, item.batch.poses)
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / len(batches)
        print(f"encoder: {dt * 1e3:.1f} ms per batch of 16 frames; features {tuple(f.shape)} "
              f"{f.numel() * f.element_size() / 1e9:.2f} GB", flush=True)
