"""The ledger: one row per (condition, frame, collaborator → ego link) with everything it cost
and what happened to it on the air.

Every bandwidth axis of every plot is read from these rows, and so are the results' loss and
delivery columns (``summarize``). A row's outcome is what the receiver knew: packets the
channel erased (``state.erased``), packets whose data failed the digital chain's CRC, cells the
decoder marked as arrived (``meta["delivered"]``), payloads the deadline dropped — carried from
the codec (``v2x.semcom.base.reception``) through ``v2x.conditions.LinkCost`` and the budget's ``Delivery``.
Columns (``LEDGER_SCHEMA``):

==================  ========  ===========================================================
column              type      meaning
==================  ========  ===========================================================
cell_id             string    the condition (see ``v2x.results``)
condition_id        int32     index of the SNR condition inside its run (0..K-1)
frame_id            string    the frame
tx_agent, rx_agent  string    transmitter (collaborator) and receiver (ego) ids
tx_kind, rx_kind    string    agent kinds; kind_pair is their canonical pair
link_model          string    path-loss model of the pair (network config)
distance_m          float64   3D antenna distance
los                 bool      line of sight (network's LOS mode)
link_snr_db         float64   SNR from the geometry's link budget
snr_db              float64   SNR the transmission was simulated at
channel, codec      string    channel and codec names
fusion              string    fusion strategy
bandwidth_ratio     float64   nominal codec bandwidth ratio (NaN if the codec has none)
connected           bool      within communication range
sent                bool      something was transmitted (channel uses > 0; a digital payload
                              of which not even the header fits sends nothing)
source_bits         float64   information bits
coded_bits          float64   bits after channel coding
channel_uses        float64   complex channel symbols (retransmission rounds included)
packets_sent        float64   packets (``v2x.channels.packets.PACKET_FORMAT``)
packets_erased      float64   packets of which the channel erased a channel use
packets_crc_failed  float64   packets not erased whose data failed a CRC (digital chain)
packets_lost        float64   packets the receiver could not use: erased + CRC-failed, or all
                              packets of a payload dropped at the deadline
retransmissions     float64   packets sent again by HARQ (digital codec) or ARQ (erasure
                              channel); their uses are in channel_uses and latency_s
retransmission_     float64   rounds after the first transmission in which HARQ/ARQ resent
rounds                        something (NaN in files from before the column)
feedback_s          float64   of latency_s, the time those rounds waited for ACK/NACK feedback
                              (rounds × the codec's / channel's feedback delay)
mcs                 float64   38.214 table-1 MCS index the digital chain sent the link with
                              (after link adaptation); NaN for other codecs, ideal links,
                              payloads not sent, and in files from before the column
cells_sent          float64   BEV cells of the collaborator's map the ego rebuilds (the
                              selected ones under Where2comm-style selection); boxes for late
                              and points for early fusion
cells_used          float64   of those, cells that arrived and were fused (0 when the payload
                              was dropped at the deadline)
share               float64   fraction of the frame's bandwidth the scheduler granted
latency_s           float64   processing (+ the grid's added delay) + time on air (every
                              round) + feedback_s (NaN when nothing was sent)
aoi_s               float64   age of information at fusion (NaN when not delivered): the
                              latency plus the age the frame's data already has (the
                              LiDAR's phase; on recorded data the ego's scan time minus
                              the collaborator's), with asynchrony on or off
delivered           bool      the ego fused (some of) it: sent, on time (or stale) and at
                              least one cell arrived (a header alone, or a payload whose
                              every packet was lost, delivered nothing)
tx_x_m … rx_y_m     float64   antenna positions (world), for maps
==================  ========  ===========================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch

from v2x.conditions import COST_FIELDS, RECEPTION_FIELDS
from v2x.network import NetworkBatch
from v2x.scheduling import Delivery

if TYPE_CHECKING:  # the pipeline pulls in the detector; the ledger only reads its tensors
    from v2x.pipeline import LinkCost

LEDGER_SCHEMA = pa.schema(
    [
        ("cell_id", pa.string()),
        ("condition_id", pa.int32()),
        ("frame_id", pa.string()),
        ("tx_agent", pa.string()),
        ("rx_agent", pa.string()),
        ("tx_kind", pa.string()),
        ("rx_kind", pa.string()),
        ("kind_pair", pa.string()),
        ("link_model", pa.string()),
        ("distance_m", pa.float64()),
        ("los", pa.bool_()),
        ("link_snr_db", pa.float64()),
        ("snr_db", pa.float64()),
        ("channel", pa.string()),
        ("codec", pa.string()),
        ("fusion", pa.string()),
        ("bandwidth_ratio", pa.float64()),
        ("connected", pa.bool_()),
        ("sent", pa.bool_()),
        ("source_bits", pa.float64()),
        ("coded_bits", pa.float64()),
        ("channel_uses", pa.float64()),
        ("packets_sent", pa.float64()),
        ("packets_erased", pa.float64()),
        ("packets_crc_failed", pa.float64()),
        ("packets_lost", pa.float64()),
        ("retransmissions", pa.float64()),
        ("retransmission_rounds", pa.float64()),
        ("feedback_s", pa.float64()),
        ("mcs", pa.float64()),
        ("cells_sent", pa.float64()),
        ("cells_used", pa.float64()),
        ("share", pa.float64()),
        ("latency_s", pa.float64()),
        ("aoi_s", pa.float64()),
        ("delivered", pa.bool_()),
        ("tx_x_m", pa.float64()),
        ("tx_y_m", pa.float64()),
        ("rx_x_m", pa.float64()),
        ("rx_y_m", pa.float64()),
    ]
)


# The per-link fields of a ``LinkCost`` and of a ``Delivery`` a ledger row reads (``link_values``).
LINK_FIELDS = ("snr_db", "sent", *COST_FIELDS, *RECEPTION_FIELDS, "cells_sent", "cells_used")
DELIVERY_FIELDS = ("packets_lost", "share", "latency_s", "aoi_s", "delivered")


def link_values(cost: LinkCost, delivery: Delivery) -> torch.Tensor:
    """Every per-link value a ledger row reads, ``[F, K, B, A]`` float64 on ``cost``'s device
    (``LINK_FIELDS`` then ``DELIVERY_FIELDS``), so that they reach the host in one transfer."""
    device = cost.channel_uses.device
    return torch.stack(
        [getattr(cost, n).detach().double() for n in LINK_FIELDS]
        + [getattr(delivery, n).detach().to(device).double() for n in DELIVERY_FIELDS]
    )


def ledger_table(
    cell_ids: Sequence[str],
    cost: LinkCost,
    delivery: Delivery,
    network: NetworkBatch,
    agent_mask: torch.Tensor,
    channel: str,
    codec: str,
    fusion: str,
    bandwidth_ratio: float,
) -> pa.Table:
    """Rows of one run: ``K`` conditions × ``B`` frames × present collaborators.

    Args:
        cell_ids: ``K`` cell ids (one per SNR condition).
        cost: the run's ``LinkCost`` (tensors ``[K, B, A]``): what was sent and what the
            receiver knew of it (packets erased / failed CRC, cells sent / used).
        delivery: the budget's ``Delivery`` (``[K, B, A]``).
        network: the frames' ``NetworkBatch`` (``[B, A]``).
        agent_mask: ``[B, A]`` bool, agents present in the batch (before range filtering).
        channel, codec, fusion, bandwidth_ratio: the run's setting.
    """
    values = link_values(cost, delivery).cpu()
    return ledger_rows(
        cell_ids, values, network, agent_mask, channel, codec, fusion, bandwidth_ratio
    )


def ledger_rows(
    cell_ids: Sequence[str],
    values: torch.Tensor,
    network: NetworkBatch,
    agent_mask: torch.Tensor,
    channel: str,
    codec: str,
    fusion: str,
    bandwidth_ratio: float,
) -> pa.Table:
    """``ledger_table`` from the run's per-link values already on the host: ``values [F, K, B,
    A]``, ``link_values(cost, delivery)`` copied there (e.g. by the thread that ran the batch,
    ``v2x.sweep_rows.queue_host_copies``); the other arguments as ``ledger_table``'s."""
    k, b, a = values.shape[1:]
    if len(cell_ids) != k:
        raise ValueError(f"ledger: 'cell_ids' must have {k} entries, got {len(cell_ids)}")
    mask = agent_mask.cpu().numpy().astype(bool)  # (a copy)
    mask[:, 0] = False
    # the rows: every condition's present collaborators, condition-major (C order)
    kk, bb, aa = np.nonzero(np.broadcast_to(mask, (k, b, a)))

    # every row's values at once (numpy indexing: no index tensors per column)
    picked = values.numpy()[:, kk, bb, aa]
    row = dict(zip(LINK_FIELDS + tuple("d_" + n for n in DELIVERY_FIELDS), picked, strict=True))

    nets = network.frames

    # Per-agent values are read once per frame's agent, per-frame ones once per frame; every
    # row takes them by index (``K`` conditions share an agent), strings in Arrow (``take``):
    # no Python object per ledger row. ``at``: each row's agent among every frame's agents
    # joined in order (each per-agent field has ``num_agents`` entries).
    starts = np.cumsum([0] + [net.num_agents for net in nets[:-1]], dtype=np.int64)
    at = starts[bb] + aa

    def slot(name: str) -> pa.Array:  # a string per agent, for every row
        return pa.array([v for net in nets for v in getattr(net, name)], pa.string()).take(at)

    def slot_numbers(name: str, dtype: type) -> np.ndarray:
        values = [np.asarray(getattr(net, name), dtype=dtype) for net in nets]
        return np.concatenate(values or [np.zeros(0, dtype)])[at]

    def per_frame(values: list) -> pa.Array:  # a string per frame, for every row
        return pa.array(values, pa.string()).take(bb)

    def ego(name: str) -> pa.Array:
        return per_frame([getattr(net, name)[0] for net in nets])

    def constant(value: str, n: int) -> pa.Array:
        return pa.array([value], pa.string()).take(np.zeros(n, dtype=np.int64))

    # What happened on the air counts for payloads that reached the receiver in time; a payload
    # dropped at the deadline loses all its packets and none of its cells is fused.
    # A link sent something only if it used the channel (a digital payload of which not even
    # the header fits sends nothing), and delivered only if the ego fused some of its cells: a
    # header alone, or a payload whose every code block failed its CRC, delivered nothing.
    on_time = row["d_delivered"].astype(bool)
    on_air = row["sent"].astype(bool) & (row["channel_uses"] > 0)
    air_lost = row["packets_erased"] + row["packets_crc_failed"]
    packets_lost = np.where(on_time, air_lost, row["d_packets_lost"])
    cells_sent = row["cells_sent"]
    cells_used = np.where(on_time, row["cells_used"], 0.0)
    delivered = on_time & on_air & (cells_used > 0)

    positions = [np.asarray(net.position_m) for net in nets]
    where = np.zeros((b, a, 3), dtype=np.result_type(*positions) if positions else np.float64)
    for i, p in enumerate(positions):
        where[i, : len(p)] = p
    pos_tx, pos_rx = where[bb, aa].reshape(-1, 3), where[bb, 0].reshape(-1, 3)
    n = len(kk)
    columns = {
        "cell_id": pa.array(list(cell_ids), pa.string()).take(kk),
        "condition_id": kk.astype(np.int32),
        "frame_id": per_frame([net.frame_id for net in nets]),
        "tx_agent": slot("agent_ids"),
        "rx_agent": ego("agent_ids"),
        "tx_kind": slot("kinds"),
        "rx_kind": ego("kinds"),
        "kind_pair": slot("kind_pairs"),
        "link_model": slot("link_models"),
        "distance_m": slot_numbers("distance_m", np.float64),
        "los": slot_numbers("los", bool),
        "link_snr_db": slot_numbers("snr_db", np.float64),
        "snr_db": row["snr_db"].astype(np.float64),
        "channel": constant(channel, n),
        "codec": constant(codec, n),
        "fusion": constant(fusion, n),
        "bandwidth_ratio": np.full(n, float(bandwidth_ratio)),
        "connected": network.in_range.cpu().numpy()[bb, aa],
        "sent": on_air,
        "source_bits": row["source_bits"],
        "coded_bits": row["coded_bits"],
        "channel_uses": row["channel_uses"],
        "packets_sent": row["packets"],
        "packets_erased": row["packets_erased"],
        "packets_crc_failed": row["packets_crc_failed"],
        "packets_lost": packets_lost,
        "retransmissions": row["retransmissions"],
        "retransmission_rounds": row["retransmission_rounds"],
        "feedback_s": row["feedback_s"],
        "mcs": np.where(on_air, row["mcs"], np.nan),
        "cells_sent": cells_sent,
        "cells_used": cells_used,
        "share": row["d_share"],
        "latency_s": np.where(on_air, row["d_latency_s"], np.nan),
        "aoi_s": np.where(delivered, row["d_aoi_s"], np.nan),
        "delivered": delivered,
        "tx_x_m": pos_tx[:, 0],
        "tx_y_m": pos_tx[:, 1],
        "rx_x_m": pos_rx[:, 0],
        "rx_y_m": pos_rx[:, 1],
    }
    return pa.table(columns, schema=LEDGER_SCHEMA)


