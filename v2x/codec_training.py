"""Training a learned codec end to end for the task: detection loss through the channel.

The detector is frozen; each step encodes a batch of frames once, sends every collaborator's
feature map through ``codec.forward_train`` (differentiable channel, random SNR per link and a
random bandwidth ratio), fuses at the ego through the pipeline's own warp + fusion + head
(``fused_head_outputs`` → ``v2x.perception.ego_fusion.fuse_at_ego``, what evaluation runs, so
the two cannot drift apart) and back-propagates

    loss = detection_loss(fused) + reconstruction_weight · MSE_standardised(decoded, features)

    + distill_weight · distillation_loss(student, teacher)

into the codec only. The teacher is the same detector on the uncompressed features (what the
codec should reproduce): its fused map, heatmap and box regression (``distillation_loss``). The
bandwidth ratio of each step is drawn from ``ratios`` with ``ratio_weights``.
"""

from __future__ import annotations

import csv
import inspect
import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn.functional as F

from v2x.channels import build_channel
from v2x.cli import check_lists
from v2x.common import check_fields, check_switch, check_whole, to_plain
from v2x.datasets.frame import CoopFrame, collate_frames
from v2x.perception.detector import CoopDetector
from v2x.perception.head import head_loss
from v2x.perception.losses import ego_targets, fused_head_outputs
from v2x.perception.train import truncate_log
from v2x.semcom import build_codec
from v2x.semcom.base import Codec

#: how an error names a field of the ``codec_train`` section: ``v2x-train-codec``'s style,
#: ``<app>: field '<section>.<name>'``, as every app's errors name theirs
FIELD = "train_codec: field 'codec_train."


@dataclass
class CodecTrainConfig:
    """Settings of ``train_codec_for_task`` (Hydra: ``v2x-train task=codec``)."""

    steps: int = 2000
    batch_size: int = 4
    lr: float = 1e-3
    snr_range_db: tuple[float, float] = (-10.0, 30.0)
    ratios: tuple[float, ...] = (1 / 512, 1 / 256, 1 / 128, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4)
    ratio_weights: tuple[float, ...] | None = None  # sampling weights of ``ratios`` (None: equal)
    distill_weight: float = 1.0
    channels: tuple[str, ...] = ("awgn", "rayleigh")
    fusions: tuple[str, ...] = ("max", "attention")
    reconstruction_weight: float = 1.0
    erasure_prob_max: float = 0.1
    log_every: int = 20
    max_seconds: float | None = None  # stop early (and save) after this wall time
    start_step: int = 0  # resume a run at this step (weights from ``init``; see train_codec_for_task)
    seed: int = 0
    amp: bool = True
    quiet: bool = False
    out_path: str = "outputs/codec/deepjscc.pt"
    log_path: str = "outputs/codec/log.csv"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("amp", "quiet"):
            check_switch(f"{FIELD}{name}'", getattr(self, name))
        for name in ("out_path", "log_path"):  # (e.g. an unset shell variable), not the cwd
            value = getattr(self, name)
            if not str(value or "").strip():
                raise ValueError(f"{FIELD}{name}' must name a file, got {value!r}")
        for name in ("steps", "batch_size", "log_every"):
            check_whole(f"{FIELD}{name}'", getattr(self, name), 1)
        check_whole(f"{FIELD}seed'", self.seed, 0)
        if check_whole(f"{FIELD}start_step'", self.start_step, 0) >= self.steps:
            raise ValueError(
                f"{FIELD}start_step' must be in [0, steps = {self.steps}), "
                f"got {self.start_step!r}"
            )
        # NaN fails every comparison, so each range is tested as ``low <= v <= high``
        for name, low, high, expected in (
            ("lr", 0, math.inf, "a finite number >= 0"),
            ("reconstruction_weight", 0, math.inf, "a finite number >= 0"),
            ("distill_weight", 0, math.inf, "a finite number >= 0"),
            ("erasure_prob_max", 0, 1, "in [0, 1]"),
        ):
            value = getattr(self, name)
            if not (_real(value) and low <= value <= high and math.isfinite(value)):
                raise ValueError(f"{FIELD}{name}' must be {expected}, got {value!r}")
        if self.max_seconds is not None and not (_real(self.max_seconds) and self.max_seconds >= 0):
            raise ValueError(
                f"{FIELD}max_seconds' must be null (no limit) or a number of "
                f"seconds >= 0, got {self.max_seconds!r}"
            )
        snr = list(self.snr_range_db or ())
        if not (len(snr) == 2 and all(_real(v) and math.isfinite(v) for v in snr) and snr[0] <= snr[1]):
            raise ValueError(
                f"{FIELD}snr_range_db' must be [low, high] in dB, both finite, "
                f"low <= high, got {snr}"
            )
        _check_choices("ratios", self.ratios, self.ratio_weights)
        for name in ("channels", "fusions"):
            if not list(getattr(self, name) or ()):
                raise ValueError(f"{FIELD}{name}' must name at least one, got []")


