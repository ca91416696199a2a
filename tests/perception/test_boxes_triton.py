"""The rotated-box Triton kernels (``boxes_triton``) against shapely and the torch construction:
in Triton's interpreter on the CPU, and compiled on CUDA (``gpu``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from v2x.perception.boxes import (
    _pair_intersection,
    _pairwise_intersection,
    rotated_iou_bev,
    rotated_iou_bev_aligned,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_boxes import _random_boxes, _shapely_iou, _special_pairs  # noqa: E402

_SCRIPT = """
import json, torch
from v2x.perception.boxes_triton import aligned_intersection_triton, pairwise_intersection_triton
data = json.loads('''{data}''')
out = {{}}
for name in ("float64", "float32"):
    dtype = getattr(torch, name)
    a = torch.tensor(data["a"], dtype=dtype)[None]
    b = torch.tensor(data["b"], dtype=dtype)[None]
    pa, pb = torch.tensor(data["pa"], dtype=dtype), torch.tensor(data["pb"], dtype=dtype)
    out[name] = {{
        "area": pairwise_intersection_triton(a, b)[0].tolist(),
        "iou": pairwise_intersection_triton(a, b, iou=True)[0].tolist(),
        "aligned": aligned_intersection_triton(pa, pb).tolist(),
        "empty": list(pairwise_intersection_triton(a[:, :0], b).shape),
    }}
# batch elements in launches of one: the same areas
import v2x.perception.boxes_triton as kernels
a = torch.tensor(data["a"])[:4].reshape(2, 2, 7)
b = torch.tensor(data["b"])[:6].reshape(2, 3, 7)
whole = pairwise_intersection_triton(a, b)
kernels.MAX_GRID_Y = 1
out["launches"] = bool(torch.equal(pairwise_intersection_triton(a, b), whole))
out["overlaps"] = [int((w > 0).sum()) for w in whole]
print(json.dumps(out))
"""


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2026)
    a, b = _random_boxes(rng, 10, spread=2.5), _random_boxes(rng, 8, spread=2.5)
    pa, pb = _special_pairs(np.random.default_rng(7))
    return {"a": a, "b": b, "pa": pa[:64], "pb": pb[:64]}


def _check_against_oracles(got: dict, data: dict[str, np.ndarray], dtype: torch.dtype) -> None:
    """``got``: the kernels' ``area``, ``iou`` (``a`` × ``b``) and ``aligned`` (``pa``, ``pb``)
    in ``dtype``: equal to the torch construction to float rounding, to shapely to 1e-4."""
    a, b = data["a"], data["b"]
    ta, tb = torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype)
    pa, pb = torch.tensor(data["pa"], dtype=dtype), torch.tensor(data["pb"], dtype=dtype)
    close = {"atol": 1e-10 if dtype == torch.float64 else 2e-5, "rtol": 0}
    area = torch.tensor(got["area"], dtype=dtype)
    torch.testing.assert_close(area, _pairwise_intersection(ta, tb), **close)
    assert ((area > 0).sum() > 20).item()  # the sample really exercises overlaps
    iou = torch.tensor(got["iou"], dtype=dtype)
    torch.testing.assert_close(iou, rotated_iou_bev(ta, tb), **close)
    shapely = np.array([[_shapely_iou(p, q) for q in b] for p in a])
    np.testing.assert_allclose(iou.double().numpy(), shapely, atol=1e-4, rtol=0)
    aligned = torch.tensor(got["aligned"], dtype=dtype)
    torch.testing.assert_close(aligned, _pair_intersection(pa, pb), **close)
    union = pa[:, 3] * pa[:, 4] + pb[:, 3] * pb[:, 4] - aligned
    special = (aligned / union).double().numpy()
    shapely = np.array([_shapely_iou(p, q) for p, q in zip(data["pa"], data["pb"])])
    np.testing.assert_allclose(special, shapely, atol=1e-4, rtol=0)
    kinds = np.arange(len(special)) % 8
    np.testing.assert_allclose(special[kinds == 0], 1.0, atol=1e-5)  # identical boxes
    assert (special[kinds == 5] == 0).all()  # disjoint


def test_the_box_kernels_give_shapely_areas_in_the_interpreter(triton_interpreted) -> None:
    """Pairwise areas and IoUs (random boxes) and paired areas (identical, contained, touching
    at an edge or a corner, disjoint, turned by π, perturbed), float64 and float32, in Triton's
    interpreter: the torch construction's numbers to float rounding, shapely's to 1e-4; a batch
    split over several launches gives the same areas."""
    data = _inputs()
    script = _SCRIPT.format(data=json.dumps({k: v.tolist() for k, v in data.items()}))
    out = triton_interpreted(script)
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        _check_against_oracles(out[name], data, dtype)
        assert out[name]["empty"] == [1, 0, 8]
    assert out["launches"]  # a batch split over several launches (CUDA's grid limit)
    assert min(out["overlaps"]) > 0, out["overlaps"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_box_kernels_give_shapely_areas() -> None:
    """The same checks compiled on CUDA, through the public functions (which dispatch to the
    kernels there), and the paired IoU of ``rotated_iou_bev_aligned``."""
    from v2x.common import triton_available
    from v2x.perception.boxes import use_box_kernel

    if not triton_available():
        pytest.skip("needs Triton")
    data = _inputs()
    for dtype in (torch.float64, torch.float32):
        a, b = (torch.tensor(data[k], dtype=dtype, device="cuda") for k in ("a", "b"))
        pa, pb = (torch.tensor(data[k], dtype=dtype, device="cuda") for k in ("pa", "pb"))
        assert use_box_kernel(a, b)
        got = {
            "area": _pairwise_intersection(a, b).cpu().tolist(),
            "iou": rotated_iou_bev(a, b).cpu().tolist(),
            "aligned": _pair_intersection(pa, pb).cpu().tolist(),
        }
        _check_against_oracles(got, data, dtype)
        one = rotated_iou_bev(a[:1], b[:3])  # a size of 1 is a compile-time constant
        torch.testing.assert_close(one.cpu(), rotated_iou_bev(a[:1].cpu(), b[:3].cpu()))
        torch.testing.assert_close(
            rotated_iou_bev_aligned(pa, pb).cpu(),
            rotated_iou_bev_aligned(pa.cpu(), pb.cpu()),
            atol=1e-10 if dtype == torch.float64 else 2e-5,
            rtol=0,
        )
        # coincident vertices in bulk (a box with itself, and turned by π): the whole box
        # (on an H200 one such pair in 12 once lost a quarter of its area to a skipped rank)
        boxes = torch.tensor(_random_boxes(np.random.default_rng(5), 4096), dtype=dtype)
        turned = boxes.clone()
        turned[:, 6] += torch.pi
        areas = boxes[:, 3] * boxes[:, 4]
        for other in (boxes, turned):
            got = _pair_intersection(boxes.cuda(), other.cuda()).cpu()
            torch.testing.assert_close(got, areas, rtol=1e-5, atol=0)
