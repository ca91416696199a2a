"""Channel-condition sweeps: a grid of conditions evaluated over a frame set, batched, resumable.

``run_sweep(cfg) -> Path`` (the results file) is what ``v2x-sweep`` calls and what tests call.

The grid is ``channel × snr_db × codec × bandwidth_ratio × fusion × pose_noise``. It is cut
into **groups**: all SNRs of one (fusion, codec, ratio, channel, pose noise) setting, which
``CooperativePipeline.run`` evaluates as one batch of ``K = len(snr_db)`` conditions. Fusion
stages that send no features (``ego``: ``none``; ``boxes``: ``late``; ``points``: ``early``)
do not use the codec or the channel (late and early fusion are charged as ideal digital links
at each SNR), so they form one group per pose noise, with ``codec = channel = "n/a"``.

Per frame batch the encoders run once for the whole sweep (their features are cached in memory
up to ``feature_cache_gb``); each group then pays only for codec, channel, warp, fusion, head and
NMS. The network (range, link models, geometric SNR) and the bandwidth budget (scheduler,
deadline) decide what arrives; a payload dropped at the deadline is removed from the ego's
fusion by re-running that condition with the collaborator masked.

A group is written to the results store when all its frames are done (atomic; see
``v2x.results``); a restarted sweep with the same config skips the cells already there.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from v2x import __version__
from v2x.budget import BudgetConfig, novelty_from_visibility, schedule
from v2x.datasets.frame import CoopBatch, CoopFrame, collate_frames
from v2x.ledger import empty_ledger, ledger_table, summarize_cells
from v2x.network import NetworkConfig, build_network_batch
from v2x.results import ResultsStore, cell_id, stable_hash

log = logging.getLogger(__name__)

NO_CODEC = "n/a"
FEATURE_STAGE = "features"
# Config keys that do not change any number (left out of the config hash).
_NOT_HASHED = (
    "quiet",
    "allow_corrupt",
    "output_dir",
    "feature_cache_gb",
    "table",
    "plots",
    "plots_dir",
)
_NOT_HASHED_DATA = ("cache_dir",)


# --------------------------------------------------------------------------- config
@dataclass
class SweepConfig:
    """The sweep (Hydra ``conf/sweep.yaml``); see ``docs/sweeps.md``.

    Attributes:
        seed: seeds channel noise, pose noise and probabilistic LOS.
        device: ``cpu``, ``cuda`` or ``auto``.
        checkpoint: detector checkpoint path; ``null``/``shipped`` = the shipped model,
            ``untrained`` = random weights built from ``model`` (tests, smoke runs).
        model: ``DetectorConfig`` fields for ``checkpoint=untrained``.
        data: the frame set (see ``load_frames``).
        batch_size: frames per pipeline call.
        grid: ``channels``, ``snr_db``, ``codecs``, ``bandwidth_ratios``, ``fusions``,
            ``pose_noise`` (list of ``[translation_std_m, yaw_std_rad]``).
        codec_options, channel_options, fusion_options: constructor kwargs per name.
        network, budget, eval: see ``NetworkConfig``, ``BudgetConfig``, ``EvalConfig``.
        output_dir: folder of the results files.
        quiet: no progress bar (also off when stderr is not a TTY or ``CI`` is set).
        allow_corrupt: move an unreadable results file aside instead of failing.
        feature_cache_gb: memory for cached encoder features (0: re-encode per group).
        table: print the results table when the app finishes.
        plots: draw this job's figures when the app finishes (``v2x.plots.make_plots``).
        plots_dir: their folder (default ``<output_dir>/plots-<config hash>``).
    """

    seed: int = 0
    device: str = "cpu"
    checkpoint: str | None = None
    model: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    batch_size: int = 4
    grid: dict = field(default_factory=dict)
    codec_options: dict = field(default_factory=dict)
    channel_options: dict = field(default_factory=dict)
    fusion_options: dict = field(default_factory=dict)
    network: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)
    output_dir: str = "outputs/sweeps"
    quiet: bool = False
    allow_corrupt: bool = False
    feature_cache_gb: float = 2.0
    table: bool = True
    plots: bool = True
    plots_dir: str | None = None

    @classmethod
    def from_any(cls, cfg: Any) -> SweepConfig:
        if isinstance(cfg, SweepConfig):
            return cfg
        data = _plain(cfg)
        data = {k: v for k, v in data.items() if k != "hydra"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(
                f"sweep: unknown config field(s) {sorted(unknown)}; valid: {sorted(names)}"
            )
        return cls(**data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SNR_MODES = ("fixed", "geometric")

DEFAULT_GRID = {
    "channels": ["awgn"],
    "snr_mode": "fixed",
    "snr_db": [-10.0, -5.0, 0.0, 5.0, 10.0, 20.0, 30.0],
    "codecs": ["analog", "identity"],
    "bandwidth_ratios": [1.0 / 64.0],
    "fusions": ["none", "late", "max"],
    "pose_noise": [[0.0, 0.0]],
}

DEFAULT_DATA = {
    "source": "synthetic",
    "path": None,
    "split": "test",
    "num_frames": 20,
    "frames_per_sequence": 10,
    "seed": 0,
    "synthetic": {},
    "max_agents": None,
    "cache_dir": None,
    "reader": {},
}
DATA_SOURCES = ("synthetic", "store", "v2xsim", "dair_v2x")


def _plain(obj: Any) -> Any:
    """OmegaConf containers → plain Python (resolved)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, DictConfig | ListConfig):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


