"""Centre-based detection head (CenterPoint-style): heatmaps per class + box regression.

Box coding per cell of the stride-``s`` map (cell size ``res * s`` metres):
``[dx, dy, z, log l, log w, log h, sin yaw, cos yaw]`` with (dx, dy) the offset of the box centre
from the cell's lower corner in cells, z the centre height above ground (m).

Heading axis (``yaw_axis=True``): the head also regresses ``[sin 2·yaw, cos 2·yaw]`` (two
more channels, ``AXIS_CHANNELS``). A box is the same box turned by π, and where a LiDAR cannot
tell front from back (a car is a cuboid to it) the L1 targets ``±(sin yaw, cos yaw)`` are
bimodal: the per-channel optimum is then any point between the two modes, which bends the
predicted angle. The doubled angle is the same for both directions, so it pins the box's axis;
the ``(sin yaw, cos yaw)`` channels still pick the direction along it (``box_code``), as the
direction classifier of SECOND / PointPillars does beside their π-periodic angle loss.
Consumers read the 8-channel code through ``box_code`` (a no-op without the axis channels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from v2x.perception.bev import BEVGrid
from v2x.perception.inference import autocast

REG_CHANNELS = 8  # the box code
AXIS_CHANNELS = 2  # [sin 2·yaw, cos 2·yaw] of a head with yaw_axis=True


class CenterHead(nn.Module):
    """``[B, C, h, w]`` fused features → ``heatmap [B, K, h, w]`` logits, ``reg [B, R, h, w]``
    with ``R = 8`` (+ ``AXIS_CHANNELS`` with ``yaw_axis``; ``box_code`` gives the 8-channel code).
    """

    def __init__(
        self, in_channels: int = 64, num_classes: int = 4, hidden: int = 64, yaw_axis: bool = False
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.yaw_axis = bool(yaw_axis)
        self.shared = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden, eps=1e-3, momentum=0.01),
            nn.ReLU(inplace=True),
        )
        self.heatmap = nn.Conv2d(hidden, num_classes, 3, padding=1)
        self.reg = nn.Conv2d(hidden, REG_CHANNELS + AXIS_CHANNELS * self.yaw_axis, 3, padding=1)
        nn.init.constant_(self.heatmap.bias, -2.19)  # prior 0.1, as in CenterNet
        # inference autocast precision (CoopDetector.configure_inference); outputs stay float32
        self.precision = "fp32"

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.precision == "fp32":  # as it always was (an enclosing autocast stays in force)
            shared = self.shared(features)
            return self.heatmap(shared), self.reg(shared)
        with autocast(features.device, self.precision, cache_enabled=False):
            shared = self.shared(features)
            heat, reg = self.heatmap(shared), self.reg(shared)
        return heat.float(), reg.float()


def encode_box_regression(
    boxes: torch.Tensor, grid: BEVGrid, stride: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The head's box coding (module docstring) of boxes in a levelled frame.

    Args:
        boxes: ``[..., 7]`` (x, y, z above ground, l, w, h, yaw), metres and radians.

    Returns:
        reg ``[..., 8]`` float32, and the cell ``ix``, ``iy`` ``[...]`` int64 (unclipped) of the
        stride-``stride`` map holding each box centre.
    """
    cell = grid.resolution_m * stride
    fx = (boxes[..., 0] - grid.x_range_m[0]) / cell
    fy = (boxes[..., 1] - grid.y_range_m[0]) / cell
    ix, iy = torch.floor(fx).long(), torch.floor(fy).long()
    reg = torch.stack(
        [
            fx - ix,
            fy - iy,
            boxes[..., 2],
            torch.log(boxes[..., 3].clamp_min(1e-3)),
            torch.log(boxes[..., 4].clamp_min(1e-3)),
            torch.log(boxes[..., 5].clamp_min(1e-3)),
            torch.sin(boxes[..., 6]),
            torch.cos(boxes[..., 6]),
        ],
        dim=-1,
    ).float()
    return reg, ix, iy


def box_code(reg: torch.Tensor) -> torch.Tensor:
    """The 8-channel box code of head outputs ``reg [B, R, ...]`` (channels on dim 1).

    ``R = 8``: ``reg`` itself. ``R = 8 + AXIS_CHANNELS``: the yaw channels become the unit
    heading on the predicted axis ``φ = atan2(sin 2·yaw, cos 2·yaw) / 2``, turned by π where
    that points against the predicted heading ``(cos yaw, sin yaw)`` (module docstring).
    """
    r = reg.shape[1]
    if r == REG_CHANNELS:
        return reg
    if r != REG_CHANNELS + AXIS_CHANNELS:
        raise ValueError(
            f"box_code: expected {REG_CHANNELS} or {REG_CHANNELS + AXIS_CHANNELS} channels on "
            f"dim 1, got {r}"
        )
    phi = 0.5 * torch.atan2(reg[:, REG_CHANNELS], reg[:, REG_CHANNELS + 1])
    s, c = torch.sin(phi), torch.cos(phi)
    agree = s * reg[:, 6] + c * reg[:, 7]
    sign = torch.where(agree < 0, -1.0, 1.0).to(reg.dtype)
    return torch.cat([reg[:, :6], (sign * s)[:, None], (sign * c)[:, None]], dim=1)


def axis_targets(reg: torch.Tensor) -> torch.Tensor:
    """``[..., 8]`` box-code targets → ``[..., 2]`` ``(sin 2·yaw, cos 2·yaw)`` from their unit
    ``(sin yaw, cos yaw)`` channels (double-angle formulas)."""
    s, c = reg[..., 6], reg[..., 7]
    return torch.stack([2.0 * s * c, c * c - s * s], dim=-1)


