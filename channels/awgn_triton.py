"""A fused AWGN kernel for CUDA (Triton): read x, draw Philox normals in registers, write y.

16 bytes of memory traffic per complex64 symbol (8 read, 8 written) instead of the ≥ 32 of a
materialised noise tensor. Same law as the torch path: y = x + sqrt(no/2)·(N(0,1) + jN(0,1)).
Used for inference (no autograd graph).

The normals: Philox4x32-10 keyed by the call's ``seed``, one counter ``(q, row, 0, 0)`` per four
floats, its four words turned into four N(0, 1) by two Box–Muller pairs (``tl.randn4x``). A
program of ``BLOCK`` floats of one row draws counters ``q`` for its ``BLOCK / 4`` positions and
gives the ``j``-th normal of counter ``q`` to the float ``j · BLOCK / 4`` further on (so each
quarter of the block loads and stores contiguously). Every (row, float) of a call has its own
counter, and calls have their own keys: no two draws share a stream. (Before 2026-12-02 each
float drew its own Philox call and used one normal of its four, with the row in the key:
calls seeded ``s`` and ``s + 1`` then shared rows' noise, shifted by one row.)

Imported with ``TRITON_INTERPRET=1`` the kernel runs on CPU tensors (tests).
"""

from __future__ import annotations

import torch

from v2x.common import on_device_of

_KERNEL = None
#: floats per program (four quarters of ``BLOCK / 4``, one Philox counter per quarter position)
BLOCK = 2048


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        import triton
        import triton.language as tl

        @triton.jit(do_not_specialize=["seed"])  # a new seed never compiles a new kernel
        def awgn_kernel(x_ptr, y_ptr, std_ptr, floats_per_row, seed, BLOCK: tl.constexpr):
            QUARTER: tl.constexpr = BLOCK // 4
            row = tl.program_id(1).to(tl.int64)
            block = tl.program_id(0).to(tl.int64)
            i = tl.arange(0, QUARTER)
            # counter (q, row, 0, 0): q in the low word, the row in the high word
            n0, n1, n2, n3 = tl.randn4x(seed, (row << 32) + block * QUARTER + i)
            j = tl.arange(0, 4)[:, None]  # the block's quarter: [4, QUARTER] tile
            noise = tl.where(
                j == 0, n0[None, :],
                tl.where(j == 1, n1[None, :], tl.where(j == 2, n2[None, :], n3[None, :])),
            )  # fmt: skip
            offs = block * BLOCK + j * QUARTER + i[None, :]
            mask = offs < floats_per_row
            base = row * floats_per_row
            x = tl.load(x_ptr + base + offs, mask=mask)
            std = tl.load(std_ptr + row)
            tl.store(y_ptr + base + offs, x + std * noise, mask=mask)

        _KERNEL = awgn_kernel
    return _KERNEL


def awgn_fused(x: torch.Tensor, noise_variance: torch.Tensor, seed: int) -> torch.Tensor:
    """``x [B, n]`` complex64 on CUDA, ``noise_variance [B]`` → ``y [B, n]`` complex64.

    ``seed``: the call's Philox key (0 ≤ seed < 2**63); rows ``< 2**31`` and ``2 n / 4 < 2**32``
    (each row's counters fit the low word)."""
    import triton

    xr = torch.view_as_real(x.contiguous()).reshape(x.shape[0], -1)
    y = torch.empty_like(xr)
    std = torch.sqrt(noise_variance.float() * 0.5).contiguous()
    floats = xr.shape[1]
    if floats // 4 >= 2**32:
        raise ValueError(f"awgn_fused: {floats} floats per row; at most 4 · 2**32 fit the counters")
    grid = (triton.cdiv(floats, BLOCK), x.shape[0])
    with on_device_of(x):
        _kernel()[grid](xr, y, std, floats, seed, BLOCK=BLOCK)
    return torch.view_as_complex(y.view(x.shape[0], -1, 2))
