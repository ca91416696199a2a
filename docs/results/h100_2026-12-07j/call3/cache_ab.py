"""``python cache_ab.py <repo> <rounds> <frames> <batch> <gb>``: warm issue-16 run_sweep calls
(fp16 / fp16, 1e11 Hz) alternating ``feature_cache_gb`` auto and ``<gb>``, in one process; one
unmeasured call of each first; whether each call ran in lockstep and its peak device memory."""
import sys
from pathlib import Path

repo, rounds, frames, batch, gb = (Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                   int(sys.argv[4]), sys.argv[5])
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep as sweep  # noqa: E402

original_waves = sweep.lockstep_waves
state = {"lockstep": None}


def waves(ordered, fits):
    state["lockstep"] = not fits
    return original_waves(ordered, fits)


sweep.lockstep_waves = waves
run = cuda_sweep_args(frames=frames, batch_size=batch, bandwidth_hz=1e11, precision="fp16",
                      codec_precision="fp16")
variants = ["auto", gb]
rates = {name: [] for name in variants}


def call(name):
    run.feature_cache_gb = name
    torch.cuda.reset_peak_memory_stats()
    s = bench_run_sweep(run)
    return s, torch.cuda.max_memory_allocated() / 1e9


for name in variants:
    s, peak = call(name)
    print(f"first {name}: {s['fc_per_s']:.1f} lockstep={state['lockstep']} peak {peak:.1f} GB",
          flush=True)
for r in range(rounds):
    for name in (variants if r % 2 == 0 else variants[::-1]):
        s, peak = call(name)
        rates[name].append(s["fc_per_s"])
        print(f"round {r} {name}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s "
              f"lockstep={state['lockstep']} peak {peak:.1f} GB", flush=True)
for name, rs in rates.items():
    print(f"{name}: " + " ".join(f"{x:.0f}" for x in rs) + f" mean {sum(rs) / len(rs):.0f}")
