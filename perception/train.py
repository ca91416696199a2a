"""Training the cooperative detector: AdamW, one-cycle LR, AMP on GPU, clipping, atomic
checkpoints with resume, CSV (+ TensorBoard when installed) logs, DDP under ``torchrun``.

One model serves every fusion strategy: each step draws a training *mode*:

* ``single`` — every agent detects in its own frame (what late fusion and ego-only run);
* ``max`` / ``mean`` / ``attention`` — intermediate fusion at the ego;
* ``early`` — the ego encodes everyone's points.

The encoder and head are shared, so the checkpoint evaluates all of them (the parameter-free
fusions of OpenCOOD's family need no weights of their own).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from v2x.common import atomic_open, check_switch, check_whole, progress_enabled, usable_device
from v2x.datasets.augment import AugmentConfig, random_augment
from v2x.datasets.frame import CoopBatch, CoopFrame, collate_frames
from v2x.perception.detector import CoopDetector, DetectorConfig, load_detector_weights
from v2x.perception.losses import TRAIN_MODES
from v2x.perception.train_start import (  # noqa: F401 - RESUMABLE_CHANGES: its old path
    RESUMABLE_CHANGES,
    check_fresh,
    check_resumable,
    load_init_weights,
)


@dataclass
class TrainConfig:
    """Hydra group ``train`` (see ``conf/train.yaml``)."""

    steps: int = 2000
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-2
    pct_start: float = 0.1
    grad_clip_norm: float = 10.0
    amp: bool = True
    modes: tuple[str, ...] = ("single", "max", "mean", "attention", "early")
    mode_weights: tuple[float, ...] = (0.25, 0.2, 0.1, 0.2, 0.25)
    min_points_in_box: int = 1
    checkpoint_every: int = 250
    log_every: int = 20
    out_dir: str = "outputs/train"
    seed: int = 0
    device: str = "auto"
    quiet: bool = False
    augment: bool = False
    augment_flip_prob: float = 0.5
    augment_rotation_rad: float = 0.78539816
    augment_scale_range: tuple[float, float] = (0.95, 1.05)
    val_every: int = 0
    init_checkpoint: str | None = None
    trainable: tuple[str, ...] | None = None
    model: DetectorConfig = field(default_factory=DetectorConfig)

    def __post_init__(self) -> None:
        """Refuse a setting training cannot use, naming the field and the value."""
        for f in dataclasses.fields(self):
            if f.type == "bool":
                check_switch(f"train: field 'train.{f.name}'", getattr(self, f.name))
        if not str(self.out_dir or "").strip():  # (e.g. an unset shell variable), not the cwd
            raise ValueError(
                f"train: field 'train.out_dir' must name a folder, got {self.out_dir!r}"
            )
        for name, least in (("steps", 1), ("batch_size", 1), ("checkpoint_every", 1),
                            ("log_every", 1), ("val_every", 0), ("min_points_in_box", 0)):  # fmt: skip
            check_whole(f"train: field 'train.{name}'", getattr(self, name), least)
        # (lr 0 trains nothing but is kept, e.g. to check a resume; no gradient clipping: inf)
        for name, valid, expected in (
            ("lr", lambda v: 0 <= v < math.inf, "a finite number >= 0"),
            ("weight_decay", lambda v: 0 <= v < math.inf, "a finite number >= 0"),
            ("grad_clip_norm", lambda v: v > 0, "> 0 (inf: no clipping)"),
            ("pct_start", lambda v: 0 < v < 1, "in (0, 1)"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not valid(value):
                raise ValueError(f"train: field 'train.{name}' must be {expected}, got {value!r}")
        # OneCycleLR divides by the length of each phase: warm-up ends at pct_start·steps − 1
        if abs(self.pct_start * max(self.steps, 2) - 1.0) < 1e-9:
            raise ValueError(
                f"train: field 'train.pct_start' is {self.pct_start!r}, which with train.steps="
                f"{self.steps} makes a zero-length one-cycle phase (pct_start·steps = 1); "
                f"expected a value in (0, 1) with pct_start·steps ≠ 1, e.g. "
                f"{1.5 / max(self.steps, 2):g}"
            )
        if check_whole("train: field 'train.seed'", self.seed, 0) >= 2**32:  # numpy's seed range
            raise ValueError(f"train: field 'train.seed' must be below 2**32, got {self.seed!r}")
        self._check_modes()
        self._check_augment()

    def _check_modes(self) -> None:
        """``modes``: known training modes; ``mode_weights``: one finite weight >= 0 per mode,
        not all 0 (NaN compares false with everything, so it is tested explicitly)."""
        modes, weights = list(self.modes or ()), list(self.mode_weights or ())
        if not modes:
            raise ValueError(f"train: field 'train.modes' must name at least one mode, got {modes}")
        for mode in modes:
            if mode not in TRAIN_MODES:
                raise ValueError(
                    f"train: field 'train.modes' entry {mode!r} is not a training mode; "
                    f"valid choices: {', '.join(TRAIN_MODES)}"
                )
        if len(weights) != len(modes):
            raise ValueError(
                f"train: field 'train.mode_weights' must have one weight per entry of "
                f"'train.modes' ({len(modes)}), got {len(weights)}: {weights}"
            )
        for w in weights:
            if isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w < math.inf:
                raise ValueError(
                    f"train: field 'train.mode_weights' entry {w!r} must be a finite number >= 0"
                )
        if not sum(weights) > 0:
            raise ValueError(
                f"train: field 'train.mode_weights' must not be all 0 (no mode could be drawn), "
                f"got {weights}"
            )

    def _check_augment(self) -> None:
        """The augmentation ranges, finite (NaN and infinities fail every test)."""

        def real(value) -> bool:
            return not isinstance(value, bool) and isinstance(value, int | float)

        for name, valid, expected in (
            ("augment_flip_prob", lambda v: 0 <= v <= 1, "in [0, 1]"),
            ("augment_rotation_rad", lambda v: 0 <= v < math.inf, "a finite number >= 0"),
        ):
            value = getattr(self, name)
            if not real(value) or not valid(value):
                raise ValueError(f"train: field 'train.{name}' must be {expected}, got {value!r}")
        scale = list(self.augment_scale_range or ())
        if not (len(scale) == 2 and all(map(real, scale)) and 0 < scale[0] <= scale[1] < math.inf):
            raise ValueError(
                f"train: field 'train.augment_scale_range' must be [lo, hi] with "
                f"0 < lo <= hi, both finite, got {scale}"
            )


def frame_sampler(frames: list[CoopFrame], seed: int) -> Callable[[int, int, int], list[CoopFrame]]:
    """Deterministic sampler: ``(step, rank, count) -> count frames`` drawn with replacement
    from ``frames``, seeded by ``(seed, step, rank)``. Disjoint across ranks only when each
    rank is given its own frames (the synthetic towns are split by rank,
    ``v2x.loading.load_training_frames``); over one shared list (a store, V2X-Sim, DAIR) two
    ranks may draw the same frame in a step, as one process drawing with replacement may."""
    if not frames:
        raise ValueError("train: no training frames")

    def sample(step: int, rank: int, count: int) -> list[CoopFrame]:
        rng = random.Random(seed * 7_919 + step * 104_729 + rank)
        return [frames[rng.randrange(len(frames))] for _ in range(count)]

    return sample


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """Initialise DDP when launched by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL on GPUs, gloo on
    CPU. Returns ``(rank, world_size, device)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = usable_device(device_name, "train: field 'train.device'")
    if world <= 1:
        return 0, 1, device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not is_distributed():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def train_detector(
    cfg: TrainConfig,
    frames: Callable[[int, int, int], list[CoopFrame]],
    resume: bool = True,
    validate: Callable[[CoopDetector], float] | None = None,
) -> Path:
    """Train and return the path of the last checkpoint.

    Args:
        cfg: training configuration.
        frames: ``frames(step, rank, count) -> count CoopFrames``, this rank's share of the
            global batch (``count = cfg.batch_size // world_size``); deterministic in its args.
        resume: continue from ``out_dir/last.pt`` when it exists.
        validate: ``validate(model) -> metric`` (higher is better), or ``(metric, lo, hi)``
            with its 95 % interval, run on rank 0 every ``cfg.val_every`` steps and at the end;
            the best model so far is kept in ``out_dir/best.pt`` (``extra["val_metric"]``, and
            ``extra["val_interval"]``) and every value is logged to ``out_dir/val.csv``
            (``step, metric`` and, with an interval, ``metric_lo, metric_hi``).

    ``cfg.init_checkpoint`` (a path, or ``"shipped"``: the detector shipped for the model's
    backbone) gives the starting weights unless a run is resumed; a model with the heading-axis
    channels (``DetectorConfig.yaw_axis``) may start from weights without them
    (``load_detector_weights(grow=True)``). With validation they are validated first (step 0),
    so ``best.pt`` is never worse than the start.

    With ``cfg.augment`` every sampled frame gets one global flip / rotation / scaling draw
    (``v2x.datasets.augment``), seeded by ``(seed, step, rank)``. The next batch is sampled,
    augmented and collated in a background thread while the GPU trains on the current one.
    """
    from v2x.perception.checkpoint import read_checkpoint, save_checkpoint

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.batch_size % world:  # (before any process group: every process says it and stops)
        raise ValueError(
            f"train: field 'train.batch_size' ({cfg.batch_size}) must be a multiple of the DDP "
            f"world size ({world}): it is the global batch, batch_size / world frames a process"
        )
    check_fresh(cfg.out_dir, resume)  # (before any process group, as the check above)
    rank, world, device = setup_distributed(cfg.device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    out = Path(cfg.out_dir)
    last = out / "last.pt"
    model = CoopDetector(cfg.model).to(device)
    total_steps = max(cfg.steps, 2)  # (pct_start·steps ≠ 1: TrainConfig)
    trained = trainable_parameters(model, cfg.trainable)
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=cfg.pct_start
    )
    start = 0
    if cfg.init_checkpoint and not (resume and last.is_file()):
        load_init_weights(cfg, model)
    if resume and last.is_file():
        state = read_checkpoint(last)
        check_resumable(last, (state.get("extra") or {}).get("train"), cfg)
        load_detector_weights(model, state["model"])
        if state.get("optimizer"):
            optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    use_amp = cfg.amp and device.type == "cuda"  # (modes and their weights: TrainConfig)
    per_rank = cfg.batch_size // world
    log_path = out / "log.csv"
    if rank == 0:  # (start 0: rows of a run stopped before its first checkpoint)
        truncate_log(log_path, start)  # rows past the checkpoint are logged again below
        # validations past it too; the one at its step (of the checkpoint's weights) is kept
        truncate_log(out / "val.csv", start + 1)
    writer = _tensorboard(out) if rank == 0 else None
    progress = _progress(range(start, cfg.steps), rank == 0 and progress_enabled(cfg.quiet))
    augment = (
        AugmentConfig(
            cfg.augment_flip_prob, cfg.augment_rotation_rad, tuple(cfg.augment_scale_range)
        )  # fmt: skip
        if cfg.augment
        else None
    )

    def prepare(step: int) -> CoopBatch:
        picked = frames(step, rank, per_rank)
        if augment is not None:
            rng = np.random.default_rng([cfg.seed, step, rank])
            picked = [random_augment(f, rng, augment) for f in picked]
        batch = collate_frames(picked)
        return batch.pin_memory() if device.type == "cuda" else batch

    def validate_and_keep(steps_done: int, best: float, unless_logged: bool = False) -> float:
        """Validate on rank 0 (every rank waits), log, keep ``best.pt``; the best metric.
        ``unless_logged``: not when ``val.csv`` already holds a row of ``steps_done``."""
        if (
            rank == 0
            and validate is not None
            and not (unless_logged and steps_done in _logged_steps(out / "val.csv"))
        ):
            result = validate(model)
            set_train_mode(model, cfg.trainable)
            metric, *interval = result if isinstance(result, tuple) else (result,)
            metric, row = float(metric), {"step": steps_done, "metric": float(metric)}
            if interval:  # the validator's 95 % interval of its metric
                row.update(metric_lo=float(interval[0]), metric_hi=float(interval[1]))
            _append_csv(out / "val.csv", row)
            if metric > best:
                best = metric
                extra = {"train": dataclasses.asdict(cfg), "val_metric": metric}
                if interval:
                    extra["val_interval"] = [row["metric_lo"], row["metric_hi"]]
                save_checkpoint(out / "best.pt", model, steps_done, None, None, extra)
        if world > 1:
            dist.barrier()
        return best

    best = _best_metric(out / "best.pt") if resume else -math.inf
    if cfg.init_checkpoint and start == 0 and cfg.val_every > 0:
        best = validate_and_keep(0, best)  # the starting weights compete for best.pt too
    elif start > 0 and cfg.val_every > 0 and (start % cfg.val_every == 0 or start == cfg.steps):
        # a resumed run whose validation at the checkpoint's step was cut off (after the save,
        # before its row) validates those weights now; one that was logged is not run again
        best = validate_and_keep(start, best, unless_logged=True)
    loader = ThreadPoolExecutor(max_workers=1)
    pending = loader.submit(prepare, start) if start < cfg.steps else None
    set_train_mode(model, cfg.trainable)
    started = time.perf_counter()
    for step in progress:
        mode_rng = random.Random(cfg.seed * 1_000_003 + step)  # same mode on every rank
        mode = mode_rng.choices(cfg.modes, weights=cfg.mode_weights)[0]
        batch = pending.result().to(device)
        pending = loader.submit(prepare, step + 1) if step + 1 < cfg.steps else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            losses = net(batch, mode, cfg.min_points_in_box)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(trained, cfg.grad_clip_norm)
        lr = scheduler.get_last_lr()[0]  # the LR this step uses (before the scheduler moves on)
        optimizer.step()
        scheduler.step()
        if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps - 1):
            row = {
                "step": step,
                "mode": mode,
                "loss": float(losses["total"].detach()),
                "heatmap": float(losses["heatmap"].detach()),
                "regression": float(losses["regression"].detach()),
                "grad_norm": float(grad_norm),
                "lr": lr,
                "samples_per_s": (step - start + 1)
                * cfg.batch_size
                / (time.perf_counter() - started),
            }
            _append_csv(log_path, row)
            if writer is not None:
                for key in ("loss", "heatmap", "regression", "lr", "samples_per_s"):
                    writer.add_scalar(f"train/{key}", row[key], step)
            if hasattr(progress, "set_postfix"):
                progress.set_postfix(loss=f"{row['loss']:.3f}", mode=mode)
        if rank == 0 and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            save_checkpoint(
                last, model, step + 1, optimizer, scheduler, {"train": dataclasses.asdict(cfg)}
            )
        due = cfg.val_every > 0 and ((step + 1) % cfg.val_every == 0 or step + 1 == cfg.steps)
        if due:
            best = validate_and_keep(step + 1, best)
    loader.shutdown()
    if world > 1:
        dist.barrier()
    if writer is not None:
        writer.close()
    return last


