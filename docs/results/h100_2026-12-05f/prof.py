"""Warm calls, then one under cProfile (main thread; stats dumped), one with group logs.
python prof.py <repo> <out> [frames] [batch]"""
import cProfile
import logging
import sys
from pathlib import Path

if __name__ == "__main__":
    repo, out = Path(sys.argv[1]), Path(sys.argv[2])
    frames = int(sys.argv[3]) if len(sys.argv) > 3 else 512
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    sys.path.insert(0, str(repo / "benchmarks"))
    from bench_sweep import bench_run_sweep, cuda_sweep_args

    run = cuda_sweep_args(frames=frames, batch_size=batch)
    for i in range(3):
        s = bench_run_sweep(run)
        print(f"call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
    logging.basicConfig(level=logging.INFO, format="%(relativeCreated)8.0f %(threadName)s %(message)s")
    logging.getLogger("v2x.sweep").setLevel(logging.INFO)
    s = bench_run_sweep(run)
    print(f"logged call: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("v2x.sweep").setLevel(logging.WARNING)
    prof = cProfile.Profile()
    prof.enable()
    s = bench_run_sweep(run)
    prof.disable()
    print(f"profiled call: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
    prof.dump_stats(str(out / "main_thread.pstats"))
