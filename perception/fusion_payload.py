"""The semantic-payload fusions (registry ``FUSIONS``; ``sends_payload``): collaborators send
their head's output map (``semantic_map``) or one message per detected object
(``object_features``) instead of feature maps; the ego keeps, per cell, the payload of the most
confident valid agent and turns it into head outputs through a learned adapter
(``v2x.perception.semantic``).
"""

from __future__ import annotations

import torch

from v2x.perception.fusion_base import FUSIONS, FeatureFusion, clean_mask
from v2x.perception.semantic import (
    adapted_head,
    head_payload,
    object_payload,
    top_cells,
)

__all__ = ["ObjectFeatureFusion", "PayloadFusion", "SemanticMapFusion"]


class PayloadFusion(FeatureFusion):
    """Base of the semantic-payload fusions (``v2x.perception.semantic``).

    ``payload(model, features [S, C, h, w]) -> (maps [S, P, h, w], cells [S, 1, h, w] | None)``
    is what each collaborator sends (``cells``: the only cells sent; ``None``: the whole map);
    ``own_payload(model, features [B, C, h, w]) -> [B, P, h, w]`` is the ego's counterpart (its
    own head output, every cell). ``forward(features [B, A, 1 + P, h, w], valid)`` takes at
    each cell the payload of the most confident valid agent (channel 0; ties go to the lower
    agent index, the ego first); ``head(model, ego_features, fused, from_collaborator)`` gives
    the head outputs through the fusion's learned adapter (``model.payload_adapters[name]``).
    """

    sends_payload = True
    adapter: str = ""

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        features, valid = clean_mask(features, valid)
        score = torch.where(valid[:, :, 0], features[:, :, 0], float("-inf"))  # [B, A, h, w]
        winner = score.argmax(dim=1, keepdim=True)  # [B, 1, h, w]
        index = winner[:, :, None].expand(-1, -1, features.shape[2], -1, -1)
        return features.gather(1, index)[:, 0]

    def winners(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``[B, 1, h, w]`` bool: cells where a collaborator's payload wins in ``forward``."""
        features, valid = clean_mask(features, valid)
        score = torch.where(valid[:, :, 0], features[:, :, 0], float("-inf"))
        return score.argmax(dim=1, keepdim=True) > 0

    def own_payload(self, model, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def payload(self, model, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def head(
        self,
        model,
        ego_features: torch.Tensor,
        fused: torch.Tensor,
        from_collaborator: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``heat [B, K, h, w]``, ``reg [B, 8, h, w]`` of the fused payload ``[B, 1 + P, h, w]``."""
        return adapted_head(
            model.payload_adapters[self.adapter], ego_features, fused, from_collaborator,
            model.config.num_classes,
        )  # fmt: skip


@FUSIONS.register("semantic_map")
class SemanticMapFusion(PayloadFusion):
    """Collaborators send their head's output map: ``K`` class logits + 8 box values per cell
    (12 channels with 4 classes), all cells or the ``max_fraction`` most confident ones.

    Args:
        max_fraction: fraction of the ``h·w`` cells sent, in (0, 1] (1: the whole map; below,
            the ``selective`` codec charges the selection map as for ``where2comm``).
    """

    adapter = "semantic_map"

    def __init__(self, max_fraction: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < max_fraction <= 1.0:
            raise ValueError(f"semantic_map: 'max_fraction' must be in (0, 1], got {max_fraction}")
        self.max_fraction = float(max_fraction)

    def own_payload(self, model, features: torch.Tensor) -> torch.Tensor:
        return head_payload(*model.head(features))

    def payload(self, model, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        heat, reg = model.head(features)
        maps = head_payload(heat, reg)
        if self.max_fraction >= 1.0:
            return maps, None
        cells = top_cells(heat, self.max_fraction)
        return maps * cells, cells


@FUSIONS.register("object_features")
class ObjectFeatureFusion(PayloadFusion):
    """Collaborators send one message per detected object (instance-level collaboration): its
    ``K`` class logits, 8 box values and the ``C``-channel feature vector at its centre cell,
    ``K + 8 + C`` values per object plus its cell index (the selection map).

    Args:
        score_threshold: detections sent (``None``: the detector's ``score_threshold``).
    """

    adapter = "object_features"

    def __init__(self, score_threshold: float | None = None) -> None:
        super().__init__()
        if score_threshold is not None and not 0.0 <= score_threshold < 1.0:
            raise ValueError(
                f"object_features: 'score_threshold' must be in [0, 1) or null, got {score_threshold}"
            )
        self.score_threshold = score_threshold

    def own_payload(self, model, features: torch.Tensor) -> torch.Tensor:
        return head_payload(*model.head(features), features)

    def payload(self, model, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return object_payload(model, features, self.score_threshold)
