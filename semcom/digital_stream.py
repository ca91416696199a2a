"""One map's byte stream in the digital chain (``v2x.semcom.digital``): its layout, coding and
decoding on the host.

``[header | segment 0 | segment 1 | …]``: the header holds ``bits``, flags, the occupancy bitmap
of non-empty cells (deflate-compressed when smaller), per-channel (or per-map) float32 offset
and step, the entropy model and every segment's byte length (LEB128 varints); each segment is
entropy-coded on its own (``rows_per_segment`` BEV rows or ``cells_per_segment`` cells in raster
order), so that a segment with a lost byte loses only its cells. ``code_map`` and
``decode_whole`` use numpy and the entropy coder only: what a worker process runs
(``DigitalCodec.source_executor``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from v2x.semcom import entropy
from v2x.semcom.quantize import OccupiedLevels, check_bits

_FLAG_PER_CHANNEL = 1
_FLAG_DENSE = 2  # every cell occupied: no occupancy map sent
_FLAG_OCC_DEFLATE = 4


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("digital header: truncated varint")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos


@dataclass
class MapStream:
    """One map's byte stream and where its parts lie.

    Attributes:
        data: header followed by the segments.
        header_bytes: length of the header (side information).
        segment_bytes: ``[S]`` byte length of every segment (0 = not sent).
        bits: quantiser bits used.
        segment_cells: ``[S]`` occupied (non-empty) cells of every segment (empty: unknown).
        decoded: memo of the receiver's decoding, shared by every stream assembled from the
            same source coding (one map at one ``bits``, sent at several SNRs): ``{segment
            index: symbols}`` and ``"whole"``: ``(stream bytes, [C, H, W] map, [H, W]
            delivered)`` of the last stream received whole; see ``decode_map_stream``'s ``sent``;
            ``("whole", device)``: the same, its map a tensor on ``device`` (``reconstruct``);
            ``"ahead"``: ``(stream bytes, future)`` of a whole decoding started on the workers
            before reception (``DigitalCodec._decode_ahead``).
        memo: read-only answers of ``sent_cells`` per (height, width, cells per segment)
            and of ``on_device`` per device: the source-coding memo hands the same stream
            object to each of a map's ``K`` SNRs.
    """

    data: bytes
    header_bytes: int
    segment_bytes: list[int]
    bits: int
    segment_cells: list[int] = field(default_factory=list)
    decoded: dict[int | str | tuple, Any] = field(default_factory=dict, repr=False)
    memo: dict[tuple, np.ndarray | torch.Tensor] = field(
        default_factory=dict, repr=False, compare=False
    )

    def on_device(self, device: torch.device | str) -> torch.Tensor:
        """``[len(data)]`` uint8: the stream's bytes on ``device``, copied there once (read-only
        by contract: the stream is shared by a map's ``K`` SNRs and their HARQ rounds)."""
        key = ("bytes", str(torch.device(device)))
        if key not in self.memo:
            raw = torch.frombuffer(bytearray(self.data), dtype=torch.uint8) if self.data else None
            raw = torch.zeros(0, dtype=torch.uint8) if raw is None else raw
            self.memo[key] = raw.to(device)  # pageable: pinning each stream cost more (measured)
        return self.memo[key]

    @staticmethod
    def put_on_device(streams: Sequence[MapStream], device: torch.device | str) -> None:
        """``on_device`` of every stream of ``streams``, the bytes of those not yet there copied
        in one transfer (one wait for the device's queue, not one per stream); each keeps its
        part of it."""
        key = ("bytes", str(torch.device(device)))
        todo = list({id(st): st for st in streams if key not in st.memo}.values())
        if len(todo) < 2 or not any(st.data for st in todo):
            for st in todo:
                st.on_device(device)
            return
        joined = torch.frombuffer(bytearray(b"".join(st.data for st in todo)), dtype=torch.uint8)
        on_device = joined.to(device)
        pos = 0
        for st in todo:
            st.memo[key] = on_device[pos : pos + len(st.data)]
            pos += len(st.data)

    @classmethod
    def unsent(cls, segments: int, bits: int, segment_cells: list[int]) -> MapStream:
        """The stream of a map of which nothing is sent (no header, ``segments`` segments of
        length 0): 0 channel uses, the map decoded as zeros."""
        return cls(b"", 0, [0] * segments, bits, list(segment_cells))

    def sent_cells(self, height: int, width: int, cells_per_segment: int) -> np.ndarray:
        """``[H, W]`` bool: the cells whose values this stream conveys — those of segments that
        were sent, and of empty segments (known to be 0 from the header) — all False when
        nothing is sent. Equal to ``decode_map_stream``'s ``delivered`` when nothing is lost."""
        key = (height, width, cells_per_segment)
        if key not in self.memo:
            out = np.zeros(height * width, dtype=bool)
            if self.data:
                for j, (a, z) in enumerate(_segments(height * width, cells_per_segment)):
                    empty = bool(self.segment_cells) and self.segment_cells[j] == 0
                    out[a:z] = self.segment_bytes[j] > 0 or empty
            out.setflags(write=False)
            self.memo[key] = out.reshape(height, width)
        return self.memo[key]


