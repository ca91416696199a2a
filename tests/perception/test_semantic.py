"""Semantic payloads: warp by centre against hand-computed transforms, bits of what is sent,
an ideal collaborator map recovering a box the ego cannot see, training, old checkpoints."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from v2x.channels import build_channel
from v2x.datasets.frame import AgentObservation, CoopFrame, collate_frames
from v2x.perception.bev import BEVGrid
from v2x.perception.boxes import rotated_iou_bev
from v2x.perception.detector import CoopDetector, DetectorConfig, load_detector_weights
from v2x.perception.fusion import build_fusion
from v2x.perception.fusion_payload import SemanticMapFusion
from v2x.perception.head import build_targets
from v2x.perception.semantic import splat_to_ego
from v2x.perception.warp import boxes_in_level_frames
from v2x.pipeline import CooperativePipeline
from v2x.semcom import build_codec

GRID = BEVGrid(x_range_m=(-12.8, 12.8), y_range_m=(-12.8, 12.8), resolution_m=0.4)
C, K, HW = 8, 4, 32  # feature channels, classes, side of the stride-2 map
PLACEMENTS = [(0.0, 0.0, 0.0), (5.0, -3.0, 0.7), (-4.0, 6.0, -2.0)]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pose(x: float, y: float, yaw: float, z: float = 1.8) -> np.ndarray:
    pose = np.eye(4)
    pose[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    pose[:3, 3] = [x, y, z]
    return pose


def _frame(seed: int, placements) -> CoopFrame:
    rng = np.random.default_rng(seed)
    agents = []
    for i, (x, y, yaw) in enumerate(placements):
        n = int(rng.integers(150, 400))
        pts = np.stack(
            [rng.uniform(-11, 11, n), rng.uniform(-11, 11, n), rng.uniform(-1.7, 0.3, n),
             rng.uniform(0, 1, n)], axis=1,
        )  # fmt: skip
        agents.append(AgentObservation(f"veh_{i}", "vehicle", _pose(x, y, yaw), pts))
    boxes = np.array([[4.0, 2.0, 0.8, 4.5, 1.9, 1.6, 0.3], [-5.0, -3.0, 0.8, 4.0, 1.8, 1.5, 1.2]])
    return CoopFrame(f"f{seed}", agents, boxes, np.array([0, 0]), np.array([1, 2]))


@pytest.fixture(scope="module")
def model() -> CoopDetector:
    torch.manual_seed(0)
    cfg = DetectorConfig(
        grid=GRID, pillar_channels=8, backbone_channels=(8, 16), backbone_layers=1,
        feature_channels=C, num_classes=K, score_threshold=0.05, max_detections=20,
    )  # fmt: skip
    det = CoopDetector(cfg)
    with torch.no_grad():  # non-trivial BN statistics and a head that fires somewhere
        for mod in det.modules():
            if isinstance(mod, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
        det.head.heatmap.bias.fill_(-1.0)
    return det.eval()


@pytest.fixture(scope="module")
def batch():
    """Two frames: 3 agents and 2 agents (slot 2 of frame 1 is padding)."""
    return collate_frames([_frame(1, PLACEMENTS), _frame(2, [(10.0, 5.0, 1.0), (13.0, 2.0, 2.5)])])


def _pipe(model, fusion, codec="identity") -> CooperativePipeline:
    return CooperativePipeline(model, fusion, build_codec(codec), build_channel("awgn")).eval()


# ----------------------------------------------------------------------------- warp by centre
def test_splat_moves_a_cell_to_the_hand_computed_ego_cell():
    grid = BEVGrid(x_range_m=(-6.4, 6.4), y_range_m=(-6.4, 6.4), resolution_m=0.4)  # 16 x 16 /2
    k = 2
    maps = torch.zeros(1, k + 8 + 1, 16, 16)
    yaw = 0.4
    maps[0, :, 5, 9] = torch.tensor(
        [2.0, -1.0, 0.3, 0.6, 0.7, 1.5, 0.6, 0.4, math.sin(yaw), math.cos(yaw), 3.5]
    )
    cells = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    cells[0, 0, 5, 9] = True
    # sender → ego: rotate by +90°, then shift by (1.0, -2.0) m
    t = torch.eye(4, dtype=torch.float64)[None].clone()
    t[0, :2, :2] = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    t[0, :2, 3] = torch.tensor([1.0, -2.0])
    out, valid = splat_to_ego(maps, cells, t, grid, 2, k)
    # By hand: cell 0.8 m; centre in the sender frame x = -6.4 + 9.3·0.8 = 1.04,
    # y = -6.4 + 5.6·0.8 = -1.92; in the ego frame (-y + 1, x - 2) = (2.92, -0.96):
    # fx = 9.32 / 0.8 = 11.65 → cell 11, offset 0.65; fy = 5.44 / 0.8 = 6.8 → cell 6, 0.8.
    assert valid.sum() == 1 and bool(valid[0, 0, 6, 11])
    got = out[0, :, 6, 11]
    assert torch.allclose(got[:2], torch.tensor([2.0, -1.0]))
    assert got[2].item() == pytest.approx(0.65, abs=1e-5)
    assert got[3].item() == pytest.approx(0.8, abs=1e-5)
    assert torch.allclose(got[4:8], torch.tensor([0.7, 1.5, 0.6, 0.4]))
    assert got[8].item() == pytest.approx(math.sin(yaw + math.pi / 2), abs=1e-6)
    assert got[9].item() == pytest.approx(math.cos(yaw + math.pi / 2), abs=1e-6)
    assert got[10].item() == pytest.approx(3.5)
    assert out[0, :, ~valid[0, 0]].abs().sum() == 0


def test_splat_keeps_the_most_confident_of_cells_landing_together():
    grid = BEVGrid(x_range_m=(-6.4, 6.4), y_range_m=(-6.4, 6.4), resolution_m=0.4)
    maps = torch.zeros(1, 1 + 8, 16, 16)
    maps[:, 1:3] = 0.5  # every cell predicts a centre in itself...
    # ...but two cells predicting centres in the same cell (8, 8): from (8, 7) offset 1.5, and (8, 8)
    maps[0, :, 8, 7] = torch.tensor([1.0, 1.5, 0.5, 0, 0, 0, 0, 0, 1])
    maps[0, :, 8, 8] = torch.tensor([3.0, 0.25, 0.5, 0, 0, 0, 0, 0, 1])
    out, valid = splat_to_ego(maps, None, torch.eye(4, dtype=torch.float64)[None], grid, 2, 1)
    assert out[0, 0, 8, 8].item() == 3.0 and out[0, 1, 8, 8].item() == pytest.approx(0.25)
    # identity transform: every other cell stays where it is
    assert int(valid.sum()) == 16 * 16 - 1 and not bool(valid[0, 0, 8, 7])


# ----------------------------------------------------------------------------- accounting
def test_semantic_map_bits_are_channels_times_cells_times_16(model, batch):
    run = _pipe(model, build_fusion("semantic_map")).run(batch, torch.tensor([10.0]))
    sent = batch.agent_mask.clone()
    sent[:, 0] = False
    per_link = (K + 8) * HW * HW * 16
    assert torch.equal(run.cost.source_bits[0], sent.double() * per_link)
    assert torch.equal(run.cost.cells_sent[0], sent.double() * HW * HW)
    assert run.detections.boxes.shape == (2, model.config.max_detections, 7)


def test_budgeted_semantic_map_charges_kept_cells_and_their_selection_map(model, batch):
    run = _pipe(model, build_fusion("semantic_map", max_fraction=0.1)).run(
        batch, torch.tensor([10.0])
    )
    kept = math.floor(0.1 * HW * HW + 0.5)  # 102 cells
    control = min(HW * HW, kept * math.ceil(math.log2(HW * HW)))
    sent = batch.agent_mask.clone()
    sent[:, 0] = False
    assert torch.equal(run.cost.source_bits[0], sent.double() * (kept * (K + 8) * 16 + control))
    assert torch.equal(run.cost.cells_sent[0], sent.double() * kept)


def test_object_features_bits_count_only_the_detected_objects(model, batch):
    run = _pipe(model, build_fusion("object_features")).run(batch, torch.tensor([10.0]))
    b, a = batch.agent_mask.shape
    with torch.no_grad():  # the collaborators' own detections, counted independently
        feats = model.encode(batch.points, batch.point_mask, batch.poses)
        det = model.postprocess(*model.head(feats.flatten(0, 1)))
    cell = GRID.resolution_m * 2
    expected = torch.zeros(b, a, dtype=torch.float64)
    objects = torch.zeros(b, a, dtype=torch.float64)
    for i in range(b * a):
        fb, ai = divmod(i, a)
        if ai == 0 or not batch.agent_mask[fb, ai]:
            continue
        boxes = det.boxes[i][det.valid[i]]
        ix = torch.floor((boxes[:, 0].double() + 12.8) / cell).long()
        iy = torch.floor((boxes[:, 1].double() + 12.8) / cell).long()
        inside = (ix >= 0) & (ix < HW) & (iy >= 0) & (iy < HW)
        n = len({(int(y), int(x)) for x, y in zip(ix[inside], iy[inside], strict=True)})
        objects[fb, ai] = n
        if n:
            control = min(HW * HW, n * math.ceil(math.log2(HW * HW)))
            expected[fb, ai] = n * (K + 8 + C) * 16 + control
    assert objects.sum() > 0  # the test model detects something to send
    assert torch.equal(run.cost.source_bits[0], expected)
    assert torch.equal(run.cost.cells_sent[0], objects)
    assert torch.equal(run.cost.cells_used[0], objects)  # ideal link: all of them arrive


def test_payloads_travel_through_a_noisy_codec_and_report_what_arrived(model, batch):
    torch.manual_seed(0)
    run = _pipe(model, build_fusion("object_features"), codec="analog").run(
        batch, torch.tensor([0.0, 20.0])
    )
    assert run.num_conditions == 2 and run.detections.boxes.shape[0] == 4
    assert bool((run.cost.channel_uses[:, :, 1:] > 0).any())
    assert torch.equal(run.cost.cells_used, run.cost.cells_sent)  # analog: no losses reported


# ----------------------------------------------------------------------------- recovery
class _IdealSemanticMap(SemanticMapFusion):
    """The ego sees nothing; each collaborator sends the ideal map of the scene's boxes."""

    def __init__(self, batch) -> None:
        super().__init__()
        self.batch = batch

    def own_payload(self, model, features):
        b, _, h, w = features.shape
        return torch.cat([torch.full((b, K, h, w), -10.0), torch.zeros(b, 8, h, w)], 1)

    def payload(self, model, features):
        b, a = self.batch.agent_mask.shape
        gt = boxes_in_level_frames(self.batch.boxes, self.batch.poses, GRID.ground_z_m)
        gt = gt[:, 1:].reshape(b * (a - 1), -1, 7).float()
        classes = self.batch.classes[:, None].expand(b, a - 1, -1).reshape(b * (a - 1), -1)
        valid = self.batch.box_mask[:, None].expand(b, a - 1, -1).reshape(b * (a - 1), -1)
        heat, reg, index, inside = build_targets(gt, classes, valid, GRID, 2, K)
        reg_map = torch.zeros(gt.shape[0], 8, HW * HW)
        for s in range(gt.shape[0]):
            reg_map[s][:, index[s][inside[s]]] = reg[s][inside[s]].T
        logits = torch.logit(heat.clamp(1e-4, 1 - 1e-4))
        return torch.cat([logits, reg_map.view(-1, 8, HW, HW)], 1), None


