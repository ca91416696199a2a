"""Which of ``K`` channel conditions are identical: the one test every merge uses.

A run evaluates ``K`` conditions (SNRs) of one setting at once; where conditions come out
bitwise equal they are computed once and shared. That happens at three stages, all through
``distinct_conditions``: decoded maps before fusion (``v2x.pipeline``), detections before
scoring (``v2x.evaluation.condition_groups``) and the re-runs of conditions that lost the same
late payloads (``v2x.execution``). ``repeat_detections`` tiles one condition's detections for
``K``. This module imports only ``v2x.perception``'s detection type.
"""

from __future__ import annotations

import math

import torch

from v2x.perception.detector import Detections


def _bits(t: torch.Tensor) -> torch.Tensor:
    """``t`` reinterpreted as integers of its width (bitwise comparisons: -0.0 != 0.0)."""
    t = t.contiguous()
    if t.dtype == torch.bool:
        return t.view(torch.uint8)
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.view(width)


def _sample(rows: torch.Tensor, size: int = 1 << 16) -> torch.Tensor:
    """About ``size`` evenly strided columns of ``rows [K, N]`` (all of them when N is small)."""
    step = max(1, rows.shape[1] // size)
    return rows[:, ::step]


def distinct_conditions(*tensors: torch.Tensor | None) -> tuple[list[int], torch.Tensor]:
    """Group the ``K`` conditions (first dim of every tensor) whose slices are bitwise equal.

    A float32 sum over a strided sample of each condition's values picks candidates (one host
    sync, a small fraction of one pass); candidates are then confirmed bit for bit, so two
    conditions share a group only if every tensor is identical in them. ``None`` tensors are
    skipped; a condition whose sampled sum is not finite is a group of its own.

    Returns:
        ``reps``: the first condition of each group, ascending; ``inverse [K]`` int64 (CPU):
        the group of each condition.
    """
    present = [t for t in tensors if t is not None]
    k = present[0].shape[0]
    keys = torch.stack([_sample(t.reshape(k, -1)).float().sum(1) for t in present], 1).tolist()
    reps: list[int] = []
    inverse = [0] * k
    for i, key in enumerate(keys):
        group = -1
        if all(math.isfinite(v) for v in key):
            for gi, r in enumerate(reps):
                if keys[r] == key and all(torch.equal(_bits(t[i]), _bits(t[r])) for t in present):
                    group = gi
                    break
        if group < 0:
            group = len(reps)
            reps.append(i)
        inverse[i] = group
    return reps, torch.tensor(inverse, dtype=torch.int64)


def condition_members(inverse: torch.Tensor) -> list[list[int]]:
    """``inverse [K]`` (from ``distinct_conditions``) as the members of each group, ascending,
    groups ordered by their first member."""
    groups: dict[int, list[int]] = {}
    for ci, g in enumerate(inverse.tolist()):
        groups.setdefault(g, []).append(ci)
    return list(groups.values())


def repeat_detections(det: Detections, k: int) -> Detections:
    """The ``B`` frames of ``det`` tiled for ``K`` conditions (``K·B`` rows, condition-major)."""
    return Detections(
        *(
            t.repeat(k, *([1] * (t.dim() - 1)))
            for t in (det.boxes, det.scores, det.labels, det.valid)
        )
    )


__all__ = ["condition_members", "distinct_conditions", "repeat_detections"]
