"""The ``digital`` codec: separate source and channel coding, the classical baseline.

Encoder, per feature map ``[C, H, W]`` (one batch row)::

    quantise (uniform, ``bits``) → entropy-code per segment (``rows_per_segment`` BEV rows,
    or ``cells_per_segment`` cells in raster order)
    → byte stream [header | segment 0 | segment 1 | …] → bits → code blocks of
    ``block_bits − 24`` bits (zero-padded) → CRC24A → 5G LDPC (MCS rate) → QAM (MCS order)

The header is all the side information: ``bits``, flags, the occupancy bitmap of non-empty cells
(deflate-compressed when smaller), per-channel (or per-map) float32 offset and step, the entropy
model (``ans``: the symbol histogram), and the byte length of every segment (LEB128 varints).
``C, H, W`` and the codec's configuration are known to both ends and not sent; the MCS index is
assumed signalled on a control channel (as 5G's DCI/SCI) and not charged.

Decoder: equalise (``v2x.channels.base.equalize``) → demap LLRs → LDPC decode → CRC. A block whose
CRC fails is **lost**: its bytes are unknown. A segment with a lost byte is dropped and its BEV
rows decode to exactly 0 (what fusion treats as missing); a lost header byte loses the whole map
(all zeros). Entropy coding per segment keeps every other segment decodable.

Modes:

* ``mcs: "auto"`` picks, per transmission, the highest MCS of 3GPP TS 38.214 table 1 whose BLER
  at ``link.snr_db`` is ≤ ``target_bler`` (thresholds from ``semcom/bler_table.json``) —
  link adaptation; an int fixes the MCS (no adaptation: shows the cliff effect). When the link
  carries the receiver's per-RE SINR report (``link.sinr_feedback``: OFDM channels, estimation
  error included), the BLER is the mean over code blocks at their EESM effective SINR instead
  (``v2x.semcom.link_adaptation``); the decoders then also use the channel's per-RE SINR
  (``ChannelState.sinr``) instead of ``1 / no_eff``.
* ``decoder: "exact"`` runs Sionna's LDPC BP decoder on every block; ``"fast"`` skips bit-level
  coding: each block fails with probability BLER(MCS, effective SNR) from the exact-decoder
  table, and passes its bits unchanged otherwise. The fast transmitter skips LDPC encoding too
  and sends i.i.d. uniform points of the MCS's QAM constellation (the distribution of scrambled
  coded bits; same symbol count, energy and mask), since the fast receiver only reads the
  channel state. Exact and fast transmissions are therefore not interchangeable. The effective SNR of a block is the EESM
  (exponential effective SINR mapping, Sionna SYS's β per MCS) of its symbols' ``1 / no_eff``
  (equal to the SNR on AWGN and block fading).
* ``ldpc_decoder`` picks the exact decoder's LDPC decoder: ``"sionna"`` (Sionna's BP, the
  reference, default) or ``"minsum"`` (``v2x.semcom.ldpc_minsum``: batched layered normalised
  offset min-sum with early termination, many times faster; at 20 iterations it needs 0.1–0.2
  dB less SNR than Sionna's 20 flooding BP iterations; docs/digital.md) or ``"minsum-fp16"``
  (the same decoder with float16 storage, opt-in). HARQ rounds use the same decoder.

Channel-use budget (``max_channel_uses``): when a map's coded payload would need more channel uses
than the budget, the quantiser's ``bits`` is lowered one at a time down to ``min_bits`` (a depth
whose information content alone exceeds the budget is skipped uncoded: docs/digital.md); if it
still does not fit, whole segments are dropped, keeping those with the largest L1 feature energy
per byte first (a dropped segment is sent with length 0 and decodes to zeros); if not even the
header fits, nothing is sent and the map decodes to zeros.

Cost per row: ``source_bits`` = stream bytes × 8 (entropy-coded payload + side information);
``coded_bits`` = blocks × LDPC codeword bits; ``channel_uses`` = coded_bits / Qm;
``packets = ceil(blocks / blocks_per_packet)``: a packet carries whole code blocks, as many as
fit in the payload of the project's packet (``v2x.channels.packets``: 1500-byte MTU, 40-byte
header → 1460 bytes → 11 blocks of 1000 information bits); ``raw_bits = raw_feature_bits``.
The packet layout (``Transmission.symbols_per_packet`` = blocks_per_packet × block symbols) is
what an erasure channel erases; after ``decode``, ``meta["corrupt"]`` marks the channel uses of
code blocks whose CRC failed and ``meta["delivered"]`` the cells that arrived
(``v2x.semcom.base.reception`` turns both into packets erased / failed CRC for the ledger).
"""

from __future__ import annotations

import hashlib
import math
import struct
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from v2x.channels.base import ChannelState, equalize
from v2x.channels.effective_sinr import receiver_sinr
from v2x.channels.link import LinkState
from v2x.channels.packets import HEADER_BYTES, MTU_BYTES, PacketFormat
from v2x.common import check_whole, tensor_identity, to_device_async
from v2x.semcom import entropy
from v2x.semcom.base import (
    CODECS,
    Codec,
    Cost,
    Transmission,
    check_features,
    raw_feature_bits,
)
from v2x.semcom.bler_table import BlerTable, load_bler_table
from v2x.semcom.fec import (
    CRC_BITS,
    block_code,
    check_block_bits,
    check_block_code,
    check_ldpc_decoder,
    coded_bits_per_block,
    device_string,
)
from v2x.semcom.link_adaptation import select_mcs_from_sinr
from v2x.semcom.mcs import MCS_TABLE, LinkAdaptation, get_mcs, shannon_gap_thresholds_db
from v2x.semcom.quantize import OccupiedLevels, check_bits, level_histograms, quantize_occupied

#: Code blocks per call of the exact LDPC decoder (bounds its message memory), per decoder; the
#: least on a GPU, where the min-sum decoder takes more (``decode_chunk``).
_DECODE_CHUNK = {"sionna": 2048, "minsum": 8192, "minsum-fp16": 8192}
#: Device memory per block in flight that sizes the min-sum decoder's calls on a GPU: ≈ 10× what
#: a block needs at MCS 0 (its LLRs, compressed check state, channel logits and demapper
#: temporaries, ≈ 0.2 MB): 65,536 blocks on a 141 GB H200; 8,192 (the floor) up to 16 GiB.
_GPU_BYTES_PER_BLOCK = 2 << 20
#: The most blocks per min-sum call on a GPU (the largest batch the decoder's benchmark times;
#: 65,536 → 262,144 blocks: +10 % at MCS 5 on an H200).
_GPU_MAX_CHUNK = 262144
_FLAG_PER_CHANNEL = 1
_FLAG_DENSE = 2  # every cell occupied: no occupancy map sent
_FLAG_OCC_DEFLATE = 4


