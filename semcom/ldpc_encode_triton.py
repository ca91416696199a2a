"""5G NR LDPC encoding in Triton (CUDA): the codewords of Sionna's ``LDPC5GEncoder``, bit for
bit, from its own parity index tables.

Sionna encodes with four sparse products over GF(2), each a gather ``vec[:, mat]`` of
``[N, m, n_max]`` float32 values and a sum (``_matmul_gather``), then concatenates, rounds and
takes them modulo 2: at 1 Mbit per link (≈ 40,000 code blocks per condition) this was ≈ 100 of
the chain's 508 ms of GPU time per 7 conditions on an H200 (its sums, gathers and
concatenations). Here each product is one kernel that XORs the gathered bits (``uint8``; a sum
of 0/1 values modulo 2 is their XOR) straight into the codeword:

    p_a = B⁻¹ · (A · s),   p_b = C₁ · s ⊕ C₂ · p_a,   c = [s, p_a, p_b]

(``s``: the information bits with the filler zeros, as Sionna pads them). Rate matching (filler
removal, the first ``2Z`` punctured bits, the redundancy version's start in the circular buffer)
and the output interleaver select and order codeword bits; ``output_positions`` gives, for each
of the ``n`` output bits, its position in ``c`` (Sionna's steps applied to the positions
themselves), so ``v2x.semcom.qam_triton.coded_symbols`` reads the codeword through it and the
rate-matched codeword is never written.

Imported with ``TRITON_INTERPRET=1`` the kernels run on CPU tensors (tests).
"""

from __future__ import annotations

import functools

import torch

from v2x.common import on_device_of

BLOCK_ROWS = 32
BLOCK_COLS = 64


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["n_rows"])  # blocks per call vary with the data
    def gather_xor_kernel(
        src_ptr, src_offset, src_len, mat_ptr, dst_ptr, dst_offset, n_rows, m, row_stride,
        NMAX: tl.constexpr, XOR_INTO: tl.constexpr,
        BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr,
    ):  # fmt: skip
        # dst[r, j] (^)= XOR_t src[r, mat[j, t]]; mat's padding index (src_len) reads 0.
        r = tl.program_id(0).to(tl.int64) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
        j = tl.program_id(1) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
        rm = r < n_rows
        jm = j < m
        acc = tl.zeros([BLOCK_ROWS, BLOCK_COLS], tl.int32)
        for t in tl.static_range(NMAX):
            idx = tl.load(mat_ptr + j * NMAX + t, mask=jm, other=0)
            ok = rm[:, None] & (jm & (idx < src_len))[None, :]
            at = r[:, None] * row_stride + src_offset + idx[None, :]
            acc ^= tl.load(src_ptr + at, mask=ok, other=0).to(tl.int32)
        out = r[:, None] * row_stride + dst_offset + j[None, :]
        both = rm[:, None] & jm[None, :]
        if XOR_INTO:
            acc ^= tl.load(dst_ptr + out, mask=both, other=0).to(tl.int32)
        tl.store(dst_ptr + out, acc.to(tl.uint8), mask=both)

    return gather_xor_kernel


class EncoderTables:
    """A Sionna ``LDPC5GEncoder``'s parity index tables on one device.

    Attributes:
        k, k_ldpc, n_ldpc: information bits, with the fillers, codeword length.
        products: ``(source, mat, destination, xor_into)`` per sparse product, in order:
            ``mat [m, n_max]`` int32 indices into the source's ``[offset, offset + length)``
            columns of the codeword, padded with ``length``; source and destination as
            ``(offset, length)``; ``xor_into``: XOR into the destination instead of writing it.
    """

    def __init__(self, encoder, device: torch.device | str) -> None:  # noqa: ANN001
        self.k, self.k_ldpc, self.n_ldpc = encoder._k, encoder._k_ldpc, encoder._n_ldpc
        a, b_inv = encoder._pcm_a_ind, encoder._pcm_b_inv_ind
        c1, c2 = encoder._pcm_c1_ind, encoder._pcm_c2_ind
        m_a = a.shape[0]
        s, p_a = (0, self.k_ldpc), (self.k_ldpc, m_a)
        p_b = (self.k_ldpc + m_a, c1.shape[0])
        if p_b[0] + p_b[1] != self.n_ldpc or c2.shape[0] != c1.shape[0]:
            raise ValueError(f"LDPC tables: [s, p_a, p_b] do not make {self.n_ldpc} bits")
        tmp = (self.n_ldpc, m_a)  # A · s, in scratch columns past the codeword
        steps = [(s, a, tmp, False), (tmp, b_inv, p_a, False), (s, c1, p_b, False),
                 (p_a, c2, p_b, True)]  # fmt: skip
        self.products = [
            (src, mat.to(device=device, dtype=torch.int32).contiguous(), dst, xor_into)
            for src, mat, dst, xor_into in steps
        ]
        self.width = self.n_ldpc + m_a  # codeword + scratch

    def check(self, info: torch.Tensor) -> None:
        """``ValueError`` unless ``info`` is ``[N, k]`` (the code's information bits)."""
        if info.dim() != 2 or info.shape[1] != self.k:
            raise ValueError(f"LDPC encode: expected [N, {self.k}] bits, got {tuple(info.shape)}")


def codewords(info: torch.Tensor, tables: EncoderTables) -> torch.Tensor:
    """``info [N, k]`` 0/1 (any dtype) → ``[N, n_ldpc + m_a]`` uint8: the full codeword ``c``
    in the first ``n_ldpc`` columns (filler positions 0), scratch after it."""
    import triton

    tables.check(info)
    n = info.shape[0]
    c = torch.empty(n, tables.width, dtype=torch.uint8, device=info.device)
    c[:, : tables.k] = info
    c[:, tables.k : tables.k_ldpc] = 0
    if n == 0:
        return c
    with on_device_of(c):
        for (src_off, src_len), mat, (dst_off, m), xor_into in tables.products:
            grid = (triton.cdiv(n, BLOCK_ROWS), triton.cdiv(m, BLOCK_COLS))  # rows: the long axis
            _kernel()[grid](
                c, src_off, src_len, mat, c, dst_off, n, m, tables.width,
                NMAX=mat.shape[1], XOR_INTO=xor_into, BLOCK_ROWS=BLOCK_ROWS, BLOCK_COLS=BLOCK_COLS,
            )  # fmt: skip
    return c


def output_positions(encoder, rv: int) -> torch.Tensor:  # noqa: ANN001
    """``[n]`` int32: the codeword position of each bit ``LDPC5GEncoder`` outputs for redundancy
    version ``rv`` (0: its default call, no ``rv``). Sionna's own steps (filler removal, the
    ``2Z`` punctured bits, the circular buffer from the version's start, the output
    interleaver) applied to the positions ``0 … n_ldpc − 1``."""
    e = encoder
    c = torch.arange(e._n_ldpc)[None, :]
    c_no_filler = torch.cat([c[:, : e._k], c[:, e._k_ldpc :]], dim=1)
    c_rm = c_no_filler[:, 2 * e._z :]
    if rv == 0:
        c_out = c_rm[:, : e._n]
    else:
        start = e.get_start_positions_comp([rv])[0]
        if start + e._n <= e.n_cb_comp:
            c_out = c_rm[:, start : start + e._n]
        else:
            first_len = e.n_cb_comp - start
            c_out = torch.cat([c_rm[:, start:], c_rm[:, : e._n - first_len]], dim=1)
    if e._num_bits_per_symbol is not None:
        c_out = c_out[..., e._out_int.cpu()]  # (Sionna keeps it on its device)
    return c_out[0].to(torch.int32)
