"""The per-frame bandwidth budget and who gets how much of it.

Every frame the ego's collaborators share one channel of ``bandwidth_hz`` for ``deadline_s``
seconds: a budget of ``bandwidth_hz · deadline_s`` complex channel uses (one use per Hz per
second). A **scheduler** splits it into shares (fractions of the bandwidth, FDMA): collaborator
``i`` with share ``f_i`` and a payload of ``u_i`` channel uses is on air for
``u_i / (f_i · bandwidth_hz)`` seconds, so its latency is::

    latency_s = processing_latency_s + u_i / (f_i · bandwidth_hz) + feedback_i

(``u_i`` includes the channel uses of every HARQ/ARQ retransmission round; ``feedback_i`` is the
time those rounds waited for ACK/NACK feedback, ``v2x.semcom.harq``: 0 without retransmissions or
with instantaneous feedback).

A payload whose latency exceeds the deadline is late (``meets_deadline``: a latency that equals
the deadline in exact arithmetic is on time, whatever the float rounding of the shares): with ``late_policy="drop"`` it is lost
(its packets count as lost and the ego fuses without it); with ``"stale"`` it is fused anyway,
and its age of information (AoI, the time from sensing to fusion) records how old it was. The
AoI of a delivered payload is its latency; a dropped payload has no AoI (NaN).

Schedulers (registry ``SCHEDULERS``; ``fn(ctx: ScheduleContext) -> share [K, B, A]``):

* ``equal``: every collaborator with channel uses to send gets the same share.
* ``importance``: shares proportional to ``(1 + novelty)^alpha · capacity^beta`` — novelty is
  how many objects a collaborator sees that the ego does not (from the frame's visibility
  counts), capacity ``log2(1 + snr)`` its link quality (Where2comm / R-ACP-style priority).

Shapes: ``K`` conditions, ``B`` frames, ``A`` agent slots (ego at 0, never scheduled).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from v2x.channels.budget import shannon_capacity
from v2x.channels.radio import DEFAULT_RADIO, check_radio_value
from v2x.common import Registry, dataclass_from

LATE_POLICIES = ("drop", "stale")

#: Relative slack of the deadline test: float rounding of ``u / (f · bandwidth_hz)`` (a share of
#: 1/3 is inexact) put a payload of exactly its share of the budget 1 ulp past the deadline (3
#: links of 200 000 uses at 20 MHz: 0.030000000000000002 s > 0.03 s). 1e-12 of 100 ms is 0.1 ps.
DEADLINE_RTOL = 1e-12


def meets_deadline(latency_s: torch.Tensor | float, deadline_s: float) -> torch.Tensor | bool:
    """Whether a latency (s; tensor or float) is at or below the deadline (s), up to
    ``DEADLINE_RTOL`` of it."""
    return latency_s <= deadline_s * (1.0 + DEADLINE_RTOL)


@dataclass
class BudgetConfig:
    """Hydra group ``budget``.

    Attributes:
        bandwidth_hz: the shared channel's bandwidth.
        deadline_s: latency deadline per frame (the budget's time window).
        scheduler: name in ``SCHEDULERS``.
        late_policy: ``"drop"`` or ``"stale"`` for payloads that miss the deadline.
        processing_latency_s: fixed encode/decode/MAC latency added to every payload.
        alpha, beta: exponents of the ``importance`` scheduler (novelty, capacity).
    """

    bandwidth_hz: float = DEFAULT_RADIO.bandwidth_hz
    deadline_s: float = 0.1
    scheduler: str = "equal"
    late_policy: str = "drop"
    processing_latency_s: float = 0.0
    alpha: float = 1.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        check_radio_value("budget", "bandwidth_hz", self.bandwidth_hz, positive=True)
        check_radio_value("budget", "deadline_s", self.deadline_s, positive=True)
        if self.late_policy not in LATE_POLICIES:
            raise ValueError(
                f"budget: field 'late_policy' is {self.late_policy!r}; valid choices: "
                f"{', '.join(LATE_POLICIES)}"
            )
        if check_radio_value("budget", "processing_latency_s", self.processing_latency_s) < 0:
            raise ValueError(
                f"budget: field 'processing_latency_s' is {self.processing_latency_s!r}; "
                "expected a finite number >= 0"
            )
        if self.scheduler not in SCHEDULERS.names():
            raise ValueError(
                f"budget: field 'scheduler' is {self.scheduler!r}; valid choices: "
                f"{', '.join(SCHEDULERS.names())}"
            )
        for name in ("alpha", "beta"):  # capacity 0 to a negative power would share inf / inf
            check_radio_value("budget", name, getattr(self, name), least=0.0)

    @property
    def channel_uses(self) -> float:
        """Channel uses one frame's payloads can put on air and still meet the deadline:
        ``bandwidth_hz · (deadline_s − processing_latency_s)`` (0 when processing alone takes
        the deadline)."""
        return self.bandwidth_hz * max(self.deadline_s - self.processing_latency_s, 0.0)

    @classmethod
    def from_dict(cls, data: Mapping | BudgetConfig | None) -> BudgetConfig:
        return dataclass_from(cls, data, "budget")


@dataclass
class ScheduleContext:
    """What a scheduler may look at.

    Attributes:
        connected: ``[K, B, A]`` bool, collaborators with channel uses to send this frame (ego
            False).
        snr_db: ``[K, B, A]`` float link SNR.
        novelty: ``[B, A]`` float objects the agent sees that the ego does not (0 if unknown).
        config: the budget config.
    """

    connected: torch.Tensor
    snr_db: torch.Tensor
    novelty: torch.Tensor
    config: BudgetConfig


SCHEDULERS: Registry[Callable[[ScheduleContext], torch.Tensor]] = Registry("scheduler")


def _normalise(weights: torch.Tensor, connected: torch.Tensor) -> torch.Tensor:
    weights = torch.where(connected, weights.clamp_min(0.0), torch.zeros_like(weights))
    total = weights.sum(dim=-1, keepdim=True)
    # All-zero weights among connected agents fall back to an equal split.
    equal = connected.double() / connected.sum(dim=-1, keepdim=True).clamp_min(1)
    return torch.where(total > 0, weights / total.clamp_min(1e-300), equal)


@SCHEDULERS.register("equal")
def equal_share(ctx: ScheduleContext) -> torch.Tensor:
    """Every connected collaborator gets ``1 / n_connected`` of the bandwidth."""
    return _normalise(ctx.connected.double(), ctx.connected)


@SCHEDULERS.register("importance")
def importance_share(ctx: ScheduleContext) -> torch.Tensor:
    """Shares ∝ ``(1 + novelty)^alpha · log2(1 + snr)^beta`` over connected collaborators."""
    cfg = ctx.config
    novelty = ctx.novelty.double().clamp_min(0.0).unsqueeze(0).expand_as(ctx.snr_db)
    snr = torch.nan_to_num(ctx.snr_db.double(), nan=-300.0)
    capacity = shannon_capacity(snr)
    weights = (1.0 + novelty).pow(cfg.alpha) * capacity.pow(cfg.beta)
    return _normalise(weights, ctx.connected)


def novelty_from_visibility(visibility: torch.Tensor, box_mask: torch.Tensor) -> torch.Tensor:
    """``[B, A]`` objects agent ``a`` has points on while the ego (slot 0) has none.

    Args: visibility ``[B, A, M]`` int (−1 unknown), box_mask ``[B, M]`` bool.
    """
    known = (visibility >= 0) & box_mask[:, None, :]
    seen = (visibility > 0) & known
    ego_blind = (visibility[:, :1] <= 0) & known[:, :1]
    novelty = (seen & ego_blind).sum(dim=-1).double()
    novelty[:, 0] = 0
    return novelty


@dataclass
class Delivery:
    """Outcome of one frame's budget for every link, tensors ``[K, B, A]``.

    Attributes:
        share: fraction of the bandwidth (float64).
        latency_s: processing + time on air + feedback waits (float64; inf when the share is
            0, NaN when unsent).
        on_time: bool, sent and latency ≤ deadline.
        delivered: bool, the ego fuses it (on time, or late with ``late_policy="stale"``).
        packets_lost: float64 packets of dropped payloads.
        aoi_s: float64 age of the information at fusion (NaN when not delivered).
    """

    share: torch.Tensor
    latency_s: torch.Tensor
    on_time: torch.Tensor
    delivered: torch.Tensor
    packets_lost: torch.Tensor
    aoi_s: torch.Tensor


def schedule(
    config: BudgetConfig,
    sent: torch.Tensor,
    channel_uses: torch.Tensor,
    packets: torch.Tensor,
    snr_db: torch.Tensor,
    novelty: torch.Tensor | None = None,
    feedback_s: torch.Tensor | None = None,
) -> Delivery:
    """Share the budget among the links that send and decide what arrives in time.

    Args:
        config: the budget.
        sent: ``[K, B, A]`` bool, links that transmit (ego slot False); those of them with
            ``channel_uses`` 0 get no share of the band.
        channel_uses, packets: ``[K, B, A]`` payload sizes (``LinkCost``).
        snr_db: ``[K, B, A]`` link SNR (for schedulers that weigh link quality).
        novelty: ``[B, A]`` objects unseen by the ego (see ``novelty_from_visibility``).
        feedback_s: ``[K, B, A]`` seconds each payload waited for HARQ/ARQ feedback
            (``LinkCost.feedback_s``), added to its latency; ``None``: 0.
    """
    sent = sent.clone()
    sent[..., 0] = False
    if novelty is None:
        novelty = torch.zeros(sent.shape[1:], dtype=torch.float64, device=sent.device)
    uses = channel_uses.double()
    # Only links that put channel uses on the air share the band: a payload of none (a
    # collaborator with no box to send, a digital payload whose header does not fit) takes no
    # share from the others (it is on time after the processing latency alone).
    on_band = sent & (uses > 0)
    ctx = ScheduleContext(on_band, snr_db, novelty.to(sent.device), config)
    share = SCHEDULERS.get(config.scheduler)(ctx).double()
    share = torch.where(on_band, share, torch.zeros_like(share))
    rate = share * config.bandwidth_hz
    with torch.no_grad():
        on_air = torch.where(
            rate > 0, uses / rate.clamp_min(1e-300), torch.full_like(uses, float("inf"))
        )
        on_air = torch.where(uses > 0, on_air, torch.zeros_like(on_air))
    if feedback_s is not None:  # waits for ACK/NACK before retransmission rounds
        on_air = on_air + feedback_s.to(on_air)
    latency = torch.where(
        sent, config.processing_latency_s + on_air, torch.full_like(uses, float("nan"))
    )
    on_time = sent & meets_deadline(latency, config.deadline_s)
    delivered = on_time | (sent & (config.late_policy == "stale") & torch.isfinite(latency))
    lost = torch.where(sent & ~delivered, packets.double(), torch.zeros_like(uses))
    aoi = torch.where(delivered, latency, torch.full_like(uses, float("nan")))
    return Delivery(share, latency, on_time, delivered, lost, aoi)