@dataclass
class _MapParts:
    """Everything needed to assemble a stream for one map with any subset of segments."""

    prefix: bytes  # header before the segment-length table
    segments: list[bytes]
    energy: np.ndarray  # [S] L1 feature energy of every segment
    bits: int
    cells: list[int] = field(default_factory=list)  # [S] occupied cells of every segment
    decoded: dict[int | str, Any] = field(default_factory=dict)  # receiver's memo (MapStream)


def _segments(num_cells: int, cells_per_segment: int) -> list[tuple[int, int]]:
    """Raster-order cell ranges ``[start, stop)`` of the segments of an ``H·W`` map."""
    return [
        (a, min(a + cells_per_segment, num_cells)) for a in range(0, num_cells, cells_per_segment)
    ]


def _encode_map_parts(
    q: OccupiedLevels, cell_energy: np.ndarray, cells_per_segment: int, backend: str
) -> _MapParts:
    """Header prefix and entropy-coded segments of one quantised map: ``code_map`` of its
    levels, copied to the host.

    Args:
        q: the map's levels on its occupied cells (``quantize_occupied``; any device: only the
            levels, in the narrowest integer type, and the small side information are copied to
            the host).
        cell_energy: ``[H·W]`` float64 L1 norm of every cell's feature vector (raster order;
            summed in float32 over the channels, per segment in float64).
        cells_per_segment: cells per segment in raster order.
        backend: entropy coder.
    """
    return code_map(*_levels_on_host(q), q.bits, cell_energy, cells_per_segment, backend)


