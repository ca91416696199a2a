"""The sweep's side of asynchrony (``asynchrony.enabled``, ``v2x.asynchrony``): the clock of the
plan's frames, each delivered payload's age, and a frame batch re-sensed at those ages (with the
motion history a latency-compensating fusion extrapolates with).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from v2x.datasets.frame import CoopBatch
from v2x.perception.fusion_base import FeatureFusion
from v2x.sweep_plan import SweepPlan

if TYPE_CHECKING:
    from v2x.asynchrony import Clock
    from v2x.datasets.frame import CoopFrame
    from v2x.pipeline import MotionHistory
    from v2x.scheduling import Delivery
    from v2x.sweep_batches import _Batch


def sensing_clock(plan: SweepPlan) -> Clock | None:
    """When ``asynchrony.enabled``, the clock of the plan's frames: a
    ``v2x.asynchrony.SensingClock`` of the synthetic world, or for real data a
    ``v2x.asynchrony_recorded.RecordedClock`` on the dataset's reader. One clock per plan, so
    a sweep's groups share it (they run one after another, or in lockstep, on one thread): the
    worlds are built and stepped once per sweep, not once per group. Sharing changes no number:
    a world answers any instant up to the one it was stepped to from its full history, and
    re-sensed scans draw their noise from (seed, frame, agent), not from a running state."""
    if plan.asynchrony is None or not plan.asynchrony.enabled:
        return None
    held = _CLOCKS.get(id(plan))
    if held is not None and held[0]() is plan:
        return held[1]
    from v2x.asynchrony import SensingClock, world_config
    from v2x.asynchrony_recorded import RECORDED_SOURCES, recorded_clock

    if plan.data["source"] in RECORDED_SOURCES:
        clock = recorded_clock(plan.data, plan.asynchrony.no_earlier_frame)
    else:
        clock = SensingClock(world_config(plan.data))
    key = id(plan)
    _CLOCKS[key] = (weakref.ref(plan, lambda _, key=key: _CLOCKS.pop(key, None)), clock)
    return clock


#: ``id(plan) -> (a weak reference to the plan, its clock)``: dropped with the plan.
_CLOCKS: dict[int, tuple[weakref.ref, Any]] = {}


def frame_data_ages(
    plan: SweepPlan,
) -> Callable[[Sequence[CoopFrame], CoopBatch], torch.Tensor] | None:
    """With asynchrony disabled, ``(frames, batch) -> [B, A]`` float64 s by which each slot's
    data in the frames is already older than the frame instant (the world does not move with
    the latency, but the data is that old): the synthetic LiDARs' phases
    (``data.synthetic.sensing_phase_max_s``), or on recorded data the ego's scan time minus the
    collaborator's (the pair the dataset matched, ``stamp_phases``; 0 where a timestamp is
    missing). Computed once per frame batch (``v2x.sweep_batches``). ``None`` with asynchrony
    enabled (the clock ages the data) or with synthetic LiDARs in phase (nothing is older)."""
    if plan.asynchrony is not None and plan.asynchrony.enabled:
        return None
    from v2x.asynchrony import SensingClock, _per_slot, world_config
    from v2x.asynchrony_recorded import RECORDED_SOURCES, stamp_phases

    if plan.data["source"] in RECORDED_SOURCES:  # (a missing timestamp: no age known)
        phases = functools.partial(stamp_phases, known_only=True)
    else:
        world = world_config(plan.data)
        if world.sensing_phase_max_s == 0:
            return None
        phases = SensingClock(world).phases
    max_agents = plan.data.get("max_agents")
    return lambda frames, batch: _per_slot(frames, batch, max_agents, phases)


def frames_aged_delivery(item: _Batch, delivery: Delivery) -> None:
    """Write the ledger's ``delivery.aoi_s`` without a clock: each delivered payload's latency
    plus the age its data already has in the frames (``item.data_age_s``, ``frame_data_ages``);
    NaN where not delivered."""
    from v2x.asynchrony import sensing_age

    delivery.aoi_s = sensing_age(delivery.latency_s, delivery.delivered, item.data_age_s)


def min_age_s(clock: Clock | None) -> float:
    """Ages at or below this count as fresh (``v2x.asynchrony.MIN_AGE_S``)."""
    return float(clock.MIN_AGE_S) if clock is not None else 0.0


def aged_delivery(clock: Clock, item: _Batch, delivery: Delivery, plan: SweepPlan) -> torch.Tensor:
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
