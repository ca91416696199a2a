"""What the registered parts declare to the sweep planner (``v2x.sweep_plan``): the constructor
arguments a codec or channel lets a sweep fill in or vary (``Codec.sweep_arguments``,
``Channel.sweep_arguments``), the quantiser bits a codec runs with, and which values of
``grid.harq_max_rounds`` apply to a (codec, channel) pair; each channel built once at planning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from v2x.common import Registry

log = logging.getLogger(__name__)


def check_registered(
    registry: Registry[Any], axis: str, names: Sequence[str], options: Mapping | None
) -> None:
    """``ValueError`` unless every name on ``grid.<axis>`` and every key of the options section
    of its kind (``channel_options`` for ``channels``, ``codec_options`` for ``codecs``) is
    registered in ``registry``: options under a misspelt name (``rayleig``) would otherwise be
    ignored without a word. Options of registered parts that the grid does not run are fine
    (the YAML's defaults hold some)."""
    for name in names:
        registry.get(name, f"sweep: field 'grid.{axis}': ")
    for name in options or {}:
        registry.get(str(name), f"sweep: field '{axis[:-1]}_options' names an ")


def build_channels(names: Sequence[str], options: Mapping | None, network: Any) -> None:
    """Build each channel of ``grid.channels`` once with its ``channel_options`` (``ValueError``
    for options it rejects, before any work) and log a warning, once per (channel, carrier),
    where the carrier of its own Doppler (``doppler_config``) is not one the links of
    ``network`` (a ``v2x.network.NetworkConfig``) run at (``v2x.network.link_carriers``)."""
    from v2x.channels import CHANNELS
    from v2x.channels.base import doppler_config
    from v2x.channels.radio import carrier_note
    from v2x.network import link_carriers

    carriers = None
    for name in dict.fromkeys(names):
        try:
            channel = CHANNELS.build(name, **dict((options or {}).get(name, {}) or {}))
        except TypeError as exc:
            raise rejected_options(CHANNELS, name, f"channel_options.{name}", exc) from exc
        doppler = doppler_config(channel)
        if not doppler:
            continue
        carriers = link_carriers(network) if carriers is None else carriers
        for hz, fields in carriers.items():
            note = carrier_note(doppler, hz, f"channel_options.{name}", " and ".join(fields))
            if note:
                log.warning("sweep: channel %r: %s", name, note)


def codec_class(codec: str) -> type:
    """The class codec ``codec`` builds, where its capabilities are declared
    (``sweep_arguments``, ``uses_channel``, ``default_bits``, ...)."""
    from v2x.semcom import CODECS
    from v2x.semcom import _load_all as _load_codecs

    _load_codecs()
    return CODECS.part_class(codec)


def sweep_arguments(codec: str) -> frozenset[str]:
    """The constructor arguments codec ``codec`` declares a sweep fills in or varies
    (``Codec.sweep_arguments`` of the class it builds)."""
    return frozenset(codec_class(codec).sweep_arguments)


def codec_kwargs_for(codec: str, kwargs: dict, feature_channels: int) -> dict:
    """``kwargs`` of codec ``codec`` as a sweep builds it: ``in_channels`` (where the codec
    declares it and the options do not set it) is the detector's ``feature_channels``, the
    maps it codes; an ``"untrained"`` checkpoint becomes ``None`` (random weights)."""
    from v2x.provenance import UNTRAINED

    kwargs = dict(kwargs)
    if kwargs.get("checkpoint") == UNTRAINED:
        kwargs["checkpoint"] = None
    if "in_channels" not in kwargs and "in_channels" in sweep_arguments(codec):
        kwargs["in_channels"] = int(feature_channels)
    return kwargs


def channel_sweep_arguments(channel: str) -> frozenset[str]:
    """The constructor arguments channel ``channel`` declares a sweep varies
    (``Channel.sweep_arguments``)."""
    from v2x.channels import CHANNELS

    return frozenset(CHANNELS.part_class(channel).sweep_arguments)


def codec_bits(codec: str, kwargs: Mapping, field: str | None = None) -> int:
    """The quantiser bits per value codec ``codec`` runs with: ``kwargs["bits"]``, else the
    default its class declares (``Codec.default_bits``; ``ValueError`` naming the field if it
    is not an int in 1..16: ``field``, the config fields that set it, default
    ``codec_options.<codec>.bits``)."""
    bits = kwargs.get("bits")
    if bits is None:
        bits = codec_class(codec).default_bits
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        field = field or f"codec_options.{codec}.bits"
        raise ValueError(f"sweep: field '{field}' must be an int in 1..16, got {bits!r}")
    return int(bits)


def raise_naming_fields(exc: ValueError, fields: str) -> NoReturn:
    """Raise ``exc`` (a part's constructor refusing a value) named by the config ``fields``
    that set the part's options (``sweep_config.options_fields``); as it is where it names its
    field already (``sweep: …``)."""
    if str(exc).startswith("sweep:"):
        raise exc
    raise ValueError(f"sweep: field '{fields}': {exc}") from exc


def check_codec_for_fusion(codec: str, kwargs: Mapping, fusion: str) -> None:
    """Refuse, before any work, a codec sized for the detector's feature maps (``in_channels``
    in its ``sweep_arguments``, not set in ``kwargs``) under a fusion that sends a payload
    map of its own channels (``sends_payload``): it failed when its group started."""
    from v2x.perception.fusion import fusion_class

    sized = "in_channels" in sweep_arguments(codec) and "in_channels" not in kwargs
    if sized and fusion_class(fusion).sends_payload:
        raise ValueError(
            f"sweep: fusion {fusion!r} sends a payload map of its own channels, but codec "
            f"{codec!r} codes maps of the detector's feature channels ('in_channels'); "
            "expected a codec without a channel count for it (identity, analog, digital, "
            f"digital_payload), or 'codec_options.{codec}.in_channels' set to the payload's"
        )


def retransmission_settings(
    codec: str,
    kwargs: dict,
    channel: str,
    rounds_axis: list[int],
    fusion: str = "max",
    channel_options: Mapping | None = None,
) -> list[tuple[dict, int]]:
    """``(codec kwargs, rounds)`` of each value of ``grid.harq_max_rounds`` that applies.

    A codec with HARQ (``harq_max_rounds`` in its ``sweep_arguments``: the digital chain) takes
    the rounds itself; otherwise a channel with ARQ (``arq_max_rounds``: the erasure channels)
    does (``Group.channel_kwargs``); where neither retransmits, only 0 applies (like
    ``bandwidth_ratio`` for codecs without that knob). Rounds set in ``codec_options`` stand
    when the axis is left at ``[0]``. A ``fusion`` that sends selected cells or a payload
    (``selects_cells``, ``sends_payload``) wraps the codec in the ``selective`` codec, which
    has no HARQ: only 0 applies to its codec's rounds, and a grid that leaves no 0 for it is
    refused here, before any work (it failed when its group started). ARQ rounds set in the
    channel's own ``channel_options`` (``arq_max_rounds``) stand likewise, as the rounds of every
    setting whose codec does not retransmit itself; beside the axis or HARQ rounds they are
    refused.
    """
    from v2x.perception.fusion import fusion_class

    parts = fusion_class(fusion)
    arq = int((channel_options or {}).get("arq_max_rounds") or 0)
    if arq:
        harq = kwargs.get("harq_max_rounds") if "harq_max_rounds" in sweep_arguments(codec) else 0
        if rounds_axis != [0] or harq:
            raise ValueError(
                f"sweep: 'channel_options.{channel}.arq_max_rounds' ({arq}) and "
                f"'grid.harq_max_rounds' ({rounds_axis}) or 'codec_options.{codec}."
                f"harq_max_rounds' ({harq}) both set retransmission rounds; use one"
            )
        return [({k: v for k, v in kwargs.items() if k != "harq_max_rounds"}, arq)]
    if "harq_max_rounds" in sweep_arguments(codec) and (parts.selects_cells or parts.sends_payload):
        fixed = kwargs.get("harq_max_rounds")
        asked = [int(fixed)] if fixed is not None and rounds_axis == [0] else rounds_axis
        if 0 not in asked:
            raise ValueError(
                f"sweep: fusion {fusion!r} sends selected cells through the 'selective' codec, "
                f"which has no HARQ, but the HARQ rounds of codec {codec!r} are {asked} "
                "('grid.harq_max_rounds' or 'codec_options."
                f"{codec}.harq_max_rounds'); expected 0 among them for this fusion"
            )
        kwargs = {k: v for k, v in kwargs.items() if k != "harq_max_rounds"}
        return [(kwargs, 0)]
    if "harq_max_rounds" in sweep_arguments(codec):
        fixed = kwargs.get("harq_max_rounds")
        if fixed is not None:
            if rounds_axis != [0]:
                raise ValueError(
                    f"sweep: 'codec_options.{codec}.harq_max_rounds' ({fixed}) and "
                    f"'grid.harq_max_rounds' ({rounds_axis}) both set the HARQ rounds; use one"
                )
            return [(dict(kwargs), int(fixed))]
        return [({**kwargs, "harq_max_rounds": r} if r else dict(kwargs), r) for r in rounds_axis]
    if "arq_max_rounds" in channel_sweep_arguments(channel):
        return [(dict(kwargs), r) for r in rounds_axis]
    return [(dict(kwargs), 0)]


def rejected_options(registry: Registry, name: str, field: str, exc: TypeError) -> ValueError:
    """The error for a part whose options its constructor refused: the config field that holds
    them (``field``, e.g. ``channel_options.awgn``), the refusal and the options it takes."""
    import inspect

    try:
        params = inspect.signature(registry.get(name)).parameters.values()
        kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        valid = ", ".join(p.name for p in params if p.kind not in kinds) or "none"
    except (TypeError, ValueError):  # (a factory without a signature)
        valid = "see its constructor"
    return ValueError(
        f"sweep: field '{field}': {registry.kind} {name!r} rejects its options ({exc}); "
        f"valid options: {valid}"
    )
