"""The ledger: one row per (condition, frame, present collaborator), sums by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.datasets.frame import AgentObservation, CoopFrame
from v2x.ledger import LEDGER_SCHEMA, ledger_table, summarize, summarize_cells
from v2x.network import NetworkConfig, build_network_batch
from v2x.pipeline import LinkCost
from v2x.scheduling import BudgetConfig, schedule


def _frame(name: str, xs: list[float]) -> CoopFrame:
    agents = []
    for i, x in enumerate(xs):
        pose = np.eye(4)
        pose[:3, 3] = [x, 0.0, 1.5]
        agents.append(AgentObservation(f"v{i}", "vehicle", pose, np.zeros((0, 4), np.float32)))
    return CoopFrame(name, agents, np.zeros((0, 7)), [], [])


def test_rows_values_and_sums():
    frames = [_frame("f0", [0, 30, 60]), _frame("f1", [0, 40])]  # 2 + 1 collaborators
    net = build_network_batch(frames, NetworkConfig(los_mode="los"))
    k, b, a = 2, 2, 3
    agent_mask = torch.tensor([[True, True, True], [True, True, False]])
    sent = agent_mask.clone()
    sent[:, 0] = False
    sent = sent.expand(k, b, a).clone()
    uses = torch.tensor([100.0, 200.0]).view(k, 1, 1).expand(k, b, a) * sent
    bits = uses * 4
    packets = torch.ceil(bits / 1000) * sent
    snr = torch.tensor([0.0, 10.0]).view(k, 1, 1).expand(k, b, a).float()
    zero = torch.zeros(k, b, a, dtype=torch.float64)
    cells = 10.0 * sent.double()
    cost = LinkCost(
        bits.double(), bits.double(), uses.double(), packets.double(), sent, snr,
        zero, zero, zero, cells, cells,
    )  # fmt: skip
    delivery = schedule(BudgetConfig(bandwidth_hz=1e4, deadline_s=0.02), sent, uses, packets, snr)
    table = ledger_table(
        ["c0", "c1"], cost, delivery, net, agent_mask, "awgn", "analog", "max", 0.5
    )
    assert table.schema == LEDGER_SCHEMA
    assert table.num_rows == k * 3  # 3 present collaborators per condition
    # every row's identity columns, in (condition, frame, agent) order, read here one by one
    expected = [
        (f"c{ki}", ki, f"f{bi}", f"v{aj}", "v0", "vehicle", "vehicle", "vehicle-vehicle",
         net.frames[bi].link_models[aj], float(net.frames[bi].distance_m[aj]),
         "awgn", "analog", "max")
        for ki in range(k) for bi in range(b) for aj in range(1, a) if agent_mask[bi, aj]
    ]  # fmt: skip
    names = ("cell_id", "condition_id", "frame_id", "tx_agent", "rx_agent", "tx_kind", "rx_kind",
             "kind_pair", "link_model", "distance_m", "channel", "codec", "fusion")  # fmt: skip
    assert list(zip(*(table.column(c).to_pylist() for c in names), strict=True)) == expected
    rows = table.to_pylist()
    r = [
        x for x in rows if x["cell_id"] == "c1" and x["frame_id"] == "f0" and x["tx_agent"] == "v2"
    ][0]
    assert r["rx_agent"] == "v0" and r["kind_pair"] == "vehicle-vehicle"
    assert r["distance_m"] == pytest.approx(60.0) and r["snr_db"] == 10.0
    assert r["channel_uses"] == 200.0 and r["source_bits"] == 800.0 and r["packets_sent"] == 1.0
    # f0 has two collaborators sharing 1e4 uses/s: 200 uses at 5e3/s = 0.04 s > 0.02 s deadline.
    assert r["share"] == pytest.approx(0.5) and r["latency_s"] == pytest.approx(0.04)
    assert not r["delivered"] and r["packets_lost"] == 1.0 and math.isnan(r["aoi_s"])
    r1 = [x for x in rows if x["cell_id"] == "c0" and x["frame_id"] == "f1"][0]
    assert r1["share"] == 1.0 and r1["latency_s"] == pytest.approx(0.01) and r1["delivered"]
    assert r1["tx_x_m"] == 40.0 and r1["rx_x_m"] == 0.0

    import pyarrow.compute as pc

    c1 = table.filter(pc.equal(table.column("cell_id"), "c1"))
    sums = summarize(c1, num_frames=2)
    assert sums["mean_channel_uses_per_frame"] == pytest.approx(3 * 200 / 2)
    assert sums["mean_source_bits_per_frame"] == pytest.approx(3 * 800 / 2)
    assert sums["mean_links_per_frame"] == pytest.approx(1.5)
    assert sums["packet_loss_rate"] == pytest.approx(2 / 3)  # f0's two payloads missed the deadline
    assert sums["delivered_fraction"] == pytest.approx(1 / 3)
    assert sums["mean_latency_s"] == pytest.approx((0.04 + 0.04 + 0.02) / 3)
    assert sums["mean_aoi_s"] == pytest.approx(0.02)
    # the per-cell helper the sweep uses reads the same rows
    per_cell = summarize_cells(table, ["c0", "c1", "absent"], num_frames=2)
    assert per_cell[1] == sums
    assert per_cell[0] == summarize(table.filter(pc.equal(table.column("cell_id"), "c0")), 2)
    assert per_cell[0]["mean_channel_uses_per_frame"] == pytest.approx(3 * 100 / 2)
    assert per_cell[2]["mean_links_per_frame"] == 0.0 and math.isnan(per_cell[2]["mean_aoi_s"])
    # no collaborator present: no row, the same columns
    alone = agent_mask.clone()
    alone[:, 1:] = False
    empty = ledger_table(["c0", "c1"], cost, delivery, net, alone, "awgn", "analog", "max", 0.5)
    assert empty.num_rows == 0 and empty.schema == LEDGER_SCHEMA


def test_cell_ids_must_match_conditions():
    frames = [_frame("f0", [0, 30])]
    net = build_network_batch(frames, NetworkConfig(los_mode="los"))
    z = torch.zeros(1, 1, 2, dtype=torch.float64)
    cost = LinkCost(z, z, z, z, torch.zeros(1, 1, 2, dtype=torch.bool), z.float(), z, z, z, z, z)
    d = schedule(BudgetConfig(), cost.sent, z, z, z)
    with pytest.raises(ValueError, match="cell_ids"):
        ledger_table(
            ["a", "b"], cost, d, net, torch.ones(1, 2, dtype=torch.bool), "awgn", "x", "max", 1.0
        )


def test_air_losses_and_deadline_drops_reach_rows_and_sums():
    """Erased and CRC-failed packets and cells that arrived come from the ``LinkCost`` of the
    payloads that made the deadline; a payload dropped at the deadline loses every packet and
    every cell. The results' loss and delivery columns are sums of those rows."""
    frames = [_frame("f0", [0, 30, 60])]  # two collaborators
    net = build_network_batch(frames, NetworkConfig(los_mode="los"))
    agent_mask = torch.tensor([[True, True, True]])
    sent = torch.tensor([[[False, True, True]]])
    packets = torch.tensor([[[0.0, 10.0, 4.0]]], dtype=torch.float64)
    uses = torch.tensor([[[0.0, 100.0, 1000.0]]], dtype=torch.float64)
    erased = torch.tensor([[[0.0, 3.0, 1.0]]], dtype=torch.float64)
    crc = torch.tensor([[[0.0, 2.0, 0.0]]], dtype=torch.float64)
    cells_sent = torch.tensor([[[0.0, 400.0, 100.0]]], dtype=torch.float64)
    cells_used = torch.tensor([[[0.0, 250.0, 100.0]]], dtype=torch.float64)
    snr = torch.full((1, 1, 3), 10.0)
    zero = torch.zeros(1, 1, 3, dtype=torch.float64)
    cost = LinkCost(
        uses, uses, uses, packets, sent, snr, erased, crc, zero, cells_sent, cells_used
    )
    # 1e4 uses/s shared by two: 100 uses take 0.02 s (on time), 1000 take 0.2 s (late, dropped)
    delivery = schedule(BudgetConfig(bandwidth_hz=1e4, deadline_s=0.05), sent, uses, packets, snr)
    table = ledger_table(["c"], cost, delivery, net, agent_mask, "erasure_iid", "d", "max", 1.0)
    r1, r2 = table.to_pylist()
    assert (r1["packets_erased"], r1["packets_crc_failed"], r1["packets_lost"]) == (3, 2, 5)
    assert (r1["cells_sent"], r1["cells_used"], r1["delivered"]) == (400, 250, True)
    assert r1["retransmissions"] == 0
    assert (r2["packets_lost"], r2["cells_used"], r2["delivered"]) == (4, 0, False)  # late
    sums = summarize(table, num_frames=1)
    assert sums["packet_loss_rate"] == pytest.approx((5 + 4) / 14)
    assert sums["delivered_fraction"] == pytest.approx(250 / 500)
    # a payload of which no cell arrived is not delivered, even on time
    nothing = LinkCost(
        uses, uses, uses, packets, sent, snr, erased, crc, zero, cells_sent, zero
    )
    fast = schedule(BudgetConfig(bandwidth_hz=1e9), sent, uses, packets, snr)
    rows = ledger_table(["c"], nothing, fast, net, agent_mask, "e", "d", "max", 1.0).to_pylist()
    assert [r["delivered"] for r in rows] == [False, False]


