"""CooperativePipeline: K-condition batching, cost accounting per stage, masking, end to end."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from v2x.channels import build_channel
from v2x.channels.base import Channel
from v2x.datasets.frame import AgentObservation, CoopFrame, collate_frames
from v2x.perception.bev import BEVGrid
from v2x.perception.detector import CoopDetector, DetectorConfig
from v2x.perception.fusion import build_fusion
from v2x.perception.fusion_basic import MaxFusion
from v2x.perception.fusion_where2comm import Where2commFusion
from v2x.pipeline import BOX_MESSAGE_BITS, POINT_MESSAGE_BITS, CooperativePipeline
from v2x.semcom import build_codec
from v2x.semcom.base import Codec

GRID = BEVGrid(x_range_m=(-12.8, 12.8), y_range_m=(-12.8, 12.8), resolution_m=0.4)
C = 8
HW = 32  # stride-2 map of the 64 x 64 grid


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pose(x: float, y: float, yaw: float, z: float = 1.8) -> np.ndarray:
    pose = np.eye(4)
    pose[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    pose[:3, 3] = [x, y, z]
    return pose


def _frame(seed: int, placements: list[tuple[float, float, float]]) -> CoopFrame:
    rng = np.random.default_rng(seed)
    agents = []
    for i, (x, y, yaw) in enumerate(placements):
        n = int(rng.integers(150, 400))
        pts = np.stack(
            [
                rng.uniform(-11, 11, n),
                rng.uniform(-11, 11, n),
                rng.uniform(-1.7, 0.3, n),
                rng.uniform(0, 1, n),
            ],
            axis=1,
        )
        agents.append(AgentObservation(f"veh_{i}", "vehicle", _pose(x, y, yaw), pts))
    boxes = np.array([[4.0, 2.0, 0.8, 4.5, 1.9, 1.6, 0.3], [-5.0, -3.0, 0.8, 4.0, 1.8, 1.5, 1.2]])
    return CoopFrame(f"f{seed}", agents, boxes, np.array([0, 0]), np.array([1, 2]))


@pytest.fixture(scope="module")
def model() -> CoopDetector:
    torch.manual_seed(0)
    cfg = DetectorConfig(
        grid=GRID,
        pillar_channels=8,
        backbone_channels=(8, 16),
        backbone_layers=1,
        feature_channels=C,
        score_threshold=0.0,  # untrained weights: keep every candidate to have something to count
        max_detections=20,
    )
    det = CoopDetector(cfg)
    with torch.no_grad():  # non-trivial BN statistics so that features are not all alike
        for mod in det.modules():
            if isinstance(mod, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return det.eval()


@pytest.fixture(scope="module")
def batch():
    """Two frames: 3 agents and 2 agents (slot 2 of frame 1 is padding)."""
    f0 = _frame(1, [(0.0, 0.0, 0.0), (5.0, -3.0, 0.7), (-4.0, 6.0, -2.0)])
    f1 = _frame(2, [(10.0, 5.0, 1.0), (13.0, 2.0, 2.5)])
    return collate_frames([f0, f1])


def _pipe(model, fusion, codec="identity", **kw) -> CooperativePipeline:
    if isinstance(fusion, str):
        fusion = build_fusion(fusion)
    return CooperativePipeline(model, fusion, build_codec(codec), build_channel("awgn"), **kw)


def _same_detections(a, b, atol=1e-5):
    assert torch.equal(a.valid, b.valid)
    torch.testing.assert_close(a.boxes[a.valid], b.boxes[b.valid], atol=atol, rtol=1e-5)
    torch.testing.assert_close(a.scores[a.valid], b.scores[b.valid], atol=atol, rtol=1e-5)
    assert torch.equal(a.labels[a.valid], b.labels[b.valid])


SNRS = [0.0, 10.0, 30.0]


@pytest.mark.parametrize("fusion", ["max", "attention", "where2comm", "late", "early", "none"])
def test_batched_conditions_equal_separate_runs(model, batch, fusion):
    torch.manual_seed(0)
    together = _pipe(model, fusion).run(batch, torch.tensor(SNRS))
    assert together.num_conditions == 3 and together.detections.boxes.shape[0] == 3 * 2
    for k, snr in enumerate(SNRS):
        alone = _pipe(model, fusion).run(batch, torch.tensor([snr]))
        rows = slice(2 * k, 2 * k + 2)
        sub = type(alone.detections)(
            *(getattr(together.detections, n)[rows] for n in ("boxes", "scores", "labels", "valid"))
        )
        _same_detections(sub, alone.detections)
        for name in ("source_bits", "coded_bits", "channel_uses", "packets", "sent", "snr_db"):
            assert torch.equal(getattr(together.cost, name)[k], getattr(alone.cost, name)[0]), name


def test_identity_costs(model, batch):
    run = _pipe(model, "max").run(batch, torch.tensor(SNRS))
    bits = C * HW * HW * 16
    present = torch.tensor([[False, True, True], [False, True, False]])  # ego and padding: 0
    cost = run.cost
    assert cost.source_bits.shape == (3, 2, 3)
    for k, snr in enumerate(SNRS):
        uses = math.ceil(bits / math.log2(1 + 10 ** (snr / 10)))
        torch.testing.assert_close(cost.source_bits[k], present.double() * bits)
        torch.testing.assert_close(cost.coded_bits[k], present.double() * bits)
        torch.testing.assert_close(cost.channel_uses[k], present.double() * uses)
        packets = math.ceil(bits / (1460 * 8))
        torch.testing.assert_close(cost.packets[k], present.double() * packets)
        assert torch.equal(cost.sent[k], present)
        assert (cost.snr_db[k] == snr).all()


def test_none_sends_nothing_and_equals_ego_head(model, batch):
    run = _pipe(model, "none").run(batch, torch.tensor([20.0]))
    for name in ("source_bits", "coded_bits", "channel_uses", "packets"):
        assert (getattr(run.cost, name) == 0).all(), name
    assert not run.cost.sent.any()
    with torch.no_grad():
        feats = model.encode(batch.points, batch.point_mask, batch.poses)
        own = model.postprocess(*model.head(feats[:, 0]))
    _same_detections(run.detections, own)


def test_late_costs_boxes_times_288_bits(model, batch):
    run = _pipe(model, "late").run(batch, torch.tensor([0.0, 20.0]))
    assert BOX_MESSAGE_BITS == 288
    with torch.no_grad():
        feats = model.encode(batch.points, batch.point_mask, batch.poses)
    for bi in range(2):
        for slot in range(3):
            if slot == 0 or not batch.agent_mask[bi, slot]:
                want_bits = 0.0
            else:
                with torch.no_grad():
                    own = model.postprocess(*model.head(feats[bi, slot : slot + 1]))
                want_bits = float(own.valid.sum()) * 288
                assert want_bits > 0
            for k, snr in enumerate((0.0, 20.0)):
                assert float(run.cost.source_bits[k, bi, slot]) == want_bits
                uses = math.ceil(want_bits / math.log2(1 + 10 ** (snr / 10)))
                assert float(run.cost.channel_uses[k, bi, slot]) == uses
    # Late fusion keeps at least the ego's own (NMS-surviving) boxes.
    assert run.detections.valid[0].sum() >= 1


def test_early_costs_points_times_128_bits(model, batch):
    run = _pipe(model, "early").run(batch, torch.tensor([10.0]))
    assert POINT_MESSAGE_BITS == 128
    counts = batch.point_mask.sum(-1).double()
    want = counts * 128 * batch.agent_mask
    want[:, 0] = 0
    torch.testing.assert_close(run.cost.source_bits[0], want)
    torch.testing.assert_close(run.cost.channel_uses[0], torch.ceil(want / math.log2(1 + 10.0)))
    assert run.cost.sent[0].tolist() == [[False, True, True], [False, True, False]]


def test_where2comm_charges_fewer_uses_than_max(model, batch):
    snr = torch.tensor([10.0])
    full = _pipe(model, "max").run(batch, snr).cost.channel_uses
    sparse = _pipe(model, build_fusion("where2comm", max_fraction=0.1)).run(batch, snr)
    present = full > 0
    assert present.sum() == 3
    assert (sparse.cost.channel_uses[present] < 0.2 * full[present]).all()
    assert (sparse.cost.channel_uses[~present] == 0).all()
    # The selection map is charged on top of 10 % of the payload.
    assert (sparse.cost.source_bits[present] > 0.1 * C * HW * HW * 16).all()


class _SelectiveMax(MaxFusion):
    """Max fusion fed through the Where2comm selection path (sends its top cells only)."""

    selects_cells = True
    max_fraction = 0.05
    confidence = staticmethod(Where2commFusion.confidence)

    def forward(self, features, valid):
        self.seen = (features.clone(), valid.clone())
        return super().forward(features, valid)


def test_unsent_cells_are_masked_in_fusion(model):
    """A collaborator at the ego's pose (identity warp) whose unsent cells decode to zero: at
    those cells the max-fused map must equal the ego's own features (features can be negative,
    so an unmasked zero would win the max)."""
    ego = _frame(5, [(0.0, 0.0, 0.0)]).agents[0]
    other = _frame(6, [(0.0, 0.0, 0.0)]).agents[0]
    other = AgentObservation("veh_1", "vehicle", ego.pose, other.points)
    frame = CoopFrame("same", [ego, other], np.zeros((0, 7)), np.zeros(0), np.zeros(0))
    batch = collate_frames([frame])
    fusion = _SelectiveMax()
    _pipe(model, fusion).run(batch, torch.tensor([30.0]))
    feats_in, valid_in = fusion.seen
    with torch.no_grad():
        own = model.encode(batch.points, batch.point_mask, batch.poses)[0]  # [A, C, h, w]
        conf = torch.sigmoid(model.head(own[1:])[0]).amax(dim=1).view(-1)
    kept = max(1, round(0.05 * HW * HW))
    sent = torch.zeros(HW * HW, dtype=torch.bool)
    sent[conf.topk(kept).indices] = True
    sent = sent.view(HW, HW)
    assert torch.equal(valid_in[0, 1, 0], sent)  # only the sent cells count
    assert valid_in[0, 0].all()
    assert (own[0] < 0).any()  # otherwise the check below could not fail
    fused = torch.where(valid_in[0, 1], torch.maximum(own[0], own[1].half().float()), own[0])
    torch.testing.assert_close(fusion(feats_in, valid_in)[0], fused, atol=1e-5, rtol=1e-5)
    # What arrives at unsent cells is zero (and masked); at sent cells the float16 values.
    torch.testing.assert_close(feats_in[0, 1][:, ~sent], torch.zeros(C, int((~sent).sum())))


def test_where2comm_with_every_cell_is_attention(model, batch):
    """At ``max_fraction = 1`` the selection keeps every cell: the detections are attention
    fusion's, bit for bit (same codec, same float16 values, nothing masked)."""
    snr = torch.tensor(SNRS)
    dense = _pipe(model, "attention").run(batch, snr).detections
    every = _pipe(model, build_fusion("where2comm", max_fraction=1.0)).run(batch, snr).detections
    _same_detections(every, dense, atol=0)


