"""``K`` channel conditions of one run: what they output and cost (``RunOutput``,
``LinkCost``), tiling and concatenation, and the one test of which are identical.

A run evaluates ``K`` conditions (SNRs) of one setting at once; where conditions come out
bitwise equal they are computed once and shared. That happens at three stages, all through
``distinct_conditions``: decoded maps before fusion (``v2x.pipeline``), detections before
scoring (``v2x.evaluation.condition_groups``) and the re-runs of conditions that lost the same
late payloads (``v2x.execution``). ``repeat_detections`` tiles one condition's detections for
``K``. This module imports only ``v2x.perception``'s detection type.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from v2x.channels.budget import shannon_capacity
from v2x.common import to_device_async
from v2x.perception.detector import Detections
from v2x.semcom.base import packets_for_bits

#: The fields of a codec's ``Cost`` that a ``LinkCost`` keeps per link.
COST_FIELDS = ("source_bits", "coded_bits", "channel_uses", "packets")

#: What the receiver learnt of each transmission (``Reception``) that the ledger keeps.
RECEPTION_FIELDS = (
    "packets_erased",
    "packets_crc_failed",
    "retransmissions",
    "retransmission_rounds",
    "feedback_s",
    "mcs",
)


@dataclass
class LinkCost:
    """Per-link accounting of one run: what was sent and what happened to it on the air.

    Every tensor is ``[K, B, A]`` (slot 0, the ego, and absent agents are zero / False). This is
    the one place the receiver's knowledge of each payload reaches the ledger
    (``v2x.ledger.ledger_table``).

    Attributes:
        source_bits, coded_bits, channel_uses, packets: float64, the codec's ``Cost``.
        sent: bool, the agent exists and transmitted.
        snr_db: float32, the SNR the link was simulated at.
        packets_erased: float64, packets of which the channel erased a channel use.
        packets_crc_failed: float64, packets not erased whose data failed a CRC.
        retransmissions: float64, packets sent again by HARQ (digital codec) or ARQ (erasure
            channel); their channel uses are in ``channel_uses`` (``v2x.semcom.harq``).
        cells_sent: float64, units of the payload: BEV cells of the map the receiver rebuilds
            (feature fusion; only the selected cells with Where2comm-style selection), cells of a
            semantic map or detected objects (semantic payloads), boxes (late fusion) or points
            (early fusion).
        cells_used: float64, those of ``cells_sent`` that arrived and were handed to fusion
            (the decoded-cell mask before warping; ``cells_sent`` over ideal links).
        retransmission_rounds: float64, rounds after the first transmission in which HARQ or
            ARQ resent something (``None`` at construction: zeros).
        feedback_s: float64, seconds the payload waited for ACK/NACK feedback before those
            rounds (``v2x.semcom.harq``); the budget adds it to the latency (``None``: zeros).
        mcs: float64, the MCS index the digital chain sent the link with; NaN where no MCS
            applies (other codecs, ideal links, nothing sent; ``None``: NaN).
    """

    source_bits: torch.Tensor
    coded_bits: torch.Tensor
    channel_uses: torch.Tensor
    packets: torch.Tensor
    sent: torch.Tensor
    snr_db: torch.Tensor
    packets_erased: torch.Tensor
    packets_crc_failed: torch.Tensor
    retransmissions: torch.Tensor
    cells_sent: torch.Tensor
    cells_used: torch.Tensor
    retransmission_rounds: torch.Tensor | None = None
    feedback_s: torch.Tensor | None = None
    mcs: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("retransmission_rounds", "feedback_s"):
            if getattr(self, name) is None:
                setattr(self, name, torch.zeros_like(self.channel_uses, dtype=torch.float64))
        if self.mcs is None:
            self.mcs = torch.full_like(self.channel_uses, math.nan, dtype=torch.float64)

    @classmethod
    def zeros(
        cls, k: int, b: int, a: int, snr_db: torch.Tensor, device: torch.device | str
    ) -> LinkCost:
        """Nothing sent on any of the ``[K, B, A]`` links, simulated at ``snr_db`` (``[K]`` or
        ``[K, B, A]``)."""
        zeros = torch.zeros(k, b, a, dtype=torch.float64, device=device)
        skip = ("sent", "snr_db", "mcs")  # mcs: NaN from __post_init__ (no MCS on any link yet)
        counts = {f.name: zeros.clone() for f in fields(cls) if f.name not in skip}
        return cls(
            **counts,
            sent=torch.zeros(k, b, a, dtype=torch.bool, device=device),
            snr_db=link_snr(snr_db, b, a).clone(),
        )

    def charge_ideal(
        self,
        bits: torch.Tensor,
        snr_db: torch.Tensor,
        agent_mask: torch.Tensor,
        message_bits: int,
    ) -> None:
        """Charge ``bits [B, A]`` sent by the collaborators present in ``agent_mask [B, A]``
        over ideal digital links at each condition's SNR (``snr_db [K]`` or ``[K, B, A]``), in
        messages (boxes or points) of ``message_bits`` each: error-free at the Shannon rate,
        so every message arrives and is fused."""
        k = snr_db.shape[0]
        present = agent_mask.clone()
        present[:, 0] = False
        bits = (bits * present).unsqueeze(0).expand(k, *bits.shape)
        self.source_bits[:] = bits
        self.coded_bits[:] = bits
        snr = link_snr(snr_db, *bits.shape[1:]).double()
        self.channel_uses[:] = ideal_digital_uses(bits, snr) * present
        self.packets[:] = packets_for_bits(bits) * present
        self.sent[:] = present
        self.cells_sent[:] = bits / message_bits
        self.cells_used[:] = bits / message_bits

    def repeat_conditions(self, k: int, snr_db: torch.Tensor) -> LinkCost:
        """This one-condition cost (``[1, B, A]``) tiled for ``K`` conditions at ``snr_db``
        (``[K]`` or ``[K, B, A]``); for runs whose outcome does not depend on the SNR."""
        tiled = {
            f.name: getattr(self, f.name).expand(k, *getattr(self, f.name).shape[1:]).clone()
            for f in fields(self)
            if f.name != "snr_db"
        }
        snr = link_snr(snr_db.to(self.snr_db.device), *self.snr_db.shape[1:])
        return LinkCost(**tiled, snr_db=snr.to(self.snr_db.dtype).clone())


def ideal_digital_uses(bits: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """Channel uses of an error-free digital link at the Shannon rate log2(1 + snr)."""
    capacity = shannon_capacity(snr_db.double())
    return torch.ceil(bits / capacity.clamp_min(1e-9))


@dataclass
class RunOutput:
    """Detections of ``K·B`` (condition-major) frames and the cost of every link.

    ``shared``: the ``B`` frames' detections when every condition has exactly these
    (``tiled_run``: ``detections`` is their tiling), so that scoring can take ``B`` rows
    instead of ``K·B``; ``None`` otherwise (a new ``RunOutput`` built from another's
    detections is ``None`` unless it says so)."""

    detections: Detections
    cost: LinkCost
    num_conditions: int
    shared: Detections | None = None


def tiled_run(det: Detections, cost: LinkCost, k: int) -> RunOutput:
    """The ``RunOutput`` of ``K`` conditions that all have the detections ``det`` (``B``
    frames): ``repeat_detections`` of them, with ``det`` kept as ``shared``."""
    return RunOutput(repeat_detections(det, k), cost, k, shared=det)


def condition_snr(snr_db: torch.Tensor | Sequence[float], agent_mask: torch.Tensor) -> torch.Tensor:
    """The conditions' SNRs (dB) as a run takes them, float32 on ``agent_mask``'s device:
    ``[K]``, or ``[K, B, A]`` (one per link; ``agent_mask [B, A]``) with the ego's and absent
    agents' slots set to 0; refused unless finite on every sent link."""
    snr_db = to_device_async(torch.as_tensor(snr_db, dtype=torch.float32), agent_mask.device)
    if snr_db.dim() != 3:
        return snr_db.reshape(-1)
    if tuple(snr_db.shape[1:]) != tuple(agent_mask.shape):
        raise ValueError(
            f"pipeline: per-link 'snr_db' must be [K, B, A] = [K, "
            f"{', '.join(map(str, agent_mask.shape))}], got {tuple(snr_db.shape)}"
        )
    unused = ~agent_mask.clone()
    unused[:, 0] = True
    if not bool(torch.isfinite(snr_db[:, ~unused]).all()):
        raise ValueError("pipeline: per-link 'snr_db' must be finite on every sent link")
    return torch.where(unused, 0.0, snr_db)


