"""Packet erasures on top of any channel: i.i.d., Gilbert–Elliott bursts, or BLER at the SNR.

Symbols are cut into packets (``Packetizer``: MTU and header bytes, bits carried per channel use);
a lost packet erases all its symbols (``ChannelState.erased``) and zeroes them in ``y``. Headers
occupy channel uses that the accounting reports (``Packetizer.channel_uses``) but that are not
part of the ``[B, n]`` payload tensor. MTU and header default to the project's one packet format
(``v2x.channels.packets.PACKET_FORMAT``: 1500 bytes, 40 of them headers), the one codecs count.

When a codec's transmission goes through the channel, the caller passes the codec's own layout
(``forward(x, snr_db, symbols_per_packet=...)``, ``Transmission.symbols_per_packet``): packet
``p`` of row ``b`` is then the channel uses ``[p·spp_b, (p+1)·spp_b)``, so the channel loses
exactly the packets the codec counted in ``Cost.packets``.

Gilbert–Elliott (Gilbert 1960, Elliott 1963): a two-state Markov chain per transmission over its
packets, ``p = P(G→B)``, ``r = P(B→G)``, loss probability ``loss_good`` in G and ``loss_bad`` in B.
Stationary ``π_B = p/(p+r)``, mean loss ``π_G·loss_good + π_B·loss_bad``, mean bad-state sojourn
(burst length with ``loss_bad = 1``, ``loss_good = 0``) ``1/r``, mean gap ``1/p``.

BLER mode: each packet's instantaneous SNR (``mean(|h|²)/no`` over its symbols) gives its error
probability from a table (``bler_table``, log-linear interpolation) or from the finite-blocklength
normal approximation (Polyanskiy, Poor, Verdú 2010) of a code carrying the packet's payload bits
in its channel uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from v2x.channels.arq import arq_resend, check_arq_rounds, check_feedback_delay
from v2x.channels.base import CHANNELS, Channel, ChannelState
from v2x.channels.budget import normal_approx_error_prob
from v2x.channels.fade_statistics import FadeStatistics
from v2x.channels.packets import HEADER_BYTES, MTU_BYTES, PacketFormat, packet_index
from v2x.channels.radio import check_radio_value
from v2x.common import check_whole, to_plain


@dataclass(frozen=True)
class Packetizer:
    """Cuts a stream of channel symbols into packets.

    Args:
        mtu_bytes: packet size on air including headers (bytes; default ``PACKET_FORMAT``).
        header_bytes: header bytes per packet (counted as overhead channel uses; default
            ``PACKET_FORMAT``'s, see ``v2x.channels.packets`` for what they comprise).
        bits_per_symbol: information bits one channel use carries (e.g. 2 for QPSK at rate 1,
            the code's spectral efficiency for digital links, 32 for float16 I/Q analog symbols).
        symbols_per_packet: payload symbols per packet; overrides the MTU-derived value.
    """

    mtu_bytes: int = MTU_BYTES
    header_bytes: int = HEADER_BYTES
    bits_per_symbol: float = 2.0
    symbols_per_packet: int | None = None

    def __post_init__(self) -> None:
        PacketFormat(self.mtu_bytes, self.header_bytes)  # raises naming both fields
        check_radio_value("packetizer", "bits_per_symbol", self.bits_per_symbol, positive=True)
        if self.symbols_per_packet is not None:
            check_whole("packetizer: field 'symbols_per_packet'", self.symbols_per_packet, 1)

    @property
    def payload_symbols(self) -> int:
        """Payload channel uses per packet."""
        if self.symbols_per_packet is not None:
            return int(self.symbols_per_packet)
        return max(1, int((self.mtu_bytes - self.header_bytes) * 8 // self.bits_per_symbol))

    @property
    def header_symbols(self) -> int:
        """Header channel uses per packet."""
        return int(math.ceil(self.header_bytes * 8 / self.bits_per_symbol))

    @property
    def payload_bits(self) -> float:
        """Information bits in a full packet's payload."""
        return self.payload_symbols * self.bits_per_symbol

    def num_packets(self, n_symbols: int) -> int:
        return -(-int(n_symbols) // self.payload_symbols)

    def channel_uses(self, n_symbols: int) -> int:
        """Total channel uses for ``n_symbols`` payload symbols, headers included."""
        return int(n_symbols) + self.num_packets(n_symbols) * self.header_symbols

    def packet_index(self, n_symbols: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[n]`` long: the packet each symbol travels in."""
        return torch.arange(int(n_symbols), device=device) // self.payload_symbols


def gilbert_elliott_states(
    batch: int, num_packets: int, p_gb: float, p_bg: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``[batch, num_packets]`` bool, True in the bad state; the chain starts in its stationary law."""
    if not (0 < p_gb <= 1 and 0 < p_bg <= 1):
        raise ValueError(f"gilbert_elliott: need 0 < p_gb, p_bg <= 1, got p_gb={p_gb}, p_bg={p_bg}")
    pi_b = p_gb / (p_gb + p_bg)
    u = torch.rand(batch, num_packets, device=device)
    bad = torch.empty(batch, num_packets, dtype=torch.bool, device=device)
    state = u[:, 0] < pi_b
    bad[:, 0] = state
    for t in range(1, num_packets):
        # bad → stays bad w.p. 1 − r; good → goes bad w.p. p.
        state = torch.where(state, u[:, t] >= p_bg, u[:, t] < p_gb)
        bad[:, t] = state
    return bad


def normal_approx_bler(
    snr_lin: torch.Tensor, n: float | torch.Tensor, k: float | torch.Tensor
) -> torch.Tensor:
    """Block error probability of the best ``(n, k)`` code over complex AWGN at linear SNR
    ``snr_lin`` (``v2x.channels.budget.normal_approx_error_prob``), float32."""
    return normal_approx_error_prob(snr_lin, n, k).to(torch.float32)


def _interp_bler(snr_db: torch.Tensor, table: list[list[float]]) -> torch.Tensor:
    pts = torch.as_tensor(table, dtype=torch.float64, device=snr_db.device)
    if pts.dim() != 2 or pts.shape[1] != 2 or pts.shape[0] < 2:
        raise ValueError("erasure: 'bler_table' must be a list of [snr_db, bler] pairs (>= 2)")
    xs, ys = pts[:, 0].contiguous(), torch.log(pts[:, 1].clamp(1e-12, 1.0))
    if not bool((xs[1:] > xs[:-1]).all()):
        raise ValueError("erasure: 'bler_table' SNR points must be strictly increasing")
    s = snr_db.to(torch.float64).clamp(xs[0], xs[-1])
    idx = torch.searchsorted(xs, s.contiguous()).clamp(1, len(xs) - 1)
    x0, x1, y0, y1 = xs[idx - 1], xs[idx], ys[idx - 1], ys[idx]
    w = (s - x0) / (x1 - x0)
    return torch.exp(y0 + w * (y1 - y0)).to(torch.float32)


def _build_inner(inner: Channel | str | dict) -> Channel:
    inner = to_plain(inner)
    if isinstance(inner, Channel):
        return inner
    if isinstance(inner, str):
        return CHANNELS.build(inner)
    if isinstance(inner, dict):
        kw = dict(inner)
        if "name" not in kw:
            raise ValueError("erasure: 'inner' config needs a 'name' field (a registered channel)")
        return CHANNELS.build(kw.pop("name"), **kw)
    raise ValueError(
        f"erasure: 'inner' must be a channel, its name, or a config dict, got {inner!r}"
    )


class ErasureChannel(Channel):
    """Wraps an inner channel and erases whole packets.

    Args:
        inner: the channel the packets go through (instance, registered name, or
            ``{name: ..., **kwargs}``).
        model: ``"iid"``, ``"gilbert_elliott"`` or ``"bler"``.
        loss_prob: i.i.d. packet loss probability.
        p_gb, p_bg: Gilbert–Elliott transition probabilities per packet.
        loss_good, loss_bad: Gilbert–Elliott per-state loss probabilities.
        bler_table: ``[[snr_db, bler], …]`` for ``model="bler"``; ``None``: normal approximation.
        mtu_bytes, header_bytes, bits_per_symbol, symbols_per_packet: see ``Packetizer``.
        arq_max_rounds: rounds in which lost packets are resent (``v2x.channels.arq``; 0: none).
        arq_feedback_delay_s: seconds each retransmission round waits for the receiver's
            feedback before it is sent (added to the payload's latency; 0: instantaneous).

    Returns ``y`` with erased symbols set to 0 and ``state.erased [B, n]``; ``state.extra`` holds
    ``packet_lost [B, P]``, ``num_packets`` (``P``) and ``channel_uses`` (headers included; an
    int with the channel's own packetizer, ``[B]`` float64 with a codec's layout).
    """

    #: ``forward`` takes the codec's packet layout (``symbols_per_packet``).
    packet_aware = True
    sweep_arguments = frozenset({"arq_max_rounds"})

    def __init__(
        self,
        inner: Channel | str | dict = "awgn",
        model: str = "iid",
        loss_prob: float = 0.01,
        p_gb: float = 0.01,
        p_bg: float = 0.25,
        loss_good: float = 0.0,
        loss_bad: float = 1.0,
        bler_table: list[list[float]] | None = None,
        mtu_bytes: int = MTU_BYTES,
        header_bytes: int = HEADER_BYTES,
        bits_per_symbol: float = 2.0,
        symbols_per_packet: int | None = None,
        arq_max_rounds: int = 0,
        arq_feedback_delay_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.arq_max_rounds = check_arq_rounds(arq_max_rounds)
        self.arq_feedback_delay_s = check_feedback_delay(
            arq_feedback_delay_s, "erasure: 'arq_feedback_delay_s'"
        )
        if model not in ("iid", "gilbert_elliott", "bler"):
            raise ValueError(
                f"erasure: unknown model {model!r}; valid choices: iid, gilbert_elliott, bler"
            )
        for key, val in (
            ("loss_prob", loss_prob),
            ("loss_good", loss_good),
            ("loss_bad", loss_bad),
        ):
            if not 0.0 <= val <= 1.0:
                raise ValueError(f"erasure: '{key}' must be in [0, 1], got {val}")
        if model == "gilbert_elliott" and not (0 < p_gb <= 1 and 0 < p_bg <= 1):
            raise ValueError(f"erasure: need 0 < p_gb, p_bg <= 1, got p_gb={p_gb}, p_bg={p_bg}")
        self.inner = _build_inner(inner)
        self.model = model
        self.loss_prob = float(loss_prob)
        self.p_gb, self.p_bg = float(p_gb), float(p_bg)
        self.loss_good, self.loss_bad = float(loss_good), float(loss_bad)
        self.bler_table = to_plain(bler_table)
        self.packetizer = Packetizer(mtu_bytes, header_bytes, bits_per_symbol, symbols_per_packet)

    def expected_loss_rate(self) -> float:
        """Stationary packet loss rate of the i.i.d./Gilbert–Elliott models."""
        if self.model == "iid":
            return self.loss_prob
        if self.model == "gilbert_elliott":
            pi_b = self.p_gb / (self.p_gb + self.p_bg)
            return (1 - pi_b) * self.loss_good + pi_b * self.loss_bad
        raise ValueError("erasure: expected_loss_rate depends on the SNR for model='bler'")

    def packet_losses(
        self,
        batch: int,
        n: int,
        state: ChannelState,
        device: torch.device,
        index: torch.Tensor | None = None,
        bits_per_symbol: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, P]`` bool: which packets are lost.

        Args:
            batch, n: transmissions and channel uses per transmission.
            state: the inner channel's state (``model="bler"`` reads its per-symbol SNR).
            index: ``[B, n]`` int64 packet of every channel use (``None``: the packetizer's).
            bits_per_symbol: ``[B]`` information bits per channel use for the BLER normal
                approximation (``None``: the packetizer's).
        """
        if index is None:
            index = self.packetizer.packet_index(n, device).expand(batch, n)
            num = self.packetizer.num_packets(n)
        else:
            num = int(index.max()) + 1 if index.numel() else 0
        if self.model == "iid":
            return torch.rand(batch, num, device=device) < self.loss_prob
        if self.model == "gilbert_elliott":
            if num == 0:
                return torch.zeros(batch, 0, dtype=torch.bool, device=device)
            bad = gilbert_elliott_states(batch, num, self.p_gb, self.p_bg, device)
            prob = torch.where(bad, self.loss_bad, self.loss_good)
            return torch.rand(batch, num, device=device) < prob
        # BLER at each packet's instantaneous SNR.
        gain = torch.ones(batch, n, device=device)
        if state.h is not None:
            gain = (state.h.abs().square().float() * gain).expand(batch, n)
        per_pkt = torch.zeros(batch, num, device=device).scatter_add_(1, index, gain)
        counts = torch.zeros(batch, num, device=device).scatter_add_(1, index, torch.ones_like(gain))
        snr_lin = per_pkt / counts.clamp_min(1) / state.no.reshape(-1, 1).to(device)
        if self.bler_table is not None:
            bler = _interp_bler(10 * torch.log10(snr_lin.clamp_min(1e-30)), self.bler_table)
        else:
            rate = (
                torch.full((batch, 1), self.packetizer.bits_per_symbol, device=device)
                if bits_per_symbol is None
                else bits_per_symbol.to(device, torch.float32).reshape(-1, 1)
            )
            n_uses = counts.to(torch.float64).clamp_min(1)
            bler = normal_approx_bler(snr_lin, n_uses, rate * n_uses)
        return torch.rand(batch, num, device=device) < bler

    def sinr_feedback(self, snr_db: torch.Tensor) -> torch.Tensor | None:
        """The inner channel's feedback (packet losses are not part of the SINR)."""
        return self.inner.sinr_feedback(snr_db)

    def fade_statistics(self) -> FadeStatistics | None:
        """The inner channel's fade (packet losses come on top of it)."""
        return self.inner.fade_statistics()

    def forward(
        self,
        x: torch.Tensor,
        snr_db: torch.Tensor,
        symbols_per_packet: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ChannelState]:
        """``x [B, n]`` → ``(y [B, n], state)`` with whole packets erased.

        Args:
            symbols_per_packet: ``[B]`` payload channel uses per packet of each transmission
                (the codec's layout, ``Transmission.symbols_per_packet``); ``None``: the
                channel's own ``Packetizer``.
            mask: ``[B, n]`` bool channel uses really sent (``Transmission.mask``); ARQ never
                resends the others. ``None``: all.

        With ``arq_max_rounds > 0`` lost packets are resent (``v2x.channels.arq.arq_resend``):
        ``y`` then comes back equalised (``state.equalized``).
        """
        y, state = self.inner(x, snr_db)
        batch, n = y.shape
        rate = None
        if symbols_per_packet is None:
            lost = self.packet_losses(batch, n, state, y.device)
            index = self.packetizer.packet_index(n, y.device).expand(batch, n)
            erased = lost[:, index[0]]
            num_packets: int = self.packetizer.num_packets(n)
            uses: int | torch.Tensor = self.packetizer.channel_uses(n)
        else:
            spp = symbols_per_packet.to(y.device, torch.float64).reshape(-1)
            if spp.shape[0] != batch:
                raise ValueError(
                    f"erasure: 'symbols_per_packet' must have shape [{batch}], got "
                    f"{tuple(symbols_per_packet.shape)}"
                )
            index = packet_index(n, spp)
            fmt = PacketFormat(self.packetizer.mtu_bytes, self.packetizer.header_bytes)
            rate = fmt.payload_bits / spp  # information bits per channel use
            lost = self.packet_losses(batch, n, state, y.device, index, rate)
            erased = lost.gather(1, index) if lost.shape[1] else torch.zeros_like(index, dtype=torch.bool)
            num_packets = lost.shape[1]
            header_uses = torch.ceil(fmt.header_bytes * 8 / rate)
            uses = n + torch.ceil(n / spp) * header_uses
        y = torch.where(erased, torch.zeros_like(y), y)
        state = state.with_erasures(erased)
        state.extra = {
            **state.extra,
            "packet_lost": lost,
            "num_packets": num_packets,
            "channel_uses": uses,
        }
        if self.arq_max_rounds > 0:
            if rate is None:
                rate = torch.full((batch,), self.packetizer.bits_per_symbol, device=y.device)
            y, state = arq_resend(self, x, y, state, snr_db, index, lost, rate, mask)
        return y, state


#: The loss model's own settings, per ``ErasureChannel`` model.
MODEL_FIELDS = {
    "iid": ("loss_prob",),
    "gilbert_elliott": ("p_gb", "p_bg", "loss_good", "loss_bad"),
    "bler": ("bler_table",),
}


def _own_fields(name: str, model: str, kw: dict) -> dict:
    """``kw``, or ``ValueError`` if it sets another loss model's fields (``erasure_iid`` with
    ``p_gb``, ``erasure`` with ``model: iid`` and ``p_gb``), which that channel would ignore."""
    if model not in MODEL_FIELDS:
        return kw  # ErasureChannel refuses the model itself, naming the valid ones
    foreign = sorted(
        key for other, keys in MODEL_FIELDS.items() if other != model for key in keys if key in kw
    )
    if foreign:
        own, hint = (
            (f"model {model!r} takes", "set 'model' to the loss model they belong to")
            if name == "erasure"
            else (f"{name}'s own:", "or channel 'erasure' with 'model'")
        )
        raise ValueError(
            f"{name}: field(s) {foreign} belong to another loss model and would be ignored; "
            f"{own} {list(MODEL_FIELDS[model])} ({hint})"
        )
    return kw


@CHANNELS.register("erasure", builds=ErasureChannel)
def erasure(inner: Channel | str | dict = "awgn", model: str = "iid", **kw) -> ErasureChannel:
    """Packet erasures over ``inner`` with the loss ``model`` (``ErasureChannel``'s arguments)."""
    kw = _own_fields("erasure", model, kw)
    return ErasureChannel(inner=inner, model=model, **kw)


@CHANNELS.register("erasure_iid", builds=ErasureChannel)
def erasure_iid(
    inner: Channel | str | dict = "awgn", loss_prob: float = 0.01, **kw
) -> ErasureChannel:
    """I.i.d. packet erasures over ``inner``."""
    kw = _own_fields("erasure_iid", "iid", kw)
    return ErasureChannel(inner=inner, model="iid", loss_prob=loss_prob, **kw)


@CHANNELS.register("erasure_ge", builds=ErasureChannel)
def erasure_ge(
    inner: Channel | str | dict = "awgn", p_gb: float = 0.01, p_bg: float = 0.25, **kw
) -> ErasureChannel:
    """Gilbert–Elliott burst erasures over ``inner``."""
    kw = _own_fields("erasure_ge", "gilbert_elliott", kw)
    return ErasureChannel(inner=inner, model="gilbert_elliott", p_gb=p_gb, p_bg=p_bg, **kw)


@CHANNELS.register("erasure_bler", builds=ErasureChannel)
def erasure_bler(
    inner: Channel | str | dict = "rayleigh", bler_table: list[list[float]] | None = None, **kw
) -> ErasureChannel:
    """Packets lost with the block error rate at their instantaneous SNR."""
    kw = _own_fields("erasure_bler", "bler", kw)
    return ErasureChannel(inner=inner, model="bler", bler_table=bler_table, **kw)
