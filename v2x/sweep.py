"""Channel-condition sweeps: a grid of conditions evaluated over a frame set, batched, resumable.

``run_sweep(cfg) -> Path`` (the results file) is what ``v2x-sweep`` calls and what tests call.

The grid is ``channel × snr_db × codec × bandwidth_ratio × fusion × pose_noise``. It is cut
into **groups**: all SNRs of one (fusion, codec, ratio, channel, pose noise) setting, which
share one codec, channel and fusion. A **cell** is one SNR of a group over the whole frame set;
each runs with its own seed (from ``seed``, its condition and the frame batch), so its numbers
do not depend on the other cells computed with it. Fusion stages that send no features
(``ego``: ``none``; ``boxes``: ``late``; ``points``: ``early``) do not use the codec or the
channel (late and early fusion are charged as ideal digital links at each SNR), so they form one
group per pose noise, with ``codec = channel = "n/a"``.

Per frame batch the encoders run once for the whole sweep (their features are cached in memory
up to ``feature_cache_gb``); each cell then pays only for codec, channel, warp, fusion, head and
NMS. The network (range, link models, geometric SNR) and the bandwidth budget (scheduler,
deadline) decide what arrives; a payload dropped at the deadline is removed from the ego's
fusion by re-running that condition with the collaborator masked.

Cells are keyed by everything that changes a number (``cell_id``: condition, ``setting_key`` —
code hash, checkpoint hashes, frames' content hash, config — and seed; see ``docs/sweeps.md``).
A group's cells are written to the results store when all its frames are done (atomic; see
``v2x.results``); a sweep computes only the cells that neither its own file nor another
results file of ``output_dir`` holds. Defaults come from ``conf/sweep.yaml`` for the Python API
and the CLI alike (``default_config``).
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
from v2x.registry import import_plugins
from v2x.results import ResultsStore, cell_id, code_hash, stable_hash

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

    ``from_any`` merges a mapping over ``default_config()`` (``conf/sweep.yaml``): the defaults
    below are those of a bare ``SweepConfig()`` and agree with the YAML (tested).

    Attributes:
        seed: seeds channel noise, pose noise and probabilistic LOS.
        device: ``cpu``, ``cuda`` or ``auto``.
        checkpoint: detector checkpoint path; ``null``/``shipped`` = the shipped model (an
            error if it is missing), ``untrained`` = random weights built from ``model`` (tests,
            smoke runs).
        model: ``DetectorConfig`` fields for ``checkpoint=untrained``.
        data: the frame set (see ``load_frames``).
        batch_size: frames per pipeline call.
        grid: ``channels``, ``snr_db``, ``codecs``, ``bandwidth_ratios``, ``fusions``,
            ``pose_noise`` (list of ``[translation_std_m, yaw_std_rad]``).
        codec_options, channel_options, fusion_options: constructor kwargs per name.
        network, budget, eval: see ``NetworkConfig``, ``BudgetConfig``, ``EvalConfig``; ``eval``
            also takes ``min_points`` and ``bootstrap`` (resamples of the frames for each AP's
            95 % interval, seeded by ``seed``; 0: none).
        output_dir: folder of the results files.
        quiet: no progress bar (also off when stderr is not a TTY or ``CI`` is set).
        allow_corrupt: move an unreadable results file aside instead of failing.
        feature_cache_gb: memory for cached encoder features (0: re-encode per group).
        table: print the results table when the app finishes.
        plots: draw this job's figures when the app finishes (``v2x.plots.make_plots``).
        plots_dir: their folder (default ``<output_dir>/plots-<config hash>``).
        plugins: modules imported first, which register channels, codecs, fusions or link
            models of the user's (``v2x.registry.import_plugins``); each job of a launcher
            imports them itself.
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
    plugins: list = field(default_factory=list)

    @classmethod
    def from_any(cls, cfg: Any) -> SweepConfig:
        """A ``SweepConfig`` from a mapping (Hydra's ``DictConfig`` or a plain dict) merged over
        ``default_config()`` (nested mappings merge key by key, lists replace)."""
        if isinstance(cfg, SweepConfig):
            return cfg
        from omegaconf import OmegaConf

        data = _plain(cfg)
        if not isinstance(data, Mapping):
            raise ValueError(f"sweep: the config must be a mapping of fields, got {type(cfg)}")
        data = {k: v for k, v in data.items() if k != "hydra"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(
                f"sweep: unknown config field(s) {sorted(unknown)}; valid: {sorted(names)}"
            )
        defaults = default_config()
        merged = _plain(OmegaConf.merge(OmegaConf.create(defaults), OmegaConf.create(data)))
        return cls(**merged)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SNR_MODES = ("fixed", "geometric")
DATA_SOURCES = ("synthetic", "store", "v2xsim", "dair_v2x")
#: The name that asks for random weights (detector ``checkpoint``, codec ``checkpoint`` option).
UNTRAINED = "untrained"


def default_config() -> dict:
    """The sweep's defaults: ``conf/sweep.yaml`` composed with its defaults list (the same
    config ``v2x-sweep`` starts from; ``hydra`` settings left out).

    ``run_sweep`` / ``plan_sweep`` merge a Python config over these, so the Python API and the
    CLI share one set of defaults.
    """
    return _plain(_compose_defaults("sweep"))


def _conf_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("v2x.conf")))


def _compose_defaults(name: str) -> Any:
    """``conf/<name>.yaml`` with its ``defaults`` list applied (``group: option``,
    ``group@package: option``, another config of the folder, ``_self_``) — the subset of
    Hydra's composition the shipped configs use, without Hydra's global state."""
    from omegaconf import OmegaConf

    own = OmegaConf.load(_conf_dir() / f"{name}.yaml")
    defaults = list(own.pop("defaults", []) or [])
    own.pop("hydra", None)
    if "_self_" not in defaults:
        defaults.append("_self_")
    merged = OmegaConf.create({})
    for entry in defaults:
        if entry == "_self_":
            merged = OmegaConf.merge(merged, own)
        elif isinstance(entry, str):
            merged = OmegaConf.merge(merged, _compose_defaults(entry))
        else:
            ((group, option),) = dict(entry).items()
            group, _, package = str(group).partition("@")
            if option is None:
                continue
            node = OmegaConf.load(_conf_dir() / group / f"{option}.yaml")
            target = package or group
            merged = OmegaConf.merge(merged, OmegaConf.create(_nest(target.split("."), node)))
    return merged


def _nest(keys: list[str], value: Any) -> Any:
    return value if not keys else {keys[0]: _nest(keys[1:], value)}


def _plain(obj: Any) -> Any:
    """OmegaConf containers → plain Python (resolved)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, DictConfig | ListConfig):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
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
    codec_sha256: str = ""
    #: everything besides the condition, the seed and the frames that changes this group's
    #: numbers (filled by ``plan_sweep``; see ``setting_key``)
    setting: dict = field(default_factory=dict)

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
    bootstrap: int = 0

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


