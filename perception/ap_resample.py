"""AP of many resamplings of a frame set at once (the bootstrap of ``APAccumulator.compute``).

``resampled_aps`` gives, for each resample (a sorted list of frame indices, with repeats), the
AP that ``ap_from_flags`` returns on the drawn frames' detections concatenated frame after frame
— bit for bit: the cumulative sums, recall, precision and the VOC envelope are computed for all
resamples in a few array operations on a padded ``[R, L]`` matrix with the same element-wise
arithmetic, and each resample's sum of ``Δrecall · precision`` terms is taken by ``np.sum`` on
exactly the terms ``voc_ap`` sums, in the same order (numpy's pairwise summation depends on the
array's length, so padding is never summed). The per-resample Python work is that one ``np.sum``.

DAIR-V2X's procedure (``procedure="dair_v2x"``, always sorted globally) takes the global-sort
path to the same padded recall and precision and sums its own terms (``dair_ap``: the
differences between consecutive recalls times the envelope, without VOC's start and end
points), again by ``np.sum`` on exactly those terms in their order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Elements of one padded ``[R, L]`` chunk (bounds the memory: ~10 float64 arrays of this size).
CHUNK_ELEMENTS = 1 << 21

#: Cells of one block of rows in ``_true_positive_aps``: its temporaries (1 MiB each) stay
#: cache-sized and are reused by malloc (glibc raises its mmap threshold to a freed block's size
#: at the first free, with or without ``v2x.cli.reuse_freed_memory``). A cell of a 512-frame
#: sweep (six intervals of 1,000 resamples, ≈ 20,000 true positives each) on the 2-core VM:
#: 0.30–0.35 s at 1 << 17, 0.31–0.44 at 1 << 16 (more blocks, each ≈ 20 numpy calls), 0.33–0.37
#: at 1 << 19.
BLOCK_ELEMENTS = 1 << 17
#: Offset that puts the padding's positions far below 0 (negative precision; exact integers).
_FAR = float(1 << 40)
_ARANGE = np.arange(0, dtype=np.int64)
_COUNT = np.arange(0, dtype=np.float64)

#: Columns of one chunk of the envelope's running maximum (``_times_envelope``): at 64 about
#: one chunk in seven of a 512-frame sweep's resamples is scanned cell by cell.
ENVELOPE_CHUNK = 64

__all__ = ["CHUNK_ELEMENTS", "FlatRows", "flat_rows", "resampled_aps"]


def resampled_aps(
    tp: np.ndarray,
    scores: np.ndarray,
    lengths: np.ndarray,
    frame_gt: np.ndarray,
    draws: np.ndarray | Sequence[np.ndarray] | FlatRows,
    sort: str = "per_frame",
    procedure: str = "opencood",
) -> np.ndarray:
    """AP of each resample that has ground truth, as ``ap_from_flags`` would compute it.

    Args:
        tp: ``[D]`` int TP flags of every frame's counted detections, frame after frame.
        scores: ``[D]`` their scores.
        lengths: ``[F]`` int64 detections of each frame record (``sum == D``).
        frame_gt: ``[F]`` int64 GT boxes of each frame record.
        draws: ``[R, n]`` int frame records of each resample, or ``R`` such rows of different
            lengths (a cluster bootstrap); each row in the order its frames' detections are
            concatenated.
        sort: ``"per_frame"`` or ``"global"`` (see ``ap_from_flags``).
        procedure: ``"opencood"`` or ``"dair_v2x"`` (only with ``sort="global"``; see
            ``ap_from_flags``).

    Returns:
        ``[R']`` float64 APs of the resamples whose drawn frames hold GT (``R' <= R``), in
        resample order (the others are skipped, as the bootstrap skips them).
    """
    if sort not in ("per_frame", "global"):
        raise ValueError(f"sort: expected 'per_frame' or 'global', got {sort!r}")
    if procedure not in ("opencood", "dair_v2x") or (procedure == "dair_v2x" and sort != "global"):
        raise ValueError(
            f"procedure: expected 'opencood', or 'dair_v2x' with sort 'global', got "
            f"{procedure!r} with sort {sort!r}"
        )
    tp = np.asarray(tp, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    frame_gt = np.asarray(frame_gt, dtype=np.int64).reshape(-1)
    if sort == "per_frame":  # only the true positives' positions matter (_true_positive_aps)
        drawn, frames_per_row = _flat_rows(draws)
        gt_sums = np.concatenate([[0], np.cumsum(frame_gt[drawn])])
        row_end = np.cumsum(frames_per_row)
        num_gt = gt_sums[row_end] - gt_sums[row_end - frames_per_row]
        has_gt = num_gt > 0
        if not has_gt.all():
            drawn = drawn[np.repeat(has_gt, frames_per_row)]
            frames_per_row, num_gt = frames_per_row[has_gt], num_gt[has_gt]
        return _true_positive_aps(tp, lengths, drawn, frames_per_row, num_gt)
    if isinstance(draws, FlatRows):
        draws = draws.rows()
    if isinstance(draws, np.ndarray) and draws.ndim == 2:  # equal-length rows: no Python loop
        rows = draws.astype(np.int64, copy=False)
        num_gt = frame_gt[rows].sum(axis=1)
        rows = rows[num_gt > 0]
        per_row = lengths[rows].sum(axis=1)
    else:
        rows = [np.asarray(d, dtype=np.int64).reshape(-1) for d in draws]
        num_gt = np.asarray([int(frame_gt[d].sum()) for d in rows], dtype=np.int64)
        rows = [d for d, g in zip(rows, num_gt) if g > 0]
        per_row = np.asarray([int(lengths[d].sum()) for d in rows], dtype=np.int64)
    num_gt = num_gt[num_gt > 0]
    offsets = np.cumsum(lengths) - lengths
    # Padding sorts after every detection by a key of +inf, which NaN scores would not respect:
    # then one resample per chunk (no padding at all).
    one_by_one = not bool(np.isfinite(scores).all())
    out = np.empty(len(rows), dtype=np.float64)
    start = 0
    while start < len(rows):
        width = int(per_row[start:].max()) + 2
        stop = start + (1 if one_by_one else max(1, CHUNK_ELEMENTS // width))
        out[start:stop] = _chunk_aps(
            tp, scores, lengths, offsets, rows[start:stop], num_gt[start:stop], sort,
            procedure == "dair_v2x",
        )  # fmt: skip
        start = stop
    return out


@dataclass(frozen=True)
class FlatRows:
    """Resamples as one array (``flat_rows``), for several calls on the same draws.

    Attributes:
        drawn: ``[N]`` int64 frame records of every resample, row after row.
        frames_per_row: ``[R]`` int64 records of each resample.
    """

    drawn: np.ndarray
    frames_per_row: np.ndarray

    def rows(self) -> list[np.ndarray]:
        """The resamples as ``R`` arrays (views of ``drawn``)."""
        ends = np.cumsum(self.frames_per_row).tolist()
        return [self.drawn[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def flat_rows(draws: np.ndarray | Sequence[np.ndarray] | FlatRows) -> FlatRows:
    """``draws`` (as ``resampled_aps`` takes them) as one array: a ``draws`` argument that
    saves joining the rows again in each call."""
    return FlatRows(*_flat_rows(draws))


def _flat_rows(
    draws: np.ndarray | Sequence[np.ndarray] | FlatRows,
) -> tuple[np.ndarray, np.ndarray]:
    """``[N]`` int64 frame records of every resample, row after row, and ``[R]`` int64 records
    per row."""
    if isinstance(draws, FlatRows):
        return draws.drawn, draws.frames_per_row
    if isinstance(draws, np.ndarray) and draws.ndim == 2:
        r, n = draws.shape
        return draws.astype(np.int64).reshape(-1), np.full(r, n, dtype=np.int64)
    rows = [np.asarray(d, dtype=np.int64).reshape(-1) for d in draws]
    counts = np.fromiter((d.size for d in rows), dtype=np.int64, count=len(rows))
    return (np.concatenate(rows) if rows else np.zeros(0, np.int64)), counts


def _true_positive_aps(
    tp: np.ndarray,
    lengths: np.ndarray,
    drawn: np.ndarray,
    frames_per_row: np.ndarray,
    num_gt: np.ndarray,
) -> np.ndarray:
    """Per-frame order: the AP of each resample from its true positives alone, bit for bit.

    In ``voc_ap`` recall changes only at a true positive (the ``c``-th, at position ``p``
    of the concatenation: recall ``c / G``, precision ``c / (p + 1)``) and once more at the
    appended recall 1 (a term ``(1 − T / G) · 0``, present iff ``T / G != 1``). The envelope at
    a true positive is the largest precision at or after it, reached at a true positive (a
    false positive's precision is below that of the true positive before it), so the summed
    terms ``(c / G − (c − 1) / G) · max_{c' ≥ c} c' / (p_c' + 1)`` and the final one are
    exactly ``voc_ap``'s, in its order, with its arithmetic; the work is the true positives'.

    Everything runs on a padded ``[R, W]`` float64 matrix (``W``: the most slots of a row,
    rounded up to whole ``ENVELOPE_CHUNK`` columns, ``_chunked``), built and reduced in blocks
    of rows (``BLOCK_ELEMENTS``, ``_block_aps``), row ``i`` holding in its first ``S_i``
    columns the row's slots: its true positives, then (iff the final term exists) one slot for
    that term; the padding's precision is negative,
    so the right-to-left running maximum (the envelope) never picks it up. ``p + 1`` of every
    cell comes from one gather (``np.take``) of the true positives' positions, the count ``c``
    is the column + 1 (no per-slot array), ``c / G − (c − 1) / G`` is computed per block (a
    table per distinct ``G`` for all blocks was as large as the matrix: a quarter of the time)
    and the envelope chunk by chunk (``_times_envelope``). Each row's ``S_i`` terms,
    contiguous, are summed with ``np.sum``'s own pairwise sum.

    Args:
        tp, lengths: as for ``resampled_aps``.
        drawn: ``[N]`` frame records of every resample (each with GT), row after row.
        frames_per_row: ``[R]`` records of each row.
        num_gt: ``[R]`` its GT count (``> 0``).
    """
    r = frames_per_row.size
    if r == 0:
        return np.zeros(0, dtype=np.float64)
    # the true positives of every frame record: their positions in the records'
    # concatenation (float64, exact integers; one trailing entry that padding reads)
    is_tp = tp > 0
    tp_pos = np.zeros(int(np.count_nonzero(is_tp)) + 1)
    tp_pos[:-1] = np.flatnonzero(is_tp)
    ends = np.cumsum(lengths)
    offsets = ends - lengths
    tps_before = np.concatenate([[0], np.cumsum(is_tp, dtype=np.int64)])
    tp_first = tps_before[offsets]
    tps_per_frame = tps_before[ends] - tp_first
    # each drawn frame: its detections before it in its row and its true positives
    row_first = np.cumsum(frames_per_row) - frames_per_row
    n_det = lengths[drawn]
    det_before = np.cumsum(n_det) - n_det
    t_draw = tps_per_frame[drawn]
    t_row = np.add.reduceat(t_draw, row_first)
    last = t_row / num_gt.astype(np.float64)  # recall after the last detection (0 without)
    final = last != 1.0  # then voc_ap's appended recall 1 adds a term
    size = t_row + final
    firsts = tp_first[drawn]
    shifts = det_before - np.repeat(det_before[row_first], frames_per_row) + 1 - offsets[drawn]
    # rows in blocks of about BLOCK_ELEMENTS cells (cache-sized temporaries), each block's
    # width a whole number of envelope chunks
    width = _chunked(int(size.max()))
    step = max(1, BLOCK_ELEMENTS // width)
    gt = num_gt.astype(np.float64)
    out = np.empty(r, dtype=np.float64)
    for a in range(0, r, step):
        b = min(a + step, r)
        d0, d1 = int(row_first[a]), int(row_first[b - 1] + frames_per_row[b - 1])
        out[a:b] = _block_aps(
            tp_pos, firsts[d0:d1], t_draw[d0:d1], shifts[d0:d1], frames_per_row[a:b],
            gt[a:b], last[a:b], final[a:b], size[a:b],
        )  # fmt: skip
    return out


def _block_aps(
    tp_pos: np.ndarray,
    firsts: np.ndarray,
    t_draw: np.ndarray,
    shifts: np.ndarray,
    frames_per_row: np.ndarray,
    gt: np.ndarray,
    last: np.ndarray,
    final: np.ndarray,
    size: np.ndarray,
) -> np.ndarray:
    """``_true_positive_aps`` of a block of ``R`` rows with ``N`` drawn frames.

    Args:
        tp_pos: ``[P + 1]`` float64 positions of all true positives in the records'
            concatenation, and one trailing entry (read by final and padding cells).
        firsts, t_draw, shifts: ``[N]`` each drawn frame's first true positive (index into
            ``tp_pos``), its true positives, and ``p + 1 −`` position for its cells.
        frames_per_row: ``[R]`` drawn frames of each row.
        gt: ``[R]`` float64 GT count ``G`` of each row.
        last, final, size: ``[R]`` recall ``T / G``, whether the final term exists, slots.
    """
    r = frames_per_row.size
    width = _chunked(int(size.max()))
    row_first = np.cumsum(frames_per_row) - frames_per_row
    # Segments of the flattened [R, W] matrix, row after row: each drawn frame's true
    # positives, the row's final slot (0 or 1 cells), the row's padding.
    rows = np.arange(r)
    seg_frame = np.arange(firsts.size) + np.repeat(2 * rows, frames_per_row)
    seg_final = row_first + frames_per_row + 2 * rows
    counts = np.empty(firsts.size + 2 * r, dtype=np.int64)
    counts[seg_frame] = t_draw
    counts[seg_final] = final
    counts[seg_final + 1] = width - size
    seg_start = np.cumsum(counts) - counts
    # cell -> index into tp_pos (clipped: final and padding cells read the trailing entry)
    base = np.zeros(counts.size, dtype=np.int64)
    base[seg_frame] = firsts - seg_start[seg_frame]
    # cell -> p + 1 − (position in the records' concatenation); padding: far below 0
    shift = np.full(counts.size, -_FAR)
    shift[seg_frame] = shifts
    index = np.repeat(base, counts)
    index += _arange(r * width)
    pos1 = np.take(tp_pos, index, mode="clip")
    pos1 += np.repeat(shift, counts)
    pos1 = pos1.reshape(r, width)
    count = _counts(width)  # c of column j is j + 1
    precision = np.divide(count[1:], pos1, out=pos1)  # < 0 on padding and final slots
    # c / G − (c − 1) / G, voc_ap's arithmetic
    recall = np.divide(count, gt[:, None])
    terms = np.subtract(recall[:, 1:], recall[:, :-1])
    _times_envelope(terms, precision, ENVELOPE_CHUNK)
    terms[rows[final], size[final] - 1] = ((1.0 - last) * 0.0)[final]  # (1 − T / G) · 0
    flat = terms.reshape(-1)
    add = np.add.reduce  # np.sum's own pairwise sum on a 1-D float64 array
    return np.fromiter(
        (add(flat[a : a + n]) for a, n in zip((rows * width).tolist(), size.tolist())),
        dtype=np.float64,
        count=r,
    )


def _times_envelope(terms: np.ndarray, precision: np.ndarray, chunk: int) -> None:
    """``terms *= envelope`` in place, where the envelope is the running maximum of
    ``precision`` from the right inside each row (``[R, W]`` float64 each, ``W`` a multiple of
    ``chunk``).

    The maximum compares the float64 bits as int64: the same order for values >= 0, and any
    value < 0 (padding, final slots) is below them, so those never win at a valid cell.
    A row is cut into chunks of ``chunk`` columns: a chunk whose own maximum does not exceed
    the maximum of everything after it (most of them) has that maximum as its envelope at
    every cell; only the others (about one in seven at 64 columns) are scanned cell by cell,
    numpy's running maximum being a scalar loop (≈ 2.5 ns per cell) against a few vector
    passes for the rest.
    """
    r, width = precision.shape
    nc = width // chunk
    bits = precision.view(np.int64).reshape(r, nc, chunk)
    own = bits.max(axis=2)  # [R, C] each chunk's maximum
    after = np.empty_like(own)  # [R, C] the maximum of the chunks after each one
    after[:, -1] = np.iinfo(np.int64).min
    np.maximum.accumulate(own[:, :0:-1], axis=1, out=after[:, -2::-1])
    scanned = np.flatnonzero(own > after)  # chunks whose envelope varies inside
    cells = bits.reshape(-1, chunk)[scanned]  # [K, chunk] copies, before precision is reused
    backwards = cells[:, ::-1]
    np.maximum.accumulate(backwards, axis=1, out=backwards)
    np.maximum(cells, after.reshape(-1)[scanned][:, None], out=cells)
    envelope = precision.reshape(r, nc, chunk)
    envelope[:] = after.view(np.float64)[:, :, None]
    envelope.reshape(-1, chunk)[scanned] = cells.view(np.float64)
    terms *= precision


def _chunked(slots: int) -> int:
    """``slots`` rounded up to whole ``ENVELOPE_CHUNK`` columns."""
    return -(-slots // ENVELOPE_CHUNK) * ENVELOPE_CHUNK


def _counts(width: int) -> np.ndarray:
    """``[width + 1]`` float64 ``0, 1, ..., width``, a read-only view of one cached array."""
    global _COUNT
    if _COUNT.size < width + 1:
        _COUNT = np.arange(width + 1, dtype=np.float64)
        _COUNT.flags.writeable = False
    return _COUNT[: width + 1]


def _arange(n: int) -> np.ndarray:
    """``np.arange(n)`` (int64), a read-only view of one cached array grown as needed."""
    global _ARANGE
    if _ARANGE.size < n:
        _ARANGE = np.arange(n, dtype=np.int64)
        _ARANGE.flags.writeable = False
    return _ARANGE[:n]


def _chunk_aps(
    tp: np.ndarray,
    scores: np.ndarray,
    lengths: np.ndarray,
    offsets: np.ndarray,
    rows: np.ndarray | Sequence[np.ndarray],
    num_gt: np.ndarray,
    sort: str,
    dair: bool = False,
) -> np.ndarray:
    """``resampled_aps`` of a chunk of resamples that all have GT (``dair``: DAIR-V2X's AP
    sum, ``dair_ap``, instead of ``voc_ap``'s)."""
    r = len(rows)
    drawn = rows.reshape(-1) if isinstance(rows, np.ndarray) else np.concatenate(rows)
    n_det = lengths[drawn]
    ends = np.cumsum(n_det)
    total = int(ends[-1]) if ends.size else 0
    # the drawn frames' detections, frame after frame and resample after resample
    pos = np.arange(total) + np.repeat(offsets[drawn] - (ends - n_det), n_det)
    frames_per_row = (
        np.full(r, rows.shape[1], dtype=np.int64)
        if isinstance(rows, np.ndarray)
        else np.asarray([len(d) for d in rows], dtype=np.int64)
    )
    bounds = np.concatenate([[0], np.cumsum(frames_per_row)])
    per_row = np.concatenate([[0], ends])[bounds[1:]] - np.concatenate([[0], ends])[bounds[:-1]]
    row = np.repeat(np.arange(r), per_row)
    col = np.arange(total) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    width = int(per_row.max()) if r else 0
    flags = np.zeros((r, width), dtype=np.int64)
    flags[row, col] = tp[pos]
    if sort == "global":
        keys = np.full((r, width), np.inf)  # padding (-score = +inf) after every detection
        keys[row, col] = -scores[pos]
        flags = np.take_along_axis(flags, np.argsort(keys, axis=1, kind="stable"), axis=1)
    ctp = np.cumsum(flags, axis=1)
    cfp = np.cumsum(1 - flags, axis=1)
    recall = ctp / num_gt.astype(np.float64)[:, None]
    precision = ctp / np.maximum(ctp + cfp, 1)
    inside = np.arange(width)[None, :] < per_row[:, None]
    if dair:
        # dair_ap on each row: the padding (flag 0) keeps the row's last recall (no change, no
        # term) and gets precision 0 (leaves the right-to-left maximum alone)
        envelope = np.maximum.accumulate(np.where(inside, precision, 0.0)[:, ::-1], axis=1)
        change = recall[:, 1:] != recall[:, :-1]
        terms = ((recall[:, 1:] - recall[:, :-1]) * envelope[:, ::-1][:, 1:])[change]
        return _row_sums(terms, change.sum(axis=1))
    # voc_ap's mrec = [0, recall, 1] and mpre = [0, precision, 0], padded past each row's end
    # with mrec = 1 (no change, no term) and mpre = 0 (leaves the right-to-left maximum alone).
    mrec = np.ones((r, width + 2))
    mrec[:, 0] = 0.0
    mrec[:, 1:-1] = np.where(inside, recall, 1.0)
    mpre = np.zeros((r, width + 2))
    mpre[:, 1:-1] = np.where(inside, precision, 0.0)
    mpre = np.maximum.accumulate(mpre[:, ::-1], axis=1)[:, ::-1]
    change = mrec[:, 1:] != mrec[:, :-1]
    terms = ((mrec[:, 1:] - mrec[:, :-1]) * mpre[:, 1:])[change]
    return _row_sums(terms, change.sum(axis=1))


def _row_sums(terms: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``[R]`` sums of consecutive runs of ``terms`` (``[sum(counts)]`` float64), ``counts[i]``
    terms for row ``i``, each by ``np.sum``'s own pairwise sum on exactly its terms."""
    stops = np.cumsum(counts)
    # np.add.reduce is what np.sum runs on a 1-D float64 array (the same pairwise sum)
    add = np.add.reduce
    return np.fromiter(
        (add(terms[a:b]) for a, b in zip((stops - counts).tolist(), stops.tolist())),
        dtype=np.float64,
        count=counts.size,
    )
