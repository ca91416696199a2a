"""The codec interface and ``Transmission``: what goes on air and what it cost.

A codec maps a batch of feature maps ``[B, C, H, W]`` (one per transmitting agent and condition)
to channel input and back. Costs are computed here and nowhere else; the ledger reads them.

Packets follow the project's one packet format (``v2x.channels.packets.PACKET_FORMAT``: 1500-byte
MTU, 40 bytes of IPv4/UDP/RTP headers), the same the erasure channels cut. What happened to the
packets on the air, as the receiver knows it after ``decode``, is ``reception``.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

import torch
from torch import nn

from v2x.channels.base import ChannelState
from v2x.channels.link import LinkState
from v2x.channels.packets import HEADER_BYTES, MTU_BYTES, PacketFormat, packets_hit
from v2x.common import Registry, to_device_async

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
            ``"sent"`` (``[B, 1, H, W]`` bool, where a codec sends only part of a map: the
            cells whose values it conveys; absent: all). After ``decode`` it also holds what
            the receiver learnt: ``"delivered"``
            (``[B, 1, H, W]`` bool, cells whose values arrived) and ``"corrupt"`` (``[B, n]``
            bool, channel uses of data that failed an integrity check, e.g. a CRC).
        symbols_per_packet: ``[B]`` float64 payload channel uses per packet: packet ``p`` of row
            ``b`` is the uses ``[p·spp_b, (p+1)·spp_b)`` (``v2x.channels.packets``), the layout
            a packet-aware channel erases; ``None`` when no symbols are sent.
        coded_bits_per_use: ``[B]`` float64 coded bits each sent channel use carries (the
            digital chain: its MCS's modulation order), what a resent use adds to
            ``cost.coded_bits`` (``v2x.semcom.harq.charge_arq``); ``None``: the symbols carry
            no coded bits (analog values; an analog codec's coded bits, if any, are error-free
            side information, never resent).
        sent_symbols: after ``received``, the ``[B, n]`` symbols that went on air (``symbols``
            before the channel; the same tensor, not a copy), for a receiver that bounds what a
            reception can carry (``v2x.semcom.undecodable``); ``None`` before.
    """

    symbols: torch.Tensor | None
    cost: Cost
    mask: torch.Tensor | None = None
    state: ChannelState | None = None
    meta: dict = field(default_factory=dict)
    symbols_per_packet: torch.Tensor | None = None
    coded_bits_per_use: torch.Tensor | None = None
    sent_symbols: torch.Tensor | None = None

    def received(self, symbols: torch.Tensor, state: ChannelState) -> Transmission:
        """This transmission after the channel: ``symbols`` received, ``state`` the channel's,
        the symbols sent kept as ``sent_symbols``."""
        return replace(self, symbols=symbols, state=state, sent_symbols=self.symbols)

    @property
    def cells(self) -> CellReport:
        """The cell-level side information of ``meta`` as typed fields (``CellReport``)."""
        return CellReport(**{f.name: self.meta.get(f.name) for f in fields(CellReport)})


@dataclass(frozen=True)
class CellReport:
    """Which cells of each map a transmission carried and which arrived (``Transmission.cells``).

    Every field is ``None`` when it does not apply (then: all cells).

    Attributes:
        indices: ``[N, k]`` int64 flat indices (``h·w`` raster) of the cells a selecting codec
            (``selective``) sent, per map.
        selected: ``[N, 1, h, w]`` bool, those cells as a mask.
        sent: ``[N, 1, h, w]`` bool, cells whose values the transmitter conveyed.
        delivered: ``[N, 1, h, w]`` bool per cell, or one flag per map (``[N]``,
            ``[N, 1, 1, 1]``): values that arrived (after ``decode``).
    """

    indices: torch.Tensor | None = None
    selected: torch.Tensor | None = None
    sent: torch.Tensor | None = None
    delivered: torch.Tensor | None = None


