"""Asynchrony on recorded data: the collaborator scan a real dataset holds for a payload's delay.

The synthetic world can be cast at any instant (``v2x.asynchrony.SensingClock``); a recording
cannot. Here the ego still fuses at its own instant ``t`` (the ego's scan timestamp) and a
collaborator's payload still takes the ledger's latency ``L`` (processing, + the grid's
``added_delay_s``, + waiting for its scheduled share + airtime + retransmissions) to arrive. What
the ego can hold of that collaborator at ``t`` is its newest scan sensed at or before ``t − L``
(a later one had not arrived): the reader's ``observation_before`` (V2X-Sim 2.0: the channel's
key-frame ``sample_data`` of the scene, 5 Hz; DAIR-V2X-C: the side's frame of the same
``batch_id`` by ``pointcloud_timestamp``, 10 Hz). That scan's points, warped to the ego with the
collaborator's pose **at its own sensing time** (V2X-Sim: that ``sample_data``'s ``ego_pose``;
DAIR: that frame's calibration files, with the pair's system-error offset, as the official
``VICAsyncDataset`` keeps ``vic_frame.offset``); ground truth stays the ego's frame's. The age
the ego fuses is the sensing-time difference ``t − t_scan`` (≥ ``L``), written as the ledger's
``aoi_s`` (so the results' ``mean_aoi_s`` is the age actually used), and the ego's estimate of
it for latency compensation (the datasets' sides share one clock: no clock offset).

Relation to the official DAIR-V2X asynchronous split (``VICAsyncDataset``, ``--k``): it pairs
each vehicle frame with the infrastructure frame ``k`` frame ids before the paired one in the
same sequence (``batch_start_id``) and records ``delta_t`` from the two ``pointcloud_timestamp``;
pairs without such a frame are left out. Here the delay is the link's, and the frame is chosen
by time: on a regular 10 Hz sequence whose paired infrastructure scan precedes the vehicle's by
less than 100 ms, a delay of ``k × 100 ms`` selects the same frame as ``k`` (tested). A pair is
never left out of the evaluation: see the policy below.

Zero delay: payload delays at or below ``MIN_AGE_S`` (1 µs) keep the frame's own scan (the
dataset's pairing), so a zero-delay configuration reproduces today's detections bit for bit; its
age is then ``t − t_own`` (DAIR-V2X-C pairs a vehicle scan with the nearest infrastructure
scan, which may be up to tens of ms *after* it: a negative age, recorded as such).

No scan early enough (the delay reaches before the recording's first scan of that
collaborator): ``no_earlier_frame`` (``AsynchronyConfig``) is ``"drop"`` — the ego has received
nothing from that collaborator yet, so the payload is not fused: ``delivered`` false and
``aoi_s`` NaN in its ledger row (an on-time payload with no packet lost and not delivered), and
``(frame id, agent id, delay)`` kept in ``RecordedClock.dropped`` and logged — or ``"error"``: a
``ValueError`` naming the frame, the agent, the delay and the first scan's time.

Design: the latency is known only after the link (the scheduler's ``Delivery``), so the sweep
asks the clock per condition (``age_delivery``), then re-runs a condition whose payloads aged on
the re-read collaborator scans (``aged_frame`` through ``v2x.asynchrony.aged_batch``), as for the
synthetic world. Scans are re-read from the dataset each time (no cache of point clouds).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from v2x.asynchrony import MIN_AGE_S
from v2x.datasets.frame import AgentObservation, CoopBatch, CoopFrame, collate_frames, slot_order
from v2x.datasets.history import TIME_TOL_S, latest_at_or_before
from v2x.pipeline import MotionHistory
from v2x.sweep_config import READERS

log = logging.getLogger(__name__)

#: ``data.source`` values whose frames come from a recording (``v2x.loading.open_reader``).
RECORDED_SOURCES: tuple[str, ...] = tuple(READERS)
#: What happens to a payload whose delay reaches before the collaborator's first scan.
NO_EARLIER_FRAME_POLICIES: tuple[str, ...] = ("drop", "error")


class RecordedReader(Protocol):
    """What a real-data reader offers for asynchrony (``V2XSimDataset``, ``DAIRV2XCDataset``,
    ``OPV2VDataset``)."""

    def index_of(self, frame: CoopFrame) -> int: ...

    def sensing_times(self, index: int, agent: int) -> list[float]: ...

    def observation_before(
        self, index: int, agent: int, until_s: float
    ) -> AgentObservation | None: ...


def stamp_phases(frame: CoopFrame, known_only: bool = False) -> np.ndarray:
    """``[A]`` s each agent's scan of ``frame`` was sensed before the ego's, from the recorded
    timestamps (``t_ego − t_a``; negative when the dataset paired a later scan; ego 0).
    ``known_only``: 0 for an agent whose or the ego's timestamp is missing (read as 0 where
    asynchrony does not need them)."""
    t = frame.ego.timestamp
    out = np.array([t - a.timestamp for a in frame.agents], dtype=np.float64)
    if known_only:
        out[[t == 0 or a.timestamp == 0 for a in frame.agents]] = 0.0
    return out


class RecordedClock:
    """Serves each collaborator's scan sensed at or before the ego's instant minus its delay.

    Args:
        reader: the dataset the frames were read from.
        no_earlier_frame: ``"drop"`` or ``"error"`` (see the module docstring).

    Attributes:
        dropped: ``(frame id, agent id, delay s)`` of every payload dropped for want of a scan
            early enough (policy ``"drop"``), in the order met.
    """

    MIN_AGE_S = MIN_AGE_S

    def __init__(self, reader: RecordedReader, no_earlier_frame: str = "drop") -> None:
        if no_earlier_frame not in NO_EARLIER_FRAME_POLICIES:
            raise ValueError(
                f"asynchrony: field 'no_earlier_frame' must be one of "
                f"{NO_EARLIER_FRAME_POLICIES}, got {no_earlier_frame!r}"
            )
        self.reader = reader
        self.no_earlier_frame = no_earlier_frame
        self.dropped: list[tuple[str, str, float]] = []
        self._warned: set[tuple[str, str]] = set()
        self._index: dict[str, int] = {}
        self._times: dict[tuple[int, int], list[float]] = {}

    # ----------------------------------------------------------------------------- times

    def index(self, frame: CoopFrame) -> int:
        """The frame's index in the reader."""
        if frame.frame_id not in self._index:
            self._index[frame.frame_id] = self.reader.index_of(frame)
        return self._index[frame.frame_id]

    def _sensing_times(self, frame: CoopFrame, agent: int) -> list[float]:
        key = (self.index(frame), agent)
        if key not in self._times:
            self._times[key] = self.reader.sensing_times(*key)
        return self._times[key]

    def phases(self, frame: CoopFrame) -> np.ndarray:
        """``[A]`` s each agent's own scan was sensed before the ego's (``t_ego − t_a``; negative
        when the dataset paired a later scan; ego 0)."""
        return stamp_phases(frame)

    def clock_offsets(self, frame: CoopFrame) -> np.ndarray:
        """``[A]`` zeros: a dataset's timestamps are the ego's estimate of sensing times."""
        return np.zeros(frame.num_agents, dtype=np.float64)

    def served_times(self, frame: CoopFrame, delay_s: Sequence[float] | np.ndarray) -> np.ndarray:
        """``[A]`` sensing time (s) of the scan served for each agent at ``delay_s [A]`` (s;
        ≤ ``MIN_AGE_S``: its own scan; NaN: no scan at or before ``t_ego − delay``)."""
        delay = _check_delays(frame, delay_s)
        t = frame.ego.timestamp
        out = np.array([a.timestamp for a in frame.agents], dtype=np.float64)
        for a in range(frame.num_agents):
            if a == frame.ego_index or delay[a] <= MIN_AGE_S:
                continue
            times = self._sensing_times(frame, a)
            i = latest_at_or_before(times, t - float(delay[a]))
            out[a] = math.nan if i is None else times[i]
        return out

    def served_ages(self, frame: CoopFrame, delay_s: Sequence[float] | np.ndarray) -> np.ndarray:
        """``[A]`` age at the ego's instant of the scan served at ``delay_s`` (s: ``t_ego −
        t_scan``; NaN where there is none; ego 0)."""
        return frame.ego.timestamp - self.served_times(frame, delay_s)

    # ----------------------------------------------------------------------------- frames

    def aged_frame(self, frame: CoopFrame, delay_s: Sequence[float] | np.ndarray) -> CoopFrame:
        """``frame`` with each collaborator ``a`` whose delay ``delay_s[a]`` exceeds
        ``MIN_AGE_S`` replaced by its scan sensed at or before ``t_ego − delay_s[a]`` (points,
        pose and timestamp of that scan). Ground truth, visibility and meta stay the frame's.
        A collaborator without such a scan follows ``no_earlier_frame``: ``"error"`` raises,
        ``"drop"`` keeps the frame's own scan (``age_delivery`` has already kept it from
        fusion)."""
        delay = _check_delays(frame, delay_s)
        late = [a for a in range(frame.num_agents) if a != frame.ego_index and delay[a] > MIN_AGE_S]
        if not late:
            return frame
        agents = list(frame.agents)
        index = self.index(frame)
        for a in late:
            seen = self.reader.observation_before(index, a, frame.ego.timestamp - float(delay[a]))
            if seen is None:
                self._none_early_enough(frame, a, float(delay[a]))
                continue
            agents[a] = dataclasses.replace(
                seen, agent_id=frame.agents[a].agent_id, kind=frame.agents[a].kind
            )
        return dataclasses.replace(frame, agents=agents)

    def _none_early_enough(self, frame: CoopFrame, agent: int, delay_s: float) -> None:
        """Apply ``no_earlier_frame`` to a payload with no scan early enough."""
        agent_id = frame.agents[agent].agent_id
        if self.no_earlier_frame == "error":
            times = self._sensing_times(frame, agent)
            first = f"{times[0]:.6f} s" if times else "none"
            raise ValueError(
                f"asynchrony: frame {frame.frame_id!r}, collaborator {agent_id!r}: no scan sensed "
                f"at or before the ego's instant {frame.ego.timestamp:.6f} s minus its delay "
                f"{delay_s:.6f} s (its first scan: {first}); set asynchrony.no_earlier_frame=drop "
                "to leave such payloads out of fusion"
            )
        self.dropped.append((frame.frame_id, agent_id, delay_s))
        if (frame.frame_id, agent_id) not in self._warned:  # once per frame and collaborator
            self._warned.add((frame.frame_id, agent_id))
            log.warning(
                "asynchrony: frame %s, collaborator %s: no scan at or before %.6f s - %.6f s; "
                "payload not fused (no_earlier_frame=drop)",
                frame.frame_id,
                agent_id,
                frame.ego.timestamp,
                delay_s,
            )

    # ----------------------------------------------------------------------------- sweep hooks

    def age_delivery(
        self,
        frames: Sequence[CoopFrame],
        batch: CoopBatch,
        delivery: Any,
        max_agents: int | None = None,
    ) -> torch.Tensor:
        """Write into ``delivery`` (a ``v2x.scheduling.Delivery``, tensors ``[K, B, A]``) the age
        of the scan each delivered payload carries (``aoi_s``: ``t_ego − t_scan``; NaN where not
        delivered) and clear ``delivered`` where no scan is early enough (policy ``"drop"``).

        Returns: ``[K, B, A]`` float64 (CPU) delays to re-read the batch at (the latency where
        delivered, else 0).
        """
        delivered = delivery.delivered.cpu().clone()
        latency = torch.where(delivered, delivery.latency_s.double().cpu(), 0.0)
        aoi = torch.full(latency.shape, math.nan, dtype=torch.float64)
        for b, frame in enumerate(frames):
            slots = slot_order(frame, max_agents)
            for k in range(latency.shape[0]):
                delay = np.zeros(frame.num_agents)
                for slot, agent in enumerate(slots):
                    if slot > 0 and bool(delivered[k, b, slot]):
                        delay[agent] = float(latency[k, b, slot])
                ages = self.served_ages(frame, delay)
                for slot, agent in enumerate(slots):
                    if slot == 0 or not bool(delivered[k, b, slot]):
                        continue
                    if math.isnan(ages[agent]):
                        self._none_early_enough(frame, agent, float(delay[agent]))
                        delivered[k, b, slot] = False
                        latency[k, b, slot] = 0.0
                    else:
                        aoi[k, b, slot] = ages[agent]
        device = delivery.delivered.device
        delivery.delivered = delivered.to(device)
        delivery.aoi_s = aoi.to(device)
        return latency

    def motion_history(
        self,
        frames: Sequence[CoopFrame],
        batch: CoopBatch,
        delay_s: torch.Tensor,
        max_agents: int | None = None,
    ) -> MotionHistory:
        """What a latency-compensating fusion gets: each collaborator's scan before the one
        served at ``delay_s [B, A]`` (the previous scan of its sequence; masked out where there
        is none), the ego's estimate of each served scan's age (``t_ego − t_scan``) and the
        time between the two, per slot (``[B, A]`` s: 0.2 in V2X-Sim 2.0, about 0.1 in
        DAIR-V2X-C, more where the recording skipped a scan; 1 where there is no history)."""
        delay = torch.nan_to_num(delay_s.detach().double().cpu(), nan=0.0)
        present = batch.agent_mask.cpu().clone()
        present[:, 0] = False
        age = torch.zeros(present.shape, dtype=torch.float64)
        mask = batch.agent_mask.cpu().clone()
        previous = []
        period = torch.ones(present.shape, dtype=torch.float64)  # no history: nothing moves
        for b, frame in enumerate(frames):
            slots = slot_order(frame, max_agents)
            per_agent = np.zeros(frame.num_agents)
            for slot, agent in enumerate(slots):
                if bool(present[b, slot]):
                    per_agent[agent] = float(delay[b, slot])
            served = self.served_times(frame, per_agent)
            before = np.zeros(frame.num_agents)  # delays from t_ego of the previous scans
            for slot, agent in enumerate(slots):
                if not bool(present[b, slot]) or math.isnan(served[agent]):
                    continue
                age[b, slot] = frame.ego.timestamp - served[agent]
                times = self._sensing_times(frame, agent)
                i = latest_at_or_before(times, served[agent] - 2 * TIME_TOL_S)
                if i is None:
                    mask[b, slot] = False
                    continue
                before[agent] = frame.ego.timestamp - times[i]
                period[b, slot] = served[agent] - times[i]
            previous.append(self.aged_frame(frame, before))
        out = collate_frames(previous, max_agents=max_agents).to(batch.points.device)
        prev = dataclasses.replace(
            batch,
            points=out.points,
            point_mask=out.point_mask,
            poses=out.poses,
            agent_mask=mask.to(batch.agent_mask.device),
        )
        return MotionHistory(previous=prev, age_s=age, period_s=period)