def link_snr(snr_db: torch.Tensor, b: int, a: int) -> torch.Tensor:
    """``[K, B, A]`` float32 SNR per link from ``[K]`` (one per condition) or ``[K, B, A]``."""
    if snr_db.dim() == 3:
        return snr_db.float()
    k = snr_db.shape[0]
    return snr_db.float().view(k, 1, 1).expand(k, b, a)


def concat_runs(outs: Sequence[RunOutput]) -> RunOutput:
    """``RunOutput`` of several runs (each ``K_i`` conditions) as one of ``sum K_i`` conditions,
    condition-major like a single run's (detections padded to the widest run)."""
    if len(outs) == 1:
        return outs[0]
    width = max(o.detections.boxes.shape[1] for o in outs)

    def pad(t: torch.Tensor, value: float | bool) -> torch.Tensor:
        if t.shape[1] == width:
            return t
        shape = (t.shape[0], width - t.shape[1], *t.shape[2:])
        return torch.cat([t, torch.full(shape, value, dtype=t.dtype, device=t.device)], 1)

    det = Detections(
        torch.cat([pad(o.detections.boxes, 0.0) for o in outs]),
        torch.cat([pad(o.detections.scores, 0.0) for o in outs]),
        torch.cat([pad(o.detections.labels, 0) for o in outs]),
        torch.cat([pad(o.detections.valid, False) for o in outs]),
    )
    cost = LinkCost(
        *(torch.cat([getattr(o.cost, f.name) for o in outs]) for f in dataclasses.fields(LinkCost))
    )
    return RunOutput(det, cost, sum(o.num_conditions for o in outs))


