"""Everything between antennas: symbol-level channels and link models (geometry → SNR/rate/latency).

Depends on nothing else of the project (only the leaf ``v2x.registry``).
"""

from v2x.channels.awgn import AWGNChannel
from v2x.channels.base import CHANNELS, Channel, ChannelState, equalize

__all__ = ["CHANNELS", "AWGNChannel", "Channel", "ChannelState", "equalize", "build_channel"]


def build_channel(name: str, **kwargs) -> Channel:
    """Build a registered channel by config name (``awgn``, ``rayleigh``, …)."""
    return CHANNELS.build(name, **kwargs)
