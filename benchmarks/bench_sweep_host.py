"""The sweep's host work that leaves the device's process on a host with ≥ 4 cores, timed
against doing it in this process (``docs/benchmarks.md``, "Scoring, rows and batch networks off
the device's process").

    python benchmarks/bench_sweep_host.py [--frames 16] [--workers 4] [--bootstrap 1000]

1. **A frame batch's networks** (link geometry and budgets, ``v2x.network``): built here
   (``build_network_batch``, what the batch thread did) against what is left here when worker
   processes build them (``v2x.sweep_batches``: the frames copied without their points and
   pickled, the networks unpickled and stacked) — the GIL time the device's thread gets back
   — and the wall time of the batches built side by side in ``--workers`` processes.
2. **One cell's bootstrap intervals** (``v2x.sweep_rows``): ``compute_ap`` in one piece against
   split over ``--workers`` processes (``interval_parts``): the wall time of the sweep's last
   group's rows, whose one distinct cell (ego-only) the sweep's end waits for.

The frames are the synthetic test split's (``cached_split``); the cell is scored from random
detections around the ground truth (``--frames`` frames, 7 conditions' worth of records is not
needed: one accumulator). Same results either way (tested in ``tests/core``); the ratios are
the point.
"""

from __future__ import annotations

import argparse
import pickle
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np


def _best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def networks(frames: list, batch: int, pools: list[ProcessPoolExecutor]) -> None:
    from v2x.network import NetworkConfig, build_network_batch, frame_networks, stack_networks
    from v2x.sweep_batches import _without_points

    cfg = NetworkConfig()
    chunks = [frames[i : i + batch] for i in range(0, len(frames), batch)]
    here = _best(lambda: [build_network_batch(c, cfg) for c in chunks])

    nets = [frame_networks(c, cfg) for c in chunks]
    blobs = [pickle.dumps(n) for n in nets]  # what the workers send back

    def left_here() -> None:  # what this process does when workers build them
        for chunk, blob in zip(chunks, blobs, strict=True):
            pickle.dumps([_without_points(f) for f in chunk])
            stack_networks(pickle.loads(blob))

    remaining = _best(left_here)
    side_by_side = _best(
        lambda: [
            stack_networks(f.result())
            for f in [
                pools[i % len(pools)].submit(frame_networks, [_without_points(x) for x in c], cfg)
                for i, c in enumerate(chunks)
            ]
        ]
    )
    print(
        f"networks of {len(frames)} frames in batches of {batch}: built here {here * 1e3:.1f} ms; "
        f"this process's part when workers build them {remaining * 1e3:.1f} ms "
        f"({here / max(remaining, 1e-9):.1f}x less); wall time in {len(pools)} worker "
        f"processes {side_by_side * 1e3:.1f} ms ({here / side_by_side:.2f}x)"
    )


def intervals(frames: int, bootstrap: int, pool: ProcessPoolExecutor, workers: int) -> None:
    import v2x.sweep_rows as sweep_rows
    from v2x.perception.ap_config import EvalConfig
    from v2x.perception.average_precision import APAccumulator

    rng = np.random.default_rng(0)
    acc = APAccumulator(
        EvalConfig(eval_range=(-50.0, -50.0, 50.0, 50.0), class_groups={"vehicle": (0, 1)})
    )
    for i in range(frames):
        g = int(rng.integers(5, 25))
        gt = np.column_stack(
            [rng.uniform(-45, 45, (g, 2)), np.zeros(g), np.tile([4.5, 1.9, 1.6], (g, 1)),
             rng.uniform(-np.pi, np.pi, g)]
        )  # fmt: skip
        det = gt[rng.random(g) < 0.8].copy()
        det[:, :2] += rng.normal(0, 0.4, (det.shape[0], 2))
        acc.add_frame(
            det, rng.random(det.shape[0]), rng.integers(0, 2, det.shape[0]), gt,
            rng.integers(0, 2, g), gt_subsets={"ego_invisible": rng.random(g) < 0.3},
            sequence=f"s{i // 4}",
        )  # fmt: skip
    args = (bootstrap, 0, "auto")
    whole = _best(lambda: pool.submit(sweep_rows.compute_ap, acc, *args).result(), 3)
    parts = sweep_rows.interval_parts(acc, workers)

    def split() -> None:
        futures = [pool.submit(sweep_rows.compute_ap, acc, *args, g) for g in parts]
        sweep_rows.joined_parts([f.result() for f in futures])

    apart = _best(split, 3)
    print(
        f"one cell's intervals ({frames} frames, {bootstrap} resamples): one worker "
        f"{whole * 1e3:.1f} ms, split in {len(parts)} parts over {workers} workers "
        f"{apart * 1e3:.1f} ms ({whole / apart:.2f}x)"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--cell-frames", type=int, default=128)
    args = p.parse_args()
    import os

    from v2x.datasets.build import cached_split
    from v2x.forked_pools import forked_pool

    print(f"cores: {os.cpu_count()}, worker processes: {args.workers}")
    frames = list(
        cached_split(split="test", num_frames=args.frames, frames_per_sequence=10, seed=0,
                     quiet=True)
    )  # fmt: skip
    pools = [forked_pool(1) for _ in range(args.workers)]
    pool = forked_pool(args.workers)
    try:
        for p1 in (*pools, pool):
            p1.submit(int).result()
        networks(frames, args.batch_size, pools)
        intervals(args.cell_frames, args.bootstrap, pool, args.workers)
    finally:
        for p1 in (*pools, pool):
            p1.shutdown()


if __name__ == "__main__":
    main()
