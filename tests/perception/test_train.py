"""train_detector: CPU determinism, resume == uninterrupted, checkpoint contents, DDP (gloo)."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from v2x.datasets.frame import AgentObservation, CoopFrame
from v2x.perception.bev import BEVGrid
from v2x.perception.checkpoint import git_revision, read_checkpoint
from v2x.perception.detector import DetectorConfig
from v2x.perception.train import TrainConfig, train_detector

TINY_MODEL = DetectorConfig(
    grid=BEVGrid(x_range_m=(-6.4, 6.4), y_range_m=(-6.4, 6.4), resolution_m=0.4),
    pillar_channels=4,
    backbone_channels=(4, 8),
    backbone_layers=1,
    feature_channels=4,
    num_classes=2,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_frame(step: int, rank: int, index: int) -> CoopFrame:
    """A deterministic frame: 2–3 vehicles around a few boxes with points on the boxes."""
    rng = np.random.default_rng([step, rank, index])
    boxes, classes = [], []
    for _ in range(3):
        x, y = rng.uniform(-4, 4, 2)
        boxes.append([x, y, 0.8, 4.0, 1.8, 1.5, rng.uniform(-3, 3)])
        classes.append(int(rng.integers(0, 2)))
    boxes = np.array(boxes)
    agents = []
    for a in range(int(rng.integers(2, 4))):
        px, py, yaw = rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-3, 3)
        pose = np.eye(4)
        pose[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
        pose[:3, 3] = [px, py, 1.8]
        world = np.concatenate(
            [b[:3] + rng.uniform(-1, 1, (40, 3)) * [b[3] / 2, b[4] / 2, 0.7] for b in boxes]
        )
        local = (world - pose[:3, 3]) @ pose[:3, :3]  # world → sensor
        pts = np.concatenate([local, rng.uniform(0, 1, (len(local), 1))], axis=1)
        agents.append(AgentObservation(f"veh_{a}", "vehicle", pose, pts[: 60 + 20 * a]))
    vis = np.full((len(agents), 3), 5, dtype=np.int32)
    return CoopFrame(f"s{step}r{rank}i{index}", agents, boxes, np.array(classes), np.arange(3), vis)


def frames(step: int, rank: int, count: int) -> list[CoopFrame]:
    return [make_frame(step, rank, i) for i in range(count)]


def _cfg(out_dir: Path, **kw) -> TrainConfig:
    base = dict(
        steps=4,
        batch_size=2,
        lr=5e-3,
        pct_start=0.5,  # warm-up ends at step 1 of 4 (PyTorch skips it when pct·steps < 1)
        checkpoint_every=2,
        log_every=1,
        out_dir=str(out_dir),
        device="cpu",
        quiet=True,
        amp=False,
        model=TINY_MODEL,
    )
    base.update(kw)
    return TrainConfig(**base)


def _log(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


@pytest.fixture(scope="module")
def reference_run(one_torch_thread, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train_a")
    return train_detector(_cfg(out), frames)


def test_checkpoint_holds_config_revision_and_state(reference_run):
    state = read_checkpoint(reference_run)
    assert reference_run.name == "last.pt" and state["step"] == 4
    assert state["git_revision"] == git_revision()
    train = state["extra"]["train"]
    assert train["steps"] == 4 and train["batch_size"] == 2 and train["lr"] == 5e-3
    assert train["model"]["pillar_channels"] == 4
    assert state["detector_config"]["grid"]["x_range_m"] == (-6.4, 6.4)
    assert state["optimizer"]["state"] and state["scheduler"]["last_epoch"] == 4
    log = _log(reference_run.parent / "log.csv")
    assert [int(r["step"]) for r in log] == [0, 1, 2, 3]
    assert all(math.isfinite(float(r["loss"])) for r in log)
    assert {r["mode"] for r in log} <= {"single", "max", "mean", "attention", "early"}
    # One-cycle, the LR each step used: starts at max_lr / 25 (div_factor), ends at
    # max_lr / 25 / 1e4 (final_div_factor), peaks at max_lr at the end of the warm-up.
    lrs = [float(r["lr"]) for r in log]
    assert lrs[0] == pytest.approx(5e-3 / 25, rel=1e-9)
    assert lrs[1] == pytest.approx(5e-3, rel=1e-9)
    assert lrs[-1] == pytest.approx(5e-3 / 25 / 1e4, rel=1e-6)


def test_training_is_deterministic_on_cpu(reference_run, tmp_path):
    again = train_detector(_cfg(tmp_path), frames)
    a, b = _log(reference_run.parent / "log.csv"), _log(again.parent / "log.csv")
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [r["mode"] for r in a] == [r["mode"] for r in b]
    wa, wb = _weights(reference_run), _weights(again)
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    # And training moved the weights away from the seed's initialisation.
    torch.manual_seed(0)
    from v2x.perception.detector import CoopDetector

    fresh = CoopDetector(TINY_MODEL).state_dict()
    assert any(not torch.equal(fresh[k], wa[k]) for k in wa if wa[k].is_floating_point())


def test_training_reads_no_memory_before_writing_it(
    reference_run, tmp_path, unwritten_memory_is_nan
):
    """The same training with every new tensor NaN until written (the deterministic mode's
    fill, which ``configure_determinism`` turns off): the same losses and weights."""
    again = train_detector(_cfg(tmp_path), frames)
    a, b = _log(reference_run.parent / "log.csv"), _log(again.parent / "log.csv")
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    wa, wb = _weights(reference_run), _weights(again)
    assert all(torch.equal(wa[key], wb[key]) for key in wa)


def test_resume_continues_and_matches_uninterrupted(reference_run, tmp_path):
    class Crash(RuntimeError):
        pass

    def crashing(step: int, rank: int, count: int):
        if step == 3:
            raise Crash("simulated kill")
        return frames(step, rank, count)

    with pytest.raises(Crash):
        train_detector(_cfg(tmp_path), crashing)
    assert read_checkpoint(tmp_path / "last.pt")["step"] == 2
    seen: list[int] = []

    def recording(step: int, rank: int, count: int):
        seen.append(step)
        return frames(step, rank, count)

    resumed = train_detector(_cfg(tmp_path), recording)
    assert seen == [2, 3]  # continues at the saved step, no step repeated
    assert read_checkpoint(resumed)["step"] == 4
    wa, wb = _weights(reference_run), _weights(resumed)
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], atol=0, rtol=0, msg=key)
    log = _log(tmp_path / "log.csv")
    ref = _log(reference_run.parent / "log.csv")
    # The first attempt logged step 2 after the checkpoint; the resume replaces that row, so
    # the log reads like the uninterrupted run's.
    assert [int(r["step"]) for r in log] == [0, 1, 2, 3]
    for key in ("mode", "loss", "heatmap", "regression", "lr", "grad_norm"):
        assert [r[key] for r in log] == [r[key] for r in ref], key
    # A finished run resumes to a no-op.
    assert train_detector(_cfg(tmp_path), crashing) == resumed
    # Settings that change what the run computes are not resumed under: more steps were a
    # one-cycle schedule error, another model a traceback, another lr taken without a word.
    never = crashing  # (refused before any step)
    for changed, shown in [
        ({"steps": 6}, "steps: 4 there, 6 here"),
        ({"lr": 1e-3}, "lr: 0.005 there, 0.001 here"),
        ({"batch_size": 4}, "batch_size: 2 there, 4 here"),
        # (the field that differs, not the whole model section twice)
        (
            {"model": dataclasses.replace(TINY_MODEL, feature_channels=16)},
            "model.feature_channels: 4 there, 16 here\\);",
        ),
    ]:
        with pytest.raises(ValueError, match=rf"train.out_dir' holds a run .*{shown}"):
            train_detector(_cfg(tmp_path, **changed), never)
    # what it writes and shows may change
    assert train_detector(_cfg(tmp_path, log_every=2, quiet=False), never) == resumed


def test_bad_modes_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="valid choices"):
        train_detector(_cfg(tmp_path, modes=("single", "late"), mode_weights=(1, 1)), frames)
    with pytest.raises(ValueError, match="pct_start"):  # zero-length warm-up phase
        train_detector(_cfg(tmp_path, steps=2, pct_start=0.5), frames)
    with pytest.raises(ValueError, match="mode_weights"):
        train_detector(_cfg(tmp_path, modes=("single",), mode_weights=(1, 1)), frames)


DDP_SCRIPT = textwrap.dedent(
    """
    import math, os, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {test_dir!r})
    from test_train import _cfg, frames
    from pathlib import Path
    from v2x.perception.train import train_detector
    out = Path({out!r})
    last = train_detector(_cfg(out, steps=2, pct_start=0.25, checkpoint_every=1), frames)
    rank = int(os.environ["RANK"])
    Path(out, f"done_{{rank}}").write_text(str(torch.distributed.get_world_size()))
    """
)


def test_ddp_two_cpu_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(test_dir=str(Path(__file__).parent), out=str(out)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "done_0").read_text() == "2" and (out / "done_1").read_text() == "2"
    state = read_checkpoint(out / "last.pt")
    assert state["step"] == 2
    log = _log(out / "log.csv")
    assert [int(r["step"]) for r in log] == [0, 1]  # rank 0 writes the log once per step
    assert all(math.isfinite(float(r["loss"])) for r in log)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_global_batch_the_processes_cannot_share_is_refused(tmp_path, monkeypatch):
    """``train.batch_size`` is the global batch, ``batch_size // world`` frames a process: 4 on
    3 processes trained 3 frames a step (and 1 on 2 processes 2) without a word."""
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    for name in ("MASTER_ADDR", "MASTER_PORT"):  # (the old code failed at the rendezvous)
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match=r"'train.batch_size' \(4\) must be a multiple .* \(3\)"):
        train_detector(_cfg(tmp_path, batch_size=4), frames)
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_cuda_trains_with_finite_losses(tmp_path):
    last = train_detector(_cfg(tmp_path, device="cuda", amp=True), frames)
    state = read_checkpoint(last)
    assert state["step"] == 4
    assert all(math.isfinite(float(r["loss"])) for r in _log(tmp_path / "log.csv"))
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_validation_metric_with_its_interval_is_logged_and_kept_with_best(tmp_path):
    """val.csv and best.pt held the validation AP alone: a validator that returns
    ``(metric, lo, hi)`` (the training app's, ``val.bootstrap`` resamples over the towns) has
    its interval logged beside the metric and kept with the best model."""
    values = iter([(0.2, 0.1, 0.3), (0.5, 0.42, 0.61), (0.3, 0.2, 0.35)])
    train_detector(_cfg(tmp_path, steps=6, val_every=2), frames, validate=lambda m: next(values))
    rows = [{k: float(v) for k, v in r.items()} for r in _log(tmp_path / "val.csv")]
    assert rows == [
        {"step": 2, "metric": 0.2, "metric_lo": 0.1, "metric_hi": 0.3},
        {"step": 4, "metric": 0.5, "metric_lo": 0.42, "metric_hi": 0.61},
        {"step": 6, "metric": 0.3, "metric_lo": 0.2, "metric_hi": 0.35},
    ]
    extra = read_checkpoint(tmp_path / "best.pt")["extra"]
    assert (extra["val_metric"], extra["val_interval"]) == (0.5, [0.42, 0.61])


def test_validation_keeps_the_best_model_and_logs_every_value(tmp_path):
    # validate() returns 0.2, 0.5, 0.3 at steps 2, 4, 6: best.pt must hold the step-4 weights
    values = iter([0.2, 0.5, 0.3])
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def validate(model) -> float:
        snapshots[len(snapshots)] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return next(values)

    train_detector(_cfg(tmp_path, steps=6, val_every=2), frames, validate=validate)
    rows = _log(tmp_path / "val.csv")
    assert [(int(r["step"]), float(r["metric"])) for r in rows] == [(2, 0.2), (4, 0.5), (6, 0.3)]
    best = read_checkpoint(tmp_path / "best.pt")
    assert best["step"] == 4 and best["extra"]["val_metric"] == 0.5
    for key, value in snapshots[1].items():
        torch.testing.assert_close(best["model"][key], value, rtol=0, atol=0)
    assert any(not torch.equal(snapshots[2][k], best["model"][k]) for k in best["model"])


def _weights_metric(model) -> float:
    """A validation metric that is a deterministic function of the weights alone."""
    with torch.no_grad():
        return float(sum(p.double().sum() for p in model.parameters()))


@pytest.mark.parametrize("cut", ["after_validation", "before_validation"])
def test_resumed_validation_log_and_best_match_the_uninterrupted_run(tmp_path, cut):
    """Killed after the step-2 checkpoint (once its validation was logged, or before it was),
    the resumed run's val.csv and best.pt are the uninterrupted run's. The resume used to drop
    the row of the checkpoint's own step and never validate it again: [4, 6] for [2, 4, 6]."""

    class Crash(RuntimeError):
        pass

    ref = tmp_path / "ref"
    train_detector(_cfg(ref, steps=6, val_every=2), frames, validate=_weights_metric)
    calls: list[int] = []

    def crashing_validate(model) -> float:
        calls.append(1)
        if cut == "before_validation":  # the checkpoint of step 2 is saved, its row is not
            raise Crash("simulated kill")
        return _weights_metric(model)

    def crashing_frames(step: int, rank: int, count: int):
        if step == 3:
            raise Crash("simulated kill")
        return frames(step, rank, count)

    run = tmp_path / "run"
    with pytest.raises(Crash):
        train_detector(_cfg(run, steps=6, val_every=2), crashing_frames, validate=crashing_validate)
    assert read_checkpoint(run / "last.pt")["step"] == 2 and len(calls) == 1
    train_detector(_cfg(run, steps=6, val_every=2), frames, validate=_weights_metric)
    assert _log(run / "val.csv") == _log(ref / "val.csv")
    assert [int(r["step"]) for r in _log(run / "val.csv")] == [2, 4, 6]
    a, b = read_checkpoint(ref / "best.pt"), read_checkpoint(run / "best.pt")
    assert (b["step"], b["extra"]["val_metric"]) == (a["step"], a["extra"]["val_metric"])
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=0, atol=0, msg=key)
    # a finished run resumed validates nothing again: its last row is logged
    train_detector(_cfg(run, steps=6, val_every=2), frames, validate=crashing_validate)
    assert len(calls) == 1 and _log(run / "val.csv") == _log(ref / "val.csv")


