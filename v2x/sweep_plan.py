"""Sweep planning: a config (``v2x.sweep_config``) validated into groups of cells
(``plan_sweep``), keyed by everything outside the config that changes a number (checkpoint and
code digests from ``v2x.provenance``, parts registered from outside the package). See
``v2x.sweep`` for how a plan is run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from v2x import __version__
from v2x.channels.radio import check_snr_db
from v2x.common import import_plugins
from v2x.network import NetworkConfig
from v2x.provenance import (
    UNTRAINED,
    checkpoint_digest,
    code_hash,
    codec_checkpoint_digest,
    detector_feature_channels,
    file_digest,
    library_versions,
    model_backbone,
    model_setting,
    stable_hash,
)
from v2x.scheduling import LATE_POLICIES, BudgetConfig
from v2x.sweep_config import (  # noqa: F401 - the config API, also reachable from here
    _NOT_HASHED,
    _NOT_HASHED_DATA,
    DATA_SOURCES,
    SNR_MODES,
    SweepConfig,
    _codec_spec,
    _compose_defaults,
    _integer,
    _numbers,
    check_feature_cache,
    default_config,
    options_fields,
)
from v2x.sweep_parts import (  # noqa: F401 - what the parts declare, also reachable from here
    build_channels,
    channel_sweep_arguments,
    check_codec_for_fusion,
    check_registered,
    codec_bits,
    codec_kwargs_for,
    raise_naming_fields,
    rejected_options,
    retransmission_settings,
    sweep_arguments,
)

log = logging.getLogger(__name__)


NO_CODEC = "n/a"
FEATURE_STAGE = "features"


# --------------------------------------------------------------------------- config


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
    #: retransmission rounds: the digital codec's HARQ, else the erasure channel's ARQ
    harq_max_rounds: int = 0
    added_delay_s: float = 0.0
    late_policy: str = "drop"
    #: the codec's quantiser bits per value where it records them (``"bits"`` in its
    #: ``sweep_arguments``), else 0
    bits_per_value: int = 0
    codec_sha256: str = ""
    #: the fusion's constructor kwargs: its ``fusion_options``, or those of its grid entry
    fusion_kwargs: dict = field(default_factory=dict)
    #: everything besides the condition, the seed and the frames that changes this group's
    #: numbers (filled by ``plan_sweep``; see ``setting_key``)
    setting: dict = field(default_factory=dict)

    def budget(self, budget: BudgetConfig) -> BudgetConfig:
        """The budget this group runs under: ``budget`` with the group's late policy and its
        added delay on top of the processing latency (every payload waits that much longer)."""
        return dataclasses.replace(
            budget,
            late_policy=self.late_policy,
            processing_latency_s=budget.processing_latency_s + self.added_delay_s,
        )

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
            "added_delay_s": float(self.added_delay_s),
            "late_policy": self.late_policy,
            "harq_max_rounds": int(self.harq_max_rounds),
            "bits_per_value": int(self.bits_per_value),
        }

    def channel_kwargs(self, options: Mapping) -> dict:
        """The channel's constructor kwargs: its ``channel_options``, plus ``arq_max_rounds``
        when this group's rounds go to the channel (ARQ: the codec has no HARQ)."""
        kwargs = dict(options.get(self.channel, {}) or {})
        if self.harq_max_rounds and "harq_max_rounds" not in self.codec_kwargs:
            kwargs["arq_max_rounds"] = int(self.harq_max_rounds)
        return kwargs

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
                # (likewise for the asynchrony axes at their defaults)
                *([self.added_delay_s] if self.added_delay_s != 0.0 else []),
                *([self.late_policy] if self.late_policy != "drop" else []),
                *([f"harq{self.harq_max_rounds}"] if self.harq_max_rounds else []),
                *([f"bits{self.bits_per_value}"] if self.bits_per_value else []),
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
    asynchrony: Any = None  # v2x.asynchrony.AsynchronyConfig
    bootstrap_unit: str = "auto"  # APAccumulator.compute's: auto | sequence | frame
    precision: str = "fp32"  # the detector's inference precision (configure_inference)
    fold_batchnorm: bool = False  # batch norms folded into the layers before them (inference)
    #: the detector's convolutions and maps channels-last on the sweep's CUDA devices
    #: (``eval.channels_last`` where the sweep runs on CUDA; False on the CPU, which ignores it)
    channels_last: bool = False

    @property
    def num_cells(self) -> int:
        return len(self.groups) * len(self.snr_db)


