"""Semantic payloads: what a collaborator sends instead of its dense BEV features.

Two payloads, each a ``[P, h, w]`` map on the sender's stride-``s`` grid (``v2x.perception.head``
box coding), so that every codec and channel carries them unchanged:

* **semantic map** — the sender's head output at every cell: ``K`` class logits and the 8
  regression values (``P = K + 8``; 12 channels with the default 4 classes), all ``h·w`` cells
  or, with a budget, its most confident cells.
* **object features** — one message per object the sender detects (its head's peaks after NMS,
  ``CoopDetector.postprocess``): the ``K`` class logits and the 8 box values re-encoded from the
  decoded box, followed by the sender's ``C``-channel feature vector, written at the box
  centre's cell (``P = K + 8 + C``). Only those cells are sent (``cells``); the cell index is
  the selection map the ``selective`` codec charges.

Layout of every payload map: ``[heat K, reg 8, extra D]`` (``D = 0`` or ``C``).

**On the air** (``payload_to_air`` / ``payload_from_air``, the pipeline's payload path) each class
logit travels as its height above a floor ``FLOOR_MARGIN`` logits below the detector's score
threshold, clamped at 0, and the other values only where some class is above the floor: the rest
of a semantic map (its background, most cells) is sent as empty cells, which the receiver does
not fuse. Nothing that can become a box changes; the digital chain's occupancy map skips the
empty cells and its quantiser's steps follow the cells that matter.

**Warp by centre** (``splat_to_ego``). Regression values are frame-dependent (offsets within a
cell, yaw) and only the centre cell's are meaningful, so bilinear resampling (``warp_to_ego``)
would mix a box's centre cell with its neighbours' unsupervised values. Each sender cell is
instead moved to the ego cell holding the box centre it predicts, transformed with the sender's
pose; its offsets are re-encoded in that ego cell and its yaw turned by the relative yaw. Where
several sender cells land in one ego cell, the most confident wins. A box the sender decodes is
thus decoded by the ego at the same place in the world, exactly.

At the ego the fusion (``SemanticMapFusion`` / ``ObjectFeatureFusion`` in
``v2x.perception.fusion``) takes, per cell, the payload of the most confident valid agent (the
ego's own head output counts as one), and a small learned ``PayloadAdapter`` (zero-initialised:
untrained it changes nothing) rescores the class logits from the ego's features and what won.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from v2x.perception.bev import BEVGrid
from v2x.perception.head import REG_CHANNELS, box_code, encode_box_regression


def payload_channels(num_classes: int, extra_channels: int = 0) -> int:
    """Channels ``P = K + 8 + D`` of a payload map."""
    return num_classes + REG_CHANNELS + extra_channels


def with_score(maps: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[N, P, h, w]`` payload maps → ``[N, 1 + P, h, w]``: the cell's confidence (largest class
    logit) in front, as the payload fusions compare agents by it."""
    return torch.cat([maps[:, :num_classes].amax(dim=1, keepdim=True), maps], dim=1)


#: How far (in logits) below the detector's score threshold a class logit still travels in a
#: payload (``payload_floor``): a class below that floor cannot become a detection, even after a
#: codec's rounding, and a cell with every class below it carries nothing.
FLOOR_MARGIN = 2.0


def payload_floor(score_threshold: float) -> float | None:
    """The logit floor of payloads on the air, ``logit(score_threshold) − FLOOR_MARGIN``
    (``None``, no floor, when the threshold is not in (0, 1): every cell is then sent as is)."""
    if not 0.0 < score_threshold < 1.0:
        return None
    return math.log(score_threshold / (1.0 - score_threshold)) - FLOOR_MARGIN


def payload_to_air(maps: torch.Tensor, num_classes: int, floor: float | None) -> torch.Tensor:
    """Payload maps ``[N, K + 8 + D, h, w]`` → what a collaborator sends: each class logit as its
    height above ``floor`` (``max(logit − floor, 0)``), and the other values only in cells where
    some class is above it; a cell with every class at or below the floor is all zeros.

    A semantic map's background (most of its cells) thus sends nothing a codec must spend bits
    or quantiser range on: the digital chain's occupancy map skips its empty cells, and its
    quantiser's steps follow the cells that can become boxes instead of the unsupervised box
    values and far-negative logits of the background. ``floor=None``: ``maps`` unchanged."""
    if floor is None:
        return maps
    k = num_classes
    heat = (maps[:, :k] - floor).clamp_min(0.0)
    present = (heat > 0).any(dim=1, keepdim=True)
    rest = torch.where(present, maps[:, k:], torch.zeros_like(maps[:, k:]))
    return torch.cat([heat, rest], dim=1)


