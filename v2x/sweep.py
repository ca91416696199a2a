"""Channel-condition sweeps: a grid of conditions evaluated over a frame set, batched, resumable.

``run_sweep(cfg) -> Path`` (the results file) is what ``v2x-sweep`` calls and what tests call.

The grid is ``channel × snr_db × codec × bandwidth_ratio × fusion × pose_noise``. It is cut
into **groups**: all SNRs of one (fusion, codec, ratio, channel, pose noise) setting, which
share one codec, channel and fusion. A **cell** is one SNR of a group over the whole frame set;
each runs with its own seed (from ``seed``, its condition and the frame batch), so its numbers
do not depend on the other cells computed with it. Fusion stages that send no features
(``ego``: ``none``; ``boxes``: ``late``; ``points``: ``early``) do not use the codec or the
channel (late and early fusion are charged as ideal digital links at each SNR), so they form one
group per pose noise, with ``codec = channel = "n/a"``.

Per frame batch the encoders run once for the whole sweep (their features are cached in memory
up to ``feature_cache_gb``; when they do not all fit, groups run in lockstep over the batches,
``_waves``); each cell then pays only for codec, channel, warp, fusion, head and NMS. The
network (range, link models, geometric SNR) and the bandwidth budget (scheduler, deadline)
decide what arrives; a payload dropped at the deadline is removed from the ego's fusion by
re-running that condition with the collaborator masked.

Cells are keyed by everything that changes a number (``cell_id``: condition, ``setting_key`` —
code hash, checkpoint hashes, frames' content hash, config — and seed; see ``docs/sweeps.md``).
A group's cells are written to the results store once all its frames are done (atomic; see
``v2x.results``; finished groups are written together, ``v2x.sweep_saving``); a sweep computes
only the cells that neither its own file nor another results file of ``output_dir`` holds.
Defaults come from ``conf/sweep.yaml`` for the Python API and the CLI alike
(``default_config``).

One module per job: ``v2x.sweep_config`` (fields and defaults), ``v2x.sweep_plan`` (validation
into groups), ``v2x.provenance`` (hashes and digests that key cells), ``v2x.loading`` (frames,
models, devices, progress), ``v2x.execution`` (running, re-running and scoring conditions on a
frame batch), ``v2x.sweep_reuse`` (caches and cells reused across the sweep),
``v2x.sweep_group`` (one group's cells, a frame batch at a time), this module (a plan's groups
over the frames, the results store), ``v2x.sweep_saving`` (when finished groups are written),
``v2x.sweep_rows`` (a group's results rows), ``v2x.sweep_workers`` (the frame batches in
shards, one worker process per device) and ``v2x.results_table`` (vocabulary and console
table). Their public names are also importable
from here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from v2x.common import configure_determinism, usable_device
from v2x.datasets.frame import CoopFrame
from v2x.gil_switch import sweep_switch_interval, switch_interval
from v2x.loading import (  # noqa: F401 - the loading API, also reachable from here
    FrameStream,
    _NullBar,
    data_identity,
    frames_digest,
    load_frames,
    load_model,
    progress,
    progress_enabled,
    resolve_devices,
)
from v2x.output_folders import writable_folder
from v2x.results import ResultsStore, cell_id, results_files, stable_hash
from v2x.results_table import (  # noqa: F401 - the table API, also reachable from here
    _per_class_columns,
    ratio_text,
    results_table_text,
    vocabulary,
    vocabulary_text,
)
from v2x.sweep_batches import _Batch, prepare_device
from v2x.sweep_errors import (
    SweepInterrupted,
    SweepOutOfMemory,
    SweepWorkerStopped,
    out_of_memory_message,
    saved_note,
)
from v2x.sweep_group import GroupRun, setting_key
from v2x.sweep_order import device_order, log_waves, silent_groups
from v2x.sweep_plan import (  # noqa: F401 - the planning API, also reachable from here
    DATA_SOURCES,
    FEATURE_STAGE,
    NO_CODEC,
    SNR_MODES,
    UNTRAINED,
    Group,
    SweepConfig,
    SweepPlan,
    codec_kwargs_for,
    default_config,
    plan_sweep,
    sweep_arguments,
)
from v2x.sweep_reuse import EncodeCache, reuse_cells
from v2x.sweep_rows import cell_pool, forget_results, warm_cell_pool
from v2x.sweep_saving import GroupSaver
from v2x.sweep_scoring import scoring_pools, warm_scoring_pools
from v2x.torch_threads import sweep_process_threads, torch_threads

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the run


def _run_group(
    plan: SweepPlan,
    group: Group,
    snrs: Sequence[float],
    batches: Sequence[_Batch],
    model: EncodeCache,
    device,
    bar,
    data_id: Mapping | Callable[[], Mapping],
    pool: Executor | None = None,
    scorer: Executor | None = None,
) -> tuple[list[dict], pa.Table] | Future:
    """Evaluate the cells of ``group`` at ``snrs`` over every frame batch (``GroupRun``): results
    rows and their ledger; with ``pool`` a ``Future`` of them (computed there while the device
    goes on with the next group)."""
    return _stepped(GroupRun(plan, group, snrs, batches, model, device, data_id, scorer),
                    batches, model, bar).finish(pool)  # fmt: skip


def _stepped(run: GroupRun, batches: Sequence[_Batch], model: EncodeCache, bar: Any,
             first_batch: int = 0) -> GroupRun:  # fmt: skip
    """``run`` stepped over ``batches``, the sweep's batches from number ``first_batch`` on
    (their cells' seeds are those of the batches' numbers in the sweep)."""
    for j, item in enumerate(batches):
        upcoming = _prepared(batches, j + 1)
        if upcoming is not None:  # its encoding queued on the device beside this batch's work
            model.prefetch(first_batch + j + 1, upcoming.batch)
        run.step(first_batch + j, item, bar)
    return run


def _prepared(batches: Sequence[_Batch], index: int) -> _Batch | None:
    """Batch ``index`` if there is one and it is prepared (``PreparedBatches.ready``: taking
    it does not wait), else ``None``."""
    if index >= len(batches):
        return None
    ready = getattr(batches, "ready", None)
    return batches[index] if ready is None or ready(index) else None


def run_sweep(cfg: Any) -> Path:
    """Run (or resume) a sweep; returns the results file path.

    Steps: set torch's determinism as ``deterministic`` says (``configure_determinism``),
    validate the config (errors list the valid choices), load the frames (their content
    hash keys the cells), open the job's results store, take the cells that it or another
    results file of ``output_dir`` already holds, then load the model once and compute only the
    missing cells, appending finished groups' cells atomically (``v2x.sweep_saving``; the
    files keep the grid's order, whatever order the groups are computed in). When
    ``output_dir`` holds no results file (nothing to resume or reuse) on one device, the frames
    are read while the device starts on the first ones (``FrameStream``) and the store opens
    once all are read. Ctrl-C raises ``SweepInterrupted`` saying what was saved and how to
    resume.
    """
    t0 = time.perf_counter()
    options = SweepConfig.from_any(cfg)
    # before any CUDA work (the frames may be ray-cast on the GPU): cuBLAS reads its setting once
    configure_determinism(options.deterministic)
    plan = plan_sweep(options)
    cfg = plan.config
    devices = resolve_devices(cfg.device)
    for device in devices:  # refused before anything starts
        usable_device(str(device), "sweep: field 'device'")
    writable_folder(cfg.output_dir, "sweep: field 'output_dir'")
    forget_results()  # cells computed by an earlier sweep of this process are not reused here
    warm_cell_pool()  # the AP worker processes start; they read the frames first
    if len(devices) == 1:  # (several: the device workers score their own batches)
        warm_scoring_pools()
    fresh = not (os.path.isdir(cfg.output_dir) and results_files([cfg.output_dir]))
    if fresh:  # nothing to resume or reuse: the plan is known before any frame is read
        _log_plan(plan, "", 0, [(g, plan.snr_db) for g in plan.groups], cfg.output_dir)
    stream = FrameStream(plan.data, cfg.quiet, cell_pool())  # read from here on
    sharded = len(devices) > 1 and len(stream) > int(cfg.batch_size)
    if sharded:  # the device workers load their shards while the frames are read here
        from v2x.sweep_workers import load_workers, release_workers

        load_workers(plan, devices, len(stream))
    store = None
    if len(devices) == 1 and fresh:
        # Nothing to resume or reuse: every cell is computed, and the device starts on the
        # first frames while the others are read (the store, named by the frames' hash, opens
        # once all are read; the first group's results need them all anyway).
        todo = [(g, list(plan.snr_db)) for g in plan.groups]
        frames, data_id = stream, stream.data_id
    else:
        try:
            frames, data_id = stream.frames(), stream.data_id()
            store, todo = _open_store(plan, data_id, announced=fresh)
        except BaseException:
            if sharded:
                release_workers()
            raise
        if not todo:
            if sharded:
                release_workers()
            return store.path
    to_compute = sum(len(snrs) for _, snrs in todo)
    # finished groups are written together (v2x.sweep_saving): at the end, when the sweep
    # stops short, and meanwhile once one has waited SAVE_EVERY_S seconds
    saver = GroupSaver(lambda: _open_store(plan, stream.data_id(), announced=True)[0], store)
    encodes: list[int] = []
    try:
        total = to_compute * len(frames)
        with torch.no_grad(), progress(total, "sweep", cfg.quiet, unit="frame-cond") as bar:
            if sharded:
                from v2x.sweep_workers import run_groups_on_devices

                computed = run_groups_on_devices(
                    plan, todo, devices, bar, len(frames), encodes, data_id
                )
            else:
                computed = _run_groups(plan, frames, data_id, todo, devices[0], bar, encodes)
            try:
                # closed when this loop stops (an error while saving, Ctrl-C here): the devices
                # stop and let go of the sweep now, not once the error's traceback is dropped
                with contextlib.closing(computed):
                    for n, (group, snrs, rows, ledger, elapsed) in enumerate(computed, 1):
                        saver.hold(rows, ledger)
                        log.info(
                            "group %d/%d %s: %d frame-conditions in %.1f s (%.1f/s)",
                            n,
                            len(todo),
                            _group_label(group),
                            len(frames) * len(snrs),
                            elapsed,
                            len(frames) * len(snrs) / max(elapsed, 1e-9),
                        )
                saver.save()
            except BaseException:
                saver.save_after_error()  # what was computed before the error
                raise
            finally:
                saver.close()
    except KeyboardInterrupt:
        raise SweepInterrupted(
            f"sweep interrupted: {saved_note(plan, saver.store, saver.saved, to_compute)}; run "
            "the same command again to resume"
        ) from None
    except (torch.OutOfMemoryError, MemoryError) as err:
        note = saved_note(plan, saver.store, saver.saved, to_compute)
        raise SweepOutOfMemory(out_of_memory_message(plan, devices, note, err)) from err
    except SweepWorkerStopped as err:  # (new workers start for the next sweep)
        note = saved_note(plan, saver.store, saver.saved, to_compute)
        raise SweepWorkerStopped(
            f"sweep: {err}; {note}; run the same command again to resume"
        ) from err
    log.info("sweep done in %.1f s (%d encoder passes)", time.perf_counter() - t0, sum(encodes))
    return saver.store.path


def _group_label(group: Group) -> str:
    """``fusion/codec/channel``, with ``ratio=1/N`` for a codec with the ratio knob (no
    ``ratio=nan`` for the others)."""
    ratio = group.bandwidth_ratio
    label = f"{group.fusion}/{group.codec}/{group.channel}"
    return label + (f" ratio={ratio_text(ratio)}" if ratio == ratio else "")


def _open_store(
    plan: SweepPlan, data_id: Mapping, announced: bool = False
) -> tuple[ResultsStore, list]:
    """The job's results store, with the cells other results files of ``output_dir`` hold
    copied in, and the ``(group, SNRs)`` still to compute: logged as the plan, or, when the
    plan was ``announced`` before the frames were read, as the results file's path."""
    cfg = plan.config
    ids = {
        id(g): [
            cell_id(g.condition(s, plan.budget), setting_key(g, data_id), int(cfg.seed))
            for s in plan.snr_db
        ]
        for g in plan.groups
    }
    store = ResultsStore(
        cfg.output_dir,
        stable_hash([plan.config_hash, data_id["hash"]]),
        allow_corrupt=cfg.allow_corrupt,
        order=[c for g in plan.groups for c in ids[id(g)]],  # the grid's order
    )
    done = store.done_cells()
    reused = reuse_cells(store, {c for cs in ids.values() for c in cs} - done)
    done = store.done_cells()
    todo = [(g, [s for s, c in zip(plan.snr_db, ids[id(g)]) if c not in done]) for g in plan.groups]
    todo = [(g, snrs) for g, snrs in todo if snrs]
    if announced:
        log.info("sweep %s: results -> %s", store.config_hash, store.path)
    else:
        _log_plan(plan, f" {store.config_hash}", reused, todo, store.path)
    return store, todo


