"""The block code's two QAM ends as Triton kernels (CUDA): the transmitter's repeat, scrambling
and mapping (``coded_symbols``), and the receiver's noise clean-up, exact demapper and
descrambling (``codeword_llrs``), each one pass over the symbols.

**Receiver.** torch computes, per dimension, ``z = −(y − level)² / N0`` for every level
(``[N, n, L]``), gathers it twice by the bits' label sets (``[N, n, nb, L/2]`` each), and takes
two log-sum-exps (max, subtract, exp, sum, log): about ten full-size passes per dimension, then
the scramble multiply. At 1 Mbit per link and MCS 0 a condition has ≈ 170 M symbols, and these
passes were the largest GPU cost after the LDPC layers (H200, 64 maps, 7 SNRs: ≈ 150 of
699 ms). The kernel reads each symbol's two floats and its noise variance once and writes its
``Qm`` LLRs: per bit, ``logsumexp`` over the levels whose label has the bit at 1 minus the same
at 0, each as ``max + log Σ exp(z − max)`` (torch's formula; the sums' order differs, so the
LLRs agree to float32 rounding, not bitwise).

**Transmitter.** torch indexes the codeword by the repeat pattern (MCS 0–2), adds the scramble
bits modulo 2, and Sionna's ``Mapper`` casts to int32, shifts every bit by its position, sums
each symbol's ``Qm`` shifted bits and gathers the constellation point: six passes over ``[N,
n·Qm]``. The kernel does the same integer steps per symbol and writes the point: the same
symbols, bit for bit. It reads the whole codeword of ``v2x.semcom.ldpc_encode_triton`` through
the rate matching's positions, so the rate-matched codeword is never written.

Imported with ``TRITON_INTERPRET=1`` the kernels run on CPU tensors (tests).
"""

from __future__ import annotations

import functools

import torch

from v2x.common import on_device_of

BLOCK = 512


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["total"])  # symbols per call vary with the data
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

    return llr_kernel


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

    def check(self, x_hat: torch.Tensor) -> tuple[int, int]:
        """``(N, n)`` of ``x_hat [N, n]``; ``ValueError`` unless it is complex64 with the
        ``n · Qm`` coded bits these tables' scramble signs cover."""
        n_rows, n = x_hat.shape
        if x_hat.dtype != torch.complex64:
            raise ValueError(f"codeword_llrs: expected complex64 symbols, got {x_hat.dtype}")
        if self.sign.numel() != n * self.qm:
            raise ValueError(
                f"codeword_llrs: {n} symbols per block need {n * self.qm} scramble signs, "
                f"got {self.sign.numel()}"
            )
        return n_rows, n


def codeword_llrs(
    x_hat: torch.Tensor, no: torch.Tensor, tables: LlrTables, no_erased: float, no_min: float
) -> torch.Tensor:
    """``[N, n · Qm]`` float32 descrambled LLRs of ``x_hat [N, n]`` complex64.

    ``no``: ``[N, n]``-broadcastable float32 noise variance (a view: its strides are read, a
    per-row or scalar variance is not expanded in memory); NaN and ``+inf`` (erased) become
    ``no_erased``, then it is clamped to ``[no_min, no_erased]``, as ``BlockCode.llr`` does.
    """
    import triton

    n_rows, n = tables.check(x_hat)
    x = torch.view_as_real(x_hat.contiguous())
    no = torch.as_tensor(no, dtype=torch.float32, device=x_hat.device).expand(n_rows, n)
    out = torch.empty(n_rows, n * tables.qm, dtype=torch.float32, device=x_hat.device)
    total = n_rows * n
    if total:
        grid = (triton.cdiv(total, BLOCK),)
        with on_device_of(x_hat):
            _kernel()[grid](
                x, no, tables.dims, tables.levels, tables.labels, tables.sign, out,
                n, total, no.stride(0), no.stride(1), float(no_erased), float(no_min),
                QM=tables.qm, L=tables.num_levels, BLOCK=BLOCK,
            )  # fmt: skip
    return out


