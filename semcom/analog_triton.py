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

``receive_noisy`` also adds the AWGN channel's deferred noise (``AWGNChannel(...,
defer_noise=True)``) in the same pass: the channel kernel's normals for the same symbols
(``v2x.channels.awgn_triton``: each program draws whole Philox counters, the pairs of the two
halves of a channel-kernel block), so the received symbols are never written nor read again.
The values of the channel kernel followed by ``receive`` bit for bit in the interpreter; on
CUDA to float32 rounding (the compiled kernels need not contract the noise's multiply-add
alike: not bit for bit on an H100, 2026-12-07), each path deterministic.

``sum_of_squares`` is the transmitter's one read of its maps for their scale: each map's sum of
squares accumulated in float64 from its values as they lie in memory (channels-first or
channels-last), without the float64 copy of the maps that ``torch.linalg.vector_norm(x,
dtype=torch.float64)`` makes first (on an H100 that copy and its reduction took 26.5 µs per
analog frame-condition, 2026-12-07).

Imported with ``TRITON_INTERPRET=1`` the kernels run on CPU tensors (tests).
"""

from __future__ import annotations

import functools

import torch

from v2x.channels.awgn_triton import PendingNoise
from v2x.common import on_device_of

BLOCK_C = 32
BLOCK_HW = 64


@functools.cache
def _kernel():
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

    return receive_kernel


#: ``receive_noisy``'s program: symbols of each half of a channel-kernel block (with their
#: partners of the other half: ``4 · NOISY_PAIRS`` values of each of ``NOISY_BLOCK_C``
#: channels) and warps. H100, 32 maps of 384 x 128 x 128 (``bench_analog_receive.py``, one
#: process, 2026-12-07): 16 x 32 on 4 warps 22.3 µs per map (1.66x the channel kernel then
#: ``receive``), 32 x 32 on 8 23.4 (1.56x), 32 x 32 on 4 30.8 (1.33x), 64 x 64 on 8 49.7 (0.74x)
NOISY_PAIRS = 16
NOISY_BLOCK_C = 32
NOISY_WARPS = 4


@functools.cache
def _noisy_kernel():
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["seed"])  # a new seed never compiles a new kernel
    def noisy_receive_kernel(
        x_ptr, std_ptr, shrink_ptr, scale_ptr, out_ptr, C, HW, seed,
        HALF: tl.constexpr, BLOCK_C: tl.constexpr, PAIRS: tl.constexpr,
    ):  # fmt: skip
        # A channel-kernel block is 2·HALF symbols, 4·HALF values of one channel (HW is a
        # multiple): its symbol i and i + HALF share Philox counter (block·HALF + i, row).
        # Program (window, channel block, row): symbols i of the window's block k of each
        # channel, their counters drawn once, the four values each written channels-last.
        row = tl.program_id(2).to(tl.int64)
        windows: tl.constexpr = HALF // PAIRS
        k = tl.program_id(0) // windows
        i = (tl.program_id(0) % windows) * PAIRS + tl.arange(0, PAIRS)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        block = c.to(tl.int64) * (HW // (4 * HALF)) + k
        n0, n1, n2, n3 = tl.randn4x(seed, (row << 32) + block[:, None] * HALF + i[None, :])
        std = tl.load(std_ptr + row)
        f = tl.load(shrink_ptr + row)
        s = tl.load(scale_ptr + row)
        part = tl.arange(0, 2)[None, None, :]  # (real, imaginary): [BLOCK_C, PAIRS, 2]
        hw = (k * 4 * HALF + 2 * i)[None, :, None] + part
        m = (c < C)[:, None, None] & (hw >= 0)
        src = row * C * HW + c[:, None, None].to(tl.int64) * HW + hw
        dst = row * C * HW + hw.to(tl.int64) * C + c[:, None, None]
        y = tl.load(x_ptr + src, mask=m) + std * tl.join(n0, n1)
        tl.store(out_ptr + dst, (y * f) * s, mask=m)
        y = tl.load(x_ptr + src + 2 * HALF, mask=m) + std * tl.join(n2, n3)
        tl.store(out_ptr + dst + 2 * HALF * C, (y * f) * s, mask=m)

    return noisy_receive_kernel


def takes_noise(shape: torch.Size) -> bool:
    """Whether ``receive_noisy`` can take maps of ``shape [B, C, H, W]``: each channel whole
    blocks of the channel kernel (``H·W`` a multiple of ``2 · awgn_triton.BLOCK`` values)."""
    from v2x.channels.awgn_triton import BLOCK

    return len(shape) == 4 and shape[2] * shape[3] % (2 * BLOCK) == 0


def receive_noisy(
    x: torch.Tensor,
    noise: PendingNoise,
    shrink: torch.Tensor,
    scale: torch.Tensor,
    shape: torch.Size,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``receive(noise.added_to(x), shrink, scale, shape, out)`` in one pass: the same normals,
    the same values to float32 rounding (bit for bit in the interpreter; module docstring).

    Args:
        x: ``[B, C·H·W / 2]`` complex64 symbols sent.
        noise: the AWGN channel's ``PendingNoise`` for them.
        shrink, scale, shape, out: as ``receive`` (``takes_noise(shape)``).

    Returns: ``[B, C, H, W]`` float32, channels-last: ``out`` if given.
    """
    import triton

    from v2x.channels.awgn_triton import BLOCK, noise_std

    b, c, h, w = shape
    if (
        not takes_noise(shape)
        or x.dtype != torch.complex64
        or tuple(x.shape) != (b, c * h * w // 2)
    ):
        raise ValueError(
            f"analog receive_noisy: expected [{b}, {c * h * w // 2}] complex64 symbols for maps "
            f"{tuple(shape)} with H·W a multiple of {2 * BLOCK}, got {tuple(x.shape)} {x.dtype}"
        )
    out = _maps_out(shape, x.device, out)
    if out.numel():
        xr = torch.view_as_real(x.contiguous())
        f, s = _per_map(shrink, b), _per_map(scale, b)
        pairs, block_c = NOISY_PAIRS, NOISY_BLOCK_C
        grid = (h * w // (2 * BLOCK) * (BLOCK // 2 // pairs), triton.cdiv(c, block_c), b)
        with on_device_of(x):
            _noisy_kernel()[grid](xr, noise_std(noise.noise_variance), f, s, out, c, h * w,
                                  noise.seed, HALF=BLOCK // 2, BLOCK_C=block_c, PAIRS=pairs,
                                  num_warps=NOISY_WARPS)  # fmt: skip
    return out


#: values of one map per ``sum_of_squares`` program (each program's partial sum, then the
#: map's partials summed in float64 by torch)
SQUARES_BLOCK = 4096


@functools.cache
def _squares_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def squares_kernel(x_ptr, out_ptr, numel, blocks, BLOCK: tl.constexpr):
        # Program (block, row): the float64 sum of the squares of a block of one map's
        # values (each square exact in float64: a float32 value has 24 significant bits).
        row = tl.program_id(1).to(tl.int64)
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        v = tl.load(x_ptr + row * numel + offs, mask=offs < numel, other=0.0)
        v = v.to(tl.float64)
        tl.store(out_ptr + row * blocks + tl.program_id(0), tl.sum(v * v, axis=0))

    return squares_kernel


def takes_squares(x: torch.Tensor) -> bool:
    """Whether ``sum_of_squares`` reads ``x``: ``[B, ...]`` float32, float16 or bfloat16 maps,
    each map one dense run of memory (contiguous, or ``[B, C, H, W]`` channels-last)."""
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16) or x.dim() < 2:
        return False
    last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return x.is_contiguous() or last


def sum_of_squares(x: torch.Tensor) -> torch.Tensor:
    """Each map's sum of squares, ``[B]`` float64: ``x.double().square().sum(dims)`` to float64
    rounding (the order of the additions differs), in one read of ``x``.

    Args:
        x: ``[B, ...]`` maps (``takes_squares``), in whichever of those layouts they are.
    """
    import triton

    if not takes_squares(x):
        raise ValueError(
            f"analog sum_of_squares: expected [B, ...] float32/float16/bfloat16 maps, each "
            f"map dense (contiguous or channels-last), got {tuple(x.shape)} {x.dtype} "
            f"strides {x.stride()}"
        )
    b, numel = x.shape[0], x[0].numel() if x.shape[0] else 0
    blocks = triton.cdiv(numel, SQUARES_BLOCK)
    partial = torch.empty(b, blocks, dtype=torch.float64, device=x.device)
    if partial.numel():
        with on_device_of(x):
            _squares_kernel()[(blocks, b)](x, partial, numel, blocks, BLOCK=SQUARES_BLOCK)
    return partial.sum(dim=1)


def _maps_out(shape: torch.Size, device: torch.device, out: torch.Tensor | None) -> torch.Tensor:
    """``out``, checked to be ``shape`` float32 channels-last on ``device``, or a new one."""
    if out is None:
        return torch.empty(shape, dtype=torch.float32, device=device,
                           memory_format=torch.channels_last)  # fmt: skip
    if (out.shape != shape or out.dtype != torch.float32 or out.device != device
            or not out.is_contiguous(memory_format=torch.channels_last)):  # fmt: skip
        raise ValueError(
            f"analog receive: 'out' must be a {tuple(shape)} float32 channels-last tensor on "
            f"{device}, got {tuple(out.shape)} {out.dtype} strides {out.stride()} on {out.device}"
        )
    return out


def _per_map(factor: torch.Tensor, b: int) -> torch.Tensor:
    """``[B, 1]`` per-map factors as ``[B]`` contiguous float32."""
    return factor.to(torch.float32).reshape(b).contiguous()


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
    out = _maps_out(shape, y.device, out)
    if out.numel():
        f, s = _per_map(shrink, b), _per_map(scale, b)
        grid = (triton.cdiv(h * w, BLOCK_HW), triton.cdiv(c, BLOCK_C), b)
        with on_device_of(y):
            _kernel()[grid](yr, f, s, out, c, h * w, yr.shape[1], BLOCK_C=BLOCK_C,
                            BLOCK_HW=BLOCK_HW, enable_fp_fusion=False)  # fmt: skip
    return out
