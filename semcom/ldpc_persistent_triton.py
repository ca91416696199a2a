"""Persistent Triton kernel of the min-sum LDPC decoder (``v2x.semcom.ldpc_minsum``): ONE launch
decodes every block, all iterations, the syndrome check and early termination included.

Each program owns ``CB`` block *slots* and loops: every row group of one layered iteration for
its running slots (a barrier between groups: layered decoding is sequential), then the syndrome
of the slots that may stop (per check tile, leaving the loop as soon as every such slot violates
a check), then the slots that are done write their hard decisions, iteration count and
codeword flag and take the next blocks from a global counter (one atomic per program and
round). A block's arithmetic is the one of ``ldpc_minsum_triton.layer_kernel`` (same helpers),
so its bits and iteration count are those of the per-row-group launches, whatever the slot,
program or configuration that decodes it.

Layouts: ``l0 [nb, V]`` initial internal LLRs of the decoded VNs (block-major); per program
``p`` a slot state ``sl [p, V, CB]`` (LLRs) and ``sr [p, E, CB]`` (one message per edge, edges
of all row groups concatenated, each group ``[rows, degree, Z]`` as ``layer_kernel``'s), batch
last so a VN row of the ``CB`` slots is one contiguous ``4·CB``-byte segment. The slot state is
only ever touched by its program: with few slots in flight it stays in L2 across iterations.
Index tables: ``eidx`` int32 VN of every edge (−1 padding), ``ginfo [groups, 4]`` int32 (first
edge, checks = rows·Z, degree, first check): the syndrome walks the same tables. Outputs:
``hard [nb, hv]`` int8 (``L ≤ 0`` of the first ``hv`` VNs: the information bits, or all ``V``
for the codeword), ``iters [nb]`` int32, ``conv [nb]`` int8.
"""

from __future__ import annotations

import triton
import triton.language as tl

from v2x.semcom.ldpc_minsum_triton import check_edges, check_update


@triton.jit
def _group_tiles(
    slb, srb, eidx_ptr, eoff, ncheck, deg, z, lane, keep, alpha, beta, pad_llr,
    DEG_P2: tl.constexpr, CHK: tl.constexpr, CB: tl.constexpr, OFFSET: tl.constexpr,
    HALF: tl.constexpr,
):  # fmt: skip
    # One row group, CHK checks × DEG_P2 edges × CB slots at a time. Every slot is updated:
    # when this runs, the slots not running hold no block (a slot at num_iter iterations is
    # written out and refilled before), and a mask uniform along the slots keeps the 4·CB-byte
    # rows vector loads. ``keep`` [CB] is 0.0 in a block's first iteration: its old messages
    # are then 0 (the slot's stale, finite messages times 0 is ±0, and L − (±0) = L exactly, as
    # a fresh L is never −0), so a new block's messages need no clearing. Tiles are
    # [DEG_P2, CHK, CB]: Triton lays threads along the edges first (after the slots), so the
    # reductions over a check's edges stay within a warp.
    d = tl.arange(0, DEG_P2)[:, None]
    for c0 in range(0, ncheck, CHK):
        chk = c0 + tl.arange(0, CHK)[None, :]
        edge, vn = check_edges(eidx_ptr + eoff, chk, d, z, deg, chk < ncheck)
        m = (vn >= 0)[:, :, None]
        off_l = vn[:, :, None] * CB + lane[None, None, :]
        off_r = (eoff + edge)[:, :, None] * CB + lane[None, None, :]
        t = tl.load(slb + off_l, mask=m, other=0.0, cache_modifier=".cg").to(tl.float32)
        r_old = tl.load(srb + off_r, mask=m, other=0.0, cache_modifier=".cg").to(tl.float32)
        t -= r_old * keep[None, None, :]
        r, m1s, m2s, arg, neg = check_update(
            t, m, d[:, :, None], alpha, beta, pad_llr, OFFSET, HALF, 0
        )
        tl.store(srb + off_r, r.to(srb.dtype.element_ty), mask=m)
        tl.store(slb + off_l, (t + r).to(slb.dtype.element_ty), mask=m)