def test_augmented_training_is_deterministic_and_differs_from_plain(tmp_path):
    a = train_detector(_cfg(tmp_path / "a", augment=True), frames)
    b = train_detector(_cfg(tmp_path / "b", augment=True), frames)
    c = train_detector(_cfg(tmp_path / "c"), frames)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_where2comm_mode_trains_with_its_selection():
    """Training with the selection: at max_fraction = 1 it is attention fusion exactly."""
    from v2x.datasets.frame import collate_frames
    from v2x.perception.detector import CoopDetector
    from v2x.perception.fusion_where2comm import Where2commFusion
    from v2x.perception.losses import fused_head_outputs

    torch.manual_seed(0)
    model = CoopDetector(TINY_MODEL).eval()
    batch = collate_frames(frames(0, 0, 2))
    feats = model.encode(batch.points, batch.point_mask, batch.poses)
    _, heat_a, reg_a = fused_head_outputs(model, feats, batch, "attention")
    _, heat_w, reg_w = fused_head_outputs(model, feats, batch, Where2commFusion(max_fraction=1.0))
    torch.testing.assert_close(heat_w, heat_a)
    torch.testing.assert_close(reg_w, reg_a)


def test_trainer_runs_the_where2comm_mode(tmp_path):
    last = train_detector(_cfg(tmp_path, modes=("where2comm",), mode_weights=(1.0,)), frames)
    rows = _log(tmp_path / "log.csv")
    assert {r["mode"] for r in rows} == {"where2comm"}
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert read_checkpoint(last)["step"] == 4