@dataclass
class Group:
    """One pipeline setting evaluated at every SNR of the grid."""

    fusion: str
    stage: str
    codec: str
    codec_kwargs: dict
    bandwidth_ratio: float
    channel: str
    pose_noise_m: float
    pose_noise_yaw_rad: float
    snr_mode: str = "fixed"

    def condition(self, snr_db: float, budget: BudgetConfig) -> dict:
        return {
            "channel": self.channel,
            "snr_mode": self.snr_mode,
            "snr_db": float(snr_db),
            "codec": self.codec,
            "bandwidth_ratio": float(self.bandwidth_ratio),
            "fusion": self.fusion,
            "pose_noise_m": float(self.pose_noise_m),
            "pose_noise_yaw_rad": float(self.pose_noise_yaw_rad),
            "scheduler": budget.scheduler,
            "deadline_s": float(budget.deadline_s),
            "bandwidth_hz": float(budget.bandwidth_hz),
        }

    @property
    def key(self) -> str:
        return stable_hash(
            [
                self.fusion,
                self.codec,
                self.bandwidth_ratio,
                self.channel,
                self.pose_noise_m,
                self.pose_noise_yaw_rad,
                # (fixed-mode keys, hence seeds, are those of sweeps before snr_mode existed)
                *([self.snr_mode] if self.snr_mode != "fixed" else []),
            ],
            16,
        )


@dataclass
class SweepPlan:
    """A validated sweep: parts resolved, groups listed, nothing run yet."""

    config: SweepConfig
    grid: dict
    data: dict
    snr_db: list[float]
    groups: list[Group]
    network: NetworkConfig
    budget: BudgetConfig
    eval_config: Any
    min_points: int
    config_hash: str

    @property
    def num_cells(self) -> int:
        return len(self.groups) * len(self.snr_db)


def _codec_spec(spec: Any, options: Mapping) -> tuple[str, dict]:
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "name" not in spec:
            raise ValueError(f"sweep: field 'grid.codecs' entry {spec} needs a 'name'")
        name = str(spec.pop("name"))
        return name, {**dict(options.get(name, {}) or {}), **spec}
    return str(spec), dict(options.get(str(spec), {}) or {})


