"""Percentiles of resampled APs (the bootstrap's interval) without every resample's exact AP.

``resampled_ap_quantiles`` returns ``np.quantile(resampled_aps(...), quantiles)`` bit for bit.
A percentile interval reads two or three order statistics of the ``R`` resampled APs, so in
the per-frame order (the sweep's; OpenCOOD's VOC AP) only the resamples that can hold those
ranks need their exact AP:

1. **Bounds for every resample** from one piece per frame record (``_ap_bounds``): with ``c``
   true positives and ``F`` false positives before a piece, its ``t`` true positives have
   precisions ``(c + s) / (c + s + F + f_s)`` (``f_s``: the piece's false positives before its
   ``s``-th true positive), at most ``(c + t) / (c + t + F + f_1)`` and at least that of its
   last one; each true positive's envelope (VOC's running maximum from the right) lies between
   the larger of the piece's last precision and the later pieces' last precisions, and the
   larger of the piece's and the later pieces' upper bounds. ``AP = Σ envelope / G`` in exact
   arithmetic (each true positive raises recall by ``1 / G``), so the two sums bound it.
2. **Tighter bounds for the candidates** (resamples whose bounds overlap the range a needed
   order statistic can take): pieces cut at every run of true positives, inside which the
   precision only rises, so the bounds meet (the AP in exact arithmetic).
3. **The exact AP of the remaining candidates** (``ap_resample._true_positive_aps``: the
   sweep's bits; 0.0 for a resample without true positives), and every other resample stands
   in by its lower bound.

Why that is the same quantile: the ``k``-th smallest exact AP ``v_k`` lies in ``[L_k, U_k]``,
the ``k``-th smallest lower and upper bounds. A resample that is not a candidate for rank
``k`` has its whole range (its stand-in included) strictly below ``L_k`` or above ``U_k``, so
as many values lie below, at and above ``v_k`` with the stand-ins as with the exact APs, and
the ``k``-th order statistic is ``v_k`` itself. ``np.quantile`` (linear) reads only the order
statistics next to ``q (R − 1)`` (and the largest, for NaN), and each of those ranks is
covered. Rounding: the bounds are widened by ``8 (W + M + 16)`` units in the last place of
``max(|upper bound|, 1)`` (``W`` true positives and ``M`` pieces in a resample, at most; all
terms are >= 0), above what the float sums
of both the bounds and the exact AP can stray from the exact-arithmetic AP
(``(3 W + 5)`` and ``(M + 3)`` units: ``c / G − (c − 1) / G`` is off ``1 / G`` by at most
``2 c`` units of ``1 / G``).

Other orders and procedures (the global sort, DAIR-V2X) compute every resample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from v2x.perception.ap_resample import _flat_rows, _true_positive_aps, resampled_aps

__all__ = ["resampled_ap_quantiles", "resampled_difference_quantiles"]

#: Fewer resamples than this: every resample's exact AP (the bounds would save little).
MIN_BOUNDED_ROWS = 64

#: Cells of the ``[R, M]`` piece matrix handled at once by ``_ap_bounds``.
BLOCK_ELEMENTS = 1 << 16

#: Unit roundoff of float64.
_UNIT = float(np.finfo(np.float64).eps) / 2.0


@dataclass(frozen=True)
class _Pieces:
    """Consecutive pieces of every frame record's detections (their concatenation is the
    records'), with what bounds their true positives' precisions. Counts are float64 (exact
    integers), as the bounds use them.

    Attributes:
        first: ``[F]`` int64 first piece of each record.
        count: ``[F]`` int64 pieces of each record (at least 1; a record without detections
            has one empty piece).
        dets: ``[P + 1]`` detections of each piece; the last piece is empty (padding).
        hits: ``[P + 1]`` true positives of each piece.
        after_first: ``[P + 1]`` detections of each piece after its first true positive's
            false positives, i.e. ``dets − hits − (false positives before the first true
            positive)``; ``−1`` in pieces without true positives (module docstring).
        after_last: ``[P + 1]`` detections of each piece after its last true positive; ``−1``
            in pieces without true positives.
    """

    first: np.ndarray
    count: np.ndarray
    dets: np.ndarray
    hits: np.ndarray
    after_first: np.ndarray
    after_last: np.ndarray


def resampled_ap_quantiles(
    tp: np.ndarray,
    scores: np.ndarray,
    lengths: np.ndarray,
    frame_gt: np.ndarray,
    draws: np.ndarray | Sequence[np.ndarray],
    quantiles: Sequence[float],
    sort: str = "per_frame",
    procedure: str = "opencood",
) -> np.ndarray:
    """``np.quantile(resampled_aps(tp, scores, lengths, frame_gt, draws, sort, procedure),
    quantiles)`` bit for bit, computing exact APs only for the resamples that can hold the
    order statistics it reads (module docstring).

    Args:
        tp, scores, lengths, frame_gt, draws, sort, procedure: as for ``resampled_aps``
            (``draws`` as ``ap_resample.flat_rows`` when several calls share them).
        quantiles: ``[Q]`` probabilities in ``[0, 1]``.

    Returns:
        ``[Q]`` float64 quantiles of the APs of the resamples that hold GT (NaN where none do).
    """
    q = np.asarray(quantiles, dtype=np.float64).reshape(-1)
    if sort != "per_frame" or procedure != "opencood":
        values = resampled_aps(tp, scores, lengths, frame_gt, draws, sort, procedure)
        return np.quantile(values, q) if values.size else np.full(q.size, np.nan)
    drawn, frames_per_row, num_gt = _rows_with_gt(frame_gt, draws)
    aps = _RowAPs(tp, lengths, drawn, frames_per_row, num_gt)
    return _quantiles_from_bounds(q, aps.bounds, aps.tighter, aps.exact)


def resampled_difference_quantiles(
    first: tuple[np.ndarray, np.ndarray],
    second: tuple[np.ndarray, np.ndarray],
    frame_gt: np.ndarray,
    draws: np.ndarray | Sequence[np.ndarray],
    quantiles: Sequence[float],
) -> np.ndarray:
    """``np.quantile(A − B, quantiles)`` bit for bit, ``A`` and ``B`` the per-frame OpenCOOD
    ``resampled_aps`` of two accumulators' records on the same frames and draws (the paired
    bootstrap, ``ap_paired``): the difference of each resample lies between ``lo_A − hi_B``
    and ``hi_A − lo_B`` (rounding to nearest is monotone, so the float differences of the
    float bounds bound the float difference of the exact APs), and only the candidates for the
    order statistics read get both exact APs (module docstring).

    Args:
        first, second: ``([D], [F])`` TP flags (record after record) and detections per record
            of each accumulator at one IoU threshold, over the same ``F`` frame records.
        frame_gt: ``[F]`` GT count of each frame record (the same in both).
        draws, quantiles: as for ``resampled_ap_quantiles``.

    Returns:
        ``[Q]`` float64 quantiles over the resamples that hold GT (NaN where none do).
    """
    q = np.asarray(quantiles, dtype=np.float64).reshape(-1)
    drawn, frames_per_row, num_gt = _rows_with_gt(frame_gt, draws)
    a, b = (_RowAPs(tp, lengths, drawn, frames_per_row, num_gt) for tp, lengths in (first, second))

    def bounds(rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        (lo_a, hi_a), (lo_b, hi_b) = (
            (x.bounds() if rows is None else x.tighter(rows)) for x in (a, b)
        )
        return lo_a - hi_b, hi_a - lo_b

    return _quantiles_from_bounds(q, bounds, bounds, lambda rows: a.exact(rows) - b.exact(rows))


def _rows_with_gt(
    frame_gt: np.ndarray, draws: np.ndarray | Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The drawn records ``[N]``, records per row ``[R]`` and GT per row ``[R]`` (``> 0``) of
    the resamples that hold GT (the others are left out, as ``resampled_aps`` leaves them)."""
    frame_gt = np.asarray(frame_gt, dtype=np.int64).reshape(-1)
    drawn, frames_per_row = _flat_rows(draws)
    num_gt = _row_sums(np.take(frame_gt, drawn), frames_per_row)
    if not (num_gt > 0).all():
        drawn, frames_per_row = _rows_of(drawn, frames_per_row, np.flatnonzero(num_gt > 0))
        num_gt = num_gt[num_gt > 0]
    return drawn, frames_per_row, num_gt


