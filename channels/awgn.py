"""Additive white Gaussian noise, via Sionna's ``AWGN`` block or a fused torch path."""

from __future__ import annotations

import torch

from v2x.channels.base import CHANNELS, Channel, ChannelState, check_symbols, snr_db_to_noise_variance


@CHANNELS.register("awgn")
class AWGNChannel(Channel):
    """y = x + n, n ~ CN(0, no), no = 10^(−snr_db/10) for unit-energy symbols.

    Args:
        backend: ``"sionna"`` (``sionna.phy.channel.AWGN``) or ``"torch"`` (same law, one fused
            ``randn`` on the input's device; what sweeps use).
        validate: check the input for NaN/Inf (a device sync; off in hot loops).
    """

    def __init__(self, backend: str = "torch", validate: bool = True) -> None:
        super().__init__()
        if backend not in ("sionna", "torch"):
            raise ValueError(f"awgn: unknown backend {backend!r}; valid choices: sionna, torch")
        self.backend = backend
        self.validate = validate
        self._sionna_block = None

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor) -> tuple[torch.Tensor, ChannelState]:
        if self.validate:
            check_symbols(x)
        no = snr_db_to_noise_variance(snr_db, x.shape[0], x.device)
        if self.backend == "sionna":
            if self._sionna_block is None:
                from sionna.phy.channel import AWGN

                device = str(x.device) if x.device.type != "cuda" else f"cuda:{x.device.index or 0}"
                self._sionna_block = AWGN(device=device)
            y = self._sionna_block(x, no.reshape(-1, 1))
        else:
            noise = torch.randn(*x.shape, 2, device=x.device, dtype=torch.float32)
            noise = torch.view_as_complex(noise) * torch.sqrt(no / 2.0).reshape(-1, 1)
            y = x + noise.to(x.dtype)
        return y, ChannelState(no=no)