def empty_ledger() -> pa.Table:
    return LEDGER_SCHEMA.empty_table()


LEDGER_SUMS = (
    "mean_source_bits_per_frame",
    "mean_coded_bits_per_frame",
    "mean_channel_uses_per_frame",
    "mean_packets_per_frame",
    "packet_loss_rate",
    "delivered_fraction",
    "mean_latency_s",
    "p95_latency_s",
    "mean_aoi_s",
    "mean_links_per_frame",
)


def summarize(table: pa.Table, num_frames: int) -> dict[str, float]:
    """Per-frame-set sums of one cell's rows (only links that sent count).

    Returns the ``LEDGER_SUMS`` keys: bits, channel uses and packets per frame (totals over the
    links of a frame, averaged over ``num_frames``), ``packet_loss_rate`` (Σ ``packets_lost`` /
    Σ ``packets_sent``: erased, CRC-failed or dropped at the deadline), ``delivered_fraction``
    (Σ ``cells_used`` / Σ ``cells_sent``: the share of the sent cells the ego fused; NaN when no
    cell was sent), latency mean and 95th percentile, mean AoI, links per frame.
    """
    return summarize_columns(_sum_columns(table), num_frames)


_SUM_INPUTS = (
    "source_bits",
    "coded_bits",
    "channel_uses",
    "packets_sent",
    "packets_lost",
    "cells_sent",
    "cells_used",
    "latency_s",
    "aoi_s",
)


