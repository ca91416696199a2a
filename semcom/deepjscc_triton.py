"""DeepJSCC's de-standardisation in one Triton kernel (CUDA inference): ``(x + bias) · std +
mean`` per channel in one pass over the decoded map instead of three (the output convolution's
bias, which torch adds to a cuDNN convolution in an ``add_`` of its own, then torch's ``mul``
and ``add`` with per-channel operands, which also take its slower broadcasting kernels).
Compiled without FMA contraction (``enable_fp_fusion=False``), each operation is rounded as
torch's separate kernels round it: the same bits (tested in the interpreter and on CUDA against
the torch path; a cuDNN convolution and its bias give the same bits in one call or two in the
deterministic mode, H200 2026-12-02).

The codec's layers in CUDA inference take two more such passes: a convolution's bias and the
PReLU after it in one (``bias_prelu_``: torch adds a cuDNN convolution's bias in a broadcasting
pass of its own, then runs the PReLU), and an AF module's channel gains with the residual sum
after it in one (``scale_add``: torch's ``x · g`` then ``r + ·``). Each rounds as torch's
separate kernels do, so the maps keep their bits.

Maps stored in a reduced precision (``MAP_DTYPES``: DeepJSCC's ``precision`` option) are read
into float32, computed as above in float32 and rounded once to the stored dtype on the write
(``destandardize``: to the dtype asked for, float32 by default): the torch path of the same
operations on ``x.float()`` followed by one ``.to(dtype)`` gives the same bits.

Imported with ``TRITON_INTERPRET=1`` the kernels run on CPU tensors (tests).
"""

from __future__ import annotations

import functools

import torch

from v2x.common import PRECISION_NAMES, on_device_of, precision_dtype

#: the dtypes of the maps the passes take, one per precision (float32 arithmetic whatever the
#: storage)
MAP_DTYPES = tuple(precision_dtype(name) for name in PRECISION_NAMES)
BLOCK = 1024


@functools.cache
def _kernel():
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
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            x = x + tl.load(bias_ptr + c, mask=mask, other=0.0)
        s = tl.load(std_ptr + c, mask=mask, other=1.0)
        m = tl.load(mean_ptr + c, mask=mask, other=0.0)
        tl.store(out_ptr + offs, x * s + m, mask=mask)  # rounded once to out's dtype

    return destandardize_kernel


