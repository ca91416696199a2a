"""The packet model: one MTU and one header for every part that counts or cuts packets.

Codec accounting (``v2x.semcom``: ``Cost.packets``) and the erasure channels
(``v2x.channels.erasure``) both read ``PACKET_FORMAT``; nothing else defines a packet size.

A packet is ``mtu_bytes`` on air (1500, the Ethernet/IP MTU), of which ``header_bytes`` (40)
are headers and ``mtu_bytes − header_bytes`` (1460) are payload. The 40 header bytes are the
network and transport headers of a datagram carrying the payload: IPv4 (20) + UDP (8) + RTP
(12) — the same 40 bytes as a bare IPv6 header. Link-layer framing (PDCP/RLC/MAC, preamble) is
not modelled, and the digital chain's CRC bits travel inside its LDPC code blocks, not here.

A payload of ``bits`` takes ``ceil(bits / payload_bits)`` packets. When a codec hands its
symbols to a channel, packet ``p`` of a transmission is the run of channel uses
``[p · symbols_per_packet, (p + 1) · symbols_per_packet)`` (``packet_index``), so that an
erasure channel loses exactly the packets the codec counted and the receiver can tell which
of them it lost (``packets_hit``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from v2x.common import check_whole


@dataclass(frozen=True)
class PacketFormat:
    """Packet size and header overhead.

    Attributes:
        mtu_bytes: packet size on air, headers included (bytes).
        header_bytes: header bytes per packet (IPv4 + UDP + RTP by default, see module doc).
    """

    mtu_bytes: int = 1500
    header_bytes: int = 40

    def __post_init__(self) -> None:
        check_whole("packet format: field 'mtu_bytes'", self.mtu_bytes, 1)  # (NaN compares false)
        check_whole("packet format: field 'header_bytes'", self.header_bytes, 0)
        if self.header_bytes < 0 or self.mtu_bytes <= self.header_bytes:
            raise ValueError(
                f"packet format: need 0 <= 'header_bytes' < 'mtu_bytes', got "
                f"header_bytes={self.header_bytes}, mtu_bytes={self.mtu_bytes}"
            )

    @property
    def payload_bytes(self) -> int:
        """Payload bytes per packet: ``mtu_bytes − header_bytes``."""
        return self.mtu_bytes - self.header_bytes

    @property
    def payload_bits(self) -> int:
        """Payload bits per packet."""
        return self.payload_bytes * 8

    def packets_for_bits(self, bits: torch.Tensor) -> torch.Tensor:
        """``[B]`` packets needed for ``bits [B]`` of payload: ``ceil(bits / payload_bits)``."""
        return torch.ceil(bits / self.payload_bits)


#: The packet format every default in the project uses.
PACKET_FORMAT = PacketFormat()
MTU_BYTES: int = PACKET_FORMAT.mtu_bytes
HEADER_BYTES: int = PACKET_FORMAT.header_bytes


def packet_index(n: int, symbols_per_packet: torch.Tensor) -> torch.Tensor:
    """``[B, n]`` int64: the packet each of ``n`` channel uses travels in.

    Args:
        n: channel uses per (padded) transmission.
        symbols_per_packet: ``[B]`` payload channel uses per packet (> 0, may be fractional).
    """
    spp = symbols_per_packet.to(torch.float64).reshape(-1, 1)
    if bool((spp <= 0).any()) or not bool(torch.isfinite(spp).all()):
        raise ValueError("packet_index: 'symbols_per_packet' must be finite and > 0")
    uses = torch.arange(int(n), dtype=torch.float64, device=spp.device)
    return torch.floor(uses.unsqueeze(0) / spp).to(torch.int64)


def packets_hit(
    mask: torch.Tensor | None, symbols_per_packet: torch.Tensor | None, packets: torch.Tensor
) -> torch.Tensor:
    """``[B]`` float64: how many of each transmission's packets hold a masked channel use.

    Args:
        mask: ``[B, n]`` bool (e.g. erased symbols, or symbols of code blocks that failed their
            CRC), or ``None`` (nothing masked).
        symbols_per_packet: ``[B]`` payload channel uses per packet (``None``: the whole
            transmission is one run; any masked use marks every packet — conservative).
        packets: ``[B]`` packets of each transmission (only packets ``< packets`` count).
    """
    packets = packets.to(torch.float64)
    if mask is None or mask.numel() == 0:
        return torch.zeros_like(packets)
    b, n = mask.shape
    if symbols_per_packet is None:
        return torch.where(mask.any(dim=1).to(packets.device), packets, torch.zeros_like(packets))
    idx = packet_index(n, symbols_per_packet.to(mask.device))  # non-decreasing along a row
    limit = packets.to(mask.device).reshape(-1, 1)
    num = int(idx.max()) + 1 if n else 1
    # Packet p holds uses [first_p, end_p) of its row (found in idx); it is hit when the count of
    # masked uses grows over them. A scan and two gathers: a scatter-add of every use into its
    # packet's counter serialises on the counter (48 ms for 64 rows of 2.1 M uses on an H100).
    masked_before = torch.nn.functional.pad(
        mask.to(torch.int32).cumsum(1, dtype=torch.int32), (1, 0)
    )
    p = torch.arange(num, device=mask.device).expand(b, num).contiguous()
    first, end = (torch.searchsorted(idx, p, side=side) for side in ("left", "right"))
    hit = masked_before.gather(1, end) > masked_before.gather(1, first)
    counted = p < limit
    return (hit & counted).sum(dim=1).to(torch.float64).to(packets.device)
