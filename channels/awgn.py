"""Additive white Gaussian noise, via Sionna's ``AWGN`` block or a fused torch path."""

from __future__ import annotations

import torch

from v2x.channels.awgn_triton import PendingNoise, fused_seed, use_fused
from v2x.channels.base import (
    CHANNELS,
    Channel,
    ChannelState,
    check_symbols,
    snr_db_to_noise_variance,
)
from v2x.channels.sionna_rng import import_sionna, sionna_generator


def _awgn_real(xr: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``xr + scale·N(0, 1)`` on the real view ``[B, n, 2]`` (one randn, one fused addcmul)."""
    return torch.addcmul(xr, torch.randn_like(xr), scale)


_COMPILED: dict[str, object] = {}


def _compiled_awgn_real():
    if "fn" not in _COMPILED:
        _COMPILED["fn"] = torch.compile(_awgn_real, dynamic=True)
    return _COMPILED["fn"]


@CHANNELS.register("awgn")
class AWGNChannel(Channel):
    """y = x + n, n ~ CN(0, no), no = 10^(−snr_db/10) for unit-energy symbols.

    Args:
        backend: ``"sionna"`` (``sionna.phy.channel.AWGN``, its generator seeded from torch's
            per call, see ``sionna_rng``) or ``"torch"`` (same law: one
            ``randn_like`` on the real view of the input and one fused ``addcmul`` on the input's
            device; what sweeps use).
        validate: check the input for NaN/Inf (a device sync; off in hot loops).
        compile: ``torch.compile`` the torch path so that the noise is generated inside the add
            kernel (CUDA only: complex ``torch.compile`` fails on CPU, so it is ignored there).
        fused: on CUDA, when Triton is available and no gradient is needed, draw the noise inside
            one kernel (``v2x.channels.awgn_triton``; ~16 B of traffic per symbol). Seeded from
            torch's CPU generator, so ``torch.manual_seed`` makes it reproducible.
    """

    erases = False  # noise only: every channel use arrives
    defers_noise = True  # on the fused path (CUDA, Triton, no gradient)

    def __init__(
        self,
        backend: str = "torch",
        validate: bool = True,
        compile: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if backend not in ("sionna", "torch"):
            raise ValueError(f"awgn: unknown backend {backend!r}; valid choices: sionna, torch")
        self.backend = backend
        self.validate = validate
        self.compile = bool(compile)
        self.fused = bool(fused)
        self._sionna_block = None

    def forward(
        self, x: torch.Tensor, snr_db: torch.Tensor, defer_noise: bool = False
    ) -> tuple[torch.Tensor, ChannelState]:
        """``defer_noise``: on the fused path, ``x`` itself and the noise's key in
        ``state.pending_noise`` (the draws and the key exactly as without it)."""
        if self.validate:
            check_symbols(x)
        no = snr_db_to_noise_variance(snr_db, x.shape[0], x.device)
        if self.backend == "sionna":
            device = str(x.device) if x.device.type != "cuda" else f"cuda:{x.device.index or 0}"
            if self._sionna_block is None:
                import_sionna()
                from sionna.phy.channel import AWGN

                self._sionna_block = AWGN(device=device)
            with sionna_generator(device):  # Sionna's noise, seeded from torch's generator
                y = self._sionna_block(x, no.reshape(-1, 1))
        elif self.fused and use_fused(x):
            noise = PendingNoise(no, fused_seed())
            if defer_noise:
                return x, ChannelState(no=no, linear_gaussian=True, pending_noise=noise)
            y = noise.added_to(x)
        else:
            xr = torch.view_as_real(x)
            scale = torch.sqrt(no * 0.5).reshape(-1, 1, 1).to(xr.dtype)
            fn = _compiled_awgn_real() if (self.compile and x.is_cuda) else _awgn_real
            y = torch.view_as_complex(fn(xr, scale))
        return y, ChannelState(no=no, linear_gaussian=True)
