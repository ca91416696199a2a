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
up to ``feature_cache_gb``); each cell then pays only for codec, channel, warp, fusion, head and
NMS. The network (range, link models, geometric SNR) and the bandwidth budget (scheduler,
deadline) decide what arrives; a payload dropped at the deadline is removed from the ego's
fusion by re-running that condition with the collaborator masked.

Cells are keyed by everything that changes a number (``cell_id``: condition, ``setting_key`` —
code hash, checkpoint hashes, frames' content hash, config — and seed; see ``docs/sweeps.md``).
A group's cells are written to the results store when all its frames are done (atomic; see
``v2x.results``); a sweep computes only the cells that neither its own file nor another
results file of ``output_dir`` holds. Defaults come from ``conf/sweep.yaml`` for the Python API
and the CLI alike (``default_config``).

One module per job: ``v2x.sweep_config`` (fields and defaults), ``v2x.sweep_plan`` (validation
into groups), ``v2x.provenance`` (hashes and digests that key cells), ``v2x.loading`` (frames,
models, devices, progress), ``v2x.execution`` (running, re-running and scoring conditions on a
frame batch), ``v2x.sweep_reuse`` (caches and cells reused across the sweep), this module (a
plan's groups over the frames, the results store), ``v2x.sweep_rows`` (a group's results
rows), ``v2x.sweep_workers`` (the groups dealt to one worker process per device) and
``v2x.results_table`` (vocabulary and console table). Their public names are also importable
from here.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from v2x.channels import build_channel
from v2x.common import configure_determinism, to_device_async
from v2x.datasets.frame import CLASS_NAMES, CoopFrame
from v2x.evaluation import VEHICLE_LABELS
from v2x.execution import Arrival, evaluate_batch
from v2x.ledger import empty_ledger
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
from v2x.perception.fusion import build_fusion
from v2x.pipeline import CooperativePipeline, LinkCost
from v2x.results import ResultsStore, cell_id, results_files, stable_hash
from v2x.results_table import (  # noqa: F401 - the table API, also reachable from here
    _per_class_columns,
    results_table_text,
    vocabulary,
    vocabulary_text,
)
from v2x.scheduling import schedule
from v2x.semcom import build_codec
from v2x.sweep_batches import _Batch, prepare_device
from v2x.sweep_clock import aged_delivery, min_age_s, resense_batch, sensing_clock
from v2x.sweep_errors import SweepInterrupted, SweepOutOfMemory, out_of_memory_message, saved_note
from v2x.sweep_order import device_order
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
from v2x.sweep_reuse import EncodeCache, reuse_cells, share_source_coding
from v2x.sweep_rows import book_batch, cell_pool, group_rows, warm_cell_pool
from v2x.sweep_scoring import GroupScoring, scoring_pools, warm_scoring_pools
from v2x.torch_threads import sweep_process_threads, torch_threads

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the run


@dataclass
class _Scheduler:
    """The bandwidth budget's scheduler as ``evaluate_batch``'s ``deliver``: which payloads of
    a run arrive by the deadline (``v2x.scheduling.schedule``) and, with asynchronous sensing
    (``clock``), how old they are; keeps the last ``Delivery`` for the ledger."""

    budget: Any
    item: _Batch
    plan: SweepPlan
    clock: Any = None
    delivery: Any = None
    #: the fusion compensates latency: every condition is re-run with the motion history, even
    #: where no payload waited (the LiDAR phases and clock offsets age the data too)
    compensates: bool = False

    def __call__(self, cost: LinkCost) -> Arrival:
        novelty = to_device_async(self.item.novelty, cost.sent.device)
        self.delivery = schedule(
            self.budget,
            cost.sent,
            cost.channel_uses,
            cost.packets,
            cost.snr_db,
            novelty,
            feedback_s=cost.feedback_s,
        )
        ages = None
        if self.clock is not None:  # the ego fuses what was sensed phase + latency before
            ages = aged_delivery(self.clock, self.item, self.delivery, self.plan)
        fresh = min_age_s(self.clock)
        if self.compensates and ages is not None:
            fresh = -math.inf  # (re-sensing itself still skips ages <= MIN_AGE_S)
        return Arrival(self.delivery.delivered, ages, fresh)


def _group_seed(seed: int, group: Group, batch_index: int) -> int:
    return int(stable_hash([seed, group.key, batch_index], 15), 16)


