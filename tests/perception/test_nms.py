"""Rotated NMS against a plain sequential reference loop using shapely IoU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from v2x.perception.nms import (
    batched_rotated_nms,
    greedy_suppression,
    greedy_suppression_pairs,
    rotated_nms,
)


def _poly(box: np.ndarray) -> Polygon:
    x, y, _, length, width, _, yaw = box
    c, s = math.cos(yaw), math.sin(yaw)
    pts = [(sx * length / 2, sy * width / 2) for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
    return Polygon([(x + c * px - s * py, y + s * px + c * py) for px, py in pts])


def _reference_nms(boxes, scores, thr, max_out=None, labels=None):
    """Textbook greedy NMS: sort, keep the best, drop those with IoU > thr, repeat."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    polys = [_poly(b) for b in boxes]
    keep = []
    removed = set()
    for i in order:
        if i in removed:
            continue
        keep.append(i)
        for j in order:
            if j in removed or j == i or j in keep:
                continue
            if labels is not None and labels[i] != labels[j]:
                continue
            inter = polys[i].intersection(polys[j]).area
            iou = inter / (polys[i].area + polys[j].area - inter)
            if iou > thr:
                removed.add(j)
    return keep if max_out is None else keep[:max_out]


def _clustered_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Boxes jittered around a few cluster centres, so suppression chains occur."""
    centres = rng.uniform(-15, 15, (max(1, n // 8), 2))
    boxes = np.zeros((n, 7))
    pick = rng.integers(0, len(centres), n)
    boxes[:, 0:2] = centres[pick] + rng.normal(0, 0.8, (n, 2))
    boxes[:, 3] = rng.uniform(3.5, 5.0, n)
    boxes[:, 4] = rng.uniform(1.6, 2.2, n)
    boxes[:, 5] = 1.6
    boxes[:, 6] = rng.normal(0, 0.4, n) + rng.integers(0, 2, n) * math.pi / 2
    return boxes


@pytest.mark.parametrize("seed", range(6))
def test_rotated_nms_matches_reference_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    boxes = _clustered_boxes(rng, n)
    scores = rng.uniform(0, 1, n)
    thr = [0.01, 0.1, 0.3, 0.5, 0.7, 0.2][seed]
    ref = _reference_nms(boxes, scores, thr)
    got = rotated_nms(torch.tensor(boxes), torch.tensor(scores), iou_threshold=thr)
    assert got.tolist() == ref
    got_capped = rotated_nms(torch.tensor(boxes).float(), torch.tensor(scores).float(), thr, 3)
    assert got_capped.tolist() == ref[:3]
    if seed == 0:  # half precision inputs (autocast) are evaluated in float32
        half = rotated_nms(torch.tensor(boxes).float().half(), torch.tensor(scores), thr)
        ref_half = _reference_nms(torch.tensor(boxes).half().double().numpy(), scores, thr)
        assert half.tolist() == ref_half


def test_batched_class_aware_and_padding() -> None:
    rng = np.random.default_rng(42)
    b, n = 4, 40
    boxes = np.stack([_clustered_boxes(rng, n) for _ in range(b)])
    scores = rng.uniform(0, 1, (b, n))
    labels = rng.integers(0, 3, (b, n))
    valid = rng.uniform(size=(b, n)) > 0.2
    boxes_t = torch.tensor(boxes)
    boxes_t[~torch.tensor(valid)] = float("nan")  # padding may hold garbage
    result = batched_rotated_nms(
        boxes_t, torch.tensor(scores), torch.tensor(labels), torch.tensor(valid), 0.2, max_out=10
    )
    assert result.indices.shape == (b, 10)
    for i in range(b):
        idx = np.flatnonzero(valid[i])
        ref = _reference_nms(boxes[i][idx], scores[i][idx], 0.2, 10, labels[i][idx])
        got = result.indices[i][result.mask[i]].tolist()
        assert got == [int(idx[j]) for j in ref]
        assert (result.indices[i][~result.mask[i]] == -1).all()


def test_nms_edge_cases() -> None:
    empty = rotated_nms(torch.zeros(0, 7), torch.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    one = torch.tensor([[0.0, 0, 0, 4, 2, 1.5, 0]])
    assert rotated_nms(one, torch.tensor([0.3]), 0.5).tolist() == [0]
    # exact duplicates: only the best survives; IoU == threshold is NOT suppressed
    dup = one.repeat(3, 1)
    assert rotated_nms(dup, torch.tensor([0.1, 0.9, 0.5]), 0.5).tolist() == [1]
    half = torch.tensor([[0.0, 0, 0, 2, 1, 1, 0], [1.0, 0, 0, 2, 1, 1, 0]], dtype=torch.float64)
    assert rotated_nms(half, torch.tensor([0.9, 0.8]), 1 / 3 + 1e-9).tolist() == [0, 1]
    assert rotated_nms(half, torch.tensor([0.9, 0.8]), 1 / 3 - 1e-9).tolist() == [0]
    with pytest.raises(ValueError, match="scores"):
        rotated_nms(one, torch.tensor([0.1, 0.2]), 0.5)


def test_greedy_suppression_long_chain() -> None:
    # chain 0 -> 1 -> 2 -> ... each suppresses only the next: greedy keeps the even ranks
    k = 30
    overlap = torch.zeros(1, k, k, dtype=torch.bool)
    idx = torch.arange(k - 1)
    overlap[0, idx, idx + 1] = True
    keep = greedy_suppression(overlap, torch.ones(1, k, dtype=torch.bool))
    assert keep[0].tolist() == [i % 2 == 0 for i in range(k)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_nms_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(8)
    boxes = torch.tensor(np.stack([_clustered_boxes(rng, 200) for _ in range(4)])).float()
    scores = torch.rand(4, 200, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 2, (4, 200), generator=torch.Generator().manual_seed(1))
    cpu = batched_rotated_nms(boxes, scores, labels, None, 0.15, max_out=50)
    gpu = batched_rotated_nms(boxes.cuda(), scores.cuda(), labels.cuda(), None, 0.15, max_out=50)
    assert gpu.indices.device.type == "cuda"
    assert torch.equal(gpu.indices.cpu(), cpu.indices)


def _touching_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows of boxes placed edge to edge along their heading, each gap a few ulps to a few cm
    either way (overlapping, touching or just apart), at random headings and far offsets."""
    boxes = _clustered_boxes(rng, n)
    for i in range(1, n, 2):  # every other box touches the one before it, end to end
        prev = boxes[i - 1]
        boxes[i, 3:7] = prev[3:7]
        gap = float(rng.choice([-0.3, -1e-3, -1e-9, 0.0, 1e-9, 1e-3, 0.3]))
        step = prev[3] + gap
        boxes[i, 0] = prev[0] + step * math.cos(prev[6])
        boxes[i, 1] = prev[1] + step * math.sin(prev[6])
    boxes[:, 0:2] += rng.choice([0.0, 1e3])  # far from the origin too
    return boxes


