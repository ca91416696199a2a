"""Training losses of the cooperative detector, one per training mode.

Modes: ``single`` (every agent detects in its own frame: what ego-only and late fusion run),
``max`` / ``mean`` / ``attention`` (intermediate fusion at the ego), ``early`` (the ego encodes
everyone's points), ``where2comm`` (trained with its selection: each collaborator keeps only its
``max_fraction`` most important cells, by its own head's confidence map, and the ego fuses
them by attention with the rest masked — what the pipeline's Where2comm path delivers),
``semantic_map`` / ``object_features`` (semantic payloads: each collaborator's head output map or
its detected objects, moved to the ego by predicted centre and fused by confidence, then rescored
by the fusion's adapter; gradients reach the adapter and, through the payload values, every
agent's encoder and head — ``v2x.perception.semantic``).
"""

from __future__ import annotations

import torch

from v2x.datasets.frame import CoopBatch
from v2x.perception.ego_fusion import arrived_cells, fuse_at_ego
from v2x.perception.fusion import build_fusion
from v2x.perception.head import build_targets, head_loss
from v2x.perception.semantic import (
    payload_floor,
    payload_from_air,
    payload_to_air,
    splat_to_ego,
    with_score,
)
from v2x.perception.warp import (
    boxes_in_level_frames,
    merge_points_to_ego,
    relative_level_transforms,
    warp_sampling_grid,
)

PAYLOAD_MODES = ("semantic_map", "object_features")
TRAIN_MODES = ("single", "max", "mean", "attention", "early", "where2comm", *PAYLOAD_MODES)


def visible_gt_mask(batch: CoopBatch, min_points: int) -> torch.Tensor:
    """``[B, M]`` bool: GT boxes seen by at least one agent with ``min_points`` LiDAR points
    (all boxes where visibility is unknown). Training and evaluation use the same rule."""
    vis = batch.visibility
    present = batch.agent_mask[..., None]  # padded agent slots hold -1: they are not "unknown"
    known = ((vis >= 0) | ~present).all(dim=1)
    seen = ((vis.clamp_min(0) * present).sum(dim=1) >= min_points) | ~known
    return batch.box_mask & seen


def detection_loss(
    model, batch: CoopBatch, mode: str, min_points_in_box: int = 1
) -> dict[str, torch.Tensor]:
    """Loss of one training mode on one batch (see the module docstring).

    Parameters a mode does not use (the payload adapters outside their own mode) are tied into
    ``total`` with weight 0, so that every parameter gets a gradient (zero) each step, as
    DistributedDataParallel requires; the loss values are unchanged."""
    losses = _mode_loss(model, batch, mode, min_points_in_box)
    adapters = getattr(model, "payload_adapters", None)
    if adapters is not None:
        tie = sum(p.sum() for p in adapters.parameters())
        losses["total"] = losses["total"] + 0.0 * tie
    return losses


def _mode_loss(
    model, batch: CoopBatch, mode: str, min_points_in_box: int = 1
) -> dict[str, torch.Tensor]:
    grid, stride, k = model.grid, model.stride, model.config.num_classes
    gt_valid = visible_gt_mask(batch, min_points_in_box)
    gt = boxes_in_level_frames(batch.boxes, batch.poses, grid.ground_z_m).float()  # [B, A, M, 7]
    b, a = batch.agent_mask.shape
    if mode == "early":
        merged, mask = merge_points_to_ego(
            batch.points, batch.point_mask & batch.agent_mask[..., None], batch.poses,
            relative_level_transforms(batch.poses), grid.ground_z_m,
        )
        heat, reg = model.head(model.encode_points(merged, mask))
        boxes, classes, valid = gt[:, 0], batch.classes, gt_valid
    else:
        features = model.encode(batch.points, batch.point_mask, batch.poses)
        if mode in PAYLOAD_MODES:
            return payload_detection_loss(model, features, batch, mode, min_points_in_box)
        if mode == "single":
            present = batch.agent_mask.reshape(-1)
            heat, reg = model.head(features.flatten(0, 1)[present])
            boxes = gt.flatten(0, 1)[present]
            classes = batch.classes[:, None].expand(b, a, -1).flatten(0, 1)[present]
            # An agent alone can only be asked for what it sees itself.
            vis = batch.visibility
            own_view = batch.box_mask[:, None] & ((vis >= max(min_points_in_box, 1)) | (vis < 0))
            valid = own_view.flatten(0, 1)[present]
        else:
            return fused_detection_loss(model, features, batch, mode, min_points_in_box)
    target = build_targets(boxes, classes, valid, grid, stride, k)
    return head_loss(heat, reg, *target)


