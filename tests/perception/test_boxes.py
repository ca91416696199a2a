"""Box geometry against independent oracles: shapely polygons and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from v2x.perception.boxes import (
    boxes_to_corners_bev,
    intersection_area_bev_aligned,
    iou_3d,
    rotated_iou_bev,
    rotated_iou_bev_aligned,
    transform_boxes,
    wrap_angle,
)


def _shapely_footprint(box: np.ndarray) -> Polygon:
    """Independent footprint: rotate the local rectangle with numpy, build a shapely polygon."""
    x, y, _, length, width, _, yaw = box
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array(
        [[length / 2, width / 2], [-length / 2, width / 2], [-length / 2, -width / 2],
         [length / 2, -width / 2]]
    )  # fmt: skip
    rot = np.array([[c, -s], [s, c]])
    return Polygon(local @ rot.T + np.array([x, y]))


def _shapely_iou(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = _shapely_footprint(a), _shapely_footprint(b)
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union > 0 else 0.0


def _shapely_iou3d(a: np.ndarray, b: np.ndarray) -> float:
    inter_bev = _shapely_footprint(a).intersection(_shapely_footprint(b)).area
    zo = max(0.0, min(a[2] + a[5] / 2, b[2] + b[5] / 2) - max(a[2] - a[5] / 2, b[2] - b[5] / 2))
    inter = inter_bev * zo
    union = a[3] * a[4] * a[5] + b[3] * b[4] * b[5] - inter
    return inter / union


def _random_boxes(rng: np.random.Generator, n: int, spread: float = 4.0) -> np.ndarray:
    boxes = np.zeros((n, 7))
    boxes[:, 0:2] = rng.uniform(-spread, spread, (n, 2))
    boxes[:, 2] = rng.uniform(-1, 1, n)
    boxes[:, 3] = rng.uniform(0.3, 6.0, n)
    boxes[:, 4] = rng.uniform(0.3, 3.0, n)
    boxes[:, 5] = rng.uniform(0.5, 3.0, n)
    boxes[:, 6] = rng.uniform(-2 * math.pi, 2 * math.pi, n)
    return boxes


def _special_pairs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Identical, contained, touching (edge and corner), disjoint, near-identical pairs."""
    base = _random_boxes(rng, 200)
    a_list, b_list = [], []
    for i, box in enumerate(base):
        kind = i % 8
        other = box.copy()
        if kind == 0:  # identical
            pass
        elif kind == 1:  # contained: same centre and yaw, shrunk
            other[3:5] *= rng.uniform(0.2, 0.9)
        elif kind == 2:  # contained, rotated by 90 degrees and small
            other[6] += math.pi / 2
            other[3] = other[4] = 0.5 * min(box[3], box[4])
        elif kind == 3:  # touching along an edge (shifted by exactly l along the heading)
            other[0] += box[3] * math.cos(box[6])
            other[1] += box[3] * math.sin(box[6])
        elif kind == 4:  # touching at a corner
            c, s = math.cos(box[6]), math.sin(box[6])
            dx, dy = box[3], box[4]
            other[0] += dx * c - dy * s
            other[1] += dx * s + dy * c
        elif kind == 5:  # disjoint, far away
            other[0] += 50.0
        elif kind == 6:  # same box with yaw + pi (same footprint)
            other[6] += math.pi
        else:  # tiny perturbation of identical
            other[0:2] += rng.normal(0, 1e-3, 2)
            other[6] += rng.normal(0, 1e-3)
        a_list.append(box)
        b_list.append(other)
    return np.array(a_list), np.array(b_list)


