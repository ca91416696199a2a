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
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from v2x.common import Registry
from v2x.perception.semantic import (
    adapted_head,
    head_payload,
    object_payload,
    top_cells,
)
from v2x.perception.where2comm_selection import (
    above_threshold,
    gaussian_kernel,
    smoothed,
    where2comm_options,
)


def finite_cells(features: torch.Tensor) -> torch.Tensor:
    """``features [B, A, C, h, w]`` → ``[B, A, 1, h, w]`` bool: every one of the cell's ``C``
    values is finite (NaN and ±inf reach the minimum or the maximum; no full-size mask)."""
    values = features.detach()
    if values.is_cuda:  # one pass on a GPU
        low, high = torch.aminmax(values, dim=2, keepdim=True)
        return torch.isfinite(low + high)
    # (on the CPU two reductions are ~3x faster than aminmax's one)
    return torch.isfinite(values.amax(dim=2, keepdim=True) + values.amin(dim=2, keepdim=True))


def own_map(features: torch.Tensor) -> torch.Tensor:
    """``features [B, A, C, h, w]`` → ``[B, C, h, w]``: the ego's own map (agent 0) with its
    NaN and ±inf zeroed, what every fusion fuses of the ego's map (``clean_mask``) and what a
    fusion declaring ``returns_own_map_alone`` returns when the ego's map alone is valid."""
    return torch.nan_to_num(features[:, 0], nan=0.0, posinf=0.0, neginf=0.0)


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
            ego: ``[N, 1, C, h, w]`` the ego's own maps (always valid).
            warped: ``[N, M, C, h, w]`` the collaborators' maps on the ego's grid: the
                caller's own tensor, which a fusion may overwrite.
            valid: ``[N, M, 1, h, w]`` bool, the cells each collaborator may fuse into.

        Returns ``[N, C, h, w]``: by default ``forward`` on the stacked maps; a fusion may
        compute the same values without building them.
        """
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
        ``warped``, their maximum taken, then the ego's. With a gradient, ``forward`` itself
        (ties would share it differently)."""
        needs_grad = torch.is_grad_enabled() and (ego.requires_grad or warped.requires_grad)
        if needs_grad or type(self).forward is not MaxFusion.forward:
            return super().fuse_warped(ego, warped, valid)
        dtype = torch.promote_types(ego.dtype, warped.dtype)
        keep = valid & finite_cells(warped)
        others = warped.to(dtype).masked_fill_(~keep, torch.finfo(dtype).min).amax(dim=1)
        return torch.maximum(others, own_map(ego.to(dtype)))


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


