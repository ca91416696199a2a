"""A sweep group's close (``GroupScoring.sealed_accumulators``) with 4 scoring processes, for
recorded settings (``bench_scoring.py record /tmp/scoring.pt --frames 16``) replayed to 512
frames (32 repeats of the recording's 4-frame batches):
``BIGPARENT=1 python seal_time.py 0 1 2 3 4`` (the setting indices; ``BIGPARENT=N``: the parent
also imports the sweep and holds N - 1 more lists, as a sweep's process holds its objects)."""

import gc
import os
import sys
import time

import torch

sys.path.insert(0, "benchmarks")
from bench_scoring import _renamed  # noqa: E402

from v2x.forked_pools import forked_pool  # noqa: E402
from v2x.sweep_scoring import GroupScoring, _one_thread  # noqa: E402

groups = torch.load("/tmp/scoring.pt", weights_only=False)
if os.environ.get("BIGPARENT"):
    import v2x.sweep  # noqa: F401

    _junk = [[i, str(i)] for i in range(int(os.environ["BIGPARENT"]))]
    print("parent objects", len(gc.get_objects()))
pools = [forked_pool(1, _one_thread) for _ in range(4)]
chosen = [groups[i] for i in map(int, sys.argv[1:])] if len(sys.argv) > 1 else groups
for entry in chosen:
    scoring = GroupScoring(entry["config"], entry["k"], pools)
    for r in range(32):
        for scored in entry["batches"]:
            scoring.add(_renamed(scored, f"#{r}"))
    for added in scoring._added:
        added.result()
    t0 = time.perf_counter()
    sealed = scoring.sealed_accumulators()
    seconds = time.perf_counter() - t0
    distinct = len({s.digest for s in sealed})
    print(f"k={entry['k']} batches=128 distinct={distinct} close {seconds:.3f} s", flush=True)
for pool in pools:
    pool.shutdown()