def _levels_on_host(q: OccupiedLevels) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``q``'s levels ``[C, n]`` (uint8 up to 8 bits, else int32), occupancy ``[H, W]``,
    offsets and steps ``[G]`` as host arrays."""
    narrow = torch.uint8 if q.bits <= 8 else torch.int32
    parts = (q.levels.to(narrow), q.occupied, q.offset, q.step)
    if q.levels.device.type == "cpu":
        return tuple(t.numpy() for t in parts)  # type: ignore[return-value]
    return arrays_in_one_copy(parts)  # type: ignore[return-value]


def arrays_in_one_copy(tensors: Sequence[torch.Tensor]) -> tuple[np.ndarray, ...]:
    """``tensors`` (one device, any dtypes and shapes) as host arrays of their dtypes and
    shapes, through one copy of their bytes (one wait for a device's queue, not one each)."""
    raw = torch.cat([t.contiguous().reshape(-1).view(torch.uint8) for t in tensors])
    raw = raw.cpu().numpy()
    out, pos = [], 0
    for t in tensors:
        size = t.numel() * t.element_size()
        dtype = torch.empty(0, dtype=t.dtype).numpy().dtype
        out.append(raw[pos : pos + size].copy().view(dtype).reshape(t.shape))
        pos += size
    return tuple(out)


def code_map(
    levels: np.ndarray,
    occ: np.ndarray,
    offset: np.ndarray,
    step: np.ndarray,
    bits: int,
    cell_energy: np.ndarray,
    cells_per_segment: int,
    backend: str,
) -> _MapParts:
    """Header prefix and entropy-coded segments of one map from host arrays only (numpy and the
    entropy coder: what a worker process runs, ``DigitalCodec.source_executor``).

    Args:
        levels: ``[C, n]`` quantiser levels of the ``n`` occupied cells, raster order.
        occ: ``[H, W]`` bool occupancy.
        offset, step: ``[G]`` float32 per channel (``G = C``) or per map (``G = 1``).
        bits: quantiser bits.
        cell_energy, cells_per_segment, backend: as ``_encode_map_parts``'.
    """
    c = levels.shape[0]
    h, w = occ.shape
    flags = _FLAG_PER_CHANNEL if offset.shape[0] == c and c != 1 else 0
    prefix = bytearray(struct.pack("<BB", bits, 0))
    if occ.all():
        flags |= _FLAG_DENSE
    else:
        packed = np.packbits(occ.reshape(-1)).tobytes()
        deflated = zlib.compress(packed, 9)
        if len(deflated) < len(packed):
            flags |= _FLAG_OCC_DEFLATE
            packed = deflated
        prefix += _varint(len(packed)) + packed
    prefix[1] = flags
    prefix += offset.astype("<f4").tobytes()
    prefix += step.astype("<f4").tobytes()
    # Segment j's symbols: its occupied cells in raster order, cell-major (every channel of a
    # cell, then the next cell) -- one run of the map's occupied cells transposed.
    starts = np.arange(0, h * w, cells_per_segment)
    occupied = np.add.reduceat(occ.reshape(-1).astype(np.int64), starts) if h * w else starts
    bounds = np.concatenate([[0], np.cumsum(occupied)]) * c
    symbols = np.ascontiguousarray(levels.T).reshape(-1)  # [n · C] cell-major
    energy = np.add.reduceat(cell_energy, starts) if h * w else np.zeros(0)
    model = entropy.EntropyModel.fit(symbols, 2**bits, backend)
    model_bytes = model.to_bytes()
    prefix += _varint(len(model_bytes)) + model_bytes
    segments = entropy.encode_segments(symbols, bounds, model)
    parts = _MapParts(bytes(prefix), segments, energy, bits, occupied.tolist())
    if backend in entropy.ESTIMATED:  # placeholders: the receiver takes the symbols from here
        parts.decoded.update(
            {
                j: symbols[a:z].astype(np.int64)
                for j, (a, z) in enumerate(zip(bounds[:-1], bounds[1:]))
                if z > a
            }
        )
    return parts


def _assemble(parts: _MapParts, keep: np.ndarray | None = None) -> MapStream:
    lengths = [len(s) if keep is None or keep[i] else 0 for i, s in enumerate(parts.segments)]
    header = parts.prefix + b"".join(_varint(n) for n in lengths)
    body = b"".join(s for s, n in zip(parts.segments, lengths) if n)
    return MapStream(
        header + body, len(header), lengths, parts.bits, list(parts.cells), parts.decoded
    )


def decode_map_stream(
    data: bytes,
    lost: np.ndarray,
    shape: tuple[int, int, int],
    cells_per_segment: int,
    backend: str,
    delivered: np.ndarray | None = None,
    sent: MapStream | None = None,
) -> np.ndarray:
    """Rebuild one ``[C, H, W]`` float32 map from its stream; ``lost [len(data)]`` bool bytes.

    A lost or unparsable header gives all zeros; a segment with a lost byte (or that fails to
    decode, or that the budget rule dropped) gives zeros in its rows. When ``delivered`` (an
    ``[H, W]`` bool array) is given, it is set True exactly on the cells whose values arrived
    (empty cells of a received header count as arrived: they are known to be 0), so that fusion
    can tell "missing" from "zero".

    ``sent``: the transmitted stream, for speed only. Where the received header and a received
    segment are byte for byte the sent ones, the segment's symbols are taken from
    ``sent.decoded`` (filled by the first such decoding) instead of running the entropy decoder
    again, and a stream received whole and exactly as sent returns the first such reception's
    map: decoding the same bytes with the same model gives the same symbols, so the output is
    identical (tested), and a map sent at K SNRs is entropy-decoded once per segment.
    """
    intact = sent is not None and not lost.any() and data == sent.data
    if not intact:
        return _decode(data, lost, shape, cells_per_segment, backend, delivered, sent)
    memo = sent.decoded.get("whole")  # (stream, map, delivered) of the last whole reception
    if memo is None or memo[0] != data:  # streams of one source coding differ by the budget
        arrived = np.zeros(shape[1:], dtype=bool)
        out = _decode(data, lost, shape, cells_per_segment, backend, arrived, sent)
        memo = sent.decoded["whole"] = (data, out, arrived)
    if delivered is not None:
        delivered[:] = memo[2]
    return memo[1].copy()


def decode_whole(
    data: bytes, shape: tuple[int, int, int], cells_per_segment: int, backend: str
) -> tuple[np.ndarray, np.ndarray]:
    """A stream received whole (no byte lost) → its ``[C, H, W]`` float32 map and ``[H, W]``
    delivered cells: ``decode_map_stream``'s values, with numpy and the entropy decoder only
    (what a worker process runs, ``DigitalCodec.source_executor``; not for estimated sizes)."""
    arrived = np.zeros(shape[1:], dtype=bool)
    lost = np.zeros(len(data), dtype=bool)
    return _decode(data, lost, shape, cells_per_segment, backend, arrived, None), arrived


def _decode(
    data: bytes,
    lost: np.ndarray,
    shape: tuple[int, int, int],
    cells_per_segment: int,
    backend: str,
    delivered: np.ndarray | None,
    sent: MapStream | None,
) -> np.ndarray:
    """``decode_map_stream``'s work: header, then segment by segment (memo: see there)."""
    c, h, w = shape
    out = np.zeros(shape, dtype=np.float32)
    if delivered is not None:
        delivered[:] = False
    segs = _segments(h * w, cells_per_segment)
    # The header is read from the bytes before the first lost one: a lost byte is never parsed
    # (a failed block's bits are arbitrary: a varint of them can exceed any index).
    head = data[: int(np.argmax(lost))] if lost.any() else data
    try:
        pos = 0
        bits, flags = struct.unpack_from("<BB", head, 0)
        pos = 2
        check_bits(bits)
        if flags & _FLAG_DENSE:
            occ = np.ones((h, w), dtype=bool)
        else:
            n, pos = _read_varint(head, pos)
            packed = head[pos : pos + n]
            pos += n
            if flags & _FLAG_OCC_DEFLATE:
                packed = zlib.decompress(packed)
            occ = (
                np.unpackbits(np.frombuffer(packed, np.uint8), count=h * w)
                .astype(bool)
                .reshape(h, w)
            )
        g = c if flags & _FLAG_PER_CHANNEL else 1
        offset = np.frombuffer(head, "<f4", g, pos).astype(np.float32)
        pos += 4 * g
        step = np.frombuffer(head, "<f4", g, pos).astype(np.float32)
        pos += 4 * g
        n, pos = _read_varint(head, pos)
        model = entropy.EntropyModel.from_bytes(head[pos : pos + n], 2**bits, backend)
        pos += n
        lengths = []
        for _ in segs:
            n, pos = _read_varint(head, pos)
            lengths.append(n)
        header_end = pos
        if header_end + sum(lengths) > len(data):
            return out
    except (ValueError, OverflowError, struct.error, zlib.error, IndexError):
        return out  # unparsable: bytes corrupted past the CRC, or the header cut short
    pos = header_end
    flat_out, flat_occ = out.reshape(c, h * w), occ.reshape(h * w)  # views of out / occ
    flat_delivered = delivered.reshape(h * w) if delivered is not None else None
    same_header = (
        sent is not None
        and sent.header_bytes == header_end
        and len(sent.data) == len(data)
        and data[:header_end] == sent.data[:header_end]
    )
    starts = np.asarray([a for a, _ in segs], dtype=np.int64)
    per_segment = np.add.reduceat(flat_occ.astype(np.int64), starts) if h * w else starts
    occupied_cells = np.flatnonzero(flat_occ)  # raster order: segment j's are a run of them
    first = np.concatenate([[0], np.cumsum(per_segment)])
    symbols, cells = [], []  # of the segments that arrived and decoded
    for j, ((a, z), n) in enumerate(zip(segs, lengths)):
        chunk, chunk_lost = data[pos : pos + n], lost[pos : pos + n]
        memo = same_header and chunk == sent.data[pos : pos + n]
        pos += n
        count = int(per_segment[j]) * c
        if count == 0 and flat_delivered is not None:
            flat_delivered[a:z] = True  # known empty
        if n == 0 or count == 0 or chunk_lost.any():
            continue
        sym = sent.decoded.get(j) if memo else None
        if sym is None:
            try:
                sym = entropy.decode(chunk, count, model)
            except ValueError:
                continue
            if memo:
                sent.decoded[j] = sym
        if int(sym.max()) >= 2**bits:
            continue
        symbols.append(sym)
        cells.append(occupied_cells[first[j] : first[j + 1]])
        if flat_delivered is not None:
            flat_delivered[a:z] = True
    if symbols:  # every arrived cell's C values at once (cell-major symbols → [C, cells])
        sym = np.concatenate(symbols).reshape(-1, c).T
        flat_out[:, np.concatenate(cells)] = (
            offset[:, None] + sym.astype(np.float32) * step[:, None]
        )
    return out
