"""The digital chain's MCS per map once its stream is fitted to the channel-use budget: the
second step of link adaptation for the segmented payload (``DigitalCodec.encode``, ``mcs:
auto``), after the block rule's choice (``DigitalCodec.select_mcs``). Two rules
(``target_unit``):

* ``"segment"`` (default, ``lower_for_segment_loss``): step down from the block rule's MCS
  until the expected fraction of the sent segments lost is ≤ ``target_bler`` — a bound on what
  the ledger shows lost;
* ``"cells"`` (``most_expected_cells``): the MCS of the 29 that maximises the **expected number
  of cells delivered** (nothing is sent where even the best expects less than one cell), ``E[cells] = E_g[P_g(header) · (cells of empty segments + Σ_j cells_j ·
  P_g(segment j))]`` over the fade's points ``g`` (one point without a fade or with
  ``fade_aware`` off) — goodput in the unit fusion uses. A higher MCS fits more of the map
  into the budget and loses more of it; this rule weighs the two instead of bounding the loss,
  the throughput-optimal rate under a fade the transmitter cannot see (Tse & Viswanath § 5.4:
  the rate that maximises ``R · (1 − p_out(R))``).

Both see the error rates link adaptation plans with (``planned_block_bler``: at the average SNR
or the receiver's report, or averaged over the fade with ``fade_aware``), and both refit each
row's stream to the budget at every MCS they try (``_fit_stream``: fewer bits per value, then
fewer segments, as the budget rule does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from v2x.channels.link import LinkState
from v2x.semcom.digital_stream import MapStream, _segments
from v2x.semcom.fec import CRC_BITS
from v2x.semcom.link_adaptation import (
    block_spans,
    planned_block_bler,
    planned_segment_loss,
)
from v2x.semcom.mcs import MCS_TABLE

if TYPE_CHECKING:  # (the codec imports this module)
    from v2x.semcom.digital import DigitalCodec

#: ``most_expected_cells`` sends nothing where no MCS expects to deliver this many cells
MIN_EXPECTED_CELLS = 1.0


def _planned_rates(codec: DigitalCodec, link: LinkState, rows: int) -> np.ndarray:
    """``[rows, G, 29]``: each row's planned code-block error rate per MCS at the fade's ``G``
    points (``G = 1`` without a fade), one SNR spread over every row."""
    assert codec.table is not None
    rates = planned_block_bler(
        codec.table, codec.block_bits, link, codec.margin_db, codec.fade_aware
    ).numpy()
    if rates.shape[0] == 1 and rows > 1:
        rates = np.repeat(rates, rows, axis=0)
    return rates


def _shared(codec: DigitalCodec, link: LinkState, stream: MapStream, mcs: int) -> bool:
    """Whether one fade covers the whole of ``stream`` sent at ``mcs`` (its blocks fail
    together); without a fade, trivially (the rates do not vary)."""
    return link.fade is None or link.fade.shared_by(codec._uses_for_bytes(len(stream.data), mcs))


def lower_for_segment_loss(
    codec: DigitalCodec,
    features: torch.Tensor,
    link: LinkState,
    mcs: torch.Tensor,
    streams: list[MapStream],
    cache: dict,
) -> torch.Tensor:
    """``target_unit="segment"``: step each row's MCS down from the block rule's ``mcs [B]``
    until the expected fraction of its stream's sent segments lost
    (``expected_segment_loss``) is ≤ ``target_bler`` (MCS 0 at worst), refitting the row's
    stream to the budget at each step; ``streams`` is updated in place. Returns the ``[B]``
    int64 MCS sent."""
    rates = _planned_rates(codec, link, len(streams))  # [B, G, 29]
    payload_bits = codec.block_bits - CRC_BITS
    mcs = mcs.clone()

    def too_lossy(i: int) -> bool:
        m, st = int(mcs[i]), streams[i]
        loss = planned_segment_loss(
            st.header_bytes, st.segment_bytes, payload_bits, rates[i, :, m],
            _shared(codec, link, st, m),
        )  # fmt: skip
        return m > 0 and loss > codec.target_bler

    rows = [i for i in range(len(streams)) if too_lossy(i)]
    while rows:
        mcs[rows] -= 1
        if codec.source_executor is not None and len(rows) > 1:
            codec._source_code_in_workers(features[rows], mcs[rows], cache)
        for i in rows:
            streams[i] = codec._fit_stream(features, i, int(mcs[i]), cache)
        rows = [i for i in rows if too_lossy(i)]
    return mcs


def expected_cells(
    stream: MapStream,
    num_cells: int,
    cells_per_segment: int,
    block_payload_bits: int,
    rates: np.ndarray,
    shared: bool,
) -> float:
    """Expected number of the map's ``num_cells`` cells that ``stream`` delivers when each of
    its code blocks (``block_payload_bits`` bits each) fails at the rates ``rates [G]`` of the
    fade's points: averaged over the points when one fade covers the stream (``shared``), else
    at their mean rate. A cell arrives with its segment — every block holding a byte of the
    segment or of the header decoded, blocks failing independently (a block holding both
    counted once: exact, where ``expected_segment_loss`` counts it twice) — or, in an empty
    segment (all zeros, known from the header), with the header alone. 0 when nothing is
    sent."""
    if stream.header_bytes <= 0:
        return 0.0
    keep = 1.0 - (np.asarray(rates, np.float64) if shared else np.array([np.mean(rates)]))
    bounds = _segments(num_cells, cells_per_segment)
    sizes = np.array([z - a for a, z in bounds], dtype=np.float64)
    sent = np.asarray(stream.segment_bytes) > 0
    empty = np.array([bool(stream.segment_cells) and stream.segment_cells[j] == 0 and not sent[j]
                      for j in range(len(bounds))])  # fmt: skip
    header_blocks, spans, with_header = block_spans(
        stream.header_bytes, stream.segment_bytes, block_payload_bits
    )
    own = np.power.outer(keep, spans - with_header) @ sizes[sent]  # [G]: beyond the header's
    return float(np.mean(keep**header_blocks * (sizes[empty].sum() + own)))


def most_expected_cells(
    codec: DigitalCodec, features: torch.Tensor, link: LinkState, cache: dict
) -> tuple[torch.Tensor, list[MapStream]]:
    """``target_unit="cells"``: each row's MCS (of the 29) whose stream, fitted to the budget
    at that MCS, delivers the most cells in expectation (``expected_cells``; ties to the higher
    MCS, the shorter airtime), and that stream — or an unsent one where no MCS expects to
    deliver ``MIN_EXPECTED_CELLS`` (a deep fade's far tail is not worth the airtime). Returns
    the ``[B]`` int64 MCS and the ``B`` streams."""
    b, _, h, w = features.shape
    rates = _planned_rates(codec, link, b)  # [B, G, 29]
    payload_bits = codec.block_bits - CRC_BITS
    cps = codec._cells_per_segment(w)
    best = torch.zeros(b, dtype=torch.int64)
    score = np.full(b, -1.0)
    streams: list[MapStream] = [None] * b  # type: ignore[list-item]  (every row set at MCS 28)
    for m in range(len(MCS_TABLE) - 1, -1, -1):
        if codec.source_executor is not None and b > 1:
            codec._source_code_in_workers(features, torch.full((b,), m), cache)
        for i in range(b):
            stream = codec._fit_stream(features, i, m, cache)
            cells = expected_cells(stream, h * w, cps, payload_bits, rates[i, :, m],
                                   _shared(codec, link, stream, m))  # fmt: skip
            if cells > score[i]:
                score[i], best[i], streams[i] = cells, m, stream
    for i in np.flatnonzero(score < MIN_EXPECTED_CELLS):
        s = streams[i]
        streams[i] = MapStream.unsent(len(s.segment_bytes), s.bits, s.segment_cells)
    return best, streams


__all__ = ["expected_cells", "lower_for_segment_loss", "most_expected_cells"]
