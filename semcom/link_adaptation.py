"""Link adaptation from the SINR the receiver reports over its resource grid (not the nominal SNR).

Over a frequency-selective channel with estimated CSI (``tdl``/``cdl``) the receiver's SINR per
resource element (RE) varies and is capped by the channel-estimation error, so an MCS picked
from the nominal Es/N0 fails. The channel reports, before a transmission, the per-RE SINR of a
few sounded grids (``Channel.sinr_feedback`` → ``LinkState.sinr_feedback``); this module turns
that into an MCS:

1. the sounded REs are cut, in mapping order, into code blocks of the MCS's length
   (``block_code_len``: exactly how the digital codec lays its blocks on the grid);
2. each block's effective SINR is the EESM of its REs (Sionna SYS ``EESM``, β per MCS of 38.214
   table 1: ``v2x.channels.effective_sinr.eesm_db``), minus ``margin_db``;
3. the block's BLER comes from the project's BLER table (the digital chain's own exact-decoder
   AWGN curves, ``semcom/bler_table.json``), averaged over the blocks: the expected BLER at this
   link's SNR;
4. the chosen MCS is the highest whose expected BLER is ≤ ``target_bler`` (MCS 0 if none).

The same EESM and table drive the codec's fast decoder, so a block's failure probability at
decode time is the one link adaptation planned for (up to the channel realisation).

**What the target bounds** (``target_unit``): a failed block loses its bytes, and a segment with
a lost byte is dropped, so under a channel-use budget (each kept BEV row's segment spans tens of
code blocks) a 10 % block error rate loses most of the sent rows. With ``target_unit="segment"``
(the digital codec's default) the codec steps the MCS down from the block rule's choice until the
*expected fraction of the sent segments the receiver loses* (``expected_segment_loss``: a lost
header loses them all; blocks fail independently at the MCS's block error rate,
``block_bler``) is ≤ ``target_bler`` — the analogue of 38.214 § 5.2.2.1's CQI, which bounds the
error rate of the transport block, the unit the receiver can use. ``"block"`` bounds the block
error rate itself: right where HARQ resends only the failed blocks (as 5G's code-block-group
retransmission does), since a failed block then costs a resend, not its segment.

**Fades the transmitter cannot see** (``LinkState.fade``: block or fast Rayleigh / Rician,
drawn when the transmission goes on air; ``v2x.channels.fade_statistics``): every error rate
above is averaged over the fade instead of read at the average SNR (``faded_block_bler``,
``select_mcs_over_fade``). A code block that sees one draw of the fade fails at the rate of the
draw it got: averaged over the fade's equal-probability points, the ε-outage rule, where
outer-loop link adaptation settles when acknowledgements say nothing about the next fade. A code
block that spans several independent draws (fast fading, or fading blocks shorter than a code
block: ``FadeStatistics.looks``) fails at the rate of its EESM effective SINR over them, as over
OFDM REs: averaged over equally likely blocks of that many draws of the fade's points, and, for
blocks of at least as many draws as the fade has points, the EESM of the fade's distribution
itself. A segment's loss is averaged over the fade when one fade covers the whole transmission
(its blocks fail together), and computed at the fade-averaged block error rate otherwise
(``planned_segment_loss``; where a fade spans several blocks but not the transmission this
plans more losses than the truth).

Why not Sionna's ``InnerLoopLinkAdaptation``/``PHYAbstraction`` for step 3–4: they map a
transport block, segmented by Sionna's 38.212 rules into code blocks of Sionna's PDSCH/PUSCH chain
(tables for MCS 3–28 on a 1.8 dB SNR grid) and target the *transport-block* error rate; the
digital codec sends fixed ``block_bits`` code blocks (with repetition below rate 1/5 for MCS 0–2)
and its receivable unit is the entropy-coded segment, whose error rate follows from this chain's
per-block BLER (``expected_segment_loss``). The two tables agree within the bound pinned in
``tests/semcom/test_link_adaptation.py`` (``docs/digital.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from v2x.channels.effective_sinr import eesm_db
from v2x.channels.fade_statistics import FadeStatistics, look_indices
from v2x.channels.link import LinkState
from v2x.semcom.bler_table import BlerTable
from v2x.semcom.digital_blocks import block_code_len
from v2x.semcom.mcs import MCS_TABLE


def _blocks_of(sinr: torch.Tensor, mcs_index: int, block_bits: int) -> torch.Tensor:
    """``sinr [L, N]`` → ``[L, N // S, S]`` whole code blocks of MCS ``mcs_index`` (``S``
    symbols each, as the codec maps them); at least one block (the REs repeated cyclically when
    ``N < S``)."""
    s = block_code_len(mcs_index, block_bits)
    n = sinr.shape[1]
    if n < s:
        sinr = sinr[:, torch.arange(s, device=sinr.device) % n]
        n = s
    k = n // s
    return sinr[:, : k * s].reshape(sinr.shape[0], k, s)


def expected_bler(
    sinr: torch.Tensor,
    table: BlerTable,
    block_bits: int,
    margin_db: float = 0.0,
) -> torch.Tensor:
    """``[L, 29]`` float64 mean code-block error rate of every MCS over the reported REs.

    Args:
        sinr: ``[L, N]`` float linear SINR of ``N`` sounded REs per link (mapping order).
        table: the BLER table for ``block_bits``.
        block_bits: LDPC information bits per code block (CRC included).
        margin_db: back-off subtracted from every block's effective SINR.
    """
    out = torch.empty(sinr.shape[0], len(MCS_TABLE), dtype=torch.float64)
    for m in MCS_TABLE:
        blocks = _blocks_of(sinr, m.index, block_bits)  # [L, K, S]
        eff = eesm_db(blocks, m.index).double().cpu() - margin_db  # [L, K]
        mcs = torch.full((eff.numel(),), m.index, dtype=torch.int64)
        out[:, m.index] = table.bler(mcs, eff.reshape(-1)).reshape(eff.shape).mean(dim=1)
    return out


def effective_sinr_db(sinr: torch.Tensor, block_bits: int, margin_db: float = 0.0) -> torch.Tensor:
    """``[L, 29]`` float64 mean (over code blocks) EESM SINR in dB per MCS, minus ``margin_db``:
    what threshold-based link adaptation compares when no BLER table exists for the block size."""
    out = torch.empty(sinr.shape[0], len(MCS_TABLE), dtype=torch.float64)
    for m in MCS_TABLE:
        eff = eesm_db(_blocks_of(sinr, m.index, block_bits), m.index).double().cpu()
        out[:, m.index] = eff.mean(dim=1) - margin_db
    return out


def select_mcs_from_sinr(
    sinr: torch.Tensor,
    block_bits: int,
    target_bler: float,
    table: BlerTable | None = None,
    thresholds_db: torch.Tensor | None = None,
    margin_db: float = 0.0,
) -> torch.Tensor:
    """``[L]`` int64: the highest MCS whose expected BLER over the reported REs is ≤ target.

    Args:
        sinr: ``[L, N]`` float linear per-RE SINR reported per link (``LinkState.sinr_feedback``).
        block_bits: code-block size of the digital chain.
        target_bler: per-block error rate aimed at (e.g. 0.1).
        table: BLER table for ``block_bits``; ``None``: compare the mean EESM SINR per MCS with
            ``thresholds_db`` instead (the Shannon-gap fallback of ``v2x.semcom.mcs``).
        thresholds_db: ``[29]`` SNR thresholds, used only without a table.
        margin_db: SINR back-off.

    Links with identical reports (same nominal SNR) are evaluated once.
    """
    if sinr.dim() != 2 or sinr.shape[1] == 0:
        raise ValueError(
            f"link adaptation: 'sinr_feedback' must be [L, N] with N > 0, got {tuple(sinr.shape)}"
        )
    unique, inverse = torch.unique(sinr.float(), dim=0, return_inverse=True)
    if table is not None:
        ok = expected_bler(unique, table, block_bits, margin_db) <= target_bler
    else:
        if thresholds_db is None:
            raise ValueError("link adaptation: need a BLER 'table' or 'thresholds_db'")
        ok = effective_sinr_db(unique, block_bits, margin_db) >= thresholds_db.double()[None, :]
    return _highest(ok)[inverse.cpu()]


def _highest(ok: torch.Tensor) -> torch.Tensor:
    """``ok [L, 29]`` bool → ``[L]`` int64: the highest MCS marked ``ok``, 0 where none is."""
    index = torch.arange(len(MCS_TABLE), dtype=torch.int64)
    return torch.where(ok, index[None, :], torch.zeros_like(index)[None, :]).amax(dim=1)


def faded_block_bler(
    snr_db: torch.Tensor,
    fade: FadeStatistics,
    table: BlerTable | None = None,
    thresholds_db: torch.Tensor | None = None,
    margin_db: float = 0.0,
    block_bits: int | None = None,
) -> torch.Tensor:
    """``[B, G, 29]`` float64 code-block error rate of every MCS over the fade, for the average
    Es/N0 ``snr_db [B]`` (dB), as ``G`` equally likely values per MCS: their mean is the block
    error rate averaged over the fade (without a table: the outage probability).

    A code block of MCS ``m`` (``block_bits`` information bits, CRC included: ``S`` symbols)
    sees ``L = fade.looks(S)`` effective independent draws of the fade:

    * ``⌊L⌋ = 1`` (one draw per transmission, per code block or longer): entry ``g`` is the
      rate at the fade's point ``g``: the table's BLER at its post-equalisation SINR minus
      ``margin_db`` or, without a table, the threshold rule's step (1 where that SINR is below
      the MCS's threshold in ``thresholds_db [29]``, else 0);
    * ``⌊L⌋ ≥ 2``: the rate at the block's EESM effective SINR (``eesm_db``, as over OFDM REs)
      minus ``margin_db``, averaged over ``LOOK_BLOCKS`` equally likely blocks of ``⌊L⌋`` draws
      (``eesm_over_draws_db``; fewer draws than ``L`` spread wider, erring towards losses), in
      every entry; from ``⌊L⌋ ≥ G`` on, every block's draws are the ``G`` points themselves: the
      EESM of the fade's distribution, ``−β ln E_g[exp(−γ g / β)]`` (the limit of many draws).

    ``block_bits`` may be ``None`` only for a fade drawn once per transmission. Links of equal
    SNR are evaluated once."""
    snr = torch.as_tensor(snr_db, dtype=torch.float64).reshape(-1).cpu()
    unique, inverse = torch.unique(snr, return_inverse=True)
    sinr = fade.sinr_db(unique)  # [U, G]
    if table is None and thresholds_db is None:
        raise ValueError("link adaptation: need a BLER 'table' or 'thresholds_db'")
    if table is None:
        thresholds = thresholds_db.double().cpu()[None, None, :]
        rates = (sinr[:, :, None] - margin_db < thresholds).double()
    else:
        n = len(MCS_TABLE)
        mcs = torch.arange(n, dtype=torch.int64).repeat(sinr.numel())
        point = (sinr - margin_db).reshape(-1).repeat_interleave(n)
        rates = table.bler(mcs, point).reshape(*sinr.shape, n)
    if fade.block_len is None and fade.fast is None:
        return rates[inverse]  # one draw per transmission: every block sees one point
    if block_bits is None:
        raise ValueError(
            "link adaptation: a fade drawn per block_len symbols or per symbol needs "
            "'block_bits' (how many of its draws a code block sees)"
        )
    for m in MCS_TABLE:
        looks = int(fade.looks(block_code_len(m.index, block_bits)))
        if looks < 2:
            continue
        eff = eesm_over_draws_db(sinr, m.index, looks) - margin_db  # [B, D]
        if table is None:
            bad = (eff < float(thresholds_db[m.index])).double()
        else:
            index = torch.full((eff.numel(),), m.index, dtype=torch.int64)
            bad = table.bler(index, eff.reshape(-1)).reshape(eff.shape)
        rates[:, :, m.index] = bad.mean(dim=1, keepdim=True)
    return rates[inverse]


def eesm_over_draws_db(point_sinr_db: torch.Tensor, mcs_index: int, looks: int) -> torch.Tensor:
    """``[B, D]`` float64 EESM effective SINR (dB; ``eesm_db``, β of MCS ``mcs_index``) of ``D``
    equally likely code blocks, each spanning ``looks`` independent draws of a fade whose
    equal-probability points have the post-equalisation SINR ``point_sinr_db [B, G]`` (dB):
    ``D = LOOK_BLOCKS`` blocks laid out by ``look_indices``, or, from ``looks ≥ G`` on, ``D = 1``
    block of all ``G`` points, ``−β ln(mean_g exp(−SINR_g / β))``: the EESM of the fade's
    distribution."""
    lin = torch.pow(10.0, point_sinr_db.double() / 10.0).float()
    points = lin.shape[1]
    index = None if looks >= points else look_indices(looks, points)  # [D, looks]
    per_row = points if index is None else index.numel()
    parts = [
        eesm_db(part[:, None, :] if index is None else part[:, index], mcs_index).double()
        for part in lin.split(max(1, 2**22 // per_row))  # (≤ 4M REs at a time)
    ]
    return torch.cat(parts)


def select_mcs_over_fade(
    snr_db: torch.Tensor,
    fade: FadeStatistics,
    target_bler: float,
    table: BlerTable | None = None,
    thresholds_db: torch.Tensor | None = None,
    margin_db: float = 0.0,
    block_bits: int | None = None,
) -> torch.Tensor:
    """``[B]`` int64: the highest MCS whose block error rate averaged over ``fade`` at
    ``snr_db [B]`` (dB) is ≤ ``target_bler`` (MCS 0 if none): the ε-outage rule, or, where a
    code block of ``block_bits`` spans several draws of the fade, its EESM over them
    (``faded_block_bler``: links of equal SNR evaluated once)."""
    rate = faded_block_bler(snr_db, fade, table, thresholds_db, margin_db, block_bits)
    return _highest(rate.mean(dim=1) <= target_bler)


def block_bler(
    table: BlerTable,
    block_bits: int,
    snr_db: torch.Tensor,
    sinr: torch.Tensor | None = None,
    margin_db: float = 0.0,
) -> torch.Tensor:
    """``[B, 29]`` float64 code-block error rate of every MCS per transmission, as link
    adaptation plans it: the table at ``snr_db [B]`` (Es/N0, dB) minus ``margin_db``, or, with
    the receiver's report ``sinr [B, N]`` (linear per-RE SINR), the mean over code blocks at their
    EESM effective SINR (``expected_bler``; links with identical reports evaluated once)."""
    if sinr is not None:
        unique, inverse = torch.unique(sinr.float(), dim=0, return_inverse=True)
        return expected_bler(unique, table, block_bits, margin_db)[inverse.cpu()]
    snr = torch.as_tensor(snr_db, dtype=torch.float64).reshape(-1).cpu() - margin_db
    mcs = torch.arange(len(MCS_TABLE), dtype=torch.int64)
    rates = table.bler(mcs.repeat(snr.numel()), snr.repeat_interleave(len(MCS_TABLE)))
    return rates.reshape(snr.numel(), len(MCS_TABLE))


def planned_block_bler(
    table: BlerTable,
    block_bits: int,
    link: LinkState,
    margin_db: float = 0.0,
    over_fade: bool = True,
) -> torch.Tensor:
    """``[B, G, 29]`` float64 code-block error rate of every MCS per transmission as link
    adaptation plans it: ``faded_block_bler`` over the fade's ``G`` points where ``link.fade``
    is set (and ``over_fade``), else ``block_bler`` (``G = 1``); ``B = 1`` for a link of one
    SNR."""
    if over_fade and link.fade is not None and link.sinr_feedback is None:
        return faded_block_bler(link.snr_db, link.fade, table, None, margin_db, block_bits)
    return block_bler(table, block_bits, link.snr_db, link.sinr_feedback, margin_db)[:, None]


def planned_segment_loss(
    header_bytes: int,
    segment_bytes: Sequence[int],
    block_payload_bits: int,
    rates: np.ndarray,
    shared: bool,
) -> float:
    """Expected fraction of a stream's sent segments lost at the block error rates ``rates [G]``
    of the fade's points (``G = 1``: no fade): averaged over the points when one fade covers the
    whole transmission (``shared``: its blocks fail together), else ``expected_segment_loss`` at
    their mean (each block a fade of its own)."""
    if len(rates) == 1 or not shared:
        rate = float(rates[0]) if len(rates) == 1 else float(np.mean(rates))
        return expected_segment_loss(header_bytes, segment_bytes, block_payload_bits, rate)
    losses = expected_segment_loss(header_bytes, segment_bytes, block_payload_bits, rates)
    return float(np.mean(losses))


def expected_segment_loss(
    header_bytes: int,
    segment_bytes: Sequence[int],
    block_payload_bits: int,
    block_error_rate: float | np.ndarray,
) -> float | np.ndarray:
    """Expected fraction of a stream's sent segments that the receiver loses (one per entry
    where ``block_error_rate`` is an array of rates ``[G]``).

    The stream is ``[header | segment 0 | segment 1 | …]`` cut into code blocks of
    ``block_payload_bits`` bits each (CRC excluded); every block fails independently with
    probability ``block_error_rate``. A segment (``segment_bytes[j] > 0``; 0 = not sent) is lost
    when any block holding one of its bytes fails; a lost header byte loses every segment. So the
    loss is ``1 − P(header) · mean_j P(segment j)``, ``P(part) = (1 − p)^(blocks it spans)``;
    ``1 − P(header)`` when only the header is sent, 0 when nothing is (``header_bytes == 0``).
    """
    many = np.ndim(block_error_rate) > 0
    if header_bytes <= 0:
        return np.zeros(np.shape(block_error_rate)) if many else 0.0
    keep = 1.0 - (np.asarray(block_error_rate, np.float64) if many else float(block_error_rate))
    header_blocks, spans, _ = block_spans(header_bytes, segment_bytes, block_payload_bits)
    header_ok = keep**header_blocks
    if not len(spans):
        return 1.0 - header_ok
    if many:  # each rate's mean over the segments, their distinct spans weighted by count
        span, count = np.unique(spans, return_counts=True)
        parts = np.power.outer(keep, span) @ count / count.sum()
        return 1.0 - header_ok * parts
    return float(1.0 - header_ok * np.mean(keep**spans))


def block_spans(
    header_bytes: int, segment_bytes: Sequence[int], block_payload_bits: int
) -> tuple[int, np.ndarray, np.ndarray]:
    """How many code blocks (of ``block_payload_bits`` bits each) hold a byte of the header of
    the stream ``[header | segment 0 | segment 1 | …]``; ``[S]`` float64 how many hold a byte
    of each of its ``S`` sent segments (``segment_bytes[j] > 0``), in order (a block on a
    boundary counts for both parts); and ``[S]`` float64 how many of those also hold a header
    byte (the header's last block, where a segment starts in it)."""
    sizes = np.asarray(segment_bytes, dtype=np.int64)
    starts = header_bytes + np.cumsum(sizes) - sizes
    sent = sizes > 0
    first = (8 * starts[sent]) // block_payload_bits
    last = (8 * (starts[sent] + sizes[sent]) - 1) // block_payload_bits
    header_blocks = (8 * header_bytes - 1) // block_payload_bits + 1
    with_header = np.clip(np.minimum(last, header_blocks - 1) - first + 1, 0, None)
    return int(header_blocks), (last - first + 1).astype(np.float64), with_header.astype(np.float64)