def test_init_checkpoint_grows_into_a_model_with_heading_axis_channels(reference_run, tmp_path):
    """Fine-tuning a yaw_axis model from weights without the axis channels: with lr 0 the
    trained weights are the checkpoint's, the axis channels the seed's initialisation."""
    from dataclasses import replace

    from v2x.perception.detector import CoopDetector
    from v2x.perception.head import REG_CHANNELS

    axis_model = replace(TINY_MODEL, yaw_axis=True)
    out = train_detector(
        _cfg(tmp_path, lr=0.0, model=axis_model, init_checkpoint=str(reference_run)), frames
    )
    init, got = _weights(reference_run), _weights(out)
    torch.manual_seed(0)  # the trainer's seed: the same initial axis channels
    model = CoopDetector(axis_model)
    fresh = model.state_dict()
    params = {name for name, _ in model.named_parameters()}  # batch-norm statistics move
    for key, value in init.items():
        if key.startswith("head.reg."):
            torch.testing.assert_close(got[key][:REG_CHANNELS], value)
            torch.testing.assert_close(got[key][REG_CHANNELS:], fresh[key][REG_CHANNELS:])
        elif key in params:
            torch.testing.assert_close(got[key], value)
    assert read_checkpoint(out)["detector_config"]["yaw_axis"] is True