def _log_plan(
    plan: SweepPlan,
    name: str,
    reused: int,
    todo: Sequence[tuple[Group, Sequence[float]]],
    where: str | os.PathLike,
) -> None:
    """Log the sweep's plan: its cells and groups, those already done or ``reused``, and the
    ``todo`` groups' cells to compute into ``where``."""
    to_compute = sum(len(snrs) for _, snrs in todo)
    log.info(
        "sweep%s: %d cells in %d groups; %d already done, %d reused from other results files; "
        "computing %d cells in %d groups -> %s",
        name,
        plan.num_cells,
        len(plan.groups),
        plan.num_cells - to_compute - reused,
        reused,
        to_compute,
        len(todo),
        where,
    )


def _run_groups(
    plan: SweepPlan,
    frames: list[CoopFrame],
    data_id: Mapping,
    todo: Sequence[tuple[Group, list[float]]],
    device: torch.device,
    bar: Any,
    encodes: list[int],
) -> Iterator[tuple[Group, list[float], list[dict], pa.Table, float]]:
    """Compute the ``todo`` groups in this process on ``device`` in ``device_order``: yields
    each group, its SNRs, results rows, ledger and seconds (the device thread's time on the
    group) as it finishes; appends the encoder passes to ``encodes``."""
    # torch's CPU threads: on a GPU, the cores the worker processes leave (v2x.torch_threads);
    # the GIL handed back to the device's thread sooner (v2x.gil_switch)
    with (
        torch_threads(sweep_process_threads(device)),
        switch_interval(sweep_switch_interval(device)),
    ):
        # the batches' networks in the scoring processes (idle until the first batch is scored)
        cache, batches = prepare_device(plan, frames, device, workers=scoring_pools())
        # A group's rows (APs and bootstrap intervals, numpy on the host) are computed on a
        # thread while the device runs the next group; groups are yielded in the order they were
        # computed.
        pending: deque = deque()
        pool = ThreadPoolExecutor(max_workers=ROW_THREADS, thread_name_prefix="v2x-rows")
        scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2x-score")  # batch order
        try:
            silent = silent_groups(plan.budget, cache.feature_map_shape)
            for wave in _waves(device_order(todo, silent), cache, batches, len(frames)):
                if hasattr(bar, "set_postfix_str"):
                    bar.set_postfix_str(" + ".join(_group_label(g) for g, _ in wave))
                if len(wave) == 1:
                    group, snrs = wave[0]
                    started = time.perf_counter()
                    done = _run_group(plan, group, snrs, batches, cache, device, bar, data_id,
                                      pool=pool, scorer=scorer)  # fmt: skip
                    # the group's own time: its rows finish on a thread while the next groups
                    # run (up to ROW_THREADS groups' rows at once; the device waits beyond that)
                    finished = [(group, snrs, done, time.perf_counter() - started)]
                else:
                    finished = _run_lockstep(plan, wave, batches, cache, device, bar, data_id,
                                             pool, scorer)  # fmt: skip
                # a wave's groups all wait for their rows at once: the next wave runs meanwhile
                pending.extend(finished)
                while len(pending) > max(ROW_THREADS, len(finished)) or (
                    pending and _ready(pending[0][2])
                ):
                    yield _resolved(pending.popleft())
            while pending:
                yield _resolved(pending.popleft())
        except (KeyboardInterrupt, Exception):  # (not GeneratorExit: the caller stopped)
            # groups computed before the error (Ctrl-C, the lack of memory, a later group's
            # bug) are saved
            while pending:
                yield _resolved(pending.popleft())
            raise
        finally:
            scorer.shutdown(wait=True, cancel_futures=True)
            pool.shutdown(wait=True, cancel_futures=True)
            encodes.append(cache.encodes)


