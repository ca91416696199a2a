"""Link state: what a link model says about one transmitter → receiver link."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LinkState:
    """Per-link radio conditions for a batch of ``L`` links (one entry per transmission).

    Attributes:
        snr_db: ``[L]`` float32 average Es/N0 at the receiver in dB.
        bandwidth_hz: channel bandwidth in Hz (symbol rate = bandwidth for one complex use/s/Hz).
        distance_m: ``[L]`` float32 3D distance, or ``None`` where no geometry exists.
        path_loss_db: ``[L]`` float32 or ``None``.
        los: ``[L]`` bool line-of-sight or ``None``.
        extra: model-specific fields (shadowing, blockage loss, …).
    """

    snr_db: torch.Tensor
    bandwidth_hz: float = 20e6
    distance_m: torch.Tensor | None = None
    path_loss_db: torch.Tensor | None = None
    los: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_snr(
        cls, snr_db: torch.Tensor | float, batch: int | None = None, **kwargs
    ) -> LinkState:
        snr = torch.as_tensor(snr_db, dtype=torch.float32)
        if snr.dim() == 0:
            snr = snr.expand(batch or 1).clone()
        return cls(snr_db=snr, **kwargs)

    @property
    def num_links(self) -> int:
        return int(self.snr_db.shape[0])

    def capacity_bits_per_use(self) -> torch.Tensor:
        """``[L]`` Shannon capacity log2(1 + snr) in bits per complex channel use."""
        return torch.log2(1.0 + torch.pow(10.0, self.snr_db / 10.0))
