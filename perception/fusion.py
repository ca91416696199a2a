"""The fusion family: one registry, one signature, chosen by config (``fusion=<name>``).

Every strategy declares the ``stage`` at which agents share:

* ``"ego"`` — nothing is shared (``none``).
* ``"points"`` — raw points (``early``): accuracy upper bound, bandwidth worst case.
* ``"boxes"`` — detections (``late``), merged by rotated NMS in the ego frame.
* ``"features"`` — intermediate BEV features (``max``, ``mean``, ``attention``, ``where2comm``),
  or a semantic payload sent through the same codecs (``semantic_map``, ``object_features``;
  ``v2x.perception.semantic``).

Feature-stage strategies implement ``forward(features, valid) -> fused``:

    features: [B, A, C, h, w] float32, already warped to the ego frame (ego at index 0).
    valid:    [B, A, 1, h, w] bool, True where the agent's cell is trustworthy (agent present,
              packet received, inside its grid, finite). The ego's row is always used.
    returns   [B, C, h, w] float32.

Payload fusions (``sends_payload``) fuse payload maps already moved to the ego frame
(``splat_to_ego``, with ``with_score``'s confidence in channel 0) by the same signature and
return the fused ``[B, 1 + P, h, w]`` map; their ``head`` turns it into head outputs.

What a fusion needs from the pipeline beyond ``forward`` is declared on its class, never
probed: ``stage``, ``selects_cells``, ``sends_payload``, ``compensates_latency``
(``FeatureFusion``, the base of every registered fusion). A class that declares a capability
without the methods it needs, or defines those methods without declaring it, is refused when
it is defined.

Masked cells never contribute, so a collaborator whose data is bad cannot drag the result below
ego-only: with every collaborator masked, each strategy returns the ego's own features.

The family, one module per kind of strategy; this module imports them all (registering every
strategy) and every name is importable from here:

* ``fusion_base``: ``FeatureFusion``, the registry ``FUSIONS``, ``finite_cells``, ``own_map``,
  ``clean_mask``;
* ``fusion_basic``: ``none``, ``early``, ``late``, ``max``, ``mean``, ``attention``;
* ``fusion_extrapolated``: ``late_extrapolated``, ``max_extrapolated`` (latency compensation);
* ``fusion_where2comm``: ``where2comm``;
* ``fusion_payload``: ``semantic_map``, ``object_features`` (``PayloadFusion``);
* here: ``build_fusion`` and ``fusion_class`` (a strategy by its config name).
"""

from __future__ import annotations

from typing import Any

from v2x.perception.fusion_base import (
    CAPABILITY_METHODS,
    FUSIONS,
    OWN_MAP_KEY,
    STAGES,
    FeatureFusion,
    Stage,
    clean_mask,
    finite_cells,
    own_map,
)
from v2x.perception.fusion_basic import (
    AttentionFusion,
    EarlyFusion,
    LateFusion,
    MaxFusion,
    MeanFusion,
    NoFusion,
)
from v2x.perception.fusion_extrapolated import LateExtrapolatedFusion, MaxExtrapolatedFusion
from v2x.perception.fusion_payload import ObjectFeatureFusion, PayloadFusion, SemanticMapFusion
from v2x.perception.fusion_where2comm import Where2commFusion

__all__ = [
    "CAPABILITY_METHODS",
    "FUSIONS",
    "OWN_MAP_KEY",
    "STAGES",
    "AttentionFusion",
    "EarlyFusion",
    "FeatureFusion",
    "LateExtrapolatedFusion",
    "LateFusion",
    "MaxExtrapolatedFusion",
    "MaxFusion",
    "MeanFusion",
    "NoFusion",
    "ObjectFeatureFusion",
    "PayloadFusion",
    "SemanticMapFusion",
    "Stage",
    "Where2commFusion",
    "build_fusion",
    "clean_mask",
    "finite_cells",
    "fusion_class",
    "own_map",
]


def build_fusion(name: str, **kwargs: Any) -> FeatureFusion:
    """Build a registered fusion strategy by config name."""
    return FUSIONS.build(name, **kwargs)


def fusion_class(name: str) -> type[FeatureFusion]:
    """The class registered as fusion ``name``, whose declared capabilities (``stage``, …) a
    caller reads without building it; ``ValueError`` if ``name`` is unknown or is registered
    with something other than a ``FeatureFusion`` subclass."""
    factory = FUSIONS.get(name)
    if not (isinstance(factory, type) and issubclass(factory, FeatureFusion)):
        raise ValueError(
            f"fusion {name!r}: registered with {factory!r}, expected a subclass of "
            "v2x.perception.fusion.FeatureFusion (which declares its capabilities)"
        )
    return factory
