"""The semantic map over the digital chain: over a clean link it decodes as over the identity
codec, up to the quantiser's rounding, and never drags the ego below its own AP.

The digital codec fits each map into the sweep's channel-use share (``codec_options.digital.
max_channel_uses``, 98,304) by lowering its quantiser depth. A semantic map sent with its
background (far-negative logits, unsupervised box values) spent that budget and the quantiser's
range on cells that can never become boxes: the depth fell to 2–3 bits, the box values of the
object cells came back 0.25 cells / 25 % / 20° off, and these boxes won the fusion by their
(rounded-up) confidence: AP@0.5 far below ego-only at 30 dB with every cell delivered.
"""

from __future__ import annotations

import pytest
import torch

from v2x.channels import build_channel
from v2x.datasets.frame import collate_frames
from v2x.datasets.synthetic import generate_sequence
from v2x.datasets.synthetic_config import SyntheticConfig
from v2x.evaluation import accumulate, default_eval_config, ego_ground_truth
from v2x.perception.average_precision import APAccumulator
from v2x.perception.checkpoint import load_detector
from v2x.perception.fusion import build_fusion
from v2x.perception.semantic import payload_floor, payload_from_air, payload_to_air
from v2x.pipeline import CooperativePipeline
from v2x.semcom import build_codec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SNR_DB = 30.0  # every block decodes (MCS 28's threshold is ~20 dB): the link is clean
SWEEP_BUDGET = 98_304  # conf/sweep.yaml codec_options.digital.max_channel_uses
# An 8-bit quantiser's rounding on the detector's maps (its steps are below 0.03 logit, 0.01
# cell, 0.015 log-size and 0.025 on the small head's unnormalised sin/cos, which is 0.05 rad
# on a short (sin, cos)): what the digital detections may differ from the identity codec's.
CENTRE_M, SCORE, SIZE_M, YAW_RAD = 0.05, 0.02, 0.1, 0.1


def test_a_payload_on_the_air_is_its_logits_above_the_floor_and_empty_elsewhere():
    k, floor = 2, payload_floor(0.2)
    maps = torch.full((1, k + 8, 2, 3), -20.0)
    maps[:, k:] = 0.7  # unsupervised box values of the background
    maps[0, 0, 0, 1], maps[0, 1, 1, 2] = 1.5, floor + 0.25  # two cells with a class above it
    air = payload_to_air(maps, k, floor)
    carrying = torch.tensor([[False, True, False], [False, False, True]])
    assert torch.equal((air != 0).any(1)[0], carrying)  # the background is empty
    assert air[0, 0, 0, 1] == pytest.approx(1.5 - floor)
    back, carries = payload_from_air(air, k, floor)
    assert torch.equal(carries[0, 0], carrying)
    torch.testing.assert_close(back[0, :, carrying], maps[0, :, carrying].clamp_min(floor))
    # no threshold, no floor: the payload travels as it is
    assert payload_floor(0.0) is None
    assert payload_to_air(maps, k, None) is maps
    assert payload_from_air(maps, k, None) == (maps, None)


@pytest.fixture(scope="module")
def runs():
    """The shipped small detector on 4 synthetic frames (2 towns × 2): ego only, and the
    semantic map over the identity codec and over the digital chain with the sweep's budget."""
    model = load_detector(None, "cpu")
    frames = [f for s in range(2) for f in generate_sequence(SyntheticConfig(), 950_000 + s, 2)]
    settings = {
        "ego": ("none", build_codec("identity")),
        "identity": ("semantic_map", build_codec("identity")),
        "digital": ("semantic_map", build_codec("digital", max_channel_uses=SWEEP_BUDGET)),
    }
    out = {}
    for name, (fusion, codec) in settings.items():
        torch.manual_seed(0)
        pipe = CooperativePipeline(model, build_fusion(fusion), codec, build_channel("awgn"))
        with torch.no_grad():
            out[name] = [
                (pipe.eval().run(b, torch.tensor([SNR_DB])), ego_ground_truth(b, model.grid))
                for b in (collate_frames([f]) for f in frames)
            ]
    return model, out


def _ap50(model, runs) -> float:
    acc = [APAccumulator(default_eval_config(model.grid))]
    for run, gt in runs:
        accumulate(run, gt, acc)
    return acc[0].compute()["ap"]["overall"][0.5]


def _unmatched(a, b, min_score: float) -> list[str]:
    """Detections of ``a`` (score ≥ ``min_score``) with no detection of ``b`` of the same class
    within the quantiser's rounding (centre, score, size, yaw)."""
    bad = []
    for i in torch.nonzero(a.valid[0] & (a.scores[0] >= min_score)).flatten().tolist():
        same = b.valid[0] & (b.labels[0] == a.labels[0, i])
        if not bool(same.any()):
            bad.append(f"class {int(a.labels[0, i])} at {a.boxes[0, i, :2].tolist()}: none")
            continue
        dist = torch.linalg.norm(b.boxes[0, :, :2] - a.boxes[0, i, :2], dim=-1)
        j = int(dist.masked_fill(~same, float("inf")).argmin())
        yaw = torch.remainder(b.boxes[0, j, 6] - a.boxes[0, i, 6] + torch.pi, 2 * torch.pi)
        err = {
            "centre": float(dist[j]),
            "score": float((b.scores[0, j] - a.scores[0, i]).abs()),
            "size": float((b.boxes[0, j, 3:6] - a.boxes[0, i, 3:6]).abs().max()),
            "yaw": float((yaw - torch.pi).abs()),
        }
        limit = {"centre": CENTRE_M, "score": SCORE, "size": SIZE_M, "yaw": YAW_RAD}
        if any(err[key] > limit[key] for key in err):
            bad.append(f"class {int(a.labels[0, i])} at {a.boxes[0, i, :2].tolist()}: {err}")
    return bad


def test_the_semantic_map_over_a_clean_digital_link_decodes_as_over_the_identity_codec(runs):
    model, out = runs
    threshold = model.config.score_threshold
    for frame, ((ident, _), (digital, _)) in enumerate(zip(out["identity"], out["digital"])):
        a, b = ident.detections, digital.detections
        assert not _unmatched(a, b, threshold), (frame, _unmatched(a, b, threshold))
        # the other way, but for boxes the rounding may carry across the score threshold
        assert not _unmatched(b, a, threshold + SCORE), (frame, _unmatched(b, a, threshold + SCORE))
        assert int(digital.cost.cells_used.sum()) == int(digital.cost.cells_sent.sum()) > 0


def test_the_semantic_map_over_a_clean_digital_link_is_not_below_ego_only(runs):
    model, out = runs
    ego, ident, digital = (_ap50(model, out[k]) for k in ("ego", "identity", "digital"))
    assert digital >= ego, (digital, ego)
    assert digital == pytest.approx(ident, abs=0.02), (digital, ident)
