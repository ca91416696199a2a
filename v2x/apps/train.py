"""``v2x-train``: train the cooperative detector (thin Hydra wrapper over ``run_training``)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from v2x.cli import check_lists, checks_override_keys, user_errors
from v2x.common import (
    check_fields,
    check_switch,
    check_whole,
    configure_determinism,
    resolve_device,
    to_plain,
    usable_device,
)
from v2x.datasets.frame import CoopFrame
from v2x.loading import (
    READERS,
    _rank_device,
    load_training_frames,
)
from v2x.loading import (  # noqa: F401 - the training frames live with the other loaders
    TRAIN_DATA_SOURCES as DATA_SOURCES,
)
from v2x.output_folders import writable_folder
from v2x.perception.checkpoint import detector_config_from_dict
from v2x.perception.train import TrainConfig, frame_sampler, train_detector
from v2x.perception.train_start import check_start


def train_config_from(cfg: DictConfig) -> TrainConfig:
    train = to_plain(cfg.train)
    check_fields(TrainConfig, train, "train: field 'train'")
    check_lists("train", "train", train, ("modes", "mode_weights", "augment_scale_range",
                                          "trainable"), nullable=("trainable",))  # fmt: skip
    train["modes"] = tuple(train.get("modes", TrainConfig.modes))
    train["mode_weights"] = tuple(train.get("mode_weights", TrainConfig.mode_weights))
    train["augment_scale_range"] = tuple(
        train.get("augment_scale_range", TrainConfig.augment_scale_range)
    )
    if train.get("trainable") is not None:
        train["trainable"] = tuple(train["trainable"])
    model = detector_config_from_dict(to_plain(cfg.model))
    return TrainConfig(**train, model=model)


def validation_frames(cfg: DictConfig) -> list[CoopFrame]:
    """The validation towns of ``cfg.val`` (synthetic; the store's ``val`` seeds, never a
    training town): ``val.num_sequences`` × ``data.frames_per_sequence`` frames."""
    from v2x.datasets.build import sequence_seed
    from v2x.datasets.synthetic import generate_sequence
    from v2x.datasets.synthetic_config import SyntheticConfig

    syn = dict(to_plain(cfg.data.synthetic) or {})
    syn["device"] = _rank_device(str(syn.get("device", "cpu")))
    syn_cfg = SyntheticConfig.from_dict(syn)
    n = int(cfg.data.frames_per_sequence)
    return [
        f
        for s in range(int(cfg.val.num_sequences))
        for f in generate_sequence(syn_cfg, sequence_seed(int(cfg.val.seed), "val", s), n)
    ]


def check_validation(cfg: DictConfig) -> None:
    """The ``val`` section, refused before the frames load and training starts (not at the
    first validation, after ``train.val_every`` steps), naming the field and the value;
    ``train.val_every > 0`` with data other than the synthetic world is refused too."""
    from v2x.evaluation import HEADLINE_METRICS
    from v2x.perception.fusion import FUSIONS

    if int(cfg.train.val_every) <= 0:
        return  # (make_validator validates nothing then)
    if cfg.data.source != "synthetic":  # (it was ignored: no val.csv, no best.pt, no word)
        raise ValueError(
            f"train: field 'train.val_every' is {cfg.train.val_every}, but validation "
            f"runs on synthetic towns only and data.source is {cfg.data.source!r}; set "
            "train.val_every=0 and score the saved checkpoints (train.checkpoint_every) on your "
            "validation split with v2x-eval checkpoint=<file>"
        )
    val = to_plain(cfg.val)
    for name, least in (("num_sequences", 1), ("seed", 0), ("batch_size", 1), ("bootstrap", 0)):
        check_whole(f"train: field 'val.{name}'", val.get(name), least)
    if val.get("fusion") not in FUSIONS.names():
        raise ValueError(
            f"train: field 'val.fusion' is {val.get('fusion')!r}; valid choices: "
            f"{', '.join(FUSIONS.names())}"
        )
    metrics = [name for name, _, _ in HEADLINE_METRICS]
    if val.get("metric") not in metrics:
        raise ValueError(
            f"train: field 'val.metric' is {val.get('metric')!r}; valid choices: "
            f"{', '.join(metrics)}"
        )


def make_validator(cfg: DictConfig, device: str) -> Callable | None:
    """``validate(model) -> (metric, lo, hi)``: ``cfg.val.metric`` (vehicle AP@0.7) of
    ``cfg.val.fusion`` on the validation towns with its 95 % bootstrap interval over them
    (``cfg.val.bootstrap`` resamples; 0: the interval is NaN), or ``None`` when
    ``train.val_every`` is 0 or the data are not synthetic."""
    if int(cfg.train.val_every) <= 0 or cfg.data.source != "synthetic":
        return None
    import torch

    from v2x.fusion_evaluation import evaluate_fusions

    frames = validation_frames(cfg)
    fusion = str(cfg.val.fusion)
    dev = resolve_device(device)
    if dev.type == "cuda" and "LOCAL_RANK" in os.environ:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))

    resamples, metric = int(cfg.val.get("bootstrap", 0)), str(cfg.val.metric)

    def validate(model) -> tuple[float, float, float]:
        row = evaluate_fusions(model, frames, [fusion], dev, batch_size=int(cfg.val.batch_size),
                               bootstrap=resamples, seed=int(cfg.val.seed))[fusion]  # fmt: skip
        lo, hi = row.get(f"{metric}_ci", (math.nan, math.nan))
        return float(row[metric]), float(lo), float(hi)

    return validate


def data_section(cfg: DictConfig) -> DictConfig:
    """The ``data`` section, with the ``dataset`` config group applied when one was chosen
    (``dataset=v2xsim dataset.root=… dataset.split=train``): ``v2xsim`` / ``dair_v2x`` / ``opv2v`` set
    ``source``, ``path`` (the group's ``root``) and ``reader`` (its other fields); ``synthetic``
    sets ``source`` and the world's fields."""
    chosen = cfg.get("dataset")
    data = to_plain(cfg.data)
    if chosen is None:
        return OmegaConf.create(data)
    group = to_plain(chosen)
    name = group.pop("name", None)
    if name == "synthetic":
        data.update(source="synthetic", synthetic={**group, **(data.get("synthetic") or {})})
    elif name in READERS:
        root = group.pop("root", None)
        data.update(source=name, path=root, reader={**group, **(data.get("reader") or {})})
    else:
        raise ValueError(
            f"train: field 'dataset.name' (the dataset=<option> group) is {name!r}; valid "
            f"choices: synthetic, {', '.join(READERS)}"
        )
    return OmegaConf.create(data)


def run_training(cfg: DictConfig) -> Path:
    """Train as configured (torch's determinism as ``deterministic`` says: each DDP rank
    calls this); returns the last checkpoint's path."""
    configure_determinism(check_switch("train: field 'deterministic'", cfg.get("deterministic", True)))
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.data = data_section(cfg)
    resume = check_switch("train: field 'resume'", cfg.get("resume", True))
    train_cfg = train_config_from(cfg)
    # refused before the frames load and training starts, not at the first checkpoint
    usable_device(train_cfg.device, "train: field 'train.device'")
    writable_folder(train_cfg.out_dir, "train: field 'train.out_dir'")
    check_validation(cfg)
    check_start(train_cfg, resume)  # the run to resume, or init_checkpoint
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    frames = load_training_frames(cfg.data, rank, world)
    validate = make_validator(cfg, train_cfg.device) if rank == 0 else None
    return train_detector(
        train_cfg, frame_sampler(frames, train_cfg.seed), resume=resume, validate=validate
    )


@checks_override_keys("train", "train")
@hydra.main(config_path="pkg://v2x.conf", config_name="train", version_base=None)
@user_errors
def main(cfg: DictConfig) -> None:
    path = run_training(cfg)
    print(f"checkpoint: {path}")


if __name__ == "__main__":
    main()