#: the fields of ``CodecTrainConfig`` that hold lists (``codec_train.channels=[awgn]``)
LIST_FIELDS = ("snr_range_db", "ratios", "ratio_weights", "channels", "fusions")


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_choices(name: str, values: Any, weights: Any) -> None:
    """``values`` (bandwidth ratios in (0, 1]) and their sampling ``weights`` (``None``, or
    one finite weight >= 0 per value, not all 0)."""
    values = list(values or ())
    if not values or not all(_real(v) and 0 < v <= 1 for v in values):
        raise ValueError(
            f"{FIELD}{name}' must list bandwidth ratios in (0, 1], got {values}"
        )
    if weights is None:
        return
    weights = list(weights)
    if len(weights) != len(values):
        raise ValueError(
            f"{FIELD}{name[:-1]}_weights' must have one weight per entry of "
            f"'{name}' ({len(values)}), got {len(weights)}: {weights}"
        )
    if not all(_real(w) and 0 <= w < math.inf for w in weights) or not sum(weights) > 0:
        raise ValueError(
            f"{FIELD}{name[:-1]}_weights' must be finite numbers >= 0, not all 0, "
            f"got {weights}"
        )


def check_task_settings(codec: Any, cfg: CodecTrainConfig) -> None:
    """What ``cfg`` asks of ``codec`` and the registries, checked before any frame loads or
    step runs: each ratio in the codec's range (``check_ratio``), every channel and fusion
    name registered."""
    from v2x.channels import CHANNELS
    from v2x.perception.fusion import FUSIONS

    check = getattr(codec, "check_ratio", None)
    for ratio in cfg.ratios:
        if check is not None:
            try:
                check(ratio)
            except ValueError as exc:
                raise ValueError(f"{FIELD}ratios' entry {ratio!r}: {exc}") from None
    for name, registry in (("channels", CHANNELS), ("fusions", FUSIONS)):
        for entry in getattr(cfg, name):
            if entry not in registry.names():
                raise ValueError(
                    f"{FIELD}{name}' entry {entry!r} is unknown; valid choices: "
                    f"{', '.join(registry.names())}"
                )


def codec_train_config(cfg: Any) -> CodecTrainConfig:
    """``cfg.codec_train`` of a ``v2x-train-codec`` config as a ``CodecTrainConfig`` (fields
    checked, lists as tuples) that saves to ``cfg.out``."""
    train = to_plain(cfg.codec_train)
    check_fields(CodecTrainConfig, train, "train_codec: field 'codec_train'")
    if "out_path" in train:  # (set by `out`: it was "got multiple values for keyword argument")
        raise ValueError(
            f"{FIELD}out_path' is {train['out_path']!r}; the codec's "
            f"file is set by the top-level key out, e.g. out={train['out_path']}"
        )
    check_lists("train_codec", "codec_train", train, LIST_FIELDS, nullable=("ratio_weights",))
    for name in LIST_FIELDS:
        if train.get(name) is not None:
            train[name] = tuple(train[name])
    if not str(cfg.out or "").strip():  # (e.g. an unset shell variable)
        raise ValueError(f"train_codec: field 'out' must name a file, got {cfg.out!r}")
    return CodecTrainConfig(**train, out_path=str(cfg.out))


def task_codec(cfg: Any, detector: CoopDetector) -> Codec:
    """``cfg.codec`` built for ``detector``'s feature map (``in_channels``), checked to be
    trainable (``_built_codec``), warm-started from ``cfg.init`` when set."""
    codec_kwargs = to_plain(cfg.codec)
    name = codec_kwargs.pop("name")
    codec_kwargs["in_channels"] = int(detector.config.feature_channels)  # the map it codes
    codec = _built_codec(name, codec_kwargs)
    if cfg.init:
        try:
            codec.warm_start(str(cfg.init))
        except ValueError as exc:  # (its message names the file and what does not fit)
            raise ValueError(f"train_codec: field 'init' is {cfg.init!r}: {exc}") from exc
    return codec


