"""``python defer_ab.py <repo> <rounds> <frames> <batch>``: a diagnostic (results valid, timing
changed): warm issue-16 run_sweep calls (fp16 / fp16, 1e11 Hz) with each group's rows computed
on the rows thread beside the next groups (the code), with the rows deferred until asked for
at the end ("rows-later"), and with the booking deferred too ("rows+book-later"); each call's
groups' spans on the device's thread (does the device thread's group slow down while the
other threads of its process work?)."""
import concurrent.futures as cf
import sys
from pathlib import Path

repo, rounds, frames, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_phases, cuda_sweep_args  # noqa: E402

import v2x.sweep as sweep  # noqa: E402

real_pool = cf.ThreadPoolExecutor


class LazyFuture(cf.Future):
    def __init__(self, fn, a, k):
        super().__init__()
        self._call = (fn, a, k)

    def _run(self):
        if self._call is not None:
            fn, a, k = self._call
            self._call = None
            try:
                self.set_result(fn(*a, **k))
            except BaseException as exc:  # noqa: BLE001
                self.set_exception(exc)

    def done(self):
        return self._call is None and super().done()

    def result(self, timeout=None):
        self._run()
        return super().result(timeout)


class Lazy:
    def __init__(self, *a, **k):
        pass

    def submit(self, fn, *a, **k):
        return LazyFuture(fn, a, k)

    def shutdown(self, wait=True, cancel_futures=False):
        pass


mode = {"lazy": ()}


def pool_factory(*a, thread_name_prefix="", **k):
    if any(thread_name_prefix.startswith(p) for p in mode["lazy"]):
        return Lazy()
    return real_pool(*a, thread_name_prefix=thread_name_prefix, **k)


sweep.ThreadPoolExecutor = pool_factory
run = cuda_sweep_args(frames=frames, batch_size=batch, bandwidth_hz=1e11, precision="fp16",
                      codec_precision="fp16")
run.profile = 0
variants = {"code": (), "rows-later": ("v2x-rows",), "rows+book-later": ("v2x-rows", "v2x-score")}
for r in range(rounds):
    for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
        mode["lazy"] = variants[name]
        each = []
        out = bench_phases(run, each)
        groups = [(a, b) for n, th, a, b in each if n == "_run_group"]
        end = max(b for n, th, a, b in each)
        print(f"round {r} {name}: groups " + " ".join(f"{b - a:.2f}" for a, b in groups)
              + f"; device thread {groups[0][0]:.2f}..{groups[-1][1]:.2f} s; last step {end:.2f} s",
              flush=True)
