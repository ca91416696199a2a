"""How a sweep stops short: Ctrl-C or ``SIGTERM`` (``SweepInterrupted``), a lack of memory
(``SweepOutOfMemory``) and a multi-device sweep's worker process that stopped
(``SweepWorkerStopped``), each with a message that says what was saved and how to go on. The
groups finished before the stop are saved first (``v2x.sweep.run_sweep``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from v2x.cli import OutOfResources

if TYPE_CHECKING:
    from v2x.results import ResultsStore
    from v2x.sweep_plan import SweepPlan


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; its message says what was saved and how to resume."""


class SweepOutOfMemory(OutOfResources):
    """A sweep's device (or host) ran out of memory; its message says what was saved, what
    holds the memory (``batch_size``, the SNRs per call, ``feature_cache_gb``, the workers per
    device) and how to resume with less."""


class SweepWorkerStopped(RuntimeError):
    """A multi-device sweep's worker process stopped (killed, e.g. by the kernel's
    out-of-memory killer); its message names the device, the process and how it ended, and
    (from ``run_sweep``) what was saved and how to resume."""


def saved_note(plan: SweepPlan, store: ResultsStore | None, saved: int, to_compute: int) -> str:
    """``"N of the M cells to compute were saved (K of T cells in PATH)"``."""
    have = 0 if store is None else len(store.done_cells())
    where = "" if store is None else f" in {store.path}"
    return (
        f"{saved} of the {to_compute} cells to compute were saved "
        f"({have} of {plan.num_cells} cells{where})"
    )


def out_of_memory_message(
    plan: SweepPlan, devices: Sequence[torch.device], saved: str, err: BaseException
) -> str:
    """What ran out, what was saved (``saved``: ``saved_note``'s text), and the two settings
    that decide a sweep's memory."""
    cfg = plan.config
    names = [str(d) for d in devices]
    workers = ", ".join(f"{n} ×{names.count(n)}" for n in dict.fromkeys(names))
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (
        f"sweep: out of memory on {workers} ({first[:200]}); {saved}. Each call holds "
        f"batch_size={cfg.batch_size} frames × {len(plan.snr_db)} SNRs = "
        f"{cfg.batch_size * len(plan.snr_db)} frame-conditions of maps at once, beside the "
        f"encoder-feature cache (feature_cache_gb={cfg.feature_cache_gb!r}; auto: half the "
        "device's free memory, split between the workers given that device, less room for "
        "the other workers' batches). Lower "
        "batch_size, or set feature_cache_gb to fewer GB (0: no cache), or give each device "
        "fewer workers, then run the same command again to resume"
    )


__all__ = [
    "SweepInterrupted",
    "SweepOutOfMemory",
    "SweepWorkerStopped",
    "out_of_memory_message",
    "saved_note",
]