def _accepts(factory: Any, name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def plan_sweep(cfg: Any) -> SweepPlan:
    """Validate ``cfg`` and list the groups; raises ``ValueError`` before any work."""
    from v2x.channels import CHANNELS
    from v2x.perception.evaluate import EvalConfig
    from v2x.perception.fusion import FUSIONS
    from v2x.semcom import CODECS
    from v2x.semcom import _load_all as _load_codecs

    cfg = SweepConfig.from_any(cfg)
    grid = {**DEFAULT_GRID, **(cfg.grid or {})}
    unknown = set(grid) - set(DEFAULT_GRID)
    if unknown:
        raise ValueError(
            f"sweep: unknown field(s) {sorted(unknown)} in 'grid'; valid: {sorted(DEFAULT_GRID)}"
        )
    data = {**DEFAULT_DATA, **(cfg.data or {})}
    unknown = set(data) - set(DEFAULT_DATA)
    if unknown:
        raise ValueError(
            f"sweep: unknown field(s) {sorted(unknown)} in 'data'; valid: {sorted(DEFAULT_DATA)}"
        )
    if data["source"] not in DATA_SOURCES:
        raise ValueError(
            f"sweep: field 'data.source' is {data['source']!r}; valid choices: {', '.join(DATA_SOURCES)}"
        )
    if data["source"] == "store" and not data.get("path"):
        raise ValueError(
            "sweep: field 'data.path' must name a v2x-generate folder when data.source=store"
        )
    for key in ("num_frames", "frames_per_sequence"):
        if int(data[key]) < 1:
            raise ValueError(f"sweep: field 'data.{key}' must be >= 1, got {data[key]}")
    if int(cfg.batch_size) < 1:
        raise ValueError(f"sweep: field 'batch_size' must be >= 1, got {cfg.batch_size}")

    def as_list(name: str) -> list:
        value = grid[name]
        if value is None or isinstance(value, str | int | float | Mapping):
            value = [value] if value is not None else []
        if not list(value):
            raise ValueError(f"sweep: field 'grid.{name}' is empty; give at least one value")
        return list(value)

    snr = [float(v) for v in as_list("snr_db")]
    if not all(math.isfinite(v) for v in snr):
        raise ValueError(f"sweep: field 'grid.snr_db' must hold finite numbers, got {snr}")
    snr_mode = str(grid.get("snr_mode", "fixed"))
    if snr_mode not in SNR_MODES:
        raise ValueError(
            f"sweep: field 'grid.snr_mode' must be one of {list(SNR_MODES)}, got {snr_mode!r}"
        )
    ratios = [float(v) for v in as_list("bandwidth_ratios")]
    for r in ratios:
        if not 0.0 < r <= 1.0:
            raise ValueError(
                f"sweep: field 'grid.bandwidth_ratios' holds {r}; each must be in (0, 1]"
            )
    fusions = [str(v) for v in as_list("fusions")]
    for name in fusions:
        FUSIONS.get(name)
    channels = [str(v) for v in as_list("channels")]
    for name in channels:
        CHANNELS.get(name)
    _load_codecs()
    codecs = [_codec_spec(v, cfg.codec_options or {}) for v in as_list("codecs")]
    for name, _ in codecs:
        CODECS.get(name)
    poses = []
    for p in as_list("pose_noise"):
        pair = [float(v) for v in (p if isinstance(p, list | tuple) else [p, 0.0])]
        if len(pair) != 2 or min(pair) < 0:
            raise ValueError(
                f"sweep: field 'grid.pose_noise' entries must be [translation_std_m, yaw_std_rad] >= 0, got {p}"
            )
        poses.append(tuple(pair))
    network = NetworkConfig.from_dict(cfg.network or {})
    budget = BudgetConfig.from_dict(cfg.budget or {})
    eval_kwargs = {"distance_bins": [], "per_class": False, "min_points": 1, **(cfg.eval or {})}
    min_points = int(eval_kwargs.pop("min_points"))
    if min_points < 0:
        raise ValueError(f"sweep: field 'eval.min_points' must be >= 0, got {min_points}")
    try:
        eval_config = EvalConfig(**eval_kwargs).validate()
    except TypeError as exc:
        raise ValueError(f"sweep: bad field in 'eval': {exc}") from exc

    groups: list[Group] = []
    for fusion in fusions:
        stage = getattr(FUSIONS.get(fusion), "stage", FEATURE_STAGE)
        for pose in poses:
            if stage != FEATURE_STAGE:
                groups.append(
                    Group(fusion, stage, NO_CODEC, {}, math.nan, NO_CODEC, *pose, snr_mode)
                )
                continue
            for channel in channels:
                for codec, kwargs in codecs:
                    factory = CODECS.get(codec)
                    if _accepts(factory, "bandwidth_ratio"):
                        for r in ratios:
                            groups.append(
                                Group(
                                    fusion,
                                    stage,
                                    codec,
                                    {**kwargs, "bandwidth_ratio": r},
                                    r,
                                    channel,
                                    *pose,
                                    snr_mode,
                                )
                            )
                    else:
                        groups.append(
                            Group(fusion, stage, codec, kwargs, math.nan, channel, *pose, snr_mode)
                        )
    # Build every codec and channel once now, so that bad kwargs or ratios fail before any work.
    for g in groups:
        if g.stage == FEATURE_STAGE:
            try:
                # Weights load at run time, once the detector fixes in_channels; here only the
                # kwargs are checked (a missing checkpoint file is reported by the digest below).
                kwargs = dict(g.codec_kwargs)
                if kwargs.get("checkpoint"):
                    kwargs["checkpoint"] = None
                CODECS.build(g.codec, **kwargs)
            except TypeError as exc:
                raise ValueError(f"sweep: codec {g.codec!r} rejects its options: {exc}") from exc
    for name in channels:
        try:
            CHANNELS.build(name, **dict((cfg.channel_options or {}).get(name, {}) or {}))
        except TypeError as exc:
            raise ValueError(f"sweep: channel {name!r} rejects its options: {exc}") from exc

    hashed = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED}
    hashed["data"] = {k: v for k, v in data.items() if k not in _NOT_HASHED_DATA}
    hashed["grid"] = grid
    hashed["v2x_version"] = __version__
    hashed["checkpoint_sha256"] = _checkpoint_digest(cfg.checkpoint)
    # A retrained codec must not resume results of the old one: hash its weights too.
    hashed["codec_checkpoints_sha256"] = {
        f"{g.codec}:{g.codec_kwargs['checkpoint']}": _codec_checkpoint_digest(
            g.codec, str(g.codec_kwargs["checkpoint"])
        )
        for g in groups
        if (g.codec_kwargs or {}).get("checkpoint")
    }
    return SweepPlan(
        cfg, grid, data, snr, groups, network, budget, eval_config, min_points, stable_hash(hashed)
    )


