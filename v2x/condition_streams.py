"""Several seeded conditions in one pipeline call: each condition on air from its own seed.

A sweep cell runs with its own seed so that its numbers do not depend on the cells computed
beside it (``v2x.execution.run_conditions``). Run one by one, ``K`` cells cost ``K`` pipeline
calls — on a GPU mostly kernel launches and host syncs of warp, fusion, head and NMS, not
arithmetic. In feature fusion the random draws of a condition are those of its codec and
channel (``codec.encode`` → ``transmit``: noise, fading, erasures, HARQ rounds, the digital
chain's block failures) and its pose noise (the pipeline's generator). ``send`` runs that
segment for each condition's block of rows after ``torch.manual_seed(seeds[k])`` — the very
call, on the very rows, that the condition's own run makes after ``seed_run`` — and joins the
blocks; everything after it (warp, fusion, head, NMS) runs once for all ``K``. A codec whose
decoded maps do not depend on the condition (``identity``: the same tensor for every block)
has them shared by the ``K`` blocks, not copied ``K`` times; a codec that can decode into a
given tensor (``Codec.decodes_into``) is offered each later block's slice of the joined maps
(``DECODE_INTO``), so only the first block's maps are copied. On CUDA a codec that can code
the blocks together (``Codec.codes_blocks_jointly``: DeepJSCC) runs its encoder and decoder
once over the ``K`` blocks, each block still on air from its own seed (``_send_jointly``).

``send_cells`` sends rows whose cells were chosen per row (Where2comm's threshold: a count per
link): rows choosing the same number of cells go through one ``selective`` codec around the
codec, so that each link is coded, put on air and charged for its own cells only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from v2x.channels.base import Channel, deferred_checks
from v2x.channels.link import LinkState
from v2x.common import seed_torch
from v2x.semcom.base import (
    DECODE_INTO,
    CellReport,
    Codec,
    Cost,
    Reception,
    raw_feature_bits,
    reception,
)
from v2x.semcom.harq import charge_arq, on_air, transmit
from v2x.semcom.selective import SelectiveCodec

__all__ = ["Sent", "send", "send_cells"]


@dataclass
class Sent:
    """What ``send`` returns for ``N`` rows (maps).

    Attributes:
        decoded: ``[N, C, h, w]`` decoded maps, float32 or the codec's reduced dtype
            (``Codec.decode``: DeepJSCC's float16 / bfloat16 in CUDA inference; ``send_cells``:
            always float32); or ``[K, N / K, C, h, w]`` when ``send`` had ``K`` seeds and
            every block decoded to the same tensor: that tensor expanded over the ``K`` blocks
            (a view, one map for all; do not write into it).
        cost: the codec's ``Cost`` (retransmissions included), ``[N]`` float64 fields.
        outcome: ``Reception`` (packets erased, failed CRC, resent), ``[N]`` float64 fields.
        cells: ``CellReport`` (cells selected, conveyed and delivered; ``None`` fields: all).
    """

    decoded: torch.Tensor
    cost: Cost
    outcome: Reception
    cells: CellReport


def _condition_blocks(
    name: str, rows: torch.Tensor, seeds: Sequence[int]
) -> tuple[int, int, int]:
    """``(K, N, N / K)``: the ``K = len(seeds)`` condition blocks of the ``N`` rows of ``rows``
    (``[N, ...]`` or ``[K, N / K, ...]``); ``ValueError`` (naming ``name``) where they do not
    split evenly."""
    blocked = rows.dim() == 5
    k = len(seeds)
    n = rows.shape[0] * rows.shape[1] if blocked else rows.shape[0]
    if k == 0 or n % k or (blocked and rows.shape[0] != k):
        raise ValueError(f"{name}: {n} rows do not split into {k} conditions of equal size")
    return k, n, n // k


def _joined_blocks(decoded: torch.Tensor, blocks: Sequence[Sent]) -> Sent:
    """The condition blocks' ``Sent`` as one: ``decoded`` (their maps, joined) with their
    costs, receptions and cell reports concatenated in order."""
    return Sent(
        decoded,
        _cat(Cost, [s.cost for s in blocks]),
        _cat(Reception, [s.outcome for s in blocks]),
        _cat(CellReport, [s.cells for s in blocks]),
    )


def send(
    codec: Codec,
    channel: Channel,
    rows: torch.Tensor,
    row_snr: torch.Tensor,
    extra: Mapping[str, torch.Tensor] | None = None,
    seeds: Sequence[int] | None = None,
) -> Sent:
    """Encode ``rows``, put them on air (``transmit``: the codec's HARQ or the channel's ARQ
    rounds) and decode them.

    Args:
        rows: ``[N, C, h, w]`` maps to send, or ``[K, N / K, C, h, w]``: the same rows as
            ``K`` condition blocks (an expanded view: no copy per condition).
        row_snr: ``[N]`` float32 Es/N0 of each row's link (dB).
        extra: keyword tensors of ``codec.encode`` with ``N`` rows (``importance``).
        seeds: ``[K]``: the rows are ``K`` condition blocks of ``N / K`` (condition-major), and
            block ``k`` is coded and sent in its own call after ``torch.manual_seed(seeds[k])``.
            ``None``: one call from the current RNG state.
    """
    extra = dict(extra or {})
    blocked = rows.dim() == 5
    if seeds is None:
        flat = rows.reshape(-1, *rows.shape[2:]) if blocked else rows
        return _send_block(codec, channel, flat, row_snr, extra)
    k, n, m = _condition_blocks("send", rows, seeds)
    if k > 1 and _jointly(codec, rows, extra):
        return _send_jointly(codec, channel, rows, row_snr, seeds)
    blocks: list[Sent] = []
    # [N, C, h, w]: each block's maps decoded or copied in; made before the first block where
    # the codec knows its maps' dtype and layout before the air (none of them then copied)
    first = rows[0] if blocked else rows[:m]
    layout = codec.decoded_layout(first) if k > 1 and codec.decodes_into else None
    decoded = None if layout is None else _empty_maps(first, n, *layout)
    # the channel's input checks read once for all K blocks, not once per block (a host sync)
    with deferred_checks():
        for ki, seed in enumerate(seeds):
            part = slice(ki * m, (ki + 1) * m)
            seed_torch(seed)
            into = decoded[part] if decoded is not None and codec.decodes_into else None
            block = _send_block(
                codec,
                channel,
                rows[ki] if blocked else rows[part],
                row_snr[part],
                {name: v[part] for name, v in extra.items()},
                into,
            )
            if k == 1:
                return block
            if decoded is None and not blocks and codec.decodes_into:
                decoded = _joined(block.decoded, n)  # maps of its own per block: join at once
            elif decoded is None and blocks and block.decoded is not blocks[0].decoded:
                # the first block with maps of its own: every earlier one had the first's
                decoded = _joined(blocks[0].decoded, n)
                for j, earlier in enumerate(blocks):
                    decoded[j * m : (j + 1) * m] = earlier.decoded
                    blocks[j] = replace(earlier, decoded=decoded[j * m : (j + 1) * m])
            if decoded is not None:
                # torch.cat's values and layout, without holding all K blocks' maps at once
                if block.decoded is not into:  # (a codec that decoded into it: no copy)
                    decoded[part] = block.decoded
                block = replace(block, decoded=decoded[part])
            blocks.append(block)
    if decoded is None:  # one tensor for every block: shared, not copied K times
        decoded = blocks[0].decoded.unsqueeze(0).expand(k, *blocks[0].decoded.shape)
    return _joined_blocks(decoded, blocks)


def send_cells(
    codec: Codec,
    channel: Channel,
    rows: torch.Tensor,
    row_snr: torch.Tensor,
    chosen: torch.Tensor,
    seeds: Sequence[int] | None = None,
) -> Sent:
    """``send`` of each row's own cells ``chosen`` (a count per row): the rows that choose
    ``m > 0`` cells go through ``SelectiveCodec(codec)`` keeping exactly those ``m`` (their
    values, packed, plus their selection map: ``v2x.semcom.selective``), one call per distinct
    ``m`` in increasing order; a row choosing none is not sent (every cost and reception field
    0, its map all zeros, no cell selected). With ``seeds``, condition block ``k`` (all its
    counts) runs after ``torch.manual_seed(seeds[k])``, as in its own call.

    Args:
        rows: ``[N, C, h, w]`` maps, or ``[K, N / K, C, h, w]`` condition blocks (as ``send``).
        row_snr: ``[N]`` Es/N0 of each row's link (dB).
        chosen: ``[N, 1, h, w]`` bool (or ``[K, N / K, 1, h, w]``): the cells each row sends.
        seeds: as ``send``.

    Returns ``Sent``: ``cells.indices`` is ``None`` (counts differ), ``cells.selected`` is
    ``chosen``, ``cells.sent`` and ``cells.delivered`` as the ``selective`` codec reports them
    (True outside the selection; ``None`` when no call reports them).
    """
    blocked = rows.dim() == 5
    if seeds is None:
        flat = rows.reshape(-1, *rows.shape[-3:]) if blocked else rows
        return _send_cell_block(codec, channel, flat, row_snr, chosen)
    k, _, m = _condition_blocks("send_cells", rows, seeds)
    chosen = chosen.reshape(k, m, 1, *rows.shape[-2:])
    blocks = []
    with deferred_checks():
        for ki, seed in enumerate(seeds):
            part = slice(ki * m, (ki + 1) * m)
            seed_torch(seed)
            block_rows = rows[ki] if blocked else rows[part]
            blocks.append(
                _send_cell_block(codec, channel, block_rows, row_snr[part], chosen[ki])
            )
    if k == 1:
        return blocks[0]
    return _joined_blocks(torch.cat([s.decoded for s in blocks]), blocks)


def _send_cell_block(
    codec: Codec,
    channel: Channel,
    rows: torch.Tensor,
    row_snr: torch.Tensor,
    chosen: torch.Tensor,
) -> Sent:
    """``send_cells`` of one block of rows, from the current RNG state."""
    n, c, h, w = rows.shape
    device = rows.device
    chosen = chosen.to(device, torch.bool).reshape(n, 1, h, w)
    counts = chosen.reshape(n, h * w).sum(1)
    zeros = torch.zeros(n, dtype=torch.float64, device=device)
    cost = Cost(*(zeros.clone() for _ in range(4)), raw_bits=raw_feature_bits(rows))
    outcome = Reception(*(zeros.clone() for _ in range(5)))  # mcs: NaN until a block sets it
    decoded = torch.zeros(n, c, h, w, dtype=torch.float32, device=device)
    reports: dict[str, torch.Tensor | None] = {"sent": None, "delivered": None}
    for kept in torch.unique(counts).tolist():  # increasing counts; one read of the counts
        if kept == 0:
            continue  # nothing to send: not on air, nothing charged
        index = torch.nonzero(counts == kept).flatten()
        selective = SelectiveCodec(inner=codec, keep_fraction=kept / (h * w))
        mask = chosen.index_select(0, index)
        part = _send_block(
            selective, channel, rows.index_select(0, index), row_snr[index],
            {"importance": mask.float()},
        )  # fmt: skip
        decoded[index] = part.decoded.to(torch.float32)
        for f in fields(Cost):
            getattr(cost, f.name)[index] = getattr(part.cost, f.name).to(device, torch.float64)
        for f in fields(Reception):
            value = getattr(part.outcome, f.name).to(device, torch.float64)
            getattr(outcome, f.name)[index] = value
        for name, report in reports.items():
            got = getattr(part.cells, name)
            if got is None:
                continue
            if report is None:  # True (conveyed / delivered) wherever no call says otherwise
                report = reports[name] = torch.ones(n, 1, h, w, dtype=torch.bool, device=device)
            got = got.to(device, torch.bool).reshape(len(index), 1, -1)
            report[index] = got.expand(len(index), 1, h * w).reshape(len(index), 1, h, w)
    cells = CellReport(None, chosen, reports["sent"], reports["delivered"])
    return Sent(decoded, cost, outcome, cells)


def _joined(first: torch.Tensor, rows: int) -> torch.Tensor:
    """An empty ``[rows, *first.shape[1:]]`` tensor of ``first``'s dtype, device and memory
    format (channels-last when ``first`` is and is not also contiguous: ``torch.cat``'s
    choice for blocks of one layout)."""
    nhwc = first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if nhwc and not first.is_contiguous() else torch.contiguous_format
    return _empty_maps(first, rows, first.dtype, layout)


def _empty_maps(
    like: torch.Tensor, rows: int, dtype: torch.dtype, layout: torch.memory_format
) -> torch.Tensor:
    """An empty ``[rows, *like.shape[1:]]`` tensor on ``like``'s device."""
    return torch.empty((rows, *like.shape[1:]), dtype=dtype, device=like.device,
                       memory_format=layout)  # fmt: skip


