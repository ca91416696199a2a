"""What a collaborator sensed, and when: data as old as its delivery made it.

The ego fuses at its own instant ``t`` (the frame's). Collaborator ``a``'s LiDAR scanned at
``t − phase_a`` (``SyntheticConfig.sensing_phase_max_s``: unsynchronised LiDARs, already in the
frame) and its payload took ``latency_a`` to arrive: the ledger's latency, processing (plus the
sweep's ``added_delay_s``) + waiting for its scheduled share + time on air (+ retransmissions
where a codec reports them). With ``asynchrony.enabled`` the ego fuses what ``a`` sensed at::

    t − phase_a − latency_a          (its age of information: phase_a + latency_a)

— its points cast at that instant from its pose of that instant, and that pose used to warp its
features (or boxes, or points) to the ego: the static world lines up exactly, a moving object
appears where it was, ``v · age`` behind. Ground truth stays at ``t``. A payload dropped at the
deadline is not fused (``late_policy``), as before. Ages up to 1 µs (``MIN_AGE_S``) count as 0
(the frame's own observation, bit for bit).

Convention (V2X-ViT's "time delay", in continuous time): ``a`` is sensed exactly ``phase_a +
latency_a`` before ``t``, whether or not its LiDAR (one scan every ``1 / fps``) scanned then. The
standard AoI of periodic scans, the age of the newest scan that has *arrived* by ``t``, is
``phase + ⌈(latency − phase) / period⌉ · period`` — what ``RecordedClock`` serves on real data —
e.g. phase 30 ms, latency 50 ms at 10 Hz: 130 ms there, 80 ms here. The two agree when the
latency is a whole number of periods (the README's +0 … +400 ms delays on an ideal link).

Approximation: a payload's size (hence its latency) is that of the collaborator's payload at
the frame instant; for fixed-size payloads (``identity``, ``deepjscc`` at a fixed ratio) it is
exact, for content-dependent ones (entropy-coded ``digital``, late boxes) it is the size of a
scan ``age`` seconds newer.

Collaborators' clocks (``clock_offset_std_s``) stamp their data: the ego's *estimate* of an age,
``t − timestamp``, is off by the clock offset (``estimated_age_s``), which is what a latency
compensation (``late_extrapolated`` fusion) works with.

Only the synthetic world can be sensed at any instant (``source=synthetic``, or a
``v2x-generate`` store of it). Real data (``source=v2xsim`` / ``dair_v2x``) is served by
``v2x.asynchrony_recorded.RecordedClock``: each collaborator's recorded scan sensed at or before
``t − latency``, with the age actually used (``t − t_scan``) in the ledger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from v2x.common import dataclass_from
from v2x.datasets.frame import CoopBatch, CoopFrame, collate_frames, slot_order
from v2x.datasets.synthetic_config import GENERATOR_VERSION, SyntheticConfig
from v2x.datasets.synthetic_render import FrameRenderer
from v2x.datasets.synthetic_world import SyntheticWorld
from v2x.pipeline import MotionHistory

#: Ages at or below this many seconds are 0: the frame's own observation is fused (1 µs: an
#: object at 30 m/s moves 30 µm; ideal links' nanosecond latencies re-sense nothing).
MIN_AGE_S = 1e-6


@dataclass
class AsynchronyConfig:
    """Sweep section ``asynchrony``.

    Attributes:
        enabled: the ego fuses what each collaborator sensed ``phase + latency`` before its
            own instant (points re-cast, poses of that instant; on real data the recorded scan
            sensed at or before ``t − latency``); ``false``: every payload's content is that of
            the frame (the latency only decides deadline drops).
        no_earlier_frame: real data only, a payload whose delay reaches before the
            collaborator's first recorded scan: ``drop`` (not fused, recorded in the ledger as
            not delivered) or ``error`` (``v2x.asynchrony_recorded``).
    """

    enabled: bool = False
    no_earlier_frame: str = "drop"

    @classmethod
    def from_dict(cls, data: Mapping | AsynchronyConfig | None) -> AsynchronyConfig:
        out = dataclass_from(cls, data, "asynchrony")
        if not isinstance(out.enabled, bool):
            raise ValueError(
                f"asynchrony: field 'enabled' must be true or false, got {out.enabled!r}"
            )
        if out.no_earlier_frame not in ("drop", "error"):
            raise ValueError(
                "asynchrony: field 'no_earlier_frame' must be drop or error, got "
                f"{out.no_earlier_frame!r}"
            )
        return out


def world_config(data: Mapping) -> SyntheticConfig:
    """The ``SyntheticConfig`` of a sweep's frame set (``data`` section): ``data.synthetic``
    for ``source=synthetic``, the store's manifest for ``source=store``."""
    source = data.get("source")
    if source == "synthetic":
        return SyntheticConfig.from_dict(dict(data.get("synthetic") or {}))
    if source == "store":
        from v2x.datasets.store import read_manifest

        manifest = read_manifest(Path(str(data["path"])))
        return SyntheticConfig.from_dict(dict(manifest.get("dataset") or {}))
    raise ValueError(
        f"asynchrony: field 'data.source' is {source!r}, but only the synthetic world "
        "(synthetic, or a store of it) can be sensed at any earlier instant; real data "
        "(v2xsim, dair_v2x) is served by v2x.asynchrony_recorded.RecordedClock"
    )


