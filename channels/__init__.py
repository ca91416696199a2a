"""Everything between antennas: symbol-level channels and link models (geometry → SNR/rate/latency).

Depends on nothing else of the project (only the leaf ``v2x.common``).

Channels (registry ``CHANNELS``): ``awgn``, ``rayleigh``, ``rician``, ``rayleigh_fast``,
``rician_fast``, ``tdl`` / ``cdl`` (OFDM through Sionna, imported lazily), ``erasure``,
``erasure_iid``, ``erasure_ge``, ``erasure_bler`` (wrappers around an inner channel).

Link models (registry ``LINKS``): ``free_space``, ``v2v_highway``, ``v2v_urban``, ``uma_av``,
``umi_av``, ``rma_av``, ``al_hourani``, ``umi_street_canyon``, ``thz``. ``build_link(cfg)`` →
model; ``model(distance_m=...)`` or ``model(tx_pos=..., rx_pos=..., los=...)`` → ``LinkState``;
``link_report(state, payload_bits)`` → rate, time on air, latency, AoI. ``RadioParams``
(``channels.radio``) is the one type of a link's radio settings (carrier, bandwidth, power,
gains, noise figure) and the home of their defaults.
"""

from typing import Any

from v2x.channels.awgn import AWGNChannel
from v2x.channels.base import CHANNELS, Channel, ChannelState, equalize
from v2x.channels.budget import LinkReport, link_report
from v2x.channels.erasure import ErasureChannel, Packetizer
from v2x.channels.fading import FadingChannel
from v2x.channels.geometry import link_conditions, segments_blocked
from v2x.channels.link import (
    CONDITION_NAMES,
    LINKS,
    LOS_MODES,
    LinkModel,
    LinkState,
    build_link,
)
from v2x.channels.ofdm import OFDMChannel
from v2x.channels.pathloss import fspl_db
from v2x.channels.radio import DEFAULT_RADIO, RadioParams
from v2x.channels.thz import THzLink, absorption_coefficient
from v2x.common import check_whole, to_plain

__all__ = [
    "CHANNELS",
    "DEFAULT_RADIO",
    "LINKS",
    "LinkModel",
    "LinkReport",
    "LinkState",
    "OFDMChannel",
    "RadioParams",
    "THzLink",
    "absorption_coefficient",
    "build_link",
    "fspl_db",
    "link_report",
    "link_summary",
    "simulate_link",
    "segments_blocked",
    "link_conditions",
    "AWGNChannel",
    "Channel",
    "ChannelState",
    "ErasureChannel",
    "FadingChannel",
    "Packetizer",
    "build_channel",
    "equalize",
]


def build_channel(name: str | Any, **kwargs: Any) -> Channel:
    """Build a registered channel by config name (``awgn``, ``rayleigh``, …).

    ``name`` may also be a config mapping with a ``name`` field (e.g. Hydra's ``cfg.channel``);
    its other fields become constructor kwargs (``kwargs`` override them).
    """
    name = to_plain(name)
    if isinstance(name, dict):
        cfg = dict(name)
        if "name" not in cfg:
            raise ValueError("build_channel: channel config needs a 'name' field")
        name = cfg.pop("name")
        kwargs = {**cfg, **kwargs}
    return CHANNELS.build(name, **{k: to_plain(v) for k, v in kwargs.items()})


def _condition_name(model: LinkModel, state: LinkState) -> str:
    """The first link's path-loss branch, or ``expected`` where ``los_mode: expected`` averaged
    the branches over P_LOS (its ``condition`` is then only the likelier one)."""
    if model.los_mode == "expected":
        return "expected"
    return CONDITION_NAMES[int(state.extra["condition"][0])]


def _check_sceneless_mode(model: LinkModel) -> None:
    """``ValueError`` for ``los_mode: geometric``, which reads LOS from a scene that one link
    described by a config (``v2x-link``, ``link_summary``) does not have."""
    if model.los_mode == "geometric":
        takes = ", ".join(mode for mode in LOS_MODES if mode != "geometric")
        raise ValueError(
            f"{model.name}: field 'los_mode' is 'geometric', which reads LOS from a scene's boxes: "
            "a sweep has them (network.los_mode=geometric), a single link (v2x-link) has none; "
            f"here link.los_mode takes {takes}"
        )