def _sum_columns(table: pa.Table) -> dict[str, np.ndarray]:
    out = {
        name: np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
        for name in _SUM_INPUTS
    }
    for name in ("sent", "delivered"):
        out[name] = np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=bool)
    return out


def summarize_cells(table: pa.Table, cell_ids: Sequence[str], num_frames: int) -> list[dict]:
    """``summarize`` of each cell's rows of ``table``, reading the columns once.

    Returns one dict per entry of ``cell_ids``, equal to ``summarize(rows of that cell)``.
    """
    columns = _sum_columns(table)
    cells = np.asarray(table.column("cell_id").to_numpy(zero_copy_only=False), dtype=object)
    out = []
    for cid in cell_ids:
        rows = cells == cid
        out.append(summarize_columns({k: v[rows] for k, v in columns.items()}, num_frames))
    return out


def summarize_columns(columns: dict[str, np.ndarray], num_frames: int) -> dict[str, float]:
    """``summarize`` on ledger columns given as arrays (``_SUM_INPUTS``, ``sent``, ``delivered``)."""
    sent = columns["sent"]
    frames = max(int(num_frames), 1)

    def col(name: str) -> np.ndarray:
        return columns[name][sent]

    packets = col("packets_sent")
    latency = col("latency_s")
    latency = latency[np.isfinite(latency)]
    aoi = col("aoi_s")
    aoi = aoi[np.isfinite(aoi)]
    cells_sent = col("cells_sent").sum()
    # NaN when no link sent a cell (e.g. a digital payload of which not even the header fits)
    delivered_fraction = float(col("cells_used").sum() / cells_sent) if cells_sent > 0 else math.nan
    return {
        "mean_source_bits_per_frame": float(col("source_bits").sum() / frames),
        "mean_coded_bits_per_frame": float(col("coded_bits").sum() / frames),
        "mean_channel_uses_per_frame": float(col("channel_uses").sum() / frames),
        "mean_packets_per_frame": float(packets.sum() / frames),
        # NaN when no packet was sent (ego only, or nothing fits): 0/0 is no loss rate
        "packet_loss_rate": float(col("packets_lost").sum() / packets.sum())
        if packets.sum()
        else math.nan,
        "delivered_fraction": delivered_fraction,
        "mean_latency_s": float(latency.mean()) if latency.size else float("nan"),
        "p95_latency_s": float(np.percentile(latency, 95)) if latency.size else float("nan"),
        "mean_aoi_s": float(aoi.mean()) if aoi.size else float("nan"),
        "mean_links_per_frame": float(sent.sum() / frames),
    }