class _RecordingWhere2comm(Where2commFusion):
    def forward(self, features, valid):
        self.seen = valid.clone()
        return super().forward(features, valid)


def test_where2comm_sends_the_cells_training_selects(model):
    """The pipeline sends the cells of ``selection_mask(selection_score(...))`` of the
    collaborator's own head, the selection the training mode fuses (a collaborator at the
    ego's pose: the warp is the identity, so the fused mask is the sent one)."""
    ego = _frame(5, [(0.0, 0.0, 0.0)]).agents[0]
    other = _frame(6, [(0.0, 0.0, 0.0)]).agents[0]
    other = AgentObservation("veh_1", "vehicle", ego.pose, other.points)
    frame = CoopFrame("same", [ego, other], np.zeros((0, 7)), np.zeros(0), np.zeros(0))
    batch = collate_frames([frame])
    fusion = _RecordingWhere2comm(max_fraction=0.1, window_cells=5)
    _pipe(model, fusion).run(batch, torch.tensor([30.0]))
    with torch.no_grad():
        own = model.encode(batch.points, batch.point_mask, batch.poses)[0]
        heat = model.head(own[1:])[0]
    chosen = fusion.selection_mask(fusion.selection_score(heat))[0, 0]
    assert int(chosen.sum()) == round(0.1 * HW * HW)
    assert torch.equal(fusion.seen[0, 1, 0], chosen)
    raw = torch.zeros(HW * HW, dtype=torch.bool)
    raw[fusion.confidence(heat).view(-1).topk(int(chosen.sum())).indices] = True
    assert not torch.equal(raw.view(HW, HW), chosen)  # the window matters here


def test_pose_noise_is_seeded(model, batch):
    a = _pipe(model, "max", pose_noise_m=0.5, pose_noise_yaw_rad=0.05, seed=3).run(
        batch, torch.tensor([30.0])
    )
    b = _pipe(model, "max", pose_noise_m=0.5, pose_noise_yaw_rad=0.05, seed=3).run(
        batch, torch.tensor([30.0])
    )
    c = _pipe(model, "max").run(batch, torch.tensor([30.0]))
    _same_detections(a.detections, b.detections, atol=0)
    assert not torch.equal(a.detections.boxes, c.detections.boxes)


