"""The sweep's config: ``SweepConfig`` (its fields), the defaults it starts from
(``default_config``: ``conf/sweep.yaml`` composed with its defaults list, the one source of
defaults for the CLI and the Python API) and the field checks that name a bad field.
``v2x.sweep_plan`` validates a config into groups of cells.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from v2x.common import check_switch, to_plain
from v2x.provenance import UNTRAINED, model_backbone  # noqa: F401 - UNTRAINED: config vocabulary

# Config keys that do not change any number (left out of the config hash).
_NOT_HASHED = (
    "quiet",
    "allow_corrupt",
    "output_dir",
    "feature_cache_gb",
    "cuda_graph",
    "table",
    "plots",
    "plots_dir",
    "plot_metric",
)
_NOT_HASHED_DATA = ("cache_dir",)


@dataclass
class SweepConfig:
    """The sweep (Hydra ``conf/sweep.yaml``); see ``docs/sweeps.md``.

    ``from_any`` merges a mapping over ``default_config()`` (``conf/sweep.yaml``): the defaults
    below are those of a bare ``SweepConfig()`` and agree with the YAML (tested).

    Attributes:
        seed: seeds channel noise, pose noise and probabilistic LOS.
        deterministic: run torch's deterministic kernels (``v2x.common.configure_determinism``):
            the same config and seed give the same numbers in any process, on the GPU too
            (``False``: the GPU may differ in the last bits between runs). Keys the cells.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; ``all`` (every visible CUDA device)
            or a list of devices of one type (``[cuda:0,cuda:1]``, ``[cpu,cpu]``): one worker
            process per device computes every group over its shard of the frame batches
            (``v2x.sweep_workers``), and the cells equal those of one device of that type
            (keyed by the type).
        checkpoint: detector checkpoint path; ``null``/``shipped`` = the shipped model (an
            error if it is missing), ``untrained`` = random weights built from ``model`` (tests,
            smoke runs).
        model: ``DetectorConfig`` fields for ``checkpoint=untrained``.
        data: the frame set (see ``load_frames``).
        batch_size: frames per pipeline call.
        grid: ``channels``, ``snr_db``, ``codecs``, ``bandwidth_ratios``, ``fusions``,
            ``pose_noise`` (list of ``[translation_std_m, yaw_std_rad]``), ``added_delay_s``
            (seconds added to every payload's latency), ``late_policy`` (``null``: the
            budget's).
        codec_options, channel_options, fusion_options: constructor kwargs per name.
        asynchrony: see ``v2x.asynchrony.AsynchronyConfig`` (collaborators' data as old as its
            delivery).
        network, budget, eval: see ``NetworkConfig``, ``BudgetConfig``, ``EvalConfig``; ``eval``
            also takes ``min_points``, ``bootstrap`` (resamples for each AP's 95 % interval,
            seeded by ``seed``; 0: none), ``bootstrap_unit`` (``auto``: whole sequences when
            frames come in sequences, else frames; ``sequence``; ``frame``; the unit used is
            the results column ``bootstrap_unit``), ``precision`` (the detector's inference
            autocast: ``fp32``, ``fp16``, ``bf16``), ``fold_batchnorm`` (each batch norm
            folded into the convolution before it, ``v2x.perception.inference.fold_batchnorm``)
            and ``channels_last`` (on CUDA the detector's convolutions and maps channels-last,
            ``CoopDetector.configure_inference``; the CPU ignores it).
        output_dir: folder of the results files.
        quiet: no progress bar (also off when stderr is not a TTY or ``CI`` is set).
        allow_corrupt: move an unreadable results file aside instead of failing.
        feature_cache_gb: memory for cached encoder features, in GB, or ``auto``: half of a
            CUDA device's free memory, a quarter of the host's available memory on a CPU (both
            with the memory this process keeps freed for reuse;
            ``v2x.sweep_reuse.feature_cache_bytes``), split between the workers on that memory,
            each leaving room for the others' working sets (``auto_cache_reserve``) and its
            own (``auto_cache_room``). When not
            every frame's features fit,
            groups run in lockstep over the frame batches (``v2x.sweep._waves``).
        cuda_graph: on CUDA the detector's encoder replays a CUDA graph per batch shape
            (``CoopDetector.configure_inference``; the same kernels, no launch overhead).
        table: print the results table when the app finishes.
        plots: draw this job's figures when the app finishes (``v2x.plots.make_plots``).
        plots_dir: their folder (default ``<output_dir>/plots-<config hash>``, with
            ``-<plot_metric>`` appended when that is set).
        plot_metric: the figures' AP metric (``v2x.plots.METRICS``, e.g. ``ap_50``); ``None``:
            ``v2x-plot``'s default, vehicle AP@0.7.
        plugins: modules imported first, which register channels, codecs, fusions or link
            models of the user's (``v2x.common.import_plugins``); each job of a launcher
            imports them itself.
    """

    seed: int = 0
    deterministic: bool = True
    device: str | list = "cpu"
    checkpoint: str | None = None
    model: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    batch_size: int = 1
    grid: dict = field(default_factory=dict)
    codec_options: dict = field(default_factory=dict)
    channel_options: dict = field(default_factory=dict)
    fusion_options: dict = field(default_factory=dict)
    network: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    asynchrony: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)
    output_dir: str = "outputs/sweeps"
    quiet: bool = False
    allow_corrupt: bool = False
    feature_cache_gb: float | str = "auto"
    cuda_graph: bool = False
    table: bool = True
    plots: bool = True
    plots_dir: str | None = None
    plot_metric: str | None = None
    plugins: list = field(default_factory=list)

    @classmethod
    def from_any(cls, cfg: Any) -> SweepConfig:
        """A ``SweepConfig`` from a mapping (Hydra's ``DictConfig`` or a plain dict) merged over
        ``default_config()`` (nested mappings merge key by key, lists replace). A ``SweepConfig``
        built directly is merged the same way (its sections, e.g. ``eval={}``, over the YAML's:
        ``eval.bootstrap`` 1000, not none); one this method returned is returned as it is."""
        if isinstance(cfg, SweepConfig):
            if getattr(cfg, "_merged", False):
                return cfg
            cfg = cfg.to_dict()
        from omegaconf import OmegaConf

        data = to_plain(cfg)
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
        model = data.get("model")
        if isinstance(model, str):  # a model group option, as `model=pillars_center` on the CLI
            defaults["model"], data["model"] = model_preset(model), {}
        elif isinstance(model, Mapping) and model.get("backbone") not in (
            None,
            model_backbone(defaults["model"]),
        ):  # another backbone: its own preset's fields, not the default model's
            defaults["model"] = model_preset(MODEL_PRESETS.get(str(model["backbone"]), ""), model)
        merged = to_plain(OmegaConf.merge(OmegaConf.create(defaults), OmegaConf.create(data)))
        for f in dataclasses.fields(cls):
            if f.type == "bool":
                check_switch(f"sweep: field {f.name!r}", merged.get(f.name))
            _check_kind(f.name, f.type, merged.get(f.name))
        out = cls(**merged)
        out._merged = True  # not a field: dataclasses.replace gives a config merged again
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: What a field of each annotation must hold (its values are checked where they are read).
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "dict": ((Mapping, type(None)), "a mapping of fields, e.g. {name}.<field>=... or '+{name}={{...}}'"),
    "str": ((str,), "text (a path or a name)"),
    "str | None": ((str, type(None)), "text (a path or a name) or null"),
    "list": ((list, type(None)), "a list of module names, e.g. '[my_parts]'"),
    "str | list": ((str, list), "a device name or a list of them, e.g. cuda or '[cuda:0,cuda:1]'"),
}


def _check_kind(name: str, annotation: str, value: Any) -> None:
    """``ValueError`` naming the field, its value and what it takes when ``value`` is not of
    the kind its annotation says (e.g. ``grid=5``, ``device=5``, ``plugins=foo``): a message,
    not a ``TypeError`` from deep in the planning."""
    kinds, expected = _KINDS.get(annotation, ((object,), ""))
    items = value if annotation in ("list", "str | list") and isinstance(value, list) else []
    if not isinstance(value, kinds) or not all(isinstance(v, str) and v for v in items):
        expected = expected.format(name=name)
        raise ValueError(f"sweep: field {name!r} must be {expected}, got {value!r}")


SNR_MODES = ("fixed", "geometric")


#: ``data.source`` → the real-data reader class (``module:Class``) that reads the dataset root
#: (``v2x.loading.open_reader``); each has ``conf/dataset/<source>.yaml``.
READERS: dict[str, str] = {
    "v2xsim": "v2x.datasets.v2xsim_reader:V2XSimDataset",
    "dair_v2x": "v2x.datasets.dair_reader:DAIRV2XCDataset",
    "opv2v": "v2x.datasets.opv2v_reader:OPV2VDataset",
}
DATA_SOURCES = ("synthetic", "store", *READERS)


def default_config() -> dict:
    """The sweep's defaults: ``conf/sweep.yaml`` composed with its defaults list (the same
    config ``v2x-sweep`` starts from; ``hydra`` settings left out).

    ``run_sweep`` / ``plan_sweep`` merge a Python config over these, so the Python API and the
    CLI share one set of defaults.
    """
    return copy.deepcopy(_composed_defaults(_conf_stamp()))


@functools.lru_cache(maxsize=2)
def _composed_defaults(stamp: tuple) -> dict:
    """``default_config`` for the config files as ``stamp`` describes them (composed once)."""
    return to_plain(_compose_defaults("sweep"))


def _conf_stamp() -> tuple:
    """Path, modification time and size of every file under ``conf/``: an edited config file
    composes the defaults again."""
    stamp = []
    for path in sorted(p for p in _conf_dir().rglob("*.yaml") if p.is_file()):
        status = path.stat()
        stamp.append((str(path), status.st_mtime_ns, status.st_size))
    return tuple(stamp)


#: The ``model`` group's option (``conf/model/<option>.yaml``) of each detector ``backbone``.
MODEL_PRESETS = {"small": "pillars_center", "pointpillars": "pointpillars"}


def model_preset(option: str, model: Any = None) -> dict:
    """``conf/model/<option>.yaml`` as a dict; ``ValueError`` naming the valid options (and the
    ``model`` section asking for it, when given) for an unknown one."""
    from omegaconf import OmegaConf

    path = _conf_dir() / "model" / f"{option}.yaml"
    if not option or not path.is_file():
        valid = sorted(p.stem for p in (_conf_dir() / "model").glob("*.yaml"))
        asked = f"model {dict(model)}" if model is not None else f"model {option!r}"
        raise ValueError(
            f"sweep: field 'model': {asked} names no model preset; valid: a preset name "
            f"({', '.join(valid)}) or a mapping whose 'backbone' is one of {sorted(MODEL_PRESETS)}"
        )
    return to_plain(OmegaConf.load(path))


def _conf_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("v2x.conf")))


def _compose_defaults(name: str, overrides: Mapping[str, str] | None = None) -> Any:
    """``conf/<name>.yaml`` with its ``defaults`` list applied (``group: option``,
    ``group@package: option``, ``override group: option``, another config of the folder,
    ``_self_``) — the subset of Hydra's composition the shipped configs use, without Hydra's
    global state. As in Hydra, ``override group: option`` replaces that group's option
    wherever the defaults below this config choose one (``overrides``: those of the configs
    above)."""
    from omegaconf import OmegaConf

    own = OmegaConf.load(_conf_dir() / f"{name}.yaml")
    defaults = list(own.pop("defaults", []) or [])
    own.pop("hydra", None)
    if "_self_" not in defaults:
        defaults.append("_self_")
    chosen = dict(overrides or {})
    entries = []
    for entry in defaults:
        if not isinstance(entry, str):
            ((group, option),) = dict(entry).items()
            group = str(group)
            if group.startswith("override "):
                chosen.setdefault(group.removeprefix("override ").strip(), option)
                continue
            entry = (group, option)
        entries.append(entry)
    merged = OmegaConf.create({})
    for entry in entries:
        if entry == "_self_":
            merged = OmegaConf.merge(merged, own)
        elif isinstance(entry, str):
            merged = OmegaConf.merge(merged, _compose_defaults(entry, chosen))
        else:
            group, option = entry
            option = chosen.get(group, option)
            group, _, package = group.partition("@")
            if option is None:
                continue
            node = OmegaConf.load(_conf_dir() / group / f"{option}.yaml")
            target = package or group
            merged = OmegaConf.merge(merged, OmegaConf.create(_nest(target.split("."), node)))
    return merged


def _nest(keys: list[str], value: Any) -> Any:
    return value if not keys else {keys[0]: _nest(keys[1:], value)}


def _codec_spec(spec: Any, options: Mapping, axis: str = "codecs") -> tuple[str, dict]:
    """``(name, kwargs)`` of a ``grid.<axis>`` entry (``codecs`` or ``fusions``): a name (kwargs
    from ``options[name]``) or ``{name: ..., **kwargs}`` (over ``options[name]``)."""
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "name" not in spec:
            raise ValueError(f"sweep: field 'grid.{axis}' entry {spec} needs a 'name'")
        name = str(spec.pop("name"))
        return name, {**dict(options.get(name, {}) or {}), **spec}
    return str(spec), dict(options.get(str(spec), {}) or {})


def options_fields(
    options: Mapping | None, field: str, axis: str, name: str, entries: Sequence, suffix: str = ""
) -> str:
    """The config fields that hold part ``name``'s options, for an error that names them:
    ``<field>.<name>`` (e.g. ``codec_options.digital``) where ``options`` has it, and each
    ``grid.<axis>`` entry (``entries``) naming the part with options of its own, which win
    over the former (``grid.codecs[1]`` for ``{name: digital, bits: 4}``); each with
    ``suffix`` (e.g. ``.checkpoint``), joined as ``a' and 'b`` inside the caller's quotes. With
    a suffix, only the places that hold that key are named, where any does."""
    own = (options or {}).get(name)
    places = [(f"{field}.{name}", own)] if own else []
    places += [
        (f"grid.{axis}[{i}]", e) for i, e in enumerate(entries)
        if isinstance(e, Mapping) and str(e.get("name")) == name and len(e) > 1
    ]  # fmt: skip
    key = suffix[1:] if suffix.startswith(".") else None
    holding = [f for f, held in places if key is not None and key in held]
    fields = holding or [f for f, _ in places] or [f"{field}.{name}"]
    return "' and '".join(f + suffix for f in fields)


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
        raise ValueError(
            f"sweep: field '{field_name}' must be a whole number, got {value!r}"
        ) from None
    if minimum is not None and number < minimum:
        raise ValueError(f"sweep: field '{field_name}' must be >= {minimum}, got {value}")
    return int(number)


def check_feature_cache(value: Any) -> float | str:
    """``feature_cache_gb`` as the sweep takes it: ``"auto"`` or a number of GB ``>= 0``."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        gb = float(value)
    except (TypeError, ValueError):
        gb = float("nan")
    if isinstance(value, bool) or not gb >= 0 or gb == float("inf"):
        raise ValueError(
            f"sweep: field 'feature_cache_gb' must be 'auto' or a finite number of GB >= 0, "
            f"got {value!r}"
        )
    return gb
