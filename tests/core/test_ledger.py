"""The ledger: one row per (condition, frame, present collaborator), sums by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.budget import BudgetConfig, schedule
from v2x.datasets.frame import AgentObservation, CoopFrame
from v2x.ledger import LEDGER_SCHEMA, ledger_table, summarize, summarize_cells
from v2x.network import NetworkConfig, build_network_batch
from v2x.pipeline import LinkCost


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
