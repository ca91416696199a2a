"""Evaluating a set of channel conditions over frames: the one execution home.

Every job that scores conditions goes through here: the sweep (``v2x.sweep``), the codec's SNR
gate calibration (``v2x.codec_calibration``) and the fusion comparison
(``v2x.fusion_evaluation``). For one frame batch, ``evaluate_batch``

1. runs the ``K`` conditions (``run_conditions``): all in one ``CooperativePipeline.run`` call,
   each in its own seeded call (so a condition's numbers do not depend on the others computed
   with it), or once and tiled when nothing depends on the condition;
2. asks a scheduler which payloads arrived in time and re-runs each condition that lost some
   with those collaborators masked out (``remove_late_payloads``; conditions left with nothing
   on air that lost the same payloads share one re-run). Where the payloads' costs are known
   before the air, the scheduler decides first and conditions that would deliver nothing do
   not run in step 1 (``v2x.known_drops``);
3. scores the detections against the ego's ground truth (``v2x.evaluation.accumulate``, which
   scores bitwise-identical conditions once).

Identical conditions are found by one test, ``v2x.conditions.distinct_conditions``.
``evaluate_frames`` does this over a frame list for callers without a network or budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from v2x.channels.base import deferred_checks
from v2x.common import seed_torch, to_device_async
from v2x.conditions import (
    LinkCost,
    RunOutput,
    concat_runs,
    condition_members,
    distinct_conditions,
    tiled_run,
)
from v2x.datasets.frame import CoopBatch, CoopFrame, collate_frames
from v2x.evaluation import EgoGroundTruth, accumulate, ego_ground_truth
from v2x.known_drops import run_with_known_drops
from v2x.perception.average_precision import APAccumulator
from v2x.perception.detector import Detections
from v2x.pipeline import CooperativePipeline, MotionHistory


@dataclass
class Arrival:
    """What a scheduler decided for a run's payloads (``evaluate_batch``'s ``deliver``).

    Attributes:
        delivered: ``[K, B, A]`` bool, payloads that arrived in time.
        age_s: ``[K, B, A]`` float (s), how much older than the ego's instant each delivered
            payload's data is where sensing is asynchronous; ``None``: all fresh.
        min_age_s: ages at or below this count as fresh (the frame's own observation).
    """

    delivered: torch.Tensor
    age_s: torch.Tensor | None = None
    min_age_s: float = 0.0


#: ``resense(batch, age_s [B, A]) -> (batch sensed age_s earlier, motion or None)``: the
#: collaborators' data as old as it arrived (``v2x.asynchrony``), and for a latency-compensating
#: fusion the motion history it extrapolates with.
Resense = Callable[[CoopBatch, torch.Tensor], tuple[CoopBatch, MotionHistory | None]]


def seed_run(pipe: CooperativePipeline, seed: int) -> None:
    """Seed torch's global RNG (channel and codec noise) and ``pipe``'s pose-noise generator."""
    seed_torch(seed)
    pipe.generator.manual_seed(seed)


def run_conditions(
    pipe: CooperativePipeline,
    batch: CoopBatch,
    snr_db: torch.Tensor,
    seeds: Sequence[int] | None = None,
    same_for_all: bool = False,
) -> RunOutput:
    """The ``K`` conditions of ``snr_db`` (``[K]`` or ``[K, B, A]``, dB) on ``batch``.

    Args:
        seeds: ``[K]``: each condition gets the numbers of its own call after
            ``seed_run(pipe, seeds[k])``, so they do not depend on the conditions beside it;
            where the pipeline can (``runs_seeded_conditions``: a deterministic codec sent
            once) all ``K`` run in one call with each condition's channel drawn from its seed
            (``v2x.condition_streams``). ``None``: one call for all ``K`` from the current RNG
            state.
        same_for_all: nothing the run computes depends on the condition (nothing is sent):
            one condition runs and its output (detections and cost) is tiled ``K`` times.
    """
    k = snr_db.shape[0]
    # the channel's input checks read once all K conditions ran (nested blocks leave the read
    # to this one): a host read right after a condition's decoder is queued would leave the
    # device idle while the host goes on to fusion, head and NMS
    with deferred_checks():
        if same_for_all and k > 1:
            one = pipe.run(batch, snr_db[:1])
            return tiled_run(one.detections, one.cost.repeat_conditions(k, snr_db), k)
        if seeds is None:
            return pipe.run(batch, snr_db)
        if len(seeds) != k:
            raise ValueError(
                f"run_conditions: 'seeds' needs one seed per condition ({k}), got {len(seeds)}"
            )
        if k > 1 and pipe.runs_seeded_conditions():  # one call, each condition's own seed
            return pipe.run(batch, snr_db, seeds=list(seeds))
        runs = []
        for ki in range(k):
            seed_run(pipe, seeds[ki])
            runs.append(pipe.run(batch, snr_db[ki : ki + 1]))
        return concat_runs(runs)


def remove_late_payloads(
    pipe: CooperativePipeline,
    batch: CoopBatch,
    out: RunOutput,
    dropped: torch.Tensor,
    snr_db: torch.Tensor,
    seeds: Sequence[int] | None = None,
    age_s: torch.Tensor | None = None,
    resense: Resense | None = None,
    min_age_s: float = 0.0,
) -> RunOutput:
    """``out`` with each condition that lost payloads re-run without those collaborators, and
    each whose delivered payloads are old re-run on the data as old as it arrived.

    Args:
        dropped: ``[K, B, A]`` bool, payloads sent but not delivered (e.g. past the deadline).
        snr_db: the conditions of ``out`` (``[K]`` or ``[K, B, A]``).
        seeds: ``[K]``: condition ``k``'s re-run is seeded with ``seeds[k]``, the seed its first
            run drew from, so the payloads left go through the channel (erasures, CRC failures,
            HARQ / ARQ rounds) and pose noise the ledger records for them (every link's draw
            is the same whether other collaborators are masked or not); ``None``: the current
            RNG state. The pipeline's generator then goes on as if no re-run had happened, so
            later draws do not depend on which conditions were re-run.
        age_s: ``[K, B, A]`` float (s) age of each delivered payload (``Arrival.age_s``).
        resense: how a condition's batch is re-sensed at its ages (needed with ``age_s``).
        min_age_s: ages at or below this count as fresh (no re-sensing).

    Returns:
        the detections of the re-runs in place of the originals; the cost is ``out``'s (what
        was sent on air). A condition left with nothing on air does not depend on the SNR, the
        seed or the ages: conditions that lost the same payloads so share one re-run.
    """
    cost = out.cost
    k = out.num_conditions
    b = batch.batch_size
    device = batch.agent_mask.device
    dropped = dropped.cpu()
    aged = [age_s is not None and bool((age_s[ki] > min_age_s).any()) for ki in range(k)]
    todo = [ki for ki in range(k) if bool(dropped[ki].any()) or aged[ki]]
    if not todo:
        return out
    if any(aged) and resense is None:
        raise ValueError("remove_late_payloads: 'age_s' needs 'resense' (how to re-sense data)")
    det = out.detections
    boxes, scores = det.boxes.clone(), det.scores.clone()
    labels, valid = det.labels.clone(), det.valid.clone()
    on_air = (cost.sent.cpu() & ~dropped).flatten(1).any(1)  # [K]: one transfer, not K syncs
    silent = {ki: not bool(on_air[ki]) for ki in todo}
    # Silent conditions that lost the same payloads share the re-run of the first of them.
    shared: dict[int, int] = {}
    quiet = [ki for ki in todo if silent[ki]]
    if quiet:
        for members in condition_members(distinct_conditions(dropped[quiet])[1]):
            for m in members:
                shared[quiet[m]] = quiet[members[0]]
    reruns: dict[int, Detections] = {}
    generator_state = pipe.generator.get_state()
    feature_stage = pipe.runs_seeded_conditions()
    for ki in todo:
        if ki in shared and shared[ki] in reruns:
            rerun = reruns[shared[ki]]
        else:
            lost = to_device_async(dropped[ki], device)
            masked = dataclasses.replace(batch, agent_mask=batch.agent_mask & ~lost)
            if silent[ki] and feature_stage and not bool(masked.agent_mask[:, 1:].any()):
                # no collaborator left in any frame: the ego's own detections, without sending
                # every row through the codec and channel only for fusion to drop it
                rerun = pipe.ego_detections(masked)
            else:
                motion = None
                if aged[ki] and not silent[ki]:
                    masked, motion = resense(masked, age_s[ki])
                if seeds is not None:
                    seed_run(pipe, seeds[ki])
                rerun = pipe.run(masked, snr_db[ki : ki + 1], motion).detections
            reruns[ki] = rerun
        rows = slice(ki * b, (ki + 1) * b)
        n = min(rerun.boxes.shape[1], boxes.shape[1])
        for dst, src, fill in (
            (boxes, rerun.boxes, 0.0),
            (scores, rerun.scores, 0.0),
            (labels, rerun.labels, 0),
            (valid, rerun.valid, False),
        ):
            dst[rows] = fill
            dst[rows, :n] = src[:, :n]
    pipe.generator.set_state(generator_state)
    return RunOutput(Detections(boxes, scores, labels, valid), cost, k)


def evaluate_batch(
    pipe: CooperativePipeline,
    batch: CoopBatch,
    snr_db: torch.Tensor,
    gt: EgoGroundTruth,
    accumulators: Sequence[APAccumulator],
    seeds: Sequence[int] | None = None,
    joint_seed: int | None = None,
    same_for_all: bool = False,
    deliver: Callable[[LinkCost], Arrival] | None = None,
    resense: Resense | None = None,
    score: bool = True,
) -> RunOutput:
    """Run, remove late payloads, score: ``K`` conditions on one frame batch.

    Args:
        pipe: the pipeline of one (fusion, codec, channel, pose noise) setting.
        batch: ``B`` frames on the pipeline's device.
        snr_db: ``[K]`` (every link of condition k at ``snr_db[k]``) or ``[K, B, A]`` (dB).
        gt: the batch's ground truth in the ego frame (``v2x.evaluation.ego_ground_truth``).
        accumulators: one per condition; condition k's frames are added to ``accumulators[k]``.
        seeds: ``[K]`` per-condition seeds (see ``run_conditions``; a re-run uses its own).
        joint_seed: run all ``K`` conditions in one call after ``seed_run(pipe, joint_seed)``
            (torch's generators and the pipeline's pose noise: the batch's numbers do not
            depend on the batches run before it; for settings whose detections do not depend
            on the condition); a re-run then draws from it too (as the joint call did).
        same_for_all: see ``run_conditions``.
        deliver: ``cost -> Arrival``: which payloads arrived in time (e.g. the bandwidth
            budget's scheduler) and how old they are; payloads sent but not delivered are
            removed from fusion, old ones re-sensed, by re-running (``remove_late_payloads``).
            ``None``: everything sent arrives fresh.
        resense: how a batch is re-sensed at the ages ``deliver`` reports.
        score: add the detections to ``accumulators`` here; ``False``: the caller does
            (``v2x.evaluation.accumulate``, e.g. on another thread while the device goes on).

    Returns:
        the scored run: detections after re-runs, the cost of what was sent.
    """
    out, arrival, silent = None, None, None
    if joint_seed is not None:
        seed_run(pipe, joint_seed)
        out = run_conditions(pipe, batch, snr_db, None, same_for_all)
    elif deliver is not None and seeds is not None and not same_for_all:
        # conditions the budget leaves without any payload, known before the air, do not run
        known = run_with_known_drops(pipe, batch, snr_db, seeds, deliver, run_conditions)
        if known is not None:
            out, arrival, silent = known
    if out is None:
        out = run_conditions(pipe, batch, snr_db, seeds, same_for_all)
    if deliver is not None and not (silent is not None and all(silent)):
        # (every condition left out: each holds its final detections, the ego's own, and
        # its planned arrival; nothing to re-run)
        arrival = deliver(out.cost)  # the conditions that ran: their own costs
        dropped = out.cost.sent & ~arrival.delivered
        if silent is not None:  # those left out already hold the ego's own detections
            ran = torch.tensor([not s for s in silent], device=dropped.device)
            dropped = dropped & ran.view(-1, 1, 1)
        rerun_seeds = seeds if joint_seed is None else [joint_seed] * out.num_conditions
        out = remove_late_payloads(
            pipe, batch, out, dropped, snr_db, rerun_seeds, arrival.age_s, resense,
            arrival.min_age_s,
        )  # fmt: skip
    if score:
        accumulate(out, gt, list(accumulators))
    return out


def evaluate_frames(
    pipe: CooperativePipeline,
    frames: Sequence[CoopFrame],
    snr_db: Sequence[float] | torch.Tensor,
    accumulators: Sequence[APAccumulator],
    batch_size: int,
    device: torch.device | str,
) -> list[float]:
    """Score ``K`` conditions (``snr_db [K]``, dB, every link at the same SNR) of ``pipe`` over
    ``frames`` in batches of ``batch_size``, all conditions of a batch in one call from the
    current RNG state, every payload delivered; ground truth from ``ego_ground_truth``.

    Returns:
        ``[K]`` source bits sent per condition over all frames and links.
    """
    snr = torch.as_tensor(snr_db, dtype=torch.float32, device=device).reshape(-1)
    bits = [0.0] * snr.shape[0]
    for start in range(0, len(frames), batch_size):
        batch = collate_frames(list(frames[start : start + batch_size])).to(device)
        gt = ego_ground_truth(batch, pipe.model.grid)
        out = evaluate_batch(pipe, batch, snr, gt, accumulators)
        for ki in range(len(bits)):
            bits[ki] += float(out.cost.source_bits[ki].sum())
    return bits


__all__ = [
    "Arrival",
    "Resense",
    "concat_runs",
    "evaluate_batch",
    "evaluate_frames",
    "remove_late_payloads",
    "run_conditions",
    "seed_run",
]