def test_init_checkpoint_shipped_names_the_shipped_detector(tmp_path):
    with pytest.raises(ValueError, match="detector_synthetic.pt: its weights do not fit"):
        train_detector(_cfg(tmp_path, init_checkpoint="shipped"), frames)


def test_fine_tuning_validates_its_starting_weights_first(reference_run, tmp_path):
    """With init_checkpoint the start is validated at step 0 and kept when nothing beats it."""
    values = iter([0.9, 0.5, 0.3])
    seen: list[dict[str, torch.Tensor]] = []

    def validate(model) -> float:
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return next(values)

    cfg = _cfg(tmp_path, steps=4, val_every=2, init_checkpoint=str(reference_run))
    train_detector(cfg, frames, validate=validate)
    rows = _log(tmp_path / "val.csv")
    assert [(int(r["step"]), float(r["metric"])) for r in rows] == [(0, 0.9), (2, 0.5), (4, 0.3)]
    best = read_checkpoint(tmp_path / "best.pt")
    assert best["step"] == 0 and best["extra"]["val_metric"] == 0.9
    init = _weights(reference_run)
    for key, value in best["model"].items():
        torch.testing.assert_close(value, init[key], rtol=0, atol=0)
        torch.testing.assert_close(seen[0][key], value, rtol=0, atol=0)