def test_an_ideal_collaborator_map_recovers_the_box_the_ego_cannot_see(model, batch):
    single = dataclasses.replace(
        batch, **{f: getattr(batch, f)[:1] for f in
                  ("points", "point_mask", "poses", "agent_mask", "boxes", "classes",
                   "box_mask", "visibility")},
        frame_ids=batch.frame_ids[:1],
    )  # fmt: skip
    fusion = _IdealSemanticMap(single)
    det = _pipe(model, fusion).run(single, torch.tensor([10.0])).detections
    boxes, scores, _ = det.frame(0)
    truth = boxes_in_level_frames(single.boxes, single.poses[:, :1], GRID.ground_z_m)[0, 0]
    assert len(boxes) == 2  # both boxes, from the collaborators alone
    iou = rotated_iou_bev(truth.float(), boxes)
    assert bool((iou.amax(dim=1) > 0.999).all())
    matched = boxes[iou.argmax(dim=1)]
    # exact up to the identity codec's float16 (log sizes: relative error ≤ 2^-11 · log 30)
    assert torch.allclose(matched[:, :6], truth[:, :6].float(), rtol=3e-3, atol=1e-3)
    d = torch.remainder(matched[:, 6] - truth[:, 6].float() + math.pi, 2 * math.pi) - math.pi
    assert d.abs().max() < 1e-3
    assert bool((scores > 0.99).all())
    # without the collaborators the ego finds nothing
    ego_only = torch.tensor([[True, False, False]])
    alone = dataclasses.replace(single, agent_mask=single.agent_mask & ego_only)
    assert _pipe(model, fusion).run(alone, torch.tensor([10.0])).detections.valid.sum() == 0


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("mode", ["semantic_map", "object_features"])
def test_train_mode_reaches_the_adapter_and_the_encoder(model, batch, mode):
    net = CoopDetector(model.config)
    net.load_state_dict(model.state_dict())
    net.train()
    losses = net(batch, mode)
    assert torch.isfinite(losses["total"])
    losses["total"].backward()
    last = net.payload_adapters[mode].net[2].weight
    assert last.grad is not None and last.grad.abs().sum() > 0
    assert net.pillars.parameters().__next__().grad is not None