@functools.cache
def _map_kernel():
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["total"])  # symbols per call vary with the data
    def map_kernel(
        c_ptr, pos_ptr, scramble_ptr, points_ptr, out_ptr, n, total, c_row_stride, ldpc_bits,
        QM: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        # One BLOCK of symbols of the [N, n] output, flattened row-major.
        i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = i < total
        row = i // n
        col = i - row * n
        index = tl.zeros([BLOCK], tl.int32)
        for k in tl.static_range(QM):
            q = (col * QM + k) % ldpc_bits  # the rate-matched bits repeat cyclically
            q = tl.load(pos_ptr + q, mask=m, other=0).to(tl.int64)  # its codeword bit
            c = tl.load(c_ptr + row * c_row_stride + q, mask=m, other=0).to(tl.int32)
            s = tl.load(scramble_ptr + col * QM + k, mask=m, other=0.0).to(tl.int32)
            index += ((c + s) & 1) << (QM - 1 - k)  # Sionna's Mapper: bit 0 the MSB
        re = tl.load(points_ptr + 2 * index, mask=m, other=0.0)
        im = tl.load(points_ptr + 2 * index + 1, mask=m, other=0.0)
        tl.store(out_ptr + 2 * i, re, mask=m)
        tl.store(out_ptr + 2 * i + 1, im, mask=m)

    return map_kernel


def check_mapping(coded_bits: int, scramble: torch.Tensor, points: torch.Tensor, qm: int) -> None:
    """``ValueError`` unless ``coded_bits`` fill whole symbols of ``qm`` bits and ``scramble``
    (one bit per coded bit) and ``points`` (``2^Qm``) fit them."""
    if coded_bits % qm or scramble.numel() != coded_bits or points.numel() != 2**qm:
        raise ValueError(
            f"coded_symbols: {coded_bits} coded bits, {scramble.numel()} scramble bits and "
            f"{points.numel()} points for {qm} bits per symbol"
        )


def coded_symbols(
    c: torch.Tensor,
    scramble: torch.Tensor,
    points: torch.Tensor,
    qm: int,
    coded_bits: int,
    positions: torch.Tensor,
) -> torch.Tensor:
    """``[N, coded_bits / Qm]`` complex64 symbols of codewords ``c [N, ·]`` (0/1 uint8, any row
    stride, unit column stride; ``v2x.semcom.ldpc_encode_triton.codewords``).

    Rate-matched bit ``q`` is ``c[positions[q]]`` (``positions [ldpc_bits]`` int32,
    ``v2x.semcom.ldpc_encode_triton.output_positions``); coded bit ``p`` is rate-matched
    bit ``p mod ldpc_bits`` plus ``scramble[p]`` (``[coded_bits]`` float32 0/1) modulo 2; each
    ``Qm`` bits, the first the most significant, index ``points`` (``[2^Qm]`` complex64)."""
    import triton

    n_rows = c.shape[0]
    ldpc_bits = positions.numel()
    if c.dtype != torch.uint8 or (n_rows and c.stride(1) != 1):
        raise ValueError(f"coded_symbols: expected [N, n] uint8 codewords with unit column "
                         f"stride, got {c.dtype} with strides {c.stride()}")  # fmt: skip
    check_mapping(coded_bits, scramble, points, qm)
    n = coded_bits // qm
    out = torch.empty(n_rows, n, dtype=torch.complex64, device=c.device)
    total = n_rows * n
    if total:
        pts = torch.view_as_real(points.to(torch.complex64).contiguous())
        grid = (triton.cdiv(total, BLOCK),)
        with on_device_of(c):
            _map_kernel()[grid](
                c, positions, scramble, pts, torch.view_as_real(out), n, total, c.stride(0),
                ldpc_bits, QM=qm, BLOCK=BLOCK,
            )  # fmt: skip
    return out