class Clock(Protocol):
    """What the sweep asks of a sensing clock (``SensingClock``: the synthetic world;
    ``v2x.asynchrony_recorded.RecordedClock``: a recorded dataset). ``frames`` are those
    collated into ``batch``; ``max_agents`` as ``collate_frames``'."""

    #: ages at or below this count as fresh (the frame's own observation)
    MIN_AGE_S: float

    def aged_frame(self, frame: CoopFrame, age_s: Sequence[float] | np.ndarray) -> CoopFrame:
        """``frame`` with each collaborator as sensed ``age_s [A]`` s before its own scan."""
        ...

    def age_delivery(
        self, frames: Sequence[CoopFrame], batch: CoopBatch, delivery: Any, max_agents: int | None
    ) -> torch.Tensor:
        """Write each delivered payload's age into ``delivery.aoi_s`` (``[K, B, A]`` s, NaN when
        not delivered; a ``v2x.scheduling.Delivery``) and return the ``[K, B, A]`` float64
        delays to re-sense the batch at."""
        ...

    def motion_history(
        self,
        frames: Sequence[CoopFrame],
        batch: CoopBatch,
        delay_s: torch.Tensor,
        max_agents: int | None = None,
    ) -> MotionHistory:
        """What a latency-compensating fusion extrapolates with, for ``batch`` re-sensed
        ``delay_s [B, A]`` s earlier."""
        ...


