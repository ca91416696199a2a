"""The greedy NMS solve on CUDA in one Triton launch, with no host sync.

``nms.greedy_suppression_pairs`` solves the greedy system by repeated sweeps over the suppressing
pairs, testing for a fixed point on the host every two sweeps (a sync that drains the device's
queue, 2–4 per call, and ~10 launches per test). ``greedy_keep_triton`` takes the same pairs,
scatters them into a ``[B, K, K]`` table (``sup[b, i, j]``: the higher-ranked ``j`` would
suppress ``i``) and walks each set's ranked boxes in one program: box ``i`` is kept iff it is
valid and no kept ``j < i`` suppresses it (row ``i`` of the table against the keep mask held in
registers). The same keep mask (the greedy solution is unique).

``rotated_nms_keep_triton`` also builds that table on the device, with no host sync: one
program per ``BLOCK`` slots of a set's ``K × K`` table tests each ranked pair as
``nms._suppression_pairs`` does (both valid, one class, circumscribed circles meeting) and
computes the pair's exact IoU with ``boxes_triton``'s construction (the same function of the
same two boxes that ``boxes.rotated_iou_bev_aligned`` runs on CUDA). The pair list needs two
syncs (the sets' used columns and the pair count, each draining the device's queue: measured
on an H200, NMS then kept the device idle for about half its wall time in a sweep); the table
needs none. Imported with ``TRITON_INTERPRET=1`` the kernels run on CPU tensors (tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from v2x.perception.boxes_triton import BLOCK, MAX_GRID_Y, circles_meet, load_boxes, pair_area


@triton.jit
def greedy_kernel(sup_ptr, valid_ptr, keep_ptr, k, KP: tl.constexpr):
    e = tl.program_id(0).to(tl.int64)
    j = tl.arange(0, KP)
    keep = tl.zeros([KP], dtype=tl.int1)
    for i in range(0, k):
        row = tl.load(sup_ptr + e * k * k + i * k + j, mask=j < i, other=0) != 0
        free = tl.max((row & keep).to(tl.int32), axis=0) == 0
        kept = (tl.load(valid_ptr + e * k + i) != 0) & free
        keep = tl.where(j == i, kept, keep)
    tl.store(keep_ptr + e * k + j, keep.to(tl.int8), mask=j < k)


def greedy_keep_triton(
    first: torch.Tensor, second: torch.Tensor, overlap: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """``nms.greedy_suppression_pairs``'s contract: flat pair indices ``first [P]`` (the
    higher-ranked box, ``b * K + i``), ``second [P]`` (``b * K + j``, ``j > i``; pairs may
    repeat), ``overlap [P]`` bool and ``valid [B, K]`` bool → the ``[B, K]`` bool keep mask."""
    b, k = valid.shape
    if b == 0 or k == 0:
        return torch.zeros(b, k, dtype=torch.bool, device=valid.device)
    sup = torch.zeros(b * k * k, dtype=torch.int32, device=valid.device)
    if first.numel():  # amax: exact and deterministic where a pair repeats
        slot = (second // k) * (k * k) + (second % k) * k + first % k
        sup.scatter_reduce_(0, slot, overlap.to(torch.int32), reduce="amax")
    return _greedy_walk(sup, valid)


def _greedy_walk(sup: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The ``[B, K]`` bool keep mask from the ``[B·K·K]`` int32 table ``sup[b, i, j]`` (the
    higher-ranked ``j`` would suppress ``i``) and ``valid [B, K]``: one program per set."""
    b, k = valid.shape
    keep = torch.zeros(b, k, dtype=torch.int8, device=valid.device)
    flags = valid.to(torch.int8).contiguous()
    greedy_kernel[(b,)](sup, flags, keep, k, KP=triton.next_power_of_2(k))
    return keep.bool()


@triton.jit
def suppression_kernel(boxes_ptr, valid_ptr, labels_ptr, params_ptr, sup_ptr, k,
                       HAS_LABELS: tl.constexpr, EPS: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """``sup[e, i, j]`` for ``BLOCK`` slots ``q = i·K + j`` of set ``e``: 1 where the
    higher-ranked ``j < i`` would suppress ``i`` (both valid, one class, circles meeting,
    IoU > ``params[0]``; the union clamped below at ``params[1]``, as the torch form)."""
    e = tl.program_id(1).to(tl.int64)
    q = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = q < k * k
    low, high = q // k, q % k  # ranks: the box that may be suppressed, the one that would
    live = inside & (high < low)
    live = live & (tl.load(valid_ptr + e * k + low, mask=live, other=0) != 0)
    live = live & (tl.load(valid_ptr + e * k + high, mask=live, other=0) != 0)
    if HAS_LABELS:
        mine = tl.load(labels_ptr + e * k + low, mask=live, other=0)
        live = live & (mine == tl.load(labels_ptr + e * k + high, mask=live, other=0))
    ax, ay, al, aw, ayaw = load_boxes(boxes_ptr, e * k + high, live)
    bx, by, bl, bw, byaw = load_boxes(boxes_ptr, e * k + low, live)
    near = live & circles_meet(ax, ay, al, aw, bx, by, bl, bw)
    hit = tl.zeros([BLOCK], dtype=tl.int32)
    if tl.max(near.to(tl.int32), axis=0) > 0:  # else no pair of the program overlaps
        area = pair_area(ax, ay, al, aw, ayaw, bx, by, bl, bw, byaw, EPS)
        threshold, tiny = tl.load(params_ptr), tl.load(params_ptr + 1)
        union = al * aw + bl * bw - area
        iou = tl.minimum(tl.maximum(area / tl.maximum(union, tiny), 0.0), 1.0)
        hit = (near & (iou > threshold)).to(tl.int32)
    tl.store(sup_ptr + e * k * k + q, hit, mask=inside)


def rotated_nms_keep_triton(
    boxes: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor | None, threshold: float
) -> torch.Tensor:
    """Greedy rotated NMS of ranked sets with no host sync: ``boxes [B, K, 7]`` (best first,
    float32 or float64, padding neutralised), ``valid [B, K]`` bool, ``labels [B, K]`` integer
    classes or ``None`` (class-agnostic) → the ``[B, K]`` bool keep mask, as
    ``greedy_keep_triton`` gives it from ``nms._suppression_pairs``'s pairs."""
    b, k = valid.shape
    if b == 0 or k == 0:
        return torch.zeros(b, k, dtype=torch.bool, device=valid.device)
    # the threshold and the union's floor in the boxes' dtype, as the torch form compares them
    # (written on the device: a copy from the host would wait for its queue)
    params = torch.full((2,), float(threshold), dtype=boxes.dtype, device=boxes.device)
    params[1] = torch.finfo(boxes.dtype).tiny
    boxes, flags = boxes.contiguous(), valid.to(torch.int8).contiguous()
    classes = flags if labels is None else labels.contiguous()
    sup = torch.empty(b * k * k, dtype=torch.int32, device=valid.device)
    for start in range(0, b, MAX_GRID_Y):  # the sets are the grid's y axis (≤ 65,535)
        part = slice(start, start + MAX_GRID_Y)
        grid = (triton.cdiv(k * k, BLOCK), flags[part].shape[0])
        suppression_kernel[grid](
            boxes[part], flags[part], classes[part], params, sup[start * k * k :], k,
            HAS_LABELS=labels is not None, EPS=torch.finfo(boxes.dtype).eps, BLOCK=BLOCK,
        )  # fmt: skip
    return _greedy_walk(sup, valid)


__all__ = ["greedy_keep_triton", "rotated_nms_keep_triton"]