def _names_parameter(factory: Any, name: str) -> bool:
    """Whether ``factory`` has a parameter called ``name`` (not merely ``**kwargs``)."""
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def _numbers(field_name: str, values: Sequence) -> list[float]:
    """``values`` as floats; a value that is not a number is a ``ValueError`` naming the field."""
    out = []
    for v in values:
        if isinstance(v, bool):
            v = str(v)
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            raise ValueError(f"sweep: field '{field_name}' must hold numbers, got {v!r}") from None
    return out


def _integer(field_name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an int (``ValueError`` naming the field if it is not a whole number)."""
    try:
        number = float(value)
        if isinstance(value, bool) or not number.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"sweep: field '{field_name}' must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"sweep: field '{field_name}' must be >= {minimum}, got {value}")
    return int(number)


def plan_sweep(cfg: Any) -> SweepPlan:
    """Validate ``cfg`` and list the groups; raises ``ValueError`` before any work."""
    from v2x.channels import CHANNELS
    from v2x.perception.evaluate import EvalConfig
    from v2x.perception.fusion import FUSIONS
    from v2x.semcom import CODECS
    from v2x.semcom import _load_all as _load_codecs

    cfg = SweepConfig.from_any(cfg)
    import_plugins(cfg.plugins)
    defaults = default_config()
    grid = dict(cfg.grid or {})
    unknown = set(grid) - set(defaults["grid"])
    if unknown:
        raise ValueError(
            f"sweep: unknown field(s) {sorted(unknown)} in 'grid'; valid: {sorted(defaults['grid'])}"
        )
    data = dict(cfg.data or {})
    unknown = set(data) - set(defaults["data"])
    if unknown:
        raise ValueError(
            f"sweep: unknown field(s) {sorted(unknown)} in 'data'; valid: {sorted(defaults['data'])}"
        )
    if data["source"] not in DATA_SOURCES:
        raise ValueError(
            f"sweep: field 'data.source' is {data['source']!r}; valid choices: {', '.join(DATA_SOURCES)}"
        )
    if data["source"] == "store" and not data.get("path"):
        raise ValueError(
            "sweep: field 'data.path' must name a v2x-generate folder when data.source=store"
        )
    if data["source"] == "synthetic" and data.get("path"):
        raise ValueError(
            f"sweep: field 'data.path' is {data['path']!r}, but data.source=synthetic ignores it "
            f"(the built-in world); set data.source to one of store, v2xsim, dair_v2x to read "
            "that folder, or leave data.path unset"
        )
    for key in ("num_frames", "frames_per_sequence"):
        data[key] = _integer(f"data.{key}", data[key], minimum=1)
    cfg.batch_size = _integer("batch_size", cfg.batch_size, minimum=1)
    cfg.seed = _integer("seed", cfg.seed)

    def as_list(name: str) -> list:
        value = grid[name]
        if value is None or isinstance(value, str | int | float | Mapping):
            value = [value] if value is not None else []
        if not list(value):
            raise ValueError(f"sweep: field 'grid.{name}' is empty; give at least one value")
        return list(value)

    snr = _numbers("grid.snr_db", as_list("snr_db"))
    if not all(math.isfinite(v) for v in snr):
        raise ValueError(f"sweep: field 'grid.snr_db' must hold finite numbers, got {snr}")
    if len(set(snr)) != len(snr):
        raise ValueError(f"sweep: field 'grid.snr_db' lists a value twice: {snr}")
    snr_mode = str(grid.get("snr_mode", "fixed"))
    if snr_mode not in SNR_MODES:
        raise ValueError(
            f"sweep: field 'grid.snr_mode' must be one of {list(SNR_MODES)}, got {snr_mode!r}"
        )
    ratios = _numbers("grid.bandwidth_ratios", as_list("bandwidth_ratios"))
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
        pair = _numbers("grid.pose_noise", p if isinstance(p, list | tuple) else [p, 0.0])
        if len(pair) != 2 or min(pair) < 0:
            raise ValueError(
                f"sweep: field 'grid.pose_noise' entries must be [translation_std_m, yaw_std_rad] >= 0, got {p}"
            )
        poses.append(tuple(pair))
    network = NetworkConfig.from_dict(cfg.network or {})
    budget = BudgetConfig.from_dict(cfg.budget or {})
    eval_kwargs = {"distance_bins": [], "per_class": False, "min_points": 1, **(cfg.eval or {})}
    min_points = _integer("eval.min_points", eval_kwargs.pop("min_points"), minimum=0)
    bootstrap = _integer("eval.bootstrap", eval_kwargs.pop("bootstrap", 0), minimum=0)
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
            factory = CODECS.get(g.codec)
            if _names_parameter(factory, "checkpoint") and g.codec_kwargs.get("checkpoint") in (
                None,
                "",
            ):
                raise ValueError(
                    f"sweep: codec {g.codec!r} has no checkpoint (field "
                    f"'codec_options.{g.codec}.checkpoint' is {g.codec_kwargs.get('checkpoint')!r}); "
                    f"valid: a checkpoint path, 'shipped' (the trained codec shipped with v2x) or "
                    f"'{UNTRAINED}' (random weights, for smoke runs)"
                )
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

    detector_sha = _checkpoint_digest(cfg.checkpoint)
    codec_shas: dict[str, str] = {}
    for g in groups:
        ckpt = (g.codec_kwargs or {}).get("checkpoint")
        if ckpt:
            ref = f"{g.codec}:{ckpt}"
            if ref not in codec_shas:
                codec_shas[ref] = (
                    UNTRAINED
                    if ckpt == UNTRAINED
                    else _codec_checkpoint_digest(g.codec, str(ckpt))
                )
            g.codec_sha256 = codec_shas[ref]
    code = code_hash()
    eval_setting = {
        **dataclasses.asdict(eval_config),  # per_class, distance bins, ... (columns they fill)
        **eval_config.convention(),
        "min_points": min_points,
        "bootstrap": bootstrap,
    }
    common = {
        "code_hash": code,
        "detector_sha256": detector_sha,
        # random weights are drawn from the model config (a checkpoint carries its own)
        "model": cfg.model if detector_sha == UNTRAINED else None,
        "device": str(cfg.device),
        "batch_size": int(cfg.batch_size),
        "max_agents": data.get("max_agents"),
        "network": dataclasses.asdict(network),
        "budget": dataclasses.asdict(budget),
        "eval": eval_setting,
    }
    for g in groups:
        g.setting = {
            **common,
            "codec_kwargs": {k: v for k, v in g.codec_kwargs.items() if k != "checkpoint"},
            "codec_sha256": g.codec_sha256,
            "channel_options": dict((cfg.channel_options or {}).get(g.channel, {}) or {}),
            "fusion_options": dict((cfg.fusion_options or {}).get(g.fusion, {}) or {}),
            # parts registered from outside v2x are keyed by their own source
            "external_code": _external_sources(g),
        }

    hashed = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED}
    hashed["data"] = {k: v for k, v in data.items() if k not in _NOT_HASHED_DATA}
    hashed["grid"] = grid
    hashed["v2x_version"] = __version__
    hashed["code_hash"] = code
    hashed["checkpoint_sha256"] = detector_sha
    # A retrained codec must not resume results of the old one: hash its weights too.
    hashed["codec_checkpoints_sha256"] = codec_shas
    return SweepPlan(
        cfg,
        grid,
        data,
        snr,
        groups,
        network,
        budget,
        eval_config,
        min_points,
        stable_hash(hashed),
        bootstrap,
    )


def _external_sources(group: Group) -> dict[str, str]:
    """SHA-256 of the source file of each part of ``group`` (fusion, codec, channel) whose
    factory lives outside the ``v2x`` packages (their edits are not in ``code_hash``)."""
    from v2x.channels import CHANNELS
    from v2x.perception.fusion import FUSIONS
    from v2x.semcom import CODECS

    out = {}
    parts = [("fusion", FUSIONS, group.fusion)]
    if group.stage == FEATURE_STAGE:
        parts += [("codec", CODECS, group.codec), ("channel", CHANNELS, group.channel)]
    for kind, registry, name in parts:
        module = getattr(registry.get(name), "__module__", "") or ""
        if module == "v2x" or module.startswith("v2x."):
            continue
        source = getattr(sys.modules.get(module), "__file__", None)
        out[f"{kind}:{name}"] = (
            _file_digest(Path(source)) if source and Path(source).is_file() else module
        )
    return out


def _checkpoint_digest(checkpoint: str | None) -> str:
    """SHA-256 of the detector checkpoint the sweep will load (``"untrained"`` for none)."""
    from v2x.checkpoint import shipped_detector_path

    if checkpoint == UNTRAINED:
        return UNTRAINED
    path = shipped_detector_path() if checkpoint in (None, "", "shipped") else Path(checkpoint)
    if not path.is_file():
        if checkpoint in (None, "", "shipped"):
            raise ValueError(
                f"sweep: field 'checkpoint' is {checkpoint!r} (the shipped detector), but "
                f"{path} does not exist; valid: a checkpoint path, or '{UNTRAINED}' for "
                "random weights (smoke runs)"
            )
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
        return [dataset[i] for i in range(_frames_wanted(data, len(dataset)))]
    if data["source"] == "store":
        from v2x.datasets.store import load_split

        split = load_split(Path(str(data["path"])), str(data["split"]))
        return [split[i] for i in range(_frames_wanted(data, len(split)))]
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


def _frames_wanted(data: Mapping, available: int) -> int:
    """``data.num_frames`` (``None``: all), checked against the frames the dataset has (never
    silently fewer)."""
    if data.get("num_frames") is None:
        return available
    wanted = int(data["num_frames"])
    if wanted > available:
        where = f"{data['path']}" + (f" (split {data['split']})" if data["source"] == "store" else "")
        raise ValueError(
            f"sweep: field 'data.num_frames' is {wanted}, but the {data['source']} dataset at "
            f"{where} has {available} frame(s); set data.num_frames <= {available}"
        )
    return wanted


def frames_digest(frames: Sequence[CoopFrame]) -> str:
    """SHA-256 of the frames' content (every agent's id, kind, pose, points and timestamp; the
    boxes, classes, track ids, visibility and meta), in order: the data part of a cell's key."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value)
            digest.update(f"A{arr.dtype.str}{arr.shape}".encode())
            digest.update(arr.tobytes())
        elif isinstance(value, torch.Tensor):
            feed(value.detach().cpu().numpy())
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            digest.update(f"D{type(value).__name__}".encode())
            for f in dataclasses.fields(value):
                digest.update(f.name.encode())
                feed(getattr(value, f.name))
        elif isinstance(value, Mapping):
            digest.update(f"M{len(value)}".encode())
            for key in sorted(value, key=str):
                digest.update(str(key).encode())
                feed(value[key])
        elif isinstance(value, list | tuple):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                feed(item)
        else:
            digest.update(f"S{value!r}".encode())

    for frame in frames:
        feed(frame)
    return digest.hexdigest()