def payload_from_air(
    received: torch.Tensor, num_classes: int, floor: float | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inverse of ``payload_to_air`` at the receiver: ``[N, K + 8 + D, h, w]`` decoded maps →
    payload maps (class logits ``floor + height``) and ``[N, 1, h, w]`` bool, the cells that
    carry something (not all zeros): an empty cell is "no class above the floor here" and is
    not fused. ``floor=None``: ``received`` unchanged and ``None`` (every cell carries)."""
    if floor is None:
        return received, None
    k = num_classes
    carries = (received != 0).any(dim=1, keepdim=True)
    maps = torch.cat([received[:, :k] + floor, received[:, k:]], dim=1)
    return maps, carries


def head_payload(
    heat_logits: torch.Tensor, reg: torch.Tensor, extra: torch.Tensor | None = None
) -> torch.Tensor:
    """``heat [N, K, h, w]``, head outputs ``reg [N, R, h, w]`` (their 8-channel ``box_code``
    is sent), optional ``extra [N, D, h, w]`` → the payload layout ``[N, K + 8 + D, h, w]``
    float32."""
    parts = [heat_logits.float(), box_code(reg).float()]
    if extra is not None:
        parts.append(extra.float())
    return torch.cat(parts, dim=1)


def top_cells(heat_logits: torch.Tensor, fraction: float) -> torch.Tensor:
    """``[N, 1, h, w]`` bool: the ``fraction`` most confident cells of each map (largest class
    logit; ``max(1, round(fraction·h·w))`` cells, as the ``selective`` codec rounds)."""
    n, _, h, w = heat_logits.shape
    kept = min(h * w, max(1, int(fraction * h * w + 0.5)))
    score = heat_logits.detach().float().amax(dim=1).reshape(n, h * w)
    top = torch.topk(score, kept, dim=1).indices
    mask = torch.zeros(n, h * w, dtype=torch.bool, device=heat_logits.device)
    return mask.scatter_(1, top, True).view(n, 1, h, w)


def object_payload(
    model, features: torch.Tensor, score_threshold: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Object messages of each sender, scattered at their centre cells.

    Args:
        model: the ``CoopDetector`` (head and post-processing).
        features: ``[N, C, h, w]`` each sender's BEV features in its levelled frame.
        score_threshold: detections sent (``None``: the detector's ``score_threshold``).

    Returns:
        maps ``[N, K + 8 + C, h, w]`` (zeros away from objects) and cells ``[N, 1, h, w]`` bool,
        the object cells (one per detected object; two objects in one cell send one message).
    """
    n, c, h, w = features.shape
    heat, reg = model.head(features)
    with torch.no_grad():
        det = model.postprocess(heat, reg)
        keep = det.valid
        if score_threshold is not None:
            keep = keep & (det.scores >= score_threshold)
        box_reg, ix, iy = encode_box_regression(det.boxes.double(), model.grid, model.stride)
        keep = keep & (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        index = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).long()  # [N, M]
    cells = torch.zeros(n, h * w, device=features.device)
    cells = cells.scatter_reduce(1, index, keep.float(), "amax") > 0  # [N, h·w]
    # The box values of the decoded box replace the head's at its centre cell.
    reg_map = box_code(reg).float().reshape(n, REG_CHANNELS, h * w).clone()
    rows = torch.arange(n, device=features.device)[:, None].expand_as(index)
    reg_map[rows[keep], :, index[keep]] = box_reg[keep].to(reg_map.device)
    maps = head_payload(heat, reg_map.view(n, REG_CHANNELS, h, w), features)
    cells = cells.view(n, 1, h, w)
    return maps * cells, cells


def splat_to_ego(
    maps: torch.Tensor,
    cells: torch.Tensor | None,
    agent_to_ego: torch.Tensor,
    grid: BEVGrid,
    stride: int,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move payload maps from each sender's levelled frame to the ego's, by predicted centre.

    Args:
        maps: ``[N, K + 8 + D, h, w]`` payloads in the sender's frame (module docstring).
        cells: ``[N, 1, h, w]`` bool, the cells that arrived (``None``: all).
        agent_to_ego: ``[N, 4, 4]`` float64 sender-level → ego-level transform.
        grid, stride: the BEV grid and the map's stride.
        num_classes: ``K``.

    Returns:
        maps ``[N, K + 8 + D, h, w]`` float32 in the ego frame (offsets re-encoded in the ego
        cell, yaw turned; logits, z, sizes and extra channels as sent) and valid
        ``[N, 1, h, w]`` bool (ego cells that received a sender cell).
    """
    n, p, h, w = maps.shape
    k = num_classes
    if p < k + REG_CHANNELS:
        raise ValueError(
            f"splat_to_ego: 'maps' needs at least K + 8 = {k + REG_CHANNELS} channels, got {p}"
        )
    device = maps.device
    cell = grid.resolution_m * stride
    x0, y0 = grid.x_range_m[0], grid.y_range_m[0]
    t = agent_to_ego.to(device, torch.float64)
    reg = maps[:, k : k + REG_CHANNELS]
    ix = torch.arange(w, device=device, dtype=torch.float64).view(1, 1, w)
    iy = torch.arange(h, device=device, dtype=torch.float64).view(1, h, 1)
    x = x0 + (ix + reg[:, 0].double()) * cell  # predicted centre, sender frame [N, h, w]
    y = y0 + (iy + reg[:, 1].double()) * cell
    xe = t[:, 0, 0, None, None] * x + t[:, 0, 1, None, None] * y + t[:, 0, 3, None, None]
    ye = t[:, 1, 0, None, None] * x + t[:, 1, 1, None, None] * y + t[:, 1, 3, None, None]
    fx, fy = (xe - x0) / cell, (ye - y0) / cell
    jx, jy = torch.floor(fx), torch.floor(fy)
    ok = torch.isfinite(maps).all(dim=1) & torch.isfinite(fx) & torch.isfinite(fy)
    ok &= (jx >= 0) & (jx < w) & (jy >= 0) & (jy < h)
    if cells is not None:
        ok &= cells[:, 0].to(device, torch.bool)
    hw = h * w
    offset = torch.arange(n, device=device).view(n, 1, 1) * hw
    target = (torch.where(ok, jy * w + jx, 0).long() + offset).reshape(-1)
    score = torch.where(ok, maps[:, :k].detach().float().amax(dim=1), float("-inf")).reshape(-1)
    best = torch.full((n * hw,), float("-inf"), device=device)
    best = best.scatter_reduce(0, target, score, "amax")
    wins = ok.reshape(-1) & (score == best[target])
    source = torch.arange(n * hw, device=device)
    winner = torch.full((n * hw,), -1, dtype=torch.long, device=device)
    winner = winner.scatter_reduce(0, target[wins], source[wins], "amax")  # ties: last cell
    valid = winner >= 0
    src = winner.clamp_min(0)
    flat = maps.float().permute(0, 2, 3, 1).reshape(n * hw, p)[src]  # [N·hw, P]
    ego_x = torch.arange(w, device=device).repeat(h).repeat(n).double()
    ego_y = torch.arange(h, device=device).repeat_interleave(w).repeat(n).double()
    dx = (fx.reshape(-1)[src] - ego_x).float()
    dy = (fy.reshape(-1)[src] - ego_y).float()
    yaw = torch.atan2(t[:, 1, 0], t[:, 0, 0]).float()  # relative yaw [N]
    cos_d = yaw.cos().repeat_interleave(hw)
    sin_d = yaw.sin().repeat_interleave(hw)
    s, c = flat[:, k + 6], flat[:, k + 7]
    reg_e = torch.stack(
        [dx, dy, *flat[:, k + 2 : k + 6].unbind(-1), s * cos_d + c * sin_d, c * cos_d - s * sin_d],
        dim=-1,
    )
    out = torch.cat([flat[:, :k], reg_e, flat[:, k + REG_CHANNELS :]], dim=-1)
    out = torch.where(valid[:, None], out, 0.0)
    return out.view(n, h, w, p).permute(0, 3, 1, 2).contiguous(), valid.view(n, 1, h, w)


class PayloadAdapter(nn.Module):
    """Learned rescoring of fused class logits: ``[N, in, h, w] → [N, K, h, w]`` logit change.

    A 1×1 convolution to ``hidden`` channels, ReLU, a 3×3 convolution to ``K``; the last one
    starts at zero, so an untrained adapter leaves the fused logits as they are.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_classes, 3, padding=1),
        )
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# Extra payload channels of each adapter, as multiples of the detector's feature channels.
ADAPTER_EXTRA = {"semantic_map": 0, "object_features": 1}


