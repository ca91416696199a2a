"""Every registered codec through the pipeline with frames that have no collaborator: the ego's
result is ego-only exactly, and nothing is charged for collaborators that do not exist."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.channels import build_channel
from v2x.datasets.frame import AgentObservation, CoopFrame, collate_frames
from v2x.perception.bev import BEVGrid
from v2x.perception.detector import CoopDetector, DetectorConfig
from v2x.perception.fusion import build_fusion
from v2x.pipeline import CooperativePipeline
from v2x.semcom import CODECS, _load_all, build_codec

GRID = BEVGrid(x_range_m=(-12.8, 12.8), y_range_m=(-12.8, 12.8), resolution_m=0.4)
C = 8
SNR = torch.tensor([-5.0, 20.0])
OPTIONS = {  # small, fast settings; everything else at its defaults
    "deepjscc": {"in_channels": C, "hidden": 8},
    "digital": {"entropy_coder": "zlib"},
    "digital_fixed": {"entropy_coder": "zlib"},
    "selective": {"keep_fraction": 0.25, "inner_kwargs": {"in_channels": C, "hidden": 8}},
}
NAMES = ["analog", "deepjscc", "digital", "digital_fixed", "digital_payload", "identity", "selective"]


def test_every_registered_codec_is_covered():
    _load_all()
    assert CODECS.names() == NAMES


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frame(seed: int, agents: int) -> CoopFrame:
    rng = np.random.default_rng(seed)
    obs = []
    for i in range(agents):
        pose = np.eye(4)
        yaw = 0.4 * i
        pose[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
        pose[:3, 3] = [3.0 * i, -2.0 * i, 1.8]
        pts = np.stack([rng.uniform(-11, 11, 300), rng.uniform(-11, 11, 300),
                        rng.uniform(-1.7, 0.3, 300), rng.uniform(0, 1, 300)], axis=1)
        obs.append(AgentObservation(f"veh_{i}", "vehicle", pose, pts))
    boxes = np.array([[4.0, 2.0, 0.8, 4.5, 1.9, 1.6, 0.3]])
    return CoopFrame(f"f{seed}", obs, boxes, np.array([0]), np.array([1]))


@pytest.fixture(scope="module")
def model() -> CoopDetector:
    torch.manual_seed(0)
    cfg = DetectorConfig(grid=GRID, pillar_channels=8, backbone_channels=(8, 16),
                         backbone_layers=1, feature_channels=C, score_threshold=0.0,
                         max_detections=20)
    return CoopDetector(cfg).eval()


def _run(model, fusion: str, codec_name: str, batch):
    codec = build_codec(codec_name, **OPTIONS.get(codec_name, {}))
    pipe = CooperativePipeline(model, build_fusion(fusion), codec, build_channel("awgn"))
    return pipe.eval().run(batch, SNR)


@pytest.mark.parametrize("codec_name", NAMES)
def test_ego_alone_equals_ego_only_and_costs_nothing(model, codec_name):
    alone = collate_frames([_frame(1, 1)])
    none = _run(model, "none", "identity", alone)
    out = _run(model, "max", codec_name, alone)
    for name in ("valid", "boxes", "scores", "labels"):
        assert torch.equal(getattr(out.detections, name), getattr(none.detections, name)), name
    assert float(out.cost.channel_uses.sum()) == 0 and float(out.cost.source_bits.sum()) == 0


@pytest.mark.parametrize("codec_name", NAMES)
def test_padded_collaborator_slot_is_free_and_leaves_the_lone_ego_alone(model, codec_name):
    """Frame 0 has a collaborator, frame 1 none (its slot is padding) in the same batch."""
    batch = collate_frames([_frame(2, 2), _frame(3, 1)])
    out = _run(model, "max", codec_name, batch)
    lone = _run(model, "none", "identity", collate_frames([_frame(3, 1)]))
    k, b = SNR.numel(), 2
    for cond in range(k):
        row = cond * b + 1
        keep = out.detections.valid[row]
        ref = lone.detections.valid[cond]
        assert torch.equal(keep, ref)
        torch.testing.assert_close(out.detections.scores[row][keep], lone.detections.scores[cond][ref])
    for name in ("source_bits", "coded_bits", "channel_uses", "packets"):
        assert float(getattr(out.cost, name)[:, 1].sum()) == 0, name  # [K, B, A]
    assert not bool(out.cost.sent[:, 1].any())