class SensingClock:
    """Re-senses collaborators of synthetic frames at earlier instants (a ``Clock``).

    Args:
        config: the world's configuration (that of the frames).

    Worlds are rebuilt from each frame's ``meta`` (seed, frame index) and kept, one per seed.
    """

    MIN_AGE_S = MIN_AGE_S

    def __init__(self, config: SyntheticConfig | Mapping) -> None:
        self.config = SyntheticConfig.from_dict(config)
        self.renderer = FrameRenderer(self.config)
        self._worlds: dict[int, SyntheticWorld] = {}

    def world(self, frame: CoopFrame) -> SyntheticWorld:
        """The frame's world, stepped at least to the frame (its history covers the frame)."""
        meta = frame.meta
        if meta.get("source") != "synthetic" or meta.get("generator_version") != GENERATOR_VERSION:
            raise ValueError(
                f"asynchrony: frame {frame.frame_id!r} is not from this synthetic world "
                f"(meta source {meta.get('source')!r}, generator_version "
                f"{meta.get('generator_version')!r}, expected {GENERATOR_VERSION}); real-data "
                "readers serving a collaborator's earlier frame are not implemented"
            )
        seed, index = int(meta["seed"]), int(meta["frame_index"])
        world = self._worlds.get(seed)
        if world is None:
            world = self._worlds[seed] = SyntheticWorld(self.config, seed)
        while world.step_index < index:
            world.step()
        boxes = world.objects(index / self.config.fps)[0]
        if not np.array_equal(boxes, frame.boxes):
            raise ValueError(
                f"asynchrony: frame {frame.frame_id!r} was not generated with this "
                "SyntheticConfig (its boxes differ from the world's); pass the frames' config"
            )
        return world

    def phases(self, frame: CoopFrame) -> np.ndarray:
        """``[A]`` s each agent of ``frame`` scanned before the frame instant (ego 0)."""
        return self.world(frame).agent_phase_s[: frame.num_agents].copy()

    def clock_offsets(self, frame: CoopFrame) -> np.ndarray:
        """``[A]`` s each agent's clock is off the ego's."""
        return self.world(frame).agent_clock_offset_s[: frame.num_agents].copy()

    def aged_frame(self, frame: CoopFrame, age_s: Sequence[float] | np.ndarray) -> CoopFrame:
        """``frame`` with agent ``a`` (not the ego) as it sensed ``age_s[a]`` seconds before
        its own scan (``age_s [A]``, the frame's agent order; ≤ ``MIN_AGE_S``: the frame's own).

        Ground truth, visibility and meta stay those of the frame (the ego's instant).
        """
        age = np.asarray(age_s, dtype=np.float64).reshape(-1)
        if age.shape[0] != frame.num_agents or not np.all(np.isfinite(age)) or np.any(age < 0):
            raise ValueError(
                f"asynchrony: 'age_s' must hold {frame.num_agents} finite ages >= 0 for frame "
                f"{frame.frame_id!r}, got {age.tolist()}"
            )
        late = [a for a in range(frame.num_agents) if a != frame.ego_index and age[a] > MIN_AGE_S]
        if not late:
            return frame
        world = self.world(frame)
        index = int(frame.meta["frame_index"])
        t = index / self.config.fps
        agents = list(frame.agents)
        for a in late:
            when = t - float(world.agent_phase_s[a]) - float(age[a])
            agents[a] = self.renderer.observe(world, index, [a], when)[0][0]
        return dataclasses.replace(frame, agents=agents)

    def age_delivery(
        self, frames: Sequence[CoopFrame], batch: CoopBatch, delivery: Any, max_agents: int | None
    ) -> torch.Tensor:
        """``Clock.age_delivery``: the age is the LiDAR phase + the latency (``sensing_age``);
        the batch is re-sensed at the latency alone (the phase is in the frame already)."""
        phase = frame_phases(self, frames, batch, max_agents)
        delivery.aoi_s = sensing_age(delivery.latency_s, delivery.delivered, phase)
        return torch.where(delivery.delivered, delivery.latency_s, 0.0).cpu()

    def motion_history(
        self,
        frames: Sequence[CoopFrame],
        batch: CoopBatch,
        delay_s: torch.Tensor,
        max_agents: int | None = None,
    ) -> MotionHistory:
        """``Clock.motion_history``: the module's ``motion_history`` on this world."""
        return motion_history(self, frames, batch, delay_s, max_agents)


def aged_batch(
    clock: Clock,
    frames: Sequence[CoopFrame],
    batch: CoopBatch,
    age_s: torch.Tensor,
    max_agents: int | None = None,
) -> CoopBatch:
    """``batch`` (collated from ``frames``) with each present collaborator re-sensed ``age_s``
    seconds before its scan.

    Args:
        age_s: ``[B, A]`` ages in batch slot order (``collate_frames``; NaN or slots that are
            masked in ``batch.agent_mask``: not re-sensed).

    Returns: a batch with the re-sensed points and poses and ``batch``'s masks, ground truth and
    visibility (the frame instant's); ``batch`` itself when nothing is re-sensed.
    """
    ages = torch.nan_to_num(age_s.detach().double().cpu(), nan=0.0)
    ages = torch.where(batch.agent_mask.cpu(), ages, torch.zeros_like(ages))
    ages[:, 0] = 0.0
    if not bool((ages > MIN_AGE_S).any()):
        return batch
    aged = []
    for b, frame in enumerate(frames):
        per_agent = np.zeros(frame.num_agents)
        for slot, agent in enumerate(slot_order(frame, max_agents)):
            per_agent[agent] = float(ages[b, slot])
        aged.append(clock.aged_frame(frame, per_agent))
    out = collate_frames(aged, max_agents=max_agents).to(batch.points.device)
    return dataclasses.replace(batch, points=out.points, point_mask=out.point_mask, poses=out.poses)


