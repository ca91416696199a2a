"""DeepJSCC's receiver (``v2x.semcom.deepjscc``): equalise, zero what was erased or not sent,
run the decoder conditioned on the link's or the effective SNR, de-standardise (in CUDA
inference one Triton pass, ``deepjscc_triton``), and the SNR gate: the calibrated outage rule
that marks a transmission received below its ratio's threshold as not delivered.

``DeepJSCCReceiver`` is a part of ``DeepJSCCCodec``; shapes and units as there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from v2x.channels.base import ChannelState, equalize
from v2x.channels.effective_sinr import analog_effective_snr_db, receiver_sinr
from v2x.channels.link import LinkState
from v2x.common import triton_available
from v2x.semcom.base import Transmission, decode_target
from v2x.semcom.deepjscc_layers import _transposed_size
from v2x.semcom.deepjscc_ratio import _per_batch
from v2x.semcom.deepjscc_triton import MAP_DTYPES
from v2x.semcom.power import complex_to_real, prefix_mask


class DeepJSCCReceiver:
    """The receiver of ``DeepJSCCCodec`` (its ``decode``, ``decode_blocks``, the gate's
    ``set_gate``, ``gate_open``, ...)."""

    def _output_maps(
        self, hidden: torch.Tensor, h: int, w: int, into: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The decoder's output layer over ``hidden`` (``JSCCDecoder.body``), cropped to
        ``h × w`` and de-standardised: ``[B, C, h, w]`` of ``decoded_dtype`` (float32, or the
        reduced ``precision``'s dtype in CUDA inference).

        In CUDA inference, when nothing is cropped, the transposed output convolution runs
        without its bias and one pass (``deepjscc_triton.destandardize``) adds the bias and
        de-standardises: torch itself adds a cuDNN convolution's bias in a pass of its own
        (``add_``), so these are the same operations in the same order (the same bits in the
        deterministic mode; tested on CUDA), one pass over the maps fewer. That pass writes into
        ``into`` when it has the convolution output's layout (``DECODE_INTO``). ``hidden`` of a
        reduced dtype (``precision``): the convolution in that dtype, then the bias and the
        de-standardisation in float32 (that pass, or the same operations in torch), rounded
        once to ``decoded_dtype`` (that dtype in CUDA inference: the pass writes half the bytes
        and the fusion reads half; elsewhere float32)."""
        layer = self.decoder.out
        reduced = hidden.dtype != layer.weight.dtype
        exact = _output_size(layer, hidden.shape[-2:]) == (h, w)
        if reduced or (
            isinstance(layer, nn.ConvTranspose2d)
            and layer.bias is not None
            and exact
            and self._in_one_pass(hidden)
        ):
            pre = _without_bias(layer, hidden)
            dtype = self.decoded_dtype(pre.device)
            if tuple(pre.shape[-2:]) == (h, w) and self._in_one_pass(pre):
                from v2x.semcom.deepjscc_triton import destandardize

                fits = into is not None and (into.shape, into.stride(), into.dtype) == (
                    pre.shape, pre.stride(), dtype,
                )  # fmt: skip
                out = into if fits else None
                return destandardize(
                    pre, self.feat_std, self.feat_mean, layer.bias, out=out, dtype=dtype
                )
            out = pre[:, :, :h, :w].float()
            if layer.bias is not None:
                out.add_(layer.bias[:, None, None])
            out = out.mul_(self.feat_std[:, None, None]).add_(self.feat_mean[:, None, None])
            return out.to(dtype)  # (float32 but for a cropped map in CUDA inference: rounded once)
        return self._destandardize(layer(hidden)[:, :, :h, :w])

    def _in_one_pass(self, x: torch.Tensor) -> bool:
        """De-standardisation of ``x`` as one Triton pass (``_one_pass_on`` its dtype and
        device)."""
        return self._one_pass_on(x.dtype, x.device)

    def _one_pass_on(self, dtype: torch.dtype, device: torch.device) -> bool:
        """De-standardisation as one Triton pass: CUDA inference on maps of a ``MAP_DTYPES``
        ``dtype`` with float32 statistics, outside ``torch.autocast`` (its output convolution
        would return the autocast dtype)."""
        plain = dtype in MAP_DTYPES and self.feat_std.dtype == torch.float32
        if not (device.type == "cuda" and plain) or torch.is_grad_enabled():
            return False
        if torch.is_autocast_enabled(device.type):
            return False
        return triton_available()

    def decoded_dtype(self, device: torch.device | str) -> torch.dtype:
        """The dtype of the maps ``decode`` and ``decode_blocks`` return on ``device`` now: the
        maps' dtype (``map_dtype``: ``precision``'s) where the de-standardisation runs as one
        Triton pass (CUDA inference: no autograd, no autocast, Triton installed), computed in
        float32 and rounded once to it; float32 everywhere else (the CPU, training, autocast),
        and always at ``precision="fp32"``."""
        dtype = self.map_dtype()
        return dtype if self._one_pass_on(dtype, torch.device(device)) else torch.float32

    def _destandardize(self, x: torch.Tensor) -> torch.Tensor:
        """``x · std + mean`` per channel; in CUDA inference as one pass
        (``deepjscc_triton.destandardize``: the same bits as these two operations); elsewhere
        without autograd in place (``x`` is the output layer's own, fresh result: the same
        bits, no new maps; 3.9× the two operations on the 2-core CPU at 16 × 384 × 128²),
        unless ``x`` is of a narrower dtype than the statistics (under ``torch.autocast``):
        then, as without autocast, the result is float32."""
        dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        if dense and self._in_one_pass(x):
            from v2x.semcom.deepjscc_triton import destandardize

            return destandardize(x, self.feat_std, self.feat_mean)
        std, mean = self.feat_std[None, :, None, None], self.feat_mean[None, :, None, None]
        # a new tensor where autograd keeps x for the product, or where x's dtype is not the
        # result's (autocast's float16/bfloat16 maps: the float32 statistics promote them)
        if torch.result_type(x, std) != x.dtype or (torch.is_grad_enabled() and x.requires_grad):
            return x * std + mean
        return x.mul_(std).add_(mean)

    def _decode_symbols(
        self,
        z: torch.Tensor,
        snr_db: torch.Tensor,
        ratio: torch.Tensor,
        shape: tuple[int, int, int],
        into: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``z [B, k·H'·W']`` (zeros where masked/erased; ``k ≤ K`` leading latent channels,
        the others zero) → features ``[B, C, H, W]`` (``into`` when the last pass could write
        there: ``_output_maps``)."""
        hidden = self._decoder_hidden(z, snr_db, ratio, shape)
        return self._clamped(self._output_maps(hidden, shape[1], shape[2], into), into)

    def _decoder_hidden(
        self, z: torch.Tensor, snr_db: torch.Tensor, ratio: torch.Tensor, shape: tuple[int, ...]
    ) -> torch.Tensor:
        """The decoder's body (all but its output layer) over ``z [B, k·H'·W']``: ``[B, hidden,
        h', w']``, channels-last."""
        _, h, w = shape
        b = z.shape[0]
        hp, wp = self.latent_hw(h, w)
        k = z.shape[1] // (hp * wp)
        # Channels-last (NHWC): cuDNN runs its convolutions so (an NHWC input saves the layout
        # transposes around each layer) and so does oneDNN on the CPU (the output layer 1.7×
        # faster, the same bits); the maps come out NHWC, the layout in which the warp reads a
        # cell's channels at once (the fusion kernel on CUDA, grid_sample 1.8× on the CPU).
        # Latent channel 2j + r is the real (r = 0) or imaginary part of complex channel j:
        # written in one copy, NHWC and in the maps' dtype
        parts = complex_to_real(z).reshape(b, k, hp, wp, 2)
        nhwc = torch.empty((b, hp, wp, k, 2), dtype=self.map_dtype(), device=z.device)
        nhwc.copy_(parts.permute(0, 2, 3, 1, 4))
        latent = nhwc.view(b, hp, wp, 2 * k).permute(0, 3, 1, 2)  # [B, 2k, H', W']
        return self.decoder.body(latent, self._context(snr_db, ratio))

    def _clamped(self, out: torch.Tensor, into: torch.Tensor | None) -> torch.Tensor:
        """The output activation. The clamp is applied at inference only: in training it would
        stop the gradient of every cell predicted below 0 (it can only lower the error of a
        non-negative target)."""
        if self.output_activation == "relu" and not self.training:
            return out.relu_() if out is into else F.relu(out)
        return out

    # ----------------------------------------------------------------- SNR gate
    def gate_threshold_db(self, ratio: torch.Tensor) -> torch.Tensor:
        """``[B]`` gate SNR (dB) at ``ratio [B]``: the larger threshold of the two table ratios
        around it (the table's end value outside its range)."""
        grid = self.gate_ratios.to(ratio.device)
        table = self.gate_snr_db.to(ratio.device)
        r = ratio.to(torch.float64).clamp(grid[0], grid[-1])  # (tensor bounds: no host read)
        hi = torch.searchsorted(grid, r * (1 - 1e-9)).clamp(max=grid.numel() - 1)
        lo = torch.where(grid[hi] > r * (1 + 1e-9), (hi - 1).clamp_min(0), hi)
        return torch.maximum(table[lo], table[hi]).to(torch.float32)

    def set_gate(self, snr_db_per_ratio: dict[float, float]) -> None:
        """Set the gate table: ``{ratio: threshold_db}`` for every ratio of ``gate_ratios``
        (``-inf``: always deliver, ``+inf``: never)."""
        grid = [float(r) for r in self.gate_ratios]
        values = []
        for r in grid:
            match = [v for k, v in snr_db_per_ratio.items() if abs(float(k) - r) <= 1e-9 * r]
            if not match:
                raise ValueError(
                    f"deepjscc.set_gate: no threshold for ratio {r:g}; need one per gate ratio "
                    f"{[f'{g:g}' for g in grid]}"
                )
            values.append(float(match[0]))
        self.gate_snr_db.copy_(torch.tensor(values, dtype=torch.float32))

    def gate_open(self, snr_db: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
        """``[B]`` bool: the receiver keeps the transmission (``snr_db ≥`` threshold)."""
        if not self.snr_gate:
            return torch.ones_like(snr_db, dtype=torch.bool)
        return snr_db.to(torch.float32) >= self.gate_threshold_db(ratio.to(snr_db.device))

    def _decoder_snr_db(
        self,
        link_snr_db: torch.Tensor,
        y: torch.Tensor,
        state: ChannelState,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B]`` SNR in dB fed to the decoder (see ``decoder_snr``).

        ``"effective"``: mean over the arrived (non-erased, sent) symbols of the unbiased
        post-equalisation SNR ``|ĥ|² / (no + σe²)`` (the ZF ``1/no_eff`` of ``equalize``).
        """
        if self.decoder_snr == "link":
            return link_snr_db
        _, no_eff = equalize(y, state, "zf")
        arrived = torch.isfinite(no_eff)
        if mask is not None:
            arrived = arrived & mask
        snr = torch.where(arrived, 1.0 / no_eff.clamp_min(1e-12), torch.zeros_like(no_eff))
        mean = snr.sum(dim=1) / arrived.sum(dim=1).clamp_min(1)
        return 10.0 * torch.log10(mean.clamp_min(1e-3)).to(torch.float32)

    def gate_snr_db_of(self, state: ChannelState, uses: torch.Tensor) -> torch.Tensor | None:
        """``[B]`` SNR (dB) the gate compares over a frequency-selective channel, else ``None``.

        When the channel reports a per-symbol SINR (``state.sinr``: OFDM, estimation error
        included), the gate uses the AWGN-equivalent SNR of the equalised symbols the decoder
        sees, ``1 / mean(1 / SINR)`` over the sent, non-erased symbols
        (``v2x.channels.effective_sinr.analog_effective_snr_db``); the gate table was calibrated
        on channels where that equals the SNR. ``None`` (flat channels): the gate keeps using the
        decoder's SNR, exactly as before.

        Args:
            state: the channel state of the received ``[B, n]`` symbols.
            uses: ``[B]`` symbols each transmission sent (a prefix of its row).
        """
        sinr = receiver_sinr(state)
        if sinr is None:
            return None
        return analog_effective_snr_db(sinr, prefix_mask(uses, sinr.shape[1]))

    def decode(self, received: Transmission, link: LinkState) -> torch.Tensor:
        """Equalise (MMSE by default) with the channel state, zero erasures, run the decoder.

        Returns ``[B, C, H, W]`` features of ``decoded_dtype``: float32, or in CUDA inference
        the reduced ``precision``'s dtype. Written into ``meta[DECODE_INTO]`` when that is a
        channels-last tensor of this shape and dtype (``decode_target``).
        """
        z, snr_db, gate_snr_db, ratio = self._received_latent(received, link)
        shape = received.meta["shape"]
        b = z.shape[0]
        dtype = self.decoded_dtype(z.device)
        into = decode_target(received, (b, *shape), z.device, torch.channels_last, dtype)
        out = self._decode_symbols(z, snr_db, ratio, shape, into)
        keep = self._delivered(snr_db, gate_snr_db, ratio)
        received.meta["delivered"] = self._delivered_cells(keep, shape)
        return self._gated(out, keep, into)

    def decode_blocks(
        self, received: Sequence[Transmission], links: Sequence[LinkState]
    ) -> torch.Tensor:
        """The ``decode`` of each of ``K`` condition blocks (``Codec.codes_blocks_jointly``),
        joined: ``[K·m, C, H, W]`` of ``decoded_dtype`` (float32, or in CUDA inference the
        reduced ``precision``'s dtype), channels-last. The decoder's body runs once over
        the ``K·m`` rows; its output layer (the full-size maps) and the de-standardisation one
        block at a time, into the joined maps (a block's worth of temporaries, not ``K``). Each
        block's ``meta["delivered"]`` is set as ``decode`` sets it, unless the gate kept every
        map of every block: then none is set (every cell arrived)."""
        parts = [self._received_latent(rx, link) for rx, link in zip(received, links)]
        z, snr_db, ratio = (torch.cat([p[i] for p in parts]) for i in (0, 1, 3))
        shape = received[0].meta["shape"]
        keeps = [self._delivered(*p[1:]) for p in parts]
        keep = torch.cat(keeps)
        every = bool(keep.all())  # (read before the decoder is queued: see the module doc)
        if not every:
            for rx, kept in zip(received, keeps):
                rx.meta["delivered"] = self._delivered_cells(kept, shape)
        hidden = self._decoder_hidden(z, snr_db, ratio, shape)
        out = torch.empty((z.shape[0], *shape), dtype=self.decoded_dtype(z.device),
                          device=z.device, memory_format=torch.channels_last)  # fmt: skip
        start = 0
        for zb in (p[0] for p in parts):
            rows = slice(start, start + zb.shape[0])
            start = rows.stop
            into = out[rows]
            block = self._clamped(self._output_maps(hidden[rows], shape[1], shape[2], into), into)
            if block is not into:
                into.copy_(block)
        return self._gated(out, keep, out, every)

    def _received_latent(
        self, received: Transmission, link: LinkState
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``decode``'s receiver up to the decoder: ``(z [B, k·H'·W'] complex64 (zeros where
        masked, erased or not sent), decoder SNR [B] dB, gate SNR [B] dB or None, ratio [B])``."""
        if received.symbols is None:
            raise ValueError("deepjscc: 'received.symbols' is None; an analog codec needs symbols")
        shape = received.meta["shape"]
        y = received.symbols
        b = y.shape[0]
        snr_db = _per_batch(link.snr_db, b, "link.snr_db", y.device)
        uses = received.meta["uses"].to(y.device)
        gate_snr_db = None
        if received.state is not None:
            snr_db = self._decoder_snr_db(snr_db, y, received.state)
            gate_snr_db = self.gate_snr_db_of(received.state, uses)
            y, _ = equalize(y, received.state, self.equalizer)
        if received.mask is not None:
            y = torch.where(received.mask, y, 0.0)
        hp, wp = self.latent_hw(shape[1], shape[2])
        # only the latent channels that hold the received symbols (the rest were not sent)
        n = self._sent_channels(y.shape[1], hp, wp) * hp * wp
        z = torch.zeros(b, n, dtype=torch.complex64, device=y.device)
        z[:, : y.shape[1]] = y.to(torch.complex64)
        z = torch.where(prefix_mask(uses, n), z, 0.0)
        return z, snr_db, gate_snr_db, received.meta["ratio"].to(y.device)

    def _delivered(
        self, snr_db: torch.Tensor, gate_snr_db: torch.Tensor | None, ratio: torch.Tensor
    ) -> torch.Tensor:
        """``[B]`` bool: the gate keeps the map (known before decoding)."""
        return self.gate_open(snr_db if gate_snr_db is None else gate_snr_db, ratio)

    @staticmethod
    def _delivered_cells(keep: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """The gate's ``keep [B]`` per cell of ``shape = (C, H, W)`` maps: ``[B, 1, H, W]``
        bool (``meta["delivered"]``)."""
        b = keep.shape[0]
        return keep.view(b, 1, 1, 1).expand(b, 1, *shape[1:]).contiguous()

    @staticmethod
    def _gated(
        out: torch.Tensor, keep: torch.Tensor, into: torch.Tensor | None, every: bool | None = None
    ) -> torch.Tensor:
        """``out`` with the maps the gate closed (``keep`` False) set to 0 (``every``: whether
        it kept them all, read here when ``None``)."""
        b = out.shape[0]
        if bool(keep.all()) if every is None else every:  # (one flag read saves a pass)
            return out
        if out is into:  # (the same values as the torch.where below)
            return out.masked_fill_(~keep.view(b, 1, 1, 1), 0.0)
        return torch.where(keep.view(b, 1, 1, 1), out, 0.0)


def _output_size(layer: nn.Module, size: Sequence[int]) -> tuple[int, ...] | None:
    """The output height and width of a transposed output ``layer`` (``None`` for another)."""
    return _transposed_size(layer, size) if isinstance(layer, nn.ConvTranspose2d) else None


def _without_bias(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer``'s convolution (``nn.ConvTranspose2d`` or ``nn.Conv2d``) of ``x`` without its
    bias, its weight cast to ``x``'s dtype."""
    weight = layer.weight.to(x.dtype)
    if isinstance(layer, nn.ConvTranspose2d):
        return F.conv_transpose2d(x, weight, None, layer.stride, layer.padding,
                                  layer.output_padding, layer.groups, layer.dilation)  # fmt: skip
    return F.conv2d(x, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
