"""Where2comm's threshold mode end to end: each link sends, and the ledger charges, exactly the
cells above the threshold on that link (a count per link and frame), never a padded or uniform
count.

Oracles: per-link costs written out by hand from the cell count (``identity`` codec: ``16 · C``
bits per cell, the selection map ``min(h·w, m · ceil(log2(h·w)))`` bits at rate 1/2 on QPSK,
the Shannon rate, 1460-byte packet payloads), the cells designed into a score map, and
``scipy.ndimage`` for the published Gaussian smoothing of a real detector's confidence.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from tests.core.test_condition_streams import _assert_same, _loop
from v2x.channels import build_channel
from v2x.condition_streams import send_cells
from v2x.datasets.frame import AgentObservation, CoopFrame, collate_frames
from v2x.execution import run_conditions
from v2x.ledger import ledger_table
from v2x.network import NetworkConfig, build_network_batch
from v2x.perception.bev import BEVGrid
from v2x.perception.detector import CoopDetector, DetectorConfig
from v2x.perception.fusion import build_fusion
from v2x.perception.fusion_where2comm import Where2commFusion
from v2x.pipeline import CooperativePipeline
from v2x.scheduling import BudgetConfig, schedule
from v2x.semcom import build_codec

GRID = BEVGrid(x_range_m=(-12.8, 12.8), y_range_m=(-12.8, 12.8), resolution_m=0.4)
C = 8
H = W = 32  # stride-2 map of the 64 x 64 grid
PACKET_PAYLOAD_BITS = (1500 - 40) * 8

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> CoopDetector:
    torch.manual_seed(0)
    cfg = DetectorConfig(grid=GRID, pillar_channels=8, backbone_channels=(8, 16),
                         backbone_layers=1, feature_channels=C, score_threshold=0.0,
                         max_detections=20)  # fmt: skip
    return CoopDetector(cfg).eval()


def _frame(seed: int, agents: int, x_step_m: float = 0.0) -> CoopFrame:
    """``agents`` vehicles (at one pose, or ``x_step_m`` apart), each with its own points."""
    rng = np.random.default_rng(seed)
    obs = []
    for i in range(agents):
        n = int(rng.integers(100, 400))
        pts = np.stack([rng.uniform(-11, 11, n), rng.uniform(-11, 11, n),
                        rng.uniform(-1.7, 0.3, n), rng.uniform(0, 1, n)], axis=1)  # fmt: skip
        pose = np.eye(4)
        pose[:3, 3] = [x_step_m * i, 0.0, 1.8]
        obs.append(AgentObservation(f"veh_{i}", "vehicle", pose, pts.astype(np.float32)))
    boxes = np.array([[4.0, 2.0, 0.8, 4.5, 1.9, 1.6, 0.3]])
    return CoopFrame(f"f{seed}", obs, boxes, np.array([0]), np.array([1]))


def _hand_cost(m: int, snr_db: float) -> dict[str, float]:
    """What a link sending ``m`` cells of ``C`` float16 values costs (``identity`` inside
    ``selective``), by hand; a link sending none costs nothing."""
    if m == 0:
        return dict.fromkeys(("source_bits", "coded_bits", "channel_uses", "packets_sent"), 0.0)
    payload = m * C * 16
    control = min(H * W, m * math.ceil(math.log2(H * W)))  # bitmap or indices
    control_coded = math.ceil(control / 0.5)  # rate 1/2
    capacity = math.log2(1 + 10 ** (snr_db / 10))
    return {
        "source_bits": float(payload + control),
        "coded_bits": float(payload + control_coded),
        "channel_uses": float(math.ceil(payload / capacity) + math.ceil(control_coded / 2)),
        "packets_sent": float(
            math.ceil(payload / PACKET_PAYLOAD_BITS) + math.ceil(control_coded / PACKET_PAYLOAD_BITS)
        ),
    }


class ScriptedWhere2comm(Where2commFusion):
    """Threshold Where2comm whose collaborators' scores are given (``[S, 1, h, w]``), and which
    keeps the validity mask fusion got."""

    def __init__(self, scores: torch.Tensor, threshold: float) -> None:
        super().__init__(threshold=threshold)
        self.scores = scores
        self.masks: list[torch.Tensor] = []

    def selection_score(self, heat_logits: torch.Tensor) -> torch.Tensor:
        return self.scores.clone()

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        self.masks.append(valid.detach().clone())
        return super().forward(features, valid)


#: Cells above the threshold on each of the 2 frames x 3 collaborator slots (frame 1 has 2
#: collaborators: its slot 3 is padding, which must cost nothing whatever its scores).
COUNTS = [[5, 0, 37], [1, H * W, 3]]


def _designed_scores() -> torch.Tensor:
    """``[6, 1, H, W]``: 0.9 at ``COUNTS`` cells spread over each map, 0.1 elsewhere."""
    g = torch.Generator().manual_seed(1)
    scores = torch.full((6, 1, H * W), 0.1)
    for row, m in enumerate([m for frame in COUNTS for m in frame]):
        scores[row, 0, torch.randperm(H * W, generator=g)[:m]] = 0.9
    return scores.view(6, 1, H, W)


def _ledger(pipe, batch, frames, snr: list[float]):
    out = pipe.run(batch, torch.tensor(snr))
    cost = out.cost
    budget = BudgetConfig(bandwidth_hz=20e6, deadline_s=1.0)
    delivery = schedule(budget, cost.sent, cost.channel_uses, cost.packets, cost.snr_db)
    spread = [_frame(int(f.frame_id[1:]), len(f.agents), 10.0) for f in frames]
    net = build_network_batch(spread, NetworkConfig(los_mode="los"))
    ids = [f"c{i}" for i in range(len(snr))]
    table = ledger_table(ids, cost, delivery, net, batch.agent_mask, "awgn", "identity",
                         "where2comm", 1.0)  # fmt: skip
    return out, delivery, table.to_pylist()


def test_each_link_is_charged_its_own_cell_count(model):
    frames = [_frame(1, 4), _frame(2, 3)]
    batch = collate_frames(frames)
    scores = _designed_scores()
    fusion = ScriptedWhere2comm(scores, threshold=0.5)
    pipe = CooperativePipeline(model, fusion, build_codec("identity"), build_channel("awgn"))
    snr = [4.0, 17.0]
    out, delivery, rows = _ledger(pipe.eval(), batch, frames, snr)
    assert len(rows) == 2 * 5  # 2 conditions x 5 present collaborators: padding has no row
    for r in rows:
        bi = int(r["frame_id"][1:]) - 1
        ai = int(r["tx_agent"].split("_")[1])
        m = COUNTS[bi][ai - 1]
        want = _hand_cost(m, snr[r["condition_id"]])
        for name, value in want.items():
            assert r[name] == value, (name, bi, ai, m)
        assert r["cells_sent"] == m and r["cells_used"] == m  # ideal link: all arrive
        assert r["sent"] == (m > 0) and r["delivered"] == (m > 0)
        assert r["packets_lost"] == 0
        if m == 0:  # not on air: no latency, no share of the band taken from the others
            assert math.isnan(r["latency_s"]) and r["share"] == 0.0
    # the equal scheduler splits frame 0's band between its 2 links on air, not 3
    assert delivery.share[:, 0, 1].tolist() == delivery.share[:, 0, 3].tolist() == [0.5, 0.5]
    # the padded slot costs nothing although its scores select 3 cells
    for name in ("source_bits", "channel_uses", "packets", "cells_sent"):
        assert (getattr(out.cost, name)[:, 1, 3] == 0).all(), name
    # fusion got exactly the cells above the threshold (collaborators at the ego's pose; the
    # two conditions of an error-free codec share one fusion)
    valid = fusion.masks[0][:, 1:, 0]  # [U·B, A-1, h, w]
    chosen = (scores > 0.5).view(2, 3, H, W)
    present = batch.agent_mask[:, 1:]
    for k in range(valid.shape[0] // 2):
        for bi in range(2):
            for ai in range(3):
                if present[bi, ai]:
                    assert torch.equal(valid[k * 2 + bi, ai], chosen[bi, ai]), (k, bi, ai)


def _smoothed_by_hand(conf: np.ndarray, k_size: int = 5, sigma: float = 1.0) -> np.ndarray:
    c = k_size // 2
    y, x = np.mgrid[-c : c + 1, -c : c + 1]
    kernel = np.exp(-(x**2 + y**2) / (2 * sigma**2)) / (2 * math.pi * sigma)
    return ndimage.convolve(conf, kernel, mode="constant", cval=0.0)


def test_published_threshold_on_a_detector_varies_per_link_and_is_charged_as_sent(model):
    """A real detector's maps, the published ``thre`` with Gaussian smoothing: the cells each
    link sends are ``scipy``'s smoothed confidence above the threshold, a count per link (at
    least two different ones here), and each link's bits are those of its count."""
    frames = [_frame(3, 3), _frame(4, 3)]
    batch = collate_frames(frames)
    with torch.no_grad():
        feats = model.encode(batch.points, batch.point_mask, batch.poses)
        heat, _ = model.head(feats[:, 1:].reshape(-1, C, H, W))
    conf = torch.sigmoid(heat.double()).amax(dim=1).numpy()  # [4, H, W]
    smooth = np.stack([_smoothed_by_hand(c) for c in conf])
    # the middle of the widest gap between scores in the maps' middle range: some cells of
    # every map, not all, and no cell within float32 rounding of it
    values = np.sort(smooth.ravel())
    middle = values[len(values) // 3 : 2 * len(values) // 3]
    gap = int(np.argmax(np.diff(middle)))
    thre = float(middle[gap] + middle[gap + 1]) / 2
    counts = (smooth > thre).reshape(4, -1).sum(1).tolist()
    assert len(set(counts)) >= 2 and min(counts) > 0 and max(counts) < H * W
    assert np.abs(smooth - thre).min() > 1e-6  # no cell at float32 rounding of it
    fusion = build_fusion("where2comm", threshold=thre)
    pipe = CooperativePipeline(model, fusion, build_codec("identity"), build_channel("awgn"))
    _, _, rows = _ledger(pipe.eval(), batch, frames, [10.0])
    for r in rows:
        bi, ai = int(r["frame_id"][1:]) - 3, int(r["tx_agent"].split("_")[1])
        m = counts[bi * 2 + ai - 1]
        assert r["cells_sent"] == m
        for name, value in _hand_cost(m, 10.0).items():
            assert r[name] == value, (name, bi, ai, m)


def test_threshold_zero_sends_every_cell_and_above_every_score_nothing(model):
    frames = [_frame(5, 3)]
    batch = collate_frames(frames)
    pipe = CooperativePipeline(model, build_fusion("where2comm", threshold=0.0),
                               build_codec("identity"), build_channel("awgn")).eval()  # fmt: skip
    _, _, rows = _ledger(pipe, batch, frames, [10.0])
    assert [r["cells_sent"] for r in rows] == [H * W, H * W]
    assert all(r["source_bits"] == H * W * C * 16 + H * W for r in rows)  # bitmap: h·w bits
    pipe.fusion = build_fusion("where2comm", threshold=2.0)
    out, _, rows = _ledger(pipe, batch, frames, [10.0])
    for r in rows:
        assert not r["sent"] and not r["delivered"]
        assert r["source_bits"] == r["channel_uses"] == r["packets_sent"] == r["cells_sent"] == 0
    ego = pipe.ego_detections(batch)  # nothing sent: the ego's own detections
    assert torch.equal(out.detections.boxes, ego.boxes)
    assert torch.equal(out.detections.scores, ego.scores)


def test_seeded_conditions_equal_one_call_each(model):
    """``run(seeds=...)`` in threshold mode gives each condition the numbers of its own call
    (noise of the analog codec, counts differing per link)."""
    frames = [_frame(6, 4), _frame(7, 3)]
    batch = collate_frames(frames)
    fusion = ScriptedWhere2comm(_designed_scores(), threshold=0.5)
    pipe = CooperativePipeline(model, fusion, build_codec("analog"), build_channel("awgn")).eval()
    snr = torch.tensor([-5.0, 3.0, 3.0, 20.0])
    seeds = [11, 12, 13, 14]
    _assert_same(run_conditions(pipe, batch, snr, seeds), _loop(pipe, batch, snr, seeds))


def test_send_cells_rows_by_hand():
    """``send_cells`` on its own: each row decodes to its chosen cells (zeros elsewhere) and
    costs its own count; a row choosing nothing costs nothing; seeded blocks equal one call
    per block."""
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(4, C, H, W, generator=g)
    chosen = torch.zeros(4, 1, H, W, dtype=torch.bool)
    for i, m in enumerate([7, 0, 7, 300]):
        chosen.view(4, -1)[i, torch.randperm(H * W, generator=g)[:m]] = True
    snr = torch.full((4,), 10.0)
    sent = send_cells(build_codec("identity"), build_channel("awgn"), rows, snr, chosen)
    want = (rows * chosen).half().float()
    assert torch.equal(sent.decoded, want)
    assert torch.equal(sent.cells.selected, chosen) and sent.cells.indices is None
    for i, m in enumerate([7, 0, 7, 300]):
        hand = _hand_cost(m, 10.0)
        assert sent.cost.source_bits[i].item() == hand["source_bits"]
        assert sent.cost.channel_uses[i].item() == hand["channel_uses"]
        assert sent.cost.packets[i].item() == hand["packets_sent"]
    codec, channel = build_codec("analog"), build_channel("rayleigh")
    both = send_cells(codec, channel, rows, snr, chosen, seeds=[5, 6])
    for ki, seed in enumerate([5, 6]):
        torch.manual_seed(seed)
        part = slice(2 * ki, 2 * ki + 2)
        one = send_cells(codec, channel, rows[part], snr[part], chosen[part])
        assert torch.equal(both.decoded[part], one.decoded)
        assert torch.equal(both.cost.channel_uses[part], one.cost.channel_uses)


def test_a_sweep_chooses_the_threshold_and_refuses_bad_values(tmp_path):
    """``fusion_options.where2comm.threshold`` (in a config file, or ``+fusion_options...`` on
    the command line: the key is new to the empty ``fusion_options``) reaches the fusion; a bad
    value stops the plan with one message naming the field, the value and the range."""
    import os

    from hydra import compose, initialize_config_dir

    import v2x.conf
    from tests.core.test_sweep import tiny_config
    from v2x.sweep import plan_sweep

    with initialize_config_dir(config_dir=os.path.dirname(v2x.conf.__file__), version_base=None):
        cfg = compose(config_name="sweep", overrides=["+fusion_options.where2comm.threshold=0.01"])
    assert dict(cfg.fusion_options.where2comm) == {"threshold": 0.01}
    tiny = tiny_config(tmp_path / "frames", tmp_path / "out", fusions=["where2comm"])
    plan = plan_sweep({**tiny, "fusion_options": {"where2comm": {"threshold": 0.01}}})
    assert {tuple(g.fusion_kwargs.items()) for g in plan.groups} == {(("threshold", 0.01),)}
    with pytest.raises(ValueError) as err:
        plan_sweep({**tiny, "fusion_options": {"where2comm": {"threshold": -0.5}}})
    assert str(err.value) == (
        "where2comm: 'threshold' must be a finite number >= 0 (a confidence in [0, 1], or its "
        "Gaussian smoothing) or null, got -0.5"
    )
    with pytest.raises(ValueError, match="mutually exclusive"):
        plan_sweep({**tiny, "grid": {**tiny["grid"], "fusions": [
            {"name": "where2comm", "threshold": 0.01, "max_fraction": 0.1}]}})  # fmt: skip
