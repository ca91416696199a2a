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
    spp = _checked_spp(symbols_per_packet, "packet_index")
    uses = torch.arange(int(n), dtype=torch.float64, device=spp.device)
    return torch.floor(uses.unsqueeze(0) / spp).to(torch.int64)


def _checked_spp(symbols_per_packet: torch.Tensor, caller: str) -> torch.Tensor:
    """``[B, 1]`` float64 payload channel uses per packet; ``ValueError`` unless all are finite
    and > 0."""
    spp = symbols_per_packet.to(torch.float64).reshape(-1, 1)
    if bool(((spp <= 0) | ~torch.isfinite(spp)).any()):  # one read of the device
        raise ValueError(f"{caller}: 'symbols_per_packet' must be finite and > 0")
    return spp


def packet_starts(n: int, symbols_per_packet: torch.Tensor) -> torch.Tensor:
    """``[B, P + 1]`` int64: the first channel use of packets ``0 … P`` of each row of ``n``
    uses (``n`` for a packet that starts past the row), ``P`` being one past ``packet_index``'s
    largest value: the least ``j`` whose ``packet_index`` is ≥ ``p``, found per packet, not by
    indexing every use. Packet ``p`` of a row holds uses ``[start_p, start_p+1)``.

    ``ceil(p · spp)`` is that use but for the rounding of the product and of
    ``packet_index``'s own division (each far below one use), so one step back or on, decided
    by that same float64 division, gives the exact boundary.
    """
    spp = _checked_spp(symbols_per_packet, "packet_starts")
    num = int(torch.floor((n - 1) / spp).max()) + 1 if n else 0
    p = torch.arange(num + 1, dtype=torch.float64, device=spp.device).unsqueeze(0)
    start = torch.ceil(p * spp).clamp_(0, n)
    start -= ((start >= 1) & (torch.floor((start - 1) / spp) >= p)).to(start.dtype)
    start += ((start < n) & (torch.floor(start / spp) < p)).to(start.dtype)
    return start.to(torch.int64)


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
    limit = packets.to(mask.device).reshape(-1, 1)
    # Packet p holds uses [start_p, start_p+1) of its row; it is hit when the count of masked
    # uses grows over them: one scan of the mask and two gathers per packet, no index per use
    # (a scatter-add of every use into its packet's counter serialised on the counter: 48 ms
    # for 64 rows of 2.1 M uses on an H100).
    masked = mask.cumsum(1, dtype=torch.int32)  # masked uses up to and including each use
    start = packet_starts(n, symbols_per_packet.to(mask.device))
    num = start.shape[1] - 1
    before = masked.gather(1, (start - 1).clamp_(min=0)).masked_fill_(start == 0, 0)
    hit = before[:, 1:] > before[:, :-1]
    counted = torch.arange(num, device=mask.device).unsqueeze(0) < limit
    return (hit & counted).sum(dim=1).to(torch.float64).to(packets.device)
