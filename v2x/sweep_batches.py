"""A sweep's frame batches on one device (``prepare_device``): the detector behind its feature
cache, and per batch the collated frames with their network (range, link SNRs), the novelty of
each collaborator's view (for the importance scheduler) and the ego's ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, overload

import torch

from v2x.datasets.frame import CoopBatch, CoopFrame, collate_frames
from v2x.evaluation import EgoGroundTruth, ego_ground_truth
from v2x.loading import load_model
from v2x.network import build_network_batch
from v2x.scheduling import novelty_from_visibility
from v2x.sweep_plan import SweepPlan
from v2x.sweep_reuse import EncodeCache, feature_cache_bytes


@dataclass
class _Batch:
    frames: list[CoopFrame]
    batch: CoopBatch
    network: Any
    novelty: torch.Tensor
    gt: EgoGroundTruth


def _prepare_batch(chunk: list[CoopFrame], plan: SweepPlan, model, device) -> _Batch:
    max_agents = plan.data.get("max_agents")
    batch = collate_frames(chunk, max_agents=max_agents)
    net = build_network_batch(
        chunk, plan.network, max_agents=max_agents, ground_z_m=model.grid.ground_z_m
    )
    # Collaborators out of communication range do not exist for the ego.
    batch.agent_mask = batch.agent_mask & net.in_range
    novelty = novelty_from_visibility(batch.visibility, batch.box_mask)
    gt = ego_ground_truth(batch, model.grid, plan.min_points)
    return _Batch(chunk, batch.to(device), net, novelty, gt)


def _prepare_frames(frames: Sequence[CoopFrame], part: slice, plan: SweepPlan, model, device):
    """``_prepare_batch`` of ``frames[part]`` (a ``FrameStream`` waits here for them)."""
    return _prepare_batch(list(frames[part]), plan, model, device)


class PreparedBatches(Sequence[_Batch]):
    """The sweep's frame batches, prepared in order on a background thread (collation, the
    frames' networks, ground truth, the copy to the device): the first group starts on the first
    batch while the others are still being prepared (and, from a ``v2x.loading.FrameStream``,
    still being read). Indexing or iterating waits for a batch
    (and raises what its preparation raised). Preparation draws no numbers from torch's global
    generator (the link models have their own, seeded per frame), so it cannot change what the
    device's thread draws."""

    def __init__(self, frames: Sequence[CoopFrame], plan: SweepPlan, model, device) -> None:
        bs = int(plan.config.batch_size)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2x-batches")
        self._futures = [
            pool.submit(_prepare_frames, frames, slice(i, i + bs), plan, model, device)
            for i in range(0, len(frames), bs)
        ]
        pool.shutdown(wait=False)  # the submitted batches are still prepared, in order

    def __len__(self) -> int:
        return len(self._futures)

    @overload
    def __getitem__(self, index: int) -> _Batch: ...
    @overload
    def __getitem__(self, index: slice) -> list[_Batch]: ...
    def __getitem__(self, index):
        if isinstance(index, slice):
            return [f.result() for f in self._futures[index]]
        return self._futures[index].result()


def prepare_device(
    plan: SweepPlan, frames: Sequence[CoopFrame], device: torch.device, sharers: int = 1
) -> tuple[EncodeCache, PreparedBatches]:
    """The detector (behind its feature cache) and the frame batches on ``device``
    (``sharers``: the sweep's workers drawing on this device's memory, ``memory_sharers``)."""
    model = load_model(plan.config, device).configure_inference(
        plan.precision, cuda_graph=bool(plan.config.cuda_graph)
    )
    cache_bytes = feature_cache_bytes(plan.config.feature_cache_gb, device, sharers)
    cache = EncodeCache(model, cache_bytes)
    return cache, PreparedBatches(frames, plan, model, device)


__all__ = ["prepare_device"]