def _per_slot(
    frames: Sequence[CoopFrame],
    batch: CoopBatch,
    max_agents: int | None,
    values: Callable[[CoopFrame], np.ndarray],
) -> torch.Tensor:
    """``[B, A]`` float64: ``values(frame)[agent]`` in batch slot order (0 where padded)."""
    out = torch.zeros(batch.agent_mask.shape, dtype=torch.float64)
    for b, frame in enumerate(frames):
        per_agent = values(frame)
        for slot, agent in enumerate(slot_order(frame, max_agents)):
            out[b, slot] = float(per_agent[agent])
    return out


def frame_phases(
    clock: SensingClock,
    frames: Sequence[CoopFrame],
    batch: CoopBatch,
    max_agents: int | None = None,
) -> torch.Tensor:
    """``[B, A]`` float64 LiDAR phase of every batch slot (s; 0 for the ego and padding)."""
    return _per_slot(frames, batch, max_agents, clock.phases)


def sensing_age(
    latency_s: torch.Tensor, delivered: torch.Tensor, phase_s: torch.Tensor
) -> torch.Tensor:
    """``[K, B, A]`` age at fusion of what each delivered payload carries: ``phase + latency``
    (NaN where not delivered). Args: latency_s, delivered ``[K, B, A]``; phase_s ``[B, A]``."""
    phase = phase_s.to(latency_s.device, torch.float64).unsqueeze(0)
    age = latency_s.double() + phase
    return torch.where(delivered, age, torch.full_like(age, float("nan")))


def estimated_age(age_s: torch.Tensor, clock_offset_s: torch.Tensor) -> torch.Tensor:
    """The ego's estimate of each age from the collaborators' timestamps: ``t − stamp =
    age − clock_offset`` (same shapes, broadcast)."""
    return age_s - clock_offset_s.to(age_s)


def frame_clock_offsets(
    clock: SensingClock,
    frames: Sequence[CoopFrame],
    batch: CoopBatch,
    max_agents: int | None = None,
) -> torch.Tensor:
    """``[B, A]`` float64 clock offset of every batch slot (s; 0 for the ego and padding)."""
    return _per_slot(frames, batch, max_agents, clock.clock_offsets)


def motion_history(
    clock: SensingClock,
    frames: Sequence[CoopFrame],
    batch: CoopBatch,
    latency_s: torch.Tensor,
    max_agents: int | None = None,
) -> MotionHistory:
    """What a latency-compensating fusion gets: each collaborator's previous scan (one LiDAR
    period, ``1 / fps``, before the scan it sent, sensed ``latency_s [B, A]`` before its own
    scan) and the ego's estimate of the age of the data it fuses (``phase + latency − clock
    offset``: the ego's instant minus the collaborator's timestamp)."""
    period = 1.0 / clock.config.fps
    latency = torch.nan_to_num(latency_s.detach().double().cpu(), nan=0.0)
    present = batch.agent_mask.cpu().clone()
    present[:, 0] = False
    previous = aged_batch(
        clock, frames, batch, torch.where(present, latency + period, 0.0), max_agents
    )
    phase = frame_phases(clock, frames, batch, max_agents)
    offset = frame_clock_offsets(clock, frames, batch, max_agents)
    age = torch.where(present, estimated_age(phase + latency, offset), 0.0)
    return MotionHistory(previous=previous, age_s=age, period_s=period)
