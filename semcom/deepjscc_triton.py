"""DeepJSCC's de-standardisation in one Triton kernel (CUDA inference): ``x · std + mean`` per
channel in one pass over the decoded map instead of two (torch's ``mul`` and ``add`` with
per-channel operands, which also take its slower broadcasting kernels). Compiled without FMA
contraction (``enable_fp_fusion=False``), each operation is rounded as torch's separate kernels
round it: the same bits (tested in the interpreter and on CUDA against the torch path). The
output layer's bias stays inside its convolution: cuDNN adds it there, with other bits than a
separate pass.

Imported with ``TRITON_INTERPRET=1`` the kernel runs on CPU tensors (tests).
"""

from __future__ import annotations

import torch

_KERNEL = None
BLOCK = 1024


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        import triton
        import triton.language as tl

        @triton.jit
        def destandardize_kernel(
            x_ptr, out_ptr, std_ptr, mean_ptr, n, C, HW,
            CHANNELS_LAST: tl.constexpr, BLOCK: tl.constexpr,
        ):  # fmt: skip
            offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
            mask = offs < n
            c = offs % C if CHANNELS_LAST else (offs // HW) % C  # [B, H, W, C] / [B, C, H, W]
            x = tl.load(x_ptr + offs, mask=mask, other=0.0)
            s = tl.load(std_ptr + c, mask=mask, other=1.0)
            m = tl.load(mean_ptr + c, mask=mask, other=0.0)
            tl.store(out_ptr + offs, x * s + m, mask=mask)

        _KERNEL = destandardize_kernel
    return _KERNEL


def destandardize(x: torch.Tensor, std: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``x · std + mean`` per channel, rounded as torch rounds its two operations.

    Args:
        x: ``[B, C, H, W]`` float32, dense channels-first or channels-last.
        std, mean: ``[C]`` float32.

    Returns: ``[B, C, H, W]`` float32 in ``x``'s layout.
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
    if x.dtype != torch.float32 or any(t.shape != (c,) for t in (std, mean)):
        raise ValueError(
            f"destandardize: expected float32 x and [{c}] std/mean, got {x.dtype}, "
            f"{[tuple(t.shape) for t in (std, mean)]}"
        )
    out = torch.empty_like(x)  # the same layout
    n = x.numel()
    if n:
        args = (x, out, std.float().contiguous(), mean.float().contiguous(), n, c, h * w)
        _kernel()[(triton.cdiv(n, BLOCK),)](
            *args, CHANNELS_LAST=channels_last, BLOCK=BLOCK, enable_fp_fusion=False
        )
    return out