def plan_sweep(cfg: Any) -> SweepPlan:
    """Validate ``cfg`` and list the groups; raises ``ValueError`` before any work."""
    from v2x.channels import CHANNELS
    from v2x.loading import device_key, resolve_devices
    from v2x.perception.ap_config import BOOTSTRAP_UNITS, EvalConfig
    from v2x.perception.fusion import FUSIONS, fusion_class
    from v2x.perception.inference import check_precision
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
    if data.get("max_agents") is not None:  # the ego is always kept: at least one agent
        data["max_agents"] = _integer("data.max_agents", data["max_agents"], minimum=1)
    cfg.batch_size = _integer("batch_size", cfg.batch_size, minimum=1)
    cfg.seed = _integer("seed", cfg.seed, minimum=0)
    data["seed"] = _integer("data.seed", data.get("seed", 0), minimum=0)  # (1.5 drew seed 1)
    cfg.feature_cache_gb = check_feature_cache(cfg.feature_cache_gb)
    if not str(cfg.output_dir or "").strip():  # (e.g. an unset shell variable), not the cwd
        raise ValueError(f"sweep: field 'output_dir' must name a folder, got {cfg.output_dir!r}")

    def as_list(name: str) -> list:
        value = grid[name]
        if value is None or isinstance(value, str | int | float | Mapping):
            value = [value] if value is not None else []
        if not list(value):
            raise ValueError(f"sweep: field 'grid.{name}' is empty; give at least one value")
        return list(value)

    snr = _numbers("grid.snr_db", as_list("snr_db"))
    snr = [check_snr_db("sweep", "grid.snr_db", v) for v in snr]  # (NaN, ±inf and beyond ±300 dB)
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
    rounds_axis = [
        _integer("grid.harq_max_rounds", v, minimum=0) for v in as_list("harq_max_rounds")
    ]
    if len(set(rounds_axis)) != len(rounds_axis):
        raise ValueError(f"sweep: field 'grid.harq_max_rounds' lists a value twice: {rounds_axis}")
    fusion_specs = [_codec_spec(v, cfg.fusion_options or {}, "fusions") for v in as_list("fusions")]
    for name, kwargs in fusion_specs:
        FUSIONS.get(name, "sweep: field 'grid.fusions': ")
        try:
            FUSIONS.build(name, **kwargs)
        except TypeError as exc:
            fields = options_fields(cfg.fusion_options, "fusion_options", "fusions", name,
                                    as_list("fusions"))  # fmt: skip
            raise rejected_options(FUSIONS, name, fields, exc) from exc
    channels = [str(v) for v in as_list("channels")]
    check_registered(CHANNELS, "channels", channels, cfg.channel_options)
    _load_codecs()
    codecs = [_codec_spec(v, cfg.codec_options or {}) for v in as_list("codecs")]
    check_registered(CODECS, "codecs", [name for name, _ in codecs], cfg.codec_options)
    poses = []
    for p in as_list("pose_noise"):  # ([0.2, 0.01] is two entries, not one pair: refused)
        pair = _numbers("grid.pose_noise", p) if isinstance(p, list | tuple) else []
        if len(pair) != 2 or not all(0 <= v < math.inf for v in pair):  # (NaN fails too)
            raise ValueError(
                f"sweep: field 'grid.pose_noise' entries must be [translation_std_m, yaw_std_rad] pairs (one setting: [[0.2, 0.01]]), finite and >= 0, got {p}"
            )
        poses.append(tuple(pair))
    network = NetworkConfig.from_dict(cfg.network or {})
    budget = BudgetConfig.from_dict(cfg.budget or {})
    delays = _numbers("grid.added_delay_s", as_list("added_delay_s"))
    if len(set(delays)) != len(delays) or not all(math.isfinite(d) and d >= 0 for d in delays):
        raise ValueError(
            f"sweep: field 'grid.added_delay_s' must hold distinct finite seconds >= 0, got {delays}"
        )
    policies = grid.get("late_policy")
    policies = [budget.late_policy] if policies is None else as_list("late_policy")
    for policy in policies:  # (budget.late_policy is checked by BudgetConfig)
        if policy not in LATE_POLICIES:
            raise ValueError(f"sweep: field 'grid.late_policy' holds {policy!r}; valid choices: {', '.join(LATE_POLICIES)}")
    asynchrony = _asynchrony_config(cfg.asynchrony, data)
    # the YAML's eval section under the config's (one set of defaults; `eval: null` too)
    eval_kwargs = {"distance_bins": [], **defaults["eval"], **(cfg.eval or {})}
    min_points = _integer("eval.min_points", eval_kwargs.pop("min_points"), minimum=0)
    bootstrap = _integer("eval.bootstrap", eval_kwargs.pop("bootstrap"), minimum=0)
    bootstrap_unit = eval_kwargs.pop("bootstrap_unit")
    if bootstrap_unit not in BOOTSTRAP_UNITS:
        raise ValueError(
            f"sweep: field 'eval.bootstrap_unit' must be one of {', '.join(BOOTSTRAP_UNITS)}, "
            f"got {bootstrap_unit!r}"
        )
    precision = check_precision(eval_kwargs.pop("precision"), "sweep: field 'eval.precision'")
    fold = eval_kwargs.pop("fold_batchnorm")
    if not isinstance(fold, bool):
        raise ValueError(f"sweep: field 'eval.fold_batchnorm' must be true or false, got {fold!r}")
    channels_last = eval_kwargs.pop("channels_last")
    if not isinstance(channels_last, bool):
        raise ValueError(
            f"sweep: field 'eval.channels_last' must be true or false, got {channels_last!r}"
        )
    # as it runs (CUDA only), so that the cells say what produced them
    channels_last = channels_last and any(d.type == "cuda" for d in resolve_devices(cfg.device))
    try:
        eval_config = EvalConfig(**eval_kwargs).validate("sweep: field 'eval.{}'")
    except TypeError as exc:
        raise ValueError(f"sweep: bad field in 'eval': {exc}") from exc

    groups: list[Group] = []
    for fusion, fusion_kwargs in fusion_specs:
        stage = fusion_class(fusion).stage
        start = len(groups)
        for pose in poses:
            if stage != FEATURE_STAGE:
                groups.append(
                    Group(fusion, stage, NO_CODEC, {}, math.nan, NO_CODEC, *pose, snr_mode)
                )
                continue
            for channel in channels:
                for codec, kwargs in codecs:
                    arq = (cfg.channel_options or {}).get(channel)
                    choices = retransmission_settings(
                        codec, kwargs, channel, rounds_axis, fusion, arq
                    )
                    for kw, rounds in choices:
                        variants = [(kw, math.nan)]  # ([kwargs, bandwidth ratio])
                        if "bandwidth_ratio" in sweep_arguments(codec):
                            variants = [({**kw, "bandwidth_ratio": r}, r) for r in ratios]
                        for kw_r, r in variants:
                            groups.append(
                                Group(fusion, stage, codec, kw_r, r, channel, *pose, snr_mode,
                                      rounds)
                            )  # fmt: skip
        for g in groups[start:]:
            g.fusion_kwargs = dict(fusion_kwargs)
    def codec_field(name: str, suffix: str = "") -> str:  # ('a' and 'b', in the caller's quotes)
        return options_fields(cfg.codec_options, "codec_options", "codecs", name, as_list("codecs"), suffix)

    # Codecs that record their quantiser's bits: each group's (from its kwargs or the default).
    for g in groups:
        if g.stage == FEATURE_STAGE and "bits" in sweep_arguments(g.codec):
            g.bits_per_value = codec_bits(g.codec, g.codec_kwargs, codec_field(g.codec, ".bits"))
    # The asynchrony axes: every setting at every added delay and late policy.
    groups = [
        dataclasses.replace(g, added_delay_s=delay, late_policy=str(policy))
        for g in groups
        for delay in delays
        for policy in policies
    ]
    detector_sha = checkpoint_digest(cfg.checkpoint, model_backbone(cfg.model))
    feature_channels = detector_feature_channels(cfg.checkpoint, cfg.model)  # the codecs' maps
    codec_shas: dict[str, str] = {}
    for g in groups:
        ckpt = (g.codec_kwargs or {}).get("checkpoint")
        if ckpt:
            in_channels = int(g.codec_kwargs.get("in_channels", feature_channels))
            ref = f"{g.codec}:{ckpt}:{in_channels}"
            if ref not in codec_shas:
                codec_shas[ref] = (
                    UNTRAINED
                    if ckpt == UNTRAINED
                    else codec_checkpoint_digest(g.codec, str(ckpt), in_channels, detector_sha)
                )
            g.codec_sha256 = codec_shas[ref]
    # Every codec and channel built once now (checkpoints fix the valid ratios): bad kwargs fail
    for g in groups:
        if g.stage == FEATURE_STAGE:
            check_codec_for_fusion(g.codec, g.codec_kwargs, g.fusion)
            if "checkpoint" in sweep_arguments(g.codec) and not g.codec_kwargs.get("checkpoint"):
                raise ValueError(
                    f"sweep: codec {g.codec!r} has no checkpoint (field "
                    f"'{codec_field(g.codec, '.checkpoint')}' is {g.codec_kwargs.get('checkpoint')!r}); "
                    f"valid: a checkpoint path, 'shipped' (the trained codec shipped with v2x) or "
                    f"'{UNTRAINED}' (random weights, for smoke runs)"
                )
            try:
                CODECS.build(g.codec, **codec_kwargs_for(g.codec, g.codec_kwargs, feature_channels))
            except TypeError as exc:
                raise rejected_options(CODECS, g.codec, codec_field(g.codec), exc) from exc
            except ValueError as exc:  # a bad value: named by the fields that set it
                raise_naming_fields(exc, codec_field(g.codec))
    build_channels(channels, cfg.channel_options, network)  # (warns of a carrier not the links')
    for g in groups:
        if g.stage == FEATURE_STAGE and g.harq_max_rounds:
            CHANNELS.build(g.channel, **g.channel_kwargs(cfg.channel_options or {}))

    code = code_hash()
    eval_setting = {
        **dataclasses.asdict(eval_config),  # per_class, distance bins, ... (columns they fill)
        **eval_config.convention(),
        "min_points": min_points,
        "bootstrap": bootstrap,
        "bootstrap_unit": bootstrap_unit,
        "precision": precision,
        "fold_batchnorm": fold,
        "channels_last": channels_last,
    }
    common = {
        "code_hash": code,
        "libraries": library_versions(),  # torch, numpy, Sionna, ... (v2x.provenance)
        "detector_sha256": detector_sha,
        "model": model_setting(cfg.model, detector_sha),  # (a checkpoint: its decode fields)
        "device": device_key(cfg.device),
        "deterministic": bool(cfg.deterministic),
        "batch_size": int(cfg.batch_size),
        "max_agents": data.get("max_agents"),
        "network": dataclasses.asdict(network),
        "budget": dataclasses.asdict(budget),
        "asynchrony": dataclasses.asdict(asynchrony),
        "eval": eval_setting,
    }
    for g in groups:
        g.setting = {
            **common,
            "codec_kwargs": {k: v for k, v in g.codec_kwargs.items() if k != "checkpoint"},
            "codec_sha256": g.codec_sha256,
            "channel_options": g.channel_kwargs(cfg.channel_options or {}),
            "fusion_options": dict(g.fusion_kwargs),
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
        asynchrony,
        bootstrap_unit,
        precision,
        fold,
        channels_last,
    )


def _asynchrony_config(section: Any, data: Mapping) -> Any:
    """The ``asynchrony`` section, checked against the frame source (the synthetic world is
    sensed at earlier instants, a recording serves its earlier scans)."""
    from v2x.asynchrony import AsynchronyConfig, world_config
    from v2x.asynchrony_recorded import RECORDED_SOURCES

    out = AsynchronyConfig.from_dict(section or {})
    if out.enabled and data["source"] not in ("synthetic", "store", *RECORDED_SOURCES):
        world_config(data)  # raises, naming the source
    return out


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
            file_digest(Path(source)) if source and Path(source).is_file() else module
        )
    return out


# --------------------------------------------------------------------------- data and model
