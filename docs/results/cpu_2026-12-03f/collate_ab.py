"""A frame batch's collation (``collate_frames``, 16 five-agent frames of the synthetic test
split) in numpy views against the torch form before it (d754ace, read with ``git show``), quiet
and beside a thread running small torch operations (as the sweep's device thread does beside
the batch thread). Same tensors checked first. ``python collate_ab.py <split folder>``
(a ``v2x-generate`` / cached synthetic split of at least 32 frames), from the repository."""

import importlib.util
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from v2x.datasets import frame as new
from v2x.datasets.store import load_split

with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
    f.write(subprocess.check_output(["git", "show", "d754ace:datasets/frame.py"], text=True))
spec = importlib.util.spec_from_file_location("old_frame", f.name)
old = importlib.util.module_from_spec(spec)
sys.modules["old_frame"] = old
spec.loader.exec_module(old)

split = load_split(Path(sys.argv[1]), "test")
frames = list(split.iter_frames(range(32)))
for chunk in (frames[:16], frames[16:], frames[3:4], frames[:7]):
    for max_agents in (None, 2, 3):
        x, y = old.collate_frames(chunk, max_agents), new.collate_frames(chunk, max_agents)
        for name, v in vars(x).items():
            w = getattr(y, name)
            same = (torch.equal(v, w) and v.dtype == w.dtype and v.stride() == w.stride()
                    if isinstance(v, torch.Tensor) else v == w)  # fmt: skip
            assert same, name
print("the same tensors (values, dtypes, strides) for 4 frame sets x 3 max_agents")


def best_ms(fn, k: int = 15) -> float:
    times = []
    for _ in range(k):
        t = time.perf_counter()
        fn(frames[:16])
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


stop = threading.Event()


def busy() -> None:
    x = torch.zeros(8)
    while not stop.is_set():
        for _ in range(100):
            x = x + 1


for label in ("quiet", "beside a busy torch thread"):
    thread = None
    if label != "quiet":
        stop.clear()
        thread = threading.Thread(target=busy)
        thread.start()
    a, b = best_ms(old.collate_frames), best_ms(new.collate_frames)
    print(f"{label}: torch form {a:.1f} ms, numpy views {b:.1f} ms per batch: {a / b:.2f}x")
    if thread is not None:
        stop.set()
        thread.join()