@dataclass
class Reception:
    """What happened to each transmission of a batch, as its receiver knows it after ``decode``.

    Every field is ``[B]`` float64 (packets as in ``Cost.packets``).

    Attributes:
        packets_erased: packets of which the channel erased at least one channel use
            (``state.erased``: the receiver saw nothing there).
        packets_crc_failed: packets not erased holding data that failed an integrity check
            (``meta["corrupt"]``: the digital chain's code-block CRC).
        retransmissions: packets sent again by HARQ or ARQ (``meta["retransmissions"]``, set by
            ``v2x.semcom.harq.transmit``; 0 without).
        retransmission_rounds: rounds after the first transmission in which something was
            resent (``meta["retransmission_rounds"]``; 0 without).
        feedback_s: seconds the payload waited for ACK/NACK feedback before those rounds
            (``meta["feedback_s"]``; part of its latency; 0 without).
        mcs: the 38.214 table-1 MCS index each transmission was sent with (``meta["mcs"]``,
            the digital chain's); NaN for codecs without one (``None`` at construction: NaN).
    """

    packets_erased: torch.Tensor
    packets_crc_failed: torch.Tensor
    retransmissions: torch.Tensor
    retransmission_rounds: torch.Tensor | None = None
    feedback_s: torch.Tensor | None = None
    mcs: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("retransmission_rounds", "feedback_s"):
            if getattr(self, name) is None:
                setattr(self, name, torch.zeros_like(self.retransmissions))
        if self.mcs is None:
            self.mcs = torch.full_like(self.retransmissions, math.nan)

    @property
    def packets_lost(self) -> torch.Tensor:
        """``[B]`` packets whose data the receiver could not use (erased or failed CRC)."""
        return self.packets_erased + self.packets_crc_failed


