"""Triton kernels of the min-sum LDPC decoder (``v2x.semcom.ldpc_minsum``): one launch per
row group updates every check of the group for every block (row-layered normalised offset
min-sum, the same arithmetic as the decoder's torch path).

Layouts (batch last, ``nb`` blocks contiguous): ``llr [V + Z, nb]`` float32 or float16; per
group ``idx [rows·DEG·Z]`` int32 VN of every edge (−1: padding). ``layer_kernel`` keeps one
message per edge ``r [rows·DEG·Z, nb]``; ``layer_compressed_kernel`` one compressed state per
check ``[rows·Z, nb]``: ``α·s·min1``, ``α·s·min2`` (storage dtype) and int32 ``signs | arg <<
ARG_SHIFT``. ``pack_hard_kernel`` and ``syndrome_kernel`` check every block's hard decision
against the parity checks with 32 blocks to an int32 word. ``check_edges`` (a check's edges and
VNs) and ``check_update`` (the min-sum update, on a tile of a check's edges) are the persistent
kernel's (``ldpc_persistent_triton``); ``layer_kernel`` and ``layer_compressed_kernel`` walk a
check's edges one at a time instead. Imported with ``TRITON_INTERPRET=1`` the kernels run on CPU
tensors (tests).

The row-group kernels take the batch padded to a multiple of 16 blocks (the decoder's
``_BATCH_ALIGN``; padding columns are decoded and never read), so Triton specialises ``nb`` the
same way for every batch (one compilation per shape) and knows every row 16-element aligned and
the ``b < nb`` mask constant over 16 blocks: loads and stores can be vectorised over a
thread's consecutive blocks. The other kernels' block and word counts are not specialised on
(``do_not_specialize``): Triton would otherwise compile them again for a count of 1 or of a
multiple of 16, which the decoder's batch compaction reaches at any point of a run.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def check_edges(idx_ptr, chk, d, z, deg, valid):
    """Edges and VNs of checks ``chk`` (a row group's check ``i·Z + j``: row ``i``, lifting
    index ``j``), edge slots ``d`` (broadcast against ``chk``): the edge index ``(i·deg + d)·Z +
    j`` within the group and its VN from ``idx_ptr`` (−1: padding, ``d ≥ deg`` or not
    ``valid``)."""
    i = chk // z
    j = chk - i * z
    edge = (i * deg + d) * z + j
    vn = tl.load(idx_ptr + edge, mask=(d < deg) & valid, other=-1)
    return edge, vn


@triton.jit
def signed_minima(min1, min2, odd, alpha, beta, OFFSET: tl.constexpr, HALF: tl.constexpr):
    """A check's two smallest ``|t|`` → the messages' magnitudes with the check's sign:
    ``α·s·max(min − β, 0)`` (``β`` with ``OFFSET``; ``s = −1`` where ``odd`` edges are negative),
    float16-rounded with ``HALF`` (as stored)."""
    if OFFSET:
        min1 = tl.maximum(min1 - beta, 0.0)
        min2 = tl.maximum(min2 - beta, 0.0)
    scale = tl.where(odd == 1, -1.0, 1.0) * alpha
    m1s = min1 * scale
    m2s = min2 * scale
    if HALF:
        m1s = m1s.to(tl.float16).to(tl.float32)
        m2s = m2s.to(tl.float16).to(tl.float32)
    return m1s, m2s


@triton.jit
def check_update(
    t, m, d, alpha, beta, pad_llr, OFFSET: tl.constexpr, HALF: tl.constexpr, AXIS: tl.constexpr
):
    """Min-sum update of ``t`` (edges of a check along ``AXIS``, ``m``: real edges, ``d``: the
    edge slot, broadcast against ``t``): the new messages ``r``, ``α·s·min1``, ``α·s·min2`` (as
    used: float16-rounded with ``HALF``; ``AXIS`` reduced), the arg-min edge and the edge signs
    (sign bit set, as torch.copysign: −0 counts as negative)."""
    a = tl.where(m, tl.abs(t), pad_llr)
    min1 = tl.min(a, axis=AXIS)
    arg = tl.argmin(a, axis=AXIS)
    at_min = d == tl.expand_dims(arg, AXIS)
    min2 = tl.min(tl.where(at_min, pad_llr, a), axis=AXIS)
    neg = (t.to(tl.int32, bitcast=True) < 0) & m
    odd = tl.sum(neg.to(tl.int32), axis=AXIS) & 1
    m1s, m2s = signed_minima(min1, min2, odd, alpha, beta, OFFSET, HALF)
    mag = tl.where(at_min, tl.expand_dims(m2s, AXIS), tl.expand_dims(m1s, AXIS))
    r = tl.where(neg, -mag, mag)
    return r, m1s, m2s, arg, neg


@triton.jit
def _vn_at(vn, b, bm, nb):
    """VN ``vn`` (scalar; −1: padding) for blocks ``b``: where its edge is real (``m``: not
    padding, ``b < nb``) and the offsets of its ``L``."""
    m = bm & (vn + tl.zeros_like(b) >= 0)  # (a block: the interpreter masks with blocks)
    return m, vn.to(tl.int64) * nb + b


@triton.jit
def _edge_l(llr_ptr, idx_ptr, edge, b, bm, nb):
    """Edge ``edge`` of a row group for blocks ``b``: its VN's ``L`` float32 ``[BLOCK_B]``,
    where it is real (``m``: not padding, ``b < nb``) and the offset of ``L``."""
    m, off_l = _vn_at(tl.load(idx_ptr + edge), b, bm, nb)
    return tl.load(llr_ptr + off_l, mask=m, other=0.0).to(tl.float32), m, off_l


@triton.jit
def _edge_t(llr_ptr, r_ptr, idx_ptr, edge, b, bm, nb):
    """Edge ``edge`` of a row group for blocks ``b``: ``t = L − R`` float32 ``[BLOCK_B]``, where
    it is real (``m``: not padding, ``b < nb``) and the offsets of its ``L`` and ``R``."""
    t, m, off_l = _edge_l(llr_ptr, idx_ptr, edge, b, bm, nb)
    off_r = edge.to(tl.int64) * nb + b
    t -= tl.load(r_ptr + off_r, mask=m, other=0.0).to(tl.float32)
    return t, m, off_l, off_r


@triton.jit
def layer_kernel(
    llr_ptr, r_ptr, idx_ptr, nb, z, alpha, beta, pad_llr,
    DEG: tl.constexpr, BLOCK_B: tl.constexpr, OFFSET: tl.constexpr, HALF: tl.constexpr,
):  # fmt: skip
    # One check (row i of the group, lifting index j) × BLOCK_B blocks, one edge at a time:
    # every tensor is [BLOCK_B] (no [DEG_P2, BLOCK_B] tile, no padded edge slots, no reduction
    # across threads; the tile form, as check_update, measured 1.1–2× slower on an H200).
    # Pass 1 folds each edge's t = L − R into min1, min2, the arg-min edge (the first minimum,
    # as argmin) and the sign parity; pass 2 loads t again (the program's own lines, cached)
    # and stores R and L (16 B of HBM traffic per edge).
    chk = tl.program_id(0)
    i = chk // z
    j = chk - i * z
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = b < nb
    min1 = tl.full([BLOCK_B], pad_llr, dtype=tl.float32)
    min2 = tl.full([BLOCK_B], pad_llr, dtype=tl.float32)
    arg = tl.zeros([BLOCK_B], dtype=tl.int32)
    odd = tl.zeros([BLOCK_B], dtype=tl.int32)
    for d in tl.static_range(DEG):
        t, m, _, _ = _edge_t(llr_ptr, r_ptr, idx_ptr, (i * DEG + d) * z + j, b, bm, nb)
        a = tl.where(m, tl.abs(t), pad_llr)
        first = a < min1
        min2 = tl.where(first, min1, tl.minimum(min2, a))
        min1 = tl.where(first, a, min1)
        arg = tl.where(first, d, arg)
        odd = odd ^ ((t.to(tl.int32, bitcast=True) < 0) & m).to(tl.int32)
    m1s, m2s = signed_minima(min1, min2, odd, alpha, beta, OFFSET, HALF)
    for d in tl.static_range(DEG):
        t, m, off_l, off_r = _edge_t(llr_ptr, r_ptr, idx_ptr, (i * DEG + d) * z + j, b, bm, nb)
        mag = tl.where(arg == d, m2s, m1s)
        r = tl.where((t.to(tl.int32, bitcast=True) < 0) & m, -mag, mag)
        tl.store(r_ptr + off_r, r.to(r_ptr.dtype.element_ty), mask=m)
        tl.store(llr_ptr + off_l, (t + r).to(llr_ptr.dtype.element_ty), mask=m)


@triton.jit
def _old_message(m1_old, m2_old, info, arg_old, d):
    """Edge ``d``'s message of the last iteration, rebuilt from the check's compressed state:
    ``±(α·s·min2 on the arg-min edge, α·s·min1 elsewhere)``, negative where its sign bit is set
    (the very value ``layer_kernel`` would have stored)."""
    mag = tl.where(arg_old == d, m2_old, m1_old)
    return tl.where(((info >> d) & 1) != 0, -mag, mag)


@triton.jit
def layer_compressed_kernel(
    llr_ptr, m1_ptr, m2_ptr, info_ptr, idx_ptr, nb, z, alpha, beta, pad_llr,
    DEG: tl.constexpr, BLOCK_B: tl.constexpr, OFFSET: tl.constexpr, HALF: tl.constexpr,
    ARG_SHIFT: tl.constexpr,
):  # fmt: skip
    # As layer_kernel (one check x BLOCK_B blocks, one edge at a time, two passes), but the
    # old messages are rebuilt from the check's compressed state (α·s·min1, α·s·min2, arg-min
    # edge, edge signs) instead of read per edge: L moves 8 B per edge and the state 2 × 12 B
    # (float32) per check. The same values as layer_kernel and the torch path.
    chk = tl.program_id(0)
    i = chk // z
    j = chk - i * z
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = b < nb
    off_c = chk.to(tl.int64) * nb + b
    m1_old = tl.load(m1_ptr + off_c, mask=bm, other=0.0).to(tl.float32)
    m2_old = tl.load(m2_ptr + off_c, mask=bm, other=0.0).to(tl.float32)
    info = tl.load(info_ptr + off_c, mask=bm, other=0)
    arg_old = info >> ARG_SHIFT
    min1 = tl.full([BLOCK_B], pad_llr, dtype=tl.float32)
    min2 = tl.full([BLOCK_B], pad_llr, dtype=tl.float32)
    arg = tl.zeros([BLOCK_B], dtype=tl.int32)
    odd = tl.zeros([BLOCK_B], dtype=tl.int32)
    signs = tl.zeros([BLOCK_B], dtype=tl.int32)
    for d in tl.static_range(DEG):
        # (the VN, its mask and offset, then L, as separate steps: with _edge_l here ptxas
        # used 107 registers per thread at DEG 19 against 72, and the kernel ran 1.3x slower)
        m, off_l = _vn_at(tl.load(idx_ptr + (i * DEG + d) * z + j), b, bm, nb)
        t = tl.load(llr_ptr + off_l, mask=m, other=0.0).to(tl.float32)
        t -= _old_message(m1_old, m2_old, info, arg_old, d)
        a = tl.where(m, tl.abs(t), pad_llr)
        first = a < min1
        min2 = tl.where(first, min1, tl.minimum(min2, a))
        min1 = tl.where(first, a, min1)
        arg = tl.where(first, d, arg)
        neg = ((t.to(tl.int32, bitcast=True) < 0) & m).to(tl.int32)
        odd = odd ^ neg
        signs = signs | (neg << d)
    m1s, m2s = signed_minima(min1, min2, odd, alpha, beta, OFFSET, HALF)
    for d in tl.static_range(DEG):
        t, m, off_l = _edge_l(llr_ptr, idx_ptr, (i * DEG + d) * z + j, b, bm, nb)
        t -= _old_message(m1_old, m2_old, info, arg_old, d)
        mag = tl.where(arg == d, m2s, m1s)
        r = tl.where(((signs >> d) & 1) != 0, -mag, mag)
        tl.store(llr_ptr + off_l, (t + r).to(llr_ptr.dtype.element_ty), mask=m)
    tl.store(m1_ptr + off_c, m1s.to(m1_ptr.dtype.element_ty), mask=bm)
    tl.store(m2_ptr + off_c, m2s.to(m2_ptr.dtype.element_ty), mask=bm)
    tl.store(info_ptr + off_c, signs | (arg << ARG_SHIFT), mask=bm)


@triton.jit(do_not_specialize=["nb"])
def channel_llr_kernel(
    x_ptr, row_ptr, llr_ptr, nb, stride, n, llr_max, BLOCK_P: tl.constexpr, BLOCK_B: tl.constexpr
):  # fmt: skip
    # The received columns into the decoder's LLRs: llr[row[p], b] = 0 − clamp(x[b, p], ±llr_max)
    # (x [nb, n] logits, block-major; llr [V + Z, ≥ nb], batch last, rows ``stride`` apart (the
    # decoder's aligned width); row [n] the VN of each input column). Read along p, written
    # along b (the tile transposed on chip): one pass instead of torch's transposing clamp, row
    # gather and negation. 0 − x, as torch.sub: +0, never −0.
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    pm = p < n
    m = pm[:, None] & (b < nb)[None, :]
    x = tl.load(x_ptr + b[None, :].to(tl.int64) * n + p[:, None], mask=m, other=0.0)
    x = tl.clamp(x, -llr_max, llr_max, propagate_nan=tl.PropagateNan.ALL)
    row = tl.load(row_ptr + p, mask=pm, other=0)
    out = llr_ptr + row[:, None].to(tl.int64) * stride + b[None, :]
    tl.store(out, (0.0 - x).to(llr_ptr.dtype.element_ty), mask=m)


@triton.jit(do_not_specialize=["ncols", "nw"])
def hard_bits_kernel(
    hard_ptr, cols_ptr, dest_ptr, out_ptr, ncols, k, nw,
    BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    # Decoded bits of finished blocks from pack_hard_kernel's words: out[dest[c], j] = bit
    # (cols[c] mod 32) of hard[j, cols[c] // 32] as float32 (1: llr[j, cols[c]] ≤ 0), for the
    # information bits j < k of batch columns cols [ncols] (rows dest of out [*, k]).
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    j = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    cm = c < ncols
    col = tl.load(cols_ptr + c, mask=cm, other=0)
    row = tl.load(dest_ptr + c, mask=cm, other=0)
    m = cm[:, None] & (j < k)[None, :]
    word = tl.load(hard_ptr + j[None, :].to(tl.int64) * nw + (col >> 5)[:, None], mask=m, other=0)
    bit = (word >> (col & 31)[:, None]) & 1
    tl.store(out_ptr + row[:, None].to(tl.int64) * k + j[None, :], bit.to(tl.float32), mask=m)


def kernel(kind: str):
    """``layer_kernel`` (``"edges"``), ``layer_compressed_kernel`` (``"compressed"``),
    ``pack_hard_kernel`` (``"pack_hard"``), ``syndrome_kernel`` (``"syndrome"``),
    ``channel_llr_kernel`` (``"channel_llr"``) or ``hard_bits_kernel`` (``"hard_bits"``).

    Triton picks compiled or interpreted kernels when this module is imported (tests set
    ``TRITON_INTERPRET=1`` and reload it)."""
    kernels = {
        "edges": layer_kernel,
        "compressed": layer_compressed_kernel,
        "pack_hard": pack_hard_kernel,
        "syndrome": syndrome_kernel,
        "channel_llr": channel_llr_kernel,
        "hard_bits": hard_bits_kernel,
    }
    return kernels[kind]


@triton.jit(do_not_specialize=["nb", "nw"])
def pack_hard_kernel(llr_ptr, out_ptr, nb, nw, BLOCK_W: tl.constexpr):
    # Hard decisions, 32 blocks to a word: bit k of out[v, w] = (llr[v, 32·w + k] ≤ 0).
    v = tl.program_id(0).to(tl.int64)
    w = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    k = tl.arange(0, 32)
    b = w[:, None] * 32 + k[None, :]
    x = tl.load(llr_ptr + v * nb + b, mask=b < nb, other=1.0)
    bits = (x <= 0.0).to(tl.int32) << k[None, :]
    tl.store(out_ptr + v * nw + w, tl.sum(bits, axis=1), mask=w < nw)  # disjoint bits: sum = or


@triton.jit(do_not_specialize=["nw"])
def syndrome_kernel(
    hard_ptr, syn_ptr, bad_ptr, checks, nw,
    DMAX: tl.constexpr, DMAX_P2: tl.constexpr, BLOCK_W: tl.constexpr, CHECKS_PER: tl.constexpr,
):  # fmt: skip
    # bad[w] |= OR over CHECKS_PER checks of the XOR of the packed hard bits of the check's VNs
    # (syn [checks, DMAX] VN rows; padding points at an all-zero row): bit k set = block 32·w + k
    # violates a check.
    w = tl.program_id(0) * BLOCK_W + tl.arange(0, BLOCK_W)
    wm = w < nw
    d = tl.arange(0, DMAX_P2)
    acc = tl.zeros([BLOCK_W], dtype=tl.int32)
    c0 = tl.program_id(1) * CHECKS_PER
    for c in range(c0, tl.minimum(c0 + CHECKS_PER, checks)):
        vn = tl.load(syn_ptr + c * DMAX + d, mask=d < DMAX, other=0)
        m = (d < DMAX)[:, None] & wm[None, :]
        x = tl.load(hard_ptr + vn.to(tl.int64)[:, None] * nw + w[None, :], mask=m, other=0)
        acc = acc | tl.xor_sum(x, axis=0)
    tl.atomic_or(bad_ptr + w, acc, mask=wm)
