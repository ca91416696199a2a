"""The channel interface: complex symbols in, received symbols and channel state out.

Shapes follow Sionna's habit of documenting every axis: a batch of ``B`` independent
transmissions (links × conditions), each ``n`` complex channel uses long.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from v2x.registry import Registry


@dataclass
class ChannelState:
    """What the receiver knows (and what was true) after a channel.

    Attributes:
        no: ``[B]`` float32 noise variance per complex symbol (the transmit energy per symbol
            ``Es`` is 1, so ``snr = 1 / no``).
        h: ``[B, n]`` or ``[B, 1]`` complex64 true channel gains (``None`` for AWGN: h = 1).
        h_hat: like ``h``, the receiver's estimate (``None``: perfect CSI).
        erased: ``[B, n]`` bool, True where the symbol never arrived (lost packet), or ``None``.
    """

    no: torch.Tensor
    h: torch.Tensor | None = None
    h_hat: torch.Tensor | None = None
    erased: torch.Tensor | None = None

    def with_erasures(self, erased: torch.Tensor) -> ChannelState:
        merged = erased if self.erased is None else (self.erased | erased)
        return replace(self, erased=merged)


class Channel(nn.Module):
    """Base class. ``forward(x, snr_db) -> (y, state)``.

    Args (forward):
        x: ``[B, n]`` complex64 channel input with average energy 1 per symbol.
        snr_db: ``[B]`` (or scalar) float, Es/N0 in dB per transmission.

    Returns:
        y: ``[B, n]`` complex64 received symbols (not equalised).
        state: ``ChannelState``.

    Channels are differentiable with respect to ``x``.
    """

    def forward(  # pragma: no cover - interface
        self, x: torch.Tensor, snr_db: torch.Tensor
    ) -> tuple[torch.Tensor, ChannelState]:
        raise NotImplementedError


CHANNELS: Registry[Channel] = Registry("channel")


def check_symbols(x: torch.Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a finite complex ``[B, n]`` tensor."""
    if not torch.is_complex(x):
        raise ValueError(f"channel input '{name}' must be complex, got dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"channel input '{name}' must have shape [B, n], got {tuple(x.shape)}")
    if not bool(torch.isfinite(torch.view_as_real(x)).all()):
        raise ValueError(f"channel input '{name}' contains NaN or Inf symbols")


def snr_db_to_noise_variance(snr_db: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
    """``[B]`` float32 noise variance per complex symbol for unit-energy symbols: 10^(−snr_db/10)."""
    snr = torch.as_tensor(snr_db, dtype=torch.float32, device=device)
    if not bool(torch.isfinite(snr).all()):
        raise ValueError("channel parameter 'snr_db' must be finite")
    return torch.pow(10.0, -snr / 10.0).expand(batch).contiguous() if snr.dim() == 0 else torch.pow(
        10.0, -snr / 10.0
    )


def equalize(y: torch.Tensor, state: ChannelState, method: str = "mmse") -> tuple[torch.Tensor, torch.Tensor]:
    """One-tap equalisation with the receiver's CSI.

    Args:
        y: ``[B, n]`` complex64 received symbols.
        state: the channel's state; uses ``h_hat`` (falls back to ``h``).
        method: ``"zf"`` (y / ĥ) or ``"mmse"`` (ĥ* y / (|ĥ|² + no)).

    Returns:
        x_hat: ``[B, n]`` complex64 equalised symbols (0 where erased).
        no_eff: ``[B, n]`` float32 effective noise variance of ``x_hat`` per symbol.
    """
    no = state.no.to(y.device).reshape(-1, 1)
    h = state.h_hat if state.h_hat is not None else state.h
    if h is None:
        x_hat, no_eff = y, no.expand(y.shape).clone()
    elif method == "zf":
        power = h.abs().square().clamp_min(1e-12)
        x_hat = y / h
        no_eff = (no / power).expand(y.shape)
    elif method == "mmse":
        power = h.abs().square()
        x_hat = h.conj() * y / (power + no)
        # Unbiased effective SNR of the MMSE output: |h|^2 / no.
        no_eff = (no / power.clamp_min(1e-12)).expand(y.shape)
    else:
        raise ValueError(f"equalize: unknown method {method!r}; valid choices: zf, mmse")
    if state.erased is not None:
        x_hat = torch.where(state.erased, torch.zeros_like(x_hat), x_hat)
        no_eff = torch.where(state.erased, torch.full_like(no_eff, float("inf")), no_eff)
    return x_hat, no_eff
