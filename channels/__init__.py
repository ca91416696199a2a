"""Everything between antennas: symbol-level channels and link models (geometry → SNR/rate/latency).

Depends on nothing else of the project (only the leaf ``v2x.registry``).

Channels (registry ``CHANNELS``): ``awgn``, ``rayleigh``, ``rician``, ``rayleigh_fast``,
``rician_fast``, ``tdl`` / ``cdl`` (OFDM through Sionna, imported lazily), ``erasure``,
``erasure_iid``, ``erasure_ge``, ``erasure_bler`` (wrappers around an inner channel).
"""

from typing import Any

from v2x.channels.awgn import AWGNChannel
from v2x.channels.base import CHANNELS, Channel, ChannelState, equalize
from v2x.channels.erasure import ErasureChannel, Packetizer, _plain
from v2x.channels.fading import FadingChannel

__all__ = [
    "CHANNELS",
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
    name = _plain(name)
    if isinstance(name, dict):
        cfg = dict(name)
        if "name" not in cfg:
            raise ValueError("build_channel: channel config needs a 'name' field")
        name = cfg.pop("name")
        kwargs = {**cfg, **kwargs}
    return CHANNELS.build(name, **{k: _plain(v) for k, v in kwargs.items()})