@triton.jit
def _iteration(
    slb, srb, eidx_ptr, ginfo_ptr, n_groups, z, lane, keep, alpha, beta, pad_llr,
    TILE: tl.constexpr, CB: tl.constexpr, OFFSET: tl.constexpr, HALF: tl.constexpr,
):  # fmt: skip
    # One layered iteration: the row groups in order, tiles sized by the group's degree class.
    for g in range(n_groups):
        eoff = tl.load(ginfo_ptr + 4 * g)
        ncheck = tl.load(ginfo_ptr + 4 * g + 1)
        deg = tl.load(ginfo_ptr + 4 * g + 2)
        if deg <= 4:
            _group_tiles(
                slb, srb, eidx_ptr, eoff, ncheck, deg, z, lane, keep, alpha, beta, pad_llr,
                4, TILE // (4 * CB), CB, OFFSET, HALF,
            )  # fmt: skip
        elif deg <= 8:
            _group_tiles(
                slb, srb, eidx_ptr, eoff, ncheck, deg, z, lane, keep, alpha, beta, pad_llr,
                8, TILE // (8 * CB), CB, OFFSET, HALF,
            )  # fmt: skip
        elif deg <= 16:
            _group_tiles(
                slb, srb, eidx_ptr, eoff, ncheck, deg, z, lane, keep, alpha, beta, pad_llr,
                16, TILE // (16 * CB), CB, OFFSET, HALF,
            )  # fmt: skip
        else:
            _group_tiles(
                slb, srb, eidx_ptr, eoff, ncheck, deg, z, lane, keep, alpha, beta, pad_llr,
                32, TILE // (32 * CB), CB, OFFSET, HALF,
            )  # fmt: skip
        tl.debug_barrier()  # the next group reads LLRs other threads wrote


@triton.jit
def _group_bad(
    slb, eidx_ptr, eoff, nc, deg, z, lane, bad,
    DEG_P2: tl.constexpr, CHK: tl.constexpr, CB: tl.constexpr,
):  # fmt: skip
    # ``bad`` or-ed with "violates one of the group's first ``nc`` checks", CHK checks at a
    # time, until every slot is bad.
    d = tl.arange(0, DEG_P2)[:, None]  # [DEG_P2, CHK, CB] tiles, as _group_tiles
    c0 = nc * 0
    go = (c0 < nc) & (tl.sum((bad == 0).to(tl.int32), axis=0) > 0)
    while go:
        chk = c0 + tl.arange(0, CHK)[None, :]
        edge, vn = check_edges(eidx_ptr + eoff, chk, d, z, deg, chk < nc)
        x = tl.load(
            slb + vn[:, :, None] * CB + lane[None, None, :], mask=(vn >= 0)[:, :, None],
            other=1.0, cache_modifier=".cg",
        ).to(tl.float32)  # fmt: skip
        par = tl.sum((x <= 0.0).to(tl.int32), axis=0) & 1  # [CHK, CB]
        bad = bad | (tl.max(par, axis=0) > 0)
        c0 += CHK
        go = (c0 < nc) & (tl.sum((bad == 0).to(tl.int32), axis=0) > 0)
    return bad