#: At most this many groups run in lockstep over the frame batches (``_waves``): a sweep
#: interrupted in a wave loses that wave's groups, and their rows finish together.
LOCKSTEP_GROUPS = 8


def _waves(
    ordered: Sequence[tuple[Group, list[float]]],
    cache: EncodeCache,
    batches: Sequence[_Batch],
    num_frames: int,
) -> list[list[tuple[Group, list[float]]]]:
    """The groups of ``ordered`` as the waves ``_run_groups`` computes: one group at a time when
    the feature cache holds every frame's features (each batch encoded once for the sweep), else
    up to ``LOCKSTEP_GROUPS`` groups in lockstep over the batches (each batch encoded once per
    wave instead of once per group for the batches the cache does not hold). A speed choice
    only: every cell has its own seeds, and each group its own generators. Logged
    (``log_waves``)."""
    fits = cache.would_hold(batches[0].batch, num_frames)
    log_waves(len(ordered), fits, cache.max_bytes, num_frames, LOCKSTEP_GROUPS)
    return lockstep_waves(ordered, fits)


def lockstep_waves(
    ordered: Sequence[tuple[Group, list[float]]], fits: bool
) -> list[list[tuple[Group, list[float]]]]:
    """``ordered`` one group at a time where the features ``fits`` the feature cache, else in
    waves of up to ``LOCKSTEP_GROUPS`` groups (``_waves``; each device worker's, the same)."""
    if len(ordered) < 2 or fits:
        return [[item] for item in ordered]
    return [list(ordered[i : i + LOCKSTEP_GROUPS]) for i in range(0, len(ordered), LOCKSTEP_GROUPS)]


