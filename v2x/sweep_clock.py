"""The sweep's side of asynchrony (``asynchrony.enabled``, ``v2x.asynchrony``): the clock of the
plan's frames, each delivered payload's age, and a frame batch re-sensed at those ages (with the
motion history a latency-compensating fusion extrapolates with).
"""

from __future__ import annotations

from typing import Any

import torch

from v2x.datasets.frame import CoopBatch
from v2x.perception.fusion import FeatureFusion
from v2x.sweep_batches import _Batch
from v2x.sweep_plan import SweepPlan


def sensing_clock(plan: SweepPlan) -> Any:
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


def min_age_s(clock: Any) -> float:
    """Ages at or below this count as fresh (``v2x.asynchrony.MIN_AGE_S``)."""
    return float(clock.MIN_AGE_S) if clock is not None else 0.0


def aged_delivery(clock: Any, item: _Batch, delivery: Any, plan: SweepPlan) -> torch.Tensor:
    """Each delivered payload's age (``[K, B, A]`` s: LiDAR phase + latency, NaN when not
    delivered), written into ``delivery.aoi_s`` (the ledger's age of information). A clock
    with its own ``age_delivery`` (real data: the age of the recorded scan served) does it."""
    from v2x.asynchrony import frame_phases, sensing_age

    own = getattr(clock, "age_delivery", None)
    if own is not None:
        return own(item.frames, item.batch, delivery, plan.data.get("max_agents"))
    phase = frame_phases(clock, item.frames, item.batch, plan.data.get("max_agents"))
    delivery.aoi_s = sensing_age(delivery.latency_s, delivery.delivered, phase)
    # what the re-sensing waits on: the latency alone (the phase is in the frame already)
    return torch.where(delivery.delivered, delivery.latency_s, 0.0).cpu()


def resense_batch(
    clock: Any,
    item: _Batch,
    batch: CoopBatch,
    ages: torch.Tensor,
    plan: SweepPlan,
    fusion: FeatureFusion,
) -> tuple[CoopBatch, Any]:
    """``batch`` re-sensed ``ages [B, A]`` s earlier, and for a latency-compensating fusion the
    motion history it extrapolates with (``v2x.pipeline.MotionHistory``; else ``None``)."""
    from v2x.asynchrony import aged_batch, motion_history

    max_agents = plan.data.get("max_agents")
    aged = aged_batch(clock, item.frames, batch, ages, max_agents)
    if not fusion.compensates_latency:
        return aged, None
    own = getattr(clock, "motion_history", None)  # real data: the previous recorded scan
    if own is not None:
        return aged, own(item.frames, batch, ages, max_agents)
    return aged, motion_history(clock, item.frames, batch, ages, max_agents)