def test_corners_convention() -> None:
    # yaw = 90 deg: heading along +y, so l spans y and w spans x
    box = torch.tensor([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, math.pi / 2]], dtype=torch.float64)
    corners = boxes_to_corners_bev(box)[0]
    expected = torch.tensor([[0.0, 4.0], [0.0, 0.0], [2.0, 0.0], [2.0, 4.0]], dtype=torch.float64)
    torch.testing.assert_close(corners, expected, atol=1e-12, rtol=0)
    # counter-clockwise: positive shoelace area = l * w
    x, y = corners[:, 0], corners[:, 1]
    area = 0.5 * (x * torch.roll(y, -1) - torch.roll(x, -1) * y).sum()
    assert area.item() == pytest.approx(8.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rotated_iou_matches_shapely_random_pairs(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(1234)
    a = _random_boxes(rng, 40, spread=3.0)
    b = _random_boxes(rng, 30, spread=3.0)  # 1200 pairs, many overlapping
    got = rotated_iou_bev(torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype)).double()
    ref = np.array([[_shapely_iou(p, q) for q in b] for p in a])
    assert (ref > 0).sum() > 300  # the sample really exercises overlaps
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rotated_iou_special_cases_match_shapely(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(7)
    a, b = _special_pairs(rng)
    got = rotated_iou_bev_aligned(torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype))
    ref = np.array([_shapely_iou(p, q) for p, q in zip(a, b)])
    np.testing.assert_allclose(got.double().numpy(), ref, atol=1e-4, rtol=0)
    kinds = np.arange(len(a)) % 8
    np.testing.assert_allclose(got.double().numpy()[kinds == 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(got.double().numpy()[kinds == 5], 0.0, atol=0)
    # the pairwise matrix's diagonal agrees with the aligned form
    full = rotated_iou_bev(torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype))
    torch.testing.assert_close(torch.diagonal(full), got, atol=1e-5, rtol=0)


def test_rotated_iou_float32_far_from_origin() -> None:
    rng = np.random.default_rng(3)
    a = _random_boxes(rng, 20, spread=2.0)
    b = a.copy()
    b[:, 0:2] += rng.normal(0, 0.5, (20, 2))
    b[:, 6] += rng.normal(0, 0.3, 20)
    ref = np.array([_shapely_iou(p, q) for p, q in zip(a, b)])
    offset = np.array([4000.0, -2500.0])
    a[:, 0:2] += offset
    b[:, 0:2] += offset
    got = rotated_iou_bev_aligned(torch.tensor(a, dtype=torch.float32), torch.tensor(b).float())
    np.testing.assert_allclose(got.double().numpy(), ref, atol=2e-3, rtol=0)


def test_intersection_area_closed_form() -> None:
    # two unit squares, one rotated by 45 deg about the same centre: octagon of area 2(sqrt2 - 1)
    a = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    b = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, math.pi / 4], dtype=torch.float64)
    area = intersection_area_bev_aligned(a, b).item()
    assert area == pytest.approx(2 * (math.sqrt(2) - 1), abs=1e-12)
    # half-overlapping axis-aligned rectangles: IoU = 1/3
    c = torch.tensor([[0.0, 0, 0, 2, 1, 1, 0], [1.0, 0, 0, 2, 1, 1, 0]], dtype=torch.float64)
    assert rotated_iou_bev(c[:1], c[1:]).item() == pytest.approx(1 / 3, abs=1e-12)


def test_iou_3d_matches_shapely_times_z_overlap() -> None:
    rng = np.random.default_rng(99)
    a = _random_boxes(rng, 30, spread=2.0)
    b = _random_boxes(rng, 25, spread=2.0)
    got = iou_3d(torch.tensor(a), torch.tensor(b))
    ref = np.array([[_shapely_iou3d(p, q) for q in b] for p in a])
    assert (ref > 0).sum() > 100
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-4, rtol=0)
    # identical boxes: 3D IoU 1; vertically disjoint: 0
    box = torch.tensor([[1.0, 2.0, 0.5, 4.0, 2.0, 1.0, 0.3]], dtype=torch.float64)
    up = box.clone()
    up[0, 2] += 1.0
    assert iou_3d(box, box).item() == pytest.approx(1.0, abs=1e-9)
    assert iou_3d(box, up).item() == 0.0


