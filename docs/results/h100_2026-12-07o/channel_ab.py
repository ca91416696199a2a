"""``python channel_ab.py <repo> <rounds> <frames> <batch> [cpu]``: the issue-16 sweep (fp16 /
fp16, 1e11 Hz), warm ``run_sweep`` calls alternating the code (each frame batch posted to a
scoring process over its channel, ``v2x.worker_channel``: no thread of this process woken) and
the former hand-over (the same calls through the process's pool: ``submit``, whose manager and
feeder threads wake per batch). Each call's time and its groups' spans on the device's thread."""

import sys
import time
from pathlib import Path

repo, rounds, frames, batch = (
    Path(sys.argv[1]),
    int(sys.argv[2]),
    int(sys.argv[3]),
    int(sys.argv[4]),
)
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_phases, cuda_sweep_args  # noqa: E402

from v2x.worker_channel import ForkedWorker  # noqa: E402

channel = (ForkedWorker.post, ForkedWorker.call)


def pool_post(self, fn, *args):
    self.pool.submit(fn, *args)  # in order: the pool has one worker


def pool_call(self, fn, *args):
    return self.pool.submit(fn, *args).result()


variants = {"channel": channel, "pool submit": (pool_post, pool_call)}
run = cuda_sweep_args(
    frames=frames, batch_size=batch, bandwidth_hz=1e11, precision="fp16", codec_precision="fp16"
)
run.profile = 0
if len(sys.argv) > 5:  # a check of this script on the CPU
    run.device, run.precision, run.codec_precision = sys.argv[5], "fp32", "fp32"
bench_phases(run, [])  # warm-up: imports, the model, the feature cache
calls = {n: [] for n in variants}
for r in range(rounds):
    for name in list(variants) if r % 2 == 0 else list(variants)[::-1]:
        ForkedWorker.post, ForkedWorker.call = variants[name]
        each = []
        t = time.perf_counter()
        bench_phases(run, each)
        took = time.perf_counter() - t
        groups = [(a, b) for n, th, a, b in each if n == "_run_group"]
        light = sum(b - a for a, b in groups[2:])
        calls[name].append(took)
        print(
            f"round {r} {name}: call {took:.2f} s; groups "
            + " ".join(f"{b - a:.2f}" for a, b in groups)
            + f" (last three {light:.2f})",
            flush=True,
        )
for name, t in calls.items():
    print(f"{name}: calls " + " ".join(f"{x:.2f}" for x in t) + f" s, mean {sum(t) / len(t):.2f}")