def payload_adapters(feature_channels: int, num_classes: int) -> nn.ModuleDict:
    """One ``PayloadAdapter`` per payload fusion (``ADAPTER_EXTRA``), reading the ego's
    features ``C``, the winning payload's extra channels, its class probabilities ``K`` and a
    flag (1 where a collaborator won)."""
    return nn.ModuleDict(
        {
            name: PayloadAdapter(feature_channels * (1 + extra) + num_classes + 1, num_classes)
            for name, extra in ADAPTER_EXTRA.items()
        }
    )


def adapted_head(
    adapter: nn.Module,
    ego_features: torch.Tensor,
    fused: torch.Tensor,
    from_collaborator: torch.Tensor,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Head outputs of a fused payload.

    Args:
        adapter: the fusion's ``PayloadAdapter``.
        ego_features: ``[B, C, h, w]``; fused: ``[B, 1 + K + 8 + D, h, w]`` (``with_score``
            layout, the payload fusions' output); from_collaborator: ``[B, 1, h, w]`` bool.

    Returns:
        heat logits ``[B, K, h, w]`` (fused + the adapter's change) and reg ``[B, 8, h, w]``.
    """
    k = num_classes
    body = fused[:, 1:]
    heat, reg, extra = body[:, :k], body[:, k : k + REG_CHANNELS], body[:, k + REG_CHANNELS :]
    x = torch.cat(
        [ego_features.float(), extra, torch.sigmoid(heat), from_collaborator.float()], dim=1
    )
    return heat + adapter(x), reg


__all__ = [
    "ADAPTER_EXTRA",
    "FLOOR_MARGIN",
    "PayloadAdapter",
    "adapted_head",
    "head_payload",
    "object_payload",
    "payload_adapters",
    "payload_channels",
    "payload_floor",
    "payload_from_air",
    "payload_to_air",
    "splat_to_ego",
    "top_cells",
    "with_score",
]
