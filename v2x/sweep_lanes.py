"""Groups that send nothing on air, computed on a second thread beside the device's.

On a GPU a warm sweep is bound by its host thread, not by the device (``docs/benchmarks.md``,
"Where the device waits"): a learned codec's group keeps the device busy most of its time,
with the thread waiting at host syncs, while the groups whose cells send nothing on air
(ego-only, late and early fusion, and feature groups whose maps never arrive by the deadline,
``v2x.sweep_order.silent_groups``) are Python and small kernels. ``split_lanes`` puts those
groups in a **side lane**; ``SideLane`` computes them in order on one thread (on the same CUDA
stream) while the device's thread computes the others, so each thread's Python runs while the
other waits for the device. PyTorch lets go of the GIL in its operators, host syncs included.

Nothing changes a number. Every cell has its own seeds and every group its own generators
(``v2x.sweep_group``); the feature cache (``EncodeCache``: each thread its own batch index) and
the ego-alone detections are the same whichever thread computes them. The side lane draws
nothing from torch's global generators, which the device's thread seeds and draws from per
condition block: it runs inside ``global_rng_untouched`` (its seeds are skipped; a group that
sent anything on air there would raise, not draw), and its groups are built on the device's
thread before it starts (building a codec seeds the CPU generator). Side lanes run only where
the feature cache holds every batch (one group at a time), without asynchronous sensing (its
re-sensing runs the world's clock) and without CUDA graphs (a capture on one thread forbids
the other's launches), on ``SIDE_LANE_DEVICES``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

import torch

from v2x.global_rng import global_rng_untouched
from v2x.sweep_plan import FEATURE_STAGE, Group, SweepPlan

#: Device types whose sweeps use a side lane (on the CPU the operators' own threads already
#: take the cores).
SIDE_LANE_DEVICES = ("cuda",)

Todo = tuple[Group, list[float]]


def split_lanes(
    plan: SweepPlan,
    waves: Sequence[Sequence[Todo]],
    silent: Callable[[Group, list[float]], bool],
    device: torch.device,
) -> tuple[list[list[Todo]], list[Todo]]:
    """``waves`` (``v2x.sweep._waves``) as the device thread's waves and the side lane's groups
    (in their order): the groups that send nothing on air (``sends_nothing``) go to the side
    lane when every wave is one group and some group is left for the device's thread; else
    ``(waves, [])``."""
    cfg = plan.config
    if (
        torch.device(device).type not in SIDE_LANE_DEVICES
        or any(len(wave) != 1 for wave in waves)
        or (plan.asynchrony is not None and plan.asynchrony.enabled)
        or bool(cfg.cuda_graph)
    ):
        return [list(w) for w in waves], []
    side = [wave[0] for wave in waves if sends_nothing(*wave[0], silent)]
    main = [list(wave) for wave in waves if not sends_nothing(*wave[0], silent)]
    if not side or not main:
        return [list(w) for w in waves], []
    return main, side


def sends_nothing(
    group: Group, snrs: list[float], silent: Callable[[Group, list[float]], bool]
) -> bool:
    """Whether ``group``'s cells at ``snrs`` send nothing on air: no features (ego-only, late
    and early fusion, whose payloads are charged as ideal links), or maps known never to arrive
    (``silent``), which are then not sent (``v2x.known_drops``)."""
    return group.stage != FEATURE_STAGE or silent(group, snrs)


def remembered(
    silent: Callable[[Group, list[float]], bool],
) -> Callable[[Group, list[float]], bool]:
    """``silent`` (``v2x.sweep_order.silent_groups``) asked once per group and SNRs (it builds
    the group's codec and logs the groups it finds)."""
    answers: dict[tuple, bool] = {}

    def ask(group: Group, snrs: list[float]) -> bool:
        key = (id(group), tuple(snrs))
        if key not in answers:
            answers[key] = silent(group, snrs)
        return answers[key]

    return ask


class LockedBar:
    """A progress bar whose ``update`` two threads may call."""

    def __init__(self, bar: Any) -> None:
        self._bar, self._lock = bar, threading.Lock()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self._bar.update(n)

    def set_postfix_str(self, s: str) -> None:
        with self._lock:
            if hasattr(self._bar, "set_postfix_str"):
                self._bar.set_postfix_str(s)


class SideLane:
    """Built groups computed in order on one thread beside the device's.

    Args:
        runs: ``(group, snrs, run)``: the side lane's groups, built on the caller's thread.
        compute: ``compute(run, stop) -> done``: a built group's steps over every frame batch
            and its ``finish`` (``v2x.sweep._compute_group``), or ``None`` once ``stop`` is set.
        device: the device the thread's pipelines run on.
    """

    def __init__(
        self,
        runs: Sequence[tuple[Group, list[float], Any]],
        compute: Callable[[Any, threading.Event], Any],
        device: torch.device,
    ) -> None:
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2x-side-lane")
        self._future = pool.submit(self._compute, list(runs), compute, torch.device(device))
        pool.shutdown(wait=False)

    def _compute(self, runs, compute, device: torch.device) -> None:
        on_device = torch.cuda.device(device) if device.type == "cuda" else nullcontext()
        with torch.no_grad(), global_rng_untouched(), on_device:
            for group, snrs, run in runs:
                started = time.perf_counter()
                done = compute(run, self._stop)
                if done is None:  # stopped
                    return
                self._done.put((group, snrs, done, time.perf_counter() - started))

    def finished(self) -> list[tuple]:
        """``(group, snrs, rows and ledger or their future, seconds)`` of the groups finished
        since the last call, without waiting."""
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def join(self) -> list[tuple]:
        """``finished()`` once every group is done; raises what the lane raised."""
        self._future.result()
        return self.finished()

    def stop(self) -> list[tuple]:
        """Stop after the current frame batch; ``finished()`` (the groups done before), without
        raising what the lane raised (the caller is already handling an error)."""
        self._stop.set()
        self._future.exception()  # waits
        return self.finished()


__all__ = [
    "LockedBar",
    "SideLane",
    "SIDE_LANE_DEVICES",
    "remembered",
    "sends_nothing",
    "split_lanes",
]