class Codec(nn.Module):
    """Base class for feature codecs (registered in ``CODECS``).

    ``encode(features [B, C, H, W] float32, link: LinkState) -> Transmission``
    ``decode(received: Transmission, link: LinkState) -> features [B, C, H, W]``: float32,
    except a codec computing in a reduced precision may return its maps in that dtype where it
    says so (DeepJSCC's ``precision="fp16"`` / ``"bf16"`` in CUDA inference: float16 /
    bfloat16, ``DeepJSCCCodec.decoded_dtype``). Consumers that need float32 convert
    (``.float()``); the Triton fusion kernels read any float dtype.

    A codec that knows which cells never arrived (lost or budget-dropped digital segments)
    records ``received.meta["delivered"]``: ``[B, 1, H, W]`` bool, True where the values arrived.
    Consumers (the pipeline's fusion) treat the other cells as missing, not as zeros.
    """

    #: True when the codec's symbols must go through the channel (analog / digital PHY).
    uses_channel: bool = True
    #: Constructor arguments the codec takes that a sweep fills in or varies (declared here,
    #: not read from the signature): ``"in_channels"`` (set to the detector's feature
    #: channels), ``"max_channel_uses"`` (an equal share of the frame's channel-use budget when
    #: the config leaves it out), ``"bandwidth_ratio"`` (one sweep group per ratio of
    #: ``grid.bandwidth_ratios``), ``"harq_max_rounds"`` (one group per value of
    #: ``grid.harq_max_rounds``), ``"checkpoint"`` (trained weights the config must name) and
    #: ``"bits"`` (the quantiser's bits per value, recorded in the results column
    #: ``bits_per_value`` so that codec entries differing only in ``bits`` are rows apart).
    sweep_arguments: frozenset[str] = frozenset()
    #: The quantiser's bits per value when the config leaves ``bits`` out (its constructor's
    #: default); a codec with ``"bits"`` in ``sweep_arguments`` must declare it.
    default_bits: ClassVar[int | None] = None
    #: HARQ retransmission rounds after the first transmission (0: none) and the wait for each
    #: round's NACK (s); ``v2x.semcom.harq.transmit`` runs them (the digital chain sets both).
    harq_max_rounds: int = 0
    harq_feedback_delay_s: float = 0.0
    #: True when ``Cost.source_bits`` is an estimate (e.g. an entropy estimate standing in for
    #: an entropy coder's output) rather than the size of what an encoder produced; results
    #: rows carry it (``bits_estimated``). Every codec of the package measures or counts its
    #: bits exactly unless it says otherwise (``docs/digital.md``, "Where bit counts come from").
    bits_estimated: bool = False
    #: ``encode`` memoises its SNR-independent source coding (e.g. quantise + entropy code) per
    #: map content in ``source_memo`` when the caller sets one (a dict the caller owns and
    #: clears; ``None``: a fresh memo per call). The sweep shares one across the SNRs of a group
    #: (``v2x.sweep_reuse.share_source_coding``); the memo returns what would be recomputed.
    memoises_source_coding: ClassVar[bool] = False
    source_memo: dict | None = None
    #: Worker processes (a ``concurrent.futures`` executor whose workers need not import torch)
    #: that such a codec may hand the host part of its source coding to, several maps at once;
    #: ``None``: in this process. The same bytes either way.
    source_executor: Executor | None = None
    #: ``v2x-train-codec`` can train it: ``forward_train(rows [N, C, H, W], snr_db [N], ratio,
    #: channel, erasure_prob=...) -> (decoded, ...)`` (differentiable through the channel),
    #: ``save_checkpoint(path)`` and ``warm_start(path)`` (``v2x.codec_training``).
    trainable: ClassVar[bool] = False
    #: An SNR gate per bandwidth ratio (``gate_ratios``, ``set_gate``, ``snr_gate``) that
    #: ``v2x.codec_calibration.calibrate_snr_gate`` sets.
    snr_gated: ClassVar[bool] = False
    #: Its channel uses depend only on the map's shape: ``channel_uses_for((C, H, W), ratio)
    #: -> int`` (``selective`` budgets with it).
    shape_only_cost: ClassVar[bool] = False
    #: ``encode`` reads float16 / bfloat16 maps exactly as their float32 copies (it computes
    #: from their values in float32 or wider, or sends them as float16): the pipeline then
    #: hands it a reduced-precision encoder's maps as they are, not converted to float32
    #: (``v2x.perception.fusion_base.collaborator_rows``).
    reads_reduced_maps: ClassVar[bool] = False
    #: ``decode`` writes its maps into ``received.meta[DECODE_INTO]`` when that tensor fits its
    #: last pass (``decode_target``) and returns that very tensor; otherwise a new one.
    decodes_into: ClassVar[bool] = False
    #: ``decode`` adds a channel's ``state.pending_noise`` to the symbols itself, on every path
    #: (``harq.on_air`` then asks a channel that can to defer it: ``Channel.defers_noise``).
    adds_pending_noise: ClassVar[bool] = False
    #: The ``K`` condition blocks of a send (the same maps at ``K`` SNRs, each on air from its
    #: own seed, ``v2x.condition_streams``) may be coded together: ``encode_blocks(rows [K, m,
    #: C, H, W], links) -> [K] Transmission`` gives what ``encode(rows[k], links[k])`` gives,
    #: and ``decode_blocks(received, links) -> [K·m, C, H, W]`` the ``decode`` of each block,
    #: joined (setting ``meta["delivered"]`` on each). Only for a codec whose ``encode`` and
    #: ``decode`` draw no random numbers and have no HARQ rounds: the channel's draws then stay
    #: each block's own, in the same order.
    codes_blocks_jointly: ClassVar[bool] = False
    #: Its decoded maps follow the channel's noise: conditions, each on air from its own seed,
    #: never decode to bitwise-equal maps unless a map is dropped (``meta["delivered"]``), so
    #: the pipeline does not look for conditions that could share their fusion (a host read of
    #: the decoded maps) when every map arrived.
    maps_differ_per_condition: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        needs = {"trainable": ("forward_train", "save_checkpoint", "warm_start"),
                 "snr_gated": ("set_gate",), "shape_only_cost": ("channel_uses_for",),
                 "codes_blocks_jointly": ("encode_blocks", "decode_blocks")}  # fmt: skip
        if callable(getattr(cls, "channel_uses_for", None)) and not cls.shape_only_cost:
            raise TypeError(
                f"codec {cls.__name__} defines channel_uses_for but does not declare "
                "shape_only_cost = True"
            )
        if "bits" in cls.sweep_arguments and cls.default_bits is None:
            raise TypeError(
                f"codec {cls.__name__} lists 'bits' in sweep_arguments but declares no default_bits"
            )
        if cls.codes_blocks_jointly and "codes_blocks_jointly" not in vars(cls):
            overridden = [m for m in ("encode", "decode") if m in vars(cls)]
            if overridden:  # the inherited block methods would not call the new ones
                raise TypeError(
                    f"codec {cls.__name__} overrides {', '.join(overridden)} but inherits "
                    "codes_blocks_jointly = True; declare it (False, or True with its own "
                    "encode_blocks and decode_blocks)"
                )
        if "encode" in vars(cls) and "reads_reduced_maps" not in vars(cls):
            cls.reads_reduced_maps = False  # a new encode gets float32 maps unless it says
        inherited = getattr(cls, "cost_before_air", None)
        if (
            "encode" in vars(cls)
            and "cost_before_air" not in vars(cls)
            and (inherited is not Codec.cost_before_air)
        ):  # the inherited cost would not be the new encode's
            raise TypeError(
                f"codec {cls.__name__} overrides encode but inherits cost_before_air; define "
                "it (return None when the cost is not known before encoding)"
            )
        for capability, methods in needs.items():
            missing = [m for m in methods if not callable(getattr(cls, m, None))]
            if getattr(cls, capability) and missing:
                raise TypeError(
                    f"codec {cls.__name__} declares {capability} = True but lacks "
                    f"{', '.join(missing)}"
                )

    def encode(self, features: torch.Tensor, link: LinkState) -> Transmission:  # pragma: no cover
        raise NotImplementedError

    def cost_before_air(self, shape: tuple[int, ...], snr_db: torch.Tensor) -> Cost | None:
        """The ``Cost`` ``encode`` charges ``shape = (N, C, H, W)`` maps at ``snr_db`` (``[N]``
        dB, on the maps' device), when neither the maps' values nor the air change it, the
        receiver has no integrity check (so its ``Reception`` is all zeros unless the channel
        erases or resends, ``Channel.erases``) and every cell of every map is conveyed and
        delivered (no ``meta["sent"]`` or ``meta["delivered"]``: the ledger's ``cells_used``
        is every cell); ``None`` otherwise (the default: a payload sized by source coding, an
        SNR gate, HARQ). ``v2x.known_drops`` leaves out of a run the conditions whose every
        payload the budget would drop."""
        return None

    def decoded_layout(self, rows: torch.Tensor) -> tuple[torch.dtype, torch.memory_format] | None:
        """The dtype and memory format of the maps ``decode`` writes into ``DECODE_INTO`` for
        maps like ``rows``, where known before the air: ``send`` then offers a codec with
        ``decodes_into`` every condition block's slice of the joined maps, the first one's too.
        ``None`` (the default): the first block's maps set them (and are copied in)."""
        return None

    def decode(self, received: Transmission, link: LinkState) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


