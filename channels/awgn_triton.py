"""The fused channel kernel for CUDA (Triton): read x (and a gain), draw Philox normals in
registers, write ``y = h·x + n``.

16 bytes of memory traffic per complex64 symbol (8 read, 8 written; a per-symbol gain 8 more)
instead of the ≥ 32 of a materialised noise tensor (48 for torch's block fading: the product,
the noise and their sum). Same law as the torch paths: ``y = h·x + sqrt(no/2)·(N(0,1) +
jN(0,1))`` with ``h = 1`` for AWGN. Used for inference (no autograd graph).

The normals: Philox4x32-10 keyed by the call's ``seed``, one counter ``(q, row, 0, 0)`` per two
symbols, its four words turned into four N(0, 1) by two Box–Muller pairs (``tl.randn4x``). A
program of ``BLOCK`` symbols of one row draws counters ``q`` for its ``BLOCK / 2`` positions
``i``: symbol ``i`` of the program takes the first pair (real, imaginary) and symbol
``i + BLOCK / 2`` the second. Every (row, symbol) of a call has its own draw and calls have their
own keys: no two draws share a stream. (Before 2026-12-02 each float drew its own Philox call
and used one normal of its four, with the row in the key: calls seeded ``s`` and ``s + 1`` then
shared rows' noise, shifted by one row.)

Imported with ``TRITON_INTERPRET=1`` the kernel runs on CPU tensors (tests).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from v2x.common import on_device_of

#: symbols per program (two halves of ``BLOCK / 2``, one Philox counter per half position)
BLOCK = 1024
#: warps per program (H200, 2,048 × 131,072 symbols: 1,024 symbols on 4 warps 169 G symbols/s,
#: 2,048 on 4 118, 4,096 on 4 100; each pair as two strided 4-byte accesses 158)
NUM_WARPS = 4


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["seed"])  # a new seed never compiles a new kernel
    def channel_kernel(
        x_ptr, y_ptr, std_ptr, h_ptr, symbols_per_row, seed,
        GAIN: tl.constexpr, GAIN_PER_SYMBOL: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        HALF: tl.constexpr = BLOCK // 2
        row = tl.program_id(1).to(tl.int64)
        block = tl.program_id(0).to(tl.int64)
        i = tl.arange(0, HALF)
        # counter (q, row, 0, 0): q in the low word, the row in the high word
        n0, n1, n2, n3 = tl.randn4x(seed, (row << 32) + block * HALF + i)
        second = tl.arange(0, 2)[:, None] == 1  # the program's half: a [2, HALF] tile
        noise_re = tl.where(second, n2[None, :], n0[None, :])
        noise_im = tl.where(second, n3[None, :], n1[None, :])
        s = block * BLOCK + tl.arange(0, 2)[:, None] * HALF + i[None, :]
        mask = s < symbols_per_row
        # each symbol's (real, imaginary) floats as one 8-byte access: a [2, HALF, 2] tile
        part = tl.arange(0, 2)[None, None, :]
        pair = (row * symbols_per_row * 2 + 2 * s)[:, :, None] + part
        pair_mask = mask[:, :, None] & (part < 2)
        x_re, x_im = tl.split(tl.load(x_ptr + pair, mask=pair_mask))
        if GAIN:
            if GAIN_PER_SYMBOL:
                h_re, h_im = tl.split(tl.load(h_ptr + pair, mask=pair_mask))
            else:
                h_re = tl.load(h_ptr + 2 * row)
                h_im = tl.load(h_ptr + 2 * row + 1)
            x_re, x_im = h_re * x_re - h_im * x_im, h_re * x_im + h_im * x_re
        std = tl.load(std_ptr + row)
        y = tl.join(x_re + std * noise_re, x_im + std * noise_im)
        tl.store(y_ptr + pair, y, mask=pair_mask)

    return channel_kernel


def use_fused(x: torch.Tensor) -> bool:
    """Whether ``awgn_fused`` can take ``x``: complex64 on CUDA, no gradient wanted, Triton
    installed."""
    if not (x.is_cuda and x.dtype == torch.complex64):
        return False
    if x.requires_grad and torch.is_grad_enabled():
        return False
    from v2x.common import triton_available

    return triton_available()


def fused_seed() -> int:
    """A call's Philox key, drawn from torch's CPU generator (``torch.manual_seed`` repeats it)."""
    return int(torch.randint(0, 2**31 - 1, (1,)))


def noise_std(noise_variance: torch.Tensor) -> torch.Tensor:
    """``[B]`` float32 ``sqrt(noise_variance / 2)``: the standard deviation per real dimension
    that the fused kernels scale their normals by."""
    return torch.sqrt(noise_variance.float() * 0.5).contiguous()


@dataclass(frozen=True)
class PendingNoise:
    """The AWGN a channel drew the key of but did not add (``AWGNChannel(...,
    defer_noise=True)``): the receiver adds it, in the pass that reads the symbols
    (``v2x.semcom.analog_triton.receive_noisy``), or ``added_to`` them first.

    Attributes:
        noise_variance: ``[B]`` float32 ``no`` per row (the ``ChannelState``'s).
        seed: the call's Philox key (``fused_seed``).
    """

    noise_variance: torch.Tensor
    seed: int

    def added_to(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, n]`` with this noise: the channel's own output (``awgn_fused``)."""
        return awgn_fused(x, self.noise_variance, self.seed)


def awgn_fused(
    x: torch.Tensor,
    noise_variance: torch.Tensor,
    seed: int,
    gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """``y = gain·x + n``, ``n ~ CN(0, noise_variance)`` per row, in one pass.

    Args:
        x: ``[B, n]`` complex64 (CUDA, or CPU under ``TRITON_INTERPRET=1``).
        noise_variance: ``[B]`` float.
        seed: the call's Philox key (0 ≤ seed < 2**63); ``B < 2**31`` and ``n / 2 < 2**32``.
        gain: ``None`` (AWGN), or ``[B, 1]`` / ``[B, n]`` complex: one gain per row or per
            symbol (block or fast fading).

    Returns:
        ``[B, n]`` complex64.
    """
    import triton

    b, n = x.shape
    if n // 2 >= 2**32:
        raise ValueError(f"awgn_fused: {n} symbols per row; at most 2 · 2**32 fit the counters")
    xr = torch.view_as_real(x.contiguous())
    y = torch.empty_like(xr)
    std = noise_std(noise_variance)
    per_symbol = gain is not None and gain.shape[1] != 1
    if gain is not None:
        if gain.shape not in ((b, 1), (b, n)):
            raise ValueError(
                f"awgn_fused: 'gain' must be [{b}, 1] or [{b}, {n}], got {tuple(gain.shape)}"
            )
        h = torch.view_as_real(gain.to(torch.complex64).contiguous())
    else:
        h = std  # not read
    if not x.numel():
        return torch.view_as_complex(y)
    grid = (triton.cdiv(n, BLOCK), b)
    with on_device_of(x):
        _kernel()[grid](xr, y, std, h, n, seed, GAIN=gain is not None, GAIN_PER_SYMBOL=per_symbol,
                        BLOCK=BLOCK, num_warps=NUM_WARPS)  # fmt: skip
    return torch.view_as_complex(y)