def _checkpoint_digest(checkpoint: str | None) -> str:
    """SHA-256 of the detector checkpoint the sweep will load (``"untrained"`` for none)."""
    from v2x.checkpoint import shipped_detector_path

    if checkpoint == "untrained":
        return "untrained"
    path = shipped_detector_path() if checkpoint in (None, "", "shipped") else Path(checkpoint)
    if not path.is_file():
        if checkpoint in (None, "", "shipped"):
            return "untrained"  # load_model falls back to an untrained model, with a warning
        raise ValueError(f"sweep: field 'checkpoint' names {path}, which does not exist")
    return _file_digest(path)


def _codec_checkpoint_digest(codec: str, checkpoint: str) -> str:
    """SHA-256 of a codec's checkpoint file (``"shipped"`` resolved to the packaged one)."""
    from v2x.semcom.deepjscc import resolve_checkpoint

    path = Path(resolve_checkpoint(checkpoint))
    if not path.is_file():
        raise ValueError(
            f"sweep: codec_options.{codec}.checkpoint names {path}, which does not exist"
        )
    return _file_digest(path)


def _file_digest(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- data and model
def load_frames(data: Mapping, quiet: bool = False) -> list[CoopFrame]:
    """The sweep's frames.

    ``source=synthetic``: ``num_frames`` frames of the built-in world (``frames_per_sequence``
    per 10 Hz town, dataset seed ``seed``), generated into the cache on first use
    (``v2x.datasets.build.cached_split``; ``cache_dir`` default ``$V2X_CACHE`` or
    ``~/.cache/v2x``). ``source=store``: the ``split`` of a ``v2x-generate`` folder ``path``,
    truncated to ``num_frames``. ``source=v2xsim`` / ``dair_v2x``: the real-data readers on the
    dataset root ``path`` with ``reader`` as their keyword arguments (e.g. ``split``,
    ``split_scenes``, ``labels``; see ``conf/dataset/v2xsim.yaml`` / ``dair_v2x.yaml``), the first
    ``num_frames`` frames.
    """
    if data["source"] in ("v2xsim", "dair_v2x"):
        if not data.get("path"):
            raise ValueError(
                f"sweep: field 'data.path' must name the dataset root when data.source={data['source']}"
            )
        if data["source"] == "v2xsim":
            from v2x.datasets.v2xsim import V2XSimDataset as Reader
        else:
            from v2x.datasets.dair import DAIRV2XCDataset as Reader
        dataset = Reader(str(data["path"]), **dict(data.get("reader") or {}))
        return [dataset[i] for i in range(min(len(dataset), int(data["num_frames"])))]
    if data["source"] == "store":
        from v2x.datasets.store import load_split

        split = load_split(Path(str(data["path"])), str(data["split"]))
        return [split[i] for i in range(min(len(split), int(data["num_frames"])))]
    from v2x.datasets.build import cached_split

    split = cached_split(
        dict(data.get("synthetic") or {}),
        split=str(data["split"]),
        num_frames=int(data["num_frames"]),
        frames_per_sequence=int(data["frames_per_sequence"]),
        seed=int(data["seed"]),
        cache_dir=data.get("cache_dir"),
        quiet=quiet or not progress_enabled(quiet),
    )
    return list(split)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model(cfg: SweepConfig, device: torch.device):
    """The detector: a checkpoint, the shipped one, or ``untrained`` (seeded random weights)."""
    from v2x.checkpoint import detector_config_from_dict, load_detector, shipped_detector_path
    from v2x.perception.detector import CoopDetector

    ckpt = cfg.checkpoint
    if ckpt in (None, "", "shipped") and not shipped_detector_path().is_file():
        log.warning(
            "sweep: the shipped detector %s does not exist yet; using an untrained model "
            "(APs will be near 0). Set checkpoint=<path> for a trained one.",
            shipped_detector_path(),
        )
        ckpt = "untrained"
    if ckpt == "untrained":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.seed))
            model = CoopDetector(detector_config_from_dict(dict(cfg.model or {})))
        return model.to(device).eval()
    return load_detector(ckpt, device=device)


