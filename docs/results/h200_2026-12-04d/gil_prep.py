"""GIL seconds each part of a sweep's frame hand-over and batch preparation takes from another
Python thread, on this machine: ``python gil_prep.py <frames>``. A ticker thread counts pure
Python loop iterations; a part runs on the main thread; the ticks lost against the ticker alone,
divided by its rate alone, are the GIL seconds the part held. With CUDA, the page-locked
collation and its copy to the device too (what a CUDA sweep's batch thread does)."""

import pickle
import sys
import threading
import time

import torch

from v2x.datasets.build import cached_split
from v2x.datasets.frame import collate_frames
from v2x.evaluation import ego_ground_truth
from v2x.loading import frames_digest
from v2x.scheduling import novelty_from_visibility
from v2x.sweep_batches import _prepare_batch, sweep_detector
from v2x.sweep_plan import plan_sweep

n = int(sys.argv[1])
frames = list(cached_split(split="test", num_frames=n, frames_per_sequence=10, seed=0, quiet=True))
plan = plan_sweep(
    {
        "checkpoint": "untrained",
        "model": {"backbone": "pointpillars"},
        "device": "cpu",
        "quiet": True,
        "batch_size": 16,
    }
)
model = sweep_detector(plan, torch.device("cpu"))
blobs = [pickle.dumps(f) for f in frames]  # multiprocessing's protocol (DEFAULT_PROTOCOL)
chunks = [frames[i : i + 16] for i in range(0, n, 16)]
batches = [collate_frames(c) for c in chunks]

ticks = [0]
stop = threading.Event()


def ticker():
    x = 0
    while not stop.is_set():
        for _ in range(1000):
            x += 1
        ticks[0] += 1


def measure(name, fn, reps=3):
    best_wall, lost = None, []
    for _ in range(reps):
        t0, k0 = time.perf_counter(), ticks[0]
        fn()
        wall = time.perf_counter() - t0
        lost.append(wall - (ticks[0] - k0) / rate)
        best_wall = wall if best_wall is None else min(best_wall, wall)
    print(
        f"{name:34s} wall {best_wall * 1e3 / n:7.3f} ms/frame, GIL held {min(lost) * 1e3 / n:7.3f} ms/frame"
    )


th = threading.Thread(target=ticker, daemon=True)
th.start()
time.sleep(0.5)
t0, k0 = time.perf_counter(), ticks[0]
time.sleep(2.0)
rate = (ticks[0] - k0) / (time.perf_counter() - t0)
print(f"ticker alone: {rate:.0f} ticks/s")
measure("unpickle frames (protocol 4)", lambda: [pickle.loads(b) for b in blobs])
measure("frames_digest", lambda: frames_digest(frames))
measure("collate_frames", lambda: [collate_frames(c) for c in chunks])
if torch.cuda.is_available():  # a CUDA sweep's collation: page-locked, then queued to the device
    measure("collate_frames (pinned)", lambda: [collate_frames(c, pin_memory=True) for c in chunks])
    measure(
        "collate_frames (pinned) + to(cuda)",
        lambda: [collate_frames(c, pin_memory=True).to("cuda") for c in chunks],
    )
measure(
    "ego_ground_truth", lambda: [ego_ground_truth(b, model.grid, plan.min_points) for b in batches]
)
measure(
    "novelty_from_visibility",
    lambda: [novelty_from_visibility(b.visibility, b.box_mask) for b in batches],
)
measure(
    "_prepare_batch (networks here)",
    lambda: [_prepare_batch(c, plan, model, "cpu") for c in chunks],
)
measure("sleep (control)", lambda: time.sleep(0.2 * n / 64), reps=1)
stop.set()

# collate's parts
th.join()  # (the first ticker has stopped before the second starts)
stop.clear()
th = threading.Thread(target=ticker, daemon=True)
th.start()
time.sleep(0.3)
import numpy as np  # noqa: E402

from v2x.datasets.frame import slot_order  # noqa: E402

shapes = []
for c in chunks:
    ordered = [slot_order(f, None) for f in c]
    a = max(len(o) for o in ordered)
    nn = max(f.agents[i].points.shape[0] for f, o in zip(c, ordered) for i in o)
    shapes.append((c, ordered, a, nn))
measure("  torch.zeros points", lambda: [torch.zeros(len(c), a, nn, 4) for c, _, a, nn in shapes])
zs = [torch.zeros(len(c), a, nn, 4) for c, _, a, nn in shapes]


def copies():
    for (c, ordered, _a, _nn), z in zip(shapes, zs):
        flat = z.numpy()
        for bi, (frame, order) in enumerate(zip(c, ordered)):
            for slot, ai in enumerate(order):
                p = frame.agents[ai].points
                flat[bi, slot, : p.shape[0]] = p


measure("  numpy copies into zeroed points", copies)


def walk():
    for f in frames:
        for ag in f.agents:
            _ = (ag.points.shape, ag.pose, ag.kind)


measure("  digest's walk without hashing (control)", walk)
import hashlib  # noqa: E402

measure(
    "  sha256 of the points only",
    lambda: [
        hashlib.sha256(memoryview(np.ascontiguousarray(ag.points).reshape(-1)).cast("B")).digest()
        for f in frames
        for ag in f.agents
    ],
)
print({k: type(v).__name__ for k, v in frames[0].meta.items()})
stop.set()