def _run_lockstep(
    plan: SweepPlan,
    wave: Sequence[tuple[Group, list[float]]],
    batches: Sequence[_Batch],
    cache: EncodeCache,
    device: torch.device,
    bar: Any,
    data_id: Mapping | Callable[[], Mapping],
    pool: Executor | None,
    scorer: Executor | None,
) -> list[tuple[Group, list[float], Future | tuple[list[dict], pa.Table], float]]:
    """The groups of ``wave`` batch by batch, each batch's groups in turn (its features encoded
    once for all of them): ``(group, snrs, rows and ledger, seconds)`` per group (a future of
    the rows and ledger with ``pool``), the seconds its own steps took. With ``pool`` each
    group's rows start as soon as its last step is queued, while the groups after it in the
    last batch still run (in ``device_order`` the heavy groups, whose distinct cells take the
    rows' longest, come first)."""
    done: dict[int, Future | tuple[list[dict], pa.Table]] = {}
    runs, seconds = run_lockstep(
        [GroupRun(plan, g, snrs, batches, cache, device, data_id, scorer) for g, snrs in wave],
        batches, bar, finished=lambda run: done.setdefault(id(run), run.finish(pool)),
    )  # fmt: skip
    return [
        (g, snrs, done[id(run)] if id(run) in done else run.finish(pool), s)
        for (g, snrs), run, s in zip(wave, runs, seconds)
    ]


