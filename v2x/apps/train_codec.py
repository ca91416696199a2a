"""``v2x-train-codec``: train a learned codec for the task and calibrate its SNR gate
(thin Hydra wrapper over ``run_codec_training``)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import random
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from v2x.cli import check_lists, checks_override_keys, user_errors
from v2x.codec_calibration import calibrate_snr_gate, check_calibration
from v2x.codec_training import (
    CodecTrainConfig,
    check_task_settings,
    codec_train_config,
    save_trained_codec,
    task_codec,
    train_codec_for_task,
)
from v2x.common import (
    atomic_write_text,
    check_switch,
    configure_determinism,
    to_plain,
    usable_device,
)
from v2x.detector_loading import detector_from
from v2x.loading import UNTRAINED, load_training_frames
from v2x.output_folders import writable_file
from v2x.perception.detector import CoopDetector
from v2x.provenance import checkpoint_digest, model_backbone

#: what the checkpoint keys take: (names that are not files, what is expected)
CHECKPOINT_KEYS = {
    "checkpoint": (("shipped", UNTRAINED), "a readable detector checkpoint file (v2x-train's "
                   "last.pt or best.pt), null (the shipped detector) or untrained"),
    "init": (("shipped", "shipped_pointpillars"), "a readable codec checkpoint file (the out "
             "of a v2x-train-codec run), shipped or null"),
    "codec.checkpoint": (("shipped", "shipped_pointpillars"), "a readable codec checkpoint "
                         "file, shipped or null (a fresh codec; init warm-starts one)"),
}  # fmt: skip


def check_checkpoint_keys(cfg: DictConfig) -> None:
    """``checkpoint``, ``init`` and ``codec.checkpoint`` refused when they name no file (missing, or a folder), with
    the key, the value and what is expected: it was ``checkpoint /nope.pt does not exist``,
    naming no key, and a folder was said not to exist."""
    for key, (names, expected) in CHECKPOINT_KEYS.items():
        value = OmegaConf.select(cfg, key)
        if value is None or value == "" or value in names or Path(str(value)).is_file():
            continue
        why = "a folder" if Path(str(value)).is_dir() else "which does not exist"
        raise ValueError(f"train_codec: field '{key}' is {value!r}, {why}; expected {expected}")


def _detector(cfg: DictConfig, device: torch.device) -> CoopDetector:
    """``v2x.detector_loading.detector_from``; ``untrained`` weights seeded by ``codec_train.seed``; a
    checkpoint that cannot be read is refused naming the key ``checkpoint``."""
    if cfg.checkpoint == UNTRAINED:
        torch.manual_seed(int(cfg.codec_train.seed))
        return detector_from(cfg.checkpoint, to_plain(cfg.model), device)
    try:
        return detector_from(cfg.checkpoint, to_plain(cfg.model), device)
    except (ValueError, FileNotFoundError) as exc:  # (its message names the file)
        raise ValueError(
            f"train_codec: field 'checkpoint' is {cfg.checkpoint!r}: {exc}; expected "
            f"{CHECKPOINT_KEYS['checkpoint'][1]}"
        ) from exc


def output_files(cfg: DictConfig, train_cfg: CodecTrainConfig, train: bool,
                 calibrating: bool) -> CodecTrainConfig:
    """``train_cfg`` with its files (``out``, its ``.gate.json`` when ``calibrating``, and
    ``codec_train.log_path`` when training) checked to be writable files, ``~`` expanded, before
    anything is computed: a folder as ``out`` failed only when the trained codec was saved."""
    out = writable_file(train_cfg.out_path, "train_codec: field 'out'",
                        example=f"out={Path(str(cfg.out)) / 'deepjscc.pt'}")  # fmt: skip
    gate = out.with_suffix(".gate.json")
    if calibrating and gate.is_dir():
        raise ValueError(
            f"train_codec: field 'out' is {str(cfg.out)!r}, but its calibration report {gate} "
            "is a folder; expected an out whose .gate.json is free for the report"
        )
    if not train:
        return dataclasses.replace(train_cfg, out_path=str(out))
    log = writable_file(train_cfg.log_path, "train_codec: field 'codec_train.log_path'",
                        example=f"codec_train.log_path={Path(train_cfg.log_path) / 'log.csv'}")
    if log.resolve() in (out.resolve(), gate.resolve()):  # (the log was overwritten by it)
        raise ValueError(
            f"train_codec: field 'codec_train.log_path' is {train_cfg.log_path!r}, the file "
            f"that out ({cfg.out}) writes; expected another file for the training log"
        )
    return dataclasses.replace(train_cfg, out_path=str(out), log_path=str(log))


def run_codec_training(cfg: DictConfig) -> Path:
    """Train ``cfg.codec`` on the frozen detector, calibrate its gate, write ``cfg.out``.

    Torch's determinism is set first, as ``deterministic`` says. ``train: false`` skips the
    training and calibrates the gate of the ``init`` weights. Returns the checkpoint path; a
    JSON of the calibration is written next to it.
    """
    configure_determinism(
        check_switch("train_codec: field 'deterministic'", cfg.get("deterministic", True))
    )
    train = check_switch("train_codec: field 'train'", cfg.get("train", True))
    if not train and not cfg.init:
        raise ValueError(
            "train_codec: field 'init' is not set, but train=false calibrates the weights "
            "of 'init'; set init=<codec checkpoint>, or train=true"
        )
    device = usable_device(str(cfg.device), "train_codec: field 'device'")
    train_cfg = codec_train_config(cfg)
    # the calibration's settings are refused before the codec trains, not after it
    calibrate = to_plain(cfg.calibrate)
    check_lists("train_codec", "calibrate", calibrate, ("channels", "snr_db", "iou_thresholds"))
    known = set(inspect.signature(check_calibration).parameters)
    if set(calibrate) - known - {"enabled"}:
        raise ValueError(
            f"train_codec: field 'calibrate' has unknown field(s) "
            f"{sorted(set(calibrate) - known - {'enabled'})}; valid: {sorted(known | {'enabled'})}"
        )
    calibrating = check_switch("train_codec: field 'calibrate.enabled'", calibrate.pop("enabled", True))
    if not train and not calibrating:  # (it printed "codec checkpoint: <out>", writing nothing)
        raise ValueError(
            "train_codec: field 'train' is false and field 'calibrate.enabled' is false: nothing "
            f"would be written to out ({cfg.out}); expected train=true, or calibrate.enabled=true "
            "to calibrate the gate of init's weights"
        )
    if calibrating:
        check_calibration(**calibrate)
    # refused before the codec trains and calibrates, not when it is saved
    train_cfg = output_files(cfg, train_cfg, train, calibrating)
    out = Path(train_cfg.out_path)
    check_checkpoint_keys(cfg)
    detector = _detector(cfg, device)
    codec = task_codec(cfg, detector)
    if hasattr(codec, "trained_with"):  # a sweep warns when run under another detector
        backbone = model_backbone(to_plain(cfg.model))
        codec.trained_with = {"detector_sha256": checkpoint_digest(cfg.checkpoint, backbone)}
    if train:
        check_task_settings(codec, train_cfg)
    if calibrating:  # the calibration's frames are read (and refused) before the codec trains
        val_frames = load_training_frames(cfg.val_data, app="train_codec", section="val_data")
        if not val_frames:
            raise ValueError("train_codec: field 'val_data' gives no frames to calibrate on")
    if train:
        frames = load_training_frames(cfg.data, app="train_codec")
        if len(frames) < train_cfg.batch_size:
            raise ValueError(
                f"train_codec: field 'data' gives {len(frames)} frames, fewer than "
                f"codec_train.batch_size = {train_cfg.batch_size}"
            )

        def sample(step: int, count: int) -> list:  # a function of the step: resumable runs
            return random.Random(f"codec-frames:{train_cfg.seed}:{step}").sample(frames, count)

        train_codec_for_task(codec, detector, sample, train_cfg, device)
    if calibrating:
        result = calibrate_snr_gate(detector, codec.to(device).eval(), val_frames, **calibrate)
        save_trained_codec(codec, out)
        atomic_write_text(out.with_suffix(".gate.json"), json.dumps(result.to_dict(), indent=1))
    return out


@checks_override_keys("train_codec", "train_codec")
@hydra.main(config_path="pkg://v2x.conf", config_name="train_codec", version_base=None)
@user_errors
def main(cfg: DictConfig) -> None:
    path = run_codec_training(cfg)
    print(f"codec checkpoint: {path}")


if __name__ == "__main__":
    main()
