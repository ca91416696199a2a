"""``v2x-train``: train the cooperative detector (thin Hydra wrapper over ``run_training``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from v2x.checkpoint import detector_config_from_dict
from v2x.cli import user_errors
from v2x.configs import check_fields
from v2x.datasets.frame import CoopFrame
from v2x.perception.train import TrainConfig, train_detector

DATA_SOURCES = ("synthetic", "store", "v2xsim", "dair_v2x")


def load_training_frames(data: DictConfig | dict) -> list[CoopFrame]:
    """The training frames named by the ``data`` config section."""
    data = OmegaConf.to_container(data, resolve=True) if isinstance(data, DictConfig) else dict(data)
    source = data.get("source")
    if source == "synthetic":
        from v2x.datasets.synthetic import SyntheticConfig, generate_sequence

        cfg = SyntheticConfig.from_dict(data.get("synthetic") or {})
        frames: list[CoopFrame] = []
        for s in range(int(data["num_sequences"])):
            frames.extend(generate_sequence(cfg, int(data["seed"]) + s, int(data["frames_per_sequence"])))
        return frames
    if source in ("v2xsim", "dair_v2x"):
        from v2x.sweep import load_frames

        return load_frames({**data, "num_frames": data.get("num_frames")})  # None: all
    if source == "store":
        from v2x.datasets.store import load_split

        if not data.get("path"):
            raise ValueError("train config: field 'data.path' must name a v2x-generate folder when data.source=store")
        return list(load_split(Path(data["path"]), data.get("split", "train")))
    raise ValueError(f"train config: field 'data.source' must be one of {DATA_SOURCES}, got {source!r}")


def frame_sampler(frames: list[CoopFrame], seed: int) -> Callable[[int, int, int], list[CoopFrame]]:
    """Deterministic sampler: ``(step, rank, count) -> count frames`` (disjoint across ranks)."""
    import random

    if not frames:
        raise ValueError("train: no training frames")

    def sample(step: int, rank: int, count: int) -> list[CoopFrame]:
        rng = random.Random(seed * 7_919 + step * 104_729 + rank)
        return [frames[rng.randrange(len(frames))] for _ in range(count)]

    return sample


def train_config_from(cfg: DictConfig) -> TrainConfig:
    train = OmegaConf.to_container(cfg.train, resolve=True)
    check_fields(TrainConfig, train, "train config: 'train'")
    train["modes"] = tuple(train.get("modes", TrainConfig.modes))
    train["mode_weights"] = tuple(train.get("mode_weights", TrainConfig.mode_weights))
    model = detector_config_from_dict(OmegaConf.to_container(cfg.model, resolve=True))
    return TrainConfig(**train, model=model)


def run_training(cfg: DictConfig) -> Path:
    """Train as configured; returns the last checkpoint's path."""
    train_cfg = train_config_from(cfg)
    frames = load_training_frames(cfg.data)
    return train_detector(train_cfg, frame_sampler(frames, train_cfg.seed), resume=bool(cfg.resume))


@hydra.main(config_path="pkg://v2x.conf", config_name="train", version_base=None)
@user_errors
def main(cfg: DictConfig) -> None:
    path = run_training(cfg)
    print(f"checkpoint: {path}")


if __name__ == "__main__":
    main()
