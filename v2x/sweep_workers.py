"""A sweep's frame batches split across several devices: one worker process per device.

``run_sweep`` comes here when ``device`` names several devices (``all``: every visible CUDA
device; or a list such as ``[cuda:0,cuda:1]`` or ``[cpu,cpu]``). The sweep's frame batches are
cut into one run of consecutive batches per worker (a shard, ``shards``: sizes differ by at most
one batch). Each worker (a ``spawn`` process, as CUDA needs) plans the same sweep, reads only
its shard's frames, loads the detector and prepares its batches on its own device once, then
computes every group over its shard in the order one device would (``device_order``; the
groups of a wave in lockstep when the shard's features do not fit its feature cache, as in one
process: ``v2x.sweep._waves``) and returns each group's part (``GroupPart``: its cells' AP
accumulators and ledger rows). A cell's numbers on a frame batch depend only on its seed for
that batch's number in the sweep (``v2x.sweep_group._cell_seed``) and on the device type, never
on which worker ran it, so the parent joins a group's parts in batch order (``joined_rows``: the
records one process gives), computes its rows (APs and bootstrap intervals, in the AP worker
processes) while the workers go on, and saves them: the table and ledger equal one device's.
Every worker does its share of every group, its frames' encoding included (dealing whole groups
to the workers, as the sweep did before, left the heaviest group on one device and every worker
encoding every frame).
"""

from __future__ import annotations

import gc
import itertools
import logging
import multiprocessing as mp
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pyarrow as pa
import torch

from v2x.common import set_memory_share
from v2x.sweep_errors import SweepWorkerStopped
from v2x.sweep_group import GroupPart, joined_rows, needs_most_links
from v2x.sweep_plan import Group, SweepPlan
from v2x.sweep_reuse import memory_sharers

log = logging.getLogger(__name__)

#: This worker process's sweep: plan, frames' identity, device, first batch, cache and batches.
_WORKER: dict[str, Any] = {}


def shards(num_batches: int, workers: int) -> list[tuple[int, int]]:
    """``workers`` runs of consecutive batch numbers ``[start, stop)`` covering
    ``num_batches`` batches in order, their sizes differing by at most one (the first ones
    the larger); fewer when there are fewer batches than workers."""
    workers = max(1, min(workers, num_batches))
    size, extra = divmod(num_batches, workers)
    bounds = [0]
    for n in range(workers):
        bounds.append(bounds[-1] + size + (n < extra))
    return list(zip(bounds[:-1], bounds[1:], strict=True))


#: The device workers kept for this process's later multi-device sweeps (``_workers``): their
#: imports, CUDA contexts and compiled kernels stay warm between sweeps (a sweep's worker
#: starts cold in seconds: spawn, imports, the first launch of each kernel).
_KEPT: dict[tuple, list[ProcessPoolExecutor]] = {}


def _workers(devices: Sequence[torch.device], deterministic: bool) -> list[ProcessPoolExecutor]:
    """One worker process (a pool of one) per device of ``devices``, kept from this process's
    last multi-device sweep where it ran on the same devices with the same determinism (set
    once per process, ``configure_determinism``: cuBLAS reads it once), else started anew
    (those kept for other devices stopped first)."""
    key = (tuple(str(d) for d in devices), bool(deterministic))
    pools = _KEPT.get(key)
    if pools is not None and not any(getattr(p, "_broken", False) for p in pools):
        return pools
    for kept in _KEPT.values():
        for pool in kept:
            pool.shutdown(wait=False, cancel_futures=True)
    _KEPT.clear()
    ctx = mp.get_context("spawn")
    _KEPT[key] = [
        ProcessPoolExecutor(
            1, mp_context=ctx, initializer=_start, initargs=(bool(deterministic), str(device))
        )
        for device in devices
    ]
    return _KEPT[key]


#: The sweep the device workers are loading or hold (``load_workers``): its plan's config,
#: devices and frame count, and each worker's load.
_LOADED: dict[str, Any] = {}