def _full_matrix_nms_keep(boxes, valid, labels, thr):
    """The keep mask from every pair's exact IoU (no circle pruning, no column cut): each pair
    of ranked boxes through the same IoU kernel, then the dense greedy solve."""
    from v2x.perception.boxes import rotated_iou_bev_aligned

    b, k = valid.shape
    iou = rotated_iou_bev_aligned(boxes[:, :, None, :], boxes[:, None, :, :])  # [B, K, K]
    overlap = (iou > thr) & valid[:, :, None] & valid[:, None, :]
    if labels is not None:
        overlap &= labels[:, :, None] == labels[:, None, :]
    return greedy_suppression(overlap, valid)


@pytest.mark.parametrize("seed", range(8))
def test_pruned_nms_equals_full_matrix_nms(seed: int) -> None:
    """Pair pruning (circles, valid columns, classes) keeps exactly the full-matrix keep set,
    on clustered, rotated and near-touching boxes with padding anywhere in the rows."""
    from v2x.perception.nms import _suppression_matrix, _suppression_pairs

    rng = np.random.default_rng(100 + seed)
    b, k = 5, int(rng.integers(2, 60))
    boxes = torch.tensor(np.stack([_touching_boxes(rng, k) for _ in range(b)]))
    if seed % 2:
        boxes = boxes.float()
    valid = torch.tensor(rng.uniform(size=(b, k)) < [[0.0], [0.3], [0.7], [1.0], [0.9]])
    labels = torch.tensor(rng.integers(0, 2, (b, k))) if seed % 3 else None
    thr = [0.0, 0.01, 0.1, 0.5][seed % 4]
    full = _full_matrix_nms_keep(boxes, valid, labels, thr)
    first, second, overlap = _suppression_pairs(boxes, valid, labels, thr)
    assert torch.equal(greedy_suppression_pairs(first, second, overlap, valid), full)
    dense = _suppression_matrix(boxes, valid, labels, thr)
    assert torch.equal(greedy_suppression(dense, valid), full)
    # through batched_rotated_nms (boxes ranked by score, valid first): the same kept boxes
    scores = torch.tensor(rng.permutation(b * k).reshape(b, k), dtype=torch.float64)
    result = batched_rotated_nms(boxes, scores, labels, valid, thr)
    for i in range(b):
        order = torch.argsort(torch.where(valid[i], scores[i], -torch.inf), descending=True)
        ranked = boxes[i][order][None]
        lab = None if labels is None else labels[i][order][None]
        keep = _full_matrix_nms_keep(ranked, valid[i][order][None], lab, thr)[0]
        assert result.indices[i][result.mask[i]].tolist() == order[keep].tolist()


@pytest.mark.parametrize("seed", range(6))
def test_greedy_suppression_pairs_equals_dense(seed: int) -> None:
    """The pair-list solve equals the dense one on random suppression graphs (pairs listed in
    any order, repeated, with non-suppressing pairs and pairs touching invalid boxes)."""
    gen = torch.Generator().manual_seed(seed)
    b, k = 3, [1, 2, 7, 40, 80, 120][seed]
    overlap = (torch.rand(b, k, k, generator=gen) < [0.02, 0.1, 0.5][seed % 3]).triu(1)
    valid = torch.rand(b, k, generator=gen) < 0.8
    bi, ii, jj = torch.ones(b, k, k, dtype=torch.bool).triu(1).nonzero(as_tuple=True)
    keep_pair = torch.rand(bi.numel(), generator=gen) < 0.7  # a subset of the pairs ...
    bi, ii, jj = bi[keep_pair], ii[keep_pair], jj[keep_pair]
    bi, ii, jj = (torch.cat([t, t[: t.numel() // 3]]) for t in (bi, ii, jj))  # ... some twice
    shuffle = torch.randperm(bi.numel(), generator=gen)
    bi, ii, jj = bi[shuffle], ii[shuffle], jj[shuffle]
    listed = torch.zeros_like(overlap)
    listed[bi, ii, jj] = True
    dense = greedy_suppression(overlap & listed, valid)
    got = greedy_suppression_pairs(bi * k + ii, bi * k + jj, overlap[bi, ii, jj], valid)
    assert torch.equal(got, dense)