def trainable_parameters(
    model: torch.nn.Module, prefixes: tuple[str, ...] | list[str] | None
) -> list[torch.nn.Parameter]:
    """The parameters ``train.trainable`` trains: all of them without prefixes; else those whose
    name starts with one of ``prefixes`` (e.g. ``payload_adapters.``), the rest frozen
    (``requires_grad`` off). A prefix that names no parameter is refused."""
    if prefixes is None:
        return list(model.parameters())
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise ValueError(
                f"train: field 'trainable' entry {prefix!r} names no parameter of the model "
                f"(expected a prefix of a parameter name, e.g. 'payload_adapters.')"
            )
    kept = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(tuple(prefixes)))
        if param.requires_grad:
            kept.append(param)
    return kept


def set_train_mode(model: torch.nn.Module, prefixes: tuple[str, ...] | list[str] | None) -> None:
    """``model.train()``; with ``train.trainable`` prefixes only the modules under them train
    and the frozen rest stays in eval mode, so its batch-norm statistics do not move either."""
    if prefixes is None:
        model.train()
        return
    model.eval()
    for name, module in model.named_modules():
        if name and (name + ".").startswith(tuple(prefixes)):
            module.train()


def _best_metric(path: Path) -> float:
    """The validation metric stored in ``best.pt`` (``-inf`` without one)."""
    if not path.is_file():
        return -math.inf
    state = torch.load(path, map_location="cpu", weights_only=False)
    return float((state.get("extra") or {}).get("val_metric", -math.inf))


def _append_csv(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _logged_steps(path: Path) -> set[int]:
    """The steps of the rows of the CSV log ``path`` (none without a log)."""
    if not path.is_file():
        return set()
    with path.open(newline="") as handle:
        return {int(row["step"]) for row in csv.DictReader(handle)}


def truncate_log(path: Path, step: int) -> None:
    """Drop the rows of ``path`` whose step is ≥ ``step`` (atomically; no-op without a log)."""
    if not path.is_file():
        return
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        rows = [row for row in reader if int(row["step"]) < step]
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: CSV logs are always written
        return None
    return SummaryWriter(str(out / "tb"))


def _progress(iterable: range, enabled: bool) -> Iterator[int]:
    from tqdm.auto import tqdm

    return tqdm(iterable, desc="train", disable=not enabled, dynamic_ncols=True, mininterval=2.0)
