"""The greedy NMS solve in one Triton launch (``nms_triton``) against the exact greedy solution
and a shapely greedy loop: in Triton's interpreter on the CPU, and compiled on CUDA (``gpu``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from v2x.perception.nms import batched_rotated_nms

sys.path.insert(0, str(Path(__file__).parent))
from test_nms import _clustered_boxes, _full_matrix_nms_keep, _reference_nms  # noqa: E402

_SCRIPT = """
import json, torch
from v2x.perception.nms import _suppression_pairs
from v2x.perception.nms_triton import greedy_keep_triton
cases = json.loads('''{cases}''')
out = []
for case in cases:
    boxes = torch.tensor(case["boxes"], dtype=getattr(torch, case["dtype"]))
    valid = torch.tensor(case["valid"])
    labels = None if case["labels"] is None else torch.tensor(case["labels"])
    pairs = _suppression_pairs(boxes, valid, labels, case["thr"])
    out.append(greedy_keep_triton(*pairs, valid).tolist())
none = torch.zeros(0, dtype=torch.int64)
out.append(greedy_keep_triton(none, none, none.bool(), valid).tolist())
out.append(list(greedy_keep_triton(none, none, none.bool(), valid[:, :0]).shape))
print(json.dumps(out))
"""


def _cases() -> list[dict]:
    """Rank-ordered sets (best first) of clustered boxes with suppression chains: padding
    anywhere, with and without classes, float64 and float32, four thresholds."""
    cases = []
    for seed in range(4):
        rng = np.random.default_rng(300 + seed)
        b, k = 3, int(rng.integers(5, 40))
        boxes = np.stack([_clustered_boxes(rng, k) for _ in range(b)])
        valid = rng.uniform(size=(b, k)) < [[1.0], [0.7], [0.2]]
        labels = rng.integers(0, 2, (b, k)).tolist() if seed % 2 else None
        cases.append({
            "boxes": boxes.tolist(), "valid": valid.tolist(), "labels": labels,
            "thr": [0.0, 0.05, 0.1, 0.4][seed], "dtype": ["float64", "float32"][seed % 2],
        })  # fmt: skip
    return cases


def _expected(case: dict) -> torch.Tensor:
    """The exact greedy keep mask from every pair's IoU (``test_nms._full_matrix_nms_keep``)."""
    boxes = torch.tensor(case["boxes"], dtype=getattr(torch, case["dtype"]))
    labels = None if case["labels"] is None else torch.tensor(case["labels"])
    return _full_matrix_nms_keep(boxes, torch.tensor(case["valid"]), labels, case["thr"])


def test_the_greedy_kernel_keeps_the_greedy_set_in_the_interpreter(triton_interpreted) -> None:
    """Given the suppressing pairs (``_suppression_pairs``), the kernel's keep masks equal the
    exact greedy solution (all pairs' IoU, dense solve) on clustered sets with suppression
    chains, padding, classes and both dtypes; with no pairs every valid box is kept; an empty
    set gives an empty mask."""
    cases = _cases()
    out = triton_interpreted(_SCRIPT.format(cases=json.dumps(cases)))
    for case, got in zip(cases, out[:-2]):
        expected = _expected(case)
        assert expected.any(dim=1).sum() >= 2 and (~expected & torch.tensor(case["valid"])).any()
        assert torch.equal(torch.tensor(got), expected)
    assert out[-2] == cases[-1]["valid"]
    assert out[-1] == [3, 0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_nms_keeps_the_greedy_set() -> None:
    """Compiled on CUDA: the kernel's keep masks from the pairs, and ``batched_rotated_nms``
    (IoU and solve through the kernels) against a shapely greedy loop."""
    from v2x.common import triton_available
    from v2x.perception.nms import _suppression_pairs
    from v2x.perception.nms_triton import greedy_keep_triton

    if not triton_available():
        pytest.skip("needs Triton")
    for case in _cases():
        boxes = torch.tensor(case["boxes"], dtype=getattr(torch, case["dtype"]), device="cuda")
        labels = None if case["labels"] is None else torch.tensor(case["labels"], device="cuda")
        valid = torch.tensor(case["valid"], device="cuda")
        keep = greedy_keep_triton(*_suppression_pairs(boxes, valid, labels, case["thr"]), valid)
        assert torch.equal(keep.cpu(), _expected(case))
    rng = np.random.default_rng(9)
    sets = np.stack([_clustered_boxes(rng, 60) for _ in range(4)])
    scores = rng.uniform(size=(4, 60)).astype(np.float32)
    boxes = torch.tensor(sets, device="cuda").float()
    result = batched_rotated_nms(boxes, torch.tensor(scores, device="cuda"), iou_threshold=0.1)
    for i in range(4):
        expected = _reference_nms(sets[i], scores[i], 0.1)
        assert result.indices[i][result.mask[i]].tolist() == list(expected)