def _send_block(
    codec: Codec,
    channel: Channel,
    rows: torch.Tensor,
    row_snr: torch.Tensor,
    extra: dict[str, torch.Tensor],
    into: torch.Tensor | None = None,
) -> Sent:
    link = LinkState.before_sending(channel, row_snr)
    tx = codec.encode(rows, link, **extra)
    if into is not None:  # where the maps are wanted (the codec may write them there)
        tx.meta[DECODE_INTO] = into
    # On air (a packet-aware channel loses the codec's own packets, v2x.channels.packets),
    # with the codec's HARQ or the channel's ARQ rounds, and decoded (v2x.semcom.harq).
    decoded, tx = transmit(codec, channel, tx, row_snr, link)
    return Sent(decoded, tx.cost, reception(tx), tx.cells)


def _jointly(codec: Codec, rows: torch.Tensor, extra: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``send`` codes its condition blocks together (``_send_jointly``): on CUDA, a
    codec that can (``Codec.codes_blocks_jointly``, no HARQ rounds), the blocks one map set
    (``rows [K, m, ...]`` expanded over the conditions) and no per-row codec arguments.

    Only on CUDA, where a condition's maps already equal its own call's to float32 rounding
    (cuDNN picks convolution algorithms by batch shape; the pipeline's head sees ``K·B`` maps
    anyway) and everything counted exactly. On the CPU each block keeps a call of its own, bit
    for bit its own call's: oneDNN's reductions (the AF modules' pooling) may split a row's sum
    differently for a larger batch."""
    same_rows = rows.dim() == 5 and rows.stride(0) == 0 and rows.is_cuda
    return codec.codes_blocks_jointly and codec.harq_max_rounds == 0 and same_rows and not extra


def _send_jointly(
    codec: Codec,
    channel: Channel,
    rows: torch.Tensor,
    row_snr: torch.Tensor,
    seeds: Sequence[int],
) -> Sent:
    """``send`` of ``K`` condition blocks coded together: ``codec.encode_blocks`` once, then
    each block on air after ``torch.manual_seed(seeds[k])`` (its channel's draws, in the order
    its own call makes them: the codec draws nothing, ``LinkState.before_sending`` restores the
    generators it uses), then ``codec.decode_blocks`` once and each block's retransmissions
    charged. Against one ``_send_block`` per block: the same draws, costs, receptions and
    delivered cells, the maps to float32 rounding (tested; hence CUDA only, ``_jointly``); the
    encoder's and decoder's small layers run once per send, not once per block."""
    m = rows.shape[1]
    parts = [slice(i * m, (i + 1) * m) for i in range(len(seeds))]
    links = [LinkState.before_sending(channel, row_snr[part]) for part in parts]
    sent = codec.encode_blocks(rows, links)
    received = []
    with deferred_checks():
        for seed, tx, part in zip(seeds, sent, parts):
            seed_torch(seed)
            received.append(on_air(codec, channel, tx, row_snr[part]))
        decoded = codec.decode_blocks(received, links)
    for rx in received:
        charge_arq(rx, channel)
    return Sent(
        decoded,
        _cat(Cost, [rx.cost for rx in received]),
        _cat(Reception, [reception(rx) for rx in received]),
        _cat(CellReport, [rx.cells for rx in received]),
    )


def _cat(kind: type, parts: list[Any]) -> Any:
    """One ``kind`` dataclass of the parts' tensor fields concatenated (``None`` stays)."""
    out = {}
    for f in fields(kind):
        values = [getattr(p, f.name) for p in parts]
        if all(v is None for v in values):
            out[f.name] = None
        elif any(v is None for v in values):
            raise ValueError(f"send: '{f.name}' is set for some conditions and not for others")
        else:
            out[f.name] = torch.cat(values)
    return kind(**out)
