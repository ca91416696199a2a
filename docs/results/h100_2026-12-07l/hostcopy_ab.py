"""``python hostcopy_ab.py <repo> <rounds> <frames> <batch>``: the issue-16 sweep (fp16 / fp16,
1e11 Hz), warm ``run_sweep`` calls alternating the code (each batch's host copies queued on the
device's thread behind an event, ``queue_host_copies``) and the former booking (the scorer
thread copies the detections and ledger values itself, synchronising copies and casts of its
own). Each call's rate and its groups' spans on the device's thread."""

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

import v2x.sweep_group as sg  # noqa: E402
from v2x.sweep_rows import BatchOnHost  # noqa: E402

queued = sg.queue_host_copies


class OnScorer(BatchOnHost):
    """The former booking: every copy made by the thread that books (``wait``)."""

    def __init__(self, scored, item, delivery):
        self.args = (scored, item, delivery)

    def wait(self):
        scored, item, delivery = self.args
        with_cpu = queued(scored, item, delivery)  # made here, on the scorer thread
        with_cpu.wait()
        self.__dict__.update(with_cpu.__dict__)
        return self


variants = {"code": queued, "scorer-copies": OnScorer}
run = cuda_sweep_args(frames=frames, batch_size=batch, bandwidth_hz=1e11, precision="fp16",
                      codec_precision="fp16")  # fmt: skip
run.profile = 0
if len(sys.argv) > 5:  # a check of this script on the CPU
    run.device, run.precision, run.codec_precision = sys.argv[5], "fp32", "fp32"
bench_phases(run, [])  # warm-up: imports, the model, the feature cache
rates = {n: [] for n in variants}
for r in range(rounds):
    for name in list(variants) if r % 2 == 0 else list(variants)[::-1]:
        sg.queue_host_copies = variants[name]
        each = []
        t = time.perf_counter()
        bench_phases(run, each)
        took = time.perf_counter() - t
        groups = [(a, b) for n, th, a, b in each if n == "_run_group"]
        light = sum(b - a for a, b in groups[2:])
        rates[name].append(took)
        print(
            f"round {r} {name}: call {took:.2f} s; groups "
            + " ".join(f"{b - a:.2f}" for a, b in groups)
            + f" (last three {light:.2f})",
            flush=True,
        )
for name, t in rates.items():
    print(f"{name}: calls " + " ".join(f"{x:.2f}" for x in t) + f" s, mean {sum(t) / len(t):.2f}")
