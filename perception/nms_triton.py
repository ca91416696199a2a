"""Greedy rotated NMS on CUDA in two Triton launches and no host sync.

``nms.batched_rotated_nms`` ranks each set's boxes by score; these kernels then give its keep
mask, the unique greedy solution (``nms`` module docstring):

1. ``suppression_kernel``: for every ranked pair ``j < i`` of a set, whether ``j`` would
   suppress ``i`` (both valid, the same class when labels are given, exact BEV IoU
   ``> threshold``: ``boxes_triton.pair_area``), written as ``sup[b, i, j]``; a program whose
   pairs' circumscribed circles all miss skips the area construction.
2. ``greedy_kernel``: one program per set walks its ``K`` ranked boxes in order: box ``i`` is
   kept iff it is valid and no kept ``j < i`` suppresses it (row ``i`` of ``sup`` against the
   keep mask held in registers).

The torch form (``_suppression_pairs`` and ``greedy_suppression_pairs``) reads the used column
count and the candidate pair count on the host and converges by repeated sweeps with a host
test every two: 2–4 syncs per call, each of which drains the device's queue. Here nothing
leaves the device. The keep mask equals the torch form's wherever their IoUs are on the same
side of the threshold (they agree to float rounding). Imported with ``TRITON_INTERPRET=1`` the
kernels run on CPU tensors (tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from v2x.perception.boxes_triton import (
    box_constants,
    circles_meet,
    iou_of,
    load_boxes,
    pair_area,
)

#: pairs per program of ``suppression_kernel`` (as ``boxes_triton.BLOCK``)
BLOCK = 8


@triton.jit
def suppression_kernel(boxes_ptr, valid_ptr, labels_ptr, threshold_ptr, sup_ptr, k,
                       HAS_LABELS: tl.constexpr, EPS: tl.constexpr, TINY: tl.constexpr,
                       BLOCK: tl.constexpr):  # fmt: skip
    e = tl.program_id(1).to(tl.int64)
    q = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    i, j = q // k, q % k  # sup[e, i, j]: does the higher-ranked j suppress i?
    live = q < k * k
    pair = live & (j < i)
    pair &= tl.load(valid_ptr + e * k + i, mask=pair, other=0) != 0
    pair &= tl.load(valid_ptr + e * k + j, mask=pair, other=0) != 0
    if HAS_LABELS:
        li = tl.load(labels_ptr + e * k + i, mask=pair, other=0)
        pair &= li == tl.load(labels_ptr + e * k + j, mask=pair, other=0)
    ax, ay, al, aw, ayaw = load_boxes(boxes_ptr, e * k + j, pair)
    bx, by, bl, bw, byaw = load_boxes(boxes_ptr, e * k + i, pair)
    pair &= circles_meet(ax, ay, al, aw, bx, by, bl, bw)
    hit = tl.zeros([BLOCK], dtype=tl.int1)
    if tl.max(pair.to(tl.int32), axis=0) > 0:  # else no pair of the program suppresses
        area = pair_area(ax, ay, al, aw, ayaw, bx, by, bl, bw, byaw, EPS, TINY)
        hit = pair & (iou_of(area, al, aw, bl, bw, TINY) > tl.load(threshold_ptr))
    tl.store(sup_ptr + e * k * k + q, hit.to(tl.int8), mask=live)


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


def greedy_nms_keep(
    boxes: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor | None, threshold: float
) -> torch.Tensor:
    """Keep mask ``[B, K]`` (bool) of greedy NMS on rank-ordered boxes ``[B, K, 7]`` (float32 or
    float64; best first), ``valid [B, K]`` bool and ``labels [B, K]`` (integer classes; ``None``:
    class-agnostic): a box is dropped when a kept, higher-ranked valid box (of its class) has
    BEV IoU ``> threshold`` with it."""
    b, k = valid.shape
    keep = torch.zeros(b, k, dtype=torch.int8, device=boxes.device)
    if b == 0 or k == 0:
        return keep.bool()
    sup = torch.empty(b, k, k, dtype=torch.int8, device=boxes.device)
    flags = valid.to(torch.int8).contiguous()
    has_labels = labels is not None
    # the threshold in the boxes' dtype, as torch compares their IoU (a fill: no copy)
    limit = torch.full((1,), float(threshold), dtype=boxes.dtype, device=boxes.device)
    suppression_kernel[(triton.cdiv(k * k, BLOCK), b)](
        boxes.contiguous(), flags, labels.contiguous() if has_labels else flags, limit, sup, k,
        HAS_LABELS=has_labels, BLOCK=BLOCK, **box_constants(boxes.dtype),
    )  # fmt: skip
    greedy_kernel[(b,)](sup, flags, keep, k, KP=triton.next_power_of_2(k))
    return keep.bool()


__all__ = ["greedy_nms_keep"]
