"""Seconds a torch-op-issuing thread (a stand-in for the sweep's device thread: small ops in
a loop, each releasing the GIL) loses while each part of the frames' hand-over and the batches'
preparation runs on other threads of the process: python gil_prep2.py <frames> [workers]."""

import itertools
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from shm_read import attach, read_shared

from v2x.datasets.build import cached_split
from v2x.datasets.frame import collate_frames
from v2x.evaluation import ego_ground_truth
from v2x.loading import frames_digest
from v2x.scheduling import novelty_from_visibility
from v2x.sweep_batches import sweep_detector
from v2x.sweep_plan import plan_sweep

n = int(sys.argv[1])
workers = int(sys.argv[2]) if len(sys.argv) > 2 else 8
dev = "cuda" if torch.cuda.is_available() else "cpu"
split = cached_split(split="test", num_frames=n, frames_per_sequence=10, seed=0, quiet=True)
frames = list(split)
plan = plan_sweep({"checkpoint": "untrained", "model": {"backbone": "pointpillars"},
                   "device": "cpu", "quiet": True, "batch_size": 16})  # fmt: skip
model = sweep_detector(plan, torch.device("cpu"))
chunks = [frames[i : i + 16] for i in range(0, n, 16)]
batches = [collate_frames(c) for c in chunks]
pool = ProcessPoolExecutor(workers)
list(pool.map(int, range(workers * 2)))

ops = [0]
stop = threading.Event()


def device_thread():
    x = torch.zeros(64, device=dev)
    while not stop.is_set():
        for _ in range(100):
            x.add_(1)
        ops[0] += 1
        if dev == "cuda":
            torch.cuda.synchronize()


th = threading.Thread(target=device_thread, daemon=True)
th.start()
time.sleep(1.0)
t0, k0 = time.perf_counter(), ops[0]
time.sleep(2.0)
rate = (ops[0] - k0) / (time.perf_counter() - t0)
print(f"device stand-in alone: {rate * 100:.0f} ops/s ({dev}, {workers} workers, {n} frames)")


def measure(name, fn, reps=3):
    out = []
    for _ in range(reps):
        t0, k0 = time.perf_counter(), ops[0]
        fn()
        wall = time.perf_counter() - t0
        out.append((wall, wall - (ops[0] - k0) / rate))
    w = min(o[0] for o in out)
    lost = sorted(o[1] for o in out)[len(out) // 2]
    print(
        f"{name:40s} wall {w * 1e3 / n:7.3f} ms/frame, device thread lost {lost * 1e3 / n:7.3f} ms/frame"
    )


def on_thread(fn):
    def run():
        t = threading.Thread(target=fn)
        t.start()
        t.join()

    return run


measure("sleep (control)", lambda: time.sleep(n * 2e-3))
measure(
    "pool read (pickled frames)",
    on_thread(lambda: list(split.iter_frames(range(n), processes=pool))),
)


def shared_read():
    folder = tempfile.mkdtemp(dir="/dev/shm", prefix="v2x-frames-")
    es = [split.entries[i] for i in range(n)]
    out = [
        attach(r)
        for r in pool.map(
            read_shared,
            [split.root / e["file"] for e in es],
            [e["sha256"] for e in es],
            itertools.repeat(folder),
        )
    ]
    os.rmdir(folder)
    return out


got = shared_read()
assert frames_digest(got) == frames_digest(frames), "digest differs"
print("shared read: same digest")
measure("pool read (points in /dev/shm files)", on_thread(shared_read))
measure(
    "pool read (pickled frames) again",
    on_thread(lambda: list(split.iter_frames(range(n), processes=pool))),
)
measure("shared read + digest", on_thread(lambda: frames_digest(shared_read())))
measure("frames_digest", on_thread(lambda: frames_digest(frames)))
pin = dev == "cuda"
measure("collate_frames", on_thread(lambda: [collate_frames(c, pin_memory=pin) for c in chunks]))
if pin:
    measure(
        "collate_frames pinned + to(cuda)",
        on_thread(lambda: [collate_frames(c, pin_memory=True).to("cuda") for c in chunks]),
    )
measure(
    "ego_ground_truth",
    on_thread(lambda: [ego_ground_truth(b, model.grid, plan.min_points) for b in batches]),
)
measure(
    "novelty_from_visibility",
    on_thread(lambda: [novelty_from_visibility(b.visibility, b.box_mask) for b in batches]),
)
stop.set()
pool.shutdown()
