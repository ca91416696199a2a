"""The base of every fusion strategy (``FeatureFusion``: ``forward(features, valid) -> fused``
and the capabilities the pipeline reads, declared on the class and checked when a subclass is
defined), the registry ``FUSIONS``, and the masking every fusion shares (``finite_cells``,
``own_map``, ``clean_mask``). The family, its stages and its contract: ``v2x.perception.fusion``,
which registers every strategy (import ``FUSIONS`` from there to find them all).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

import torch
from torch import nn

from v2x.common import Registry

__all__ = [
    "CAPABILITY_METHODS",
    "FUSIONS",
    "OWN_MAP_KEY",
    "STAGES",
    "FeatureFusion",
    "Stage",
    "clean_mask",
    "finite_cells",
    "own_map",
]


def finite_cells(features: torch.Tensor) -> torch.Tensor:
    """``features [B, A, C, h, w]`` → ``[B, A, 1, h, w]`` bool: every one of the cell's ``C``
    values is finite (NaN and ±inf reach the minimum or the maximum; no full-size mask)."""
    values = features.detach()
    if values.is_cuda:  # one pass on a GPU
        low, high = torch.aminmax(values, dim=2, keepdim=True)
        return torch.isfinite(low + high)
    # (on the CPU two reductions are ~3x faster than aminmax's one)
    return torch.isfinite(values.amax(dim=2, keepdim=True) + values.amin(dim=2, keepdim=True))


def ego_blocks(ego: torch.Tensor, n: int) -> int:
    """``n / E``: the blocks of conditions that the ``E`` rows of ``ego [E, ...]`` serve in
    ``n`` fused maps (fused map ``i`` uses row ``i % E``); ``ValueError`` where ``E`` does not
    divide ``n``."""
    e = ego.shape[0]
    if not e or n % e:
        raise ValueError(f"fusion: {e} ego maps do not divide {n} fused maps")
    return n // e


def repeated_ego(ego: torch.Tensor, n: int) -> torch.Tensor:
    """``ego [E, ...]`` as ``[n, ...]``, row ``i`` from row ``i % E`` (``ego`` itself when
    ``E = n``); ``ValueError`` where ``E`` does not divide ``n`` (``ego_blocks``)."""
    k = ego_blocks(ego, n)
    return ego if k == 1 else ego.repeat(k, *([1] * (ego.dim() - 1)))


def own_map(features: torch.Tensor) -> torch.Tensor:
    """``features [B, A, C, h, w]`` → ``[B, C, h, w]``: the ego's own map (agent 0) with its
    NaN and ±inf zeroed, what every fusion fuses of the ego's map (``clean_mask``) and what a
    fusion declaring ``returns_own_map_alone`` returns when the ego's map alone is valid."""
    return torch.nan_to_num(features[:, 0], nan=0.0, posinf=0.0, neginf=0.0)


def collaborator_rows(features: torch.Tensor, keep_dtype: bool = False) -> torch.Tensor:
    """``features [B, A, C, h, w]`` → ``[B·(A−1), C, h, w]``: the collaborators' maps (agents
    1…A−1 of each frame, frame by frame), one copy in the maps' own layout: float32 (float16 /
    bfloat16 maps converted in it, exactly), or with ``keep_dtype`` in their own dtype (for a
    codec that ``reads_reduced_maps``). ``reshape`` would copy them too (the ego's map lies
    between each frame's collaborators, so no view exists), but always into channels-first
    memory: channels-last maps would be transposed there and again by every reader that wants
    them channels-last. The copy keeps the order of the slice's strides (its result is dense),
    so the frames and agents then merge in a view."""
    dtype = features.dtype if keep_dtype else torch.float32
    return features[:, 1:].to(dtype, copy=True).flatten(0, 1)


