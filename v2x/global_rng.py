"""torch's global generators: seeding them (``seed_torch``) and threads that must leave them alone.

The channels and codecs draw their noise from torch's global generators (the CPU generator and
each CUDA device's default one), which a sweep seeds per cell and condition block
(``v2x.condition_streams``, ``v2x.execution``). A sweep may compute groups that draw nothing
from them on a second thread beside the device's (``v2x.sweep_lanes``); such a thread must
neither seed nor draw from them, or the numbers the other thread draws would change. Inside
``global_rng_untouched()`` a thread's ``seed_torch`` does nothing (what it computes draws only
from its own generators, so no seed changes it) and ``refuse_global_draws`` (called where
anything goes on air) raises instead of letting it draw.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_THREAD = threading.local()


def seed_torch(seed: int) -> None:
    """``torch.manual_seed(seed)`` for the generators the project draws from: torch's CPU
    generator and every CUDA device's default generator get the same states (tested).
    ``torch.manual_seed`` also seeds XPU, MPS and MTIA, each lazily until that backend starts,
    and a lazy seed formats the caller's stack trace on every call (≈ 0.5 ms; a sweep seeds
    every condition block, ``v2x.condition_streams``); those backends are skipped here, and
    CUDA's lazy seed is queued only where CUDA could start. Nothing inside
    ``global_rng_untouched``."""
    if getattr(_THREAD, "untouched", False):
        return
    seed = int(seed)
    if torch.cuda.is_initialized() or torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.default_generator.manual_seed(seed)


@contextmanager
def global_rng_untouched() -> Iterator[None]:
    """Within the block this thread neither seeds torch's global generators (``seed_torch``
    does nothing) nor may draw from them (``refuse_global_draws`` raises)."""
    before = getattr(_THREAD, "untouched", False)
    _THREAD.untouched = True
    try:
        yield
    finally:
        _THREAD.untouched = before


def refuse_global_draws(what: str) -> None:
    """Raise ``RuntimeError`` inside ``global_rng_untouched``: ``what`` (e.g. sending maps on
    air) would draw from torch's global generators, which another thread is drawing from."""
    if getattr(_THREAD, "untouched", False):
        raise RuntimeError(
            f"{what} draws from torch's global generators, but this thread "
            f"({threading.current_thread().name}) runs beside another that draws from them "
            "(v2x.sweep_lanes): only groups that send nothing on air may run here"
        )


__all__ = ["global_rng_untouched", "refuse_global_draws", "seed_torch"]