def link_summary(cfg: Any, payload_bits: float = 1e6, **report_kw: Any) -> dict[str, float]:
    """SNR, rate, time on air, latency and AoI of the link a config describes (first link).

    ``cfg`` is a link config (``name`` + model fields, e.g. Hydra's ``cfg.link`` after
    ``link=v2v_urban link.distance_m=150``). Returns plain values for logging: ``snr_db`` is the
    average Es/N0 per complex symbol, ``los`` whether the link is in line of sight and
    ``condition`` which path-loss branch it took (``LOS``, ``NLOS`` building, or ``NLOSv``
    vehicle blockage of TR 37.885, which is what a V2V model's "not LOS" means unless the scene
    says a building blocks; ``expected`` with ``los_mode: expected``, whose path loss is the
    P_LOS-weighted mean of the branches), ``p_los`` the model's LOS probability,
    ``carrier_hz`` the model's carrier, ``bandwidth_hz`` the bandwidth its noise, rate and time
    on air are computed over, ``outside_range`` a sentence when the distance lies outside the
    range the model's standard specifies it for (``LinkModel.distance_range_m``), else ``""``.
    """
    model = build_link(cfg)
    _check_sceneless_mode(model)
    model.warn_outside_range = False  # (the caller prints ``outside_range``; no log warning)
    state = model()
    rep = link_report(state, payload_bits, **report_kw)
    return {
        "snr_db": float(state.snr_db[0]),
        "path_loss_db": float(state.path_loss_db[0]),
        "los": bool(state.los[0]),
        "condition": _condition_name(model, state),
        "p_los": float(state.extra["p_los"][0]),
        "distance_m": float(state.distance_m[0]),
        "carrier_hz": float(model.carrier_hz),
        "bandwidth_hz": float(state.bandwidth_hz),
        "capacity_bps": float(rep.capacity_bps[0]),
        "rate_bps": float(rep.rate_bps[0]),
        "time_on_air_s": float(rep.time_on_air_s[0]),
        "latency_s": float(rep.latency_s[0]),
        "aoi_s": float(rep.aoi_s[0]),
        "outside_range": state.extra.get("outside_range", ""),
    }


def simulate_link(
    channel_cfg: Any, link_cfg: Any, payload_bits: float = 1e6, num_symbols: int = 100_000,
    seed: int = 0,
) -> dict[str, float]:
    """One link end to end: its budget from a link model (``link_summary``) and Gray-coded QPSK
    sent through a channel at that SNR, equalised (MMSE with the receiver's CSI) and sliced.

    Args:
        channel_cfg: a channel config (``name`` + fields, e.g. Hydra's ``cfg.channel``).
        link_cfg: a link-model config (e.g. ``cfg.link`` after ``link=v2v_urban``).
        payload_bits: payload for rate, time on air, latency and AoI.
        num_symbols: QPSK symbols through the channel.
        seed: seeds the symbols and the channel's draws.

    Returns:
        ``link_summary``'s fields plus ``qpsk_ebno_db`` (the Eb/N0 of the QPSK bits,
        ``snr_db − 10·log10 2``: what Sionna's BER curves are plotted against), ``qpsk_ber``
        (measured), ``num_bits`` and
        ``channel_gains``: how many times the channel's gain changed along the symbols, plus one
        (0 for AWGN, which has none; 1 for block fading with one gain per transmission, whose
        ``qpsk_ber`` is then that one draw's, not the average over fading).
    """
    import math

    import torch

    bad_payload = isinstance(payload_bits, bool) or not isinstance(payload_bits, int | float)
    if bad_payload or not 0 <= payload_bits < math.inf:
        raise ValueError(f"link: field 'payload_bits' must be a number >= 0, got {payload_bits!r}")
    check_whole("link: field 'num_symbols'", num_symbols, 1)
    check_whole("link: field 'seed'", seed, 0)
    summary = link_summary(link_cfg, payload_bits)
    gen = torch.Generator().manual_seed(int(seed))
    bits = torch.randint(0, 2, (1, int(num_symbols), 2), generator=gen)
    x = torch.complex(1 - 2 * bits[..., 0].float(), 1 - 2 * bits[..., 1].float()) / math.sqrt(2)
    torch.manual_seed(int(seed))
    y, state = build_channel(channel_cfg)(x, torch.tensor([summary["snr_db"]]))
    x_hat, _ = equalize(y, state, "mmse")
    decided = torch.stack([(x_hat.real < 0), (x_hat.imag < 0)], dim=-1).long()
    errors = int((decided != bits).sum())
    gains = 0 if state.h is None else 1 + int((state.h[:, 1:] != state.h[:, :-1]).sum())
    # Eb/N0 of the QPSK bits (Sionna's ebnodb2no(ebno_db, 2, 1) gives back this Es/N0 = snr_db)
    ebno_db = summary["snr_db"] - 10 * math.log10(2)
    return {**summary, "qpsk_ebno_db": ebno_db, "qpsk_ber": errors / bits.numel(),
            "num_bits": int(bits.numel()), "channel_gains": gains}  # fmt: skip