def test_shipped_detector_end_to_end_cooperation_helps_where_ego_is_blind():
    """One synthetic frame with the shipped detector: AP is computable and max fusion at 30 dB
    finds at least as much of what the ego cannot see as ego-only detection does."""
    from v2x.datasets.synthetic import generate_frame
    from v2x.datasets.synthetic_config import SyntheticConfig
    from v2x.evaluation import accumulate, default_eval_config, ego_ground_truth
    from v2x.perception.average_precision import APAccumulator
    from v2x.perception.checkpoint import load_detector

    detector = load_detector()
    frame = generate_frame(SyntheticConfig(), seed=900_000, index=0)
    batch = collate_frames([frame])
    gt = ego_ground_truth(batch, detector.grid)
    assert int(gt.ego_invisible.sum()) > 0
    results = {}
    for name in ("none", "max"):
        acc = APAccumulator(default_eval_config(detector.grid))
        run = _pipe(detector, name).run(batch, torch.tensor([30.0]))
        accumulate(run, gt, [acc])
        results[name] = acc.compute()["ap"]
    for name in results:
        for group in ("overall", "subset/ego_invisible"):
            for iou in (0.3, 0.5, 0.7):
                assert 0.0 <= results[name][group][iou] <= 1.0
    blind_none = results["none"]["subset/ego_invisible"][0.5]
    blind_max = results["max"]["subset/ego_invisible"][0.5]
    assert blind_max >= blind_none
    assert blind_max > 0.1  # cooperation actually finds hidden objects (0.27 when written)
    assert results["max"]["overall"][0.5] >= results["none"]["overall"][0.5]


def test_ground_truth_visibility_rule_with_padded_agent_slots():
    """A box counts when some *present* agent sees it with ≥ min_points points; padded agent
    slots (visibility −1 after collation) must not make a frame's visibility 'unknown'."""
    from v2x.evaluation import ego_ground_truth
    from v2x.perception.losses import visible_gt_mask

    def frame(vis):
        agents = [
            AgentObservation(f"a{i}", "vehicle", np.eye(4), np.zeros((1, 4)))
            for i in range(len(vis) if vis is not None else 2)
        ]
        boxes = np.array([[1, 1, 1, 2, 2, 2, 0], [5, 5, 1, 2, 2, 2, 0], [9, 1, 1, 2, 2, 2, 0]])
        vis = None if vis is None else np.array(vis)
        return CoopFrame("f", agents, boxes, np.zeros(3), np.arange(3), vis)

    batch = collate_frames(
        [
            frame([[3, 0, 0], [0, 2, 0], [0, 0, 0]]),  # 3 agents: box 2 seen by nobody
            frame([[3, 0, 1], [0, 0, 0]]),  # 2 agents (slot 2 padded): box 1 seen by nobody
            frame(None),  # visibility unknown: every box counts
        ]
    )
    assert visible_gt_mask(batch, 1).tolist() == [
        [True, True, False],
        [True, False, True],
        [True, True, True],
    ]
    assert visible_gt_mask(batch, 2).tolist() == [
        [True, True, False],
        [True, False, False],
        [True, True, True],
    ]
    gt = ego_ground_truth(batch, GRID, min_points=1)
    assert gt.ignored.tolist() == [[False, False, True], [False, True, False], [False] * 3]
    # Counted, but the ego has fewer than min_points in it (unknown visibility: never).
    assert gt.ego_invisible.tolist() == [[False, True, False], [False, False, False], [False] * 3]


def test_perturb_poses_statistics_and_invariants():
    from v2x.perception.warp import perturb_poses

    b, a = 4000, 3
    poses = (
        torch.from_numpy(
            np.stack([_pose(3.0, -2.0, 0.4), _pose(-5.0, 7.0, 2.0, z=40.0), _pose(0.0, 1.0, -1.0)])
        )
        .expand(b, a, 4, 4)
        .clone()
    )
    assert perturb_poses(poses, 0.0, 0.0) is poses
    g = torch.Generator().manual_seed(0)
    noisy = perturb_poses(poses, 0.5, 0.02, g)
    assert noisy.dtype == torch.float64
    assert torch.equal(noisy[:, 0], poses[:, 0])  # the ego keeps its pose
    d_xy = noisy[:, 1:, :2, 3] - poses[:, 1:, :2, 3]
    assert float(d_xy.std()) == pytest.approx(0.5, rel=0.05)
    assert abs(float(d_xy.mean())) < 0.03
    assert torch.equal(noisy[..., 2, 3], poses[..., 2, 3])  # heights unchanged
    yaw = lambda p: torch.atan2(p[..., 1, 0], p[..., 0, 0])  # noqa: E731
    d_yaw = torch.remainder(yaw(noisy[:, 1:]) - yaw(poses[:, 1:]) + math.pi, 2 * math.pi) - math.pi
    assert float(d_yaw.std()) == pytest.approx(0.02, rel=0.05)
    rot = noisy[..., :3, :3]
    eye = torch.eye(3, dtype=torch.float64).expand_as(rot)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye)
    # Yaw-only noise rotates the agent about its own position.
    turned = perturb_poses(poses[:10], 0.0, 0.1, torch.Generator().manual_seed(1))
    torch.testing.assert_close(turned[..., :3, 3], poses[:10, :, :3, 3], atol=0, rtol=0)
    # Seeded: same generator seed, same noise.
    again = perturb_poses(poses, 0.5, 0.02, torch.Generator().manual_seed(0))
    assert torch.equal(again, noisy)


def test_nms_detections_class_aware_and_agnostic():
    from v2x.perception.detector import nms_detections

    boxes = torch.tensor(
        [[[0, 0, 1, 4, 2, 1.5, 0], [0.2, 0, 1, 4, 2, 1.5, 0], [9, 9, 1, 4, 2, 1.5, 0]]]
    )
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    valid = torch.tensor([[True, True, True]])
    aware = nms_detections(boxes, scores, torch.tensor([[0, 1, 0]]), valid, 0.1)
    agnostic = nms_detections(
        boxes, scores, torch.tensor([[0, 1, 0]]), valid, 0.1, class_aware=False
    )
    same = nms_detections(boxes, scores, torch.tensor([[0, 0, 0]]), valid, 0.1)
    assert aware.valid.tolist() == [[True, True, True]]
    assert agnostic.valid.tolist() == [[True, False, True]]
    assert same.valid.tolist() == [[True, False, True]]
    # Invalid candidates stay invalid and cannot suppress others.
    masked = nms_detections(
        boxes, scores, torch.zeros(1, 3, dtype=torch.long), torch.tensor([[False, True, True]]), 0.1
    )
    assert masked.valid.tolist() == [[False, True, True]]


