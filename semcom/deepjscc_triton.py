"""DeepJSCC's de-standardisation in one Triton kernel (CUDA inference): ``(x + bias) · std +
mean`` per channel in one pass over the decoded map instead of three (the output convolution's
bias, which torch adds to a cuDNN convolution in an ``add_`` of its own, then torch's ``mul``
and ``add`` with per-channel operands, which also take its slower broadcasting kernels).
Compiled without FMA contraction (``enable_fp_fusion=False``), each operation is rounded as
torch's separate kernels round it: the same bits (tested in the interpreter and on CUDA against
the torch path; a cuDNN convolution and its bias give the same bits in one call or two in the
deterministic mode, H200 2026-12-02).

Imported with ``TRITON_INTERPRET=1`` the kernel runs on CPU tensors (tests).
"""

from __future__ import annotations

import torch

from v2x.common import on_device_of

_KERNEL = None
BLOCK = 1024


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        import triton
        import triton.language as tl

        @triton.jit
        def destandardize_kernel(
            x_ptr, out_ptr, std_ptr, mean_ptr, bias_ptr, n, C, HW,
            CHANNELS_LAST: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr,
        ):  # fmt: skip
            offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
            mask = offs < n
            c = offs % C if CHANNELS_LAST else (offs // HW) % C  # [B, H, W, C] / [B, C, H, W]
            x = tl.load(x_ptr + offs, mask=mask, other=0.0)
            if HAS_BIAS:
                x = x + tl.load(bias_ptr + c, mask=mask, other=0.0)
            s = tl.load(std_ptr + c, mask=mask, other=1.0)
            m = tl.load(mean_ptr + c, mask=mask, other=0.0)
            tl.store(out_ptr + offs, x * s + m, mask=mask)

        _KERNEL = destandardize_kernel
    return _KERNEL


def destandardize(
    x: torch.Tensor,
    std: torch.Tensor,
    mean: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(x + bias) · std + mean`` per channel, rounded as torch rounds its operations.

    Args:
        x: ``[B, C, H, W]`` float32, dense channels-first or channels-last.
        std, mean: ``[C]`` float32.
        bias: ``[C]`` float32 added first (a convolution's bias), or ``None``.
        out: a float32 tensor of ``x``'s shape, strides and device to write into (``None``: a
            new one).

    Returns: ``[B, C, H, W]`` float32 in ``x``'s layout: ``out`` if given.
    """
    import triton

    b, c, h, w = x.shape
    if x.is_contiguous():
        channels_last = False
    elif x.is_contiguous(memory_format=torch.channels_last):
        channels_last = True
    else:
        raise ValueError(
            f"destandardize: x must be dense channels-first or channels-last, got strides "
            f"{x.stride()} for shape {tuple(x.shape)}"
        )
    per_channel = (std, mean) if bias is None else (std, mean, bias)
    if x.dtype != torch.float32 or any(t.shape != (c,) for t in per_channel):
        raise ValueError(
            f"destandardize: expected float32 x and [{c}] std/mean/bias, got {x.dtype}, "
            f"{[tuple(t.shape) for t in per_channel]}"
        )
    if out is None:
        out = torch.empty_like(x)  # the same layout
    elif (out.shape, out.stride(), out.dtype, out.device) != (x.shape, x.stride(), torch.float32,
                                                               x.device):  # fmt: skip
        raise ValueError(
            f"destandardize: 'out' must be float32 with x's shape {tuple(x.shape)} and strides "
            f"{x.stride()} on {x.device}, got {tuple(out.shape)} {out.stride()} {out.dtype} "
            f"on {out.device}"
        )
    n = x.numel()
    if n:
        s, m = std.float().contiguous(), mean.float().contiguous()
        b = s if bias is None else bias.float().contiguous()  # (not read without a bias)
        with on_device_of(x):
            _kernel()[(triton.cdiv(n, BLOCK),)](
                x, out, s, m, b, n, c, h * w, CHANNELS_LAST=channels_last,
                HAS_BIAS=bias is not None, BLOCK=BLOCK, enable_fp_fusion=False,
            )  # fmt: skip
    return out