def _memory_order(t: torch.Tensor, keep_first: bool = False) -> torch.Tensor:
    """``t`` with its dims permuted into the order of its strides, largest first (the first dim
    kept first with ``keep_first``): a view whose flattening is a view too for any dense layout
    (e.g. channels-last maps), so nothing below copies a whole map to read it."""
    rest = range(1 if keep_first else 0, t.dim())
    order = sorted(rest, key=lambda d: (-t.stride(d), d))
    return t.permute(*([0] if keep_first else []), *order)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """``t`` reinterpreted as integers of its width (bitwise comparisons: -0.0 != 0.0; compared
    in ``t``'s memory order, the same for every condition of one tensor)."""
    t = _memory_order(t).contiguous()
    if t.dtype == torch.bool:
        return t.view(torch.uint8)
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.view(width)


def _same_elements(x: torch.Tensor, y: torch.Tensor) -> bool:
    """``x`` and ``y`` view the very same memory (storage, offset, shape, strides and dtype;
    e.g. two conditions of one map expanded over them): bitwise equal without a read.
    (``v2x.common.tensor_identity``'s key without the version counter, which inference tensors
    do not have.)"""
    return (
        x.dtype == y.dtype
        and x.device == y.device
        and x.shape == y.shape
        and x.stride() == y.stride()
        and x.storage_offset() == y.storage_offset()
        and x.untyped_storage().data_ptr() == y.untyped_storage().data_ptr()
    )


def _sample(rows: torch.Tensor, size: int = 1 << 16) -> torch.Tensor:
    """About ``size`` evenly strided columns of ``rows [K, N]`` (all of them when N is small)."""
    step = max(1, rows.shape[1] // size)
    return rows[:, ::step]


def distinct_conditions(*tensors: torch.Tensor | None) -> tuple[list[int], torch.Tensor]:
    """Group the ``K`` conditions (first dim of every tensor) whose slices are bitwise equal.

    A float32 sum over a strided sample of each condition's values picks candidates (one host
    sync, a small fraction of one pass); candidates are then confirmed bit for bit (without a
    read where both view the same memory), so two conditions share a group only if every
    tensor is identical in them. ``None`` tensors are skipped; a condition whose sampled sum is
    not finite is a group of its own.

    Returns:
        ``reps``: the first condition of each group, ascending; ``inverse [K]`` int64 (CPU):
        the group of each condition.
    """
    present = [t for t in tensors if t is not None]
    k = present[0].shape[0]
    keys = torch.stack(
        [_sample(_memory_order(t, keep_first=True).reshape(k, -1)).float().sum(1) for t in present],
        1,
    ).tolist()
    reps: list[int] = []
    inverse = [0] * k
    for i, key in enumerate(keys):
        group = -1
        if all(math.isfinite(v) for v in key):
            for gi, r in enumerate(reps):
                if keys[r] == key and all(_equal_bits(t[i], t[r]) for t in present):
                    group = gi
                    break
        if group < 0:
            group = len(reps)
            reps.append(i)
        inverse[i] = group
    return reps, torch.tensor(inverse, dtype=torch.int64)


def _equal_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    return _same_elements(x, y) or torch.equal(_bits(x), _bits(y))


def condition_members(inverse: torch.Tensor) -> list[list[int]]:
    """``inverse [K]`` (from ``distinct_conditions``) as the members of each group, ascending,
    groups ordered by their first member."""
    groups: dict[int, list[int]] = {}
    for ci, g in enumerate(inverse.tolist()):
        groups.setdefault(g, []).append(ci)
    return list(groups.values())


def repeat_detections(det: Detections, k: int) -> Detections:
    """The ``B`` frames of ``det`` tiled for ``K`` conditions (``K·B`` rows, condition-major)."""
    return Detections(
        *(
            t.repeat(k, *([1] * (t.dim() - 1)))
            for t in (det.boxes, det.scores, det.labels, det.valid)
        )
    )


__all__ = [
    "COST_FIELDS",
    "LinkCost",
    "RunOutput",
    "concat_runs",
    "condition_members",
    "condition_snr",
    "distinct_conditions",
    "ideal_digital_uses",
    "link_snr",
    "repeat_detections",
    "tiled_run",
]