def test_accumulate_one_accumulator_per_condition(model, batch):
    from v2x.evaluation import accumulate, default_eval_config, ego_ground_truth
    from v2x.perception.average_precision import APAccumulator

    run = _pipe(model, "max").run(batch, torch.tensor([5.0, 25.0]))
    gt = ego_ground_truth(batch, GRID)
    with pytest.raises(ValueError, match="2 accumulators"):
        accumulate(run, gt, [APAccumulator(default_eval_config(GRID))])
    accs = [APAccumulator(default_eval_config(GRID)) for _ in range(2)]
    accumulate(run, gt, accs)
    first, second = (acc.compute() for acc in accs)
    assert first["num_frames"] == second["num_frames"] == 2
    assert first["ap"] == second["ap"]  # identity codec: both conditions see the same features
    assert "per_frame" in str(first["convention"])


class _FarSideMax(MaxFusion):
    """Max fusion with a selection that sends only the collaborator's cells with local x > 0."""

    selects_cells = True
    max_fraction = 0.25

    @staticmethod
    def confidence(heat_logits):
        conf = torch.zeros(heat_logits.shape[0], 1, *heat_logits.shape[2:])
        conf[..., HW // 2 :] = 1.0
        return conf


def test_collaborator_with_every_useful_cell_unsent_leaves_ego_result_unchanged(model):
    """The collaborator sits 16 m ahead: every cell it sends lies beyond the ego's grid, every
    cell the ego could use is unsent. Max fusion must then give exactly the ego-only result,
    while sending everything does change it."""
    f = _frame(11, [(0.0, 0.0, 0.0), (16.0, 0.0, 0.0)])
    batch = collate_frames([f])
    snr = torch.tensor([30.0])
    ego_only = _pipe(model, "none").run(batch, snr).detections
    sparse = _pipe(model, _FarSideMax()).run(batch, snr)
    assert (sparse.cost.channel_uses[0, 0, 1] > 0).item()  # it did transmit
    _same_detections(sparse.detections, ego_only, atol=0)
    dense = _pipe(model, "max").run(batch, snr).detections
    assert not (
        torch.equal(dense.valid, ego_only.valid) and torch.equal(dense.boxes, ego_only.boxes)
    )


def test_digital_payload_that_never_arrives_cannot_move_max_fusion_off_ego_only(model, batch):
    """A digital budget too small for any segment: decoded maps are 0 but marked undelivered,
    so max fusion must equal ego-only (zeros would otherwise raise negative ego features)."""
    snr = torch.tensor([20.0])
    none = CooperativePipeline(
        model, build_fusion("none"), build_codec("identity"), build_channel("awgn")
    ).run(batch, snr)
    starved = build_codec("digital", max_channel_uses=1, entropy_coder="zlib")
    out = CooperativePipeline(model, MaxFusion(), starved, build_channel("awgn")).run(batch, snr)
    _same_detections(out.detections, none.detections)


def test_digital_codec_marks_which_cells_arrived():
    from v2x.channels.link import LinkState

    torch.manual_seed(0)
    feats = torch.randn(2, 4, 8, 8)
    codec = build_codec("digital", entropy_coder="zlib")
    link = LinkState.from_snr(30.0, 2)
    tx = codec.encode(feats, link)
    y, state = build_channel("awgn")(tx.symbols, link.snr_db)
    codec.decode(tx.received(y, state), link)
    assert tx.meta["delivered"].shape == (2, 1, 8, 8) and bool(tx.meta["delivered"].all())
    # A budget that fits the header and a few rows: the dropped rows are not delivered.
    small = build_codec("digital", entropy_coder="zlib", max_channel_uses=300, min_bits=8)
    tx = small.encode(feats, link)
    y, state = build_channel("awgn")(tx.symbols, link.snr_db)
    out = small.decode(tx.received(y, state), link)
    delivered = tx.meta["delivered"][:, 0]
    assert (~delivered).any()
    assert torch.all(out.permute(1, 0, 2, 3)[:, ~delivered] == 0)


def _gt_from_detections(model, batch, fusion: str = "none", per_frame: int = 3):
    """Ground truth = the best boxes of a run at 30 dB (so that matches happen), one ignored
    and one ``ego_invisible`` box per frame."""
    from v2x.evaluation import EgoGroundTruth, default_eval_config
    from v2x.perception.ap_range import range_mask

    det = _pipe(model, fusion).run(batch, torch.tensor([30.0])).detections
    inside = range_mask(det.boxes.reshape(-1, 7), default_eval_config(GRID).eval_range)
    usable = det.valid & inside.view(det.valid.shape)
    order = torch.argsort(torch.where(usable, det.scores, -1.0), dim=1, descending=True)
    top = order[:, :per_frame]
    boxes = torch.gather(det.boxes, 1, top[..., None].expand(-1, -1, 7)).double()
    boxes[:, 1:, 0] += 0.2  # imperfect copies: IoU between the thresholds
    labels = torch.gather(det.labels, 1, top)
    present = torch.gather(usable, 1, top)
    flag = torch.zeros_like(present)
    ignored, invisible = flag.clone(), flag.clone()
    ignored[:, -1], invisible[:, 0] = True, True
    assert int(present.sum()) >= 4
    return EgoGroundTruth(boxes, labels, present, ignored & present, invisible & present)


def _same_ap(a: dict, b: dict) -> None:
    assert a["num_frames"] == b["num_frames"] and a["ap"].keys() == b["ap"].keys()
    for name in a["ap"]:
        for thr in a["ap"][name]:
            da, db = a["details"][name][thr], b["details"][name][thr]
            assert (da["num_gt"], da["num_tp"], da["num_fp"]) == (db["num_gt"], db["num_tp"],
                                                                  db["num_fp"])  # fmt: skip
            np.testing.assert_array_equal(da["precision"], db["precision"])
            assert a["ap"][name][thr] == pytest.approx(b["ap"][name][thr], nan_ok=True, abs=0)


@pytest.mark.parametrize("fusion", ["max", "where2comm", "late", "none"])
def test_batched_sweep_ap_equals_per_condition_ap(model, batch, fusion):
    """The batched path (K SNRs in one run, identical conditions sharing one detection and one
    evaluation pass) gives exactly the AP of running and scoring each condition alone."""
    from v2x.evaluation import accumulate, default_eval_config
    from v2x.perception.average_precision import APAccumulator

    gt = _gt_from_detections(model, batch, fusion)
    cfg = default_eval_config(GRID)
    snrs = [-10.0, 0.0, 10.0, 30.0]
    together = [APAccumulator(cfg) for _ in snrs]
    accumulate(_pipe(model, fusion).run(batch, torch.tensor(snrs)), gt, together)
    for k, snr in enumerate(snrs):
        alone = [APAccumulator(cfg)]
        accumulate(_pipe(model, fusion).run(batch, torch.tensor([snr])), gt, alone)
        _same_ap(together[k].compute(), alone[0].compute())
    assert any(r["num_tp"] for r in together[0].compute()["details"]["overall"].values())


def test_accumulate_groups_identical_conditions_without_mixing_others(model, batch):
    """Conditions 0/2 and 1/3 are copies of two different noisy (analog) conditions: each
    accumulator must hold exactly its own condition's frames."""
    from v2x.evaluation import accumulate, condition_groups, default_eval_config
    from v2x.perception.average_precision import APAccumulator
    from v2x.perception.detector import Detections
    from v2x.pipeline import RunOutput

    torch.manual_seed(0)
    run = _pipe(model, "max", codec="analog").run(batch, torch.tensor([-20.0, 30.0]))
    b = batch.batch_size
    rows = torch.tensor([0, 1, 0, 1])[:, None] * b + torch.arange(b)
    det = run.detections
    tiled = Detections(
        *(t[rows.reshape(-1)] for t in (det.boxes, det.scores, det.labels, det.valid))
    )
    assert condition_groups(tiled, 4) == [[0, 2], [1, 3]]
    gt = _gt_from_detections(model, batch, "max")
    cfg = default_eval_config(GRID)
    accs = [APAccumulator(cfg) for _ in range(4)]
    accumulate(RunOutput(tiled, run.cost, 4), gt, accs)
    for k in range(4):
        one = [APAccumulator(cfg)]
        src = slice((k % 2) * b, (k % 2 + 1) * b)
        single = Detections(*(t[src] for t in (det.boxes, det.scores, det.labels, det.valid)))
        accumulate(RunOutput(single, run.cost, 1), gt, one)
        _same_ap(accs[k].compute(), one[0].compute())
    # an accumulator with other settings in a group still scores with its own settings
    other = dataclasses.replace(cfg, sort="global", iou_thresholds=(0.1, 0.3))
    mixed = [APAccumulator(cfg), APAccumulator(cfg), APAccumulator(other), APAccumulator(cfg)]
    accumulate(RunOutput(tiled, run.cost, 4), gt, mixed)
    alone = [APAccumulator(other)]
    single = Detections(*(t[:b] for t in (det.boxes, det.scores, det.labels, det.valid)))
    accumulate(RunOutput(single, run.cost, 1), gt, alone)
    _same_ap(mixed[2].compute(), alone[0].compute())
    _same_ap(mixed[0].compute(), accs[0].compute())
    first, second = (acc.compute()["details"]["overall"][0.3] for acc in accs[:2])
    assert (first["num_tp"], first["num_fp"]) != (second["num_tp"], second["num_fp"])


class _GatedNoisyCodec(Codec):
    """A stand-in for a gated learned codec: SNR-dependent noise on every map, and a map is
    delivered (``meta["delivered"]``, one flag per item) only above 5 dB."""

    uses_channel = False

    def encode(self, features, link):
        from v2x.semcom.base import Cost, Transmission

        n = features.shape[0]
        zeros = torch.zeros(n, dtype=torch.float64)
        noise = torch.randn_like(features) * (10.0 ** (-link.snr_db / 20.0)).view(n, 1, 1, 1)
        meta = {"payload": features + noise, "delivered": link.snr_db > 5.0}
        return Transmission(None, Cost(zeros, zeros, zeros + 100.0, zeros + 1.0, zeros), meta=meta)

    def decode(self, received, link):
        return received.meta["payload"]


def test_conditions_whose_maps_all_fail_share_one_pass_and_equal_ego_only(model, batch):
    import v2x.pipeline as vp

    snrs = [-10.0, 0.0, 10.0, 20.0]
    groups = []
    original = vp._distinct_conditions

    def spy(*tensors):
        out = original(*tensors)
        groups.append(out[0])
        return out

    pipe = CooperativePipeline(model, MaxFusion(), _GatedNoisyCodec(), build_channel("awgn"))
    vp._distinct_conditions = spy
    try:
        together = pipe.run(batch, torch.tensor(snrs))
    finally:
        vp._distinct_conditions = original
    assert groups == [[0, 2, 3]]  # -10 and 0 dB: nothing delivered, one pass serves both
    none = _pipe(model, "none").run(batch, torch.tensor([0.0])).detections
    b = batch.batch_size
    for k, snr in enumerate(snrs):
        rows = slice(k * b, (k + 1) * b)
        sub = type(none)(
            *(getattr(together.detections, n)[rows] for n in ("boxes", "scores", "labels", "valid"))
        )
        if snr < 5:  # nothing arrived: exactly the ego-only result
            _same_detections(sub, none, atol=0)
        else:
            assert not torch.equal(sub.scores, none.scores)


class _ReducedMapsCodec(_GatedNoisyCodec):
    """``_GatedNoisyCodec`` whose decoded maps are of a reduced ``dtype`` (a reduced-precision
    codec's, as DeepJSCC's ``precision`` in CUDA inference), or their values widened to float32
    (``widened``), delivered per cell (a random ~70 % of each map's cells above 5 dB)."""

    def __init__(self, dtype: torch.dtype, widened: bool) -> None:
        super().__init__()
        self.dtype, self.widened = dtype, widened

    def encode(self, features, link):
        tx = super().encode(features, link)
        n, _, h, w = features.shape
        cells = torch.rand(n, 1, h, w) < 0.7
        tx.meta["delivered"] = cells & tx.meta["delivered"].view(n, 1, 1, 1)
        return tx

    def decode(self, received, link):
        maps = received.meta["payload"].to(self.dtype)
        return maps.float() if self.widened else maps


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fusion", ["max", "attention", "where2comm"])
def test_reduced_precision_decoded_maps_give_the_fusion_of_their_float32_values(
    model, batch, fusion, dtype
):
    """Decoded maps of a reduced dtype (``Codec.decode``'s contract allows a reduced-precision
    codec's own dtype) go through the pipeline's masks, condition sharing, warp and fusion as
    their values in float32 do: the same detections bit for bit and the same costs, the counts
    of cells used exact (a per-cell delivery mask summed in bfloat16 would round them)."""
    snr = torch.tensor([0.0, 10.0, 10.0, 30.0])
    runs = []
    for widened in (False, True):
        pipe = CooperativePipeline(
            model, build_fusion(fusion), _ReducedMapsCodec(dtype, widened), build_channel("awgn")
        )
        torch.manual_seed(3)
        runs.append(pipe.run(batch, snr))
    got, want = runs
    for name in ("boxes", "scores", "labels", "valid"):
        assert torch.equal(getattr(got.detections, name), getattr(want.detections, name)), name
    for name, value in vars(got.cost).items():
        other = getattr(want.cost, name)
        if torch.is_tensor(value):  # exactly (mcs: NaN, no MCS)
            torch.testing.assert_close(value, other, rtol=0, atol=0, equal_nan=True, msg=name)
        else:
            assert value == other, name
    if fusion != "where2comm":  # (whole maps sent: each delivers ~70 % of its cells)
        used = got.cost.cells_used[:, :, 1:][batch.agent_mask[:, 1:].expand(len(snr), -1, -1)]
        assert bool(((used > 256) & (used % 2 == 1)).any())  # counts bfloat16 could not hold


@pytest.mark.parametrize("fusion", ["max", "late"])
def test_per_link_snr_equal_on_every_link_matches_one_snr_per_condition(model, batch, fusion):
    """``snr_db`` as ``[K, B, A]`` (one SNR per link) with every link at the condition's SNR gives
    what ``[K]`` gives, detections and costs; the ego's and padded slots may hold NaN."""
    per_condition = torch.tensor(SNRS)
    per_link = per_condition.view(-1, 1, 1).expand(-1, *batch.agent_mask.shape).clone()
    per_link[:, :, 0] = float("nan")  # the ego sends nothing
    per_link[:, ~batch.agent_mask] = float("nan")  # padding
    torch.manual_seed(0)
    a = _pipe(model, fusion, "analog").run(batch, per_condition)
    torch.manual_seed(0)
    b = _pipe(model, fusion, "analog").run(batch, per_link)
    _same_detections(a.detections, b.detections)
    sent = a.cost.sent
    for name in ("source_bits", "coded_bits", "channel_uses", "packets", "sent"):
        assert torch.equal(getattr(a.cost, name), getattr(b.cost, name)), name
    assert torch.equal(a.cost.snr_db[sent], b.cost.snr_db[sent])


def test_per_link_snr_reaches_each_link_and_bad_shapes_fail(model, batch):
    """Frame 0 has two collaborators: one at 30 dB, one at -30 dB; analog noise follows each."""
    snr = torch.full((1, *batch.agent_mask.shape), 30.0)
    snr[0, 0, 2] = -30.0
    pipe = _pipe(model, "max", "analog")
    seen = []

    class Recording(Channel):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, snr_db):
            seen.append(snr_db.clone())
            return self.inner(x, snr_db)

    pipe.channel = Recording(pipe.channel)
    out = pipe.run(batch, snr)
    assert out.cost.snr_db[0, 0, 1] == 30.0 and out.cost.snr_db[0, 0, 2] == -30.0
    # Rows are [K, B, A-1] flattened: frame 0's collaborators, then frame 1's (one is padding).
    assert seen[0][:2].tolist() == [30.0, -30.0] and seen[0][2].item() == 30.0
    with pytest.raises(ValueError, match=r"\[K, B, A\]"):
        _pipe(model, "max", "analog").run(batch, torch.zeros(1, 2, 5))
    bad = snr.clone()
    bad[0, 0, 1] = float("nan")
    with pytest.raises(ValueError, match="finite on every sent link"):
        _pipe(model, "max", "analog").run(batch, bad)