def test_nothing_on_air_and_a_header_alone_are_neither_sent_nor_delivered():
    """A digital payload of which not even the header fits used no channel and was recorded
    ``sent``, ``delivered``, latency 0 and AoI 0, which pulled the latency and AoI means to 0;
    a header alone (no cell conveyed) was ``delivered``; payloads that delivered nothing kept
    an age of information. Now: nothing on air is not sent (latency NaN), and delivered means
    the ego fused at least one cell (AoI NaN otherwise)."""
    frames = [_frame("f0", [0, 30, 60, 90, 120])]  # four collaborators
    net = build_network_batch(frames, NetworkConfig(los_mode="los"))
    agent_mask = torch.ones(1, 5, dtype=torch.bool)
    sent = torch.tensor([[[False, True, True, True, True]]])
    #      nothing fits | a header alone | every packet failed CRC | delivered
    uses = torch.tensor([[[0.0, 0.0, 50.0, 500.0, 500.0]]], dtype=torch.float64)
    packets = torch.tensor([[[0.0, 0.0, 1.0, 2.0, 2.0]]], dtype=torch.float64)
    crc = torch.tensor([[[0.0, 0.0, 0.0, 2.0, 0.0]]], dtype=torch.float64)
    cells_sent = torch.tensor([[[0.0, 0.0, 0.0, 100.0, 100.0]]], dtype=torch.float64)
    cells_used = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 100.0]]], dtype=torch.float64)
    snr = torch.full((1, 1, 5), -10.0)
    zero = torch.zeros(1, 1, 5, dtype=torch.float64)
    cost = LinkCost(uses, uses, uses, packets, sent, snr, zero, crc, zero, cells_sent, cells_used)
    delivery = schedule(BudgetConfig(bandwidth_hz=1e9), sent, uses, packets, snr)
    table = ledger_table(["c"], cost, delivery, net, agent_mask, "awgn", "digital", "max", 1.0)
    none, header, failed, ok = table.to_pylist()
    assert not none["sent"] and not none["delivered"]
    assert math.isnan(none["latency_s"]) and math.isnan(none["aoi_s"])
    for row in (header, failed):
        assert row["sent"] and not row["delivered"]
        assert row["latency_s"] > 0 and math.isnan(row["aoi_s"])
    assert ok["sent"] and ok["delivered"] and ok["aoi_s"] == pytest.approx(ok["latency_s"])
    sums = summarize(table, num_frames=1)
    assert sums["mean_links_per_frame"] == 3.0  # the link that sent nothing is no link
    assert sums["mean_aoi_s"] == pytest.approx(ok["aoi_s"])  # the delivered payload's age only
    assert sums["mean_latency_s"] == pytest.approx(
        (header["latency_s"] + failed["latency_s"] + ok["latency_s"]) / 3
    )
    assert sums["packet_loss_rate"] == pytest.approx(2 / 5)
    # nothing sent at all (ego only, or no payload fits): no loss rate, not 0
    quiet = summarize(table.slice(0, 1), num_frames=1)
    assert math.isnan(quiet["packet_loss_rate"]) and math.isnan(quiet["mean_latency_s"])
