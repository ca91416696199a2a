"""The codec interface and ``Transmission``: what goes on air and what it cost.

A codec maps a batch of feature maps ``[B, C, H, W]`` (one per transmitting agent and condition)
to channel input and back. Costs are computed here and nowhere else; the ledger reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from v2x.channels.base import ChannelState
from v2x.channels.link import LinkState
from v2x.registry import Registry

FLOAT16_BITS = 16


@dataclass
class Cost:
    """Accounting of one batch of transmissions; every field is ``[B]`` float64.

    Attributes:
        source_bits: information bits before channel coding (after source coding).
        coded_bits: bits after channel coding (== source_bits for analog / ideal codecs).
        channel_uses: complex channel symbols sent (what the bandwidth axis counts).
        packets: packets sent (MTU-sized; see ``packetize``).
        raw_bits: bits of the uncompressed float32 feature map, for the compression ratio.
    """

    source_bits: torch.Tensor
    coded_bits: torch.Tensor
    channel_uses: torch.Tensor
    packets: torch.Tensor
    raw_bits: torch.Tensor

    @property
    def bandwidth_ratio(self) -> torch.Tensor:
        """``[B]`` channel uses per real source value, k/n convention: uses / (raw_bits / 32)."""
        return self.channel_uses / (self.raw_bits / 32.0).clamp_min(1.0)


@dataclass
class Transmission:
    """What an encoder emits and a decoder consumes.

    Attributes:
        symbols: ``[B, n]`` complex64 channel input with average energy 1 per used symbol, or
            ``None`` for an ideal (error-free, capacity-rate) digital link.
        cost: ``Cost``.
        mask: ``[B, n]`` bool — which of the ``n`` symbol slots are actually sent (variable-length
            payloads inside one batched tensor); ``None`` means all.
        state: the channel's state once the symbols went through a channel.
        meta: codec-private side information needed to decode (shapes, scales, selections).
    """

    symbols: torch.Tensor | None
    cost: Cost
    mask: torch.Tensor | None = None
    state: ChannelState | None = None
    meta: dict = field(default_factory=dict)

    def received(self, symbols: torch.Tensor, state: ChannelState) -> Transmission:
        return replace(self, symbols=symbols, state=state)


class Codec(nn.Module):
    """Base class for feature codecs (registered in ``CODECS``).

    ``encode(features [B, C, H, W] float32, link: LinkState) -> Transmission``
    ``decode(received: Transmission, link: LinkState) -> features [B, C, H, W] float32``

    A codec that knows which cells never arrived (lost or budget-dropped digital segments)
    records ``received.meta["delivered"]``: ``[B, 1, H, W]`` bool, True where the values arrived.
    Consumers (the pipeline's fusion) treat the other cells as missing, not as zeros.
    """

    #: True when the codec's symbols must go through the channel (analog / digital PHY).
    uses_channel: bool = True

    def encode(self, features: torch.Tensor, link: LinkState) -> Transmission:  # pragma: no cover
        raise NotImplementedError

    def decode(self, received: Transmission, link: LinkState) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


CODECS: Registry[Codec] = Registry("codec")


def check_features(features: torch.Tensor) -> None:
    if features.dim() != 4:
        raise ValueError(
            f"codec input 'features' must have shape [B, C, H, W], got {tuple(features.shape)}"
        )


def raw_feature_bits(features: torch.Tensor) -> torch.Tensor:
    """``[B]`` bits of the uncompressed float32 feature maps."""
    per_map = features[0].numel() * 32 if features.shape[0] else 0
    return torch.full((features.shape[0],), float(per_map), dtype=torch.float64, device=features.device)


def packets_for_bits(bits: torch.Tensor, mtu_bytes: int = 1500, header_bytes: int = 40) -> torch.Tensor:
    """``[B]`` packets needed for ``bits`` of payload with ``mtu_bytes`` packets minus headers."""
    payload_bits = (mtu_bytes - header_bytes) * 8
    return torch.ceil(bits / payload_bits)