def test_evaluate_fusions_headline_metrics(model, batch):
    """One evaluation path for every fusion: batch size does not change a number, ego-only
    sends nothing, intervals bracket their estimate, and the convention is reported."""
    from v2x.evaluation import HEADLINE_METRICS, evaluate_fusions

    f0 = _frame(1, [(0.0, 0.0, 0.0), (5.0, -3.0, 0.7), (-4.0, 6.0, -2.0)])
    f1 = _frame(2, [(10.0, 5.0, 1.0), (13.0, 2.0, 2.5)])
    frames = [f0, f1, _frame(3, [(0.0, 1.0, 0.2), (-3.0, -2.0, 1.0)])]
    one = evaluate_fusions(model, frames, ["none", "max"], torch.device("cpu"), batch_size=1,
                           bootstrap=20)  # fmt: skip
    all_ = evaluate_fusions(model, frames, ["none", "max"], torch.device("cpu"), batch_size=3,
                            bootstrap=20)  # fmt: skip
    for fusion in ("none", "max"):
        for key, _, _ in HEADLINE_METRICS:
            a, b = one[fusion][key], all_[fusion][key]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9), key
            lo, hi = one[fusion][f"{key}_ci"]
            assert math.isnan(a) or lo - 1e-12 <= a <= hi + 1e-12 or math.isnan(lo)
        assert one[fusion]["num_frames"] == 3
        assert one[fusion]["convention"]["sort"] == "per_frame"
    assert one["none"]["source_bits_per_frame"] == 0.0
    assert one["max"]["source_bits_per_frame"] > 0.0
    # the CUDA-graph option is speed only (on the CPU: eager), and the model's setting returns
    graphed = evaluate_fusions(model, frames, ["max"], torch.device("cpu"), batch_size=3,
                               bootstrap=20, cuda_graph=True)  # fmt: skip
    assert graphed["max"]["vehicle_ap_50"] == all_["max"]["vehicle_ap_50"]
    assert model.encode_graphs is None
    assert not math.isnan(one["max"]["vehicle_ap_50"])  # every GT box here is a car
    # ids without a sequence part are their own sequence: the sequence bootstrap is then the
    # frame bootstrap, draw for draw
    towns = evaluate_fusions(model, frames, ["max"], torch.device("cpu"), bootstrap=20,
                             bootstrap_unit="sequence")  # fmt: skip
    for key, _, _ in HEADLINE_METRICS:
        assert towns["max"][f"{key}_ci"] == pytest.approx(all_["max"][f"{key}_ci"], nan_ok=True)
    assert towns["max"]["bootstrap_unit"] == "sequence"
    assert all_["max"]["bootstrap_unit"] == "frame"  # auto: every sequence holds one frame
    # a reader's meta["sequence"] groups frames (f0 and f1 one drive): auto resamples drives,
    # and with two drives of 2 + 1 frames the interval is another one
    named = [dataclasses.replace(f, meta={"sequence": s}) for f, s in zip(frames, "aab")]
    assert [f.sequence for f in named] == ["a", "a", "b"]
    drives = evaluate_fusions(model, named, ["max"], torch.device("cpu"), bootstrap=20)
    assert drives["max"]["bootstrap_unit"] == "sequence"
    assert (drives["max"]["bootstrap_units"], all_["max"]["bootstrap_units"]) == (2, 3)
    # with ego-only among the fusions, the others carry their paired gain over it
    gained = evaluate_fusions(model, frames, ["none", "max"], torch.device("cpu"), bootstrap=20)
    row, ego = gained["max"], gained["none"]
    assert row["gain_over"] == "none" and "gain_over" not in ego
    assert row["vehicle_ap_50_gain"] == pytest.approx(row["vehicle_ap_50"] - ego["vehicle_ap_50"])
    lo, hi = row["vehicle_ap_50_gain_ci"]
    assert -1.0 <= lo <= hi <= 1.0
    assert drives["max"]["vehicle_ap_50"] == all_["max"]["vehicle_ap_50"]