def test_checkpoints_without_adapter_weights_still_load_and_others_must_match(model):
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("payload_adapters.")}
    fresh = CoopDetector(model.config)
    load_detector_weights(fresh, state)  # an older checkpoint: adapters stay at zero
    assert fresh.payload_adapters["semantic_map"].net[2].weight.abs().sum() == 0
    del state["head.reg.bias"]
    with pytest.raises(RuntimeError, match="head.reg.bias"):
        load_detector_weights(fresh, state)


def test_bad_options_name_the_field():
    with pytest.raises(ValueError, match="max_fraction"):
        build_fusion("semantic_map", max_fraction=0.0)
    with pytest.raises(ValueError, match="score_threshold"):
        build_fusion("object_features", score_threshold=1.5)


@pytest.mark.parametrize("name", ["semantic_map", "object_features"])
def test_payload_fusions_run_on_the_pointpillars_backbone(batch, name):
    torch.manual_seed(0)
    cfg = DetectorConfig(
        grid=GRID, pillar_channels=8, backbone="pointpillars", layer_nums=(1, 1, 1),
        layer_filters=(8, 8, 8), upsample_filters=(4, 4, 4), feature_channels=12,
        head_channels=8, score_threshold=0.0, max_detections=10,
    )  # fmt: skip
    det = CoopDetector(cfg).eval()
    run = _pipe(det, build_fusion(name)).run(batch, torch.tensor([10.0]))
    assert run.detections.boxes.shape == (2, 10, 7)
    bits = run.cost.source_bits[0, 0, 1].item()
    if name == "semantic_map":
        assert bits == (K + 8) * HW * HW * 16
    else:  # score threshold 0: every one of the 10 candidates is an object (10 cells at most)
        n = run.cost.cells_sent[0, 0, 1].item()
        assert 0 < n <= 10
        assert bits == n * (K + 8 + 12) * 16 + n * math.ceil(math.log2(HW * HW))