def decode_chunk(ldpc_decoder: str, device: torch.device | str = "cpu") -> int:
    """Code blocks per call of the exact LDPC decoder ``ldpc_decoder`` on ``device`` (every
    caller's bound, and the demapper's).

    The min-sum decoder on a GPU takes calls sized by the device's memory (a power of two,
    ``_GPU_BYTES_PER_BLOCK`` each, between ``_DECODE_CHUNK`` and ``_GPU_MAX_CHUNK``): its
    per-layer launches cost less per block the more blocks a call holds (on an H200 at MCS 5,
    8,192 blocks 529 Mbit/s, 262,144 blocks 1.5 Gbit/s; docs/benchmarks.md). A block's bits do
    not depend on the other blocks of its call, so the numbers do not depend on the chunk."""
    chunk = _DECODE_CHUNK[ldpc_decoder]
    device = torch.device(device)
    if device.type != "cuda" or not ldpc_decoder.startswith("minsum"):
        return chunk
    total = torch.cuda.get_device_properties(device).total_memory
    fits = 1 << max(0, (total // _GPU_BYTES_PER_BLOCK).bit_length() - 1)  # a power of two
    return max(chunk, min(_GPU_MAX_CHUNK, fits))


# ---------------------------------------------------------------------------------------------
# Byte stream of one map
# ---------------------------------------------------------------------------------------------


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


def map_digest(
    feature_map: torch.Tensor, cache: dict, host: Callable[[], np.ndarray] | None = None
) -> bytes:
    """SHA-256 digest (its first 128 bits) of ``feature_map``'s values (its C-order bytes on the
    host), the key of the source-coding memo (SHA-256 rather than BLAKE2b: 2.4× faster where
    the CPU has SHA instructions, 1.5 against 0.6 GB/s on the development VM).

    Memoised in ``cache`` per tensor identity (``v2x.common.tensor_identity``: the same
    storage, alive, offset, shape, strides, dtype and version counter). A sweep sends
    the same map at ``K`` SNRs: the ``K − 1`` repeats skip the host copy and the hash.
    ``host()`` gives the host copy when one is needed (default: copied here).
    """
    ref, identity = tensor_identity(feature_map)
    key = ("map_digest", *identity)
    hit = cache.get(key)
    if hit is not None and not hit[0].expired():
        return hit[1]
    values = host() if host is not None else feature_map.detach().cpu().numpy()
    digest = hashlib.sha256(memoryview(np.ascontiguousarray(values)).cast("B")).digest()[:16]
    cache[key] = (ref, digest)
    return cache[key][1]


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
    return (
        q.levels.to(narrow).cpu().numpy(),
        q.occupied.cpu().numpy(),
        q.offset.cpu().numpy(),
        q.step.cpu().numpy(),
    )


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
    try:
        pos = 0
        bits, flags = struct.unpack_from("<BB", data, 0)
        pos = 2
        check_bits(bits)
        if flags & _FLAG_DENSE:
            occ = np.ones((h, w), dtype=bool)
        else:
            n, pos = _read_varint(data, pos)
            packed = data[pos : pos + n]
            pos += n
            if flags & _FLAG_OCC_DEFLATE:
                packed = zlib.decompress(packed)
            occ = (
                np.unpackbits(np.frombuffer(packed, np.uint8), count=h * w)
                .astype(bool)
                .reshape(h, w)
            )
        g = c if flags & _FLAG_PER_CHANNEL else 1
        offset = np.frombuffer(data, "<f4", g, pos).astype(np.float32)
        pos += 4 * g
        step = np.frombuffer(data, "<f4", g, pos).astype(np.float32)
        pos += 4 * g
        n, pos = _read_varint(data, pos)
        model = entropy.EntropyModel.from_bytes(data[pos : pos + n], 2**bits, backend)
        pos += n
        lengths = []
        for _ in segs:
            n, pos = _read_varint(data, pos)
            lengths.append(n)
        header_end = pos
        if lost[:header_end].any() or header_end + sum(lengths) > len(data):
            return out
    except (ValueError, struct.error, zlib.error, IndexError):
        return out
    if lost[:header_end].any():
        return out
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


# ---------------------------------------------------------------------------------------------
# EESM effective SNR for the fast decoder
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _eesm_beta() -> torch.Tensor:
    """``[29]`` EESM β per MCS of 38.214 table 1, from Sionna SYS's shipped calibration."""
    import json
    from importlib import resources

    text = resources.files("sionna.sys").joinpath("esm_params/eesm_beta_table.json").read_text()
    beta = json.loads(text)["index"]["1"]
    if len(beta) != len(MCS_TABLE):
        raise ValueError(f"sionna eesm_beta_table.json: {len(beta)} betas for {len(MCS_TABLE)} MCS")
    return torch.tensor(beta, dtype=torch.float64)


def effective_snr_db(no: torch.Tensor, mcs_index: int) -> torch.Tensor:
    """``no [N, S]`` noise variance per symbol (``inf`` = erased) → ``[N]`` EESM SNR in dB.

    Where every block's symbols share one noise variance (AWGN, block fading) the EESM is that
    SNR, and it is computed on one symbol per block: the same operations give the same bits
    there (``z − max z = 0``, ``exp 0 = 1``, a mean of ones 1, ``log 1 = 0``; tested), without
    five float64 passes over every symbol."""
    if no.dim() == 2 and no.shape[1] and bool((no == no[:, :1]).all()):
        return _effective_snr_db(no[:, :1], mcs_index)
    return _effective_snr_db(no, mcs_index)


def _effective_snr_db(no: torch.Tensor, mcs_index: int) -> torch.Tensor:
    """``effective_snr_db`` computed over every symbol."""
    snr = (1.0 / no.to(torch.float64)).nan_to_num(nan=0.0, posinf=1e12)
    beta = float(_eesm_beta()[mcs_index])
    # -beta * log(mean(exp(-snr/beta))), computed stably.
    z = -snr / beta
    m = z.amax(dim=1, keepdim=True)
    lme = m.squeeze(1) + torch.log(torch.exp(z - m).mean(dim=1))
    eff = (-beta * lme).clamp_min(1e-12)
    return 10.0 * torch.log10(eff)


# ---------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------


@CODECS.register("digital")
class DigitalCodec(Codec):
    """Quantise → entropy code → CRC → 5G LDPC → QAM, and back (see the module docstring).

    Args:
        bits: quantiser bits per value (1…16).
        per_channel: one (offset, step) per channel (True) or per map.
        rows_per_segment: BEV rows per independently decodable entropy-coded segment.
        cells_per_segment: if set, segments are runs of this many cells in raster order instead
            (for maps with few rows, e.g. the ``1 × k`` cell lists of the selective codec).
        entropy_coder: ``"ans"`` (constriction), ``"zlib"``, ``"lzma"`` or ``"bz2"`` (measured
            bytes), or ``"ans_estimate"`` (``"ans"``'s size estimated without coding: faster,
            its ``source_bits`` flagged as estimated; ``v2x.semcom.entropy``).
        mcs: ``"auto"`` (link adaptation from ``link.snr_db``) or a fixed 38.214 table-1 index.
        target_bler: block error rate link adaptation aims at.
        margin_db: SNR back-off of link adaptation.
        decoder: ``"exact"`` (Sionna LDPC BP) or ``"fast"`` (BLER-table block failures).
        num_iter: LDPC BP iterations (exact decoder; the table records its own).
        cn_update: Sionna check-node update of the exact decoder.
        ldpc_decoder: the exact decoder's LDPC decoder, ``"sionna"`` (BP, reference) or
            ``"minsum"`` (``v2x.semcom.ldpc_minsum``, layered normalised min-sum) or
            ``"minsum-fp16"`` (the same, float16 storage).
        block_bits: LDPC information bits per code block incl. the 24-bit CRC (≤ 8448; ≤ 3840
            where an MCS the codec may use takes base graph 2: ``fec.check_block_code``).
        max_channel_uses: channel-use budget per transmission, or ``None``.
        min_bits: lowest ``bits`` the budget rule may go down to.
        equalizer: ``"mmse"`` or ``"zf"`` (``v2x.channels.base.equalize``).
        bler_table: path of a BLER table JSON (``None``: the one shipped with the package).
        mtu_bytes, packet_header_bytes: packetisation of the source bits.
        harq_max_rounds: HARQ retransmission rounds of code blocks that failed their CRC (0: no
            retransmission); run by ``v2x.semcom.harq.transmit``, which the pipeline calls.
        harq_combining: ``"chase"`` (resend the same coded bits, add LLRs) or ``"ir"``
            (incremental redundancy: redundancy versions 0, 2, 3, 1 of 5G rate matching;
            ``decoder="exact"`` only).
        harq_feedback_delay_s: seconds each HARQ retransmission round waits for the receiver's
            NACK (added to the payload's latency, ``v2x.semcom.harq``; 0: instantaneous, the
            default; ~1-2 ms is 5G NR-like).
    """

    uses_channel = True
    sweep_arguments = frozenset({"max_channel_uses", "harq_max_rounds"})
    memoises_source_coding = True  # per map content and bits, in source_memo when set

    def __init__(
        self,
        bits: int = 8,
        per_channel: bool = True,
        rows_per_segment: int = 1,
        cells_per_segment: int | None = None,
        entropy_coder: str = "ans",
        mcs: str | int = "auto",
        target_bler: float = 0.1,
        margin_db: float = 0.0,
        decoder: str = "fast",
        num_iter: int = 20,
        cn_update: str = "boxplus-phi",
        ldpc_decoder: str = "sionna",
        block_bits: int = 1024,
        max_channel_uses: int | None = None,
        min_bits: int = 2,
        equalizer: str = "mmse",
        bler_table: str | None = None,
        mtu_bytes: int = MTU_BYTES,
        packet_header_bytes: int = HEADER_BYTES,
        harq_max_rounds: int = 0,
        harq_combining: str = "chase",
        harq_feedback_delay_s: float = 0.0,
    ) -> None:
        super().__init__()
        from v2x.semcom.harq import check_feedback_delay, check_harq

        check_harq(harq_max_rounds, harq_combining, decoder)
        self.harq_feedback_delay_s = check_feedback_delay(
            harq_feedback_delay_s, "digital codec 'harq_feedback_delay_s'"
        )
        check_bits(bits)
        check_bits(min_bits, "min_bits")
        check_block_bits(block_bits)
        check_ldpc_decoder(ldpc_decoder, num_iter, cn_update)
        entropy.check_backend(entropy_coder)
        rows_per_segment = check_whole("digital codec 'rows_per_segment'", rows_per_segment, 1)
        if cells_per_segment is not None:
            cells_per_segment = check_whole(
                "digital codec 'cells_per_segment' (or None)", cells_per_segment, 1
            )
        if decoder not in ("exact", "fast"):
            raise ValueError(f"digital codec 'decoder' must be 'exact' or 'fast', got {decoder!r}")
        if mcs != "auto":
            get_mcs(mcs)
        for m in range(len(MCS_TABLE)) if mcs == "auto" else (mcs,):
            check_block_code(m, block_bits)  # every MCS the codec may send has its code block
        if not 0.0 < target_bler < 1.0:
            raise ValueError(f"digital codec 'target_bler' must be in (0, 1), got {target_bler!r}")
        if max_channel_uses is not None:
            max_channel_uses = check_whole(
                "digital codec 'max_channel_uses' (or None)", max_channel_uses, 0
            )
        if equalizer not in ("mmse", "zf"):
            raise ValueError(f"digital codec 'equalizer' must be 'mmse' or 'zf', got {equalizer!r}")
        if not isinstance(per_channel, bool):  # ("no" would read as true)
            raise ValueError(f"digital codec 'per_channel' must be true or false, got {per_channel!r}")
        self.bits = bits
        self.per_channel = per_channel
        self.rows_per_segment = rows_per_segment
        self.cells_per_segment = cells_per_segment
        self.entropy_coder = entropy_coder
        #: ``entropy_coder="ans_estimate"``: segment sizes are estimates (``Codec.bits_estimated``)
        self.bits_estimated = entropy_coder in entropy.ESTIMATED
        self.mcs = mcs
        self.target_bler = target_bler
        self.margin_db = margin_db
        self.decoder = decoder
        self.num_iter = num_iter
        self.cn_update = cn_update
        self.ldpc_decoder = ldpc_decoder
        self.block_bits = block_bits
        self.max_channel_uses = max_channel_uses
        self.harq_max_rounds = int(harq_max_rounds)
        self.harq_combining = harq_combining
        self.min_bits = min(min_bits, bits)
        self.equalizer = equalizer
        self.mtu_bytes = mtu_bytes
        self.packet_header_bytes = packet_header_bytes
        self.table: BlerTable | None = load_bler_table(block_bits, bler_table)
        if decoder == "fast" and self.table is None:
            raise ValueError(
                f"digital codec: decoder='fast' needs a BLER table for block_bits={block_bits}; "
                "build one with python -m v2x.semcom.bler_table --block-bits "
                f"{block_bits} (or use decoder='exact')"
            )
        if decoder == "fast" and self.table is not None:
            built = (self.table.meta.get("num_iter"), self.table.meta.get("cn_update"))
            if built != (num_iter, cn_update):
                raise ValueError(
                    f"digital codec: decoder='fast' reproduces the BLER table's decoder "
                    f"(num_iter, cn_update) = {built}, but {(num_iter, cn_update)} was asked; "
                    "rebuild the table with python -m v2x.semcom.bler_table or use those values"
                )
        thresholds = (
            self.table.thresholds_db(target_bler)
            if self.table is not None
            else shannon_gap_thresholds_db()
        )
        self.link_adaptation = LinkAdaptation(thresholds, margin_db)

    # -- encoder ------------------------------------------------------------------------------

    def select_mcs(
        self, snr_db: torch.Tensor, batch: int, sinr_feedback: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[B]`` int64 MCS index per transmission.

        With ``sinr_feedback`` (``[B, N]`` linear per-RE SINR the receiver reported, see
        ``LinkState.sinr_feedback``) the MCS is the highest whose expected block error rate at
        the EESM effective SINR of those REs is ≤ ``target_bler``
        (``v2x.semcom.link_adaptation``); without it, the threshold rule on ``snr_db``.
        """
        if self.mcs != "auto":
            return torch.full((batch,), int(self.mcs), dtype=torch.int64)
        if sinr_feedback is not None:
            if sinr_feedback.dim() != 2 or sinr_feedback.shape[0] != batch:
                raise ValueError(
                    f"digital codec: link.sinr_feedback must be [{batch}, N], got "
                    f"{tuple(sinr_feedback.shape)}"
                )
            return select_mcs_from_sinr(
                sinr_feedback,
                self.block_bits,
                self.target_bler,
                table=self.table,
                thresholds_db=self.link_adaptation.thresholds_db,
                margin_db=self.margin_db,
            )
        snr = torch.as_tensor(snr_db, dtype=torch.float64).reshape(-1)
        if snr.numel() == 1 and batch != 1:
            snr = snr.expand(batch)
        if snr.numel() != batch:
            raise ValueError(
                f"digital codec: link.snr_db has {snr.numel()} entries for a batch of {batch}"
            )
        return self.link_adaptation(snr)

    @property
    def blocks_per_packet(self) -> int:
        """Code blocks per packet: as many whole blocks' payloads (``block_bits − 24`` bits) as
        fit in a packet's payload (``PacketFormat.payload_bits``), at least one. A packet
        carries whole code blocks, so a lost packet loses its own blocks and no others."""
        packet_bits = PacketFormat(self.mtu_bytes, self.packet_header_bytes).payload_bits
        return max(1, packet_bits // (self.block_bits - CRC_BITS))

    def block_code_for(self, mcs_index: int, device: str):
        """The cached ``BlockCode`` of one MCS with this codec's decoder settings."""
        return block_code(
            mcs_index, self.block_bits, self.num_iter, self.cn_update, device, self.ldpc_decoder
        )

    def _cells_per_segment(self, width: int) -> int:
        return self.cells_per_segment or self.rows_per_segment * max(width, 1)

    def _uses_for_bytes(self, num_bytes: int, mcs_index: int) -> int:
        blocks = math.ceil(num_bytes * 8 / (self.block_bits - CRC_BITS))
        return (
            blocks
            * coded_bits_per_block(get_mcs(mcs_index), self.block_bits)
            // get_mcs(mcs_index).qm
        )

    def _max_bytes(self, mcs_index: int) -> int | None:
        """Most stream bytes within ``max_channel_uses`` at ``mcs_index`` (``None``: no budget):
        ``_uses_for_bytes(n) <= max_channel_uses`` exactly when ``n <=`` this."""
        if self.max_channel_uses is None:
            return None
        uses_per_block = self._uses_for_bytes(1, mcs_index)
        return (self.max_channel_uses // uses_per_block) * (self.block_bits - CRC_BITS) // 8

    def _cannot_fit(
        self,
        feature_map: torch.Tensor,
        digest: bytes,
        bits: int,
        max_bytes: int | None,
        cache: dict,
    ) -> bool:
        """Whether ``feature_map [C, H, W]`` at ``bits`` is sure to exceed ``max_bytes``: its
        coded segments alone are at least ``entropy.min_coded_bytes`` of its level histogram
        (``ans`` backends only; the histograms of every depth above ``min_bits`` are computed at
        the first call and memoised per map in ``cache``)."""
        if max_bytes is None or self.entropy_coder not in entropy.BOUNDED:
            return False
        hist = cache.get((digest, "levels"))
        if hist is None:  # every depth the loop may skip, at once
            depths = range(self.bits, self.min_bits, -1)
            hist = level_histograms(feature_map[None], depths, self.per_channel)
            cache[(digest, "levels")] = hist
        return entropy.min_coded_bytes(hist[bits]) > max_bytes

    def _cell_energy(self, feature_map: torch.Tensor, digest: bytes, cache: dict) -> np.ndarray:
        """``[H·W]`` float64 L1 norm of each cell of ``feature_map [C, H, W]`` (float32 sums over
        the channels), memoised per map: what orders segments for the budget rule."""
        energy = cache.get((digest, "energy"))
        if energy is None:
            energy = (
                feature_map.abs()
                .sum(0, dtype=torch.float32)
                .reshape(-1)
                .cpu()
                .numpy()
                .astype(np.float64)
            )
            cache[(digest, "energy")] = energy
        return energy

    def _source_code(
        self, feature_map: torch.Tensor, digest: bytes, bits: int, cache: dict
    ) -> _MapParts:
        """Quantise and entropy-code ``feature_map [C, H, W]`` at ``bits`` (on its device; the
        cells' L1 energies, which order segments for the budget rule, memoised per map)."""
        q, energy = self._quantized(feature_map, digest, bits, cache)
        return _encode_map_parts(
            q, energy, self._cells_per_segment(feature_map.shape[2]), self.entropy_coder
        )

    def _quantized(
        self, feature_map: torch.Tensor, digest: bytes, bits: int, cache: dict
    ) -> tuple[OccupiedLevels, np.ndarray]:
        """The map's levels on its occupied cells (on its device) and its cells' energies: what
        the entropy coding of ``feature_map`` at ``bits`` starts from."""
        energy = self._cell_energy(feature_map, digest, cache)
        return quantize_occupied(feature_map, bits, self.per_channel), energy

    def _source_code_in_workers(
        self, features: torch.Tensor, mcs: torch.Tensor, cache: dict
    ) -> None:
        """Source-code at once, on ``source_executor``'s workers, the first depth each row's
        ``_fit_stream`` will code (the one its budget loop reaches first that the memo lacks),
        and put the parts in the memo, where ``_fit_stream`` then finds them. The quantisation
        runs here, on the maps' device; the workers run ``code_map`` on host arrays. Same bytes
        as coding each in this process; a broken pool leaves the work to ``_fit_stream``."""
        jobs: dict[tuple[bytes, int], Any] = {}
        for row in range(features.shape[0]):
            feature_map = features[row].detach()
            digest = map_digest(feature_map, cache)
            max_bytes = self._max_bytes(int(mcs[row]))
            for bits in range(self.bits, self.min_bits - 1, -1):
                key = (digest, bits)
                if key in cache or key in jobs:
                    break  # the loop starts from these parts
                if bits > self.min_bits and self._cannot_fit(
                    feature_map, digest, bits, max_bytes, cache
                ):
                    continue
                jobs[key] = self._submit_source_code(feature_map, digest, bits, cache)
                break
        self._collect(jobs.items(), cache.__setitem__, "coding")  # else _fit_stream codes them

    def _submit_source_code(
        self, feature_map: torch.Tensor, digest: bytes, bits: int, cache: dict
    ) -> Any:
        """``_source_code`` with its host part (``code_map``) submitted to ``source_executor``:
        a future of the ``_MapParts``."""
        q, energy = self._quantized(feature_map, digest, bits, cache)
        assert self.source_executor is not None
        return self.source_executor.submit(
            code_map, *_levels_on_host(q), bits, energy,
            self._cells_per_segment(feature_map.shape[2]), self.entropy_coder,
        )  # fmt: skip

    def _fit_stream(
        self, features: torch.Tensor, row: int, mcs_index: int, cache: dict | None = None
    ) -> MapStream:
        """Stream for one map within ``max_channel_uses`` (the documented budget rule).

        ``cache`` memoises the source coding (quantise + entropy code) per (map content, bits)
        within one ``encode`` call, or across calls in ``source_memo`` when the caller sets one:
        a sweep sends the same map at K SNRs, and only the channel coding depends on the SNR.
        """
        cache = {} if cache is None else cache
        feature_map = features[row].detach()
        digest = map_digest(feature_map, cache)
        budget = self.max_channel_uses
        max_bytes = self._max_bytes(mcs_index)
        parts = None
        for bits in range(self.bits, self.min_bits - 1, -1):
            key = (digest, bits)
            parts = cache.get(key)
            if (
                parts is None
                and bits > self.min_bits
                and self._cannot_fit(feature_map, digest, bits, max_bytes, cache)
            ):
                continue  # what the loop would conclude after coding the map at these bits
            if parts is None:
                parts = cache[key] = self._source_code(feature_map, digest, bits, cache)
            stream = cache.get((digest, bits, "whole"))  # the K - 1 repeats of this map
            if stream is None:
                stream = cache[(digest, bits, "whole")] = _assemble(parts)
            if budget is None or self._uses_for_bytes(len(stream.data), mcs_index) <= budget:
                return stream
        assert parts is not None
        # Drop segments: keep the highest energy per byte first while the stream fits.
        assert max_bytes is not None
        keep = np.zeros(len(parts.segments), dtype=bool)
        if _assemble(parts, keep).header_bytes > max_bytes:
            return MapStream(b"", 0, [0] * len(parts.segments), parts.bits, list(parts.cells))
        sizes = np.array([len(s) for s in parts.segments])
        total = _assemble(parts, keep).header_bytes  # grows by len(varint(n)) - 1 + n per segment
        order = np.argsort(-(parts.energy / np.maximum(sizes, 1)), kind="stable")
        for i in order:
            extra = len(_varint(int(sizes[i]))) - 1 + int(sizes[i])
            if sizes[i] > 0 and total + extra <= max_bytes:
                keep[i] = True
                total += extra
        stream = _assemble(parts, keep)
        assert len(stream.data) == total
        return stream

    def encode(self, features: torch.Tensor, link: LinkState) -> Transmission:
        """``features [B, C, H, W]`` → ``Transmission`` with ``symbols [B, n]`` complex64 + mask."""
        check_features(features)
        b = features.shape[0]
        device = features.device
        mcs = self.select_mcs(link.snr_db, b, link.sinr_feedback)
        cache: dict = self.source_memo if self.source_memo is not None else {}
        if self.source_executor is not None and b > 1:
            self._source_code_in_workers(features, mcs, cache)
        streams = [self._fit_stream(features, i, int(mcs[i]), cache) for i in range(b)]
        self._decode_ahead(streams, tuple(features.shape[1:]))
        payload_bits = self.block_bits - CRC_BITS
        nblocks = [math.ceil(len(s.data) * 8 / payload_bits) for s in streams]
        nsym = [nblocks[i] * block_code_len(int(mcs[i]), self.block_bits) for i in range(b)]
        n_max = max(nsym, default=0)
        symbols = torch.zeros(b, n_max, dtype=torch.complex64, device=device)
        dev = device_string(device)
        for m in sorted(set(mcs.tolist())):
            rows = [i for i in range(b) if int(mcs[i]) == m and nblocks[i] > 0]
            if not rows:
                continue
            code = self.block_code_for(m, dev)
            if self.decoder == "fast":  # the fast receiver never reads symbol values
                x = code.surrogate_symbols(sum(nblocks[i] for i in rows), device)
            else:
                x = code.encode(_rows_bits(streams, rows, nblocks, payload_bits, device))
            # row i's blocks, one after the other, at the start of its symbol row
            parts = x.reshape(-1).split([nblocks[i] * code.num_symbols for i in rows])
            write_row_heads(symbols, rows, parts)
        # the rows' counts in one host tensor and one non-blocking copy (a copy from pageable
        # memory would wait for the encoder's queued work)
        counts = to_device_async(
            torch.tensor(
                [
                    nsym,
                    [nblocks[i] * coded_bits_per_block(get_mcs(int(mcs[i])), self.block_bits)
                     for i in range(b)],
                    [len(s.data) * 8.0 for s in streams],
                    [math.ceil(n / self.blocks_per_packet) for n in nblocks],
                    [self.blocks_per_packet * block_code_len(int(m), self.block_bits) for m in mcs],
                    [get_mcs(int(m)).qm for m in mcs],
                ],
                dtype=torch.float64,
            ),  # [6, B]
            device,
        )  # fmt: skip
        mask = torch.arange(n_max, device=device)[None, :] < counts[0][:, None]
        cost = Cost(
            source_bits=counts[2],
            coded_bits=counts[1],
            channel_uses=counts[0],
            packets=counts[3],
            raw_bits=raw_feature_bits(features),
        )
        _, _, h, w = features.shape
        cps = self._cells_per_segment(w)
        sent = np.stack([s.sent_cells(h, w, cps) for s in streams]) if b else np.zeros((0, h, w))
        meta = {
            "sent": to_device_async(torch.from_numpy(sent[:, None].astype(bool)), device),
            "shape": tuple(features.shape[1:]),
            "mcs": mcs,
            "num_blocks": nblocks,
            "streams": streams,
            "bits": [s.bits for s in streams],
        }
        return Transmission(
            symbols=symbols,
            cost=cost,
            mask=mask,
            meta=meta,
            symbols_per_packet=counts[4],
            coded_bits_per_use=counts[5],
        )

    # -- decoder ------------------------------------------------------------------------------

    def decode_blocks(
        self, received: Transmission
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per batch row: ``(ok [num_blocks] bool on the host, bits [num_blocks, block_bits − 24]
        uint8 on the symbols' device)``.

        ``bits`` is ``None`` in fast mode (a block that passed carries the sent bits unchanged).
        """
        meta = received.meta
        nblocks: list[int] = meta["num_blocks"]
        mcs: torch.Tensor = meta["mcs"]
        b = len(nblocks)
        results: list[tuple[torch.Tensor, torch.Tensor | None]] = [
            (torch.zeros(0, dtype=torch.bool), None) for _ in range(b)
        ]
        y = received.symbols
        if b == 0 or y is None or y.shape[1] == 0:
            return results
        device = y.device
        x_hat, no_eff = self.equalized(y, received.state)
        dev = device_string(device)
        for m in sorted(set(mcs.tolist())):
            rows = [i for i in range(b) if int(mcs[i]) == m and nblocks[i] > 0]
            if not rows:
                continue
            s = block_code_len(m, self.block_bits)
            xs = torch.cat([x_hat[i, : nblocks[i] * s].reshape(nblocks[i], s) for i in rows])
            ns = torch.cat([no_eff[i, : nblocks[i] * s].reshape(nblocks[i], s) for i in rows])
            if self.decoder == "exact":
                code = self.block_code_for(m, dev)
                chunk = decode_chunk(self.ldpc_decoder, device)
                parts = [
                    code.decode(xs[j : j + chunk], ns[j : j + chunk])
                    for j in range(0, xs.shape[0], chunk)
                ]
                u = torch.cat([p[0] for p in parts])  # stays on the device: packed there
                ok = torch.cat([p[1] for p in parts])
            else:
                assert self.table is not None
                snr_eff = effective_snr_db(ns, m)
                p_fail = self.table.bler(torch.full(snr_eff.shape, m, dtype=torch.int64), snr_eff)
                ok = torch.rand(p_fail.shape, dtype=torch.float64) >= p_fail
                u = None
            ok = ok.cpu()
            start = 0
            for i in rows:
                stop = start + nblocks[i]
                results[i] = (ok[start:stop], None if u is None else u[start:stop])
                start = stop
        return results

    def equalized(
        self, y: torch.Tensor, state: ChannelState | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``y [B, n]`` → equalised symbols and their effective noise variance, both ``[B, n]``
        (the channel's per-RE SINR where it reports one; ``state=None``: noiseless)."""
        if state is None:  # never went through a channel: noiseless
            state = ChannelState(no=torch.zeros(y.shape[0], device=y.device))
        x_hat, no_eff = equalize(y, state, self.equalizer)
        sinr = receiver_sinr(state)
        if sinr is not None:  # frequency-selective: the SINR with the estimation error
            no_eff = torch.where(sinr > 0, 1.0 / sinr.clamp_min(1e-12), float("inf"))
        return x_hat, no_eff

    def decode(self, received: Transmission, link: LinkState) -> torch.Tensor:
        """Received ``Transmission`` → ``[B, C, H, W]`` float32 (lost rows/maps are 0)."""
        return self.reconstruct(received, self.decode_blocks(received))

    def reconstruct(
        self, received: Transmission, blocks: list[tuple[torch.Tensor, torch.Tensor | None]]
    ) -> torch.Tensor:
        """Feature maps ``[B, C, H, W]`` from ``decode_blocks``' per-row block outcomes."""
        meta = received.meta
        shape = meta["shape"]
        streams: list[MapStream] = meta["streams"]
        device = received.symbols.device if received.symbols is not None else torch.device("cpu")
        if not streams:
            meta["delivered"] = torch.zeros(0, 1, *shape[1:], dtype=torch.bool, device=device)
            return torch.zeros(0, *shape, dtype=torch.float32, device=device)
        payload_bits = self.block_bits - CRC_BITS
        maps = []
        delivered = np.zeros((len(streams), *shape[1:]), dtype=bool)
        received_bytes = received_streams(streams, blocks)
        rows: list[tuple[np.ndarray, bytes, bool] | None] = []  # (lost, data, whole); None: empty
        for i, (st, (ok, bits)) in enumerate(zip(streams, blocks)):
            if len(st.data) == 0 or ok.numel() == 0:
                rows.append(None)
                continue
            lost = lost_bytes(ok.numpy(), len(st.data), payload_bits)
            # fast mode (no bits): the bits of a block that passed are the sent ones
            data = st.data if bits is None else received_bytes[i]
            rows.append((lost, data, not lost.any() and data == st.data))
        if self.source_executor is not None and self.entropy_coder not in entropy.ESTIMATED:
            whole_streams = [st for st, row in zip(streams, rows) if row is not None and row[2]]
            self._decode_whole_in_workers(whole_streams, shape)
        for i, (st, row) in enumerate(zip(streams, rows)):
            if row is None:
                maps.append(np.zeros(shape, dtype=np.float32))
                continue
            lost, data, whole = row
            memo = st.decoded.get(("whole", device)) if whole else None
            if memo is not None and memo[0] == data:  # this map received whole before
                delivered[i] = memo[2]
                maps.append(memo[1])
                continue
            out = decode_map_stream(
                data,
                lost,
                shape,
                self._cells_per_segment(shape[2]),
                self.entropy_coder,
                delivered[i],
                sent=st,
            )
            if whole:  # kept on the device: the K - 1 repeats are not copied there again
                host = st.decoded["whole"]  # decode_map_stream's memo of this reception
                memo = (data, torch.from_numpy(host[1]).to(device), host[2])  # no copy on a CPU
                st.decoded[("whole", device)] = memo
                maps.append(memo[1])
            else:
                maps.append(out)
        # Which cells arrived ([B, 1, H, W] bool): read by the pipeline to mask the rest.
        meta["delivered"] = torch.from_numpy(delivered[:, None]).to(device)
        meta["corrupt"] = self._corrupt_symbols(received, blocks)
        return torch.stack([torch.as_tensor(m).to(device) for m in maps])

    def _decode_whole_in_workers(
        self, streams: list[MapStream], shape: tuple[int, int, int]
    ) -> None:
        """Entropy-decode at once, on ``source_executor``'s workers (``decode_whole``), each of
        ``streams`` (received whole: every byte as sent) whose map the receiver's memo lacks,
        and memoise each as ``decode_map_stream`` does for a whole reception, where
        ``reconstruct`` then finds it. Not for estimated sizes (their symbols live in this
        process); a broken pool leaves the work to ``decode_map_stream``."""
        cps = self._cells_per_segment(shape[2])
        jobs: dict[int, tuple[MapStream, Any]] = {}
        for st in streams:
            memo = st.decoded.get("whole")
            if id(st.decoded) not in jobs and (memo is None or memo[0] != st.data):
                ahead = st.decoded.get("ahead")  # started by _decode_ahead on these bytes
                same = ahead is not None and ahead[0] is st.data
                job = ahead[1] if same else self._submit_whole(st, shape, cps)
                jobs[id(st.decoded)] = (st, job)

        def memoise(st: MapStream, decoded: tuple[np.ndarray, np.ndarray]) -> None:
            st.decoded["whole"] = (st.data, *decoded)
            if st.decoded.get("ahead", (None,))[0] is st.data:
                del st.decoded["ahead"]

        self._collect(jobs.values(), memoise, "decoding")

    def _decode_ahead(self, streams: list[MapStream], shape: tuple[int, int, int]) -> None:
        """Start ``decode_whole`` of each stream that the receiver's memo lacks on
        ``source_executor``'s workers now, as the transmitter forms it, while the device encodes,
        sends and LDPC-decodes: when the stream is then received whole (every byte as sent),
        ``_decode_whole_in_workers`` takes that decoding of the same bytes instead of starting
        one and waiting for it. A stream never received whole wastes its worker's time, not
        this process's. Only with workers and real entropy coding (not estimated sizes)."""
        if self.source_executor is None or self.entropy_coder in entropy.ESTIMATED:
            return
        cps = self._cells_per_segment(shape[2])
        for st in streams:
            memo, ahead = st.decoded.get("whole"), st.decoded.get("ahead")
            if not st.data or (memo is not None and memo[0] == st.data):
                continue
            if ahead is None or ahead[0] is not st.data:
                st.decoded["ahead"] = (st.data, self._submit_whole(st, shape, cps))

    def _submit_whole(
        self, st: MapStream, shape: tuple[int, int, int], cells_per_segment: int
    ) -> Any:
        """A future of ``decode_whole`` of ``st``'s bytes on ``source_executor``'s workers."""
        assert self.source_executor is not None
        return self.source_executor.submit(
            decode_whole, st.data, shape, cells_per_segment, self.entropy_coder
        )

    def _collect(self, jobs: Any, store: Callable[[Any, Any], None], doing: str) -> None:
        """``store(key, future.result())`` for each ``(key, future)`` of ``jobs`` run on
        ``source_executor``; if a worker died (``BrokenProcessPool``), warn once and drop the
        executor: what is not stored is then done in this process."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            for key, job in jobs:
                store(key, job.result())
        except BrokenProcessPool as err:
            warnings.warn(
                f"digital codec: the source-coding workers stopped ({err}); {doing} in this "
                "process",
                RuntimeWarning,
                stacklevel=3,
            )
            self.source_executor = None

    def _corrupt_symbols(
        self, received: Transmission, blocks: list[tuple[torch.Tensor, torch.Tensor | None]]
    ) -> torch.Tensor:
        """``[B, n]`` bool: the channel uses of code blocks whose CRC failed (``v2x.semcom.base.reception``
        turns them into failed packets)."""
        n = received.symbols.shape[1] if received.symbols is not None else 0
        device = received.symbols.device if received.symbols is not None else "cpu"
        return failed_block_symbols(blocks, received.meta["mcs"], self.block_bits, n, device)


def received_streams(
    streams: list[MapStream],
    blocks: list[tuple[torch.Tensor, torch.Tensor | None]],
    on_device: bool | None = None,
) -> dict[int, bytes]:
    """Each row's received stream: its decoded blocks' bits (``[num_blocks, payload_bits]``
    uint8, MSB first) cut to the sent stream's length and packed into bytes. ``on_device``
    (default: when the bits are on a GPU) packs them where they lie, all rows in one copy to
    the host (8× fewer bytes than the bits); else numpy packs each row on the host. Rows
    without bits (fast mode, nothing sent) are absent."""
    rows = [
        (i, bits.reshape(-1)[: len(st.data) * 8])
        for i, (st, (ok, bits)) in enumerate(zip(streams, blocks))
        if bits is not None and len(st.data) and ok.numel()
    ]
    if on_device is None:
        on_device = bool(rows) and rows[0][1].device.type != "cpu"
    if not on_device:  # numpy packs fastest on the host
        return {i: np.packbits(r.numpy().astype(np.uint8, copy=False)).tobytes() for i, r in rows}
    data = pack_bits(torch.cat([r for _, r in rows])).cpu().numpy().tobytes()
    out, pos = {}, 0
    for i, r in rows:
        out[i] = data[pos : pos + r.numel() // 8]
        pos += r.numel() // 8
    return out


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """``bits [8·n]`` 0/1 (any integer or float dtype) → ``[n]`` uint8 bytes, MSB first
    (``numpy.packbits``), on ``bits``' device."""
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=bits.device)
    return (bits.to(torch.uint8).reshape(-1, 8) * weights).sum(1, dtype=torch.uint8)


def failed_block_symbols(
    blocks: list[tuple[torch.Tensor, torch.Tensor | None]],
    mcs: torch.Tensor,
    block_bits: int,
    n: int,
    device: torch.device | str,
) -> torch.Tensor:
    """``[B, n]`` bool on ``device``: the channel uses of each row's code blocks whose CRC failed
    (``blocks``: ``decode_blocks``' per-row ``(ok, bits)``; a row's blocks lie one after the
    other from its first channel use, ``block_code_len`` uses each at its MCS). Built where it
    is used: only the rows' block outcomes travel, not the ``B × n`` mask."""
    out = torch.zeros(len(blocks), n, dtype=torch.bool, device=device)
    failed = [~ok.cpu() for ok, _ in blocks]
    by_uses: dict[int, list[int]] = {}  # channel uses per block -> the rows with a failed block
    for i, f in enumerate(failed):
        if bool(f.any()):
            by_uses.setdefault(block_code_len(int(mcs[i]), block_bits), []).append(i)
    # per MCS, the rows' outcomes padded into one host tensor and one non-blocking copy
    for s, rows in by_uses.items():
        host = torch.zeros(len(rows), max(failed[i].numel() for i in rows), dtype=torch.bool)
        for j, i in enumerate(rows):
            host[j, : failed[i].numel()] = failed[i]
        at = to_device_async(torch.tensor(rows), out.device)
        out[at, : host.shape[1] * s] = to_device_async(host, out.device).repeat_interleave(s, 1)
    return out


def lost_bytes(ok: np.ndarray, num_bytes: int, payload_bits: int) -> np.ndarray:
    """``[num_bytes]`` bool: the stream's bytes with a bit in a code block that failed.

    ``ok [blocks]`` bool per code block of ``payload_bits`` stream bits each (MSB first); byte
    ``j`` holds bits ``8j … 8j + 7``, which lie in blocks ``8j // P`` and ``(8j + 7) // P``.
    """
    failed = ~np.asarray(ok, dtype=bool)
    if payload_bits % 8 == 0:  # blocks of whole bytes (1000 bits with block_bits 1024)
        return np.repeat(failed, payload_bits // 8)[:num_bytes]
    first = np.arange(num_bytes, dtype=np.int64) * 8
    return failed[first // payload_bits] | failed[(first + 7) // payload_bits]


def block_code_len(mcs_index: int, block_bits: int) -> int:
    """Complex symbols per code block for an MCS."""
    m = get_mcs(mcs_index)
    return coded_bits_per_block(m, block_bits) // m.qm


def _rows_bits(
    streams: list[MapStream], rows: list[int], nblocks: list[int], payload_bits: int, device
) -> torch.Tensor:
    """``torch.cat`` of ``_stream_bits`` of the ``rows``' streams: ``[Σ nblocks, payload_bits]``
    float32 on ``device``. With whole bytes per block, the rows' bytes — each stream's copied to
    the device once for all its SNRs and HARQ rounds (``MapStream.on_device``) — are joined there,
    zero-padded to their blocks, and unpacked in one pass."""
    if payload_bits % 8:
        return torch.cat([_stream_bits(streams[i], nblocks[i], payload_bits, device) for i in rows])
    per_block = payload_bits // 8
    parts = [(streams[i].on_device(device), nblocks[i] * per_block) for i in rows]
    zeros = torch.zeros(max((n - raw.numel() for raw, n in parts), default=0),
                        dtype=torch.uint8, device=device)  # fmt: skip
    pieces = [piece for raw, n in parts for piece in (raw, zeros[: n - raw.numel()])]
    raw = torch.cat(pieces) if pieces else zeros
    return _unpacked_bits(raw, sum(nblocks[i] for i in rows), payload_bits)


def _stream_bits(
    stream: MapStream, nblocks: int, payload_bits: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A stream's bytes → ``[nblocks, payload_bits]`` float32 bits (MSB first, zero-padded) on
    ``device`` (unpacked there: only the bytes travel, once per device, ``MapStream.on_device``)."""
    return _unpacked_bits(stream.on_device(device), nblocks, payload_bits)


def write_row_heads(out: torch.Tensor, rows: list[int], parts: Sequence[torch.Tensor]) -> None:
    """``out[rows[k], : len(parts[k])] = parts[k]`` for every ``k`` (1-D parts of ragged lengths,
    distinct rows), in one padded copy and one non-blocking copy of the row indices."""
    padded = torch.nn.utils.rnn.pad_sequence(list(parts), batch_first=True)
    out[to_device_async(torch.tensor(rows), out.device), : padded.shape[1]] = padded


def _unpacked_bits(raw: torch.Tensor, nblocks: int, payload_bits: int) -> torch.Tensor:
    """``raw [n]`` uint8 → ``[nblocks, payload_bits]`` float32 bits (MSB first), zero after the
    ``8·n`` bits, on ``raw``'s device."""
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=raw.device)
    bits = ((raw[:, None] >> shifts) & 1).reshape(-1)
    padded = torch.zeros(nblocks * payload_bits, dtype=torch.float32, device=raw.device)
    padded[: bits.numel()] = bits
    return padded.reshape(nblocks, payload_bits)


@CODECS.register("digital_fixed")
class FixedMCSDigitalCodec(DigitalCodec):
    """The digital chain without link adaptation: one MCS (default 14, 16-QAM, ≈ 7 dB AWGN
    threshold) whatever the SNR, so decoding is near perfect above the threshold and collapses
    below it (the cliff effect). A registry name of its own so that a sweep can show it beside
    ``digital`` (link adaptation) in one grid; every other argument is ``DigitalCodec``'s."""

    def __init__(self, mcs: int = 14, **kwargs) -> None:
        if mcs == "auto":
            raise ValueError("digital_fixed: 'mcs' must be a fixed index 0..28, not 'auto'")
        super().__init__(mcs=mcs, **kwargs)
