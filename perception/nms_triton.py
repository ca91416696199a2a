"""The greedy NMS solve on CUDA in one Triton launch, with no host sync.

``nms.greedy_suppression_pairs`` solves the greedy system by repeated sweeps over the suppressing
pairs, testing for a fixed point on the host every two sweeps (a sync that drains the device's
queue, 2–4 per call, and ~10 launches per test). ``greedy_keep_triton`` takes the same pairs,
scatters them into a ``[B, K, K]`` table (``sup[b, i, j]``: the higher-ranked ``j`` would
suppress ``i``) and walks each set's ranked boxes in one program: box ``i`` is kept iff it is
valid and no kept ``j < i`` suppresses it (row ``i`` of the table against the keep mask held in
registers). The same keep mask (the greedy solution is unique). Imported with
``TRITON_INTERPRET=1`` the kernel runs on CPU tensors (tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


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
    keep = torch.zeros(b, k, dtype=torch.int8, device=valid.device)
    if b == 0 or k == 0:
        return keep.bool()
    sup = torch.zeros(b * k * k, dtype=torch.int32, device=valid.device)
    if first.numel():  # amax: exact and deterministic where a pair repeats
        slot = (second // k) * (k * k) + (second % k) * k + first % k
        sup.scatter_reduce_(0, slot, overlap.to(torch.int32), reduce="amax")
    flags = valid.to(torch.int8).contiguous()
    greedy_kernel[(b,)](sup, flags, keep, k, KP=triton.next_power_of_2(k))
    return keep.bool()


__all__ = ["greedy_keep_triton"]