def load_workers(plan: SweepPlan, devices: Sequence[torch.device], num_frames: int) -> None:
    """Start the device workers ``run_groups_on_devices`` will take for ``plan``'s
    ``num_frames`` frames and have each read its shard and load the detector and its batches
    now (e.g. while this process reads every frame for their hash). ``release_workers`` lets
    go of it where no group is computed after all (nothing left to compute, an error)."""
    key = _sweep_key(plan, devices, num_frames)
    bs = int(plan.config.batch_size)
    parts_of = shards(-(-num_frames // bs), len(devices))
    devices = list(devices[: len(parts_of)])
    pools = _workers(devices, bool(plan.config.deterministic))
    # CPU workers compute with this process's torch threads: a CPU's float32 sums (e.g. a 1x1
    # convolution's) depend on how many threads split them, and the table must equal one
    # process's; on a GPU the host threads change no number, and the workers share the cores
    threads = torch.get_num_threads()
    if torch.device(devices[0]).type != "cpu":
        threads = max(1, threads // len(devices))
    sharers = memory_sharers(devices)
    config = plan.config.to_dict()
    _LOADED.clear()
    _LOADED.update(
        key=key,
        pools=pools,
        loads=[
            pool.submit(_load, config, str(device), threads, shard, sharers)
            for pool, device, shard in zip(pools, devices, parts_of)
        ],
    )


def _sweep_key(plan: SweepPlan, devices: Sequence[torch.device], num_frames: int) -> tuple:
    return repr(plan.config.to_dict()), tuple(map(str, devices)), num_frames


def release_workers() -> None:
    """The device workers let go of the sweep ``load_workers`` gave them (if any)."""
    if _LOADED:
        _released(_LOADED.pop("pools"))
        _LOADED.clear()


def _start(deterministic: bool, device: str) -> None:
    """Worker initialiser: ended with the sweep's process (``exit_with_parent``: an orphaned
    worker keeps its CUDA context, and the GPU memory in it, while it waits for work that
    never comes), torch's determinism, ``device`` as the current one, and the GIL switch
    interval of a sweep's process on it (``v2x.gil_switch``: this process only runs sweep
    groups on ``device``, beside its scorer thread)."""
    from v2x.common import configure_determinism
    from v2x.forked_pools import exit_with_parent
    from v2x.gil_switch import sweep_switch_interval

    exit_with_parent()
    configure_determinism(deterministic)  # a spawned process starts with torch's defaults
    device = torch.device(device)
    interval = sweep_switch_interval(device)
    if interval is not None:
        sys.setswitchinterval(interval)
    if device.type == "cuda":  # this process's current device (Triton kernels also enter their
        torch.cuda.set_device(device)  # tensors' device: v2x.common.on_device_of)
    logging.getLogger("v2x.sweep_parts").setLevel(logging.ERROR)  # the parent's plan warned
    logging.getLogger("v2x.sweep_order").setLevel(logging.ERROR)


def _load(
    config: dict, device: str, threads: int, shard: tuple[int, int], sharers: dict[str, int]
) -> None:
    """A sweep's start in this worker: read the frames of batches ``shard`` (on a thread, the
    batches prepared as they arrive) and load the detector and its feature cache onto
    ``device``."""
    from v2x.loading import FrameStream
    from v2x.sweep import prepare_device
    from v2x.sweep_plan import plan_sweep

    _release()  # (an earlier sweep's, if it did not end here)
    device = torch.device(device)
    torch.set_num_threads(threads)
    # calls sized by the device's memory (the digital chain's decoder calls) take this worker's
    # share of it, as its feature cache does
    set_memory_share(device, sharers.get(str(device), 1))
    plan = plan_sweep(config)
    bs = int(plan.config.batch_size)
    frames = FrameStream(plan.data, True, part=slice(shard[0] * bs, shard[1] * bs))
    cache, batches = prepare_device(plan, frames, device, sharers.get(str(device), 1))
    _WORKER.update(
        plan=plan,
        frames=frames,
        device=device,
        first=shard[0],
        num_frames=len(frames),
        cache=cache,
        batches=batches,
        # each batch's scoring and ledger rows beside the device, in batch order (as in one
        # process: v2x.sweep._run_groups)
        scorer=ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2x-score"),
    )


def _release() -> None:
    """A sweep's end in this worker: its frames, detector and features let go (the device's
    cached memory too: the sweep's own process may use the device next)."""
    scorer = _WORKER.get("scorer")
    if scorer is not None:
        scorer.shutdown(wait=True)
    if "frames" in _WORKER:  # (a shard still being read, e.g. of a sweep that failed early)
        _WORKER["frames"].close()
    device = _WORKER.get("device")
    _WORKER.clear()
    gc.collect()
    if device is not None and device.type == "cuda":
        set_memory_share(device, 1)
        torch.cuda.empty_cache()


def _facts(links: bool) -> tuple[bool, tuple[int, int, int], int | None, float, int]:
    """Whether this worker's feature cache holds all its frames' features
    (``EncodeCache.would_hold``), the detector's map shape ``(C, h, w)``, with ``links`` the
    most collaborator links of any of its frames (``batch_links``: waits for its batches), the
    cache's bytes and the worker's frames."""
    from v2x.sweep_group import batch_links

    w = _WORKER
    first = w["batches"][0].batch
    fits = w["cache"].would_hold(first, w["num_frames"])
    shape = tuple(w["cache"].feature_map_shape)
    most = batch_links(w["batches"]) if links else None
    return fits, shape, most, w["cache"].max_bytes, w["num_frames"]


def _compute(
    indices: list[int], snrs: list[list[float]], most_links: int | None, data_id: Mapping
) -> tuple[list[GroupPart], list[float], int]:
    """Groups ``indices`` of the plan at ``snrs`` over this worker's frame batches (several in
    lockstep: each batch encoded once for all of them; ``data_id``: the whole sweep's frames'
    identity, which keys the cells): each group's part, the seconds its steps took, and this
    worker's encoder passes so far."""
    from v2x.loading import _NullBar
    from v2x.sweep import _stepped, run_lockstep
    from v2x.sweep_group import GroupRun

    w = _WORKER
    plan, batches, cache = w["plan"], w["batches"], w["cache"]
    runs = [
        GroupRun(plan, plan.groups[i], s, batches, cache, w["device"], data_id, w["scorer"],
                 most_links)  # fmt: skip
        for i, s in zip(indices, snrs, strict=True)
    ]
    with torch.no_grad():
        if len(runs) == 1:
            started = time.perf_counter()
            _stepped(runs[0], batches, cache, _NullBar(), w["first"])
            seconds = [time.perf_counter() - started]
        else:
            runs, seconds = run_lockstep(runs, batches, _NullBar(), w["first"])
    return [run.part() for run in runs], seconds, cache.encodes


def run_groups_on_devices(
    plan: SweepPlan,
    todo: Sequence[tuple[Group, list[float]]],
    devices: Sequence[torch.device],
    bar: Any,
    num_frames: int,
    encodes: list[int],
    data_id: Mapping,
) -> Iterator[tuple[Group, list[float], list[dict], pa.Table, float]]:
    """Compute the ``todo`` groups of ``plan`` over ``num_frames`` frames (``data_id``: their
    identity), a shard of the frame batches on each device's worker; yields each group, its
    SNRs, results rows, ledger and seconds (the slowest worker's steps) as soon as its rows are
    computed, groups in the order the workers compute them. When a worker fails, the tasks not
    yet started are cancelled, every group whose parts all came back is yielded, then the
    failure is raised; on Ctrl-C (``KeyboardInterrupt``: also ``SIGTERM`` in the apps) the
    groups whose parts came back before it, without waiting for the running tasks. CPU
    workers run torch's ops on as many threads as this process (they share its cores rather
    than split them: the same numbers, not more speed); GPU workers split them. Appends the
    workers' encoder passes to ``encodes`` at the end."""
    from v2x.sweep import LOCKSTEP_GROUPS, ROW_THREADS, _group_label, lockstep_waves
    from v2x.sweep_order import device_order, log_waves, silent_groups

    index_of = {id(g): i for i, g in enumerate(plan.groups)}
    if _LOADED.get("key") != _sweep_key(plan, devices, num_frames):  # (not loaded ahead)
        load_workers(plan, devices, num_frames)
    pools, loads = _LOADED["pools"], _LOADED["loads"]
    rows_pool = ThreadPoolExecutor(max_workers=ROW_THREADS, thread_name_prefix="v2x-rows")
    passes = [0] * len(pools)
    tasks: list[list[Future]] = []
    try:
        for load in loads:
            load.result()
        links = any(needs_most_links(g) for g, _ in todo)
        facts = [f.result() for f in [p.submit(_facts, links) for p in pools]]
        most_links = max(f[2] for f in facts) if links else None
        ordered = device_order(todo, silent_groups(plan.budget, facts[0][1]))
        fits = all(f[0] for f in facts)
        # (each worker's cache and shard: the most frames any one must hold)
        least, most = min(f[3] for f in facts), max(f[4] for f in facts)
        log_waves(len(ordered), fits, least, most, LOCKSTEP_GROUPS)
        waves = lockstep_waves(ordered, fits)
        tasks = [
            [p.submit(_compute, [index_of[id(g)] for g, _ in wave], [list(s) for _, s in wave],
                      most_links, dict(data_id)) for p in pools]  # fmt: skip
            for wave in waves
        ]
        rows: list[tuple[Group, list[float], Future, float]] = []
        error: BaseException | None = None
        for wave, futures in zip(waves, tasks, strict=True):
            try:
                done = [f.result() for f in futures]
            except CancelledError:  # (after a failure)
                continue
            except BaseException as exc:
                # the tasks not started are dropped; after an error the running ones are waited
                # for, after Ctrl-C or SIGTERM not (the groups already back are saved)
                interrupted = not isinstance(exc, Exception)
                if error is None or interrupted:
                    error = exc
                    for f in itertools.chain.from_iterable(tasks):
                        f.cancel()
                if interrupted:
                    break
                continue
            for w, (_, _, encoder_passes) in enumerate(done):
                passes[w] = max(passes[w], encoder_passes)
            for n, (group, snrs) in enumerate(wave):
                parts = [d[0][n] for d in done]
                if log.isEnabledFor(logging.DEBUG):  # (e.g. two workers sharing one GPU)
                    each = " / ".join(f"{d[1][n]:.2f}" for d in done)
                    log.debug("group %s: each worker's steps %s s", _group_label(group), each)
                bar.update(sum(p.num_frames for p in parts) * len(snrs))
                future = rows_pool.submit(joined_rows, plan, group, snrs, parts, data_id)
                rows.append((group, snrs, future, max(d[1][n] for d in done)))
            while error is None and rows and rows[0][2].done():
                group, snrs, future, seconds = rows.pop(0)
                yield (group, snrs, *future.result(), seconds)
        # every group whose parts all came back is saved, also after a failure
        for group, snrs, future, seconds in rows:
            yield (group, snrs, *future.result(), seconds)
        if error is not None:
            raise error
    except BrokenProcessPool as err:  # a worker process stopped: which, and how
        raise _stopped(pools, devices, err) from err
    finally:
        for f in itertools.chain.from_iterable(tasks):  # (the caller stopped, or a failure)
            f.cancel()
        if _LOADED.get("loads") is loads:  # (closed late, a later sweep's load is not ours)
            release_workers()
        rows_pool.shutdown(wait=True, cancel_futures=True)
    encodes.append(sum(passes))


def _stopped(
    pools: Sequence[ProcessPoolExecutor], devices: Sequence[torch.device], err: BaseException
) -> SweepWorkerStopped:
    """``err`` (a worker's pool broke) as the error that names each stopped worker's device,
    process and end (a SIGKILL: what the kernel's out-of-memory killer sends)."""
    told = []
    for pool, device in zip(pools, devices):
        if not getattr(pool, "_broken", False):
            continue
        for pid, process in dict(getattr(pool, "_processes", None) or {}).items():
            code = process.exitcode
            if code is None or code >= 0:
                how = "stopped" if code is None else f"exited with status {code}"
            else:
                name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
                how = f"was killed by {name}"
                if -code == signal.SIGKILL:
                    how += " (as the kernel's out-of-memory killer does, e.g. for host memory)"
            told.append(f"the device worker on {device} (process {pid}) {how}")
    return SweepWorkerStopped("; ".join(told or [f"a device worker stopped ({err})"]))


def _released(pools: Sequence[ProcessPoolExecutor]) -> None:
    """Each worker's sweep let go once its running task ends (the tasks not started are
    cancelled); a worker that stopped (killed, e.g. for memory, or by Ctrl-C) is not kept."""
    ends = []
    for pool in pools:
        try:
            ends.append(pool.submit(_release))
        except (BrokenProcessPool, RuntimeError):
            ends.append(None)
    for pool, end in zip(pools, ends, strict=True):
        try:
            if end is None:
                raise BrokenProcessPool("stopped")
            end.result()
        except BaseException:  # noqa: BLE001 - a worker that cannot let go is not kept
            for kept in list(_KEPT):
                if pool in _KEPT[kept]:
                    for other in _KEPT.pop(kept):
                        other.shutdown(wait=False, cancel_futures=True)