def clean_mask(
    features: torch.Tensor, valid: torch.Tensor, fill: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the cells with a non-finite value from ``valid``, force the ego's row valid, and
    put ``fill`` in every invalid cell and 0 in the ego's non-finite entries.

    ``features [B, A, C, h, w]``, ``valid [B, A, 1, h, w]`` bool. Finiteness per cell is
    ``finite_cells`` (no full-size mask: on 384-channel maps the full-size passes are what
    costs)."""
    finite = finite_cells(features)
    valid = torch.cat([torch.ones_like(valid[:, :1]), (valid & finite)[:, 1:]], dim=1)
    cleaned = torch.where(valid, features, fill)
    cleaned[:, 0] = own_map(features)  # the ego's own map is never dropped, only cleaned
    return cleaned, valid


#: ``FeatureFusion.ego_alone_key`` of every fusion whose ego-alone map is ``own_map``.
OWN_MAP_KEY: tuple = ("own_map",)

Stage = Literal["ego", "points", "boxes", "features"]
STAGES: tuple[str, ...] = get_args(Stage)

#: The methods each declared capability needs (checked when a subclass is defined).
CAPABILITY_METHODS: dict[str, tuple[str, ...]] = {
    "selects_cells": ("confidence", "selection_score", "selection_mask"),
    "sends_payload": ("payload", "own_payload", "winners", "head"),
    "compensates_latency": ("extrapolate",),
}


class FeatureFusion(nn.Module):
    """Base of every fusion strategy: ``forward(features, valid) -> fused`` (module docstring)
    and the capabilities the pipeline reads (declared on the class, typed, never probed).

    Attributes:
        stage: where agents share: ``"ego"`` (nothing), ``"points"``, ``"boxes"`` or
            ``"features"`` (feature maps or a semantic payload through the codec).
        selects_cells: each collaborator sends only its ``max_fraction`` best cells by
            ``selection_score`` (default: its ``confidence``; ``selection_mask`` in training),
            or, with a ``threshold``, the cells ``selection_mask`` keeps (a count per map); the
            pipeline wraps the codec in the ``selective`` codec.
        max_fraction: the fraction of the ``h·w`` cells a cell-selecting collaborator sends
            (``None`` with a ``threshold``).
        threshold: ``None``, or the score above which a cell-selecting collaborator sends a
            cell (``selection_mask``): each link then sends and is charged its own count.
        sends_payload: a semantic payload (``payload``, ``own_payload``, ``winners``, ``head``:
            ``PayloadFusion``) goes on air instead of the feature map.
        compensates_latency: a fusion that moves collaborators' boxes on by their motion
            (``extrapolate``): a box-stage one its boxes, a feature-stage one the cells of its
            boxes (``max_extrapolated``); the pipeline gives it the motion history.
        returns_own_map_alone: ``forward`` returns exactly ``own_map(features)`` whenever the
            ego's map alone is valid, whatever the values and the instance's settings; the
            pipeline then computes a frame's ego-alone detections once for every such fusion
            (``ego_alone_key``). Not inherited by a subclass that defines its own ``forward``.
    """

    stage: ClassVar[Stage] = "features"
    selects_cells: ClassVar[bool] = False
    sends_payload: ClassVar[bool] = False
    compensates_latency: ClassVar[bool] = False
    returns_own_map_alone: ClassVar[bool] = False
    max_fraction: float | None = 1.0
    threshold: float | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "forward" in vars(cls) and "returns_own_map_alone" not in vars(cls):
            cls.returns_own_map_alone = False  # a new forward must declare it again
        if cls.stage not in STAGES:
            raise TypeError(
                f"fusion {cls.__name__}: 'stage' must be one of {', '.join(STAGES)}, "
                f"got {cls.stage!r}"
            )
        for capability, methods in CAPABILITY_METHODS.items():
            declared = getattr(cls, capability)
            missing = [m for m in methods if not callable(getattr(cls, m, None))]
            if declared and missing:
                raise TypeError(
                    f"fusion {cls.__name__} declares {capability} = True but lacks "
                    f"{', '.join(missing)}"
                )
            defined = [m for m in methods if m in vars(cls)]
            if not declared and defined:  # an undeclared capability would be silently unused
                raise TypeError(
                    f"fusion {cls.__name__} defines {', '.join(defined)} but does not declare "
                    f"{capability} = True"
                )

    def fuse_warped(
        self, ego: torch.Tensor, warped: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """``forward`` of the ego's map and the collaborators' maps warped to it.

        Args:
            ego: ``[E, 1, C, h, w]`` the ego's own maps (always valid); ``E`` divides ``N``
                and fused map ``n`` uses row ``n % E`` (one map per frame for ``N / E`` blocks
                of conditions).
            warped: ``[N, M, C, h, w]`` the collaborators' maps on the ego's grid: the
                caller's own tensor, which a fusion may overwrite.
            valid: ``[N, M, 1, h, w]`` bool, the cells each collaborator may fuse into.

        Returns ``[N, C, h, w]``: by default ``forward`` on the stacked maps (the ego's rows
        repeated); a fusion may compute the same values without building them.
        """
        ego = repeated_ego(ego, warped.shape[0])
        ego_valid = torch.ones_like(valid[:, :1], memory_format=torch.contiguous_format)
        return self(torch.cat([ego, warped], dim=1), torch.cat([ego_valid, valid], dim=1))

    def ego_alone_key(self) -> tuple | None:
        """A key that two fusions share only if ``forward`` gives them the same map when the
        ego's map alone is valid: ``OWN_MAP_KEY`` for every fusion declaring
        ``returns_own_map_alone``, else the class's ``forward`` and the instance's plain
        settings (numbers, strings, flags). ``None`` (never shared) for an undeclared fusion
        with parameters, buffers, submodules or other state, on which that map may depend."""
        if self.returns_own_map_alone:
            return OWN_MAP_KEY
        if any(True for _ in self.parameters()) or any(True for _ in self.buffers()):
            return None
        if any(True for _ in self.children()):
            return None
        settings = []
        for name, value in sorted(vars(self).items()):
            if name.startswith("_") or name == "training":
                continue
            if not isinstance(value, bool | int | float | str | type(None)):
                return None
            settings.append((name, value))
        return (type(self).forward, tuple(settings))

    @staticmethod
    def confidence(heat_logits: torch.Tensor) -> torch.Tensor:
        """``heat_logits [S, K, h, w]`` → ``[S, 1, h, w]`` per-cell confidence in [0, 1] (the
        sigmoid of the largest class logit), what a cell-selecting fusion ranks cells by."""
        return torch.sigmoid(heat_logits.float()).amax(dim=1, keepdim=True)

    def selection_score(self, heat_logits: torch.Tensor) -> torch.Tensor:
        """``heat_logits [S, K, h, w]`` → ``[S, 1, h, w]`` the score a cell-selecting fusion
        keeps cells by (larger first): its ``confidence`` unless it ranks otherwise."""
        return self.confidence(heat_logits)

    def selection_mask(self, confidence: torch.Tensor) -> torch.Tensor:
        """``[S, 1, h, w]`` bool: the ``max_fraction`` most confident cells of each map (the
        cell count rounded as the ``selective`` codec rounds it, at least one), as training
        with the selection sees them."""
        s, _, h, w = confidence.shape
        kept = min(h * w, max(1, int(self.max_fraction * h * w + 0.5)))
        top = torch.topk(confidence.reshape(s, h * w).float(), kept, dim=1).indices
        mask = torch.zeros(s, h * w, dtype=torch.bool, device=confidence.device)
        return mask.scatter_(1, top, True).view(s, 1, h, w)


FUSIONS: Registry[FeatureFusion] = Registry("fusion", base=FeatureFusion)