@FUSIONS.register("where2comm")
class Where2commFusion(AttentionFusion):
    """Confidence-sparse fusion in the style of Where2comm (Hu et al., NeurIPS 2022).

    Each collaborator computes a spatial confidence map from its own detection heatmap (the
    sigmoid of its largest class logit per cell) and sends only its most important cells; the
    ego fuses what arrives by attention, the unsent cells masked out. The pipeline sends the
    cells through the configured codec wrapped in the ``selective`` codec, so the selection map
    itself is charged to the payload. Two modes:

    * **budget** (``max_fraction``, default 0.1): each collaborator sends its ``max_fraction``
      best cells by ``selection_score`` (the same count on every link: a sweep sets the bits).
    * **threshold** (``threshold``; published Where2comm's ``thre``, 0.01 in their configs):
      each collaborator sends every cell whose score is strictly above it, so the count varies
      per link and frame; 0 sends every cell, a threshold above every score nothing (the link
      is then not on air and costs nothing). The pipeline codes each link's own cells
      (``v2x.condition_streams.send_cells``): every link is charged for what it sent.

    Scores (``selection_score``): with ``selection="window"`` the largest confidence within the
    ``window_cells × window_cells`` neighbourhood of each cell (a grey dilation; with a budget
    plus ``TIE_BREAK`` × the cell's own confidence). A centre head's confidence is a narrow peak
    at each object's centre (Gaussian targets of about one cell), so ranking the raw map keeps
    the centres and then background noise, not the objects' footprints around them (with the
    standard PointPillars detector at 10 % of the cells: 38 % of a collaborator's vehicle cells,
    and vehicle AP@0.7 barely above ego-only); the dilation keeps every confident object's whole
    neighbourhood, as Where2comm's own Gaussian smoothing of the map intends.
    ``window_cells = 1`` is the raw confidence. With ``selection="gaussian"`` Where2comm's own
    score: the confidence map convolved with its ``k_size × k_size`` Gaussian of ``c_sigma``
    (zero padding; ``v2x.perception.where2comm_selection``; their configs: 5, 1.0). Its
    threshold keeps a super-level set of that score: the same cells as ranking by it and keeping
    as many. Deliberate differences (``docs/fusion_references.md``): the 7 × 7 window by default
    with a budget, only the ego (not every even-indexed agent) keeping its whole map, and unsent
    cells masked out of the attention (theirs fuse them as zeros).

    Args:
        max_fraction: budget, fraction of the ``h·w`` cells a collaborator sends, in (0, 1];
            ``None``: 0.1 without a threshold. Excludes ``threshold``.
        threshold: send the cells whose score is above it (a finite number ≥ 0), or ``None``
            (budget mode). Excludes ``max_fraction``.
        window_cells: side of the neighbourhood, in cells of the feature map (odd, ≥ 1; 7 cells
            of 0.8 m span 5.6 m, a car's length with a margin); ``selection="window"`` only.
        selection: ``"window"`` (the neighbourhood maximum) or ``"gaussian"`` (Where2comm's);
            ``None``: ``"gaussian"`` with a threshold (as published), ``"window"`` with a budget.
        k_size, c_sigma: the Gaussian's side (odd, ≥ 1, cells) and sigma (> 0, cells);
            ``selection="gaussian"`` only.
    """

    #: Weight of a cell's own confidence in ``selection_score``: it breaks the ties of the
    #: neighbourhood maximum (the cells nearer the peak first) and is too small to reorder cells
    #: whose neighbourhood maxima differ by more than 0.001.
    TIE_BREAK = 1e-3
    selects_cells = True

    def __init__(
        self,
        max_fraction: float | None = None,
        window_cells: int = 7,
        selection: Literal["window", "gaussian"] | None = None,
        k_size: int = 5,
        c_sigma: float = 1.0,
        threshold: float | None = None,
    ) -> None:
        super().__init__()
        options = where2comm_options(max_fraction, threshold, window_cells, selection, k_size,
                                     c_sigma)  # fmt: skip
        for name, value in options.items():
            setattr(self, name, value)

    def selection_score(self, heat_logits: torch.Tensor) -> torch.Tensor:
        """``heat_logits [S, K, h, w]`` → ``[S, 1, h, w]`` the score cells are selected by: the
        largest ``confidence`` within the ``window_cells`` neighbourhood of each cell (cells
        beyond the map's edge do not count), plus, with a budget, ``TIE_BREAK`` × the cell's
        own confidence; with ``selection="gaussian"`` Where2comm's smoothed confidence."""
        conf = self.confidence(heat_logits)
        if self.selection == "gaussian":
            return smoothed(conf, self.k_size, self.c_sigma)
        if self.window_cells == 1:
            return conf
        pad = self.window_cells // 2
        peak = F.max_pool2d(conf, self.window_cells, stride=1, padding=pad)
        return peak if self.threshold is not None else peak + self.TIE_BREAK * conf

    def selection_mask(self, confidence: torch.Tensor) -> torch.Tensor:
        """``[S, 1, h, w]`` bool: the cells of each score map above ``threshold``, or its
        ``max_fraction`` best cells (``FeatureFusion.selection_mask``)."""
        if self.threshold is None:
            return super().selection_mask(confidence)
        return above_threshold(confidence, self.threshold)

    def gaussian_kernel(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[1, 1, k_size, k_size]`` float32 Where2comm's smoothing kernel
        (``v2x.perception.where2comm_selection.gaussian_kernel``)."""
        return gaussian_kernel(self.k_size, self.c_sigma, device)


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