def test_trainable_prefixes_train_only_the_payload_adapters(reference_run, tmp_path):
    """``trainable=("payload_adapters.",)``: every other weight and batch-norm statistic stays
    the checkpoint's bit for bit (frozen modules stay in eval mode); the adapters move."""
    cfg = _cfg(
        tmp_path, init_checkpoint=str(reference_run), trainable=("payload_adapters.",),
        modes=("semantic_map", "object_features"), mode_weights=(0.5, 0.5),
    )  # fmt: skip
    init, got = _weights(reference_run), _weights(train_detector(cfg, frames))
    moved = [
        key for key in got if not torch.equal(got[key], init.get(key, torch.zeros_like(got[key])))
    ]
    assert moved and all(key.startswith("payload_adapters.") for key in moved)
    assert any(".net.2.weight" in key for key in moved)  # the zero-initialised last layer learnt
    for key, value in init.items():
        if not key.startswith("payload_adapters."):
            assert torch.equal(got[key], value), key


def test_trainable_prefix_naming_no_parameter_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'trainable' entry 'adapters.' names no parameter"):
        train_detector(_cfg(tmp_path, trainable=("adapters.",)), frames)


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 0), ("batch_size", 0), ("batch_size", 2.5), ("checkpoint_every", 0),
     ("log_every", -1), ("val_every", -1), ("lr", -1.0), ("lr", float("nan")),
     ("weight_decay", float("inf")), ("grad_clip_norm", 0.0), ("pct_start", 1.5),
     ("amp", "maybe"), ("augment", 1)],
)  # fmt: skip
def test_a_setting_training_cannot_use_is_refused_naming_the_field(tmp_path, field, value):
    """``train.steps=0`` used to end at once and report a checkpoint it had not written, and
    ``train.batch_size=0`` to train on one frame per step: now each is refused before any work."""
    with pytest.raises(ValueError, match=rf"^train: field 'train.{field}' must .*got {value!r}"):
        _cfg(tmp_path, **{field: value})
    assert _cfg(tmp_path, lr=0.0, grad_clip_norm=float("inf")).lr == 0.0  # kept: see the fields
    with pytest.raises(ValueError, match="field 'train.out_dir' must name a folder, got ''"):
        TrainConfig(out_dir="")  # (an unset shell variable), not the working folder


def test_no_progress_bar_is_drawn_when_stderr_is_not_a_terminal(tmp_path, capfd, monkeypatch):
    """``quiet=False`` draws tqdm's bar only on a terminal (``v2x.common.progress_enabled``):
    under a pipe, a log file or CI its carriage-return frames filled logs with noise."""
    monkeypatch.delenv("CI", raising=False)
    train_detector(_cfg(tmp_path, quiet=False), frames)
    err = capfd.readouterr().err
    assert "train:" not in err and "it/s" not in err, err