def data_identity(data: Mapping, frames: Sequence[CoopFrame]) -> dict:
    """What the results record of the frame set: source, path, split, frame count, content hash."""
    return {
        "source": str(data["source"]),
        "path": "" if data.get("path") in (None, "") else str(data["path"]),
        "split": str(data["split"]),
        "num_frames": len(frames),
        "hash": frames_digest(frames),
    }


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
        raise ValueError(
            f"sweep: field 'checkpoint' is {ckpt!r} (the shipped detector), but "
            f"{shipped_detector_path()} does not exist; valid: a checkpoint path, or "
            f"'{UNTRAINED}' for random weights (smoke runs)"
        )
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


def _cell_seed(seed: int, condition: Mapping, batch_index: int) -> int:
    """Seed of one cell's run on one frame batch: from the sweep seed, the cell's condition
    and the batch alone, so a cell's numbers do not depend on which other cells run with it."""
    return int(stable_hash([seed, cell_id(condition), batch_index], 15), 16)


def setting_key(group: Group, data_id: Mapping) -> str:
    """Hash of everything besides the condition and the seed that changes a cell's numbers:
    the group's ``setting`` (code, checkpoints, config) and the frames' content hash."""
    data = {k: data_id[k] for k in ("source", "split", "num_frames", "hash")}
    return stable_hash({**group.setting, "data": data}, 16)


