"""train_codec_for_task: a tiny DeepJSCC trained through the channel on a frozen tiny detector."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from v2x.channels import build_channel
from v2x.codec_training import CodecTrainConfig, distillation_loss, train_codec_for_task
from v2x.datasets.frame import AgentObservation, CoopFrame, collate_frames
from v2x.perception.bev import BEVGrid
from v2x.perception.detector import CoopDetector, DetectorConfig
from v2x.perception.fusion import build_fusion
from v2x.pipeline import CooperativePipeline
from v2x.semcom import build_codec
from v2x.semcom.base import Codec, Cost, Transmission, packets_for_bits, raw_feature_bits

DETECTOR = DetectorConfig(
    grid=BEVGrid(x_range_m=(-6.4, 6.4), y_range_m=(-6.4, 6.4), resolution_m=0.4),
    pillar_channels=4,
    backbone_channels=(4, 8),
    backbone_layers=1,
    feature_channels=4,
    num_classes=2,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frame(step: int, index: int) -> CoopFrame:
    rng = np.random.default_rng([step, index])
    boxes = np.array([[rng.uniform(-4, 4), rng.uniform(-4, 4), 0.8, 4.0, 1.8, 1.5, 0.4]])
    agents = []
    for a in range(3):
        pose = np.eye(4)
        yaw = rng.uniform(-3, 3)
        pose[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
        pose[:3, 3] = [rng.uniform(-3, 3), rng.uniform(-3, 3), 1.8]
        world = boxes[0, :3] + rng.uniform(-1, 1, (80, 3)) * [2.0, 0.9, 0.7]
        local = (world - pose[:3, 3]) @ pose[:3, :3]
        pts = np.concatenate([local, rng.uniform(0, 1, (80, 1))], axis=1)
        agents.append(AgentObservation(f"veh_{a}", "vehicle", pose, pts))
    vis = np.full((3, 1), 10, dtype=np.int32)
    return CoopFrame(f"{step}/{index}", agents, boxes, np.array([0]), np.array([0]), vis)


def frames(step: int, count: int) -> list[CoopFrame]:
    return [_frame(step, i) for i in range(count)]


def test_two_steps_train_only_the_codec(tmp_path):
    torch.manual_seed(0)
    detector = CoopDetector(DETECTOR).eval()
    codec = build_codec("deepjscc", in_channels=4, hidden=8, downsample=1)
    det_before = {k: v.clone() for k, v in detector.state_dict().items()}
    codec_before = {k: v.clone() for k, v in codec.state_dict().items()}
    cfg = CodecTrainConfig(
        steps=2,
        batch_size=2,
        lr=1e-2,
        ratios=(1 / 16, 1 / 8),
        channels=("awgn", "rayleigh"),
        log_every=1,
        amp=False,
        quiet=True,
        out_path=str(tmp_path / "codec" / "deepjscc.pt"),
        log_path=str(tmp_path / "codec" / "log.csv"),
    )
    losses = train_codec_for_task(codec, detector, frames, cfg, torch.device("cpu"))
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    # The detector (weights and BN statistics) is untouched; the codec's weights moved.
    for key, value in detector.state_dict().items():
        assert torch.equal(value, det_before[key]), key
    changed = [
        k
        for k, v in codec.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, codec_before[k])
    ]
    assert any(k.startswith("encoder.") for k in changed)
    assert any(k.startswith("decoder.") for k in changed)
    assert not codec.training
    # The checkpoint loads into a fresh codec of the same architecture, weights equal.
    fresh = build_codec("deepjscc", in_channels=4, hidden=8, downsample=1, checkpoint=cfg.out_path)
    for key, value in codec.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    with open(cfg.log_path) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [0, 1]
    assert [float(r["loss"]) for r in rows] == pytest.approx(losses)
    assert all(r["channel"] in ("awgn", "rayleigh") for r in rows)
    assert all(float(r["ratio"]) in (1 / 16, 1 / 8) for r in rows)


def _train_two_steps(out: Path) -> list[float]:
    torch.manual_seed(0)
    detector = CoopDetector(DETECTOR).eval()
    codec = build_codec("deepjscc", in_channels=4, hidden=8, downsample=1)
    cfg = CodecTrainConfig(
        steps=2,
        batch_size=1,
        ratios=(1 / 8,),
        channels=("awgn",),
        amp=False,
        quiet=True,
        out_path=str(out / "c.pt"),
        log_path=str(out / "log.csv"),
    )
    return train_codec_for_task(codec, detector, frames, cfg, torch.device("cpu"))


def test_codec_training_is_deterministic(tmp_path):
    assert _train_two_steps(tmp_path / "a") == _train_two_steps(tmp_path / "b")


def test_codec_training_reads_no_memory_before_writing_it(tmp_path, unwritten_memory_is_nan):
    """With every new tensor NaN until written, and without that fill (what
    ``configure_determinism`` sets): the same losses."""
    filled = _train_two_steps(tmp_path / "filled")
    torch.utils.deterministic.fill_uninitialized_memory = False
    assert _train_two_steps(tmp_path / "plain") == filled


def test_distillation_loss_is_zero_at_agreement_and_counts_only_where_the_teacher_looks():
    g = torch.Generator().manual_seed(0)
    fused = torch.rand(2, 4, 8, 8, generator=g)
    heat = torch.randn(2, 3, 8, 8, generator=g) * 3
    reg = torch.randn(2, 8, 8, 8, generator=g)
    same = distillation_loss((fused, heat, reg), (fused, heat, reg))
    for name in ("feature", "heatmap", "regression", "total"):
        assert abs(float(same[name])) < 1e-5, name
    # The heatmap term is the Bernoulli KL divergence per object: check one cell by hand.
    t_logit = torch.full((1, 1, 1, 1), 2.0)
    s_logit = torch.full((1, 1, 1, 1), -1.0)
    one = torch.zeros(1, 1, 1, 1)
    kl = distillation_loss((one, s_logit, one), (one, t_logit, one))["heatmap"]
    p, q = torch.sigmoid(torch.tensor(2.0)), torch.sigmoid(torch.tensor(-1.0))
    by_hand = p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    assert float(kl) == pytest.approx(float(by_hand) / 1.0, rel=1e-5)  # Σ p_t = 0.88 < 1 → /1
    # Regression errors where the teacher sees nothing (p_t ≈ 0) cost nothing.
    cold = torch.full((1, 1, 2, 1), -30.0)
    cold[0, 0, 0, 0] = 30.0  # the teacher sees an object in cell 0 only
    r_t = torch.zeros(1, 2, 2, 1)
    r_s = r_t.clone()
    r_s[0, :, 1, 0] = 5.0  # wrong where nothing is
    z = torch.zeros(1, 1, 2, 1)
    assert float(distillation_loss((z, cold, r_s), (z, cold, r_t))["regression"]) < 1e-6
    r_s[0, :, 0, 0] = 1.0  # wrong by 1 in each of 2 channels where the object is
    assert float(distillation_loss((z, cold, r_s), (z, cold, r_t))["regression"]) == (
        pytest.approx(2.0, rel=1e-4)
    )


class _Lossless(Codec):
    """Sends float32 maps unchanged (``forward_train`` too): training and evaluation decode the
    same maps, so their fused head outputs can be compared bit for bit."""

    uses_channel = False

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))  # something for the optimiser

    def encode(self, features: torch.Tensor, link) -> Transmission:
        bits = raw_feature_bits(features)
        cost = Cost(bits, bits.clone(), bits.clone(), packets_for_bits(bits), bits.clone())
        return Transmission(None, cost, meta={"payload": features})

    def decode(self, received: Transmission, link) -> torch.Tensor:
        return received.meta["payload"]

    def forward_train(self, rows, snr_db, ratio, channel, erasure_prob=0.0):
        return rows + 0.0 * self.weight, None

    def save_checkpoint(self, path: str) -> None:
        torch.save(self.state_dict(), path)


@pytest.mark.parametrize("fusion", ["max", "attention", "where2comm"])
def test_training_fuses_through_the_evaluation_path(tmp_path, fusion):
    """For one batch, the head outputs codec training back-propagates through (the student's)
    are bit-identical to those the pipeline decodes detections from, with a lossless codec."""
    torch.manual_seed(0)
    detector = CoopDetector(DETECTOR).eval()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = detector.head.register_forward_hook(
        lambda _m, _i, out: seen.append(tuple(t.detach().clone() for t in out))
    )
    batch = collate_frames(frames(0, 2))
    pipe = CooperativePipeline(detector, build_fusion(fusion), _Lossless(), build_channel("awgn"))
    pipe.eval().run(batch, torch.tensor([10.0]))
    evaluated = seen[-1]  # the last head call decodes the fused map
    seen.clear()
    cfg = CodecTrainConfig(
        steps=1, batch_size=2, lr=0.0, ratios=(1 / 8,), channels=("awgn",), fusions=(fusion,),
        amp=False, quiet=True, out_path=str(tmp_path / "c.pt"), log_path=str(tmp_path / "l.csv"),
    )  # fmt: skip
    train_codec_for_task(_Lossless(), detector, frames, cfg, torch.device("cpu"))
    hook.remove()
    trained = seen[-1]  # the student's fused head outputs (after the teacher's)
    assert len(seen) == (4 if fusion == "where2comm" else 2)  # (selection +) fused, twice
    assert evaluated[0].shape[0] == 2
    for ours, theirs in zip(trained, evaluated):
        assert torch.equal(ours, theirs)


def test_a_resumed_run_draws_what_the_uninterrupted_run_drew(tmp_path):
    """start_step: steps 2 and 3 of a run resumed from the checkpoint of steps 0–1 see the
    frames, ratios, channels, SNRs and noise of steps 2 and 3 of the whole run (lr 0 keeps the
    weights equal and the checkpoint carries the feature statistics, so equal draws mean equal
    losses)."""

    def run(sub: str, start: int, steps: int, init: str | None = None) -> list[float]:
        torch.manual_seed(0)
        detector = CoopDetector(DETECTOR).eval()
        codec = build_codec("deepjscc", in_channels=4, hidden=8, downsample=1)
        if init is not None:
            codec.warm_start(init)
        cfg = CodecTrainConfig(
            steps=steps,
            start_step=start,
            batch_size=1,
            lr=0.0,
            ratios=(1 / 16, 1 / 8),
            channels=("awgn", "rayleigh"),
            amp=False,
            quiet=True,
            out_path=str(tmp_path / sub / "c.pt"),
            log_path=str(tmp_path / sub / "log.csv"),
        )
        return train_codec_for_task(codec, detector, frames, cfg, torch.device("cpu"))

    whole = run("whole", 0, 4)
    first = run("first", 0, 2)
    resumed = run("resumed", 2, 4, init=str(tmp_path / "first" / "c.pt"))
    assert first == whole[:2] and resumed == whole[2:]
    assert len(set(whole)) == 4  # the steps did draw different things
    with pytest.raises(ValueError, match="start_step"):
        run("bad", 4, 4)


def test_a_resumed_run_goes_on_with_the_log_of_the_run_it_resumes(tmp_path, caplog):
    """A run cut after step 0 (``max_seconds=0``) and resumed at step 1 from its checkpoint, on
    the same ``log_path`` (the stop says how to resume): the log holds the uninterrupted run's rows, steps 0–3 once each
    (the resumed run reopened it with "w": the earlier rows were lost). Rows from the resumed
    step on, logged by a run cut later, are dropped and logged again; a file that is not a codec
    training log is refused before any step, naming the field."""
    import csv
    import logging

    def run(sub: str, start: int = 0, init: str | None = None, **kw) -> CodecTrainConfig:
        torch.manual_seed(0)
        detector = CoopDetector(DETECTOR).eval()
        codec = build_codec("deepjscc", in_channels=4, hidden=8, downsample=1)
        if init is not None:
            codec.warm_start(init)
        cfg = CodecTrainConfig(
            steps=4, start_step=start, batch_size=1, lr=0.0, ratios=(1 / 16, 1 / 8),
            channels=("awgn", "rayleigh"), amp=False, quiet=True, log_every=1,
            out_path=str(tmp_path / sub / "c.pt"), log_path=str(tmp_path / sub / "log.csv"), **kw,
        )  # fmt: skip
        train_codec_for_task(codec, detector, frames, cfg, torch.device("cpu"))
        return cfg

    def rows(cfg: CodecTrainConfig) -> list[tuple[str, ...]]:  # (without the seconds)
        with open(cfg.log_path, newline="") as handle:
            return [tuple(row[:-1]) for row in csv.reader(handle)]

    whole = rows(run("whole"))
    assert [r[0] for r in whole] == ["step", "0", "1", "2", "3"]
    with caplog.at_level(logging.WARNING, logger="v2x.codec_training"):
        cut = run("cut", max_seconds=0.0)
    assert [r[0] for r in rows(cut)] == ["step", "0"]
    assert [r.getMessage() for r in caplog.records] == [  # how to go on, not only a path
        f"train_codec: codec_train.max_seconds (0.0 s) stopped the training after step 0 "
        f"(steps = 4): the codec trained so far is saved in {cut.out_path}; resume with "
        f"init={cut.out_path} codec_train.start_step=1"
    ]
    assert rows(run("cut", start=1, init=cut.out_path)) == whole
    # resumed at step 2 from a log of all four steps: steps 2 and 3 are not logged twice (its
    # weights, saved after step 3, carry other feature statistics: only the kept rows are equal)
    again = rows(run("cut", start=2, init=cut.out_path))
    assert [r[0] for r in again] == ["step", "0", "1", "2", "3"] and again[:3] == whole[:3]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "log.csv").write_text("epoch,metric\n0,1\n")
    with pytest.raises(ValueError, match=r"^train_codec: field 'codec_train.log_path' is .*"
                       r"\['epoch', 'metric'\]"):  # fmt: skip
        run("other", start=1, init=cut.out_path)
    assert (tmp_path / "other" / "log.csv").read_text() == "epoch,metric\n0,1\n"


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 0), ("batch_size", 0), ("log_every", 1.5), ("out_path", ""), ("log_path", None),
     ("quiet", "yes")],
)
def test_a_setting_codec_training_cannot_use_is_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^train_codec: field 'codec_train.{field}' must .*got {value!r}"):
        CodecTrainConfig(**{field: value})