def _check_delays(frame: CoopFrame, delay_s: Sequence[float] | np.ndarray) -> np.ndarray:
    delay = np.asarray(delay_s, dtype=np.float64).reshape(-1)
    if delay.shape[0] != frame.num_agents or not np.all(np.isfinite(delay)) or np.any(delay < 0):
        raise ValueError(
            f"asynchrony: 'delay_s' must hold {frame.num_agents} finite delays >= 0 (s) for "
            f"frame {frame.frame_id!r}, got {delay.tolist()}"
        )
    return delay


_READERS: dict[str, RecordedReader] = {}


def recorded_clock(data: Mapping, no_earlier_frame: str = "drop") -> RecordedClock:
    """A fresh ``RecordedClock`` of a sweep's ``data`` section (``source`` in
    ``RECORDED_SOURCES``), on the same reader ``v2x.loading.load_frames`` reads (opened once per
    process and dataset: its tables are indexed once, not per group)."""
    from v2x.loading import open_reader

    key = json.dumps(
        [data["source"], str(data.get("path")), data.get("reader") or {}],
        sort_keys=True,
        default=str,
    )
    if key not in _READERS:
        _READERS[key] = open_reader(data)
    return RecordedClock(_READERS[key], no_earlier_frame)


__all__ = [
    "NO_EARLIER_FRAME_POLICIES",
    "RECORDED_SOURCES",
    "RecordedClock",
    "RecordedReader",
    "recorded_clock",
    "stamp_phases",
]
