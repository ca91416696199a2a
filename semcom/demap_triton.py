"""The receiver's codeword LLRs in one Triton kernel (CUDA): the noise variance's clean-up, the
separable exact demapper (``v2x.semcom.demap``) and the descrambling sign, one pass over the
symbols.

torch computes, per dimension, ``z = −(y − level)² / N0`` for every level (``[N, n, L]``),
gathers it twice by the bits' label sets (``[N, n, nb, L/2]`` each), and takes two
log-sum-exps (max, subtract, exp, sum, log): about ten full-size passes per dimension, then the
scramble multiply. At 1 Mbit per link and MCS 0 a condition has ≈ 170 M symbols, and these
passes were the largest GPU cost after the LDPC layers (H200, 64 maps, 7 SNRs: ≈ 200 of
709 ms). The kernel reads each symbol's two floats and its noise variance once and writes its
``Qm`` LLRs: per bit, ``logsumexp`` over the levels whose label has the bit at 1 minus the same
at 0, each as ``max + log Σ exp(z − max)`` (torch's formula; the sums' order differs, so the
LLRs agree to float32 rounding, not bitwise).

Imported with ``TRITON_INTERPRET=1`` the kernel runs on CPU tensors (tests).
"""

from __future__ import annotations

import torch

_KERNEL = None
BLOCK = 512


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        import triton
        import triton.language as tl

        @triton.jit
        def llr_kernel(
            x_ptr, no_ptr, dim_ptr, level_ptr, label_ptr, sign_ptr, out_ptr,
            n, total, no_row_stride, no_col_stride, no_erased, no_min,
            QM: tl.constexpr, L: tl.constexpr, BLOCK: tl.constexpr,
        ):  # fmt: skip
            # One BLOCK of symbols of the [N, n] block matrix, flattened row-major.
            i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
            m = i < total
            row = i // n
            col = i - row * n
            xr = tl.load(x_ptr + 2 * i, mask=m, other=0.0)
            xi = tl.load(x_ptr + 2 * i + 1, mask=m, other=0.0)
            no = tl.load(no_ptr + row * no_row_stride + col * no_col_stride, mask=m, other=1.0)
            # fec.llr's clean-up: NaN and +inf (erased) -> no_erased, then clamp(no_min, no_erased)
            no = tl.where(no != no, no_erased, no)
            no = tl.minimum(tl.maximum(no, no_min), no_erased)
            for k in tl.static_range(QM):
                coord = tl.where(tl.load(dim_ptr + k) == 0, xr, xi)
                m1 = tl.full([BLOCK], float("-inf"), tl.float32)
                m0 = tl.full([BLOCK], float("-inf"), tl.float32)
                for lv in tl.static_range(L):
                    d = coord - tl.load(level_ptr + k * L + lv)
                    z = -(d * d) / no
                    one = tl.load(label_ptr + k * L + lv) != 0
                    m1 = tl.where(one, tl.maximum(m1, z), m1)
                    m0 = tl.where(one, m0, tl.maximum(m0, z))
                s1 = tl.zeros([BLOCK], tl.float32)
                s0 = tl.zeros([BLOCK], tl.float32)
                for lv in tl.static_range(L):
                    d = coord - tl.load(level_ptr + k * L + lv)
                    z = -(d * d) / no
                    one = tl.load(label_ptr + k * L + lv) != 0
                    s1 += tl.where(one, tl.exp(z - m1), 0.0)
                    s0 += tl.where(one, 0.0, tl.exp(z - m0))
                llr = (tl.log(s1) + m1) - (tl.log(s0) + m0)
                sign = tl.load(sign_ptr + col * QM + k, mask=m, other=1.0)
                tl.store(out_ptr + i * QM + k, llr * sign, mask=m)

        _KERNEL = llr_kernel
    return _KERNEL


class LlrTables:
    """A separable QAM's per-bit tables for ``codeword_llrs``, on one device.

    Args:
        dims: ``[Qm]`` int32, the dimension (0 real, 1 imaginary) that carries bit ``k``.
        levels: ``[Qm, L]`` float32, that dimension's ``L = 2^(Qm/2)`` levels.
        labels: ``[Qm, L]`` int32, bit ``k`` of each level's label (0/1).
        sign: ``[n · Qm]`` float32, the descrambling sign of each coded bit (±1).
    """

    def __init__(self, dims, levels, labels, sign) -> None:  # noqa: ANN001
        self.dims, self.levels, self.labels, self.sign = dims, levels, labels, sign
        self.qm, self.num_levels = levels.shape


def codeword_llrs(
    x_hat: torch.Tensor, no: torch.Tensor, tables: LlrTables, no_erased: float, no_min: float
) -> torch.Tensor:
    """``[N, n · Qm]`` float32 descrambled LLRs of ``x_hat [N, n]`` complex64.

    ``no``: ``[N, n]``-broadcastable float32 noise variance (a view: its strides are read, a
    per-row or scalar variance is not expanded in memory); NaN and ``+inf`` (erased) become
    ``no_erased``, then it is clamped to ``[no_min, no_erased]``, as ``BlockCode.llr`` does.
    """
    import triton

    n_rows, n = x_hat.shape
    if x_hat.dtype != torch.complex64:
        raise ValueError(f"codeword_llrs: expected complex64 symbols, got {x_hat.dtype}")
    if tables.sign.numel() != n * tables.qm:
        raise ValueError(
            f"codeword_llrs: {n} symbols per block need {n * tables.qm} scramble signs, "
            f"got {tables.sign.numel()}"
        )
    x = torch.view_as_real(x_hat.contiguous())
    no = torch.as_tensor(no, dtype=torch.float32, device=x_hat.device).expand(n_rows, n)
    out = torch.empty(n_rows, n * tables.qm, dtype=torch.float32, device=x_hat.device)
    total = n_rows * n
    if total:
        grid = (triton.cdiv(total, BLOCK),)
        _kernel()[grid](
            x, no, tables.dims, tables.levels, tables.labels, tables.sign, out,
            n, total, no.stride(0), no.stride(1), float(no_erased), float(no_min),
            QM=tables.qm, L=tables.num_levels, BLOCK=BLOCK,
        )  # fmt: skip
    return out
