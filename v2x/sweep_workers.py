"""A sweep's groups dealt across several devices: one worker process per device.

``run_sweep`` comes here when ``device`` names several devices (``all``: every visible CUDA
device; or a list such as ``[cuda:0,cuda:1]`` or ``[cpu,cpu]``). Each worker (a ``spawn``
process, as CUDA needs) plans the same sweep, loads the frames from the cache, the detector
and the frame batches onto its own device once, then takes groups from a shared queue (the next
free worker takes the next group, so a slow group does not hold the others back) and returns
each group's results rows and ledger (when the frames' features do not fit a worker's feature
cache, it takes waves of groups and runs each wave in lockstep over the frame batches, as one
process does: ``v2x.sweep._waves``). The parent writes them to the results store in grid
order, as one process would. A cell's numbers depend only on its own seed
(``v2x.sweep_group._cell_seed``) and the device type, never on which worker ran it, so the
table equals one device's.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import Any

import pyarrow as pa
import torch

from v2x.sweep_plan import Group, SweepPlan
from v2x.sweep_reuse import memory_sharers

#: This worker process's sweep: plan, frames' identity, device, feature cache and batches.
_WORKER: dict[str, Any] = {}


def _start(config: dict, devices: Any, threads: int, sharers: dict[str, int] | None = None) -> None:
    """Worker initialiser: take a device from the queue and load everything onto it."""
    from v2x.common import configure_determinism
    from v2x.loading import data_identity, load_frames
    from v2x.sweep import prepare_device
    from v2x.sweep_plan import plan_sweep

    configure_determinism(config["deterministic"])  # a spawned process starts with torch's defaults
    device = torch.device(devices.get())
    if device.type == "cuda":  # this process's current device (Triton kernels also enter their
        torch.cuda.set_device(device)  # tensors' device: v2x.common.on_device_of)
    torch.set_num_threads(threads)
    logging.getLogger("v2x.sweep_parts").setLevel(logging.ERROR)  # the parent's plan warned
    plan = plan_sweep(config)
    frames = load_frames(plan.data, True)
    cache, batches = prepare_device(plan, frames, device, (sharers or {}).get(str(device), 1))
    _WORKER.update(
        plan=plan,
        data_id=data_identity(plan.data, frames),
        device=device,
        cache=cache,
        batches=batches,
        # each batch's scoring and ledger rows beside the device, in batch order (as in one
        # process: v2x.sweep._run_groups)
        scorer=ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2x-score"),
    )


def _compute(index: int, snrs: list[float]) -> tuple[list[dict], pa.Table, float, int, int]:
    """Group ``index`` of the plan at ``snrs``: rows, ledger, seconds, and this worker's id and
    encoder passes so far."""
    from v2x.loading import _NullBar
    from v2x.sweep import _run_group

    w = _WORKER
    group = w["plan"].groups[index]
    started = time.perf_counter()
    with torch.no_grad():
        rows, ledger = _run_group(
            w["plan"], group, snrs, w["batches"], w["cache"], w["device"], _NullBar(), w["data_id"],
            scorer=w["scorer"],
        )  # fmt: skip
    return rows, ledger, time.perf_counter() - started, os.getpid(), w["cache"].encodes


def _fits(num_frames: int) -> bool:
    """Whether this worker's feature cache holds all ``num_frames`` frames' features
    (``EncodeCache.would_hold``)."""
    w = _WORKER
    return w["cache"].would_hold(w["batches"][0].batch, num_frames)


def _compute_wave(
    indices: list[int], snrs: list[list[float]]
) -> list[tuple[list[dict], pa.Table, float, int, int]]:
    """Groups ``indices`` of the plan at ``snrs`` in lockstep over the frame batches (each
    batch encoded once for all of them, ``v2x.sweep._run_lockstep``): ``_compute``'s tuple per
    group."""
    from v2x.loading import _NullBar
    from v2x.sweep import _run_lockstep

    w = _WORKER
    wave = [(w["plan"].groups[i], s) for i, s in zip(indices, snrs, strict=True)]
    with torch.no_grad():
        done = _run_lockstep(
            w["plan"], wave, w["batches"], w["cache"], w["device"], _NullBar(), w["data_id"],
            None, w["scorer"],
        )  # fmt: skip
    return [
        (rows, ledger, seconds, os.getpid(), w["cache"].encodes)
        for _, _, (rows, ledger), seconds in done
    ]


def _waves(todo_size: int, workers: int, fits: bool) -> list[list[int]]:
    """The positions in ``todo`` each task computes: one group each when the workers' caches
    hold every frame's features, else waves of up to ``LOCKSTEP_GROUPS`` consecutive groups,
    about as many per worker, run in lockstep."""
    from v2x.sweep import LOCKSTEP_GROUPS

    if fits:
        return [[n] for n in range(todo_size)]
    size = min(LOCKSTEP_GROUPS, -(-todo_size // workers))
    return [list(range(i, min(i + size, todo_size))) for i in range(0, todo_size, size)]


def run_groups_on_devices(
    plan: SweepPlan,
    todo: Sequence[tuple[Group, list[float]]],
    devices: Sequence[torch.device],
    bar: Any,
    num_frames: int,
    encodes: list[int],
) -> Iterator[tuple[Group, list[float], list[dict], pa.Table, float]]:
    """Compute the ``todo`` groups of ``plan`` on one worker per device (at most one per group);
    yields each group, its SNRs, results rows, ledger and seconds in ``todo``'s order as soon
    as it and every group before it are done. When a group fails, the groups not yet started are
    cancelled, every group that finished is yielded (in ``todo``'s order), then the group's
    exception is raised. CPU workers share this process's torch threads.
    Appends each worker's encoder passes to ``encodes`` at the end."""
    index_of = {id(g): i for i, g in enumerate(plan.groups)}
    workers = min(len(devices), len(todo))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    for d in devices[:workers]:
        queue.put(str(d))
    threads = max(1, torch.get_num_threads() // workers)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_start,
        initargs=(plan.config.to_dict(), queue, threads, memory_sharers(devices[:workers])),
    )
    passes: dict[int, int] = {}  # worker -> its encoder passes
    try:
        # beyond the feature cache, groups run in lockstep waves (v2x.sweep._waves); with one
        # group per worker there is nothing to share
        fits = len(todo) <= workers or pool.submit(_fits, num_frames).result()
        futures = {}
        for wave in _waves(len(todo), workers, fits):
            if len(wave) == 1:
                group, snrs = todo[wave[0]]
                futures[pool.submit(_compute, index_of[id(group)], list(snrs))] = wave
            else:
                indices = [index_of[id(todo[n][0])] for n in wave]
                snrs_of = [list(todo[n][1]) for n in wave]
                futures[pool.submit(_compute_wave, indices, snrs_of)] = wave
        finished: dict[int, tuple[list[dict], pa.Table, float]] = {}
        upcoming = 0
        error: Exception | None = None
        for future in as_completed(futures):
            if future.cancelled():
                continue
            try:
                results = future.result()
            except Exception as exc:  # the groups not started are dropped, the running ones kept
                if error is None:
                    error = exc
                    for f in futures:
                        f.cancel()
                continue
            wave = futures[future]
            for n, result in zip(wave, [results] if len(wave) == 1 else results, strict=True):
                rows, ledger, seconds, worker, encoder_passes = result
                finished[n] = (rows, ledger, seconds)
                passes[worker] = max(passes.get(worker, 0), encoder_passes)
                bar.update(num_frames * len(todo[n][1]))
            while error is None and upcoming in finished:
                group, snrs = todo[upcoming]
                yield (group, snrs, *finished.pop(upcoming))
                upcoming += 1
        if error is not None:
            # every group a worker finished is still saved (the store keeps the grid's order
            # whatever order they arrive in), then the first failure is raised
            for n in sorted(finished):
                group, snrs = todo[n]
                yield (group, snrs, *finished.pop(n))
            raise error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        queue.close()
    encodes.append(sum(passes.values()))
