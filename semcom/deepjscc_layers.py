"""DeepJSCC's networks (``v2x.semcom.deepjscc``): the convolutional encoder
``[B, C, H, W] → [B, 2K, H', W']`` and decoder ``[B, 2K, H', W'] → [B, C, H'·s, W'·s]``, built
from conv → PReLU → attention-feature (ADJSCC) stages conditioned on ``[B, 2]`` (SNR, ratio); in
CUDA inference their pointwise passes run as Triton kernels (``deepjscc_triton``, the same bits).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from v2x.common import triton_available
from v2x.semcom.deepjscc_triton import MAP_DTYPES


class AFModule(nn.Module):
    """ADJSCC attention-feature module: channel gains from pooled features and the context.

    ``forward(x [B, F, H, W], context [B, D]) -> [B, F, H, W]``,
    gains = sigmoid(FC(ReLU(FC([mean_hw(x) ‖ context])))).
    """

    def __init__(self, channels: int, context_dim: int = 2) -> None:
        super().__init__()
        hidden = max(channels // 4, 8)
        self.mlp = nn.Sequential(
            nn.Linear(channels + context_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x · gains`` (``residual + x · gains`` with a residual of ``x``'s shape). Maps of a
        reduced dtype are pooled in float32 and scaled in float32, the result rounded once to
        their dtype."""
        reduced = x.dtype != self.mlp[0].weight.dtype
        pooled = x.mean(dim=(2, 3), dtype=torch.float32) if reduced else x.mean(dim=(2, 3))
        gains = self.mlp(torch.cat([pooled, context], dim=1))
        if _fused_layers(x) and (residual is None or residual.stride() == x.stride()):
            from v2x.semcom.deepjscc_triton import scale_add

            return scale_add(x, gains, residual)  # one pass, the same bits
        if reduced:
            out = x.float() * gains[:, :, None, None]
            return (out if residual is None else residual.float() + out).to(x.dtype)
        out = x * gains[:, :, None, None]
        return out if residual is None else residual + out


def _fused_layers(x: torch.Tensor) -> bool:
    """The layers' pointwise passes as Triton kernels (``deepjscc_triton.bias_prelu_``,
    ``scale_add``; the same bits as torch's): CUDA inference on dense maps of a ``MAP_DTYPES``
    dtype, outside ``torch.autocast`` (under it the convolutions and the AF modules' MLPs return
    the autocast dtype, which torch's passes take as they are)."""
    if not (x.is_cuda and x.dtype in MAP_DTYPES and x.dim() == 4) or torch.is_grad_enabled():
        return False
    if torch.is_autocast_enabled(x.device.type):
        return False
    dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
    return dense and triton_available()