def fused_head_outputs(
    model, features: torch.Tensor, batch: CoopBatch, fusion: str | torch.nn.Module
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warp the collaborators' features ``[B, A, C, h, w]`` (each in its agent's levelled frame;
    e.g. what a codec delivered) to the ego, fuse by ``fusion`` (a registered name or a fusion
    module), run the head: the pipeline's own path (``v2x.perception.ego_fusion.fuse_at_ego``)
    for one condition, every link delivered, true poses. A fusion that selects cells
    (Where2comm) first keeps only each collaborator's selected cells, as the pipeline sends.

    Returns ``(fused [B, C, h, w], heat_logits [B, classes, h, w], reg [B, 8, h, w])``.
    """
    fuse = build_fusion(fusion) if isinstance(fusion, str) else fusion
    b, a, c, h, w = features.shape
    collaborators = features[:, 1:]
    if a == 1:  # the ego alone: nothing to warp
        nothing = torch.zeros(b, 0, 1, h, w, dtype=torch.bool, device=features.device)
        return fuse_at_ego(
            model, fuse, features, collaborators, features.new_zeros(0, h, w, 2), nothing
        )
    sent = None
    if fuse.selects_cells:  # collaborators send their top cells only
        with torch.no_grad():
            heat, _ = model.head(collaborators.reshape(b * (a - 1), c, h, w))
            chosen = fuse.selection_mask(fuse.selection_score(heat)).view(b, a - 1, 1, h, w)
        collaborators = collaborators * chosen
        sent = chosen.to(features.dtype)
    rel = relative_level_transforms(batch.poses)[:, 1:]
    sample_grid, coverage = warp_sampling_grid(rel, model.grid, h, w)
    arrived = arrived_cells(sample_grid, sent).view(b, a - 1, 1, h, w)
    valid = coverage & arrived & batch.agent_mask[:, 1:, None, None, None]
    return fuse_at_ego(model, fuse, features[:, :1], collaborators, sample_grid, valid)


def ego_targets(model, batch: CoopBatch, min_points_in_box: int = 1) -> tuple[torch.Tensor, ...]:
    """Head targets of the ego's ground truth (boxes seen by ≥ ``min_points_in_box`` points of
    any agent) on the ego's levelled grid (``build_targets`` output)."""
    grid = model.grid
    gt = boxes_in_level_frames(batch.boxes, batch.poses[:, :1], grid.ground_z_m)[:, 0].float()
    return build_targets(
        gt, batch.classes, visible_gt_mask(batch, min_points_in_box), grid, model.stride,
        model.config.num_classes,
    )


def fused_detection_loss(
    model, features: torch.Tensor, batch: CoopBatch, fusion: str, min_points_in_box: int = 1
) -> dict[str, torch.Tensor]:
    """Loss of intermediate fusion on given per-agent features ``[B, A, C, h, w]`` (each in its
    agent's levelled frame; e.g. what a codec delivered), fused at the ego by ``fusion``."""
    _, heat, reg = fused_head_outputs(model, features, batch, fusion)
    return head_loss(heat, reg, *ego_targets(model, batch, min_points_in_box))


def payload_head_outputs(
    model, features: torch.Tensor, batch: CoopBatch, fusion: str | torch.nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """Head outputs of a payload fusion (``semantic_map``, ``object_features``) over ideal links:
    each collaborator's payload of ``features [B, A, C, h, w]`` in its on-air form
    (``payload_to_air``: its cells with a class above the floor) moved to the ego by predicted
    centre (``splat_to_ego``), fused with the ego's own, rescored by the fusion's adapter.

    Returns ``(heat_logits [B, K, h, w], reg [B, 8, h, w])``.
    """
    fuse = build_fusion(fusion) if isinstance(fusion, str) else fusion
    b, a, c, h, w = features.shape
    k = model.config.num_classes
    own = with_score(fuse.own_payload(model, features[:, 0]), k)[:, None]
    maps, valid = own, torch.ones(b, 1, 1, h, w, dtype=torch.bool, device=features.device)
    if a > 1:
        sent, cells = fuse.payload(model, features[:, 1:].reshape(b * (a - 1), c, h, w))
        # what arrives over an ideal link: the on-air form (v2x.pipeline_payload), whose empty
        # cells (no class above the floor) are not fused
        floor = payload_floor(float(model.config.score_threshold))
        sent, carries = payload_from_air(payload_to_air(sent, k, floor), k, floor)
        if carries is not None:
            cells = carries if cells is None else cells.bool() & carries
        agent_to_ego = torch.linalg.inv(relative_level_transforms(batch.poses))[:, 1:]
        moved, arrived = splat_to_ego(
            sent, cells, agent_to_ego.reshape(-1, 4, 4), model.grid, model.stride, k
        )
        moved = with_score(moved, k).view(b, a - 1, -1, h, w)
        arrived = arrived.view(b, a - 1, 1, h, w) & batch.agent_mask[:, 1:, None, None, None]
        maps = torch.cat([own, moved], dim=1)
        valid = torch.cat([valid, arrived], dim=1)
    fused = fuse(maps, valid)
    return fuse.head(model, features[:, 0], fused, fuse.winners(maps, valid))


def payload_detection_loss(
    model, features: torch.Tensor, batch: CoopBatch, fusion: str, min_points_in_box: int = 1
) -> dict[str, torch.Tensor]:
    """Loss of a payload fusion on per-agent features ``[B, A, C, h, w]`` against the ego's
    targets (``ego_targets``)."""
    heat, reg = payload_head_outputs(model, features, batch, fusion)
    return head_loss(heat, reg, *ego_targets(model, batch, min_points_in_box))