class _EncodeCache:
    """Delegates to the detector but serves ``encode`` from a per-batch cache.

    ``CooperativePipeline`` calls ``model.encode`` once per run; the sweep sets ``batch_index``
    before each run so that every group reuses the features of that batch.
    """

    def __init__(self, model: torch.nn.Module, max_bytes: float) -> None:
        self._model = model
        self._cache: dict[int, torch.Tensor] = {}
        self._max_bytes = max_bytes
        self._bytes = 0
        self.batch_index: int | None = None
        self.encodes = 0

    def encode(
        self, points: torch.Tensor, point_mask: torch.Tensor, poses: torch.Tensor
    ) -> torch.Tensor:
        hit = self._cache.get(self.batch_index) if self.batch_index is not None else None
        if hit is not None:
            return hit
        features = self._model.encode(points, point_mask, poses)
        self.encodes += 1
        size = features.numel() * features.element_size()
        if self.batch_index is not None and self._bytes + size <= self._max_bytes:
            self._cache[self.batch_index] = features
            self._bytes += size
        return features

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


# --------------------------------------------------------------------------- progress
class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def __enter__(self) -> _NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


def progress(total: int, desc: str, quiet: bool, unit: str = "it"):
    """A tqdm bar with rate and ETA, or a silent stand-in when quiet / non-TTY / CI."""
    if not progress_enabled(quiet):
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, smoothing=0.1)


# --------------------------------------------------------------------------- the run
@dataclass
class _Batch:
    frames: list[CoopFrame]
    batch: CoopBatch
    network: Any
    novelty: torch.Tensor
    gt: Any  # v2x.evaluation.EgoGroundTruth