def _quantiles_from_bounds(
    q: np.ndarray,
    bounds: Callable[[], tuple[np.ndarray, np.ndarray]],
    tighter: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    exact: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """``np.quantile`` at ``q`` of ``R`` values known through ``bounds()`` (``[R]`` lower and
    upper bounds of every value), ``tighter(rows)`` (tighter bounds of some rows) and
    ``exact(rows)`` (their values): the exact values of the rows that may hold an order
    statistic ``np.quantile`` reads, every other row's lower bound standing in (module
    docstring); every value exact below ``MIN_BOUNDED_ROWS`` rows."""
    lo, hi = bounds()
    n = lo.size
    if n == 0:
        return np.full(q.size, np.nan)
    if n < MIN_BOUNDED_ROWS:
        return np.quantile(exact(np.arange(n)), q)
    ranks = _read_ranks(n, q)
    wanted = _candidates(lo, hi, ranks)
    if wanted.sum() > ranks.size:  # tighter bounds for the candidates
        rows = np.flatnonzero(wanted)
        lo[rows], hi[rows] = tighter(rows)
        wanted = _candidates(lo, hi, ranks)
    stand_in = lo.copy()
    rows = np.flatnonzero(wanted)
    stand_in[rows] = exact(rows)
    return np.quantile(stand_in, q)


class _RowAPs:
    """One accumulator's APs on the resampled rows: bounds for every row (one piece per frame
    record), tighter bounds (one piece per run of true positives) and exact APs for some.

    Args:
        tp: ``[D]`` TP flags, record after record; lengths: ``[F]`` detections per record.
        drawn, frames_per_row, num_gt: the rows' records, counts and GT (``_rows_with_gt``).
    """

    def __init__(
        self,
        tp: np.ndarray,
        lengths: np.ndarray,
        drawn: np.ndarray,
        frames_per_row: np.ndarray,
        num_gt: np.ndarray,
    ) -> None:
        self.tp = np.asarray(tp, dtype=np.int64).reshape(-1)
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        self.drawn, self.frames_per_row, self.num_gt = drawn, frames_per_row, num_gt
        self.records = _pieces(self.tp, self.lengths, runs=False)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``[R]`` lower and upper bounds of every row's AP."""
        if self.frames_per_row.size < MIN_BOUNDED_ROWS:  # (all exact: no bounds needed)
            empty = np.zeros(self.frames_per_row.size)
            return empty, empty.copy()
        return _ap_bounds(self.records, self.drawn, self.frames_per_row, self.num_gt)

    def tighter(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the rows ``rows`` (ascending) from the runs of true positives."""
        sub_drawn, sub_frames = _rows_of(self.drawn, self.frames_per_row, rows)
        runs = _pieces(self.tp, self.lengths, runs=True)
        return _ap_bounds(runs, sub_drawn, sub_frames, self.num_gt[rows])

    def exact(self, rows: np.ndarray) -> np.ndarray:
        """``[len(rows)]`` exact APs (``_true_positive_aps``'s bits; 0.0 for a row without
        true positives: VOC's sum of its one term, (1 − 0) · 0, e.g. every resample of a
        subset the ego never detects)."""
        out = np.zeros(rows.size)
        sub_drawn, sub_frames = _rows_of(self.drawn, self.frames_per_row, rows)
        some = _row_sums(np.take(self.records.hits, sub_drawn), sub_frames) > 0
        sub_drawn, sub_frames = _rows_of(self.drawn, self.frames_per_row, rows[some])
        out[some] = _true_positive_aps(
            self.tp, self.lengths, sub_drawn, sub_frames, self.num_gt[rows[some]]
        )
        return out


def _row_sums(values: np.ndarray, frames_per_row: np.ndarray) -> np.ndarray:
    """``[R]`` int64 sums of consecutive runs of ``values`` (``frames_per_row[i]`` for row
    ``i``; empty rows sum to 0), by ``np.add.reduceat`` (a cumulative sum took 6× as long)."""
    if frames_per_row.size == 0:
        return np.zeros(0, dtype=np.int64)
    values = values.astype(np.int64, copy=False)
    if frames_per_row[-1] == 0:  # empty rows at the end start past the values: a 0 there
        values = np.append(values, 0)
    sums = np.add.reduceat(values, np.cumsum(frames_per_row) - frames_per_row)
    return np.where(frames_per_row > 0, sums, 0)


def _rows_of(
    drawn: np.ndarray, frames_per_row: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The drawn records (``[N']``) and records per row (``[R']``) of the rows ``rows``
    (ascending row indices)."""
    counts = frames_per_row[rows]
    starts = (np.cumsum(frames_per_row) - frames_per_row)[rows]
    index = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    index += np.arange(index.size)
    return drawn[index], counts


def _read_ranks(n: int, quantiles: np.ndarray) -> np.ndarray:
    """``[K]`` int64 ranks (0-based, ascending) whose values ``np.quantile`` of ``n`` values may
    read at ``quantiles`` (linear): those next to ``q (n − 1)``, with one more on each side
    (numpy computes the index with its own rounding), and the largest (its NaN check)."""
    below = np.floor(quantiles * (n - 1)).astype(np.int64)
    ranks = np.concatenate([below - 1, below, below + 1, below + 2, [n - 1]])
    return np.unique(np.clip(ranks, 0, n - 1))


def _candidates(lo: np.ndarray, hi: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """``[R]`` bool: the rows whose value (within ``[lo, hi]``) may be the ``k``-th smallest for
    some ``k`` of ``ranks``: ``lo <= U_k`` and ``hi >= L_k``, with ``L_k`` / ``U_k`` the ``k``-th
    smallest of ``lo`` / ``hi``."""
    lower = np.partition(lo, ranks)[ranks]
    upper = np.partition(hi, ranks)[ranks]
    wanted = np.zeros(lo.size, dtype=bool)
    for low, up in zip(lower.tolist(), upper.tolist()):
        wanted |= (lo <= up) & (hi >= low)
    return wanted


def _pieces(tp: np.ndarray, lengths: np.ndarray, runs: bool) -> _Pieces:
    """The records' pieces: one per record, or (``runs``) one per run of
    true positives (each piece from a run's first true positive, or its record's start, to the
    next such start), inside which every true positive's precision bounds meet.

    Args:
        tp: ``[D]`` int64 TP flags, record after record.
        lengths: ``[F]`` int64 detections of each record.
    """
    ends = np.cumsum(lengths)
    offsets = ends - lengths
    hit = tp > 0
    start_at, first = offsets, np.arange(lengths.size)
    if runs:  # a run's first true positive that does not open its record starts a piece too
        opens = hit.copy()
        opens[1:] &= ~hit[:-1]
        opens[offsets[lengths > 0]] = False
        # stable: a run never starts where a record does, and records keep their order
        order = np.argsort(np.concatenate([offsets, np.flatnonzero(opens)]), kind="stable")
        start_at = np.concatenate([offsets, np.flatnonzero(opens)])[order]
        first = np.argsort(order, kind="stable")[: lengths.size]
    count = np.diff(first, append=start_at.size)
    piece_end = np.append(start_at[1:], hit.size)
    hits_before = np.concatenate([[0], np.cumsum(hit, dtype=np.int64)])
    hits = hits_before[piece_end] - hits_before[start_at]
    positions = np.append(np.flatnonzero(hit), 0)  # a trailing entry for pieces without one
    first_hit = positions[hits_before[start_at]]
    last_hit = positions[np.maximum(hits_before[piece_end] - 1, 0)]
    has = hits > 0
    dets = piece_end - start_at
    after_first = piece_end - first_hit - hits  # (first_hit − start) false positives before
    after_last = piece_end - last_hit - 1
    return _Pieces(
        first=first,
        count=count,
        dets=np.append(dets, 0).astype(np.float64),
        hits=np.append(hits, 0).astype(np.float64),
        after_first=np.append(np.where(has, after_first, -1), -1).astype(np.float64),
        after_last=np.append(np.where(has, after_last, -1), -1).astype(np.float64),
    )


def _piece_matrix(pieces: _Pieces, drawn: np.ndarray, frames_per_row: np.ndarray) -> np.ndarray:
    """``[R, M]`` int64 pieces of each row in concatenation order (``M``: the most pieces of a
    row; shorter rows end with the empty padding piece)."""
    one_each = pieces.count.size == pieces.dets.size - 1  # one piece per record: the records
    if one_each and (frames_per_row == frames_per_row[0]).all():
        return drawn.reshape(frames_per_row.size, -1)
    per_draw = pieces.count[drawn]
    total = int(per_draw.sum())
    draw_start = np.cumsum(per_draw) - per_draw
    index = np.repeat(pieces.first[drawn] - draw_start, per_draw)
    index += np.arange(total)
    per_row = _row_sums(per_draw, frames_per_row)
    width = max(int(per_row.max()), 1)
    if (per_row == width).all():
        return index.reshape(-1, width)
    matrix = np.full((frames_per_row.size, width), pieces.dets.size - 1, dtype=np.int64)
    row_start = np.cumsum(per_row) - per_row
    # cell of each piece in the flattened matrix: its place in the row + the row's offset
    cell = np.repeat(np.arange(0, matrix.size, width) - row_start, per_row)
    cell += np.arange(total)
    matrix.reshape(-1)[cell] = index
    return matrix


def _ap_bounds(
    pieces: _Pieces, drawn: np.ndarray, frames_per_row: np.ndarray, num_gt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``[R]`` float64 lower and upper bounds of each row's exact AP (``_true_positive_aps``'s
    value), from its pieces (module docstring), widened for rounding; computed in blocks of
    about ``BLOCK_ELEMENTS`` cells of the ``[R, M]`` piece matrix (cache-sized temporaries).

    Args:
        pieces: the records' pieces (``_pieces``).
        drawn: ``[N]`` frame records of every row, row after row.
        frames_per_row: ``[R]`` records of each row.
        num_gt: ``[R]`` int64 GT count of each row (``> 0``).
    """
    matrix = _piece_matrix(pieces, drawn, frames_per_row)
    r, m = matrix.shape
    meet = np.array_equal(pieces.after_first, pieces.after_last)
    lo, hi, hits = np.empty(r), np.empty(r), np.empty(r)
    step = max(1, BLOCK_ELEMENTS // m)
    for a in range(0, r, step):
        block = matrix[a : a + step]
        weight = np.take(pieces.hits, block)
        upto = np.cumsum(weight, axis=1)  # true positives up to each piece's last
        places = np.cumsum(np.take(pieces.dets, block), axis=1)  # detections up to its end
        lo[a : a + step] = _envelope_sum(upto, places, np.take(pieces.after_last, block), weight)
        hi[a : a + step] = (
            lo[a : a + step] if meet
            else _envelope_sum(upto, places, np.take(pieces.after_first, block), weight)
        )  # fmt: skip
        hits[a : a + step] = upto[:, -1]
    gt = num_gt.astype(np.float64)
    lo /= gt
    hi /= gt
    slack = 8.0 * _UNIT * (float(hits.max()) + m + 16.0)
    margin = slack * np.maximum(np.abs(hi), 1.0)  # the AP is at most hi (bar rounding)
    return lo - margin, hi + margin


def _envelope_sum(
    upto: np.ndarray, places: np.ndarray, after: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """``[R]``: ``Σ weight · envelope`` of each row, the envelope being the running maximum from
    the right of ``upto / (places − after)`` — a piece's true positives over the detections up
    to one of them (the last, or the first with ``after_first``: every precision of the piece
    is at most that, ``_Pieces``). A piece without true positives gets ``X / (places + 1)``,
    ``X`` the true positives before it: at most the precision of the last true positive before
    it, which is at or after every earlier piece's true positives, so it moves neither bound.

    Args:
        upto, places, after, weight: ``[R, M]`` float64 (``places − after >= 1``); ``after``
            is overwritten.
    """
    np.subtract(places, after, out=after)
    values = np.divide(upto, after, out=after)
    backwards = values[:, ::-1]
    np.maximum.accumulate(backwards, axis=1, out=backwards)
    return np.einsum("rm,rm->r", weight, values)