@triton.jit
def _syndrome_bad(
    slb, eidx_ptr, ginfo_ptr, n_groups, z, checks, lane, need,
    TILE: tl.constexpr, CB: tl.constexpr,
):  # fmt: skip
    # [CB] bool: the slot's hard decision violates one of the first ``checks`` parity checks
    # (exact for the slots in ``need``; True for the others). The checks are the row groups'
    # (check ``c0 + i·Z + j`` of the group starting at check ``c0``; the same VNs as Sionna's
    # pruned PCM rows), in tiles of the group's degree class; stops once every needed slot has
    # a violation.
    bad = need == 0
    g = n_groups * 0
    go = tl.sum((bad == 0).to(tl.int32), axis=0) > 0
    while go:
        eoff = tl.load(ginfo_ptr + 4 * g)
        c0 = tl.load(ginfo_ptr + 4 * g + 3)
        nc = tl.minimum(tl.load(ginfo_ptr + 4 * g + 1), checks - c0)
        deg = tl.load(ginfo_ptr + 4 * g + 2)
        if deg <= 4:
            bad = _group_bad(slb, eidx_ptr, eoff, nc, deg, z, lane, bad, 4, TILE // (4 * CB), CB)
        elif deg <= 8:
            bad = _group_bad(slb, eidx_ptr, eoff, nc, deg, z, lane, bad, 8, TILE // (8 * CB), CB)
        elif deg <= 16:
            bad = _group_bad(slb, eidx_ptr, eoff, nc, deg, z, lane, bad, 16, TILE // (16 * CB), CB)
        else:
            bad = _group_bad(slb, eidx_ptr, eoff, nc, deg, z, lane, bad, 32, TILE // (32 * CB), CB)
        g += 1
        go = (g < n_groups) & (c0 + nc < checks)
        go = go & (tl.sum((bad == 0).to(tl.int32), axis=0) > 0)
    return bad


@triton.jit
def _load_blocks(l0_ptr, slb, blk, fresh, v, lane, CB: tl.constexpr, VCH: tl.constexpr):
    # Slots ``fresh`` start block ``blk``: LLRs from l0 [nb, V] (messages: see ``keep``).
    rows = tl.arange(0, VCH)[:, None]
    src = l0_ptr + blk.to(tl.int64)[None, :] * v
    for v0 in range(0, v, VCH):
        vv = v0 + rows
        m = (vv < v) & fresh[None, :]
        x = tl.load(src + vv, mask=m, other=0.0)
        tl.store(slb + vv * CB + lane[None, :], x, mask=m)


@triton.jit
def _write_hard(slb, hard_ptr, blk, done, hv, lane, CB: tl.constexpr, VCH: tl.constexpr):
    # hard[blk, :hv] = (L ≤ 0) of the first hv VNs of the slots ``done``.
    rows = tl.arange(0, VCH)[:, None]
    dst = hard_ptr + blk.to(tl.int64)[None, :] * hv
    for v0 in range(0, hv, VCH):
        vv = v0 + rows
        m = (vv < hv) & done[None, :]
        x = tl.load(slb + vv * CB + lane[None, :], mask=m, other=1.0, cache_modifier=".cg")
        tl.store(dst + vv, (x.to(tl.float32) <= 0.0).to(tl.int8), mask=m)


@triton.jit(do_not_specialize=["nb", "v", "e", "z", "n_groups", "checks", "num_iter", "hv"])
def decode_kernel(
    l0_ptr, sl_ptr, sr_ptr, hard_ptr, iters_ptr, conv_ptr, counter_ptr,
    eidx_ptr, ginfo_ptr,
    nb, v, e, z, n_groups, checks, num_iter, hv, alpha, beta, pad_llr,
    EARLY: tl.constexpr, OFFSET: tl.constexpr, HALF: tl.constexpr, CB: tl.constexpr,
    TILE: tl.constexpr,
):  # fmt: skip
    p = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, CB)
    slb = sl_ptr + p * v * CB
    srb = sr_ptr + p * e * CB
    blk = tl.atomic_add(counter_ptr, CB) + lane
    active = blk < nb
    _load_blocks(l0_ptr, slb, blk, active, v, lane, CB, 2 * TILE // CB)
    it = tl.zeros([CB], dtype=tl.int32)
    tl.debug_barrier()
    go = tl.sum(active.to(tl.int32), axis=0) > 0
    while go:
        run = active & (it < num_iter)  # every active slot, unless num_iter = 0
        if tl.sum(run.to(tl.int32), axis=0) > 0:
            _iteration(
                slb, srb, eidx_ptr, ginfo_ptr, n_groups, z, lane, (it > 0).to(tl.float32),
                alpha, beta, pad_llr, TILE, CB, OFFSET, HALF,
            )  # fmt: skip
            it += run.to(tl.int32)
        last = it == num_iter
        need = active & (last | (it > 0)) if EARLY else active & last
        bad = _syndrome_bad(slb, eidx_ptr, ginfo_ptr, n_groups, z, checks, lane, need, TILE, CB)
        done = need & (last | (bad == 0))
        n_done = tl.sum(done.to(tl.int32), axis=0)
        if n_done > 0:
            _write_hard(slb, hard_ptr, blk, done, hv, lane, CB, 2 * TILE // CB)
            tl.store(iters_ptr + blk, it, mask=done)
            tl.store(conv_ptr + blk, (bad == 0).to(tl.int8), mask=done)
            tl.debug_barrier()  # the written slots are refilled below
            base = tl.atomic_add(counter_ptr, n_done)
            blk = tl.where(done, base + tl.cumsum(done.to(tl.int32), axis=0) - 1, blk)
            fresh = done & (blk < nb)
            active = (active & (done == 0)) | fresh
            it = tl.where(done, 0, it)
            _load_blocks(l0_ptr, slb, blk, fresh, v, lane, CB, 2 * TILE // CB)
            tl.debug_barrier()
        go = tl.sum(active.to(tl.int32), axis=0) > 0


def kernel():
    """``decode_kernel`` (compiled, or interpreted when ``TRITON_INTERPRET=1`` was set before
    this module was imported)."""
    return decode_kernel
