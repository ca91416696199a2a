"""The channel interface: complex symbols in, received symbols and channel state out.

Shapes follow Sionna's habit of documenting every axis: a batch of ``B`` independent
transmissions (links × conditions), each ``n`` complex channel uses long.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from torch import nn

from v2x.channels.awgn_triton import PendingNoise
from v2x.channels.fade_statistics import FadeStatistics
from v2x.channels.radio import SNR_LIMIT_DB, snr_range_message
from v2x.common import Registry, TensorMemo


@dataclass
class ChannelState:
    """What the receiver knows (and what was true) after a channel.

    Attributes:
        no: ``[B]`` float32 noise variance per complex symbol (the transmit energy per symbol
            ``Es`` is 1, so ``snr = 1 / no``).
        h: ``[B, n]`` or ``[B, 1]`` complex64 true channel gains (``None`` for AWGN: h = 1).
        h_hat: like ``h``, the receiver's estimate (``None``: perfect CSI).
        erased: ``[B, n]`` bool, True where the symbol never arrived (lost packet), or ``None``.
        err_var: variance of the CSI error ``h − h_hat`` (float, ``[B, 1]`` or ``[B, n]``;
            ``None`` or 0: perfect CSI). With the model ``h = h_hat + e``, ``e`` independent of
            ``h_hat`` (an LMMSE estimate), the MMSE equaliser treats ``e·x`` as extra noise.
        no_eff: ``[B, n]`` float32 effective noise variance of ``y`` when the channel already
            equalised its output (``equalized=True``, e.g. OFDM with Sionna's LMMSE equaliser).
        equalized: True when ``y`` is already an estimate of ``x`` (``equalize`` passes it on).
        sinr: ``[B, n]`` float32 linear post-equalisation SINR per symbol that the receiver can
            count on, channel-estimation error included (``v2x.channels.effective_sinr``), set
            by frequency-selective channels (OFDM); ``None``: the receiver knows the plain SNR
            ``1 / no`` (AWGN, flat fading). Read it through ``effective_sinr.receiver_sinr``.
        extra: model-specific diagnostics (packet loss masks, Doppler, resource-grid sizes …).
        linear_gaussian: True only where ``y = h·x + n`` holds exactly, with ``n ~ CN(0, no)``
            i.i.d. per symbol, ``h`` this state's ``h`` (``None``: 1) drawn independently of
            ``x``, and nothing else in ``y`` (erased symbols aside): a receiver that knows ``h``
            then computes exact likelihoods, which the digital receiver's decoding bound needs
            (``v2x.semcom.undecodable``). Set by the AWGN and flat-fading channels only.
        pending_noise: the AWGN not yet in ``y`` (``y`` is then the symbols sent), for a
            receiver that adds it as it reads them (``Channel.defers_noise``); ``None``: ``y``
            holds everything the channel did.
    """

    no: torch.Tensor
    h: torch.Tensor | None = None
    h_hat: torch.Tensor | None = None
    erased: torch.Tensor | None = None
    err_var: torch.Tensor | float | None = None
    no_eff: torch.Tensor | None = None
    equalized: bool = False
    sinr: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)
    linear_gaussian: bool = False
    pending_noise: PendingNoise | None = None

    def with_erasures(self, erased: torch.Tensor) -> ChannelState:
        merged = erased if self.erased is None else (self.erased | erased)
        return replace(self, erased=merged)

    @property
    def csi(self) -> torch.Tensor | None:
        """The receiver's channel knowledge: ``h_hat`` if set, else the true ``h``."""
        return self.h_hat if self.h_hat is not None else self.h


class Channel(nn.Module):
    """Base class. ``forward(x, snr_db) -> (y, state)``.

    Args (forward):
        x: ``[B, n]`` complex64 channel input with average energy 1 per symbol.
        snr_db: ``[B]`` (or scalar) float, Es/N0 in dB per transmission.

    Returns:
        y: ``[B, n]`` complex64 received symbols (not equalised unless ``state.equalized``).
        state: ``ChannelState``.

    Channels are differentiable with respect to ``x``.

    A channel that cuts its input into packets sets ``packet_aware = True`` and accepts
    ``forward(x, snr_db, symbols_per_packet=[B])``: the sender's packet layout (payload channel
    uses per packet, ``v2x.channels.packets.packet_index``), so that it loses the sender's packets.
    """

    #: ``forward`` accepts ``symbols_per_packet`` (the sender's packet layout).
    packet_aware: bool = False
    #: Constructor arguments a sweep varies (declared, not read from the signature):
    #: ``"arq_max_rounds"`` (one sweep group per value of ``grid.harq_max_rounds``).
    sweep_arguments: frozenset[str] = frozenset()
    #: ARQ rounds after the first transmission (0: none; a packet-aware channel running them
    #: accepts ``forward(..., mask=)``) and the wait for each round's NACK (s).
    arq_max_rounds: int = 0
    arq_feedback_delay_s: float = 0.0
    #: The channel may erase channel uses (``state.erased``). ``False`` declares it never
    #: does: a codec without an integrity check then learns nothing on the air that could
    #: change its ``Reception`` (which is known before sending, ``v2x.known_drops``). A new
    #: channel is taken to erase until it says otherwise.
    erases: ClassVar[bool] = True
    #: ``forward`` accepts ``defer_noise=True``: where it can, it returns the symbols sent as
    #: ``y`` and its noise in ``state.pending_noise`` for the receiver to add (only a codec
    #: that adds it asks: ``Codec.adds_pending_noise``).
    defers_noise: ClassVar[bool] = False
    #: The carrier (Hz) of the channel's own Doppler (fast fading from ``speed_mps``, TDL/CDL),
    #: meant to be its link's (the path loss's); ``None``: no Doppler of its own. A wrapper's
    #: is its ``inner`` channel's (``doppler_config``).
    doppler_carrier_hz: float | None = None

    def forward(  # pragma: no cover - interface
        self, x: torch.Tensor, snr_db: torch.Tensor
    ) -> tuple[torch.Tensor, ChannelState]:
        raise NotImplementedError

    def sinr_feedback(self, snr_db: torch.Tensor) -> torch.Tensor | None:
        """What the receiver would report before a transmission (CSI feedback, as a CQI).

        Args:
            snr_db: ``[L]`` float nominal Es/N0 (dB) per link.

        Returns:
            ``[L, N]`` float32 linear post-equalisation SINR of ``N`` sounded resource elements
            per link (in the order symbols are mapped), or ``None`` when the channel has no
            frequency selectivity: the transmitter then uses ``snr_db`` itself (the default).
        """
        return None

    def fade_statistics(self) -> FadeStatistics | None:
        """The distribution of the flat fade this channel draws when a transmission goes on
        air, which the transmitter cannot see before sending (block or fast fading:
        ``v2x.channels.fade_statistics``), or ``None``: nothing unknown to plan for beyond
        ``snr_db`` and ``sinr_feedback`` (the default)."""
        return None


CHANNELS: Registry[Channel] = Registry("channel", base=Channel)


def doppler_config(channel: Channel) -> dict:
    """The config fields of ``channel`` that set its Doppler's carrier, as built (defaults
    filled in): ``{"carrier_hz": hz}``, ``{"inner": {...}}`` for a wrapper of an inner channel,
    ``{}`` for a channel without a Doppler of its own. What ``radio.carrier_note`` reads."""
    inner = getattr(channel, "inner", None)
    if isinstance(inner, Channel):
        return {"inner": doppler_config(inner)}
    hz = channel.doppler_carrier_hz
    return {} if hz is None else {"carrier_hz": float(hz)}


_DEFERRED = threading.local()


def require(flag: torch.Tensor, message: str | Callable[[], str]) -> None:
    """Raise ``ValueError(message)`` unless the 0-dim bool ``flag`` holds: at once (reading a
    device flag waits for the device), or inside ``deferred_checks`` when the block ends.
    ``message`` may be a callable, called only when the check fails (e.g. to name a value that
    would take a host sync to read)."""
    queue = getattr(_DEFERRED, "queue", None)
    if queue is None:
        if not bool(flag):
            raise ValueError(_text(message))
    else:
        queue.append((flag.reshape(()), message))


def _text(message: str | Callable[[], str]) -> str:
    return message() if callable(message) else message


@contextmanager
def deferred_checks() -> Iterator[None]:
    """Within the block, the channel's input checks (``require``: finite symbols, finite SNRs)
    queue their flags on the device instead of reading each one, a host sync per call; leaving
    the block reads them all at once and raises the first failed check's ``ValueError``. If the
    block itself raised (e.g. on values a failed check let through), that error becomes the
    check's cause. Nested blocks leave the reading to the outermost one."""
    if getattr(_DEFERRED, "queue", None) is not None:
        yield
        return
    queue: list[tuple[torch.Tensor, str | Callable[[], str]]] = []
    _DEFERRED.queue = queue
    try:
        yield
    except Exception as exc:  # (Ctrl-C and exits go through untouched)
        _DEFERRED.queue = None
        _raise_first_failed(queue, cause=exc)
        raise
    finally:
        _DEFERRED.queue = None
    _raise_first_failed(queue)


def _raise_first_failed(
    queue: list[tuple[torch.Tensor, str | Callable[[], str]]], cause: BaseException | None = None
) -> None:
    if not queue:
        return
    device = queue[0][0].device
    held = torch.stack([flag.to(device) for flag, _ in queue]).tolist()  # one host sync
    for ok, (_, message) in zip(held, queue, strict=True):
        if not ok:
            raise ValueError(_text(message)) from cause


def check_symbols(x: torch.Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a finite complex ``[B, n]`` tensor."""
    if not torch.is_complex(x):
        raise ValueError(f"channel input '{name}' must be complex, got dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"channel input '{name}' must have shape [B, n], got {tuple(x.shape)}")
    if x.numel():
        require(_finite(x), f"channel input '{name}' contains NaN or Inf symbols")


_FINITE = threading.local()


def _finite(x: torch.Tensor) -> torch.Tensor:
    """0-dim bool: every value of ``x`` finite. NaN reaches both extremes and ±inf one of them:
    one read of ``x``, where ``isfinite``'s composite (abs, eq, ne, and) passes over it four
    times. Kept for the next call on the same, unwritten tensor (``TensorMemo``): a sweep sends
    one tensor of symbols at its ``K`` SNRs (``v2x.condition_streams``), read once, not ``K``
    times."""
    memo = getattr(_FINITE, "memo", None)
    if memo is None:
        memo = _FINITE.memo = TensorMemo()
    return memo.get(
        [x], lambda: torch.isfinite(torch.stack(torch.aminmax(torch.view_as_real(x)))).all()
    )


def snr_db_to_noise_variance(
    snr_db: torch.Tensor | float, batch: int, device: torch.device
) -> torch.Tensor:
    """``[B]`` float32 noise variance per complex symbol for unit-energy symbols: 10^(−snr_db/10).

    ``snr_db`` may be a scalar (same SNR for the whole batch) or a ``[B]`` tensor, each value
    within ``±SNR_LIMIT_DB`` (``v2x.channels.radio``: beyond it float32 noise variances overflow
    or vanish); ``ValueError`` naming the value and the range otherwise (NaN, ±inf included).
    """
    snr = torch.as_tensor(snr_db, dtype=torch.float32, device=device)
    if snr.dim() > 1 or (snr.dim() == 1 and snr.shape[0] not in (1, batch)):
        raise ValueError(
            f"channel parameter 'snr_db' must be a scalar or have shape [{batch}], "
            f"got {tuple(snr.shape)}"
        )
    require(snr.abs().le(SNR_LIMIT_DB).all(), lambda: _snr_message(snr))
    no = torch.pow(10.0, -snr.reshape(-1) / 10.0)
    return no.expand(batch).contiguous() if no.shape[0] != batch else no


def _snr_message(snr: torch.Tensor) -> str:
    """``snr_range_message`` naming the first value of ``snr`` outside ``±SNR_LIMIT_DB``."""
    flat = snr.reshape(-1).detach().cpu()
    bad = flat[~flat.abs().le(SNR_LIMIT_DB)]
    return snr_range_message("channel", "snr_db", float(bad[0]) if bad.numel() else flat.tolist())


def _as_err_var(err_var: torch.Tensor | float | None, like: torch.Tensor) -> torch.Tensor:
    if err_var is None:
        return torch.zeros((), dtype=torch.float32, device=like.device)
    return torch.as_tensor(err_var, dtype=torch.float32, device=like.device)


EQUALIZERS = ("zf", "mmse", "mmse_biased")


def equalize(
    y: torch.Tensor, state: ChannelState, method: str = "mmse"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-tap equalisation with the receiver's CSI (``y = h x + n``, ``h = ĥ + e``).

    With ``σe² = state.err_var`` (0 for perfect CSI), ``s = no + σe²`` and unit symbol energy:

    * ``"mmse"`` (default, Sionna's ``lmmse_equalizer`` convention): the *unbiased* LMMSE
      estimate and its effective noise, ``x̂ = y / ĥ``, ``no_eff = s / |ĥ|² = 1 / SINR``; what a
      QAM demapper (LLRs) and an effective-SNR mapping expect. For one tap it coincides with ZF;
      it is also what Sionna's OFDM ``LMMSEEqualizer`` returns per resource element.
    * ``"zf"``: ``x̂ = y / ĥ``, ``no_eff = s / |ĥ|²`` (kept as its own name for clarity).
    * ``"mmse_biased"``: the linear MMSE estimate itself, ``x̂ = ĥ* y / (|ĥ|² + s)`` (shrunk
      towards 0), with ``no_eff = E|x̂ − x|² = s / (|ĥ|² + s)``, its mean-squared error: for
      learned decoders and MSE oracles (do not feed it to a demapper as if it were unbiased).

    If the channel already equalised (``state.equalized``), ``y`` and ``state.no_eff`` pass
    through unchanged (``mmse_biased`` then applies the scalar shrink ``1/(1 + no_eff)``).

    Args:
        y: ``[B, n]`` complex64 received symbols.
        state: the channel's state; uses ``h_hat`` (falls back to ``h``) and ``err_var``.
        method: ``"mmse"``, ``"zf"`` or ``"mmse_biased"``.

    Returns:
        x_hat: ``[B, n]`` complex64 equalised symbols (0 where erased).
        no_eff: ``[B, n]`` float32 effective noise variance of ``x_hat`` per symbol
            (``inf`` where erased).
    """
    if method not in EQUALIZERS:
        raise ValueError(
            f"equalize: unknown method {method!r}; valid choices: {', '.join(EQUALIZERS)}"
        )
    no = state.no.to(y.device).reshape(-1, 1)
    h = state.csi
    if state.equalized:
        if state.no_eff is None:
            raise ValueError("equalize: state.equalized is True but state.no_eff is None")
        x_hat, no_eff = y, state.no_eff.expand(y.shape)
        if method == "mmse_biased":
            x_hat, no_eff = x_hat / (1 + no_eff), no_eff / (1 + no_eff)
    elif h is None:
        x_hat, no_eff = y, no.expand(y.shape).clone()
        if method == "mmse_biased":
            x_hat, no_eff = x_hat / (1 + no_eff), no_eff / (1 + no_eff)
    else:
        ev = _as_err_var(state.err_var, y)
        ev = ev.reshape(-1, 1) if ev.dim() == 1 else ev
        noise = no + ev
        power = h.real.square() + h.imag.square()
        if method == "mmse_biased":
            denom = power + noise
            x_hat = h.conj() * y / denom
            no_eff = (noise / denom).expand(y.shape)
        else:
            safe = torch.where(power > 1e-12, h, torch.full_like(h, 1e-6))
            x_hat = y / safe
            no_eff = (noise / power.clamp_min(1e-12)).expand(y.shape)
    no_eff = no_eff.to(torch.float32)
    if state.erased is not None:
        x_hat = torch.where(state.erased, torch.zeros_like(x_hat), x_hat)
        no_eff = torch.where(state.erased, torch.full_like(no_eff, float("inf")), no_eff)
    return x_hat, no_eff