@functools.cache
def _layer_kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def bias_prelu_kernel(
        x_ptr, bias_ptr, weight_ptr, n, C, HW,
        CHANNELS_LAST: tl.constexpr, ONE_WEIGHT: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        c = offs % C if CHANNELS_LAST else (offs // HW) % C
        v = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = v + tl.load(bias_ptr + c, mask=mask, other=0.0)
        if ONE_WEIGHT:  # noqa: SIM108 (a constexpr branch: one load compiled)
            a = tl.load(weight_ptr)
        else:
            a = tl.load(weight_ptr + c, mask=mask, other=0.0)
        tl.store(x_ptr + offs, tl.where(v > 0, v, a * v), mask=mask)  # ATen's prelu

    @triton.jit
    def scale_add_kernel(
        x_ptr, gains_ptr, residual_ptr, out_ptr, n, C, HW,
        CHANNELS_LAST: tl.constexpr, HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        c = offs % C if CHANNELS_LAST else (offs // HW) % C
        row = offs // (C * HW)
        y = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        y = y * tl.load(gains_ptr + row * C + c, mask=mask, other=0.0)
        if HAS_RESIDUAL:
            y = tl.load(residual_ptr + offs, mask=mask, other=0.0).to(tl.float32) + y
        tl.store(out_ptr + offs, y, mask=mask)

    return bias_prelu_kernel, scale_add_kernel


@functools.cache
def _standardize_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def standardize_kernel(
        x_ptr, out_ptr, mean_ptr, std_ptr, n, C, H, W, sB, sC, sH, sW, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        c = offs % C  # the output is [B, H, W, C] in memory
        rest = offs // C
        col = rest % W
        rest = rest // W
        src = (rest // H) * sB + c * sC + (rest % H) * sH + col * sW
        v = tl.load(x_ptr + src, mask=mask, other=0.0).to(tl.float32)
        v = v - tl.load(mean_ptr + c, mask=mask, other=0.0)
        s = tl.load(std_ptr + c, mask=mask, other=1.0)
        tl.store(out_ptr + offs, tl.math.div_rn(v, s), mask=mask)  # IEEE, as torch's div

    return standardize_kernel


def standardize(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``(x − mean) / std`` per channel in one pass, written channels-last in ``dtype``.

    Torch's ``x − mean`` then ``/ std`` (each rounded to float32, the division IEEE-rounded as
    torch's) and one rounding to ``dtype``: the same bits as ``((x − m) / s).to(dtype)``, where
    torch takes a pass per operation and a third for the cast (a broadcasting subtraction that
    also changes the layout runs at a fraction of the copy bandwidth).

    Args:
        x: ``[B, C, H, W]`` float32 of any strides.
        mean, std: ``[C]`` float32.
        dtype: a ``MAP_DTYPES`` dtype of the result.

    Returns: ``[B, C, H, W]`` of ``dtype``, channels-last.
    """
    import triton

    b, c, h, w = x.shape
    if x.dtype != torch.float32 or dtype not in MAP_DTYPES or any(
        t.shape != (c,) for t in (mean, std)
    ):  # fmt: skip
        raise ValueError(
            f"standardize: expected float32 x, [{c}] mean/std and a float32/float16/bfloat16 "
            f"result, got {x.dtype}, {tuple(mean.shape)}/{tuple(std.shape)}, {dtype}"
        )
    out = torch.empty(x.shape, dtype=dtype, device=x.device, memory_format=torch.channels_last)
    n = out.numel()
    if n:
        with on_device_of(x):
            _standardize_kernel()[(triton.cdiv(n, BLOCK),)](
                x, out, mean.float().contiguous(), std.float().contiguous(), n, c, h, w,
                *x.stride(), BLOCK=BLOCK, enable_fp_fusion=False,
            )  # fmt: skip
    return out


def _channels_last(x: torch.Tensor, name: str) -> bool:
    """Whether the 4-D ``x`` is dense channels-last (``False``: dense channels-first); refuses
    any other layout by name."""
    if x.is_contiguous():
        return False
    if x.is_contiguous(memory_format=torch.channels_last):
        return True
    raise ValueError(
        f"{name}: x must be dense channels-first or channels-last, got strides {x.stride()} for "
        f"shape {tuple(x.shape)}"
    )


def bias_prelu_(x: torch.Tensor, bias: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """In place: ``v = x + bias`` per channel, then ATen's PReLU ``v > 0 ? v : weight · v``.

    Args:
        x: ``[B, C, H, W]`` of a ``MAP_DTYPES`` dtype (a bias-free convolution's output), dense
            channels-first or channels-last; computed in float32, written back in its dtype.
        bias: ``[C]`` float32.
        weight: the PReLU's ``[C]`` or ``[1]`` float32 slopes.

    Returns: ``x``.
    """
    import triton

    b, c, h, w = x.shape
    channels_last = _channels_last(x, "bias_prelu_")
    if x.dtype not in MAP_DTYPES or bias.shape != (c,) or weight.numel() not in (1, c):
        raise ValueError(
            f"bias_prelu_: expected float32/float16/bfloat16 x, [{c}] bias and [{c}] or [1] weight, got {x.dtype}, "
            f"{tuple(bias.shape)}, {tuple(weight.shape)}"
        )
    n = x.numel()
    if n:
        bias_prelu, _ = _layer_kernels()
        with on_device_of(x):
            bias_prelu[(triton.cdiv(n, BLOCK),)](
                x, bias.float().contiguous(), weight.float().contiguous(), n, c, h * w,
                CHANNELS_LAST=channels_last, ONE_WEIGHT=weight.numel() == 1, BLOCK=BLOCK,
                enable_fp_fusion=False,
            )  # fmt: skip
    return x


def scale_add(
    x: torch.Tensor, gains: torch.Tensor, residual: torch.Tensor | None = None
) -> torch.Tensor:
    """``residual + x · gains`` (``x · gains`` without a residual), per map and channel.

    Args:
        x: ``[B, C, H, W]`` of a ``MAP_DTYPES`` dtype, dense channels-first or channels-last.
        gains: ``[B, C]`` float32.
        residual: ``None``, or of ``x``'s dtype, shape and strides.

    Returns: a new ``[B, C, H, W]`` tensor of ``x``'s dtype and layout (computed in float32).
    """
    import triton

    b, c, h, w = x.shape
    channels_last = _channels_last(x, "scale_add")
    if x.dtype not in MAP_DTYPES or gains.shape != (b, c):
        raise ValueError(
            f"scale_add: expected float32/float16/bfloat16 x and [{b}, {c}] gains, got {x.dtype}, "
            f"{tuple(gains.shape)}"
        )
    if residual is not None and (residual.shape, residual.stride(), residual.dtype) != (
        x.shape, x.stride(), x.dtype,
    ):  # fmt: skip
        raise ValueError(
            f"scale_add: 'residual' must be {x.dtype} with x's shape {tuple(x.shape)} and strides "
            f"{x.stride()}, got {tuple(residual.shape)} {residual.stride()} {residual.dtype}"
        )
    out = torch.empty_like(x)
    n = x.numel()
    if n:
        _, scale_add_k = _layer_kernels()
        with on_device_of(x):
            scale_add_k[(triton.cdiv(n, BLOCK),)](
                x, gains.float().contiguous(), x if residual is None else residual, out, n, c,
                h * w, CHANNELS_LAST=channels_last, HAS_RESIDUAL=residual is not None,
                BLOCK=BLOCK, enable_fp_fusion=False,
            )  # fmt: skip
    return out


def destandardize(
    x: torch.Tensor,
    std: torch.Tensor,
    mean: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(x + bias) · std + mean`` per channel, rounded as torch rounds its operations.

    Computed in float32 (the same bits as torch's float32 ``x.float() + bias``, ``· std``,
    ``+ mean``) and rounded once to ``dtype`` on the write: a float16 / bfloat16 result has the
    bits of torch's float32 result ``.to(dtype)``.

    Args:
        x: ``[B, C, H, W]`` of a ``MAP_DTYPES`` dtype, dense channels-first or channels-last
            (read into float32).
        std, mean: ``[C]`` float32.
        bias: ``[C]`` float32 added first (a convolution's bias), or ``None``.
        out: a tensor of ``dtype`` with ``x``'s shape, strides and device to write into
            (``None``: a new one).
        dtype: a ``MAP_DTYPES`` dtype of the result (float32, float16 or bfloat16).

    Returns: ``[B, C, H, W]`` of ``dtype`` in ``x``'s layout: ``out`` if given.
    """
    import triton

    b, c, h, w = x.shape
    channels_last = _channels_last(x, "destandardize")
    per_channel = (std, mean) if bias is None else (std, mean, bias)
    if x.dtype not in MAP_DTYPES or dtype not in MAP_DTYPES or any(
        t.shape != (c,) for t in per_channel
    ):  # fmt: skip
        raise ValueError(
            f"destandardize: expected float32/float16/bfloat16 x and result and [{c}] "
            f"std/mean/bias, got {x.dtype}, {dtype}, {[tuple(t.shape) for t in per_channel]}"
        )
    if out is None:
        out = torch.empty_like(x, dtype=dtype)  # the same layout
    elif (out.shape, out.stride(), out.dtype, out.device) != (x.shape, x.stride(), dtype,
                                                               x.device):  # fmt: skip
        raise ValueError(
            f"destandardize: 'out' must be {dtype} with x's shape {tuple(x.shape)} and strides "
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