def _eval_config(plan: SweepPlan, model):
    """The plan's evaluation settings; no ``eval_range`` means the ego's BEV grid."""

    cfg = plan.eval_config
    updates: dict[str, Any] = {"class_names": dict(enumerate(CLASS_NAMES))}
    if not cfg.class_groups:  # vehicle AP (cars and trucks, OpenCOOD's): vehicle_ap_* columns
        updates["class_groups"] = {"vehicle": VEHICLE_LABELS}
    if cfg.eval_range is None:
        g = model.grid
        updates["eval_range"] = (g.x_range_m[0], g.y_range_m[0], g.x_range_m[1], g.y_range_m[1])
    return dataclasses.replace(cfg, **updates)


def _cell_seed(seed: int, condition_id: str, batch_index: int) -> int:
    """Seed of one cell's run on one frame batch: from the sweep seed, the cell's condition
    (``condition_id``: its ``cell_id(condition)``) and the batch alone, so a cell's numbers do
    not depend on which other cells run with it."""
    return int(stable_hash([seed, condition_id, batch_index], 15), 16)


def setting_key(group: Group, data_id: Mapping) -> str:
    """Hash of everything besides the condition and the seed that changes a cell's numbers:
    the group's ``setting`` (code, checkpoints, config) and the frames' content hash."""
    data = {k: data_id[k] for k in ("source", "split", "num_frames", "hash")}
    return stable_hash({**group.setting, "data": data}, 16)


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
    """Evaluate the cells of ``group`` at ``snrs`` over every frame batch: results rows and
    their ledger. Each feature-fusion cell gets the numbers of its own call with its own seed
    (``_cell_seed``; all cells of a frame batch share one pipeline call where the pipeline can,
    ``v2x.condition_streams``), so its numbers do not depend on the cells beside it (on CUDA up
    to float32 rounding of boxes and scores: cuDNN picks convolution algorithms by batch shape;
    counts, flags and the ledger exactly); ego-only,
    late and early fusion, whose detections do not depend on the SNR, run once per batch for all
    SNRs. Host work can leave this (the device's) thread: with ``scorer`` (one thread) each
    batch's scoring and ledger rows run there in batch order while the device goes on with the
    next batch (the matching itself in the scoring process where the host has one,
    ``v2x.sweep_scoring``); with ``pool`` the group's rows (APs, bootstrap intervals) run there too and a
    ``Future`` of ``(rows, ledger)`` is returned, so that the device can go on with the next
    group. ``data_id`` may be a function that waits for it (``FrameStream.data_id``): the cells'
    ids hold the frames' hash, so the first booking waits until every frame is read."""

    cfg = plan.config
    snr = torch.tensor(list(snrs), dtype=torch.float32)  # geometric mode: offsets in dB
    k = snr.shape[0]
    fusion = build_fusion(group.fusion, **group.fusion_kwargs)
    if group.stage == FEATURE_STAGE:
        kwargs = codec_kwargs_for(group.codec, group.codec_kwargs, model.config.feature_channels)
        if "max_channel_uses" not in kwargs and "max_channel_uses" in sweep_arguments(group.codec):
            # Rate-adaptive codecs fit their payload into an equal share of the frame's budget.
            links = max(int(item.batch.agent_mask[:, 1:].sum(1).max()) for item in batches)
            kwargs["max_channel_uses"] = int(plan.budget.channel_uses // max(links, 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.seed))  # untrained weights: the same on every run
            codec = build_codec(group.codec, **kwargs)
        channel = build_channel(group.channel, **group.channel_kwargs(cfg.channel_options or {}))
    else:
        codec = build_codec("identity")
        channel = build_channel("awgn")
    pipe = CooperativePipeline(
        model,
        fusion.to(device),
        codec.to(device),
        channel.to(device),
        pose_noise_m=group.pose_noise_m,
        pose_noise_yaw_rad=group.pose_noise_yaw_rad,
        seed=_group_seed(cfg.seed, group, -1) % (2**31),
    ).eval()

    shared_coding = share_source_coding(codec, device)
    snr_on_device = to_device_async(snr, device)
    budget = group.budget(plan.budget)  # the group's late policy and added delay
    clock = sensing_clock(plan)

    eval_config = _eval_config(plan, model)
    scoring = GroupScoring(eval_config, k)  # the cells' accumulators (v2x.sweep_scoring)
    conditions = [group.condition(s, plan.budget) for s in snrs]
    identity = data_id if callable(data_id) else lambda: data_id

    @functools.cache
    def keyed() -> tuple[str, list[str]]:  # the setting's key and the cells' ids
        key = setting_key(group, identity())
        return key, [cell_id(c, key, int(cfg.seed)) for c in conditions]

    condition_ids = [cell_id(c) for c in conditions]  # (each batch's seeds: _cell_seed)
    ledgers = []
    # Real values of one transmitted feature map [C, H/stride, W/stride] (the ratio's denominator).
    feature_values = float(
        model.config.feature_channels
        * (model.grid.height // model.stride)
        * (model.grid.width // model.stride)
    )
    for bi, item in enumerate(batches):
        model.batch_index = bi
        shared_coding.clear()  # holds the source coding of one frame batch's maps at a time
        item_snr = snr_on_device  # [K], or [K, B, A]: each link at its geometric SNR + offset
        if group.snr_mode == "geometric":
            item_snr = (item.network.snr_db[None] + snr.view(k, 1, 1).double()).float()
            item_snr = to_device_async(item_snr, device)
        deliver = _Scheduler(budget, item, plan, clock, compensates=fusion.compensates_latency)
        # Feature fusion: each cell in its own call with its own seed. Ego-only, late and early
        # fusion: the detections do not depend on the SNR (late and early payloads are charged
        # as ideal digital links, a function of the SNR alone), so one call with the group's
        # seed gives every cell what a call of its own would (pose noise draws from the
        # pipeline's generator once per call, whatever K is).
        joint = None if group.stage == FEATURE_STAGE else _group_seed(int(cfg.seed), group, bi)
        scored = evaluate_batch(
            pipe,
            item.batch,
            item_snr,
            item.gt,
            (),  # scored by book_batch
            seeds=[_cell_seed(int(cfg.seed), c, bi) for c in condition_ids],
            joint_seed=joint,
            same_for_all=group.stage == "ego",
            deliver=deliver,
            resense=functools.partial(resense_batch, clock, item, plan=plan, fusion=fusion),
            score=False,  # book_batch scores it (on the scorer thread when there is one)
        )
        book = functools.partial(_book, keyed, scored, item, scoring, deliver.delivery, group)
        ledgers.append(book() if scorer is None else scorer.submit(book))
        bar.update(item.batch.batch_size * k)
    num_frames = sum(item.batch.batch_size for item in batches)
    bits_estimated = group.stage == FEATURE_STAGE and bool(codec.bits_estimated)

    def finish() -> tuple[list[dict], pa.Table]:
        tables = [t.result() if isinstance(t, Future) else t for t in ledgers]
        ledger = pa.concat_tables(tables) if tables else empty_ledger()
        key, cells = keyed()
        rows = group_rows(
            plan, group, snrs, scoring.sealed_accumulators(), ledger, conditions, cells, key, num_frames, eval_config,
            feature_values, identity(), bits_estimated,
        )  # fmt: skip
        return rows, ledger

    return finish() if pool is None else pool.submit(finish)


def _book(keyed: Callable[[], tuple[str, list[str]]], scored, item, scoring, delivery, group):  # noqa: ANN001, ANN202
    """``book_batch`` with the cells' ids of ``keyed()``."""
    return book_batch(scored, item, scoring, keyed()[1], delivery, group)


def run_sweep(cfg: Any) -> Path:
    """Run (or resume) a sweep; returns the results file path.

    Steps: set torch's determinism as ``deterministic`` says (``configure_determinism``),
    validate the config (errors list the valid choices), load the frames (their content
    hash keys the cells), open the job's results store, take the cells that it or another
    results file of ``output_dir`` already holds, then load the model once and compute only the
    missing cells, appending each group's cells atomically (the files keep the grid's order,
    whatever order the groups are computed in). When ``output_dir`` holds no results
    file (nothing to resume or reuse) on one device, the frames are read while the device
    starts on the first ones (``FrameStream``) and the store opens once all are read. Ctrl-C
    raises ``SweepInterrupted`` saying what was saved and how to resume.
    """
    t0 = time.perf_counter()
    options = SweepConfig.from_any(cfg)
    # before any CUDA work (the frames may be ray-cast on the GPU): cuBLAS reads its setting once
    configure_determinism(options.deterministic)
    plan = plan_sweep(options)
    cfg = plan.config
    warm_cell_pool()  # the AP worker processes start; they read the frames first
    warm_scoring_pools()
    devices = resolve_devices(cfg.device)
    stream = FrameStream(plan.data, cfg.quiet, cell_pool())  # read from here on
    store = None
    fresh = not (os.path.isdir(cfg.output_dir) and results_files([cfg.output_dir]))
    if len(devices) == 1 and fresh:
        # Nothing to resume or reuse: every cell is computed, and the device starts on the
        # first frames while the others are read (the store, named by the frames' hash, opens
        # once all are read; the first group's results need them all anyway).
        todo = [(g, list(plan.snr_db)) for g in plan.groups]
        frames, data_id = stream, stream.data_id
    else:
        frames, data_id = stream.frames(), stream.data_id()
        store, todo = _open_store(plan, data_id)
        if not todo:
            return store.path
    to_compute = sum(len(snrs) for _, snrs in todo)
    saved = 0
    encodes: list[int] = []
    try:
        total = to_compute * len(frames)
        with torch.no_grad(), progress(total, "sweep", cfg.quiet, unit="frame-cond") as bar:
            if len(devices) > 1 and len(todo) > 1:
                from v2x.sweep_workers import run_groups_on_devices

                computed = run_groups_on_devices(plan, todo, devices, bar, len(frames), encodes)
            else:
                computed = _run_groups(plan, frames, data_id, todo, devices[0], bar, encodes)
            for n, (group, snrs, rows, ledger, elapsed) in enumerate(computed, 1):
                if store is None:
                    store, _ = _open_store(plan, stream.data_id())
                store.add(rows, ledger)
                saved += len(rows)
                log.info(
                    "group %d/%d %s/%s/%s ratio=%g: %d frame-conditions in %.1f s (%.1f/s)",
                    n,
                    len(todo),
                    group.fusion,
                    group.codec,
                    group.channel,
                    group.bandwidth_ratio,
                    len(frames) * len(snrs),
                    elapsed,
                    len(frames) * len(snrs) / max(elapsed, 1e-9),
                )
    except KeyboardInterrupt:
        raise SweepInterrupted(
            f"sweep interrupted: {saved_note(plan, store, saved, to_compute)}; run the same "
            "command again to resume"
        ) from None
    except (torch.OutOfMemoryError, MemoryError) as err:
        note = saved_note(plan, store, saved, to_compute)
        raise SweepOutOfMemory(out_of_memory_message(plan, devices, note, err)) from err
    log.info("sweep done in %.1f s (%d encoder passes)", time.perf_counter() - t0, sum(encodes))
    return store.path


def _open_store(plan: SweepPlan, data_id: Mapping) -> tuple[ResultsStore, list]:
    """The job's results store, with the cells other results files of ``output_dir`` hold
    copied in, and the ``(group, SNRs)`` still to compute (logged)."""
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
    to_compute = sum(len(snrs) for _, snrs in todo)
    log.info(
        "sweep %s: %d cells in %d groups; %d already done, %d reused from other results files; "
        "computing %d cells in %d groups -> %s",
        store.config_hash,
        plan.num_cells,
        len(plan.groups),
        plan.num_cells - to_compute - reused,
        reused,
        to_compute,
        len(todo),
        store.path,
    )
    return store, todo


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
    # torch's CPU threads: on a GPU, the cores the worker processes leave (v2x.torch_threads)
    with torch_threads(sweep_process_threads(device)):
        # the batches' networks in the scoring processes (idle until the first batch is scored)
        cache, batches = prepare_device(plan, frames, device, workers=scoring_pools())
        # A group's rows (APs and bootstrap intervals, numpy on the host) are computed on a
        # thread while the device runs the next group; groups are yielded in the order they were
        # computed.
        pending: deque = deque()
        pool = ThreadPoolExecutor(max_workers=ROW_THREADS, thread_name_prefix="v2x-rows")
        scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2x-score")  # batch order
        try:
            for group, snrs in device_order(todo):
                if hasattr(bar, "set_postfix_str"):
                    bar.set_postfix_str(f"{group.fusion}/{group.codec}/{group.channel}")
                started = time.perf_counter()
                done = _run_group(plan, group, snrs, batches, cache, device, bar, data_id,
                                  pool=pool, scorer=scorer)  # fmt: skip
                # the group's own time: its rows finish on a thread while the next groups run
                # (up to ROW_THREADS groups' rows at once; the device waits only beyond that)
                pending.append((group, snrs, done, time.perf_counter() - started))
                while len(pending) > ROW_THREADS or (pending and _ready(pending[0][2])):
                    yield _resolved(pending.popleft())
            while pending:
                yield _resolved(pending.popleft())
        except (KeyboardInterrupt, torch.OutOfMemoryError, MemoryError):
            # groups computed before the interrupt (or the lack of memory) are saved
            while pending:
                yield _resolved(pending.popleft())
            raise
        finally:
            scorer.shutdown(wait=True, cancel_futures=True)
            pool.shutdown(wait=True, cancel_futures=True)
            encodes.append(cache.encodes)


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