def _share_source_coding(codec: Any) -> dict:
    """Let every cell of a group reuse the codec's SNR-independent source coding of a map.

    The digital chain memoises its source coding (quantise + entropy code, the costliest step
    of a sweep on the CPU) per map content within one ``encode`` call (``_fit_stream``'s
    ``cache``); cells run one call each, so the sweep hands every call one shared memo, which
    the caller clears per frame batch. The memo is keyed by the map's content and returns what
    the codec would recompute, so no number changes. A codec without that hook is left as is.
    Returns the shared memo.
    """
    shared: dict = {}
    fit = getattr(codec, "_fit_stream", None)
    try:
        takes_cache = fit is not None and "cache" in inspect.signature(fit).parameters
    except (TypeError, ValueError):
        takes_cache = False
    if takes_cache:

        def fit_shared(features: torch.Tensor, row: int, mcs_index: int, cache=None) -> Any:
            return fit(features, row, mcs_index, shared)

        codec._fit_stream = fit_shared
    return shared


def _concat_runs(outs: Sequence[Any]) -> Any:
    """``RunOutput`` of several runs (each ``K_i`` conditions) as one of ``sum K_i`` conditions,
    condition-major like a single run's."""
    from v2x.perception.detector import Detections
    from v2x.pipeline import LinkCost, RunOutput

    if len(outs) == 1:
        return outs[0]
    width = max(o.detections.boxes.shape[1] for o in outs)

    def pad(t: torch.Tensor, value: float | bool) -> torch.Tensor:
        if t.shape[1] == width:
            return t
        shape = (t.shape[0], width - t.shape[1], *t.shape[2:])
        return torch.cat([t, torch.full(shape, value, dtype=t.dtype, device=t.device)], 1)

    det = Detections(
        torch.cat([pad(o.detections.boxes, 0.0) for o in outs]),
        torch.cat([pad(o.detections.scores, 0.0) for o in outs]),
        torch.cat([pad(o.detections.labels, 0) for o in outs]),
        torch.cat([pad(o.detections.valid, False) for o in outs]),
    )
    cost = LinkCost(
        *(
            torch.cat([getattr(o.cost, f.name) for o in outs])
            for f in dataclasses.fields(LinkCost)
        )
    )
    return RunOutput(det, cost, sum(o.num_conditions for o in outs))


