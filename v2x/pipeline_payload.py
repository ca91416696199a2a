"""The pipeline's semantic-payload path: ``CooperativePipeline.run`` for a fusion that
``sends_payload`` (``semantic_map``, ``object_features``; ``v2x.perception.semantic``).

    features ─► fusion.payload ─► codec.encode ─► channel ─► codec.decode ─► splat_to_ego ─►
    fuse with the ego's own payload ─► fusion.head ─► NMS ─► Detections   (cost of every link)

Shapes: ``K`` conditions, ``B`` frames, ``A`` agent slots (ego at 0), ``P`` payload channels,
``h × w`` the strided BEV grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from v2x.channels.base import Channel
from v2x.channels.link import LinkState
from v2x.conditions import (
    COST_FIELDS,
    RECEPTION_FIELDS,
    LinkCost,
    RunOutput,
    link_snr,
    tiled_run,
)
from v2x.datasets.frame import CoopBatch
from v2x.perception.detector import CoopDetector
from v2x.perception.fusion_base import FeatureFusion, collaborator_rows
from v2x.perception.semantic import (
    payload_floor,
    payload_from_air,
    payload_to_air,
    splat_to_ego,
    with_score,
)
from v2x.semcom.base import Codec, Transmission, reception
from v2x.semcom.harq import transmit
from v2x.semcom.selective import SelectiveCodec


class PayloadPipe(Protocol):
    """What the payload path uses of ``v2x.pipeline.CooperativePipeline`` (which calls it)."""

    model: CoopDetector
    fusion: FeatureFusion
    codec: Codec
    channel: Channel
    pose_noise_m: float
    pose_noise_yaw_rad: float

    def _noisy_relative(
        self, poses: torch.Tensor, seeds: Sequence[int] | None = None
    ) -> torch.Tensor: ...


def transmit_rows(
    channel: Channel, codec: Codec, rows: torch.Tensor, row_snr: torch.Tensor, **extra: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Transmission]:
    """``rows [N, P, h, w]`` through ``codec`` and ``channel`` at ``row_snr [N]`` (dB).

    Returns the decoded maps ``[N, P, h, w]``, the cells whose values the transmitter
    conveyed (selected, where the codec selects, and ``meta["sent"]``) and those of them
    that arrived (``meta["delivered"]``), both ``[N, 1, h, w]`` bool, and the decoded
    ``Transmission`` (its ``cost``; ``reception`` of it)."""
    n, _, h, w = rows.shape
    link = LinkState.before_sending(channel, row_snr)
    tx = codec.encode(rows, link, **extra)
    # on air with the codec's HARQ or the channel's ARQ rounds, and decoded
    decoded, tx = transmit(codec, channel, tx, row_snr, link)
    masks = []
    cells = tx.cells
    for got in (cells.selected, cells.sent, cells.delivered):
        mask = torch.ones(n, 1, h, w, dtype=torch.bool, device=rows.device)
        if got is not None:  # [N, 1, h, w] per cell, or one flag per map
            got = got.to(rows.device, torch.bool).reshape(n, 1, -1)
            mask = got.expand(n, 1, h * w).reshape(n, 1, h, w)
        masks.append(mask)
    conveyed = masks[0] & masks[1]
    return decoded, conveyed, conveyed & masks[2], tx


def run_payload(
    pipe: PayloadPipe, batch: CoopBatch, features: torch.Tensor, snr_db: torch.Tensor
) -> RunOutput:
    """``pipe.run`` for semantic payloads (a fusion that ``sends_payload``), ``features
    [B, A, C, h, w]`` the agents' maps, ``snr_db [K]`` or ``[K, B, A]``: each collaborator's
    payload map goes
    through the codec and the channel, the ego moves what arrived to its frame by predicted
    centre (``splat_to_ego``), fuses it with its own and decodes.

    A payload that sends only some cells (``cells``: Where2comm-style budgets, one cell per
    detected object) goes through the codec wrapped in the ``selective`` codec, one call per
    distinct cell count, so every codec and channel carries it unchanged and the bits count
    the sent cells (+ their selection map) only; a collaborator with nothing to send costs
    nothing.

    On the air a payload carries its class logits as heights above the floor below the
    detector's score threshold and is empty where no class reaches it (``payload_to_air``); the
    ego fuses only the cells that arrived and carry something (``payload_from_air``)."""
    b, a, c, h, w = features.shape
    k = snr_db.shape[0]
    device = features.device
    model, fusion = pipe.model, pipe.fusion
    classes = model.config.num_classes
    cost = LinkCost.zeros(k, b, a, snr_db, device)
    own = with_score(fusion.own_payload(model, features[:, 0]), classes)  # [B, 1+P, h, w]
    if a == 1:
        fused = fusion(own[:, None], torch.ones_like(own[:, None, :1], dtype=torch.bool))
        no = torch.zeros_like(own[:, :1], dtype=torch.bool)
        heat, reg = fusion.head(model, features[:, 0], fused, no)
        return tiled_run(model.postprocess(heat, reg), cost, k)
    s = b * (a - 1)
    maps, cells = fusion.payload(model, collaborator_rows(features))
    # On the air each logit is its height above the floor, a cell with no class above it
    # empty (payload_to_air): the background costs no quantiser range nor bits.
    floor = payload_floor(float(model.config.score_threshold))
    maps = payload_to_air(maps, classes, floor)
    if cells is not None:
        maps = maps * cells
    p = maps.shape[1]
    n = k * s
    rows = maps.unsqueeze(0).expand(k, s, p, h, w).reshape(n, p, h, w)
    row_snr = link_snr(snr_db, b, a)[:, :, 1:].reshape(-1)
    decoded = torch.zeros(n, p, h, w, device=device)
    arrived = torch.zeros(n, 1, h, w, dtype=torch.bool, device=device)
    counts = {name: torch.zeros(n, dtype=torch.float64, device=device) for name in (
        "source_bits", "coded_bits", "channel_uses", "packets", "packets_erased",
        "packets_crc_failed", "retransmissions", "retransmission_rounds", "feedback_s",
        "cells_sent")}  # fmt: skip
    counts["mcs"] = torch.full((n,), math.nan, dtype=torch.float64, device=device)  # none yet
    if cells is None:
        groups = [(torch.arange(n, device=device), h * w)]
    else:
        per_row = cells.reshape(s, -1).sum(1).repeat(k)  # [N] cells each row sends
        groups = [(torch.nonzero(per_row == m).flatten(), int(m))
                  for m in torch.unique(per_row).tolist() if m > 0]  # fmt: skip
    for index, kept in groups:
        codec, extra = pipe.codec, {}
        if cells is not None:
            codec = SelectiveCodec(inner=pipe.codec, keep_fraction=kept / (h * w))
            mask = cells.unsqueeze(0).expand(k, s, 1, h, w).reshape(n, 1, h, w)
            extra = {"importance": mask[index].float()}
        got, conveyed, ok, tx = transmit_rows(
            pipe.channel, codec, rows[index], row_snr[index], **extra
        )
        decoded[index], arrived[index] = got.float(), ok
        outcome = reception(tx)
        for name in COST_FIELDS:
            counts[name][index] = getattr(tx.cost, name).to(device, torch.float64)
        for name in RECEPTION_FIELDS:
            counts[name][index] = getattr(outcome, name).to(device, torch.float64)
        counts["cells_sent"][index] = conveyed.reshape(len(index), -1).sum(1).double()
    present = batch.agent_mask[:, 1:]
    for name, value in counts.items():
        getattr(cost, name)[:, :, 1:] = value.view(k, b, a - 1) * present
    cost.cells_used[:, :, 1:] = arrived.reshape(k, b, a - 1, -1).sum(-1).double() * present
    on_air = present
    if cells is not None:  # a collaborator with nothing to send is not on the air
        on_air = present & (cells.reshape(s, -1).any(1).view(1, b, a - 1))
    cost.sent[:, :, 1:] = on_air
    if pipe.pose_noise_m != 0 or pipe.pose_noise_yaw_rad != 0:
        poses = batch.poses.unsqueeze(0).expand(k, b, a, 4, 4).reshape(k * b, a, 4, 4)
        agent_to_ego = torch.linalg.inv(pipe._noisy_relative(poses))[:, 1:]
    else:
        one = torch.linalg.inv(pipe._noisy_relative(batch.poses))[:, 1:]
        agent_to_ego = one.unsqueeze(0).expand(k, b, a - 1, 4, 4)
    decoded, carries = payload_from_air(decoded, classes, floor)
    fused_cells = arrived if carries is None else arrived & carries  # empty: nothing to fuse
    moved, valid = splat_to_ego(
        decoded, fused_cells, agent_to_ego.reshape(n, 4, 4), model.grid, model.stride, classes
    )
    valid = valid.view(k * b, a - 1, 1, h, w) & present.repeat(k, 1)[..., None, None, None]
    moved = with_score(moved, classes).view(k * b, a - 1, p + 1, h, w)
    ego = own.unsqueeze(0).expand(k, b, p + 1, h, w).reshape(k * b, 1, p + 1, h, w)
    stacked = torch.cat([ego, moved], dim=1)
    valid = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)
    ego_features = features[:, 0].unsqueeze(0).expand(k, b, c, h, w).reshape(k * b, c, h, w)
    heat, reg = fusion.head(
        model, ego_features, fusion(stacked, valid), fusion.winners(stacked, valid)
    )
    return RunOutput(model.postprocess(heat, reg), cost, k)
