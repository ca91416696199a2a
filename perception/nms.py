"""Rotated (BEV) non-maximum suppression in torch, batched and class-aware.

Greedy NMS visits boxes by descending score and drops every later box whose BEV IoU with a kept
box is ``> iou_threshold`` (the torchvision / OpenCOOD convention: IoU exactly equal to the
threshold survives). The greedy result is the unique solution of the triangular system

    keep[i] = valid[i] and not any(keep[j] and iou[j, i] > thr for j ranked before i)

which is solved by fixed-point iteration: after ``t`` sweeps the ``t`` highest-ranked decisions
are final, and the iteration stops as soon as a sweep changes nothing (a fixed point of a
triangular system is its solution). The number of sweeps is the length of the longest
suppression chain (a handful in practice), so it runs on the GPU with no per-box Python loop.

``batched_rotated_nms`` works on the list of candidate pairs only: ranked pairs ``i < j`` of
valid, same-class boxes whose circumscribed circles overlap (all other pairs have IoU 0 and
suppress nothing). Their exact IoU is computed once and each sweep is one gather and one
scatter over those ``P`` pairs (``greedy_suppression_pairs``) instead of a ``[B, K, K]``
reduction; the keep set is the same unique solution. ``greedy_suppression`` is the dense form.
On CUDA (inference) the pairs' IoU is one Triton launch (``boxes_triton``) and the solve another
(``nms_triton``: the greedy walk per set, no fixed-point syncs).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from v2x.perception.boxes import rotated_iou_bev_aligned, use_box_kernel

__all__ = [
    "NmsResult",
    "batched_rotated_nms",
    "rotated_nms",
    "greedy_suppression",
    "greedy_suppression_pairs",
]


class NmsResult(NamedTuple):
    """Output of :func:`batched_rotated_nms`.

    Attributes:
        indices: ``[B, K_out]`` int64 indices into the input's ``N`` axis of the kept boxes, in
            descending score order, padded with ``-1``.
        mask: ``[B, K_out]`` bool, True where ``indices`` holds a kept box.
    """

    indices: torch.Tensor
    mask: torch.Tensor


def greedy_suppression(overlap: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Exact greedy suppression given a rank-ordered suppression matrix.

    Args:
        overlap: ``[B, K, K]`` bool, ``overlap[b, j, i]`` True where box ``j`` would suppress box
            ``i`` if kept (only ``j < i`` is used; rows/cols are in rank order, best first).
        valid: ``[B, K]`` bool, candidates that take part.

    Returns:
        ``[B, K]`` bool keep mask, identical to the sequential greedy loop.
    """
    k = overlap.shape[-1]
    upper = torch.ones(k, k, dtype=torch.bool, device=overlap.device).triu(diagonal=1)
    sup = overlap & upper & valid.unsqueeze(-1) & valid.unsqueeze(-2)
    keep = valid.clone()
    # Two sweeps per convergence test (one host sync per test): a sweep of a fixed point leaves
    # it unchanged, so the result is the same as testing after every sweep.
    for _ in range(k // 2 + 1):
        once = valid & ~(sup & keep.unsqueeze(-1)).any(dim=-2)  # [B, K]
        twice = valid & ~(sup & once.unsqueeze(-1)).any(dim=-2)
        if torch.equal(twice, once):
            return once
        keep = twice
    return keep


def greedy_suppression_pairs(
    first: torch.Tensor, second: torch.Tensor, overlap: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Exact greedy suppression given the suppressing pairs as a list (``greedy_suppression``
    on a sparse matrix: the same keep mask).

    Args:
        first: ``[P]`` int64 flat index ``b * K + i`` of the higher-ranked box of each pair.
        second: ``[P]`` int64 flat index ``b * K + j`` of the lower-ranked box (``j > i``, same
            ``b``); pairs may repeat.
        overlap: ``[P]`` bool, True where ``first`` would suppress ``second`` if kept.
        valid: ``[B, K]`` bool, candidates that take part (pairs touching an invalid box are
            ignored, as in ``greedy_suppression``).

    Returns:
        ``[B, K]`` bool keep mask, identical to the sequential greedy loop.
    """
    b, k = valid.shape
    flat_valid = valid.reshape(-1)
    live = overlap & flat_valid[first] & flat_valid[second]  # [P]
    # each sweep: a box is dropped iff some kept box of a live pair suppresses it
    zeros = torch.zeros(b * k, dtype=torch.int32, device=valid.device)

    def sweep(keep: torch.Tensor) -> torch.Tensor:
        hit = (keep.reshape(-1)[first] & live).to(torch.int32)
        # amax is exact in any order (deterministic on every device)
        dropped = zeros.scatter_reduce(0, second, hit, reduce="amax", include_self=True)
        return valid & (dropped == 0).view(b, k)

    keep = valid.clone()
    if first.numel() == 0:
        return keep
    # Two sweeps per convergence test (one host sync per test), as in greedy_suppression.
    for _ in range(k // 2 + 1):
        once = sweep(keep)
        twice = sweep(once)
        if torch.equal(twice, once):
            return once
        keep = twice
    return keep


@torch.no_grad()
def batched_rotated_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    iou_threshold: float = 0.1,
    max_out: int | None = None,
    pre_max: int | None = None,
) -> NmsResult:
    """Class-aware rotated NMS over a batch of padded box sets.

    Args:
        boxes: ``[B, N, 7]`` boxes (x, y, z, l, w, h, yaw).
        scores: ``[B, N]`` confidences (higher is better).
        labels: ``[B, N]`` integer classes; boxes of different classes never suppress each other.
            ``None``: class-agnostic.
        valid: ``[B, N]`` bool, False for padding. ``None``: all valid.
        iou_threshold: a box is suppressed by a kept, higher-scored box of its class when their
            BEV IoU is ``> iou_threshold``.
        max_out: at most this many boxes kept per batch element (``None``: no cap).
        pre_max: only the ``pre_max`` highest-scored valid boxes per element take part
            (``None``: all). Bounds the ``[B, K, K]`` IoU matrix.

    Returns:
        :class:`NmsResult` with ``indices [B, K_out]`` and ``mask [B, K_out]``, where ``K_out`` is
        ``min(max_out, K)`` (``K = min(pre_max, N)``).
    """
    if boxes.ndim != 3 or boxes.shape[-1] != 7:
        raise ValueError(f"boxes: expected [B, N, 7], got {tuple(boxes.shape)}")
    b, n = boxes.shape[:2]
    if scores.shape != (b, n):
        raise ValueError(f"scores: expected [B, N] = {(b, n)}, got {tuple(scores.shape)}")
    if labels is not None and labels.shape != (b, n):
        raise ValueError(f"labels: expected [B, N] = {(b, n)}, got {tuple(labels.shape)}")
    if valid is not None and valid.shape != (b, n):
        raise ValueError(f"valid: expected [B, N] = {(b, n)}, got {tuple(valid.shape)}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold: expected a value in [0, 1], got {iou_threshold}")
    if max_out is not None and max_out < 0:
        raise ValueError(f"max_out: expected >= 0 or None, got {max_out}")
    device = boxes.device
    valid = (
        torch.ones(b, n, dtype=torch.bool, device=device) if valid is None else valid.to(torch.bool)
    )
    valid = valid & torch.isfinite(scores)

    k = n if pre_max is None else min(int(pre_max), n)
    ranked = torch.where(valid, scores, torch.full_like(scores, -torch.inf))
    order = torch.argsort(ranked, dim=1, descending=True, stable=True)[:, :k]  # [B, K]
    cand_valid = torch.gather(valid, 1, order)
    cand_boxes = torch.gather(boxes, 1, order.unsqueeze(-1).expand(-1, -1, 7))
    if cand_boxes.dtype in (torch.float16, torch.bfloat16):  # e.g. under autocast
        cand_boxes = cand_boxes.float()
    # padding boxes may hold garbage: neutralise them so they cannot produce NaNs
    cand_boxes = torch.where(cand_valid.unsqueeze(-1), cand_boxes, _dummy_box(cand_boxes))

    cand_labels = None if labels is None else torch.gather(labels, 1, order)
    first, second, overlap = _suppression_pairs(
        cand_boxes, cand_valid, cand_labels, float(iou_threshold)
    )
    if use_box_kernel(cand_boxes, cand_boxes):  # CUDA: one launch, no fixed-point syncs
        from v2x.perception.nms_triton import greedy_keep_triton

        keep = greedy_keep_triton(first, second, overlap, cand_valid)
    else:
        keep = greedy_suppression_pairs(first, second, overlap, cand_valid)

    k_out = k if max_out is None else min(int(max_out), k)
    rank = torch.cumsum(keep.to(torch.int64), dim=1) - 1  # position among kept
    keep = keep & (rank < k_out)
    indices = torch.full((b, k_out + 1), -1, dtype=torch.int64, device=device)
    slot = torch.where(keep, rank, torch.full_like(rank, k_out))  # dropped ones go to a spare slot
    indices.scatter_(1, slot, torch.where(keep, order, torch.full_like(order, -1)))
    indices = indices[:, :k_out]
    return NmsResult(indices=indices, mask=indices >= 0)


def _candidate_pairs(
    boxes: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    """``[B, K, K]`` bool: ranked pairs ``i < j`` of valid, same-class boxes (when ``labels`` is
    given) whose circumscribed circles overlap; every other pair has BEV IoU 0."""
    k = boxes.shape[1]
    upper = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(diagonal=1)
    radius = 0.5 * torch.hypot(boxes[..., 3], boxes[..., 4])  # [B, K]
    dist = torch.linalg.vector_norm(boxes[:, :, None, 0:2] - boxes[:, None, :, 0:2], dim=-1)
    cand = (dist <= (radius[:, :, None] + radius[:, None, :]) * (1.0 + 1e-6)) & upper
    cand = cand & valid[:, :, None] & valid[:, None, :]
    if labels is not None:
        cand = cand & (labels[:, :, None] == labels[:, None, :])
    return cand


def _suppression_pairs(
    boxes: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor | None, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The candidate pairs (``_candidate_pairs``) as ``greedy_suppression_pairs`` takes them:
    flat indices ``first [P]``, ``second [P]`` (``b * K + i``, ``b * K + j``) and ``overlap [P]``
    (exact IoU ``> threshold``), with one host sync (the pair count)."""
    k = boxes.shape[1]
    used = _used_columns(valid)
    if used < k:
        boxes, valid = boxes[:, :used], valid[:, :used]
        labels = None if labels is None else labels[:, :used]
    bi, ii, jj = _candidate_pairs(boxes, valid, labels).nonzero(as_tuple=True)
    if not bi.numel():
        return bi, bi, torch.zeros(0, dtype=torch.bool, device=boxes.device)
    overlap = rotated_iou_bev_aligned(boxes[bi, ii], boxes[bi, jj]) > threshold
    return bi * k + ii, bi * k + jj, overlap


def _used_columns(valid: torch.Tensor) -> int:
    """Only columns up to the last valid box can interact: the ``[B, K, K]`` pair tests (the
    costliest part for padded, mostly-empty sets) shrink to ``[B, used, used]``. Boxes come
    ranked with the valid ones first (``batched_rotated_nms``), so ``used`` is the largest
    valid count of a set. One host sync."""
    column = torch.arange(1, valid.shape[1] + 1, device=valid.device)
    return int(torch.where(valid, column, 0).amax()) if valid.numel() else 0


def _suppression_matrix(
    boxes: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor | None, threshold: float
) -> torch.Tensor:
    """``[B, K, K]`` bool: IoU(i, j) > threshold, for ranked pairs i < j that can interact
    (the dense form of ``_suppression_pairs``, for ``greedy_suppression``).

    Only pairs of valid, same-class boxes (when ``labels`` is given) ranked ``i < j`` whose
    circumscribed circles overlap are evaluated exactly; all other entries are False.
    """
    b, k = boxes.shape[:2]
    first, second, overlap = _suppression_pairs(boxes, valid, labels, threshold)
    out = torch.zeros(b * k * k, dtype=torch.bool, device=boxes.device)
    out[(first // k) * k * k + (first % k) * k + second % k] = overlap
    return out.view(b, k, k)


def _dummy_box(like: torch.Tensor) -> torch.Tensor:
    dummy = torch.zeros(7, dtype=like.dtype, device=like.device)
    dummy[3:6] = 1.0
    return dummy


def rotated_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float = 0.1,
    max_out: int | None = None,
    labels: torch.Tensor | None = None,
    pre_max: int | None = None,
) -> torch.Tensor:
    """Rotated NMS on one set of boxes.

    Args:
        boxes: ``[N, 7]`` boxes.
        scores: ``[N]`` confidences.
        iou_threshold: suppress when BEV IoU ``> iou_threshold``.
        max_out: keep at most this many (``None``: no cap).
        labels: ``[N]`` classes for class-aware NMS (``None``: class-agnostic).
        pre_max: consider only the ``pre_max`` best-scored boxes.

    Returns:
        ``[K]`` int64 indices of the kept boxes, by descending score.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 7:
        raise ValueError(f"boxes: expected [N, 7], got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores: expected [N] = [{boxes.shape[0]}], got {tuple(scores.shape)}")
    result = batched_rotated_nms(
        boxes.unsqueeze(0),
        scores.unsqueeze(0),
        None if labels is None else labels.unsqueeze(0),
        None,
        iou_threshold,
        max_out,
        pre_max,
    )
    return result.indices[0][result.mask[0]]
