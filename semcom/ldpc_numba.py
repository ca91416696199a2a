"""The min-sum LDPC decoder on the CPU, compiled by numba (``v2x.semcom.ldpc_minsum``'s
``backend="numba"``; ``"auto"`` on the CPU when numba is installed).

The persistent Triton kernel's algorithm (``ldpc_persistent_triton``) on the host: ``SLOTS``
blocks are decoded side by side, the innermost loops running over them (so the compiler
vectorises them: 64 float32 of one variable node or edge are four 512-bit vectors), every
iteration, the syndrome check and early termination per block in one compiled call; a slot
whose block is done takes the next block. The slots' state (``L [V, SLOTS]``, ``R [E, SLOTS]``,
≈ 1–3 MB for the chain's 1024-bit blocks) stays in the core's caches, where the torch path
makes about 14 passes over ``[edges, blocks]`` tensors per row group and iteration.

**The same numbers.** A block's arithmetic is the torch path's (``ldpc_minsum_torch``),
operation for operation in float32 (no fused multiply-add, no reassociation: numba's default
without ``fastmath``): ``t = L − R``, the smallest ``|t|`` and its first edge, the smallest
other ``|t|`` (equal to it on a tie), the sign parity (sign bits: ``−0`` is negative),
``α·s·max(min − β, 0)``, ``R = ±`` that, ``L = t + R``. So its bits, iteration counts and
convergence flags are the torch path's and the Triton kernels' (tested bit for bit: both base
graphs, several MCS, HARQ mode, early termination on and off). Float32 storage only (the
``fp16`` precision runs the torch path).

The blocks are split over ``torch.get_num_threads()`` threads (the compiled function lets go of
the GIL), each with its own slots. The function is compiled on first use and cached on disk
(``cache=True``: a later process loads it).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from v2x.semcom.block_code_numba import over_threads
from v2x.semcom.ldpc_persistent import PersistentInputs

#: Blocks decoded side by side per thread (2-core VM, 512 blocks: 16 slots 14.2, 32 19.0,
#: 64 21.6, 128 20.2 Mbit/s at MCS 27; docs/benchmarks.md, "Fifty-third session").
SLOTS = 64
#: Scratch rows for one check's edges (the 5G base graphs' rows have degree ≤ 20).
_MAX_DEGREE = 32


@functools.cache
def numba_available() -> bool:
    """Whether numba can be imported (the CPU backend's compiler); asked once per process
    (the decoder asks on every CPU call: a failed import searches the path each time)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def compiled_on_host(t: torch.Tensor) -> bool:
    """Whether work on ``t`` runs compiled by numba (the block code's QAM ends, the quantiser's
    level counts): a CPU tensor that needs no gradient, numba installed."""
    return t.device.type == "cpu" and not t.requires_grad and numba_available()


@functools.cache
def _kernel():
    """``_decode_range`` compiled (numba imported, the function compiled or loaded from the
    disk cache on first use)."""
    import numba

    return numba.njit(cache=True, nogil=True, boundscheck=False)(_decode_range)


def decode_numba(inp: PersistentInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode every block of ``inp.l0 [nb, V]`` (float32 initial internal LLRs, block-major,
    with the index tables and parameters the persistent kernel takes) on the CPU:
    ``hard [nb, hard_rows]`` int8 (``L ≤ 0`` of the first ``hard_rows`` VNs), ``iterations
    [nb]`` int32, ``converged [nb]`` bool."""
    x = inp.l0.detach().to("cpu", torch.float32).contiguous().numpy()
    nb = x.shape[0]
    eidx = np.ascontiguousarray(inp.eidx.detach().cpu().numpy(), dtype=np.int32)
    ginfo = np.ascontiguousarray(inp.ginfo.detach().cpu().numpy(), dtype=np.int32)
    hard = np.zeros((nb, inp.hard_rows), dtype=np.int8)
    iters = np.zeros(nb, dtype=np.int32)
    conv = np.zeros(nb, dtype=np.int8)
    if nb:
        run = _kernel()
        args = (
            x, eidx, ginfo, int(inp.z), int(inp.checks), int(inp.num_iter), int(inp.hard_rows),
            np.float32(inp.alpha), np.float32(inp.beta), np.float32(inp.pad_llr),
            bool(inp.early), bool(inp.beta > 0.0),
        )  # fmt: skip
        outs = (hard, iters, conv, SLOTS)
        # each thread its own blocks and slots (the function lets go of the GIL)
        over_threads(lambda start, stop: run(*args, start, stop, *outs), nb, min_rows=SLOTS)
    return torch.from_numpy(hard), torch.from_numpy(iters), torch.from_numpy(conv).bool()


def _decode_range(
    l0, eidx, ginfo, z, checks, num_iter, hard_rows, alpha, beta, pad_llr, early, offset,
    start, stop, hard, iters, conv, slots,
):  # fmt: skip
    """Blocks ``start .. stop`` of ``l0`` on ``slots`` slots (compiled by ``_kernel``). The
    slot loops run to ``slots``, an argument: with a constant bound the compiler unrolls them
    instead of vectorising them."""
    v = l0.shape[1]
    n_edges = eidx.shape[0]
    n_groups = ginfo.shape[0]
    zero = np.float32(0.0)
    big = np.float32(pad_llr)
    lv = np.zeros((v, slots), dtype=np.float32)  # L of every slot's block
    rv = np.zeros((n_edges, slots), dtype=np.float32)  # its check-to-variable messages
    t = np.empty((_MAX_DEGREE, slots), dtype=np.float32)  # one check's t = L − R
    tbits = t.view(np.int32)  # their bits (the sign bit: −0 is negative)
    min1 = np.empty(slots, dtype=np.float32)
    min2 = np.empty(slots, dtype=np.float32)
    m1s = np.empty(slots, dtype=np.float32)
    m2s = np.empty(slots, dtype=np.float32)
    arg = np.empty(slots, dtype=np.int32)
    odd = np.empty(slots, dtype=np.int32)
    bad = np.empty(slots, dtype=np.int32)
    need = np.empty(slots, dtype=np.int32)
    blk = np.full(slots, -1, dtype=np.int64)  # the block in each slot (−1: none)
    it = np.zeros(slots, dtype=np.int32)
    nxt = start
    active = 0
    for s in range(slots):
        if nxt < stop:
            for r in range(v):
                lv[r, s] = l0[nxt, r]
            blk[s] = nxt
            nxt += 1
            active += 1
    while active > 0:
        if num_iter > 0:  # one layered iteration of every slot (empty ones: finite garbage)
            for g in range(n_groups):
                eoff = ginfo[g, 0]
                ncheck = ginfo[g, 1]
                deg = ginfo[g, 2]
                for c in range(ncheck):
                    i = c // z
                    j = c - i * z
                    for s in range(slots):
                        min1[s] = big
                        min2[s] = big
                        arg[s] = 0
                        odd[s] = 0
                    for d in range(deg):
                        edge = eoff + (i * deg + d) * z + j
                        vn = eidx[edge]
                        if vn < 0:  # padding: |t| = pad_llr, sign + (the update below with
                            # av = pad_llr, written out: one loop shared by both paths, with
                            # t = pad_llr stored first, ran 1.3–1.4× slower)
                            for s in range(slots):
                                m1 = min1[s]
                                hi = big if big > m1 else m1
                                arg[s] = d if big < m1 else arg[s]
                                min2[s] = hi if hi < min2[s] else min2[s]
                                min1[s] = big if big < m1 else m1
                            continue
                        lrow = lv[vn]
                        rrow = rv[edge]
                        trow = t[d]
                        brow = tbits[d]
                        for s in range(slots):
                            tv = lrow[s] - rrow[s]
                            trow[s] = tv
                        for s in range(slots):  # the first arg-min; the smallest other |t|
                            tv = trow[s]
                            av = abs(tv)
                            m1 = min1[s]
                            hi = av if av > m1 else m1
                            arg[s] = d if av < m1 else arg[s]
                            min2[s] = hi if hi < min2[s] else min2[s]
                            min1[s] = av if av < m1 else m1
                            odd[s] ^= (brow[s] >> 31) & 1
                    for s in range(slots):
                        a1 = min1[s]
                        a2 = min2[s]
                        if offset:
                            a1 = a1 - beta
                            a2 = a2 - beta
                            a1 = a1 if a1 > zero else zero
                            a2 = a2 if a2 > zero else zero
                        scale = -alpha if odd[s] else alpha
                        m1s[s] = a1 * scale
                        m2s[s] = a2 * scale
                    for d in range(deg):
                        edge = eoff + (i * deg + d) * z + j
                        vn = eidx[edge]
                        if vn < 0:
                            continue
                        lrow = lv[vn]
                        rrow = rv[edge]
                        trow = t[d]
                        brow = tbits[d]
                        for s in range(slots):
                            mag = m2s[s] if arg[s] == d else m1s[s]
                            r = -mag if brow[s] < 0 else mag
                            rrow[s] = r
                            lrow[s] = trow[s] + r
            for s in range(slots):
                if blk[s] >= 0:
                    it[s] += 1
        # the slots checked now, and whose hard decision violates a parity check
        n_need = 0
        for s in range(slots):
            last = it[s] == num_iter
            need[s] = 1 if (blk[s] >= 0 and (last or (early and it[s] > 0))) else 0
            bad[s] = 0 if need[s] else 1
            n_need += need[s]
        if n_need == 0:
            continue
        left = n_need
        for g in range(n_groups):
            if left == 0:
                break
            eoff = ginfo[g, 0]
            deg = ginfo[g, 2]
            c0 = ginfo[g, 3]
            nc = min(ginfo[g, 1], checks - c0)
            for c in range(nc):
                i = c // z
                j = c - i * z
                for s in range(slots):
                    odd[s] = 0
                for d in range(deg):
                    vn = eidx[eoff + (i * deg + d) * z + j]
                    if vn >= 0:
                        lrow = lv[vn]
                        for s in range(slots):
                            odd[s] ^= 1 if lrow[s] <= zero else 0
                left = 0
                for s in range(slots):
                    bad[s] |= odd[s]
                    left += 1 - bad[s]
                if left == 0:
                    break
            if c0 + nc >= checks:
                break
        for s in range(slots):
            if need[s] == 0 or (bad[s] != 0 and it[s] != num_iter):
                continue
            b = blk[s]  # done: its hard decision, iterations and verdict; the next block
            for r in range(hard_rows):
                hard[b, r] = 1 if lv[r, s] <= zero else 0
            iters[b] = it[s]
            conv[b] = 1 - bad[s]
            it[s] = 0
            if nxt < stop:
                for r in range(v):
                    lv[r, s] = l0[nxt, r]
                for r in range(n_edges):
                    rv[r, s] = zero
                blk[s] = nxt
                nxt += 1
            else:
                blk[s] = -1
                active -= 1
