"""DeepJSCC's bandwidth-ratio rule (``v2x.semcom.deepjscc``): the valid ratios, the channel uses
of a ``[C, H, W]`` map at a ratio (whole symbols or whole latent channels), the latent's size,
the ratio grid, and the ``[B, 2]`` conditioning input (SNR, ratio) of the networks.

``DeepJSCCRatio`` is a part of ``DeepJSCCCodec``; shapes and units as there.
"""

from __future__ import annotations

import math

import torch

from v2x.semcom.base import check_features

#: Default sweep range of the bandwidth-ratio knob (channel uses per real source value).
MIN_RATIO = 1.0 / 512.0
MAX_RATIO = 1.0 / 4.0
_RATIO_TOL = 1e-9


def _per_batch(
    value: torch.Tensor | float, batch: int, name: str, device: torch.device
) -> torch.Tensor:
    """``[B]`` float32 from a scalar, ``[1]`` or ``[B]`` tensor."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device).reshape(-1)
    if t.numel() == 1:
        return t.expand(batch).clone()
    if t.numel() != batch:
        raise ValueError(
            f"deepjscc: '{name}' must be a scalar or have {batch} entries, got {t.numel()}"
        )
    return t


class DeepJSCCRatio:
    """The ratio rule of ``DeepJSCCCodec`` (its ``check_ratio``, ``latent_hw``,
    ``channel_uses_for``, ``ratio_grid``, ...)."""

    def check_ratio(self, ratio: float) -> float:
        """Return ``ratio`` as float or raise ``ValueError`` naming the valid range."""
        r = float(ratio)
        lo, hi = self.min_ratio, self.max_ratio
        if (
            not math.isfinite(r)
            or r <= 0.0
            or r > 1.0
            or not (lo * (1 - 1e-6) <= r <= hi * (1 + 1e-6))
        ):
            raise ValueError(
                f"deepjscc: 'bandwidth_ratio' = {ratio} is outside the valid range "
                f"[{lo:g}, {hi:g}] (1/{1 / lo:g} … 1/{1 / hi:g}) channel uses per real feature value"
            )
        return r

    def latent_hw(self, height: int, width: int) -> tuple[int, int]:
        """Latent spatial size ``(H', W') = (ceil(H/s), ceil(W/s))``."""
        return math.ceil(height / self.factor), math.ceil(width / self.factor)

    def channel_uses_for(self, shape: tuple[int, int, int], ratio: float) -> int:
        """Complex channel uses for one ``[C, H, W]`` map at ``ratio`` (the hand-computable rule).

        ``symbol``: ``max(1, round(ρ·C·H·W))``; ``channel``: ``k·H'·W'`` with
        ``k = max(1, round(ρ·C·H·W / (H'·W')))`` (round half up). Raises ``ValueError`` if the
        latent (``K_max·H'·W'`` symbols) cannot hold that many.
        """
        ratio = self.check_ratio(ratio)
        c, h, w = shape
        n = c * h * w
        hp, wp = self.latent_hw(h, w)
        capacity = self.latent_channels * hp * wp
        if self.granularity == "symbol":
            uses = max(1, math.floor(ratio * n + 0.5))
        else:
            k = max(1, math.floor(ratio * n / (hp * wp) + 0.5))
            uses = k * hp * wp
        if uses > capacity:
            raise ValueError(
                f"deepjscc: 'bandwidth_ratio' = {ratio:g} needs {uses} channel uses but the latent "
                f"of a {c}x{h}x{w} map holds {capacity} (max ratio {capacity / n:g})"
            )
        return uses

    def _context(self, snr_db: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
        lo, hi = self.snr_range_db
        c_snr = (snr_db - 0.5 * (lo + hi)) / (0.5 * (hi - lo))
        l_lo, l_hi = math.log2(self.min_ratio), math.log2(self.max_ratio)
        span = max(l_hi - l_lo, 1.0)
        c_ratio = (torch.log2(ratio.clamp_min(1e-12)) - 0.5 * (l_lo + l_hi)) / (0.5 * span)
        return torch.stack([c_snr, c_ratio], dim=1).to(torch.float32)

    def ratio_grid(self) -> list[float]:
        """Powers of two from ``min_ratio`` to ``max_ratio`` (both ends included)."""
        lo, hi = math.log2(self.min_ratio), math.log2(self.max_ratio)
        grid = [2.0**e for e in range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1)]
        return sorted({self.min_ratio, *grid, self.max_ratio})

    def _check_input(self, features: torch.Tensor) -> None:
        check_features(features)
        if features.shape[1] != self.in_channels:
            raise ValueError(
                f"deepjscc: 'features' must have {self.in_channels} channels ([B, "
                f"{self.in_channels}, H, W]), got {tuple(features.shape)}"
            )

    def _uses_per_item(
        self, shape: tuple[int, int, int], ratio: torch.Tensor | float, batch: int, device
    ) -> torch.Tensor:
        r = torch.as_tensor(ratio, dtype=torch.float64).reshape(-1)
        if r.numel() == 1:
            uses = self.channel_uses_for(shape, float(r))
            return torch.full((batch,), uses, dtype=torch.long, device=device)
        if r.numel() != batch:
            raise ValueError(
                f"deepjscc: 'ratio' must be a scalar or have {batch} entries, got {r.numel()}"
            )
        return torch.tensor(
            [self.channel_uses_for(shape, float(v)) for v in r], dtype=torch.long, device=device
        )

    def _sent_channels(self, symbols: int, hp: int, wp: int) -> int:
        """Complex latent channels that hold the first ``symbols`` of the channel-major
        sequence (at least 1, at most ``K``)."""
        return min(max(-(-symbols // (hp * wp)), 1), self.latent_channels)
