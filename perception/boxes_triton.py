"""Exact rotated BEV intersection areas in one Triton kernel launch (CUDA).

The same construction as ``boxes._intersection_area_quads`` (its torch form is the reference):
each pair is shifted to its own origin (the midpoint of the two centres); its 24 candidate
vertices are the 4 corners of either box that lie inside the other (up to the same scale-aware
tolerance) and the 16 edge-edge crossings; the valid ones are ordered by pseudo-angle about
their mean and integrated with the shoelace formula. Each program holds ``BLOCK`` pairs × 32
candidate slots in registers and sorts each pair's (pseudo-angle, slot) keys there
(``tl.sort``), so nothing is written to memory between the steps. The torch form runs ~60
operators per call (60 launches and their host time on a GPU); this is one launch.

Two entry points:

* ``pairwise_intersection_triton(a [B, N, 7], b [B, M, 7]) -> [B, N, M]``: every pair of a
  batch element; pairs whose circumscribed circles do not overlap are exactly 0 (as in the
  torch form), and a program whose pairs all miss skips the construction.
* ``aligned_intersection_triton(a [P, 7], b [P, 7]) -> [P]``: pair ``i`` is ``(a[i], b[i])``.

Float32 or float64 boxes (the arithmetic is in the input's dtype). Areas agree with the torch
form to float rounding (the sums run in another order), not bit for bit. No autograd: the
callers (``boxes._pairwise_intersection``, ``boxes._pair_intersection``) use it in inference
only. Imported with ``TRITON_INTERPRET=1`` the kernels run on CPU tensors (tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

#: pairs per program (each 32 candidate slots)
BLOCK = 8
#: batch elements per launch of ``pairwise_kernel`` (CUDA's limit on a grid's y axis)
MAX_GRID_Y = 65535


@triton.jit
def corner(cx, cy, hl, hw, c, s, k):
    """Corner ``k`` (0..3, CCW from front-left: (+l, +w), (-l, +w), (-l, -w), (+l, -w))
    of boxes centred at ``(cx, cy)`` with half sizes ``hl, hw`` and ``cos, sin`` of the
    yaw ``c, s`` (all broadcastable with ``k``)."""
    sx = tl.where((k == 0) | (k == 3), hl, -hl)
    sy = tl.where(k < 2, hw, -hw)
    return c * sx - s * sy + cx, s * sx + c * sy + cy


@triton.jit
def inside(px, py, cx, cy, hl, hw, c, s, tol):
    """Points ``(px, py)`` ``[BLOCK, 32]`` on the inner side of all 4 CCW edges of the box
    ``[BLOCK, 1]`` (up to ``tol`` × the edge's length)."""
    ok = tl.zeros_like(px) == 0  # all True, of the points' shape
    for k in tl.static_range(4):
        qx, qy = corner(cx, cy, hl, hw, c, s, tl.full([1, 1], k, tl.int32))
        nx, ny = corner(cx, cy, hl, hw, c, s, tl.full([1, 1], (k + 1) % 4, tl.int32))
        ex, ey = nx - qx, ny - qy
        side = ex * py - ey * px
        offset = ex * qy - ey * qx
        ok = ok & (side - offset >= -(tol * tl.sqrt(ex * ex + ey * ey)))
    return ok


@triton.jit
def pair_area(ax, ay, al, aw, ayaw, bx, by, bl, bw, byaw, EPS: tl.constexpr):
    """Intersection areas ``[BLOCK]`` of the boxes ``(x, y, l, w, yaw)`` given as
    ``[BLOCK]`` vectors."""
    ox, oy = 0.5 * (ax + bx), 0.5 * (ay + by)
    acx, acy = (ax - ox)[:, None], (ay - oy)[:, None]
    bcx, bcy = (bx - ox)[:, None], (by - oy)[:, None]
    ahl, ahw = (0.5 * al)[:, None], (0.5 * aw)[:, None]
    bhl, bhw = (0.5 * bl)[:, None], (0.5 * bw)[:, None]
    ac, as_ = tl.cos(ayaw)[:, None], tl.sin(ayaw)[:, None]
    bc, bs = tl.cos(byaw)[:, None], tl.sin(byaw)[:, None]
    # scale-aware tolerance: the largest corner coordinate of the pair
    q = tl.arange(0, 4)[None, :]
    qax, qay = corner(acx, acy, ahl, ahw, ac, as_, q)
    qbx, qby = corner(bcx, bcy, bhl, bhw, bc, bs, q)
    big = tl.maximum(tl.maximum(tl.abs(qax), tl.abs(qay)),
                     tl.maximum(tl.abs(qbx), tl.abs(qby)))  # fmt: skip
    tol = (tl.maximum(tl.max(big, axis=1), 1e-12) * (64.0 * EPS))[:, None]  # [BLOCK, 1]

    # candidate slots: 0-3 a's corners, 4-7 b's corners, 8-23 crossings of a's edge
    # (p - 8) // 4 with b's edge (p - 8) % 4, 24-31 unused
    p = tl.arange(0, 32)[None, :]
    is_a, is_b = p < 4, (p >= 4) & (p < 8)
    is_x = (p >= 8) & (p < 24)
    i = tl.where(is_a, p, tl.where(is_x, (p - 8) // 4, 0))
    j = tl.where(is_b, p - 4, tl.where(is_x, (p - 8) % 4, 0))
    pax, pay = corner(acx, acy, ahl, ahw, ac, as_, i)
    nax, nay = corner(acx, acy, ahl, ahw, ac, as_, (i + 1) % 4)
    pbx, pby = corner(bcx, bcy, bhl, bhw, bc, bs, j)
    nbx, nby = corner(bcx, bcy, bhl, bhw, bc, bs, (j + 1) % 4)
    dax, day = nax - pax, nay - pay
    dbx, dby = nbx - pbx, nby - pby
    # edge-edge crossings a_i + t da_i = b_j + u db_j (parallel edges: none)
    denom = dax * dby - day * dbx
    len_ab = tl.sqrt(dax * dax + day * day) * tl.sqrt(dbx * dbx + dby * dby)
    crosses = tl.abs(denom) > len_ab * (16.0 * EPS)
    safe = tl.where(crosses, denom, 1.0)
    abx, aby = pbx - pax, pby - pay
    t = (abx * dby - aby * dbx) / safe
    u = (abx * day - aby * dax) / safe
    slack = 16.0 * EPS
    # 1 - t, not t <= 1 + slack: a compiled constant is float32, where 1 + slack is 1
    crosses &= (t >= -slack) & (1.0 - t >= -slack) & (u >= -slack) & (1.0 - u >= -slack)
    px = tl.where(is_a, pax, tl.where(is_b, pbx, pax + t * dax))
    py = tl.where(is_a, pay, tl.where(is_b, pby, pay + t * day))
    in_b = inside(px, py, bcx, bcy, bhl, bhw, bc, bs, tol)
    in_a = inside(px, py, acx, acy, ahl, ahw, ac, as_, tol)
    valid = tl.where(is_a, in_b, tl.where(is_b, in_a, is_x & crosses))

    # order the valid vertices by pseudo-angle about their mean: one sort of (angle, slot)
    # packed in an int64 (a positive float's bits order as the float), so the order is one
    # permutation whichever rounding of a key it sees; invalid slots sort last
    w = valid.to(px.dtype)
    n = tl.sum(valid.to(tl.int32), axis=1)  # [BLOCK]
    nf = tl.maximum(n, 1).to(px.dtype)[:, None]
    rx = px - (tl.sum(px * w, axis=1)[:, None] / nf)
    ry = py - (tl.sum(py * w, axis=1)[:, None] / nf)
    size = tl.abs(rx) + tl.abs(ry)
    ratio = tl.where(size > 0, ry / tl.where(size > 0, size, 1.0), 0.0)
    key = tl.where(valid, tl.where(rx < 0, 4.0 - ratio, ratio + 2.0), 12.0)  # (1, 5], 12
    slot = p.to(tl.int64)
    if key.dtype == tl.float64:  # the mantissa's last 5 bits give way to the slot
        packed = (key.to(tl.int64, bitcast=True) & -32) | slot
    else:
        packed = (key.to(tl.int32, bitcast=True).to(tl.int64) << 5) | slot
    order = (tl.sort(packed, dim=1) & 31).to(tl.int32)  # [BLOCK, 32] slots by angle
    sx, sy = tl.gather(rx, order, axis=1), tl.gather(ry, order, axis=1)
    rank = tl.arange(0, 32)[None, :]
    following = tl.where(rank + 1 < n[:, None], rank + 1, 0)  # the last one's is the first
    nx, ny = tl.gather(sx, following, axis=1), tl.gather(sy, following, axis=1)
    term = tl.where(rank < n[:, None], sx * ny - nx * sy, 0.0)
    area = tl.maximum(0.5 * tl.sum(term, axis=1), 0.0)
    return tl.where(n >= 3, area, 0.0)


@triton.jit
def load_boxes(ptr, row, live):
    """``(x, y, l, w, yaw)`` of the boxes ``ptr[row, :]`` of a ``[.., 7]`` table, each
    ``[BLOCK]``; a dummy 1 m × 1 m box at the origin where not ``live``."""
    x = tl.load(ptr + row * 7, mask=live, other=0.0)
    y = tl.load(ptr + row * 7 + 1, mask=live, other=0.0)
    length = tl.load(ptr + row * 7 + 3, mask=live, other=1.0)
    width = tl.load(ptr + row * 7 + 4, mask=live, other=1.0)
    yaw = tl.load(ptr + row * 7 + 6, mask=live, other=0.0)
    return x, y, length, width, yaw


@triton.jit
def circles_meet(ax, ay, al, aw, bx, by, bl, bw):
    """Whether the boxes' circumscribed circles overlap (the torch form's test; every other
    pair's intersection is exactly 0)."""
    reach = 0.5 * tl.sqrt(al * al + aw * aw) + 0.5 * tl.sqrt(bl * bl + bw * bw)
    dx, dy = ax - bx, ay - by
    return tl.sqrt(dx * dx + dy * dy) <= reach * (1.0 + 1e-6)


@triton.jit
def iou_of(area, al, aw, bl, bw):
    """As ``boxes.rotated_iou_bev``: intersection / union, clamped to [0, 1] (0 where the
    union is 0)."""
    union = al * aw + bl * bw - area
    positive = union > 0
    return tl.where(positive, tl.minimum(tl.maximum(area / tl.where(positive, union, 1.0),
                                                    0.0), 1.0), 0.0)  # fmt: skip


@triton.jit
def pairwise_kernel(a_ptr, b_ptr, out_ptr, n, m, IOU: tl.constexpr, EPS: tl.constexpr,
                    BLOCK: tl.constexpr):  # fmt: skip
    e = tl.program_id(1).to(tl.int64)
    q = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = q < n * m
    ax, ay, al, aw, ayaw = load_boxes(a_ptr, e * n + q // m, live)
    bx, by, bl, bw, byaw = load_boxes(b_ptr, e * m + q % m, live)
    near = live & circles_meet(ax, ay, al, aw, bx, by, bl, bw)
    area = tl.zeros([BLOCK], dtype=ax.dtype)
    if tl.max(near.to(tl.int32), axis=0) > 0:  # else every pair of the program is 0
        area = pair_area(ax, ay, al, aw, ayaw, bx, by, bl, bw, byaw, EPS)
        area = tl.where(near, area, 0.0)
    if IOU:
        area = iou_of(area, al, aw, bl, bw)
    tl.store(out_ptr + e * n * m + q, area, mask=live)


@triton.jit
def aligned_kernel(a_ptr, b_ptr, out_ptr, count, EPS: tl.constexpr,
                   BLOCK: tl.constexpr):  # fmt: skip
    q = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = q < count
    ax, ay, al, aw, ayaw = load_boxes(a_ptr, q, live)
    bx, by, bl, bw, byaw = load_boxes(b_ptr, q, live)
    area = pair_area(ax, ay, al, aw, ayaw, bx, by, bl, bw, byaw, EPS)
    tl.store(out_ptr + q, area, mask=live)


def pairwise_intersection_triton(
    a: torch.Tensor, b: torch.Tensor, iou: bool = False
) -> torch.Tensor:
    """BEV intersection areas (m²) of every pair: ``a [B, N, 7]``, ``b [B, M, 7]`` (same dtype,
    float32 or float64) → ``[B, N, M]``; 0 where the circumscribed circles do not overlap. With
    ``iou``: their IoU instead (``boxes.rotated_iou_bev``). ``N · M`` below 2**31 (the kernel's
    int32 pair index; ``boxes`` takes the torch form beyond)."""
    if a.dtype != b.dtype or a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"a [B, N, 7] and b [B, M, 7] of one dtype, got {tuple(a.shape)} {a.dtype}, "
            f"{tuple(b.shape)} {b.dtype}"
        )
    bsz, n, m = a.shape[0], a.shape[1], b.shape[1]
    out = torch.empty(bsz, n, m, dtype=a.dtype, device=a.device)
    if out.numel() == 0:
        return out
    a, b = a.contiguous(), b.contiguous()
    for start in range(0, bsz, MAX_GRID_Y):  # the batch is the grid's y axis (≤ 65,535)
        part = slice(start, start + MAX_GRID_Y)
        grid = (triton.cdiv(n * m, BLOCK), out[part].shape[0])
        pairwise_kernel[grid](
            a[part], b[part], out[part], n, m, IOU=iou, BLOCK=BLOCK, EPS=torch.finfo(a.dtype).eps
        )
    return out


def aligned_intersection_triton(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """BEV intersection areas (m²) of the pairs ``(a[i], b[i])``: ``[P, 7], [P, 7]`` (same
    dtype, float32 or float64) → ``[P]``."""
    if a.dtype != b.dtype or a.shape != b.shape or a.dim() != 2:
        raise ValueError(
            f"a and b [P, 7] of one dtype, got {tuple(a.shape)} {a.dtype}, "
            f"{tuple(b.shape)} {b.dtype}"
        )
    out = torch.empty(a.shape[0], dtype=a.dtype, device=a.device)
    if out.numel() == 0:
        return out
    grid = (triton.cdiv(a.shape[0], BLOCK),)
    aligned_kernel[grid](
        a.contiguous(), b.contiguous(), out, a.shape[0], BLOCK=BLOCK, EPS=torch.finfo(a.dtype).eps
    )
    return out


__all__ = [
    "aligned_intersection_triton",
    "pairwise_intersection_triton",
]