@pytest.mark.parametrize("name", ["semantic_map", "object_features"])
def test_with_every_collaborator_masked_a_payload_fusion_is_ego_only(model, batch, name):
    alone = dataclasses.replace(
        batch, agent_mask=batch.agent_mask & torch.tensor([True, False, False])
    )
    got = _pipe(model, build_fusion(name)).run(alone, torch.tensor([10.0])).detections
    ref = _pipe(model, build_fusion("none")).run(batch, torch.tensor([10.0])).detections
    for a, b in zip(
        (got.boxes, got.scores, got.valid), (ref.boxes, ref.scores, ref.valid), strict=True
    ):
        assert torch.equal(a, b)


def test_evaluate_fusions_passes_fusion_options(model):
    from v2x.evaluation import evaluate_fusions

    frames = [_frame(1, PLACEMENTS)]
    opts = {"semantic_map": {"max_fraction": 0.1}}
    rows = evaluate_fusions(model, frames, ["semantic_map"], torch.device("cpu"),
                            fusion_options=opts)  # fmt: skip
    kept = math.floor(0.1 * HW * HW + 0.5)
    control = min(HW * HW, kept * math.ceil(math.log2(HW * HW)))
    assert rows["semantic_map"]["source_bits_per_frame"] == 2 * (kept * (K + 8) * 16 + control)
