"""Conditions whose every payload misses the deadline, known before the air and left out of a run.

The bandwidth budget (``v2x.scheduling``) decides which payloads arrive by the deadline from
their sizes and links alone. ``v2x.execution.evaluate_batch`` learns the sizes from a run (codec,
channel, warp, fusion, head and NMS of every condition) and then re-runs each condition that
lost payloads without them; a condition that lost every payload becomes the ego alone. Where
every link's cost is known before anything goes on air (``cost_before_air``: feature fusion
sending whole maps with a codec whose payload size depends on the maps' shape and the SNR alone,
``Codec.cost_before_air``, over a channel that neither erases nor resends, ``Channel.erases``),
the budget decides first and only the conditions that deliver something run
(``run_with_known_drops``).

Nothing changes a number. The payloads of the conditions left out are still sent and dropped
at the deadline, with the very cost the run would have reported (the ledger's rows are the
same), and their detections are the ego-alone ones the re-run would have given. Every other
condition runs from its own seed as before (``v2x.execution.run_conditions``), so it draws what
it drew beside them. Under a budget too small for raw or uncoded maps (the ``identity`` and
``analog`` codecs at a 20 MHz, 100 ms frame) no such condition runs at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from v2x.conditions import (
    COST_FIELDS,
    LinkCost,
    RunOutput,
    concat_runs,
    condition_snr,
    link_snr,
    tiled_run,
)
from v2x.datasets.frame import CoopBatch
from v2x.perception.detector import Detections
from v2x.pipeline import CooperativePipeline
from v2x.semcom.base import Codec


def cost_before_air(
    pipe: CooperativePipeline, batch: CoopBatch, snr_db: torch.Tensor
) -> LinkCost | None:
    """The ``[K, B, A]`` cost ``pipe.run(batch, snr_db)`` reports, when it is known before
    anything goes on air; ``None`` when the maps' values or the air may change it.

    Args:
        snr_db: ``[K]`` or ``[K, B, A]`` dB, as ``v2x.conditions.condition_snr`` gives them.
    """
    if not _knowable(pipe, batch):
        return None
    codec, a = pipe.codec, batch.agent_mask.shape[1]
    c, h, w = pipe.model.feature_map_shape
    b, k = batch.batch_size, snr_db.shape[0]
    row_snr = link_snr(snr_db, b, a)[:, :, 1:].reshape(-1)
    sent = codec.cost_before_air((k * b * (a - 1), c, h, w), row_snr)
    if sent is None:
        return None
    cost = LinkCost.zeros(k, b, a, snr_db, batch.agent_mask.device)
    present = batch.agent_mask[:, 1:]
    for name in COST_FIELDS:  # as CooperativePipeline._run_features charges them
        getattr(cost, name)[:, :, 1:] = getattr(sent, name).view(k, b, a - 1) * present
    cost.cells_sent[:, :, 1:] = float(h * w) * present  # whole maps, every cell decoded
    cost.cells_used[:, :, 1:] = float(h * w) * present
    cost.sent[:, :, 1:] = present
    return cost


def _knowable(pipe: CooperativePipeline, batch: CoopBatch) -> bool:
    """Whether ``cost_before_air`` may know the cost: feature fusion sending whole maps to a
    collaborator slot, a codec that says its cost before encoding (``Codec.cost_before_air``)
    without HARQ, over a channel that neither erases nor resends (or not through the channel
    at all)."""
    codec, channel = pipe.codec, pipe.channel
    if not pipe.runs_seeded_conditions() or pipe.fusion.selects_cells:
        return False  # (Where2comm's cells depend on the maps)
    if batch.agent_mask.shape[1] == 1 or codec.harq_max_rounds > 0:
        return False
    if type(codec).cost_before_air is Codec.cost_before_air:
        return False
    return not (codec.uses_channel and (channel.erases or channel.arq_max_rounds > 0))


def run_with_known_drops(
    pipe: CooperativePipeline,
    batch: CoopBatch,
    snr_db: torch.Tensor,
    seeds: Sequence[int],
    deliver: Callable[[LinkCost], Any],
    run: Callable[..., RunOutput],
) -> tuple[RunOutput, Any, list[bool]] | None:
    """What ``run(pipe, batch, snr_db, seeds)`` gives, for the conditions that deliver
    something by ``deliver``'s decision (``cost -> Arrival``), with the others left out:
    those get the cost the run would have reported and the ego-alone detections, what the
    late-payload re-run would give them. ``None`` when the cost is not known before the air
    (``cost_before_air``) or every condition delivers something: run them all.

    Args:
        snr_db: ``[K]`` or ``[K, B, A]`` dB.
        seeds: ``[K]``, each condition's own seed (``v2x.execution.run_conditions``).
        run: ``v2x.execution.run_conditions``.

    Returns:
        ``(output, arrival, silent)``: the ``RunOutput`` of all ``K`` conditions, ``deliver``'s
        ``Arrival`` for the cost known before the air, and ``[K]`` which conditions were left
        out (their detections final: nothing of theirs arrives).
    """
    if not _knowable(pipe, batch):  # (before condition_snr, which may read the device)
        return None
    snr = condition_snr(snr_db, batch.agent_mask)
    planned = cost_before_air(pipe, batch, snr)
    if planned is None:
        return None
    arrival = deliver(planned)
    live = (planned.sent & arrival.delivered).flatten(1).any(1).tolist()  # [K], one read
    if all(live):
        return None
    k = len(live)
    silent = [not x for x in live]
    ego = pipe.ego_detections(batch)
    if not any(live):
        return tiled_run(ego, planned, k), arrival, silent
    todo = [i for i in range(k) if live[i]]
    ran = run(pipe, batch, snr[todo], [seeds[i] for i in todo])
    b = batch.batch_size
    parts, j = [], 0
    for i in range(k):
        if live[i]:
            parts.append(_condition(ran, j, b))
            j += 1
        else:
            parts.append(RunOutput(ego, _condition_cost(planned, i), 1))
    return concat_runs(parts), arrival, silent


def _condition(out: RunOutput, i: int, b: int) -> RunOutput:
    """Condition ``i`` of ``out`` (``b`` frames) as a run of one."""
    rows = slice(i * b, (i + 1) * b)
    det = out.detections
    one = Detections(det.boxes[rows], det.scores[rows], det.labels[rows], det.valid[rows])
    return RunOutput(one, _condition_cost(out.cost, i), 1)


def _condition_cost(cost: LinkCost, i: int) -> LinkCost:
    return LinkCost(**{f: getattr(cost, f)[i : i + 1] for f in cost.__dataclass_fields__})


__all__ = ["cost_before_air", "run_with_known_drops"]
