"""A sweep's frame batches on one device (``prepare_device``): the detector behind its feature
cache, and per batch the collated frames with their network (range, link SNRs), the novelty of
each collaborator's view (for the importance scheduler) and the ego's ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from v2x.datasets.frame import CoopBatch, CoopFrame, collate_frames
from v2x.evaluation import EgoGroundTruth, ego_ground_truth
from v2x.loading import load_model
from v2x.network import build_network_batch
from v2x.scheduling import novelty_from_visibility
from v2x.sweep_plan import SweepPlan
from v2x.sweep_reuse import EncodeCache


@dataclass
class _Batch:
    frames: list[CoopFrame]
    batch: CoopBatch
    network: Any
    novelty: torch.Tensor
    gt: EgoGroundTruth


def _prepare_batches(frames: list[CoopFrame], plan: SweepPlan, model, device) -> list[_Batch]:

    out = []
    bs = int(plan.config.batch_size)
    max_agents = plan.data.get("max_agents")
    for start in range(0, len(frames), bs):
        chunk = frames[start : start + bs]
        batch = collate_frames(chunk, max_agents=max_agents)
        net = build_network_batch(
            chunk, plan.network, max_agents=max_agents, ground_z_m=model.grid.ground_z_m
        )
        # Collaborators out of communication range do not exist for the ego.
        batch.agent_mask = batch.agent_mask & net.in_range
        novelty = novelty_from_visibility(batch.visibility, batch.box_mask)
        gt = ego_ground_truth(batch, model.grid, plan.min_points)
        out.append(_Batch(chunk, batch.to(device), net, novelty, gt))
    return out


def prepare_device(
    plan: SweepPlan, frames: list[CoopFrame], device: torch.device
) -> tuple[EncodeCache, list[_Batch]]:
    """The detector (behind its feature cache) and the frame batches on ``device``."""
    model = load_model(plan.config, device).configure_inference(
        plan.precision, cuda_graph=bool(plan.config.cuda_graph)
    )
    cache = EncodeCache(model, float(plan.config.feature_cache_gb) * 1e9)
    return cache, _prepare_batches(frames, plan, model, device)


__all__ = ["prepare_device"]
