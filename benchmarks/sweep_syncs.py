"""Host syncs of one warm ``run_sweep`` on a GPU, by thread and innermost project call site.

    python benchmarks/sweep_syncs.py                      # bench_sweep's H200 setting
    python benchmarks/sweep_syncs.py --frames 32 --lines 20

A host sync (reading a device value, a copy from ordinary host memory to the device, boolean
indexing) makes the thread wait until the device has run everything queued before it; on the
device's thread each one ends the overlap of host and device work. Runs ``run_sweep`` once to
warm up, then once under ``torch.cuda.set_sync_debug_mode("warn")``, which warns at every
synchronising CUDA call; each warning is charged to the innermost frame of the project on the
calling thread's stack. Needs CUDA.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import traceback
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweep import add_setting_options, bench_run_sweep, setting_of  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1]) + "/"


def _site(stack: list[traceback.FrameSummary]) -> str:
    """The innermost frame of the project (outside benchmarks/) as ``path:line function``."""
    for frame in reversed(stack):
        name = frame.filename
        inside = "/v2x/" in name or name.startswith(ROOT)
        if inside and "/benchmarks/" not in name and "/site-packages/" not in name:
            short = name.split("/v2x/", 1)[-1] if "/v2x/" in name else name[len(ROOT) :]
            return f"{short}:{frame.lineno} {frame.name}"
    return "(outside the project)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_setting_options(p, frames=128, batch_size=16)
    p.add_argument("--lines", type=int, default=30)
    args = p.parse_args()
    if not torch.cuda.is_available():
        p.error("needs a CUDA device")
    run = setting_of(args)
    bench_run_sweep(run)  # warm-up: imports, compilation, the AP workers
    sites: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def record(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if "synchronizing" in str(message):
            site = _site(traceback.extract_stack()[:-1])
            with lock:
                sites[(threading.current_thread().name, site)] += 1

    shown = warnings.showwarning
    warnings.showwarning = record
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                out = bench_run_sweep(run)
            finally:
                torch.cuda.set_sync_debug_mode(0)
    finally:
        warnings.showwarning = shown
    by_thread: collections.Counter = collections.Counter()
    for (thread, _), n in sites.items():
        by_thread[thread.split("_")[0]] += n
    print(
        f"run_sweep under the sync debug mode: {out['fc_per_s']:.1f} frame-conditions/s; "
        f"{sum(sites.values())} host syncs ({', '.join(f'{t} {n}' for t, n in by_thread.most_common())})"
    )
    for (thread, site), n in sites.most_common(args.lines):
        print(f"{n:6d}  {thread[:14]:14s} {site}")


if __name__ == "__main__":
    main()