def _built_codec(name: Any, kwargs: dict) -> Codec:
    """``build_codec(name, **kwargs)``, its refusals naming the ``codec`` section: an unknown
    or untrainable codec, an unknown field, or text where the codec's signature takes no text (``codec.hidden=abc`` and
    ``+codec.bogus=1`` were a ``TypeError`` traceback)."""
    from v2x.sweep_parts import codec_class

    try:
        cls = codec_class(str(name))
    except ValueError as exc:
        raise ValueError(f"train_codec: field 'codec.name' is {name!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Codec) and cls.trainable):
        raise ValueError(
            f"train_codec: field 'codec.name' is {name!r}, which is not trainable (it does not "
            "declare Codec.trainable: forward_train, save_checkpoint, warm_start)"
        )
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ValueError(
                f"train_codec: field 'codec' has unknown field(s) {unknown} for codec {name!r}; "
                f"valid: {sorted(params)}"
            )
    for key, value in kwargs.items():
        kind = params[key].annotation if key in params else inspect.Parameter.empty
        if isinstance(value, str) and isinstance(kind, str) and "str" not in kind:
            raise ValueError(f"train_codec: field 'codec.{key}' is {value!r}; expected {kind}")
    try:
        return build_codec(name, **kwargs)
    except (TypeError, ValueError) as exc:  # (the codec's own checks name its fields)
        raise ValueError(f"train_codec: field 'codec' ({name}): {exc}") from exc


def distillation_loss(
    student: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    teacher: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """How far the ego's output on decoded features is from its output on the originals.

    Both are ``(fused [B, C, h, w], heat_logits [B, K, h, w], reg [B, R, h, w])``
    (``v2x.perception.losses.fused_head_outputs``). Terms (each scale-free):

    * ``feature``: ``mean((f_s − f_t)²) / mean(f_t²)``;
    * ``heatmap``: the per-cell Bernoulli KL divergence ``KL(p_t ‖ p_s)`` of the student's
      heatmap from the teacher's, summed and divided by ``max(1, Σ p_t)`` (per object);
    * ``regression``: ``Σ |r_s − r_t|₁ · w / Σ w`` with ``w = max_k p_t`` (where the teacher
      sees an object).
    """
    fs, hs, rs = (t.float() for t in student)
    ft, ht, rt = (t.float().detach() for t in teacher)
    pt = torch.sigmoid(ht)
    feature = (fs - ft).square().mean() / ft.square().mean().clamp_min(1e-6)
    # KL(p_t ‖ p_s) per cell = BCE(student, p_t) − BCE(teacher, p_t): zero when they agree.
    kl = F.binary_cross_entropy_with_logits(hs, pt, reduction="sum") - (
        F.binary_cross_entropy_with_logits(ht, pt, reduction="sum")
    )
    heat = kl / pt.sum().clamp_min(1.0)
    w = pt.amax(dim=1, keepdim=True)
    reg = ((rs - rt).abs().sum(dim=1, keepdim=True) * w).sum() / w.sum().clamp_min(1e-6)
    return {"feature": feature, "heatmap": heat, "regression": reg, "total": feature + heat + reg}


def train_codec_for_task(
    codec: torch.nn.Module,
    detector: CoopDetector,
    frames: Callable[[int, int], list[CoopFrame]],
    cfg: CodecTrainConfig,
    device: torch.device,
) -> list[float]:
    """Train ``codec`` (a ``deepjscc``-like codec with ``forward_train``); returns the losses.

    Steps ``cfg.start_step … cfg.steps − 1`` run, under one cosine schedule over ``cfg.steps``.
    Every random draw of a step (its ratio, channel, fusion, erasure probability, SNRs and
    channel noise) comes from generators seeded by ``(cfg.seed, step)``, so a run cut by
    ``max_seconds`` and resumed with ``start_step`` (and the saved weights as ``init``) draws
    what the uninterrupted run would have drawn; only AdamW's moment estimates start afresh.

    Args:
        frames: ``frames(step, count) -> count CoopFrames`` (a pure function of ``step`` for
            the same resumption property).
    """
    check_task_settings(codec, cfg)  # (the config's own fields, start_step too: CodecTrainConfig)
    detector = detector.to(device).eval()
    for p in detector.parameters():
        p.requires_grad_(False)
    codec = codec.to(device).train()
    channels = {name: build_channel(name) for name in cfg.channels}
    for ch in channels.values():
        ch.to(device)
    opt = torch.optim.AdamW([p for p in codec.parameters() if p.requires_grad], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * (s + cfg.start_step) / cfg.steps))
    )
    use_amp = cfg.amp and device.type == "cuda"
    losses: list[float] = []
    started = time.perf_counter()
    progress = {"done": cfg.start_step}  # the steps done: what an interrupt saves
    with _kept_on_interrupt(codec, cfg, progress), _training_log(cfg) as handle:
        writer = csv.writer(handle)
        for step in range(cfg.start_step, cfg.steps):
            rng = random.Random(f"codec-step:{cfg.seed}:{step}")
            torch.manual_seed(rng.getrandbits(63))
            batch = collate_frames(frames(step, cfg.batch_size)).to(device)
            with torch.no_grad():
                feats = detector.encode(batch.points, batch.point_mask, batch.poses)
            b, a, c, h, w = feats.shape
            ratio = rng.choices(cfg.ratios, weights=cfg.ratio_weights)[0]
            channel_name = rng.choice(cfg.channels)
            fusion = rng.choice(cfg.fusions)
            rows = feats[:, 1:].reshape(b * (a - 1), c, h, w)
            lo, hi = cfg.snr_range_db
            snr = torch.rand(rows.shape[0], device=device) * (hi - lo) + lo
            erasure = rng.random() * cfg.erasure_prob_max
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                with torch.no_grad():
                    teacher = fused_head_outputs(detector, feats, batch, fusion)
                decoded, _ = codec.forward_train(
                    rows, snr, ratio, channels[channel_name], erasure_prob=erasure
                )
                received = torch.cat([feats[:, :1], decoded.float().view(b, a - 1, c, h, w)], dim=1)
                student = fused_head_outputs(detector, received, batch, fusion)
                det = head_loss(student[1], student[2], *ego_targets(detector, batch))
                distill = distillation_loss(student, teacher)["total"]
                scale = feats[:, 1:].float().pow(2).mean().clamp_min(1e-6)
                recon = (decoded.float() - rows.float()).pow(2).mean() / scale
                loss = (det["total"] + cfg.reconstruction_weight * recon
                        + cfg.distill_weight * distill)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(codec.parameters(), 10.0)
            opt.step()
            progress["done"] = step + 1
            sched.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"codec training diverged at step {step} (loss {value})")
            losses.append(value)
            stop = cfg.max_seconds is not None and time.perf_counter() - started > cfg.max_seconds
            if step % cfg.log_every == 0 or step == cfg.steps - 1 or stop:  # stop: where it ended
                writer.writerow([step, value, float(det["total"].detach()), float(recon.detach()),
                                 float(distill.detach()), ratio, channel_name,
                                 round(time.perf_counter() - started, 2)])
                handle.flush()
                if not cfg.quiet:
                    print(f"codec step {step}: loss {value:.3f} (det {float(det['total'].detach()):.3f}, "
                          f"recon {float(recon.detach()):.3f}) ratio 1/{round(1 / ratio)} {channel_name}",
                          flush=True)
            if stop:
                break
    codec.eval()
    path = save_trained_codec(codec, cfg.out_path)
    done = progress["done"]
    if done < cfg.steps:  # (it printed the checkpoint's path only, as for a finished run)
        logging.getLogger(__name__).warning(
            "train_codec: codec_train.max_seconds (%s s) stopped the training after step %d "
            "(steps = %d): %s", cfg.max_seconds, done - 1, cfg.steps, _how_to_resume(path, done),
        )  # fmt: skip
    return losses


