"""DeepJSCC's training (``v2x.semcom.deepjscc``): the differentiable encode → channel →
equalise → decode with packet erasures (``forward_train``), the running feature statistics, the
standardised MSE, and the end-to-end training loop ``train_reconstruction``.

``DeepJSCCTraining`` is a part of ``DeepJSCCCodec``; shapes and units as there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

from v2x.channels.base import Channel, equalize
from v2x.semcom.deepjscc_ratio import _per_batch

if TYPE_CHECKING:
    from v2x.semcom.deepjscc import DeepJSCCCodec


class DeepJSCCTraining:
    """The training side of ``DeepJSCCCodec`` (its ``forward_train``, ``standardized_mse``,
    ``update_feature_stats``, ``default_channel``)."""

    @torch.no_grad()
    def update_feature_stats(self, features: torch.Tensor, momentum: float = 0.05) -> None:
        """EMA of the per-channel mean/std of ``features [B, C, H, W]`` (first call: set)."""
        if features.shape[0] == 0:
            return
        mean = features.mean(dim=(0, 2, 3))
        std = features.std(dim=(0, 2, 3), unbiased=False).clamp_min(1e-6)
        if not bool(self.stats_ready):
            self.feat_mean.copy_(mean)
            self.feat_std.copy_(std)
            self.stats_ready.fill_(True)
        else:
            self.feat_mean.lerp_(mean, momentum)
            self.feat_std.lerp_(std, momentum)

    @property
    def symbols_per_packet(self) -> int:
        """Complex symbols per packet: ``floor((mtu − header)·8 / onair_bits_per_symbol)``."""
        return max(1, (self.mtu_bytes - self.header_bytes) * 8 // self.onair_bits_per_symbol)

    def default_channel(self) -> Channel:
        """A differentiable AWGN channel (``v2x.channels.awgn``, torch backend)."""
        if self._default_channel is None:
            from v2x.channels.awgn import AWGNChannel

            self._default_channel = AWGNChannel(backend="torch", validate=False)
        return self._default_channel

    def forward_train(
        self,
        features: torch.Tensor,
        snr_db: torch.Tensor | float,
        ratio: torch.Tensor | float,
        channel: Channel | None = None,
        erasure_prob: float = 0.0,
        erasure_block: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable encode → channel → equalise → decode.

        In training mode the running feature statistics are updated first.

        Args:
            features: ``[B, C, H, W]`` float32.
            snr_db: scalar or ``[B]`` Es/N0 in dB (fed to the channel and to both AF stacks).
            ratio: scalar or ``[B]`` bandwidth ratios (channel uses per real value).
            channel: any ``v2x.channels`` channel (default: AWGN, torch backend).
            erasure_prob: probability that each block of sent symbols is erased (robustness
                training against lost packets).
            erasure_block: symbols per erased block: ``None`` → ``symbols_per_packet`` (whole
                packets are lost, as with ``v2x.channels`` erasure channels), 1 → i.i.d. symbols.

        Returns:
            reconstruction ``[B, C, H, W]`` float32 and channel_uses ``[B]`` float64.
        """
        self._check_input(features)
        b, c, h, w = features.shape
        if self.training:
            self.update_feature_stats(features)
        uses = self._uses_per_item((c, h, w), ratio, b, features.device)
        snr = _per_batch(snr_db, b, "snr_db", features.device)
        z, mask, realised = self._encode_symbols(features.to(torch.float32), snr, uses)
        channel = channel if channel is not None else self.default_channel()
        y, state = channel(z, snr)
        if erasure_prob > 0.0:
            block = self.symbols_per_packet if erasure_block is None else int(erasure_block)
            blocks = -(-z.shape[1] // max(block, 1))
            lost = torch.rand(b, blocks, device=z.device) < erasure_prob
            erased = lost.repeat_interleave(max(block, 1), dim=1)[:, : z.shape[1]]
            state = state.with_erasures(erased)
        x_hat, _ = equalize(y, state, self.equalizer)
        x_hat = torch.where(mask, x_hat, torch.zeros_like(x_hat))
        dec_snr = self._decoder_snr_db(snr, y, state, mask)
        out = self._decode_symbols(x_hat, dec_snr, realised, (c, h, w))
        return out, uses.to(torch.float64)

    def standardized_mse(
        self, reconstruction: torch.Tensor, features: torch.Tensor
    ) -> torch.Tensor:
        """Scalar MSE in standardised units (each channel weighted by 1/std²)."""
        return (self._standardize(reconstruction) - self._standardize(features)).square().mean()


def train_reconstruction(
    codec: DeepJSCCCodec,
    feature_iter: Iterable[torch.Tensor],
    channel: Channel | None = None,
    snr_range_db: tuple[float, float] = (-10.0, 30.0),
    ratio_choices: list[float] | None = None,
    steps: int = 1000,
    lr: float = 1e-3,
    device: str | torch.device = "cpu",
    erasure_prob_max: float = 0.1,
    erasure_block: int | None = None,
) -> list[float]:
    """Train ``codec`` end to end through ``channel`` with feature-reconstruction MSE.

    Each step draws a batch from ``feature_iter`` (restarted when exhausted), an SNR per map
    uniformly in ``snr_range_db``, a ratio per map from ``ratio_choices`` (default:
    ``codec.ratio_grid()``) and a packet-erasure probability uniform in ``[0, erasure_prob_max]``
    (blocks of ``erasure_block`` symbols, default one packet; see ``forward_train``), so that the
    decoder learns to live with lost packets.
    The loss is ``codec.standardized_mse``. Seed torch's global RNG beforehand for repeatable
    runs. The codec is left in eval mode on ``device``.

    Returns:
        the loss of every step.
    """
    if steps < 0 or lr <= 0:
        raise ValueError(f"train_reconstruction: need steps ≥ 0 and lr > 0, got {steps}, {lr}")
    choices = torch.tensor(ratio_choices or codec.ratio_grid(), dtype=torch.float64)
    for r in choices.tolist():
        codec.check_ratio(r)
    lo, hi = (float(v) for v in snr_range_db)
    codec.to(device).train()
    if channel is not None:
        channel.to(device)
    optimizer = torch.optim.Adam(codec.parameters(), lr=lr)
    iterator = iter(feature_iter)
    losses: list[float] = []
    for _ in range(steps):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(feature_iter)
            try:
                batch = next(iterator)
            except StopIteration:
                raise ValueError("train_reconstruction: 'feature_iter' yields no batches") from None
        x = batch.to(device=device, dtype=torch.float32)
        b = x.shape[0]
        snr = lo + (hi - lo) * torch.rand(b, device=x.device)
        ratio = choices[torch.randint(len(choices), (b,))]
        p_erase = erasure_prob_max * float(torch.rand(()))
        recon, _ = codec.forward_train(
            x, snr, ratio, channel=channel, erasure_prob=p_erase, erasure_block=erasure_block
        )
        loss = codec.standardized_mse(recon, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    codec.eval()
    return losses