def build_targets(
    boxes: torch.Tensor,
    classes: torch.Tensor,
    valid: torch.Tensor,
    grid: BEVGrid,
    stride: int,
    num_classes: int,
    min_sigma_cells: float = 0.75,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training targets from boxes already in the ego's levelled frame (z above ground).

    Args:
        boxes: ``[B, M, 7]`` float; classes ``[B, M]`` int64; valid ``[B, M]`` bool.

    Returns:
        heatmap ``[B, K, h, w]`` (Gaussian peaks, max-combined), reg ``[B, M, 8]`` targets,
        index ``[B, M]`` flat cell index of each box centre, reg_mask ``[B, M]`` bool.
    """
    b, m, _ = boxes.shape
    h, w = grid.height // stride, grid.width // stride
    cell = grid.resolution_m * stride
    reg, ix, iy = encode_box_regression(boxes, grid, stride)
    inside = valid & (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    index = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).long()
    # Gaussian heatmap: sigma from the footprint, at least ``min_sigma_cells``.
    sigma = (torch.minimum(boxes[..., 3], boxes[..., 4]) / cell / 3.0).clamp_min(min_sigma_cells)
    ys = torch.arange(h, device=boxes.device, dtype=torch.float32)
    xs = torch.arange(w, device=boxes.device, dtype=torch.float32)
    gx = torch.exp(-((xs[None, None, :] - ix[..., None].float()) ** 2) / (2 * sigma[..., None] ** 2))
    gy = torch.exp(-((ys[None, None, :] - iy[..., None].float()) ** 2) / (2 * sigma[..., None] ** 2))
    heat_per_box = (gy[..., :, None] * gx[..., None, :]).float()  # [B, M, h, w]
    heat_per_box = heat_per_box * inside[..., None, None]
    heatmap = torch.zeros(b, num_classes, h, w, device=boxes.device)
    cls = classes.clamp(0, num_classes - 1)
    for k in range(num_classes):
        sel = (cls == k)[..., None, None]
        heatmap[:, k] = (heat_per_box * sel).amax(dim=1) if m else heatmap[:, k]
    return heatmap, reg, index, inside


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss, normalised by the number of peaks."""
    pred = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1.0).float()
    pos = torch.maximum(pos, (target > 0.999).float())
    neg = 1.0 - pos
    pos_loss = torch.log(pred) * (1 - pred) ** alpha * pos
    neg_loss = torch.log(1 - pred) * pred**alpha * (1 - target) ** beta * neg
    num_pos = pos.sum().clamp_min(1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos


def head_loss(
    heat_logits: torch.Tensor,
    reg_pred: torch.Tensor,
    heatmap: torch.Tensor,
    reg: torch.Tensor,
    index: torch.Tensor,
    reg_mask: torch.Tensor,
    reg_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Focal heatmap loss + L1 regression at the centre cells. Returns a dict with ``total``.

    ``reg [B, M, 8]`` are ``build_targets`` box codes; a head with axis channels
    (``reg_pred [B, 10, h, w]``) is also regressed on ``axis_targets(reg)``."""
    b, c, h, w = reg_pred.shape
    if c == REG_CHANNELS + AXIS_CHANNELS and reg.shape[-1] == REG_CHANNELS:
        reg = torch.cat([reg, axis_targets(reg)], dim=-1)
    flat = reg_pred.float().view(b, c, h * w).transpose(1, 2)  # [B, hw, 8]
    gathered = torch.gather(flat, 1, index[..., None].expand(-1, -1, c))  # [B, M, 8]
    mask = reg_mask[..., None].float()
    reg_l1 = (F.l1_loss(gathered, reg, reduction="none") * mask).sum() / mask.sum().clamp_min(1.0)
    heat = focal_loss(heat_logits, heatmap)
    return {"heatmap": heat, "regression": reg_l1, "total": heat + reg_weight * reg_l1}


def decode_detections(
    heat_logits: torch.Tensor,
    reg_pred: torch.Tensor,
    grid: BEVGrid,
    stride: int,
    max_detections: int = 100,
    score_threshold: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peaks of the heatmap → boxes in the levelled frame (z above ground).

    Returns:
        boxes ``[B, K, 7]`` float32, scores ``[B, K]``, labels ``[B, K]`` int64,
        valid ``[B, K]`` bool (score ≥ threshold), with ``K = max_detections``.
    """
    b, k_cls, h, w = heat_logits.shape
    heat = torch.sigmoid(heat_logits.float())
    peaks = F.max_pool2d(heat, 3, stride=1, padding=1)
    heat = heat * (heat == peaks)
    k = min(max_detections, k_cls * h * w)
    scores, flat = heat.reshape(b, -1).topk(k, dim=1)  # (a copy if channels-last, C > 1)
    labels = flat // (h * w)
    cell_index = flat % (h * w)
    iy, ix = cell_index // w, cell_index % w
    channels = reg_pred.shape[1]
    reg = reg_pred.float().reshape(b, channels, h * w)
    r = box_code(torch.gather(reg, 2, cell_index[:, None, :].expand(-1, channels, -1)))  # [B, 8, K]
    cell = grid.resolution_m * stride
    x = grid.x_range_m[0] + (ix.float() + r[:, 0]) * cell
    y = grid.y_range_m[0] + (iy.float() + r[:, 1]) * cell
    size = torch.exp(r[:, 3:6].clamp(max=math.log(30.0)))
    yaw = torch.atan2(r[:, 6], r[:, 7])
    boxes = torch.stack([x, y, r[:, 2], size[:, 0], size[:, 1], size[:, 2], yaw], dim=-1)
    return boxes, scores, labels, scores >= score_threshold
