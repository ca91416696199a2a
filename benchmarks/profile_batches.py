"""A sweep's batch preparation (``v2x.sweep_batches._prepare_batch``: collation, the frames'
networks, novelty, ground truth) on the CPU, as ``run_sweep`` does it on its background thread.

    python benchmarks/profile_batches.py [--frames 128] [--batch-size 16] [--lines 25]

Prints milliseconds per frame of the networks alone and of the whole preparation, then the
preparation's ``--lines`` costliest functions (cProfile, cumulative). Frames: the cached test
split (``cached_split``, generated on first use), the shipped standard detector's grid.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lines", type=int, default=25)
    args = p.parse_args()
    from v2x.datasets.build import cached_split
    from v2x.loading import load_model
    from v2x.network import build_network_batch
    from v2x.sweep_batches import _prepare_batch
    from v2x.sweep_plan import plan_sweep

    data = {"num_frames": args.frames, "frames_per_sequence": 10, "seed": 0}
    frames = list(cached_split(split="test", quiet=True, **data))
    plan = plan_sweep({"checkpoint": "shipped", "device": "cpu", "quiet": True, "data": data})
    model = load_model(plan.config, torch.device("cpu"))
    chunks = [frames[i : i + args.batch_size] for i in range(0, len(frames), args.batch_size)]
    max_agents = plan.data.get("max_agents")

    def networks() -> None:
        for chunk in chunks:
            build_network_batch(chunk, plan.network, max_agents=max_agents,
                                ground_z_m=model.grid.ground_z_m)  # fmt: skip

    def prepare() -> None:
        for chunk in chunks:
            _prepare_batch(chunk, plan, model, torch.device("cpu"))

    for name, fn in (("networks", networks), ("whole preparation", prepare)):
        t0 = time.perf_counter()
        fn()
        print(f"{name}: {(time.perf_counter() - t0) / len(frames) * 1e3:.2f} ms per frame")
    profiler = cProfile.Profile()
    profiler.enable()
    prepare()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.lines)


if __name__ == "__main__":
    main()