def test_batched_leading_dims_and_empty() -> None:
    rng = np.random.default_rng(5)
    a = torch.tensor(_random_boxes(rng, 12, 2.0)).reshape(3, 4, 7)
    b = torch.tensor(_random_boxes(rng, 15, 2.0)).reshape(3, 5, 7)
    got = rotated_iou_bev(a, b)
    assert got.shape == (3, 4, 5)
    for i in range(3):
        torch.testing.assert_close(got[i], rotated_iou_bev(a[i], b[i]))
    assert rotated_iou_bev(a[0], b[0][:0]).shape == (4, 0)
    assert iou_3d(a[0][:0], b[0]).shape == (0, 5)
    with pytest.raises(ValueError, match=r"\[\.\.\., 7\]"):
        rotated_iou_bev(a[..., :6], b)


def test_transform_boxes_round_trip_and_closed_form() -> None:
    rng = np.random.default_rng(11)
    boxes = torch.tensor(_random_boxes(rng, 50, 30.0))
    boxes[:, 6] = wrap_angle(boxes[:, 6])
    theta = 0.7
    transform = torch.eye(4, dtype=torch.float64)
    transform[:2, :2] = torch.tensor(
        [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
        dtype=torch.float64,
    )
    transform[:3, 3] = torch.tensor([10.0, -4.0, 1.5], dtype=torch.float64)
    moved = transform_boxes(boxes, transform)
    # closed form for one box
    x, y, z = boxes[0, 0:3].tolist()
    exp_x = math.cos(theta) * x - math.sin(theta) * y + 10.0
    exp_y = math.sin(theta) * x + math.cos(theta) * y - 4.0
    assert moved[0, 0].item() == pytest.approx(exp_x, abs=1e-12)
    assert moved[0, 1].item() == pytest.approx(exp_y, abs=1e-12)
    assert moved[0, 2].item() == pytest.approx(z + 1.5, abs=1e-12)
    # corners transform like points
    corners = boxes_to_corners_bev(boxes)
    rotated = corners @ transform[:2, :2].T + transform[:2, 3]
    torch.testing.assert_close(boxes_to_corners_bev(moved), rotated, atol=1e-9, rtol=0)
    back = transform_boxes(moved, torch.linalg.inv(transform))
    torch.testing.assert_close(back[:, :6], boxes[:, :6], atol=1e-9, rtol=0)
    torch.testing.assert_close(wrap_angle(back[:, 6] - boxes[:, 6]), torch.zeros(50, dtype=back.dtype),
                               atol=1e-9, rtol=0)  # fmt: skip
    assert moved.dtype == torch.float64
    assert (moved[:, 6] >= -math.pi).all() and (moved[:, 6] < math.pi).all()
    with pytest.raises(ValueError, match="transform"):
        transform_boxes(boxes, transform[:3])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rotated_iou_cuda_matches_cpu_and_shapely() -> None:
    rng = np.random.default_rng(21)
    a = _random_boxes(rng, 64, spread=3.0)
    b = _random_boxes(rng, 48, spread=3.0)
    cpu = rotated_iou_bev(torch.tensor(a).float(), torch.tensor(b).float())
    gpu = rotated_iou_bev(torch.tensor(a).float().cuda(), torch.tensor(b).float().cuda())
    assert gpu.device.type == "cuda"
    ref = np.array([[_shapely_iou(p, q) for q in b] for p in a])
    np.testing.assert_allclose(gpu.double().cpu().numpy(), ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
    g3 = iou_3d(torch.tensor(a).cuda(), torch.tensor(b).cuda())
    torch.testing.assert_close(
        g3.cpu(), iou_3d(torch.tensor(a), torch.tensor(b)), atol=1e-9, rtol=0
    )


def test_row_blocks_and_pair_chunks_give_identical_results(monkeypatch: pytest.MonkeyPatch) -> None:
    import v2x.perception.boxes as boxes_mod

    rng = np.random.default_rng(17)
    a = torch.tensor(_random_boxes(rng, 60, 4.0))
    b = torch.tensor(_random_boxes(rng, 40, 4.0))
    full = rotated_iou_bev(a, b)
    monkeypatch.setattr(boxes_mod, "_DENSE_CHUNK", 100)
    monkeypatch.setattr(boxes_mod, "_PAIR_CHUNK", 7)
    assert torch.equal(rotated_iou_bev(a, b), full)
    assert (full > 0).sum() > 100
