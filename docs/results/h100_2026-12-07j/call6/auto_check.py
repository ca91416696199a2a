"""``python auto_check.py <repo> <calls> <frames> <batch>``: warm issue-16 run_sweep calls (fp16 /
fp16, 1e11 Hz) with ``feature_cache_gb: auto``: whether each ran in lockstep, the cache's limit,
peak allocated and reserved device memory."""
import sys
from pathlib import Path

repo, calls, frames, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep as sweep  # noqa: E402
from v2x.sweep_reuse import EncodeCache  # noqa: E402

original_waves, original_hold = sweep.lockstep_waves, EncodeCache.would_hold
state = {}


def waves(ordered, fits):
    state["lockstep"] = not fits
    return original_waves(ordered, fits)


def would_hold(self, batch, num_frames):
    fits = original_hold(self, batch, num_frames)
    state["limit"] = self.max_bytes
    return fits


sweep.lockstep_waves, EncodeCache.would_hold = waves, would_hold
run = cuda_sweep_args(frames=frames, batch_size=batch, bandwidth_hz=1e11, precision="fp16",
                      codec_precision="fp16")
for call in range(calls):
    torch.cuda.reset_peak_memory_stats()
    s = bench_run_sweep(run)
    print(f"call {call}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s lockstep={state['lockstep']} "
          f"cache limit {state['limit'] / 1e9:.1f} GB, peak allocated "
          f"{torch.cuda.max_memory_allocated() / 1e9:.1f} GB, reserved "
          f"{torch.cuda.max_memory_reserved() / 1e9:.1f} GB", flush=True)