def test_evaluate_fusions_reports_further_sort_conventions(model, batch):
    """``sorts``: the first convention gives the row, the others come from the same matches
    under ``sort/<name>``; on one frame both sorts rank detections alike."""
    from v2x.evaluation import HEADLINE_METRICS, evaluate_fusions

    frames = [
        _frame(1, [(0.0, 0.0, 0.0), (5.0, -3.0, 0.7), (-4.0, 6.0, -2.0)]),
        _frame(2, [(10.0, 5.0, 1.0), (13.0, 2.0, 2.5)]),
        _frame(3, [(0.0, 1.0, 0.2), (-3.0, -2.0, 1.0)]),
    ]
    cpu = torch.device("cpu")
    plain = evaluate_fusions(model, frames, ["max"], cpu, bootstrap=10)["max"]
    both = evaluate_fusions(model, frames, ["max"], cpu, bootstrap=10,
                            sorts=("per_frame", "global"))["max"]  # fmt: skip
    alone = evaluate_fusions(model, frames, ["max"], cpu, bootstrap=10, sorts=("global",))["max"]
    assert both["convention"]["sort"] == "per_frame"
    assert both["sort/global"]["convention"]["sort"] == "global"
    assert alone["convention"]["sort"] == "global" and "sort/per_frame" not in alone
    for key, _, _ in HEADLINE_METRICS:
        for k in (key, f"{key}_ci"):
            assert both[k] == pytest.approx(plain[k], nan_ok=True), k
            assert both["sort/global"][k] == pytest.approx(alone[k], nan_ok=True), k
    one = evaluate_fusions(model, frames[:1], ["max"], cpu, sorts=("per_frame", "global"))["max"]
    for key, _, _ in HEADLINE_METRICS:
        assert one["sort/global"][key] == pytest.approx(one[key], nan_ok=True), key


