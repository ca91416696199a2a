"""Late and early fusion for ``v2x.pipeline.CooperativePipeline``: each collaborator's own
boxes (late; a fusion that ``compensates_latency`` moves them on by their motion) or its points
(early) in the ego frame, merged there and decoded once for every condition; both are charged
as ideal digital links (``LinkCost.charge_ideal``) of ``BOX_MESSAGE_BITS`` per box or
``POINT_MESSAGE_BITS`` per point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from v2x.conditions import LinkCost, RunOutput, tiled_run
from v2x.datasets.frame import CoopBatch
from v2x.perception.boxes import transform_boxes
from v2x.perception.detector import CoopDetector, Detections, nms_detections
from v2x.perception.fusion_base import FeatureFusion
from v2x.perception.warp import merge_points_to_ego, relative_level_transforms

BOX_MESSAGE_BITS = (7 + 2) * 32  # a late-fusion box: 7 floats + score + label, float32
POINT_MESSAGE_BITS = 4 * 32  # an early-fusion point: x, y, z, intensity, float32


class BoxPipe(Protocol):
    """What late and early fusion use of ``v2x.pipeline.CooperativePipeline`` (which calls
    them)."""

    model: CoopDetector
    fusion: FeatureFusion
    generator: torch.Generator

    def _noisy_relative(
        self, poses: torch.Tensor, seeds: Sequence[int] | None = None
    ) -> torch.Tensor: ...


@dataclass
class MotionHistory:
    """What a latency-compensating box fusion knows of the collaborators' motion.

    Attributes:
        previous: the collaborators' scans ``period_s`` before the ones fused (same slots and
            masks as the run's batch; the ego's slot is not used).
        age_s: ``[B, A]`` float64 the ego's estimate of each collaborator's data age at fusion
            (s; from the timestamps, so clock offsets bias it).
        period_s: time between the previous and the fused scan (s): one for all, or ``[B, A]``
            float64 per collaborator (recorded scans are not evenly spaced).
    """

    previous: CoopBatch
    age_s: torch.Tensor
    period_s: float | torch.Tensor


def boxes_in_ego_frame(
    pipe: BoxPipe, batch: CoopBatch, features: torch.Tensor, noisy: bool = True
) -> tuple[Detections, torch.Tensor, torch.Tensor]:
    """Every agent's own detections (``Detections`` of ``B·A`` rows), their boxes in the
    ego frame ``[B, A, K, 7]`` float64 and validity ``[B, A, K]`` (``noisy``: with the
    pipeline's pose noise, else with the true poses)."""
    b, a, c, h, w = features.shape
    heat, reg = pipe.model.head(features.view(b * a, c, h, w))
    own = pipe.model.postprocess(heat, reg)
    kk = own.boxes.shape[1]
    boxes = own.boxes.view(b, a, kk, 7).double()
    if noisy:
        ego_to_agent = pipe._noisy_relative(batch.poses)
    else:
        ego_to_agent = relative_level_transforms(batch.poses)
    agent_to_ego = torch.linalg.inv_ex(ego_to_agent).inverse  # (rigid: no host check)
    moved = transform_boxes(boxes, agent_to_ego)
    moved[..., 2] = boxes[..., 2]  # heights above ground are frame independent
    valid = own.valid.view(b, a, kk) & batch.agent_mask[..., None]
    return own, moved, valid


def run_late(
    pipe: BoxPipe,
    batch: CoopBatch,
    features: torch.Tensor,
    snr_db: torch.Tensor,
    motion: MotionHistory | None = None,
) -> RunOutput:
    """``pipe.run`` for late fusion: every agent's detections from its own map (``features
    [B, A, C, h, w]``) moved to the ego frame with the pipeline's pose noise (a fusion that
    compensates latency moves them on by ``motion``), merged by class-agnostic NMS; the
    collaborators' boxes charged at ``BOX_MESSAGE_BITS`` each. The detections do not depend on
    the ``K`` conditions of ``snr_db``: one pass, tiled ``K`` times."""
    b, a, c, h, w = features.shape
    k = snr_db.shape[0]
    drawn_from = pipe.generator.get_state()
    own, moved, valid = boxes_in_ego_frame(pipe, batch, features)
    kk = own.boxes.shape[1]
    if pipe.fusion.compensates_latency and motion is not None:
        # latency compensation: each collaborator's boxes moved on by their estimated motion
        # (from its previous scan's detections, placed with the same localisation error: a
        # fresh draw adds a false speed ≈ √2·σ / period) over the estimated age of its data
        before = motion.previous
        previous = pipe.model.encode(before.points, before.point_mask, before.poses)
        after = pipe.generator.get_state()
        pipe.generator.set_state(drawn_from)
        prev, prev_moved, prev_valid = boxes_in_ego_frame(pipe, before, previous)
        pipe.generator.set_state(after)
        moved = pipe.fusion.extrapolate(
            moved,
            valid,
            own.labels.view(b, a, kk),
            prev_moved,
            prev_valid,
            prev.labels.view(b, a, -1),
            motion.age_s.to(moved.device),
            motion.period_s,
        )
    merged_boxes = moved.float().view(b, a * kk, 7)
    merged_scores = own.scores.view(b, a * kk)
    merged_labels = own.labels.view(b, a * kk)
    merged_valid = valid.view(b, a * kk)
    det = nms_detections(
        merged_boxes,
        merged_scores,
        merged_labels,
        merged_valid,
        pipe.model.config.nms_iou_threshold,
        class_aware=False,
    )
    cost = LinkCost.zeros(k, b, a, snr_db, features.device)
    bits = valid.sum(-1).double() * BOX_MESSAGE_BITS  # [B, A]
    bits[:, 0] = 0
    cost.charge_ideal(bits, snr_db, batch.agent_mask, BOX_MESSAGE_BITS)
    return tiled_run(det, cost, k)


def run_early(pipe: BoxPipe, batch: CoopBatch, snr_db: torch.Tensor) -> RunOutput:
    """``pipe.run`` for early fusion: every agent's points moved to the ego frame with the
    pipeline's pose noise, encoded and decoded as one cloud; the collaborators' points charged
    at ``POINT_MESSAGE_BITS`` each. One pass for the ``K`` conditions of ``snr_db``."""
    b, a, n, _ = batch.points.shape
    k = snr_db.shape[0]
    merged, mask = merge_points_to_ego(
        batch.points,
        batch.point_mask & batch.agent_mask[..., None],
        batch.poses,
        pipe._noisy_relative(batch.poses),
        pipe.model.grid.ground_z_m,
    )
    features = pipe.model.encode_points(merged, mask)
    heat, reg = pipe.model.head(features)
    det = pipe.model.postprocess(heat, reg)
    cost = LinkCost.zeros(k, b, a, snr_db, features.device)
    bits = batch.point_mask.sum(-1).double() * POINT_MESSAGE_BITS
    bits[:, 0] = 0
    cost.charge_ideal(bits, snr_db, batch.agent_mask, POINT_MESSAGE_BITS)
    return tiled_run(det, cost, k)


__all__ = [
    "BOX_MESSAGE_BITS",
    "POINT_MESSAGE_BITS",
    "BoxPipe",
    "MotionHistory",
    "boxes_in_ego_frame",
    "run_early",
    "run_late",
]
