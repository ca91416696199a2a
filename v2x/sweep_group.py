"""One sweep group's cells over the frame batches, a batch at a time (``GroupRun``).

A group (all SNRs of one fusion / codec / channel / pose-noise setting, ``v2x.sweep_plan``)
shares one codec, channel and fusion. ``GroupRun`` builds them, runs its cells on one frame
batch per ``step`` and, at ``finish``, gives the group's results rows and ledger. Every cell
has its own seed per frame batch (``_cell_seed``) and every group its own generators, so the
steps of several groups may interleave in any order (``v2x.sweep._run_groups`` runs groups in
lockstep over the batches when the frames' features do not all fit the feature cache) without
changing a number.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import torch

from v2x.channels import build_channel
from v2x.common import to_device_async
from v2x.datasets.frame import CLASS_NAMES
from v2x.evaluation import VEHICLE_LABELS
from v2x.execution import Arrival, evaluate_batch
from v2x.ledger import empty_ledger
from v2x.perception.fusion import build_fusion
from v2x.pipeline import CooperativePipeline, LinkCost
from v2x.provenance import canonical_json, text_hash, with_file_digests
from v2x.results import cell_id, stable_hash
from v2x.scheduling import schedule
from v2x.semcom import build_codec
from v2x.sweep_batches import _Batch
from v2x.sweep_clock import (
    aged_delivery,
    frames_aged_delivery,
    min_age_s,
    resense_batch,
    sensing_clock,
)
from v2x.sweep_plan import FEATURE_STAGE, Group, SweepPlan, codec_kwargs_for, sweep_arguments
from v2x.sweep_reuse import EncodeCache, share_source_coding
from v2x.sweep_rows import BatchOnHost, book_batch, group_rows, queue_host_copies
from v2x.sweep_scoring import GroupScoring, joined_in_batch_order


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
        elif self.item.data_age_s is not None:  # the frames' data is that old already
            frames_aged_delivery(self.item, self.delivery)
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


def setting_text(group: Group, data_id: Mapping) -> str:
    """Everything besides the condition and the seed that changes a cell's numbers, as
    canonical JSON (the results' ``setting`` column): the group's ``setting`` (code,
    checkpoints, config, codec and channel options, precisions; files its options name, such
    as a ``bler_table``, by their content: ``with_file_digests``) and the frames' identity."""
    data = {k: data_id[k] for k in ("source", "split", "num_frames", "hash")}
    return canonical_json(with_file_digests({**group.setting, "data": data}))


def setting_key(group: Group, data_id: Mapping) -> str:
    """The hash of ``setting_text`` (16 hex digits) that keys a cell's results."""
    return text_hash(setting_text(group, data_id), 16)


def needs_most_links(group: Group) -> bool:
    """Whether ``group``'s codec sizes its payload from the most collaborator links any frame
    batch of the sweep has (a rate-adaptive codec without its own ``max_channel_uses``)."""
    if group.stage != FEATURE_STAGE:
        return False
    kwargs = group.codec_kwargs or {}
    return "max_channel_uses" not in kwargs and "max_channel_uses" in sweep_arguments(group.codec)


def filled_max_channel_uses(group: Group, budget: Any, links: int) -> int:
    """The ``max_channel_uses`` filled in for a rate-adaptive codec (``needs_most_links``): an
    equal share among ``links`` collaborators of the airtime the deadline leaves after the
    processing latency and the group's ``added_delay_s`` (``Group.budget``), so that a payload
    that fills it still arrives by the deadline (at least 1 use)."""
    return max(1, int(group.budget(budget).channel_uses // max(links, 1)))


def batch_links(batches: Sequence[_Batch]) -> int:
    """The most collaborator links (in range, ``agent_mask`` past the ego) of any frame of
    ``batches``."""
    return max(int(item.batch.agent_mask[:, 1:].sum(1).max()) for item in batches)


@dataclass
class GroupPart:
    """A group's cells over consecutive frame batches of the sweep (``GroupRun.part``; all of
    them in one process, a shard of them on each device worker, ``v2x.sweep_workers``): what
    their results rows come from once every batch is in (``joined_rows``)."""

    #: the ``K`` cells' AP accumulators (sealed in a scoring process, or not), batches in order
    accumulators: list
    ledger: pa.Table
    num_frames: int
    eval_config: Any
    #: real values of one sent map (the compression ratio's denominator)
    feature_values: float
    bits_estimated: bool


def joined_rows(
    plan: SweepPlan,
    group: Group,
    snrs: Sequence[float],
    parts: Sequence[GroupPart],
    data_id: Mapping,
) -> tuple[list[dict], pa.Table]:
    """The results rows and ledger of ``group``'s cells at ``snrs`` from its ``parts`` (runs
    over consecutive frame batches, in batch order: their accumulators joined,
    ``joined_in_batch_order``, are the records one run over every batch gives)."""
    first = parts[0]
    accs = first.accumulators
    if len(parts) > 1:
        accs = joined_in_batch_order(first.eval_config, [p.accumulators for p in parts])
    tables = [p.ledger for p in parts if p.ledger.num_rows] or [first.ledger]
    ledger = pa.concat_tables(tables)
    conditions = [group.condition(s, plan.budget) for s in snrs]
    setting = setting_text(group, data_id)
    key = text_hash(setting, 16)
    cells = [cell_id(c, key, int(plan.config.seed)) for c in conditions]
    rows = group_rows(
        plan, group, snrs, accs, ledger, conditions, cells, (key, setting),
        sum(p.num_frames for p in parts), first.eval_config, first.feature_values, data_id,
        first.bits_estimated,
    )  # fmt: skip
    return rows, ledger


class GroupRun:
    """The cells of ``group`` at ``snrs``, one frame batch per ``step``; ``finish`` gives their
    results rows and ledger. Each feature-fusion cell gets the numbers of its own call with its
    own seed (``_cell_seed``; all cells of a frame batch share one pipeline call where the
    pipeline can, ``v2x.condition_streams``), so its numbers do not depend on the cells beside
    it (on CUDA up to float32 rounding of boxes and scores: cuDNN picks convolution algorithms
    by batch shape; counts, flags and the ledger exactly); ego-only, late and early fusion,
    whose detections do not depend on the SNR, run once per batch for all SNRs. Host work can
    leave this (the device's) thread: with ``scorer`` (one thread) each batch's scoring and
    ledger rows run there in batch order while the device goes on with the next batch (the
    matching itself in the scoring process where the host has one, ``v2x.sweep_scoring``).
    ``data_id`` may be a function that waits for it (``FrameStream.data_id``): the cells' ids
    hold the frames' hash, so the first booking waits until every frame is read.

    Args:
        batches: the sweep's frame batches (rate-adaptive codecs size their payload from the
            most links any batch has).
        model: the sweep's detector behind its feature cache; ``step`` sets its batch index.
    """

    def __init__(
        self,
        plan: SweepPlan,
        group: Group,
        snrs: Sequence[float],
        batches: Sequence[_Batch],
        model: EncodeCache,
        device: torch.device,
        data_id: Mapping | Callable[[], Mapping],
        scorer: Executor | None = None,
        most_links: int | None = None,
    ) -> None:
        cfg = plan.config
        self.plan, self.group, self.snrs, self.model, self.scorer = plan, group, snrs, model, scorer
        self.snr = torch.tensor(list(snrs), dtype=torch.float32)  # geometric mode: offsets in dB
        k = self.snr.shape[0]
        self.fusion = build_fusion(group.fusion, **group.fusion_kwargs)
        if group.stage == FEATURE_STAGE:
            kwargs = codec_kwargs_for(
                group.codec, group.codec_kwargs, model.config.feature_channels
            )
            if needs_most_links(group):
                # Rate-adaptive codecs fit their payload into an equal share of the airtime
                # the frame's deadline leaves after processing and the group's added delay.
                links = most_links if most_links is not None else batch_links(batches)
                kwargs["max_channel_uses"] = filled_max_channel_uses(group, plan.budget, links)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(cfg.seed))  # untrained weights: the same on every run
                codec = build_codec(group.codec, **kwargs)
            options = cfg.channel_options or {}
            channel = build_channel(group.channel, **group.channel_kwargs(options))
        else:
            codec = build_codec("identity")
            channel = build_channel("awgn")
        self.codec = codec
        self.pipe = CooperativePipeline(
            model,
            self.fusion.to(device),
            codec.to(device),
            channel.to(device),
            pose_noise_m=group.pose_noise_m,
            pose_noise_yaw_rad=group.pose_noise_yaw_rad,
            seed=_group_seed(cfg.seed, group, -1) % (2**31),
        ).eval()
        self.device = device
        self.shared_coding = share_source_coding(codec, device)
        self.snr_on_device = to_device_async(self.snr, device)
        self.budget = group.budget(plan.budget)  # the group's late policy and added delay
        self.clock = sensing_clock(plan)
        self.eval_config = _eval_config(plan, model)
        self.scoring = GroupScoring(self.eval_config, k)  # the cells' accumulators
        self.conditions = [group.condition(s, plan.budget) for s in snrs]
        self.identity = data_id if callable(data_id) else lambda: data_id
        self.condition_ids = [cell_id(c) for c in self.conditions]  # (each batch's seeds)
        self.ledgers: list[pa.Table | Future] = []
        self.num_frames = 0

    @functools.cached_property
    def _keyed(self) -> tuple[str, list[str]]:
        """The setting's key and the cells' ids (waits for the frames' hash)."""
        key = setting_key(self.group, self.identity())
        return key, [cell_id(c, key, int(self.plan.config.seed)) for c in self.conditions]

    def step(self, bi: int, item: _Batch, bar: Any) -> None:
        """Run the group's cells on frame batch number ``bi`` and book them (on the scorer
        thread when there is one)."""
        cfg, group, k = self.plan.config, self.group, self.snr.shape[0]
        self.model.batch_index = bi
        self.shared_coding.clear()  # holds the source coding of one frame batch's maps at a time
        item_snr = self.snr_on_device  # [K], or [K, B, A]: each link at its geometric SNR + offset
        if group.snr_mode == "geometric":
            item_snr = (item.network.snr_db[None] + self.snr.view(k, 1, 1).double()).float()
            item_snr = to_device_async(item_snr, self.device)
        deliver = _Scheduler(
            self.budget, item, self.plan, self.clock, compensates=self.fusion.compensates_latency
        )
        # Feature fusion: each cell in its own call with its own seed. Ego-only, late and early
        # fusion: the detections do not depend on the SNR (late and early payloads are charged
        # as ideal digital links, a function of the SNR alone), so one call with the group's
        # seed gives every cell what a call of its own would (pose noise draws from the
        # pipeline's generator once per call, whatever K is).
        joint = None if group.stage == FEATURE_STAGE else _group_seed(int(cfg.seed), group, bi)
        scored = evaluate_batch(
            self.pipe,
            item.batch,
            item_snr,
            item.gt,
            (),  # scored by book_batch
            seeds=[_cell_seed(int(cfg.seed), c, bi) for c in self.condition_ids],
            joint_seed=joint,
            same_for_all=group.stage == "ego",
            deliver=deliver,
            resense=functools.partial(
                resense_batch, self.clock, item, plan=self.plan, fusion=self.fusion
            ),
            score=False,  # book_batch scores it (on the scorer thread when there is one)
        )
        on_host = queue_host_copies(scored, item, deliver.delivery)
        book = functools.partial(self._book, on_host, item)
        self.ledgers.append(book() if self.scorer is None else self.scorer.submit(book))
        self.num_frames += item.batch.batch_size
        bar.update(item.batch.batch_size * k)

    def _book(self, on_host: BatchOnHost, item: _Batch) -> pa.Table:
        """``book_batch`` with the cells' ids."""
        return book_batch(on_host, item, self.scoring, self._keyed[1], self.group)

    def finish(self, pool: Executor | None = None) -> tuple[list[dict], pa.Table] | Future:
        """The group's results rows and ledger once every batch is booked; with ``pool``, a
        ``Future`` of them computed there (APs, bootstrap intervals), so that the device can
        go on with the next group."""
        return self._rows() if pool is None else pool.submit(self._rows)

    def part(self) -> GroupPart:
        """The group's cells over the batches stepped so far (waits for their booking)."""
        tables = [t.result() if isinstance(t, Future) else t for t in self.ledgers]
        return GroupPart(
            self.scoring.sealed_accumulators(),
            pa.concat_tables(tables) if tables else empty_ledger(),
            self.num_frames,
            self.eval_config,
            float(self.model.map_values),
            self.group.stage == FEATURE_STAGE and bool(self.codec.bits_estimated),
        )

    def _rows(self) -> tuple[list[dict], pa.Table]:
        return joined_rows(self.plan, self.group, self.snrs, [self.part()], self.identity())


__all__ = ["GroupPart", "GroupRun", "joined_rows", "setting_key", "setting_text"]
