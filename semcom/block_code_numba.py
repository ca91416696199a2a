"""The block code's two QAM ends on the CPU, compiled by numba: the transmitter's 5G LDPC
encoding, rate matching, scrambling and mapping (``coded_symbols``) and the receiver's noise
clean-up, exact demapper, descrambling and repeat combining (``codeword_llrs``), one compiled
pass over each block. What ``ldpc_encode_triton`` and ``qam_triton`` do on CUDA, for
``v2x.semcom.fec.BlockCode`` on CPU tensors when numba is installed.

On the 2-core VM at 1 Mbit per link the torch path spent most of the digital chain's time here
(Sionna's encoder: four gathers of ``[N, m, n_max]`` float32 and sums, then ``fmod``; its
``Mapper``; the demapper's ``[N, n, L]`` tables and log-sum-exps): docs/benchmarks.md,
"Fifty-seventh session".

**Transmitter: the same symbols, bit for bit.** Each block's codeword is built in a scratch row
by the encoder's four sparse products over GF(2) (``EncoderTables``: XOR of the gathered bits,
Sionna's ``LDPC5GEncoder`` tables), then coded bit ``p`` is codeword bit
``positions[p mod ldpc_bits]`` XOR ``scramble[p]``, and every ``Qm`` bits (the first the most
significant) index the constellation: Sionna's steps, integer for integer.

**Receiver: the same LLRs to float32 rounding** (QPSK's the same floats). Per coded bit, the
log-sum-exp over the levels of its dimension whose label has the bit at 1 minus the same at 0,
with ``z = −(y − level)² / N0``, each as ``max + log(1 + Σ exp(z − max))`` over the set's other
levels (``_llr_range``), times the descrambling sign, added into its codeword position (the
cyclic repeats of MCS 0–2 in order, as ``scatter_add_``).

The rows are split over ``torch.get_num_threads()`` threads (the compiled functions let go of
the GIL). They are compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from v2x.semcom.qam_triton import check_mapping

#: Fewest rows (code blocks) per thread: below it a call runs on one thread.
MIN_ROWS_PER_THREAD = 64


def over_threads(run: Callable[..., None], rows: int, *args, min_rows: int = 1) -> None:
    """``run(*args, start, stop)`` over ``rows`` rows split into contiguous ranges, one per
    thread of ``torch.get_num_threads()`` (at least ``min_rows`` rows each; one range runs in
    this thread). ``run`` must let go of the GIL (numba ``nogil``) for the threads to overlap."""
    parts = max(1, min(torch.get_num_threads(), math.ceil(rows / max(1, min_rows))))
    bounds = [rows * p // parts for p in range(parts + 1)]
    if parts == 1:
        run(*args, 0, rows)
        return
    with ThreadPoolExecutor(parts, thread_name_prefix="v2x-numba") as pool:
        done = [pool.submit(run, *args, bounds[p], bounds[p + 1]) for p in range(parts)]
        for future in done:
            future.result()


@functools.cache
def _kernels() -> tuple[Callable[..., None], Callable[..., None]]:
    """``_encode_range`` and ``_llr_range`` compiled (numba imported on first use)."""
    import numba

    jit = numba.njit(cache=True, nogil=True, boundscheck=False)
    return jit(_encode_range), jit(_llr_range)


def coded_symbols(
    info: torch.Tensor, tables, positions: torch.Tensor, scramble: torch.Tensor,  # noqa: ANN001
    points: torch.Tensor, qm: int,
) -> torch.Tensor:  # fmt: skip
    """``info [N, k]`` 0/1 information bits (with the CRC; any real dtype) → ``[N, coded_bits /
    Qm]`` complex64 symbols, as ``BlockCode.encode`` (``rv``'s ``positions [ldpc_bits]`` int32
    from ``ldpc_encode_triton.output_positions``, ``scramble [coded_bits]`` 0/1, ``points
    [2^Qm]`` complex; ``tables``: ``ldpc_encode_triton.EncoderTables`` on the CPU)."""
    tables.check(info)
    n_rows, coded_bits = info.shape[0], scramble.numel()
    check_mapping(coded_bits, scramble, points, qm)
    out = np.empty((n_rows, coded_bits // qm), dtype=np.complex64)
    if n_rows:
        bits = info.detach().to("cpu", torch.uint8).contiguous().numpy()
        mats = [mat.cpu().numpy() for _, mat, _, _ in tables.products]
        # per product: source offset and length, destination offset and rows, XOR into it
        meta = np.array([(s[0], s[1], d[0], d[1], int(x)) for s, _, d, x in tables.products],
                        dtype=np.int64)  # fmt: skip
        over_threads(
            _kernels()[0], n_rows, bits, int(tables.k_ldpc), int(tables.width), *mats, meta,
            positions.cpu().numpy().astype(np.int64), scramble.cpu().numpy().astype(np.uint8),
            points.cpu().to(torch.complex64).numpy(), int(qm), out,
            min_rows=MIN_ROWS_PER_THREAD,
        )  # fmt: skip
    return torch.from_numpy(out)


def codeword_llrs(
    x_hat: torch.Tensor, no: torch.Tensor, tables, ldpc_bits: int,  # noqa: ANN001
    no_erased: float, no_min: float,
) -> torch.Tensor:  # fmt: skip
    """``[N, ldpc_bits]`` float32 descrambled codeword LLRs of ``x_hat [N, n]`` complex64, as
    ``BlockCode.llr``: ``no`` (``[N, n]``-broadcastable float32; NaN and ``+inf`` become
    ``no_erased``, then clamped to ``[no_min, no_erased]``), the LLR of coded bit ``p`` added
    into position ``p mod ldpc_bits`` (``tables``: ``qam_triton.LlrTables`` on the CPU)."""
    n_rows, n = tables.check(x_hat)
    out = np.zeros((n_rows, ldpc_bits), dtype=np.float32)
    if n_rows and n:
        x = torch.view_as_real(x_hat.detach().contiguous()).numpy()
        noise = torch.as_tensor(no, dtype=torch.float32).detach().expand(n_rows, n).numpy()
        over_threads(
            _kernels()[1], n_rows, x, noise, tables.dims.numpy().astype(np.int64),
            tables.levels.numpy(), tables.labels.numpy().astype(np.int64), tables.sign.numpy(),
            np.float32(no_erased), np.float32(no_min), out, min_rows=MIN_ROWS_PER_THREAD,
        )  # fmt: skip
    return torch.from_numpy(out)


def _encode_range(
    bits, k_ldpc, width, mat0, mat1, mat2, mat3, meta, positions, scramble, points, qm, out,
    start, stop,
):  # fmt: skip
    """Rows ``start .. stop`` of ``coded_symbols`` (compiled by ``_kernels``): each block's
    codeword in one scratch row, then its symbols."""
    k = bits.shape[1]
    ldpc_bits = positions.shape[0]
    n = out.shape[1]
    c = np.zeros(width, dtype=np.uint8)
    for r in range(start, stop):
        for i in range(k):
            c[i] = bits[r, i]
        for i in range(k, k_ldpc):
            c[i] = 0
        for p in range(4):
            mat = mat0 if p == 0 else mat1 if p == 1 else mat2 if p == 2 else mat3
            src, src_len, dst, m, xor_into = meta[p, 0], meta[p, 1], meta[p, 2], meta[p, 3], meta[p, 4]
            for j in range(m):
                acc = c[dst + j] if xor_into else np.uint8(0)
                for t in range(mat.shape[1]):
                    idx = mat[j, t]
                    if idx < src_len:
                        acc ^= c[src + idx]
                c[dst + j] = acc
        q = 0  # coded bit p's rate-matched bit, p mod ldpc_bits
        for col in range(n):
            index = 0
            for b in range(qm):
                bit = (c[positions[q]] + scramble[col * qm + b]) & 1
                index += bit << (qm - 1 - b)
                q += 1
                if q == ldpc_bits:
                    q = 0
            out[r, col] = points[index]


def _llr_range(
    x, noise, dims, levels, labels, sign, no_erased, no_min, out, start, stop,
):  # fmt: skip
    """Rows ``start .. stop`` of ``codeword_llrs`` (compiled by ``_kernels``). Each label set's
    log-sum-exp is ``max + log(1 + Σ exp(z − max))`` over its other levels (the largest term is
    exactly 1), the two sets' logs taken as one: for QPSK no exponential nor logarithm, for
    16-QAM one exponential per set."""
    n = x.shape[1]
    qm, num_levels = levels.shape
    ldpc_bits = out.shape[1]
    neg_inf = np.float32(-np.inf)
    zero = np.float32(0.0)
    z = np.empty(num_levels, dtype=np.float32)
    for r in range(start, stop):
        q = 0  # coded bit p's codeword position, p mod ldpc_bits
        for col in range(n):
            no = noise[r, col]
            if no != no:
                no = no_erased
            no = min(max(no, no_min), no_erased)
            for b in range(qm):
                coord = x[r, col, dims[b]]
                m1 = neg_inf
                m0 = neg_inf
                a1 = 0
                a0 = 0
                for lv in range(num_levels):
                    d = coord - levels[b, lv]
                    z[lv] = -(d * d) / no
                    if labels[b, lv]:
                        if z[lv] > m1:
                            m1 = z[lv]
                            a1 = lv
                    elif z[lv] > m0:
                        m0 = z[lv]
                        a0 = lv
                s1 = zero
                s0 = zero
                for lv in range(num_levels):
                    if labels[b, lv]:
                        if lv != a1:
                            s1 += np.exp(z[lv] - m1)
                    elif lv != a0:
                        s0 += np.exp(z[lv] - m0)
                llr = m1 - m0
                if s1 > zero or s0 > zero:
                    llr += np.log((np.float32(1.0) + s1) / (np.float32(1.0) + s0))
                out[r, q] += llr * sign[col * qm + b]
                q += 1
                if q == ldpc_bits:
                    q = 0