def _run_group(
    plan: SweepPlan,
    group: Group,
    snrs: Sequence[float],
    batches: list[_Batch],
    model: _EncodeCache,
    device,
    bar,
    data_id: Mapping,
) -> tuple[list[dict], pa.Table]:
    """Evaluate the cells of ``group`` at ``snrs`` over every frame batch: results rows and
    their ledger. Each feature-fusion cell runs in its own call with its own seed
    (``_cell_seed``), so its numbers do not depend on the cells beside it; ego-only, late and
    early fusion, whose detections do not depend on the SNR, run once per batch for all SNRs."""
    from v2x.channels import build_channel
    from v2x.evaluation import accumulate
    from v2x.perception.detector import Detections
    from v2x.perception.evaluate import APAccumulator
    from v2x.perception.fusion import build_fusion
    from v2x.pipeline import CooperativePipeline, RunOutput
    from v2x.semcom import CODECS, build_codec

    cfg = plan.config
    snr = torch.tensor(list(snrs), dtype=torch.float32)  # geometric mode: offsets in dB
    k = snr.shape[0]
    fusion = build_fusion(
        group.fusion, **dict((cfg.fusion_options or {}).get(group.fusion, {}) or {})
    )
    if group.stage == FEATURE_STAGE:
        kwargs = dict(group.codec_kwargs)
        if kwargs.get("checkpoint") == UNTRAINED:
            kwargs["checkpoint"] = None
        if "in_channels" not in kwargs and _accepts(CODECS.get(group.codec), "in_channels"):
            kwargs["in_channels"] = int(model.config.feature_channels)  # the map it codes
        if "max_channel_uses" not in kwargs and _accepts(
            CODECS.get(group.codec), "max_channel_uses"
        ):
            # Rate-adaptive codecs fit their payload into an equal share of the frame's budget.
            links = max(int(item.batch.agent_mask[:, 1:].sum(1).max()) for item in batches)
            kwargs["max_channel_uses"] = int(plan.budget.channel_uses // max(links, 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.seed))  # untrained weights: the same on every run
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

    def seeded(seed: int) -> None:
        torch.manual_seed(seed)
        pipe.generator.manual_seed(seed)

    shared_coding = _share_source_coding(codec)

    eval_config = _eval_config(plan, model)
    accs = [APAccumulator(eval_config) for _ in range(k)]
    conditions = [group.condition(s, plan.budget) for s in snrs]
    key = setting_key(group, data_id)
    cells = [cell_id(c, key, int(cfg.seed)) for c in conditions]
    ledgers = []
    # Real values of one transmitted feature map [C, H/stride, W/stride] (the ratio's denominator).
    feature_values = float(
        model.config.feature_channels
        * (model.grid.height // model.stride)
        * (model.grid.width // model.stride)
    )
    for bi, item in enumerate(batches):
        model.batch_index = bi
        shared_coding.clear()  # holds the source coding of one frame batch's maps at a time
        seeds = [_cell_seed(int(cfg.seed), c, bi) for c in conditions]
        item_snr = snr  # [K], or [K, B, A]: each link at its geometric SNR + the grid's offset
        if group.snr_mode == "geometric":
            item_snr = (item.network.snr_db[None] + snr.view(k, 1, 1).double()).float().to(device)
        if group.stage != FEATURE_STAGE:
            # Ego-only, late and early fusion: the detections do not depend on the SNR (late and
            # early payloads are charged as ideal digital links, a function of the SNR alone), so
            # one call with the group's seed gives every cell what a call of its own would.
            # (pose noise draws from the pipeline's generator once per call, whatever K is)
            torch.manual_seed(_group_seed(int(cfg.seed), group, bi))
            out = _run_conditions(pipe, item.batch, item_snr, same_for_all=group.stage == "ego")
        else:
            runs = []
            for ki in range(k):
                seeded(seeds[ki])
                runs.append(pipe.run(item.batch, item_snr[ki : ki + 1]))
            out = _concat_runs(runs)
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
        silent_runs: dict[bytes, Any] = {}
        # Re-runs are seeded per cell; the generator then goes on as if none had happened, so
        # the next batch's draws do not depend on which cells lost payloads here.
        generator_state = pipe.generator.get_state()
        for ki in range(k):
            if not bool(dropped[ki].any()):
                continue
            # Re-run a condition that lost payloads with those collaborators masked out.
            pattern = dropped[ki].numpy().tobytes()
            lost = dropped[ki].to(device)
            # Nothing left on air: the result depends on neither the SNR nor the seed, so one
            # run serves every cell of this batch that lost the same payloads.
            silent = not bool((cost.sent[ki] & ~lost).any())
            if silent and pattern in silent_runs:
                rerun = silent_runs[pattern]
            else:
                masked = dataclasses.replace(
                    item.batch, agent_mask=item.batch.agent_mask & ~lost
                )
                seeded(seeds[ki] + 1)
                rerun = _run_conditions(
                    pipe, masked, item_snr[ki : ki + 1], same_for_all=silent
                ).detections
                if silent:
                    silent_runs[pattern] = rerun
            rows = slice(ki * b, (ki + 1) * b)
            n = min(rerun.boxes.shape[1], boxes.shape[1])
            for dst, src, fill in (
                (boxes, rerun.boxes, 0.0),
                (scores, rerun.scores, 0.0),
                (labels, rerun.labels, 0),
                (valid, rerun.valid, False),
            ):
                dst[rows] = fill
                dst[rows, :n] = src[:, :n]
        pipe.generator.set_state(generator_state)
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
    for ki in range(len(snrs)):
        result = _compute_ap(accs[ki], plan.bootstrap, int(cfg.seed))
        ap = result["ap"]
        details = result["details"]
        ci = result.get("ci") or {}
        sub = ap.get("subset/ego_invisible")
        sums = cell_sums[ki]
        uses_per_link = sums["mean_channel_uses_per_frame"] / max(
            sums["mean_links_per_frame"], 1e-12
        )
        metrics = {
            "ap_30": ("overall", 0.3),
            "ap_50": ("overall", 0.5),
            "ap_70": ("overall", 0.7),
            "ap_70_invisible": ("subset/ego_invisible", 0.7),
        }
        intervals = {}
        for name, (where, thr) in metrics.items():
            lo, hi = (ci.get(where) or {}).get(thr, (math.nan, math.nan))
            intervals[f"{name}_lo"], intervals[f"{name}_hi"] = float(lo), float(hi)
        per_class = {
            g.removeprefix("class/"): {f"{t:g}": float(v) for t, v in ap[g].items()}
            for g in ap
            if g.startswith("class/")
        }
        rows.append(
            {
                "cell_id": cells[ki],
                **conditions[ki],
                "dataset": data_id["source"],
                "split": data_id["split"],
                "num_frames": num_frames,
                "ap_30": float(ap["overall"].get(0.3, math.nan)),
                "ap_50": float(ap["overall"].get(0.5, math.nan)),
                "ap_70": float(ap["overall"].get(0.7, math.nan)),
                "ap_70_invisible": float(sub.get(0.7, math.nan)) if sub else math.nan,
                **intervals,
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
                "per_class_ap": json.dumps(per_class, sort_keys=True) if per_class else "",
                "config_hash": plan.config_hash,
                "v2x_version": __version__,
                "seed": int(cfg.seed),
                "data_path": data_id["path"],
                "data_hash": data_id["hash"],
                "detector_sha256": group.setting["detector_sha256"],
                "codec_sha256": group.codec_sha256,
                "code_hash": group.setting["code_hash"],
                "setting_key": key,
            }
        )
    return rows, ledger


#: The evaluator groups whose APs are results columns (and get bootstrap intervals).
RESULT_GROUPS = ("overall", "subset/ego_invisible")


def _compute_ap(acc: Any, bootstrap: int, seed: int) -> dict:
    """``acc.compute()``, with ``bootstrap`` resamples of the frames (seeded by the sweep's
    seed) for the 95 % intervals of the APs that are results columns."""
    return acc.compute(bootstrap=bootstrap, seed=seed, bootstrap_groups=RESULT_GROUPS)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; its message says what was saved and how to resume."""


def _reuse_cells(store: ResultsStore, wanted: set[str]) -> int:
    """Copy cells in ``wanted`` that other results files of the store's folder already hold
    (same ``cell_id``: same condition, code, checkpoints, data, config and seed) into the
    store, with their ledger rows; returns how many. Unreadable files are skipped (logged)."""
    from v2x.ledger import LEDGER_SCHEMA
    from v2x.results import (
        RESULTS_SCHEMA,
        CorruptResultsError,
        ledger_path_of,
        read_table,
        results_files,
    )

    if not wanted or not store.directory.is_dir():
        return 0
    import pyarrow.compute as pc

    found = 0
    for f in results_files([store.directory]):
        if f == store.path or not wanted:
            continue
        try:
            table = read_table(f, RESULTS_SCHEMA)
            hit = wanted & set(table.column("cell_id").to_pylist())
            if not hit or not ledger_path_of(f).exists():
                continue
            ledger = read_table(ledger_path_of(f), LEDGER_SCHEMA)
        except CorruptResultsError as exc:
            log.warning("sweep: not reusing cells of an unreadable file: %s", exc)
            continue
        value_set = pa.array(sorted(hit), pa.string())
        rows = table.filter(pc.is_in(table.column("cell_id"), value_set=value_set)).to_pylist()
        store.add(rows, ledger.filter(pc.is_in(ledger.column("cell_id"), value_set=value_set)))
        wanted -= hit
        found += len(hit)
        log.info("sweep: reused %d cell(s) of %s", len(hit), f)
    return found


def run_sweep(cfg: Any) -> Path:
    """Run (or resume) a sweep; returns the results file path.

    Steps: validate the config (errors list the valid choices), load the frames (their content
    hash keys the cells), open the job's results store, take the cells that it or another
    results file of ``output_dir`` already holds, then load the model once and compute only the
    missing cells, appending each group's cells atomically. Ctrl-C raises ``SweepInterrupted``
    saying what was saved and how to resume.
    """
    t0 = time.perf_counter()
    plan = plan_sweep(cfg)
    cfg = plan.config
    frames = load_frames(plan.data, cfg.quiet)
    data_id = data_identity(plan.data, frames)
    store = ResultsStore(
        cfg.output_dir,
        stable_hash([plan.config_hash, data_id["hash"]]),
        allow_corrupt=cfg.allow_corrupt,
    )
    ids = {
        id(g): [
            cell_id(g.condition(s, plan.budget), setting_key(g, data_id), int(cfg.seed))
            for s in plan.snr_db
        ]
        for g in plan.groups
    }
    done = store.done_cells()
    reused = _reuse_cells(store, {c for cs in ids.values() for c in cs} - done)
    done = store.done_cells()
    todo = [
        (g, [s for s, c in zip(plan.snr_db, ids[id(g)]) if c not in done]) for g in plan.groups
    ]
    todo = [(g, snrs) for g, snrs in todo if snrs]
    to_compute = sum(len(snrs) for _, snrs in todo)
    log.info(
        "sweep %s: %d cells in %d groups; %d already done, %d reused from other results files; "
        "computing %d cells in %d groups -> %s",
        store.config_hash,
        plan.num_cells,
        len(plan.groups),
        plan.num_cells - to_compute - reused,
        reused,
        to_compute,
        len(todo),
        store.path,
    )
    if not todo:
        return store.path
    device = resolve_device(cfg.device)
    saved = 0
    try:
        model = load_model(cfg, device)
        cache = _EncodeCache(model, float(cfg.feature_cache_gb) * 1e9)
        batches = _prepare_batches(frames, plan, model, device)
        total = to_compute * len(frames)
        with torch.no_grad(), progress(total, "sweep", cfg.quiet, unit="frame-cond") as bar:
            for n, (group, snrs) in enumerate(todo, 1):
                if hasattr(bar, "set_postfix_str"):
                    bar.set_postfix_str(f"{group.fusion}/{group.codec}/{group.channel}")
                started = time.perf_counter()
                rows, ledger = _run_group(plan, group, snrs, batches, cache, device, bar, data_id)
                store.add(rows, ledger)
                saved += len(rows)
                elapsed = time.perf_counter() - started
                log.info(
                    "group %d/%d %s/%s/%s ratio=%g: %d frame-conditions in %.1f s (%.1f/s)",
                    n,
                    len(todo),
                    group.fusion,
                    group.codec,
                    group.channel,
                    group.bandwidth_ratio,
                    len(frames) * len(snrs),
                    elapsed,
                    len(frames) * len(snrs) / max(elapsed, 1e-9),
                )
    except KeyboardInterrupt:
        have = len(store.done_cells())
        raise SweepInterrupted(
            f"sweep interrupted: {saved} of the {to_compute} cells to compute were saved "
            f"({have} of {plan.num_cells} cells in {store.path}); run the same command again "
            "to resume"
        ) from None
    log.info("sweep done in %.1f s (%d encoder passes)", time.perf_counter() - t0, cache.encodes)
    return store.path


def _per_class_columns(table: pa.Table) -> dict[str, tuple[str, str]]:
    """``{"ap_50/car": ("car", "0.5"), ...}`` for the per-class APs the rows carry (AP@0.5)."""
    if "per_class_ap" not in table.column_names:
        return {}
    classes: dict[str, None] = {}
    for text in table.column("per_class_ap").to_pylist():
        for cls in json.loads(text) if text else {}:
            classes.setdefault(cls)
    return {f"ap_50/{cls}": (cls, "0.5") for cls in classes}


def vocabulary() -> dict[str, tuple[str, list[str]]]:
    """Every name the sweep config accepts, per axis: ``{axis: (config field, names)}``."""
    from v2x.budget import LATE_POLICIES, SCHEDULERS
    from v2x.channels import CHANNELS, LINKS
    from v2x.network import LOS_MODES
    from v2x.perception.fusion import FUSIONS
    from v2x.semcom import CODECS
    from v2x.semcom import _load_all as _load_codecs

    _load_codecs()
    return {
        "channels": ("grid.channels", CHANNELS.names()),
        "codecs": ("grid.codecs", CODECS.names()),
        "fusions": ("grid.fusions", FUSIONS.names()),
        "snr modes": ("grid.snr_mode", list(SNR_MODES)),
        "link models": ("network.link_models", LINKS.names()),
        "los modes": ("network.los_mode", list(LOS_MODES)),
        "schedulers": ("budget.scheduler", SCHEDULERS.names()),
        "late policies": ("budget.late_policy", list(LATE_POLICIES)),
        "data sources": ("data.source", list(DATA_SOURCES)),
    }


def vocabulary_text() -> str:
    """``vocabulary()`` as one line per axis (what ``v2x-sweep list`` prints)."""
    rows = vocabulary()
    width = max(len(f"{axis} ({field_name}):") for axis, (field_name, _) in rows.items())
    return "\n".join(
        f"{f'{axis} ({field_name}):':<{width}} {', '.join(names)}"
        for axis, (field_name, names) in rows.items()
    )


def results_table_text(table: pa.Table, columns: Sequence[str] | None = None) -> str:
    """A plain-text table of results rows (one line per cell), sorted by condition.

    An AP with a known 95 % interval (``<metric>_lo`` / ``_hi`` columns) prints as
    ``value [lo, hi]``; rows with per-class AP (``eval.per_class=true``) get an ``ap_50/<class>``
    column per class; rows averaged over seeds get ``num_seeds``.
    """
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
    if "num_seeds" in table.column_names and max(table.column("num_seeds").to_pylist() or [1]) > 1:
        columns.append("num_seeds")  # rows are means over seeds (v2x.results.aggregate_seeds)
    per_class = _per_class_columns(table)
    condition = columns[: columns.index("snr_db") + 1] if "snr_db" in columns else columns[:5]
    extra = [
        f"{c}_{end}"
        for c in columns
        for end in ("lo", "hi")
        if f"{c}_{end}" in table.column_names and f"{c}_{end}" not in columns
    ]
    rows = table.select(list(dict.fromkeys(columns + extra))).to_pylist()
    if per_class:
        for row, text in zip(rows, table.column("per_class_ap").to_pylist()):
            values = json.loads(text) if text else {}
            for name, (cls, thr) in per_class.items():
                row[name] = float(values.get(cls, {}).get(thr, math.nan))
        columns += list(per_class)

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

    def cell(r: dict, c: str) -> str:
        lo, hi = r.get(f"{c}_lo"), r.get(f"{c}_hi")
        if isinstance(lo, float) and isinstance(hi, float) and lo == lo and hi == hi:
            return f"{fmt(r[c])} [{fmt(lo)}, {fmt(hi)}]"  # the AP's 95 % interval
        return fmt(r[c])

    cells = [[cell(r, c) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
        for i, c in enumerate(columns)
    ]
    line = "  ".join(c.rjust(w) for c, w in zip(columns, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


__all__ = ["SweepConfig", "plan_sweep", "run_sweep", "load_frames", "results_table_text"]
