"""Python's GIL switch interval for a while, and the one a GPU sweep's own process runs at.

A GPU sweep's process has one thread that drives the device and, beside it, a scorer thread
(each frame batch's detections to the host, pickled to a scoring process, its ledger rows)
and row threads (``v2x.sweep``). The device's thread gives the GIL up at every torch call
and CUDA wait; a thread beside it then takes it and keeps it, running Python, until the
interpreter asks it to let go, which it does only after the switch interval (5 ms by
default). The device's thread waits up to that long to launch its next kernel. Measured on two H100
hosts (``benchmarks/sweep_overlap.py``, the issue-16 sweep: 512 frames, batches of 32, one
process per variant, alternated, two warm calls each): on the first, at 0.5 ms
**3,010-3,089 frame-conditions/s (mean 3,049, six calls)** against 2,492-2,981 (mean 2,768) at
5 ms, +10 % with no overlap (``docs/results/h100_2026-12-06b/``); on the second, level: 0.5 ms
3,182-3,278 (mean 3,218), 5 ms 3,009-3,388 (mean 3,218), 0.1 ms 3,234-3,361 (mean 3,282),
six calls each (``docs/results/h100_2026-12-06c/``). So 0.5 ms gains where the threads beside
the device's thread hold the GIL long and costs nothing where they do not. The interval
changes no value, only which thread runs when. A multi-device sweep's worker processes
(``v2x.sweep_workers``), which run groups the same way on their devices, keep the interval
for their life.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["SWEEP_SWITCH_INTERVAL_S", "sweep_switch_interval", "switch_interval"]

#: The GIL switch interval (seconds) of a sweep's process while it runs its groups on a GPU.
SWEEP_SWITCH_INTERVAL_S: float | None = 0.0005


@contextmanager
def switch_interval(seconds: float | None) -> Iterator[None]:
    """``sys.setswitchinterval(seconds)`` inside the block, the previous interval restored after
    it (also when it raises). ``None``: nothing changes."""
    previous = sys.getswitchinterval()
    if seconds is not None:
        if not seconds > 0:
            raise ValueError(f"GIL switch interval: expected seconds > 0, got {seconds!r}")
        sys.setswitchinterval(float(seconds))
    try:
        yield
    finally:
        if seconds is not None:
            sys.setswitchinterval(previous)


def sweep_switch_interval(device: torch.device) -> float | None:
    """The switch interval a sweep's process runs its groups at on ``device``:
    ``SWEEP_SWITCH_INTERVAL_S`` on a GPU (its device thread launches kernels between the other
    threads' Python), ``None`` (Python's own) on the CPU, where the detector's work runs in
    torch's threads without the GIL and was not measured to gain."""
    return None if device.type == "cpu" else SWEEP_SWITCH_INTERVAL_S
