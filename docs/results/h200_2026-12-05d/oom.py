"""Two sweep workers on one GPU with feature_cache_gb auto: OOM or not, and the rate against one
worker. python oom.py <repo> [frames]"""
import sys
import time
from pathlib import Path

repo = Path(sys.argv[1])
frames = int(sys.argv[2]) if len(sys.argv) > 2 else 256
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x  # noqa: E402
import v2x.sweep_reuse as reuse  # noqa: E402


def main():
    total = torch.cuda.get_device_properties(0).total_memory
    batch = 16 if total < 100e9 else 32
    print("v2x from", v2x.__file__, "reserve:", hasattr(reuse, "auto_cache_reserve"),
          f"GPU {total / 1e9:.0f} GB, batches of {batch}, {frames} frames", flush=True)
    run = cuda_sweep_args(frames=frames, batch_size=batch)
    for i in range(2):
        s = bench_run_sweep(run)
        print(f"one worker call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
    one = s["fc_per_s"]
    torch.cuda.empty_cache()
    for i in range(2):
        t = time.perf_counter()
        try:
            s = bench_run_sweep(run, ["cuda:0", "cuda:0"])
            print(f"two workers call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s "
                  f"({s['fc_per_s'] / one:.2f}x one)", flush=True)
        except Exception as err:  # noqa: BLE001
            print(f"two workers call {i}: {type(err).__name__} after {time.perf_counter() - t:.1f} s: "
                  f"{str(err)[:300]}", flush=True)


if __name__ == "__main__":
    main()