CODECS: Registry[Codec] = Registry("codec", base=Codec)


#: ``Transmission.meta`` key of an optional ``[B, C, H, W]`` tensor the caller would like the
#: decoded maps in (``v2x.condition_streams.send`` offers each condition block its slice of the
#: joined maps, of the dtype the first block decoded to, so a codec with ``decodes_into`` saves
#: the join's copy). A codec that does not write there (it is not of the dtype, shape, device or
#: layout the codec's last pass writes) returns a tensor of its own, which the caller copies.
DECODE_INTO = "decode_into"


def decode_target(
    received: Transmission,
    shape: tuple[int, ...],
    device: torch.device,
    memory_format: torch.memory_format,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor | None:
    """``received.meta[DECODE_INTO]`` when it is a tensor of ``dtype`` (the dtype the codec
    decodes to: float32 unless it says otherwise) and ``shape`` on ``device``, dense in
    ``memory_format`` (the layout the codec's last pass writes); else ``None`` (a target of
    another dtype too: the codec's maps would be rounded twice, or widened, on the way)."""
    out = received.meta.get(DECODE_INTO)
    if out is None or out.dtype != dtype or tuple(out.shape) != tuple(shape):
        return None
    if out.device != device or not out.is_contiguous(memory_format=memory_format):
        return None
    return out


def check_features(features: torch.Tensor) -> None:
    if features.dim() != 4:
        raise ValueError(
            f"codec input 'features' must have shape [B, C, H, W], got {tuple(features.shape)}"
        )


def raw_feature_bits(features: torch.Tensor) -> torch.Tensor:
    """``[B]`` bits of the uncompressed float32 feature maps."""
    return raw_feature_bits_of(tuple(features.shape), features.device)


def raw_feature_bits_of(shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
    """``[B]`` bits of uncompressed float32 feature maps of ``shape`` ``(B, C, H, W)``."""
    per_map = math.prod(shape[1:]) * 32 if shape[0] else 0
    return torch.full((shape[0],), float(per_map), dtype=torch.float64, device=device)


def packets_for_bits(
    bits: torch.Tensor, mtu_bytes: int = MTU_BYTES, header_bytes: int = HEADER_BYTES
) -> torch.Tensor:
    """``[B]`` packets needed for ``bits`` of payload (``PacketFormat.packets_for_bits``)."""
    return PacketFormat(mtu_bytes, header_bytes).packets_for_bits(bits)


def symbols_per_packet(
    bits_per_symbol: torch.Tensor | float,
    batch: int,
    device: torch.device | str,
    mtu_bytes: int = MTU_BYTES,
    header_bytes: int = HEADER_BYTES,
) -> torch.Tensor:
    """``[B]`` float64 payload channel uses per packet when each use carries ``bits_per_symbol``
    (scalar or ``[B]``) payload bits: ``payload_bits / bits_per_symbol``."""
    if isinstance(bits_per_symbol, torch.Tensor):
        rate = bits_per_symbol.to(device, torch.float64).reshape(-1)
        rate = rate.expand(batch) if rate.numel() == 1 else rate
    else:  # a fill on the device, not a copy from the host (which waits for the device)
        rate = torch.full((batch,), float(bits_per_symbol), dtype=torch.float64, device=device)
    return PacketFormat(mtu_bytes, header_bytes).payload_bits / rate.clamp_min(1e-12)


def reception(received: Transmission) -> Reception:
    """Packet outcomes of a decoded ``Transmission`` (call after ``decode``).

    A packet is erased when the channel erased one of its channel uses (``state.erased``,
    restricted to the sent uses ``mask``), and failed its CRC when it is not erased but
    holds a use of ``meta["corrupt"]``. Packets are laid out by ``symbols_per_packet``.
    """
    packets = received.cost.packets.to(torch.float64)
    erased = received.state.erased if received.state is not None else None
    corrupt = received.meta.get("corrupt")
    if received.mask is not None:
        erased = None if erased is None else erased & received.mask
        corrupt = None if corrupt is None else corrupt.to(received.mask.device) & received.mask
    spp = received.symbols_per_packet
    lost = erased
    if corrupt is not None:
        lost = corrupt if lost is None else lost | corrupt.to(lost.device)
    n_erased = packets_hit(erased, spp, packets)
    n_failed = packets_hit(lost, spp, packets) - n_erased
    meta = received.meta
    resent, rounds, feedback = (
        torch.zeros_like(packets) if meta.get(name) is None else meta[name].to(packets)
        for name in ("retransmissions", "retransmission_rounds", "feedback_s")
    )
    mcs = meta.get("mcs")  # None: NaN; the host's link adaptation copied without waiting
    mcs = None if mcs is None else to_device_async(mcs, packets.device).to(packets)
    return Reception(n_erased, n_failed, resent, rounds, feedback, mcs)
