"""The sweep's side of asynchrony (``asynchrony.enabled``, ``v2x.asynchrony``): the clock of the
plan's frames, each delivered payload's age, and a frame batch re-sensed at those ages (with the
motion history a latency-compensating fusion extrapolates with).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from v2x.datasets.frame import CoopBatch
from v2x.perception.fusion_base import FeatureFusion
from v2x.sweep_batches import _Batch
from v2x.sweep_plan import SweepPlan

if TYPE_CHECKING:
    from v2x.asynchrony import Clock
    from v2x.pipeline import MotionHistory
    from v2x.scheduling import Delivery


def sensing_clock(plan: SweepPlan) -> Clock | None:
    """When ``asynchrony.enabled``, the clock of the plan's frames: a
    ``v2x.asynchrony.SensingClock`` of the synthetic world, or for real data a
    ``v2x.asynchrony_recorded.RecordedClock`` on the dataset's reader."""
    if plan.asynchrony is None or not plan.asynchrony.enabled:
        return None
    from v2x.asynchrony import SensingClock, world_config
    from v2x.asynchrony_recorded import RECORDED_SOURCES, recorded_clock

    if plan.data["source"] in RECORDED_SOURCES:
        return recorded_clock(plan.data, plan.asynchrony.no_earlier_frame)
    return SensingClock(world_config(plan.data))


def min_age_s(clock: Clock | None) -> float:
    """Ages at or below this count as fresh (``v2x.asynchrony.MIN_AGE_S``)."""
    return float(clock.MIN_AGE_S) if clock is not None else 0.0


def aged_delivery(
    clock: Clock, item: _Batch, delivery: Delivery, plan: SweepPlan
) -> torch.Tensor:
    """Each delivered payload's age (``[K, B, A]`` s, NaN when not delivered), written into
    ``delivery.aoi_s`` (the ledger's age of information) by the clock (``Clock.age_delivery``:
    the synthetic world's LiDAR phase + latency, or the age of the recorded scan served); returns
    the delays to re-sense the batch at."""
    return clock.age_delivery(item.frames, item.batch, delivery, plan.data.get("max_agents"))


def resense_batch(
    clock: Clock,
    item: _Batch,
    batch: CoopBatch,
    ages: torch.Tensor,
    plan: SweepPlan,
    fusion: FeatureFusion,
) -> tuple[CoopBatch, MotionHistory | None]:
    """``batch`` re-sensed ``ages [B, A]`` s earlier, and for a latency-compensating fusion the
    motion history it extrapolates with (``Clock.motion_history``; else ``None``)."""
    from v2x.asynchrony import aged_batch

    max_agents = plan.data.get("max_agents")
    aged = aged_batch(clock, item.frames, batch, ages, max_agents)
    if not fusion.compensates_latency:
        return aged, None
    return aged, clock.motion_history(item.frames, batch, ages, max_agents)