def run_lockstep(
    runs: Sequence[GroupRun],
    batches: Sequence[_Batch],
    bar: Any,
    first_batch: int = 0,
    finished: Callable[[GroupRun], Any] | None = None,
) -> tuple[Sequence[GroupRun], list[float]]:
    """``runs`` stepped batch by batch over ``batches`` (the sweep's batches from number
    ``first_batch`` on), each batch's runs in turn; the seconds each run's steps took.
    ``finished(run)`` is called for each run right after its last step."""
    seconds = [0.0] * len(runs)
    last = len(batches) - 1
    for j, item in enumerate(batches):
        for n, run in enumerate(runs):
            started = time.perf_counter()
            run.step(first_batch + j, item, bar)
            seconds[n] += time.perf_counter() - started
            if j == last and finished is not None:
                finished(run)
    return runs, seconds


#: Threads that compute finished groups' results rows while the device goes on.
ROW_THREADS = max(1, min(4, (os.cpu_count() or 1) - 1))


def _ready(done: tuple | Future) -> bool:
    return not isinstance(done, Future) or done.done()


def _resolved(item: tuple) -> tuple[Group, list[float], list[dict], pa.Table, float]:
    """``(group, snrs, rows, ledger, seconds)`` once the group's rows and ledger are done;
    ``seconds`` is the time the device's thread spent on the group (its pipeline calls), not
    the wait for its rows, which overlaps the next group's work."""
    group, snrs, done, seconds = item
    rows, ledger = done.result() if isinstance(done, Future) else done
    return group, snrs, rows, ledger, seconds


__all__ = ["SweepConfig", "plan_sweep", "run_sweep", "load_frames", "results_table_text"]