def test_harq_rounds_reach_the_ledger_and_deliver_what_the_first_round_lost(model, batch):
    # MCS 14 needs ≈ 7 dB: at 3 dB the first round loses its blocks; two chase-combined
    # retransmissions reach ≈ 7.8 dB. Same seed: the first round is the same in both runs.
    from v2x.semcom.digital_blocks import block_code_len

    snr = torch.tensor([3.0])
    costs = []
    for rounds in (0, 2):
        codec = build_codec("digital_fixed", harq_max_rounds=rounds)
        pipe = CooperativePipeline(model, build_fusion("max"), codec, build_channel("awgn"))
        torch.manual_seed(0)
        costs.append(pipe.run(batch, snr).cost)
    c0, c2 = costs
    sent = c0.sent
    extra = c2.channel_uses - c0.channel_uses
    assert bool((extra[sent] > 0).all()) and bool((extra % block_code_len(14, 1024) == 0).all())
    assert float(c0.retransmissions.sum()) == 0 and bool((c2.retransmissions[sent] > 0).all())
    assert torch.equal(c0.packets, c2.packets) and torch.equal(c0.source_bits, c2.source_bits)
    assert float(c0.cells_used.sum()) == 0 < float(c2.cells_used.sum())
    assert float(c2.packets_crc_failed.sum()) < float(c0.packets_crc_failed.sum())


def test_nms_detections_keep_exactly_what_batched_nms_keeps():
    """``valid`` after ``nms_detections`` is the candidates ``batched_rotated_nms`` keeps (read
    from its indices on the host here), for batches with kept, suppressed, padded and empty
    sets."""
    from v2x.perception.detector import nms_detections
    from v2x.perception.nms import batched_rotated_nms

    gen = torch.Generator().manual_seed(5)
    b, k = 6, 40
    centres = torch.rand(b, k, 2, generator=gen) * 12
    sizes = torch.rand(b, k, 3, generator=gen) * 3 + 1
    boxes = torch.cat([centres, torch.ones(b, k, 1), sizes, torch.rand(b, k, 1, generator=gen) * 3], 2)
    scores = torch.rand(b, k, generator=gen)
    labels = torch.randint(0, 3, (b, k), generator=gen)
    valid = torch.rand(b, k, generator=gen) < 0.7
    valid[1] = False  # nothing to keep
    valid[2, 5:] = False  # a padded set
    got = nms_detections(boxes, scores, labels, valid, 0.1)
    result = batched_rotated_nms(boxes, scores, labels, valid, 0.1)
    want = torch.zeros(b, k, dtype=torch.bool)
    for row, (idx, mask) in enumerate(zip(result.indices.tolist(), result.mask.tolist(), strict=True)):
        for i, m in zip(idx, mask, strict=True):
            if m:
                want[row, i] = True
    assert torch.equal(got.valid, want)
    assert 0 < int(want.sum()) < int(valid.sum())  # some kept, some suppressed: not vacuous
    assert not bool(got.valid[1].any())


def test_to_device_async_gives_the_same_values():
    from v2x.common import to_device_async

    t = torch.arange(6, dtype=torch.float32).view(2, 3)
    same = to_device_async(t, "cpu")
    assert torch.equal(same, t)
    if torch.cuda.is_available():
        on_gpu = to_device_async(t, "cuda")
        assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), t)
        assert to_device_async(on_gpu, "cuda") is on_gpu


