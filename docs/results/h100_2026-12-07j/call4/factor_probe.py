"""``python factor_probe.py <repo> <factor>``: run_sweep with ``auto`` and the working-set factor
``WORKING_SET_BATCHES_PER_CONDITION`` set to <factor>: fp32 / fp32 at 256 frames and fp16 / fp16
at 512 frames (batches of 32, 1e11 Hz): lockstep or not, peak allocated and reserved memory,
rate (two calls each)."""
import sys
from pathlib import Path

repo, factor = Path(sys.argv[1]), float(sys.argv[2])
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep as sweep  # noqa: E402
import v2x.sweep_reuse as reuse  # noqa: E402

reuse.WORKING_SET_BATCHES_PER_CONDITION = factor
original_waves = sweep.lockstep_waves
state = {"lockstep": None}


def waves(ordered, fits):
    state["lockstep"] = not fits
    return original_waves(ordered, fits)


sweep.lockstep_waves = waves
for frames, det, codec in [(256, "fp32", "fp32"), (512, "fp16", "fp16")]:
    run = cuda_sweep_args(frames=frames, batch_size=32, bandwidth_hz=1e11, precision=det,
                          codec_precision=codec)
    for call in range(2):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        s = bench_run_sweep(run)
        print(f"{frames} frames {det}/{codec} call {call}: {s['fc_per_s']:.1f} fc/s "
              f"lockstep={state['lockstep']} peak allocated "
              f"{torch.cuda.max_memory_allocated() / 1e9:.1f} GB, reserved "
              f"{torch.cuda.max_memory_reserved() / 1e9:.1f} GB of "
              f"{torch.cuda.mem_get_info()[1] / 1e9:.1f}", flush=True)
