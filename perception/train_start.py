"""Where a training run starts: the weights of ``train.init_checkpoint`` or the run in
``train.out_dir`` that it resumes, refused with one message naming the field, the file and what
differs (``check_start`` runs before the frames load: nothing is generated for a run that
cannot start)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from v2x.perception.detector import CoopDetector
    from v2x.perception.train import TrainConfig

#: settings a run may change when it is resumed: they decide where it writes and what it
#: shows, not what it computes
RESUMABLE_CHANGES = ("checkpoint_every", "log_every", "out_dir", "device", "quiet", "val_every")


def check_resumable(path: Path, saved: dict | None, cfg: TrainConfig) -> None:
    """Refuse to resume the run of ``path`` (its ``train`` settings ``saved``) under other
    settings that change what it computes: a changed model was a traceback of mismatched
    weights, more ``steps`` a one-cycle schedule error, and a changed ``lr`` or
    ``batch_size`` was taken without a word for the rest of a run that began without it.
    Each differing field is named alone (``model.feature_channels: 8 there, 16 here``)."""
    from v2x.datasets.build import config_differences

    if not saved:  # (checkpoints from before the settings were stored)
        return
    now = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    saved = json.loads(json.dumps(saved, default=str))
    changed = [
        f"{name}: {was!r} there, {value!r} here"
        for name, was, value in config_differences(saved, now)
        if name.split(".")[0] in now and name.split(".")[0] not in RESUMABLE_CHANGES
    ]
    if changed:
        raise ValueError(
            f"train: field 'train.out_dir' holds a run ({path}) with other settings "
            f"({'; '.join(changed)}); expected the same settings to resume it, or another "
            "train.out_dir for a new run"
        )


def init_checkpoint_path(cfg: TrainConfig) -> Path:
    """The file of ``cfg.init_checkpoint`` (``"shipped"``: the detector shipped for the
    model's backbone), or ``ValueError`` naming the field when there is no such file."""
    from v2x.perception.checkpoint import shipped_detector_path

    if cfg.init_checkpoint == "shipped":
        return shipped_detector_path(cfg.model.backbone)
    path = Path(str(cfg.init_checkpoint))
    if not path.is_file():
        why = "a folder" if path.is_dir() else "no such file"
        raise ValueError(
            f"train: field 'train.init_checkpoint' is {cfg.init_checkpoint!r}: {why}; expected "
            "a detector checkpoint file (a run's last.pt or best.pt), 'shipped' or null"
        )
    return path


def load_init_weights(cfg: TrainConfig, model: CoopDetector) -> None:
    """Load ``cfg.init_checkpoint``'s weights into ``model`` (a model with the heading-axis
    channels may start from weights without them: ``load_detector_weights(grow=True)``);
    ``ValueError`` naming the field, the file and the model fields that differ otherwise."""
    from v2x.datasets.build import config_differences
    from v2x.perception.checkpoint import detector_config_to_dict, read_checkpoint
    from v2x.perception.detector import load_detector_weights

    path = init_checkpoint_path(cfg)
    where = f"train: field 'train.init_checkpoint' {path}"
    try:
        init = read_checkpoint(path)
    except (OSError, ValueError) as exc:  # (its message names the file)
        msg = f"train: field 'train.init_checkpoint': {exc}; expected a detector checkpoint file"
        raise ValueError(msg) from exc
    try:
        load_detector_weights(model, init["model"], grow=True)
    except RuntimeError as exc:
        saved = init["detector_config"] if isinstance(init["detector_config"], dict) else {}
        differ = [  # (fields newer than the checkpoint are not in it: not named)
            f"model.{name}: {was!r} there, {now!r} here"
            for name, was, now in config_differences(saved, detector_config_to_dict(cfg.model))
            if name.split(".")[0] in saved
        ]
        what = "; ".join(differ) if differ else str(exc).splitlines()[0][:300]
        raise ValueError(
            f"{where}: its weights do not fit the configured model ({what}); expected a "
            "checkpoint of the same model settings, or model settings that match it"
        ) from exc


def check_fresh(out_dir: str | Path, resume: bool) -> None:
    """``ValueError`` when ``resume`` is false but ``out_dir`` holds a run (``last.pt``): a new
    run there overwrote its checkpoints and added its rows to the old run's ``log.csv``."""
    last = Path(out_dir) / "last.pt"
    if not resume and last.is_file():
        raise ValueError(
            f"train: field 'resume' is false, but field 'train.out_dir' ({out_dir}) holds a run "
            f"({last}) that a new run would overwrite; expected another train.out_dir for a new "
            "run, or resume=true to continue that one"
        )


def check_start(cfg: TrainConfig, resume: bool) -> None:
    """What ``train_detector`` would refuse about where the run starts, before any frame is
    made or read: the run in ``out_dir`` under other settings (``resume``) or overwritten
    (not ``resume``), or ``init_checkpoint`` missing, unreadable or of another model."""
    from v2x.perception.checkpoint import read_checkpoint
    from v2x.perception.detector import CoopDetector

    check_fresh(cfg.out_dir, resume)
    last = Path(cfg.out_dir) / "last.pt"
    if resume and last.is_file():
        state = read_checkpoint(last)
        check_resumable(last, (state.get("extra") or {}).get("train"), cfg)
    elif cfg.init_checkpoint:
        load_init_weights(cfg, CoopDetector(cfg.model))
