"""A sweep's frame batches on one device (``prepare_device``): the detector behind its feature
cache, and per batch the collated frames with their network (range, link SNRs), the novelty of
each collaborator's view (for the importance scheduler) and the ego's ground truth.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import torch

from v2x.datasets.frame import CoopBatch, CoopFrame, collate_frames
from v2x.detector_loading import load_model
from v2x.evaluation import EgoGroundTruth, ego_ground_truth
from v2x.network import build_network_batch, frame_networks, stack_networks
from v2x.perception.detector import CoopDetector
from v2x.perception.inference import fold_batchnorm
from v2x.scheduling import novelty_from_visibility
from v2x.sweep_clock import frame_data_ages
from v2x.sweep_plan import SweepPlan
from v2x.sweep_reuse import (
    EncodeCache,
    auto_cache_reserve,
    auto_cache_room,
    feature_cache_bytes,
    free_memory_bytes,
    working_set_batches,
)
from v2x.torch_threads import torch_threads

#: ``(frames, batch) -> [B, A]`` s: how old each slot's data is (``frame_data_ages``).
DataAges = Callable[[Sequence[CoopFrame], CoopBatch], torch.Tensor]

@dataclass
class _Batch:
    frames: list[CoopFrame]
    batch: CoopBatch
    network: Any
    novelty: torch.Tensor
    gt: EgoGroundTruth
    #: ``[B, A]`` float64 s the frames' data is older than their instant, with asynchrony
    #: disabled (``v2x.sweep_clock.frame_data_ages``); ``None``: not older, or a clock ages it
    data_age_s: torch.Tensor | None = None


def _prepare_batch(
    chunk: list[CoopFrame],
    plan: SweepPlan,
    model,
    device,
    networks: Future | None = None,
    data_ages: DataAges | None = None,
) -> _Batch:
    """A batch ready for the device (``networks``: a future of the future of its frames'
    ``frame_networks``, computed in a worker process; ``None``, or that worker died: here;
    ``data_ages``: the sweep's ``frame_data_ages``)."""
    max_agents = plan.data.get("max_agents")
    # on CUDA in page-locked memory: copies that do not wait for the device's queued work
    pinned = torch.device(device).type == "cuda"
    batch = collate_frames(chunk, max_agents=max_agents, pin_memory=pinned)
    try:
        net = None if networks is None else stack_networks(networks.result().result())
    except BrokenProcessPool:  # the same values here (GroupScoring warns of the dead worker)
        net = None
    if net is None:
        net = build_network_batch(
            chunk, plan.network, max_agents=max_agents, ground_z_m=model.grid.ground_z_m
        )
    # Collaborators out of communication range do not exist for the ego.
    batch.agent_mask = batch.agent_mask & net.in_range
    novelty = novelty_from_visibility(batch.visibility, batch.box_mask)
    gt = ego_ground_truth(batch, model.grid, plan.min_points)
    age = None if data_ages is None else data_ages(chunk, batch)
    on_device = (batch.pin_memory() if pinned else batch).to(device)
    return _Batch(chunk, on_device, net, novelty, gt, age)


def _prepare_frames(
    frames: Sequence[CoopFrame],
    part: slice,
    plan: SweepPlan,
    model,
    device,
    networks: Future | None = None,
    data_ages: DataAges | None = None,
):
    """``_prepare_batch`` of ``frames[part]`` (a ``FrameStream`` waits here for them)."""
    return _prepare_batch(list(frames[part]), plan, model, device, networks, data_ages)


_NO_POINTS = np.zeros((0, 4), dtype=np.float32)


def _without_points(frame: CoopFrame) -> CoopFrame:
    """``frame`` with empty point clouds (shallow copies, not validated again): all that
    ``frame_networks`` reads, small to send to a worker process."""
    light = copy.copy(frame)
    light.agents = [copy.copy(agent) for agent in frame.agents]
    for agent in light.agents:
        agent.points = _NO_POINTS
    return light


def _networks_sent(
    frames: Sequence[CoopFrame], part: slice, plan: SweepPlan, model, pool: Executor
) -> Future:
    """``frame_networks`` of ``frames[part]`` submitted to ``pool`` (waits for the frames)."""
    light = [_without_points(f) for f in frames[part]]
    return pool.submit(
        frame_networks, light, plan.network, plan.data.get("max_agents"), model.grid.ground_z_m
    )


class PreparedBatches(Sequence[_Batch]):
    """The sweep's frame batches, prepared in order on a background thread (collation, the
    frames' networks, ground truth, the copy to the device: on CUDA from page-locked memory,
    queued behind the device's work instead of waiting for it): the first group starts on the first
    batch while the others are still being prepared (and, from a ``v2x.loading.FrameStream``,
    still being read). Indexing or iterating waits for a batch
    (and raises what its preparation raised). Preparation draws no numbers from torch's global
    generator (the link models have their own, seeded per frame), so it cannot change what the
    device's thread draws. With ``workers`` (pools of worker processes, e.g. the sweep's
    scoring processes, idle until the first batch is scored) the frames' networks are built
    there, the same values (a function of the frames and the plan)."""

    def __init__(
        self,
        frames: Sequence[CoopFrame],
        plan: SweepPlan,
        model,
        device,
        workers: Sequence[Executor] = (),
    ) -> None:
        bs = int(plan.config.batch_size)
        parts = [slice(i, i + bs) for i in range(0, len(frames), bs)]
        networks: list[Future | None] = [None] * len(parts)
        if workers:
            # The frames' networks (link geometry and budgets, 2/3 of a batch's preparation in
            # Python and numpy) in worker processes, the batches side by side, sent in order as
            # their frames arrive: the GIL stays with the device's thread.
            sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2x-networks")
            networks = [
                sender.submit(_networks_sent, frames, part, plan, model, workers[i % len(workers)])
                for i, part in enumerate(parts)
            ]
            sender.shutdown(wait=False)
        data_ages = frame_data_ages(plan)  # (one synthetic world per sequence for the sweep)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2x-batches")
        self._futures = [
            pool.submit(_prepare_frames, frames, part, plan, model, device, net, data_ages)
            for part, net in zip(parts, networks, strict=True)
        ]
        pool.shutdown(wait=False)  # the submitted batches are still prepared, in order

    def __len__(self) -> int:
        return len(self._futures)

    def ready(self, index: int) -> bool:
        """Whether batch ``index`` is prepared (indexing it would not wait)."""
        return self._futures[index].done()

    @overload
    def __getitem__(self, index: int) -> _Batch: ...
    @overload
    def __getitem__(self, index: slice) -> list[_Batch]: ...
    def __getitem__(self, index):
        if isinstance(index, slice):
            return [f.result() for f in self._futures[index]]
        return self._futures[index].result()


def sweep_detector(plan: SweepPlan, device: torch.device) -> CoopDetector:
    """The detector a sweep runs on ``device``: ``load_model``, with its batch norms folded into
    the layers before them when ``plan.fold_batchnorm`` (``fold_batchnorm``: the same function,
    rounded differently; folded on the CPU, so every device runs the same folded weights, and
    moved without the norms' tensors), configured for ``plan.precision`` (and CUDA graphs if
    asked), channels-last on a CUDA device when ``plan.channels_last`` (its convolutions'
    weights and so its feature maps NHWC: cuDNN's tensor-core kernels take them without layout
    passes, the fusion kernel reads the ego's map one cell at a time, identity's float16
    payload needs no transpose; docs/benchmarks.md, "Fifty-first session"). Bound for a GPU,
    the CPU's loading and folding run on one torch thread: they are small operations, and on
    a GPU host the cores are then busy with the sweep's worker processes reading its frames,
    so a team of intra-op threads waits for them (measured on an H200 host: the fold
    0.21–0.29 s on 16 threads, against 36–48 ms on the 2-core VM); each element is computed
    alike on any number of threads."""
    if plan.fold_batchnorm:
        with torch_threads(1 if device.type != "cpu" else None):
            model = fold_batchnorm(load_model(plan.config, torch.device("cpu")), inplace=True)
        model = model.to(device)
    else:
        model = load_model(plan.config, device)
    return model.configure_inference(
        plan.precision,
        cuda_graph=bool(plan.config.cuda_graph),
        channels_last=True if plan.channels_last and device.type == "cuda" else None,
    )


def prepare_device(
    plan: SweepPlan,
    frames: Sequence[CoopFrame],
    device: torch.device,
    sharers: int = 1,
    workers: Sequence[Executor] = (),
) -> tuple[EncodeCache, PreparedBatches]:
    """The detector (behind its feature cache) and the frame batches on ``device``
    (``sharers``: the sweep's workers drawing on this device's memory, ``memory_sharers``;
    ``workers``: worker processes for the batches' networks, ``PreparedBatches``)."""
    model = sweep_detector(plan, device)
    setting, conditions = plan.config.feature_cache_gb, len(plan.snr_db)
    free = free_memory_bytes(device)  # read once: the auto share and its room
    cache_bytes = feature_cache_bytes(setting, device, sharers, free)
    reserve = auto_cache_reserve(setting, sharers, conditions)
    room = auto_cache_room(setting, free, sharers, conditions, working_set_batches(plan, device))
    cache = EncodeCache(model, cache_bytes, reserve, room)
    return cache, PreparedBatches(frames, plan, model, device, workers)


__all__ = ["prepare_device", "sweep_detector"]
