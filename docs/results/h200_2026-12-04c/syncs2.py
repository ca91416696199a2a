"""Host syncs of one warm run_sweep, MainThread sites with 3 project frames: python syncs2.py <repo> [frames]."""

import collections
import sys
import threading
import traceback
import warnings
from pathlib import Path

repo = Path(sys.argv[1])
frames = int(sys.argv[2]) if len(sys.argv) > 2 else 128
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

run = cuda_sweep_args(frames=frames)
bench_run_sweep(run)
sites = collections.Counter()
lock = threading.Lock()


def proj(stack):
    out = []
    for f in reversed(stack):
        n = f.filename
        if "/v2x/" in n and "/site-packages/" not in n and "/benchmarks/" not in n:
            out.append(f"{n.split('/v2x/', 1)[-1]}:{f.lineno} {f.name}")
        if len(out) == 4:
            break
    return " <- ".join(out)


def record(message, category, filename, lineno, file=None, line=None):
    if "synchronizing" in str(message):
        s = proj(traceback.extract_stack()[:-1])
        with lock:
            sites[(threading.current_thread().name[:12], s)] += 1


shown = warnings.showwarning
warnings.showwarning = record
with warnings.catch_warnings():
    warnings.simplefilter("always")
    torch.cuda.set_sync_debug_mode("warn")
    try:
        out = bench_run_sweep(run)
    finally:
        torch.cuda.set_sync_debug_mode(0)
warnings.showwarning = shown
print(f"{out['fc_per_s']:.1f} fc/s, {sum(sites.values())} syncs")
for (t, s), n in sites.most_common(60):
    print(f"{n:5d} {t:12s} {s}")
