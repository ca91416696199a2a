"""The fusion strategies without learned parts or selection (registry ``FUSIONS``): ego only
(``none``), raw points (``early``), boxes merged by NMS (``late``), and per-cell feature fusion
over the valid agents: element-wise maximum (``max``), mean (``mean``) and OpenCOOD's
scaled dot-product attention (``attention``). Signature and masking: ``v2x.perception.fusion``.
"""

from __future__ import annotations

import torch

from v2x.perception.fusion_base import (
    FUSIONS,
    FeatureFusion,
    clean_mask,
    ego_blocks,
    finite_cells,
    own_map,
)

__all__ = ["AttentionFusion", "EarlyFusion", "LateFusion", "MaxFusion", "MeanFusion", "NoFusion"]


@FUSIONS.register("none")
class NoFusion(FeatureFusion):
    """Ego only: the collaborators' features are ignored (and nothing is sent)."""

    stage = "ego"
    returns_own_map_alone = True

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return own_map(features)


@FUSIONS.register("early")
class EarlyFusion(NoFusion):
    """Raw points of collaborators are transformed to the ego frame before encoding."""

    stage = "points"


@FUSIONS.register("late")
class LateFusion(NoFusion):
    """Each agent detects on its own; boxes are sent, transformed and merged by NMS."""

    stage = "boxes"


@FUSIONS.register("max")
class MaxFusion(FeatureFusion):
    """Element-wise maximum over the valid agents of each cell."""

    returns_own_map_alone = True  # the maximum of one map is that map

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        masked, _ = clean_mask(features, valid, fill=torch.finfo(features.dtype).min)
        return masked.amax(dim=1)

    def fuse_warped(
        self, ego: torch.Tensor, warped: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """In inference, ``forward``'s values without the stacked ``[N, 1+M, C, h, w]`` maps
        (a maximum is exact in any order): the collaborators' invalid cells are overwritten in
        ``warped``, their maximum taken, then the ego's, each of the ``E`` ego maps cleaned
        once and broadcast over its ``N / E`` fused maps (not repeated). With a gradient,
        ``forward`` itself (ties would share it differently)."""
        needs_grad = torch.is_grad_enabled() and (ego.requires_grad or warped.requires_grad)
        if needs_grad or type(self).forward is not MaxFusion.forward:
            return super().fuse_warped(ego, warped, valid)
        k = ego_blocks(ego, warped.shape[0])
        dtype = torch.promote_types(ego.dtype, warped.dtype)
        keep = valid & finite_cells(warped)
        others = warped.to(dtype).masked_fill_(~keep, torch.finfo(dtype).min).amax(dim=1)
        blocks = others.view(k, ego.shape[0], *others.shape[1:])  # [N / E, E, C, h, w]
        torch.maximum(blocks, own_map(ego.to(dtype)), out=blocks)
        return others


@FUSIONS.register("mean")
class MeanFusion(FeatureFusion):
    """Mean over the valid agents of each cell."""

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        features, valid = clean_mask(features, valid)
        weight = valid.float()
        return (features * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)


@FUSIONS.register("attention")
class AttentionFusion(FeatureFusion):
    """Per-cell scaled dot-product attention of the ego's feature over all valid agents
    (OpenCOOD's AttFusion: query, keys and values are the agents' features at that cell, scores
    over ``sqrt(C)``). Deliberate difference: a masked cell (outside a collaborator's map,
    unsent, lost) takes no part, where OpenCOOD fuses the zeros it warps in
    (``docs/fusion_references.md``)."""

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        features, valid = clean_mask(features, valid)
        c = features.shape[2]
        query = features[:, :1]  # [B, 1, C, h, w]
        logits = (query * features).sum(dim=2, keepdim=True) / c**0.5  # [B, A, 1, h, w]
        logits = logits.masked_fill(~valid, float("-inf"))
        weights = torch.softmax(logits, dim=1)
        return (weights * features).sum(dim=1)