def _prepare_batches(frames: list[CoopFrame], plan: SweepPlan, model, device) -> list[_Batch]:
    from v2x.evaluation import ego_ground_truth

    out = []
    bs = int(plan.config.batch_size)
    max_agents = plan.data.get("max_agents")
    for start in range(0, len(frames), bs):
        chunk = frames[start : start + bs]
        batch = collate_frames(chunk, max_agents=max_agents)
        net = build_network_batch(
            chunk, plan.network, max_agents=max_agents, ground_z_m=model.grid.ground_z_m
        )
        # Collaborators out of communication range do not exist for the ego.
        batch.agent_mask = batch.agent_mask & net.in_range
        novelty = novelty_from_visibility(batch.visibility, batch.box_mask)
        gt = ego_ground_truth(batch, model.grid, plan.min_points)
        out.append(_Batch(chunk, batch.to(device), net, novelty, gt))
    return out


def _group_seed(seed: int, group: Group, batch_index: int) -> int:
    return int(stable_hash([seed, group.key, batch_index], 15), 16)


def _eval_config(plan: SweepPlan, model):
    """The plan's evaluation settings; no ``eval_range`` means the ego's BEV grid."""
    from v2x.datasets.frame import CLASS_NAMES

    cfg = plan.eval_config
    updates: dict[str, Any] = {"class_names": dict(enumerate(CLASS_NAMES))}
    if cfg.eval_range is None:
        g = model.grid
        updates["eval_range"] = (g.x_range_m[0], g.y_range_m[0], g.x_range_m[1], g.y_range_m[1])
    return dataclasses.replace(cfg, **updates)


def _run_conditions(pipe, batch: CoopBatch, snr: torch.Tensor, same_for_all: bool):
    """``pipe.run(batch, snr)``; with ``same_for_all`` (nothing is transmitted, so nothing
    depends on the SNR) one condition is run and its output tiled ``K`` times."""
    from v2x.pipeline import RunOutput, repeat_detections

    k = snr.shape[0]
    if not same_for_all or k == 1:
        return pipe.run(batch, snr)
    one = pipe.run(batch, snr[:1])
    tiled = repeat_detections(one.detections, k)
    return RunOutput(tiled, one.cost.repeat_conditions(k, snr), k)