class _Stage(nn.Module):
    """conv → PReLU → AF."""

    def __init__(self, conv: nn.Module, channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.act = nn.PReLU(channels)
        self.af = AFModule(channels)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.af(self.activated(x), context, residual)

    def activated(self, x: torch.Tensor) -> torch.Tensor:
        """``PReLU(conv(x))``. ``x`` may hold only the first ``c`` of a ``Conv2d``'s input
        channels (the others zero: DeepJSCC's unsent latent channels): the convolution then
        reads those ``c``, the same sum without its zero terms. In CUDA inference the bias and
        the PReLU are one pass (``deepjscc_triton.bias_prelu_``). Maps of a reduced dtype: the
        convolution in that dtype, bias and PReLU in float32 (``_bias_prelu``)."""
        conv = self.conv
        reduced = x.dtype != conv.weight.dtype
        if not isinstance(conv, nn.Conv2d):
            if not reduced:
                return self.act(conv(x))
            pre = F.conv_transpose2d(x, conv.weight.to(x.dtype), None, conv.stride,
                                     conv.padding, conv.output_padding, conv.groups,
                                     conv.dilation)  # fmt: skip
            return _bias_prelu(pre, conv.bias, self.act.weight)
        sliced = x.shape[1] < conv.in_channels
        fuse = _fused_layers(x) and conv.bias is not None
        if not (sliced or fuse or reduced):
            return self.act(conv(x))
        weight = conv.weight[:, : x.shape[1]] if sliced else conv.weight
        pre = F.conv2d(x, weight.to(x.dtype), None if fuse or reduced else conv.bias,
                       conv.stride, conv.padding, conv.dilation, conv.groups)  # fmt: skip
        if reduced:
            return _bias_prelu(pre, conv.bias, self.act.weight)
        if not fuse:
            return self.act(pre)
        from v2x.semcom.deepjscc_triton import bias_prelu_

        return bias_prelu_(pre, conv.bias, self.act.weight)


def _bias_prelu(
    pre: torch.Tensor, bias: torch.Tensor | None, slopes: torch.Tensor
) -> torch.Tensor:
    """``PReLU(pre + bias)`` of a bias-free convolution's reduced-dtype output ``pre [B, C, H,
    W]``, computed in float32 and rounded once to ``pre``'s dtype: in CUDA inference in place
    (``deepjscc_triton.bias_prelu_``), elsewhere the same operations in torch (the same bits)."""
    if bias is None:
        bias = torch.zeros(pre.shape[1], device=pre.device)
    if _fused_layers(pre):
        from v2x.semcom.deepjscc_triton import bias_prelu_

        return bias_prelu_(pre, bias, slopes)
    return F.prelu(pre.float() + bias[:, None, None], slopes.float()).to(pre.dtype)


class _Residual(nn.Module):
    """x + AF(PReLU(conv3x3(x)))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.stage = _Stage(nn.Conv2d(channels, channels, 3, padding=1), channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.stage(x, context, residual=x)


class JSCCEncoder(nn.Module):
    """``[B, C, H, W]`` (standardised, H and W multiples of 2**downsample) → ``[B, 2K, H', W']``."""

    def __init__(
        self, in_channels: int, hidden: int, latent_channels: int, downsample: int
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        channels = in_channels
        for _ in range(downsample):
            stages.append(_Stage(nn.Conv2d(channels, hidden, 5, stride=2, padding=2), hidden))
            channels = hidden
        if downsample == 0:
            stages.append(_Stage(nn.Conv2d(channels, hidden, 3, padding=1), hidden))
        self.stages = nn.ModuleList(stages)
        self.residual = _Residual(hidden)
        self.head = nn.Conv2d(hidden, 2 * latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.from_first(self.context_free(x), context)

    def context_free(self, x: torch.Tensor) -> torch.Tensor:
        """The first stage's convolution and activation ``[B, hidden, H/2, W/2]`` (``H, W``
        without downsampling): the part of the encoder that does not depend on the context."""
        return self.stages[0].activated(x)

    def from_first(
        self, first: torch.Tensor, context: torch.Tensor, channels: int | None = None
    ) -> torch.Tensor:
        """The rest of ``forward`` from ``context_free``'s output.

        ``channels``: compute only the head's first ``channels`` output channels (the latent
        channels a transmission sends: ``[B, channels, H', W']``); ``None``: all ``2K``."""
        x = self.stages[0].af(first, context)
        for stage in self.stages[1:]:
            x = stage(x, context)
        x = self.residual(x, context)
        head = self.head
        whole = channels is None or channels >= head.out_channels
        if x.dtype != head.weight.dtype:  # reduced maps: a float32 latent, its bias in float32
            weight, bias = (head.weight, head.bias) if whole else (
                head.weight[:channels], head.bias[:channels])  # fmt: skip
            pre = F.conv2d(x, weight.to(x.dtype), None, head.stride, head.padding, head.dilation,
                           head.groups)  # fmt: skip
            return pre.float().add_(bias[:, None, None])
        if whole:
            return head(x)
        return F.conv2d(x, head.weight[:channels], head.bias[:channels], head.stride,
                        head.padding, head.dilation, head.groups)  # fmt: skip


class JSCCDecoder(nn.Module):
    """``[B, 2K, H', W']`` (zeros where masked) → ``[B, C, H'·s, W'·s]`` standardised features."""

    def __init__(
        self, out_channels: int, hidden: int, latent_channels: int, downsample: int
    ) -> None:
        super().__init__()
        self.stem = _Stage(nn.Conv2d(2 * latent_channels, hidden, 3, padding=1), hidden)
        self.residual = _Residual(hidden)
        self.ups = nn.ModuleList(
            _Stage(nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1), hidden)
            for _ in range(max(downsample - 1, 0))
        )
        if downsample >= 1:
            self.out = nn.ConvTranspose2d(hidden, out_channels, 4, stride=2, padding=1)
        else:
            self.out = nn.Conv2d(hidden, out_channels, 3, padding=1)

    def forward(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(y, context))

    def body(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Every layer but the output layer: ``[B, hidden, H'·s/2, W'·s/2]`` (``s`` the
        downsampling factor; ``[B, hidden, H', W']`` without downsampling).

        ``y`` may hold only the first ``c < 2K`` latent channels (those a transmission sent;
        the others are zeros): the stem's convolution then reads those ``c`` input channels,
        the same sum without its zero terms (``_Stage.activated``)."""
        x = self.residual(self.stem(y, context), context)
        for up in self.ups:
            x = up(x, context)
        return x


def _transposed_size(layer: nn.ConvTranspose2d, size: Iterable[int]) -> tuple[int, ...]:
    """The output height and width of ``layer`` (no ``output_size``) on an input of ``size``."""
    return tuple(
        (n - 1) * layer.stride[i] - 2 * layer.padding[i] + layer.dilation[i]
        * (layer.kernel_size[i] - 1) + layer.output_padding[i] + 1
        for i, n in enumerate(size)
    )  # fmt: skip
