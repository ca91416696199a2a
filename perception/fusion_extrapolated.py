"""Fusion with latency compensation (registry ``FUSIONS``; ``compensates_latency``): each
collaborator's boxes, matched with its previous scan's, are moved on by their estimated motion
over the age of its data; ``late_extrapolated`` merges the moved boxes, ``max_extrapolated``
moves the cells of each moving box in the warped map before the maximum.
"""

from __future__ import annotations

from typing import Any

import torch

from v2x.perception.fusion_base import FUSIONS
from v2x.perception.fusion_basic import LateFusion, MaxFusion

__all__ = ["LateExtrapolatedFusion", "MaxExtrapolatedFusion"]


@FUSIONS.register("late_extrapolated")
class LateExtrapolatedFusion(LateFusion):
    """Late fusion with latency compensation: each collaborator's boxes are moved on by their
    estimated motion over the estimated age of its data, before the merge (the box
    extrapolation baseline of the asynchrony literature, e.g. V2X-ViT's and CoBEVFlow's
    "late fusion + motion extrapolation").

    Motion: each box is matched to the nearest centre of the same class among the same
    collaborator's detections on its previous scan (``period_s`` earlier), within
    ``max_speed_mps · period_s``; its velocity is the displacement over ``period_s``. Unmatched
    boxes stay where they are, and so do boxes slower than ``min_speed_mps`` (the jitter of a
    detector's boxes between two scans would otherwise move parked cars). Without a history
    (``motion`` not given to the pipeline, or ages 0) this is ``late``.

    Args:
        max_speed_mps: the matching gate, as a speed (m/s).
        min_speed_mps: slower estimates count as standing still (m/s; 0: none).
    """

    compensates_latency = True

    def __init__(self, max_speed_mps: float = 30.0, min_speed_mps: float = 0.0) -> None:
        super().__init__()
        if not max_speed_mps > 0:
            raise ValueError(f"late_extrapolated: 'max_speed_mps' must be > 0, got {max_speed_mps}")
        if not 0 <= min_speed_mps < max_speed_mps:
            raise ValueError(
                f"late_extrapolated: 'min_speed_mps' must be in [0, max_speed_mps), "
                f"got {min_speed_mps}"
            )
        self.max_speed_mps = float(max_speed_mps)
        self.min_speed_mps = float(min_speed_mps)

    def extrapolate(
        self,
        boxes: torch.Tensor,
        valid: torch.Tensor,
        labels: torch.Tensor,
        previous: torch.Tensor,
        previous_valid: torch.Tensor,
        previous_labels: torch.Tensor,
        age_s: torch.Tensor,
        period_s: float | torch.Tensor,
    ) -> torch.Tensor:
        """Boxes moved on to the fusion instant.

        Args:
            boxes: ``[B, A, K, 7]`` float64 every agent's boxes in the ego frame (x, y, z, l, w,
                h, yaw; m, rad); valid ``[B, A, K]`` bool; labels ``[B, A, K]`` int64.
            previous, previous_valid, previous_labels: the same of each agent's previous scan
                (``[B, A, K', …]``), ``period_s`` seconds earlier.
            age_s: ``[B, A]`` seconds from each agent's scan to the fusion (the ego's slot 0,
                whatever it holds, is not moved).
            period_s: seconds between each agent's previous scan and the one fused: one for
                all, or ``[B, A]`` (recorded data, whose scans are not evenly spaced).

        Returns: ``[B, A, K, 7]`` float64, centres ``+ v · age``; sizes, heights and headings
        unchanged.
        """
        period = torch.as_tensor(period_s, dtype=boxes.dtype, device=boxes.device)
        if not bool((period > 0).all()):
            raise ValueError(f"late_extrapolated: 'period_s' must be > 0, got {period_s}")
        period = period[..., None] if period.ndim else period  # [B, A, 1]: per box
        centres, before = boxes[..., :2], previous[..., :2]
        dist = torch.cdist(centres, before)  # [B, A, K, K']
        usable = previous_valid[..., None, :] & (
            labels[..., :, None] == previous_labels[..., None, :]
        )
        dist = torch.where(usable, dist, torch.full_like(dist, float("inf")))
        nearest, index = dist.min(dim=-1)  # [B, A, K]
        matched = valid & (nearest <= self.max_speed_mps * period)
        origin = torch.gather(before, 2, index[..., None].expand(*index.shape, 2))
        velocity = (centres - origin) / period[..., None]
        moving = matched & (velocity.norm(dim=-1) >= self.min_speed_mps)
        velocity = torch.where(moving[..., None], velocity, 0.0)
        age = torch.nan_to_num(age_s.to(boxes.dtype), nan=0.0).clone()
        age[:, 0] = 0.0
        out = boxes.clone()
        out[..., :2] = centres + velocity * age[:, :, None, None]
        return out


@FUSIONS.register("max_extrapolated")
class MaxExtrapolatedFusion(MaxFusion):
    """Max fusion with latency compensation of the features (box-level BEV flow in the style
    of CoBEVFlow, Wei et al. 2023, without its learned parts): each collaborator's boxes are
    estimated on its map and on its previous scan's, matched and extrapolated over the
    estimated age of its data exactly as ``late_extrapolated`` does, and the cells of each
    moving box (its footprint grown by ``margin_m``) are moved by that displacement in the
    warped map before the maximum; the cells a box left are masked (stale). The boxes and
    velocities are the collaborator's own detections (a few hundred bytes per frame, not
    charged to the ledger). Without a history (ages 0) this is ``max``.

    Args:
        max_speed_mps, min_speed_mps: as ``late_extrapolated``.
        margin_m: grows each box footprint on every side (m).
    """

    compensates_latency = True

    def __init__(
        self, max_speed_mps: float = 30.0, min_speed_mps: float = 0.0, margin_m: float = 0.5
    ) -> None:
        super().__init__()
        gate = LateExtrapolatedFusion(max_speed_mps, min_speed_mps)  # checks the speeds
        self.max_speed_mps, self.min_speed_mps = gate.max_speed_mps, gate.min_speed_mps
        if not margin_m >= 0:
            raise ValueError(f"max_extrapolated: 'margin_m' must be >= 0, got {margin_m}")
        self.margin_m = float(margin_m)

    def extrapolate(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``LateExtrapolatedFusion.extrapolate``: boxes ``[B, A, K, 7]`` moved on to the fusion
        instant."""
        return LateExtrapolatedFusion.extrapolate(self, *args, **kwargs)
