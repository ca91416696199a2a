"""The analog codec's receiver in one Triton kernel (CUDA inference): the LMMSE shrink and the
rescale of every received value, ``(y · shrink) · scale``, in one pass over the symbols, the map
written channels-last.

torch takes two passes (a complex multiply by the real shrink, then a real multiply by the
scale) and leaves the map channels-first, where the warp + fusion kernel reads a cell's
channels with a stride of ``H·W`` (310 against 156 µs per frame-condition channels-last on an
H200). The kernel reads the symbols in their order (channel-major pairs), and writes each
channel tile transposed. Each product is rounded as torch rounds it (a complex times a real
``f + 0j`` gives ``a·f`` and ``b·f`` exactly rounded; no addition to contract): the same values
(tested in the interpreter and on CUDA against the torch path).

Imported with ``TRITON_INTERPRET=1`` the kernel runs on CPU tensors (tests).
"""

from __future__ import annotations

import torch

from v2x.common import on_device_of

_KERNEL = None
BLOCK_C = 32
BLOCK_HW = 64


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        import triton
        import triton.language as tl

        @triton.jit
        def receive_kernel(
            y_ptr, shrink_ptr, scale_ptr, out_ptr, C, HW, row_floats,
            BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
        ):  # fmt: skip
            # One [BLOCK_C, BLOCK_HW] tile of one map: read along the cells (the symbols'
            # order), written along the channels ([B, H, W, C] memory).
            row = tl.program_id(2).to(tl.int64)
            c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
            hw = tl.program_id(0) * BLOCK_HW + tl.arange(0, BLOCK_HW)
            m = (c < C)[:, None] & (hw < HW)[None, :]
            src = row * row_floats + c[:, None].to(tl.int64) * HW + hw[None, :]
            y = tl.load(y_ptr + src, mask=m, other=0.0)
            f = tl.load(shrink_ptr + row)
            s = tl.load(scale_ptr + row)
            dst = row * C * HW + hw[None, :].to(tl.int64) * C + c[:, None]
            tl.store(out_ptr + dst, (y * f) * s, mask=m)

        _KERNEL = receive_kernel
    return _KERNEL


def receive(
    y: torch.Tensor,
    shrink: torch.Tensor,
    scale: torch.Tensor,
    shape: torch.Size,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(view_as_real(y) · shrink) · scale`` as ``shape`` maps, channels-last.

    Args:
        y: ``[B, n]`` complex64 received symbols (``n ≥ C·H·W / 2``; the values past ``C·H·W``
            are padding and are not read).
        shrink, scale: ``[B, 1]`` float32 per-map factors (the LMMSE shrink, the transmitter's
            scale).
        shape: ``[B, C, H, W]``.
        out: a ``shape`` float32 channels-last tensor on ``y``'s device to write the maps into
            (``None``: a new one).

    Returns: ``[B, C, H, W]`` float32, channels-last (``torch.channels_last``): ``out`` if given.
    """
    import triton

    b, c, h, w = shape
    if y.dtype != torch.complex64 or y.dim() != 2 or y.shape[0] != b or 2 * y.shape[1] < c * h * w:
        raise ValueError(
            f"analog receive: expected [{b}, >= {c * h * w // 2}] complex64 symbols for maps "
            f"{tuple(shape)}, got {tuple(y.shape)} {y.dtype}"
        )
    yr = torch.view_as_real(y.contiguous()).reshape(b, 2 * y.shape[1])
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, device=y.device,
                          memory_format=torch.channels_last)  # fmt: skip
    elif (out.shape != shape or out.dtype != torch.float32 or out.device != y.device
          or not out.is_contiguous(memory_format=torch.channels_last)):  # fmt: skip
        raise ValueError(
            f"analog receive: 'out' must be a {tuple(shape)} float32 channels-last tensor on "
            f"{y.device}, got {tuple(out.shape)} {out.dtype} strides {out.stride()} on {out.device}"
        )
    if out.numel():
        f = shrink.to(torch.float32).reshape(b).contiguous()
        s = scale.to(torch.float32).reshape(b).contiguous()
        grid = (triton.cdiv(h * w, BLOCK_HW), triton.cdiv(c, BLOCK_C), b)
        with on_device_of(y):
            _kernel()[grid](yr, f, s, out, c, h * w, yr.shape[1], BLOCK_C=BLOCK_C,
                            BLOCK_HW=BLOCK_HW, enable_fp_fusion=False)  # fmt: skip
    return out
