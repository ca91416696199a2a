"""Per group of warm run_sweep calls: wall time and the CUDA caching allocator's retries, cudaMalloc and
cudaFree counts: ``python mem_probe.py <repo> <frames> <calls>`` (env CACHE_GB, default auto)."""

import os
import sys
import time
from pathlib import Path

repo, frames, calls = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep as sweep  # noqa: E402

KEYS = ("num_alloc_retries", "num_device_alloc", "num_device_free", "num_sync_all_streams")


def stats() -> dict:
    s = torch.cuda.memory_stats()
    return {k: s.get(k, 0) for k in KEYS}


def wrap(name):
    original = getattr(sweep, name)

    def wrapped(*a, **k):
        before, t = stats(), time.perf_counter()
        out = original(*a, **k)
        after = stats()
        label = a[1].codec + "/" + a[1].fusion if name == "_run_group" else f"wave of {len(a[1])}"
        delta = " ".join(f"{k.replace('num_', '')} {after[k] - before[k]}" for k in KEYS)
        print(f"    {label:20s} {time.perf_counter() - t:6.2f} s  {delta}  reserved "
              f"{torch.cuda.memory_reserved() / 1e9:.0f} GB, peak {torch.cuda.max_memory_reserved() / 1e9:.0f}",
              flush=True)
        return out

    setattr(sweep, name, wrapped)


wrap("_run_group")
if hasattr(sweep, "_run_lockstep"):
    wrap("_run_lockstep")
run = cuda_sweep_args(frames=frames)
run.feature_cache_gb = os.environ.get("CACHE_GB", "auto")
print("alloc conf", os.environ.get("PYTORCH_CUDA_ALLOC_CONF"), "cache", run.feature_cache_gb, flush=True)
for i in range(calls):
    s = bench_run_sweep(run)
    print(f"call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