#: the columns of ``codec_train.log_path``
LOG_COLUMNS = ("step", "loss", "detection", "reconstruction", "distillation", "ratio", "channel",
               "seconds")  # fmt: skip


def _training_log(cfg: CodecTrainConfig) -> IO[str]:
    """``cfg.log_path`` opened for the rows of this run: a run from step 0 starts a new log
    (its header written); a resumed run (``start_step`` > 0) keeps the rows the earlier run
    logged before ``start_step`` and appends its own after them (rows from ``start_step`` on,
    from a run cut later than where this one resumes, are dropped: they are logged again), as
    ``v2x-train`` keeps its log. A file at the path that is not such a log is refused, naming
    the field, before any step: appending would mix two files' columns."""
    log = Path(cfg.log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    if cfg.start_step == 0 or not log.is_file() or log.stat().st_size == 0:
        handle = log.open("w", newline="")
        csv.writer(handle).writerow(LOG_COLUMNS)
        return handle
    with log.open(newline="") as earlier:
        header = next(csv.reader(earlier), [])
    if tuple(header) != LOG_COLUMNS:
        raise ValueError(
            f"{FIELD}log_path' is {cfg.log_path!r}, whose columns are {header}, not a codec "
            f"training log's {list(LOG_COLUMNS)}; expected the log of the run that "
            f"codec_train.start_step={cfg.start_step} resumes, or a new file"
        )
    truncate_log(log, cfg.start_step)
    return log.open("a", newline="")


@contextmanager
def _kept_on_interrupt(codec: Any, cfg: CodecTrainConfig, progress: dict) -> Iterator[None]:
    """Ctrl-C or ``SIGTERM`` (``KeyboardInterrupt``) in the block, after a step was done: the
    codec trained so far is saved to ``cfg.out_path`` (as ``max_seconds`` does) and the
    interrupt, re-raised with its type, says where and how to resume (the apps print it in one
    line). Before any step it passes as it came (nothing to save)."""
    try:
        yield
    except KeyboardInterrupt as exc:
        done = progress["done"]
        if done == cfg.start_step:
            raise
        codec.eval()
        path = save_trained_codec(codec, cfg.out_path)
        raise type(exc)(
            f"train_codec: interrupted after step {done - 1} (steps = {cfg.steps}): "
            f"{_how_to_resume(path, done)} (its log, {cfg.log_path}, goes on from that step)"
        ) from exc


def _how_to_resume(path: Path, done: int) -> str:
    """Where a run cut after ``done`` steps saved its codec and the overrides that resume it
    (``max_seconds`` and an interrupt say the same)."""
    return (
        f"the codec trained so far is saved in {path}; resume with init={path} "
        f"codec_train.start_step={done}"
    )


def save_trained_codec(codec: Any, path: str | os.PathLike) -> Path:
    """``codec.save_checkpoint(path)`` (its folder made); returns ``path``.

    ``v2x-train-codec`` checks ``out`` before it trains (``writable_file``), but the file system
    may still refuse the file at the end (the disk filled, the folder was removed): the trained
    weights are then written to a new file in the temporary folder (else the working folder) and
    an ``OSError`` names ``path``, the reason and where the weights are kept."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        codec.save_checkpoint(str(path))
        return path
    except (OSError, RuntimeError) as exc:  # (torch.save's writer raises RuntimeError)
        failure = exc
    tried = []
    for folder in dict.fromkeys((tempfile.gettempdir(), os.getcwd())):
        rescue = None
        try:
            handle, rescue = tempfile.mkstemp(prefix=f"{path.stem}.rescued-", suffix=".pt", dir=folder)
            os.close(handle)
            codec.save_checkpoint(rescue)
        except (OSError, RuntimeError) as exc:
            tried.append(f"{folder}: {_reason(exc)}")
            if rescue is not None and os.path.exists(rescue):
                os.unlink(rescue)
            continue
        kept = (
            f"the trained weights are kept in {rescue} (copy it to {path}, or calibrate it "
            f"with init={rescue} train=false)"
        )
        break
    else:
        kept = f"the trained weights could not be kept elsewhere either ({'; '.join(tried)})"
    error = CodecNotSaved(
        f"train_codec: field 'out' is {str(path)!r}: the trained codec could not be written "
        f"there ({_reason(failure)}); {kept}"
    )
    error.filename = str(path)  # (the apps print an OSError that names its path in one line)
    raise error from failure


class CodecNotSaved(OSError):
    """A trained codec that could not be written where asked; the message says where its
    weights are kept instead."""

    def __str__(self) -> str:
        return str(self.args[0])


def _reason(exc: BaseException) -> str:
    """An ``OSError``'s ``strerror`` (e.g. "No space left on device"), else the message's
    first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