def _run_group(
    plan: SweepPlan, group: Group, batches: list[_Batch], model: _EncodeCache, device, bar
) -> tuple[list[dict], pa.Table]:
    from v2x.channels import build_channel
    from v2x.evaluation import accumulate
    from v2x.perception.detector import Detections
    from v2x.perception.evaluate import APAccumulator
    from v2x.perception.fusion import build_fusion
    from v2x.pipeline import CooperativePipeline, RunOutput
    from v2x.semcom import CODECS, build_codec

    cfg = plan.config
    snr = torch.tensor(plan.snr_db, dtype=torch.float32)  # geometric mode: offsets in dB
    k = snr.shape[0]
    fusion = build_fusion(
        group.fusion, **dict((cfg.fusion_options or {}).get(group.fusion, {}) or {})
    )
    if group.stage == FEATURE_STAGE:
        kwargs = dict(group.codec_kwargs)
        if "in_channels" not in kwargs and _accepts(CODECS.get(group.codec), "in_channels"):
            kwargs["in_channels"] = int(model.config.feature_channels)  # the map it codes
        if "max_channel_uses" not in kwargs and _accepts(
            CODECS.get(group.codec), "max_channel_uses"
        ):
            # Rate-adaptive codecs fit their payload into an equal share of the frame's budget.
            links = max(int(item.batch.agent_mask[:, 1:].sum(1).max()) for item in batches)
            kwargs["max_channel_uses"] = int(plan.budget.channel_uses // max(links, 1))
        codec = build_codec(group.codec, **kwargs)
        channel = build_channel(
            group.channel, **dict((cfg.channel_options or {}).get(group.channel, {}) or {})
        )
    else:
        codec = build_codec("identity")
        channel = build_channel("awgn")
    pipe = CooperativePipeline(
        model,
        fusion.to(device),
        codec.to(device),
        channel.to(device),
        pose_noise_m=group.pose_noise_m,
        pose_noise_yaw_rad=group.pose_noise_yaw_rad,
        seed=_group_seed(cfg.seed, group, -1) % (2**31),
    ).eval()
    eval_config = _eval_config(plan, model)
    accs = [APAccumulator(eval_config) for _ in range(k)]
    cells = [cell_id(group.condition(s, plan.budget)) for s in plan.snr_db]
    ledgers = []
    # Real values of one transmitted feature map [C, H/stride, W/stride] (the ratio's denominator).
    feature_values = float(
        model.config.feature_channels
        * (model.grid.height // model.stride)
        * (model.grid.width // model.stride)
    )
    for bi, item in enumerate(batches):
        model.batch_index = bi
        torch.manual_seed(_group_seed(cfg.seed, group, bi))
        # Ego-only fusion sends nothing: its detections do not depend on the SNR.
        item_snr = snr  # [K], or [K, B, A]: each link at its geometric SNR + the grid's offset
        if group.snr_mode == "geometric":
            item_snr = (item.network.snr_db[None] + snr.view(k, 1, 1).double()).float().to(device)
        out = _run_conditions(pipe, item.batch, item_snr, same_for_all=group.stage == "ego")
        cost = out.cost
        delivery = schedule(
            plan.budget,
            cost.sent,
            cost.channel_uses,
            cost.packets,
            cost.snr_db,
            item.novelty.to(cost.sent.device),
        )
        det = out.detections
        b = item.batch.batch_size
        dropped = (cost.sent & ~delivery.delivered).cpu()
        boxes, scores = det.boxes.clone(), det.scores.clone()
        labels, valid = det.labels.clone(), det.valid.clone()
        if bool(dropped.any()):
            # Re-run the conditions that lost payloads with those collaborators masked out.
            patterns: dict[bytes, list[int]] = {}
            for ki in range(k):
                if bool(dropped[ki].any()):
                    patterns.setdefault(dropped[ki].numpy().tobytes(), []).append(ki)
            for ks in patterns.values():
                lost = dropped[ks[0]].to(device)
                masked = dataclasses.replace(item.batch, agent_mask=item.batch.agent_mask & ~lost)
                # Nothing left on air: the result cannot depend on the SNR (one run serves all).
                silent = not bool((cost.sent[ks[0]] & ~lost).any())
                torch.manual_seed(_group_seed(cfg.seed, group, bi) + 1 + ks[0])
                rerun = _run_conditions(pipe, masked, item_snr[ks], same_for_all=silent).detections
                for j, ki in enumerate(ks):
                    rows = slice(ki * b, (ki + 1) * b)
                    src = slice(j * b, (j + 1) * b)
                    boxes[rows], scores[rows] = rerun.boxes[src], rerun.scores[src]
                    labels[rows], valid[rows] = rerun.labels[src], rerun.valid[src]
        scored = RunOutput(Detections(boxes, scores, labels, valid), cost, k)
        accumulate(scored, item.gt, accs)
        ledgers.append(
            ledger_table(
                cells,
                cost,
                delivery,
                item.network,
                item.batch.agent_mask.cpu(),
                group.channel,
                group.codec,
                group.fusion,
                group.bandwidth_ratio,
            )
        )
        bar.update(b * k)
    ledger = pa.concat_tables(ledgers) if ledgers else empty_ledger()
    rows = []
    num_frames = sum(item.batch.batch_size for item in batches)
    convention = json.dumps(eval_config.convention(), sort_keys=True)
    cell_sums = summarize_cells(ledger, cells, num_frames)
    for ki, s in enumerate(plan.snr_db):
        result = accs[ki].compute()
        ap = result["ap"]
        details = result["details"]
        sub = ap.get("subset/ego_invisible")
        sums = cell_sums[ki]
        uses_per_link = sums["mean_channel_uses_per_frame"] / max(
            sums["mean_links_per_frame"], 1e-12
        )
        rows.append(
            {
                "cell_id": cells[ki],
                **group.condition(s, plan.budget),
                "dataset": plan.data["source"],
                "split": str(plan.data["split"]),
                "num_frames": num_frames,
                "ap_30": float(ap["overall"].get(0.3, math.nan)),
                "ap_50": float(ap["overall"].get(0.5, math.nan)),
                "ap_70": float(ap["overall"].get(0.7, math.nan)),
                "ap_70_invisible": float(sub.get(0.7, math.nan)) if sub else math.nan,
                "num_gt": int(next(iter(details["overall"].values()))["num_gt"]),
                "num_gt_invisible": int(
                    next(iter(details["subset/ego_invisible"].values()))["num_gt"]
                )
                if sub
                else 0,
                "eval_convention": convention,
                "realised_ratio": uses_per_link / feature_values
                if group.stage == FEATURE_STAGE and sums["mean_links_per_frame"] > 0
                else math.nan,
                **sums,
                "config_hash": plan.config_hash,
                "v2x_version": __version__,
            }
        )
    return rows, ledger


def run_sweep(cfg: Any) -> Path:
    """Run (or resume) a sweep; returns the results file path.

    Steps: validate the config (errors list the valid choices), open the job's results store
    (skipping finished cells), load frames and the model once, then evaluate each remaining
    group over all frame batches and append its cells atomically.
    """
    t0 = time.perf_counter()
    plan = plan_sweep(cfg)
    cfg = plan.config
    store = ResultsStore(cfg.output_dir, plan.config_hash, allow_corrupt=cfg.allow_corrupt)
    done = store.done_cells()
    todo = [
        g
        for g in plan.groups
        if any(cell_id(g.condition(s, plan.budget)) not in done for s in plan.snr_db)
    ]
    log.info(
        "sweep %s: %d cells in %d groups, %d groups to run -> %s",
        plan.config_hash,
        plan.num_cells,
        len(plan.groups),
        len(todo),
        store.path,
    )
    if not todo:
        return store.path
    device = resolve_device(cfg.device)
    frames = load_frames(plan.data, cfg.quiet)
    model = load_model(cfg, device)
    cache = _EncodeCache(model, float(cfg.feature_cache_gb) * 1e9)
    batches = _prepare_batches(frames, plan, model, device)
    total = len(todo) * len(frames) * len(plan.snr_db)
    with torch.no_grad(), progress(total, "sweep", cfg.quiet, unit="frame-cond") as bar:
        for group in todo:
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(f"{group.fusion}/{group.codec}/{group.channel}")
            started = time.perf_counter()
            rows, ledger = _run_group(plan, group, batches, cache, device, bar)
            store.add(rows, ledger)
            elapsed = time.perf_counter() - started
            done_groups = todo.index(group) + 1
            log.info(
                "group %d/%d %s/%s/%s ratio=%g: %d frame-conditions in %.1f s (%.1f/s)",
                done_groups,
                len(todo),
                group.fusion,
                group.codec,
                group.channel,
                group.bandwidth_ratio,
                len(frames) * len(plan.snr_db),
                elapsed,
                len(frames) * len(plan.snr_db) / max(elapsed, 1e-9),
            )
    log.info("sweep done in %.1f s (%d encoder passes)", time.perf_counter() - t0, cache.encodes)
    return store.path


def results_table_text(table: pa.Table, columns: Sequence[str] | None = None) -> str:
    """A plain-text table of results rows (one line per cell), sorted by condition."""
    if columns is None:
        columns = ["fusion", "codec", "channel", "bandwidth_ratio"]
        if "snr_mode" in table.column_names and "geometric" in table.column("snr_mode").to_pylist():
            columns.append("snr_mode")  # snr_db is then an offset over each link's own SNR
        columns += [
            "snr_db",
            "ap_30",
            "ap_50",
            "ap_70",
            "ap_70_invisible",
            "mean_channel_uses_per_frame",
            "mean_source_bits_per_frame",
            "mean_latency_s",
        ]
    columns = list(columns)
    condition = columns[: columns.index("snr_db") + 1] if "snr_db" in columns else columns[:5]
    rows = table.select(columns).to_pylist()

    def order(row: dict) -> tuple:
        key = []
        for c in condition:
            v = row[c]
            key.append(
                (0, v) if isinstance(v, str) else (1, -math.inf if v is None or v != v else v)
            )
        return tuple(key)

    rows.sort(key=order)

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return "-"
            return f"{v:.4g}" if abs(v) >= 1e4 or (abs(v) < 1e-3 and v) else f"{v:.3f}"
        return str(v)

    cells = [[fmt(r[c]) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
        for i, c in enumerate(columns)
    ]
    line = "  ".join(c.rjust(w) for c, w in zip(columns, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


__all__ = ["SweepConfig", "plan_sweep", "run_sweep", "load_frames", "results_table_text"]