def test_distinct_conditions_read_channels_last_maps_in_place_with_the_same_groups(monkeypatch):
    """DeepJSCC's decoded maps are channels-last on CUDA: the grouping reads them in memory
    order (no copy of a whole map) and finds the groups of the channels-first layout."""
    from v2x.conditions import distinct_conditions

    maps = torch.randn(5, 2, 3, 4, 6, 7)  # [K, B, A-1, C, h, w]
    maps[3] = maps[0]
    maps[4] = maps[1]
    maps[4, 1, 2, 3, 5, 6] = -maps[4, 1, 2, 3, 5, 6]  # one value apart: not the same
    sent = (torch.rand(5, 2, 3, 1, 6, 7) > 0.3).float()
    sent[3] = sent[0]
    cl = maps.reshape(30, 4, 6, 7).contiguous(memory_format=torch.channels_last).view(maps.shape)
    assert not cl.is_contiguous()
    want = distinct_conditions(maps, sent)
    assert want[0] == [0, 1, 2, 4]
    copies = []
    original = torch.Tensor.contiguous

    def counting(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        copies.append(out.data_ptr() != self.data_ptr())
        return out

    monkeypatch.setattr(torch.Tensor, "contiguous", counting)
    got = distinct_conditions(cl, sent)
    assert got[0] == want[0] and torch.equal(got[1], want[1])
    assert not any(copies)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize(
    ("fusion", "codec"),
    [
        ("max", "identity"), ("max", "analog"), ("max", "deepjscc"), ("attention", "analog"),
        ("where2comm", "identity"), ("late", "identity"), ("early", "identity"),
        ("none", "identity"),
    ],
)  # fmt: skip
def test_a_channels_last_detector_gives_the_channels_first_detections(
    model, batch, fusion, codec, device, monkeypatch
):
    """``configure_inference(channels_last=True)`` (the sweep's detector on CUDA,
    ``eval.channels_last``): the features leave the backbone NHWC and every stage after it
    (the collaborators' rows, codecs, warp, fusions — on CUDA their Triton kernels —, head,
    late and early fusion) takes them so: the same detections and cost as the channels-first
    detector's, up to the rounding of the convolutions' other summation order (on CUDA
    without TF32, whose rounding would be coarser than the comparison)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        _channels_last_against_first(model, batch, fusion, codec, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


def _channels_last_against_first(model, batch, fusion, codec, device) -> None:
    model = copy.deepcopy(model).to(device)
    batch = batch.to(device)
    nhwc = copy.deepcopy(model).configure_inference("fp32", channels_last=True)
    features = nhwc.encode(batch.points, batch.point_mask, batch.poses)
    c, w = features.shape[2], features.shape[4]
    assert features.stride()[2:] == (1, w * c, c)  # each map NHWC
    options = {"in_channels": C, "hidden": 8} if codec == "deepjscc" else {}
    torch.manual_seed(0)
    weights = build_codec(codec, **options).state_dict()
    runs = []
    for detector in (model, nhwc):
        torch.manual_seed(0)
        coder = build_codec(codec, **options)
        coder.load_state_dict(weights)
        pipe = CooperativePipeline(detector, build_fusion(fusion), coder, build_channel("awgn"))
        runs.append(pipe.to(device).eval().run(batch, torch.tensor(SNRS, device=device)))
    _same_detections(runs[1].detections, runs[0].detections, atol=1e-4)
    for name in ("source_bits", "channel_uses", "packets", "sent"):
        assert torch.equal(getattr(runs[1].cost, name), getattr(runs[0].cost, name)), name


@pytest.mark.parametrize(
    ("device", "precision"),
    [("cpu", "bf16"), pytest.param("cuda", "fp16", marks=pytest.mark.gpu)],
)
@pytest.mark.parametrize(
    ("fusion", "codec"),
    [
        ("max", "identity"), ("max", "analog"), ("max", "deepjscc"), ("max", "digital_fixed"),
        ("attention", "analog"), ("where2comm", "identity"), ("late", "identity"),
        ("none", "identity"),
    ],
)  # fmt: skip
def test_a_reduced_precision_encoders_own_maps_give_their_float32_copies_detections(
    model, batch, fusion, codec, device, precision, monkeypatch
):
    """At a reduced precision the pipeline takes the encoder's maps in its own dtype
    (``encode(float_output=False)``: float16 / bfloat16, what the sweep's feature cache keeps)
    and reads them exactly as their float32 copies: the codecs get float32 rows, the fusions
    (on CUDA the Triton kernel) the ego's map as float32, the ego-alone head its autocast's
    own rounding — bit for bit the detections and cost of the same maps handed over as
    float32."""
    from v2x.perception.detector import CoopDetector

    reduced = copy.deepcopy(model).to(device).configure_inference(precision)
    batch = batch.to(device)
    maps = reduced.encode(batch.points, batch.point_mask, batch.poses, float_output=False)
    assert maps.dtype == reduced.encoded_dtype != torch.float32
    options = {"in_channels": C, "hidden": 8} if codec == "deepjscc" else {}
    torch.manual_seed(0)
    weights = build_codec(codec, **options).state_dict()
    runs, original = [], CoopDetector.encode
    for float_maps in (False, True):
        if float_maps:  # the maps handed over as float32, whatever the caller asks
            monkeypatch.setattr(
                CoopDetector, "encode", lambda self, *a, float_output=True: original(self, *a)
            )
        torch.manual_seed(0)
        coder = build_codec(codec, **options)
        coder.load_state_dict(weights)
        pipe = CooperativePipeline(reduced, build_fusion(fusion), coder, build_channel("awgn"))
        runs.append(pipe.to(device).eval().run(batch, torch.tensor(SNRS, device=device)))
    ours, floats = (r.detections for r in runs)
    for name in ("valid", "boxes", "scores", "labels"):
        assert torch.equal(getattr(ours, name), getattr(floats, name)), name
    for name in ("source_bits", "channel_uses", "packets", "sent", "cells_used"):
        assert torch.equal(getattr(runs[0].cost, name), getattr(runs[1].cost, name)), name


def test_only_codecs_reading_reduced_maps_get_them_and_a_new_encode_gets_float32():
    """``Codec.reads_reduced_maps``: identity and analog take a reduced-precision encoder's
    maps as they are (``collaborator_rows(keep_dtype=True)``: the same values, no float32
    copy), DeepJSCC and the digital chain float32 rows; a subclass with an ``encode`` of its
    own gets float32 rows unless it declares otherwise."""
    from v2x.perception.fusion_base import collaborator_rows
    from v2x.semcom.base import CODECS
    from v2x.semcom.identity import IdentityCodec

    assert CODECS.get("identity").reads_reduced_maps and CODECS.get("analog").reads_reduced_maps
    assert not CODECS.get("deepjscc").reads_reduced_maps
    assert not CODECS.get("digital").reads_reduced_maps

    class Renamed(IdentityCodec):  # inherits encode: still reads them
        pass

    class Own(IdentityCodec):
        def encode(self, features, link):
            return super().encode(features, link)

        def cost_before_air(self, shape, snr_db):
            return super().cost_before_air(shape, snr_db)

    assert Renamed.reads_reduced_maps and not Own.reads_reduced_maps
    maps = torch.randn(2, 3, 4, 5, 6).to(torch.bfloat16)
    kept, floats = collaborator_rows(maps, keep_dtype=True), collaborator_rows(maps)
    assert kept.dtype == torch.bfloat16 and floats.dtype == torch.float32
    assert torch.equal(kept.float(), floats) and torch.equal(floats, maps[:, 1:].float().reshape(4, 4, 5, 6))
