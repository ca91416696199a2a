"""The digital chain's code blocks (``v2x.semcom.digital``), between a map's byte stream and
the LDPC/QAM layer: stream bytes → block bits and back (``[num_blocks, block_bits − 24]``
uint8/float32, MSB first), the channel uses of a block per MCS, the rows' blocks written into
and read from the symbol rows, the channel uses of blocks whose CRC failed, the exact decoder's
blocks per call (``decode_chunk``), and a block's EESM effective SNR for the fast decoder
(``effective_snr_db``). Shared by the codec and its HARQ rounds (``v2x.semcom.harq``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from v2x.common import memory_share, to_device_async
from v2x.semcom.digital_stream import MapStream
from v2x.semcom.fec import coded_bits_per_block
from v2x.semcom.mcs import MCS_TABLE, get_mcs

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


def decode_chunk(ldpc_decoder: str, device: torch.device | str = "cpu") -> int:
    """Code blocks per call of the exact LDPC decoder ``ldpc_decoder`` on ``device`` (every
    caller's bound, and the demapper's).

    The min-sum decoder on a GPU takes calls sized by the device's memory (a power of two,
    ``_GPU_BYTES_PER_BLOCK`` each, between ``_DECODE_CHUNK`` and ``_GPU_MAX_CHUNK``): its
    per-layer launches cost less per block the more blocks a call holds (on an H200 at MCS 5,
    8,192 blocks 529 Mbit/s, 262,144 blocks 1.5 Gbit/s; docs/benchmarks.md). A block's bits do
    not depend on the other blocks of its call, so the numbers do not depend on the chunk.
    Where several processes share the GPU (a sweep's device workers on one GPU,
    ``v2x.devices.memory_share``) each sizes its calls by its share of the memory: sized by the
    whole GPU, three workers' calls on an 80 GB H100 ran it out of memory."""
    chunk = _DECODE_CHUNK[ldpc_decoder]
    device = torch.device(device)
    if device.type != "cuda" or not ldpc_decoder.startswith("minsum"):
        return chunk
    total = torch.cuda.get_device_properties(device).total_memory // memory_share(device)
    fits = 1 << max(0, (total // _GPU_BYTES_PER_BLOCK).bit_length() - 1)  # a power of two
    return max(chunk, min(_GPU_MAX_CHUNK, fits))


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
    # made on the device: a list copied there would wait for the device's queued work
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=bits.device)
    weights = torch.ones(8, dtype=torch.uint8, device=bits.device) << shifts
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
    failed = [~ok.cpu().numpy() for ok, _ in blocks]  # numpy: no tensor op per row
    by_uses: dict[int, list[int]] = {}  # channel uses per block -> the rows with a failed block
    for i, (f, m) in enumerate(zip(failed, mcs.tolist())):
        if f.any():
            by_uses.setdefault(block_code_len(int(m), block_bits), []).append(i)
    # per MCS, the rows' outcomes padded into one host array and one non-blocking copy
    for s, rows in by_uses.items():
        host = np.zeros((len(rows), max(failed[i].size for i in rows)), dtype=bool)
        for j, i in enumerate(rows):
            host[j, : failed[i].size] = failed[i]
        at = to_device_async(torch.tensor(rows), out.device)
        host_t = torch.from_numpy(host)
        out[at, : host.shape[1] * s] = to_device_async(host_t, out.device).repeat_interleave(s, 1)
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
    MapStream.put_on_device([streams[i] for i in rows], device)
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


def mcs_groups(row_mcs: list[int], nblocks: list[int]) -> list[tuple[int, list[int]]]:
    """``[(MCS, its rows)]`` in increasing MCS: the rows sent at each MCS that carry a block
    (``row_mcs``: each row's MCS, read from the host once)."""
    groups = []
    for m in sorted(set(row_mcs)):
        rows = [i for i, mi in enumerate(row_mcs) if mi == m and nblocks[i] > 0]
        if rows:
            groups.append((m, rows))
    return groups


def rows_blocks(t: torch.Tensor, rows: list[int], nblocks: list[int], s: int) -> torch.Tensor:
    """The code blocks of ``rows`` of a ``[B, n]`` per-symbol tensor (symbols, noise
    variances), ``s`` symbols each, row after row: ``[Σ nblocks[rows], s]``, a new tensor."""
    return take_blocks(t, s, *row_blocks_index(rows, nblocks))


def write_rows_blocks(
    out: torch.Tensor, rows: list[int], nblocks: list[int], s: int, blocks: torch.Tensor
) -> None:
    """``rows_blocks``' inverse: ``blocks [Σ nblocks[rows], s]`` (row after row) written at the
    head of their rows of ``out [B, n]``, ``s`` symbols a block, in one scatter (distinct
    rows)."""
    view, at = _block_view(out, s, *row_blocks_index(rows, nblocks))
    view[at[0], at[1]] = blocks


def take_blocks(t: torch.Tensor, s: int, row: np.ndarray, block: np.ndarray) -> torch.Tensor:
    """``[J, s]``: block ``block[j]`` (symbols ``block[j]·s …``) of row ``row[j]`` of ``t [B, n]``
    for every ``j``, a new tensor, in one gather (not one slice per row)."""
    view, at = _block_view(t, s, row, block)
    return view[at[0], at[1]]


def row_blocks_index(rows: list[int], nblocks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(row, block)`` int64 of every block of ``rows`` in order: row ``i``'s blocks
    ``0 … nblocks[i] − 1``, row after row."""
    counts = np.asarray([nblocks[i] for i in rows], dtype=np.int64)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    return (np.repeat(np.asarray(rows, dtype=np.int64), counts),
            np.arange(int(counts.sum()), dtype=np.int64) - first)  # fmt: skip


def _block_view(
    t: torch.Tensor, s: int, row: np.ndarray, block: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """``t [B, n]`` viewed as ``[B, K, s]`` blocks (``K``: one past the highest ``block``,
    which ``n`` must hold) and ``[2, J]`` int64 (``row``, ``block``) on ``t``'s device, built
    on the host and copied without waiting."""
    k = int(block.max(initial=-1)) + 1
    at = to_device_async(torch.from_numpy(np.stack([row, block])), t.device)
    return t[:, : k * s].unflatten(1, (k, s)), at


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
