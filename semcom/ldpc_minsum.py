"""Batched 5G NR LDPC decoder: layered normalised offset min-sum in torch (CPU, CUDA) and Triton.

A drop-in for Sionna's ``LDPC5GDecoder`` with ``hard_out=True, return_infobits=True``: same
input, same output, same sign convention, much faster. The code is the one of a Sionna
``LDPC5GEncoder`` — its lifted parity-check matrix (``encoder.pcm``), lifting size ``Z``, filler
bits, the 2Z punctured systematic bits, the circular-buffer rate matching and the 38.212 output
interleaver — so both base graphs and every lifting size Sionna supports are supported.

Input ``llr_ch [..., n]``: channel logits ``log p(c=1)/p(c=0)`` of the ``n`` rate-matched coded
bits, exactly what ``LDPC5GDecoder`` takes (positive favours bit 1, as Sionna's demapper
output). Output ``[..., k]`` float32 hard information bits: 1 where the a-posteriori logit is
``≥ 0`` (Sionna's ``x_hat <= 0`` rule on its internal LLRs). ``decode`` also reports per block
whether the hard decision is a codeword (zero syndrome) and after how many iterations.

Algorithm (row-layered min-sum, the usual hardware 5G decoder):

* the rate-matched LLRs are placed into the mother codeword: 0 for the 2Z punctured systematic
  bits and the parity bits beyond the transmitted ones, a large known-zero value for the filler
  bits, undoing the output interleaver on the way; LLRs are clipped to ``±llr_max`` (Sionna's 20);
* only the rows of the base graph whose extension parity bit is (partly) transmitted are
  decoded: a row whose degree-1 parity bit is punctured only ever sends zero messages, so
  dropping it is exact (Sionna's ``prune_pcm``);
* one iteration visits the rows of the base graph in order; a row block (``Z`` checks)
  computes ``t = L − R_old`` on its edges, ``R_new = α · sign · max(|min| − β, 0)`` with the
  extrinsic sign and the smallest other ``|t|`` (``min1``, or ``min2`` on the edge holding
  ``min1``), and ``L = t + R_new``. Consecutive row blocks with no column in common are updated
  together, which is the same computation as one after the other, in fewer steps;
* after every iteration each block's hard decision is checked against every parity check; a
  block whose syndrome is zero keeps that decision and stops (early termination per block), and
  stopped blocks leave the batch once they are 1/16 of it (1/4 with the Triton kernel, where
  the copy costs more relative to an iteration), so later iterations only run on blocks still
  decoding. A block's output never depends on the other blocks of the call. With Triton the
  check's verdict reaches the host in a non-blocking copy and the next iteration's row kernels
  are queued before the host reads it: the device runs them while the host books the finished
  blocks (whose bits come from the check's packed hard decisions; the extra iteration they run
  is never read).

``harq_mode=True`` decodes the whole mother code, and ``decode(llr, rv=[...])`` adds several
received redundancy versions in the circular buffer first, as Sionna's HARQ-mode decoder.

``α = 0.85, β = 0.25`` (normalised offset min-sum) were chosen on the chain's codes (1024-bit
blocks, MCS 5/14/20/27 on AWGN): at 20 iterations the block error rate is then at or below
that of Sionna's 20 flooding iterations of exact BP (docs/digital.md).

Messages are stored batch-last (``[edges, blocks]``) so every gather and scatter moves
contiguous rows of ``B`` values. On CUDA with Triton (``backend="auto"``)
``launch="persistent"`` (``semcom/ldpc_persistent_triton.py``) decodes the whole batch in ONE
kernel launch: each program owns a few block slots, runs every iteration, the syndrome check and
early termination itself, and refills a finished block's slot with the next block, so the
per-iteration launches, syndrome kernels, host synchronisations and batch compactions are gone
and the small slot state can stay in L2; ``launch="per-layer"`` runs one
fused kernel per row group and iteration (``semcom/ldpc_minsum_triton.py``; each thread walks
one block's check edge by edge) that keeps, by default, a compressed state per check
(``α·s·min1``, ``α·s·min2``, arg-min edge, edge signs) from which every old message is rebuilt
exactly (8 B per edge for ``L`` plus 24 B per check: 1.4–4.0 Gbit/s at the 10 % BLER point on
an H200, 1.2–1.55× the per-edge form) or, with ``check_state="edges"``, one float32 message per
edge (16 B per edge and iteration), and a per-iteration syndrome check on hard bits packed 32
blocks to a word. ``precision="fp16"`` (opt-in) stores LLRs and messages
as float16 (float32 arithmetic), halving the traffic again. The torch path is the reference
and runs everywhere, with the same arithmetic (bit-identical results in Triton's interpreter,
both precisions and both launches; ``gpu`` tests check it on CUDA). Memory ≈
``4 · (n_used + E + 3 E_step) · B`` bytes for ``E`` decoded Tanner-graph edges (3,600–11,300 for
the chain's 1024-bit blocks above MCS 2) and ``E_step`` those of the largest step: ≈ 50 kB per
block (persistent: ≈ 9 B per VN and block, plus ≈ 4 · (V + E) B per slot). The default
``launch="auto"`` takes the persistent kernel for calls of up to ``AUTO_PERSISTENT_MAX_BLOCKS``
blocks (on an H200 1.4–6.4× the per-layer kernel there: its launches cost more than its
kernels) and the per-layer one above (0.45–0.67× persistent at 262,144 blocks).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from v2x.common import on_device_of, to_device_async

#: Internal LLR of a filler bit (known 0): larger than any message, so never the minimum.
_FILLER_LLR = 1.0e4
#: |t| given to the padding edges of a row group: never the minimum, sign +.
_PAD_LLR = 3.0e4
#: Blocks are dropped from the batch once at least 1/_COMPACT[path] of the active ones
#: converged. The torch path moves ~14 passes per edge and iteration, so the copy is cheap
#: (1/16); with the Triton per-edge kernel it costs about half an iteration (1/4: on an H200 at
#: the 10 % BLER point 4–10 % faster than 1/16 for MCS 5, 14, 20 and 27).
_COMPACT = {"torch": 16, "triton": 4}
#: (blocks per program, warps) of the per-edge Triton kernel for checks of degree ≤ 16 and
#: > 16: one block per thread, the fastest of those timed on an H200 (docs/benchmarks.md).
_EDGE_LAUNCH = {False: (128, 4), True: (256, 8)}
#: (blocks per program, warps) of the compressed-state kernel for checks of degree ≤ 16 and
#: > 16, timed on an H200 at 262,144 blocks with the batch aligned (``_BATCH_ALIGN``;
#: docs/results/h200_2026-12-02j/ldpc_new.txt, no early stop): two blocks per thread, whose
#: loads and stores are then vectorised, on base graph 2's rows (MCS 0: float32 609 → 657
#: Mbit/s, float16 721 → 909); one per thread where degree-19 rows would hold twice the
#: registers (MCS 27 with 256 on 4 warps: float32 3,453 → 3,280, float16 3,991 → 3,118).
_COMPRESSED_LAUNCH = {False: (256, 4), True: (128, 4)}
#: The Triton path's batch is ``[rows, width]`` with ``width`` the live blocks rounded up to a
#: multiple of this (the padding columns are decoded and never read): every row then starts
#: 16-element aligned and the kernels' ``b < width`` mask is constant over 16 blocks, which
#: lets Triton compile one kernel per shape (no re-specialisation as the batch shrinks) whose
#: loads and stores can be vectorised over a thread's consecutive blocks.
_BATCH_ALIGN = 16
BACKENDS = ("auto", "torch", "triton")
#: Storage of the LLRs and check-to-variable messages (arithmetic is float32 in both).
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
#: How the Triton path stores check-to-variable messages between iterations.
CHECK_STATES = ("auto", "compressed", "edges")
#: How the Triton path launches its kernels (see ``LDPC5GMinSumDecoder``).
LAUNCHES = ("auto", "persistent", "per-layer")
#: ``launch="auto"``: calls of at most this many blocks run the persistent kernel, larger ones
#: per layer (H200: persistent 1.4–6.4× faster at 1,024–8,192 blocks, 0.45–0.67× at 262,144;
#: docs/benchmarks.md, "LDPC decoder").
AUTO_PERSISTENT_MAX_BLOCKS = 8192
#: Bit of the packed check state where the arg-min edge index starts (edge sign bits below).
_ARG_SHIFT = 24


@dataclass
class MinSumResult:
    """What ``LDPC5GMinSumDecoder.decode`` returns (leading shape ``[...]`` of the input).

    Attributes:
        bits: ``[..., k]`` float32 hard information bits (0/1).
        converged: ``[...]`` bool, True where the hard decision is a codeword (zero syndrome).
        iterations: ``[...]`` int32 iterations run for each block (``≤ num_iter``).
        codeword: ``[..., n]`` float32 hard rate-matched coded bits (Sionna's
            ``return_infobits=False`` output), or ``None`` unless asked for.
    """

    bits: torch.Tensor
    converged: torch.Tensor
    iterations: torch.Tensor
    codeword: torch.Tensor | None = None


@dataclass
class _Group:
    """One row group on one device: ``shape = (rows, degree, Z)`` edges, row-major."""

    idx: torch.Tensor  # [rows·degree·Z] int64 VN of every edge; padding → dummy rows [V, V+Z)
    pad: torch.Tensor | None  # flat edge rows of the padding edges (None: no padding)
    shape: tuple[int, int, int]
    idx32: torch.Tensor  # int32 VN of every edge, −1 for padding (Triton kernel)


@dataclass
class _Tables:
    """Index tables of one decoder on one device (see ``LDPC5GMinSumDecoder._build``)."""

    place: torch.Tensor  # [V] index into [llr columns | 0 | filler] of every decoded VN
    groups: list[_Group]
    syn_idx: torch.Tensor  # [M·Dmax] VN of every (check, slot); V = the always-0 row
    syn_shape: tuple[int, int]  # (M, Dmax)
    cw_idx: torch.Tensor  # [n] VN of every rate-matched coded bit (interleaved order)
    place_buf: torch.Tensor  # [V] index into [circular buffer | 0 | filler] of every VN
    out_int: torch.Tensor  # [n] circular-buffer index (before the RV's start) of input column
    one: torch.Tensor  # 0-dim 1.0 (copysign's magnitude)
    eidx32: torch.Tensor  # every group's idx32, concatenated (persistent kernel)
    ginfo: torch.Tensor  # [groups, 4] int32: first edge in eidx32, rows·Z, degree, first check
    recv_row: torch.Tensor  # [n] int32 VN row of every input column (``place`` inverted)
    const_rows: torch.Tensor  # [c] int64 rows of the LLR buffer no input column feeds
    const_vals: torch.Tensor  # [c] their values (0, the filler, padding), storage dtype


class LDPC5GMinSumDecoder:
    """Layered normalised offset min-sum decoder of a Sionna ``LDPC5GEncoder``'s code.

    Args:
        encoder: ``sionna.phy.fec.ldpc.LDPC5GEncoder`` (gives ``k``, ``n``, ``Z``, the PCM, the
            filler bits and the output interleaver).
        num_iter: maximum layered iterations per block.
        alpha: normalisation factor of the check-node messages (plain min-sum: 1).
        beta: offset subtracted from the check-node magnitudes (none: 0).
        early_stop: stop a block once its hard decision has a zero syndrome.
        llr_max: channel LLRs are clipped to ``±llr_max`` (Sionna's default 20).
        backend: ``"torch"``, ``"triton"`` (CUDA) or ``"auto"`` (Triton on CUDA when installed).
        harq_mode: decode the whole mother code (no row is pruned) so that ``decode`` can take
            several redundancy versions (``rv``) of a block, as Sionna's ``harq_mode``.
        precision: storage of the LLRs and messages between row steps: ``"fp32"`` (default,
            the reference) or ``"fp16"`` (opt-in: half the memory traffic; arithmetic stays
            float32, values are rounded to float16 when stored; BLER in docs/digital.md).
        check_state: Triton path only: ``"edges"`` stores one message per edge;
            ``"compressed"`` keeps per check and block ``α·s·min1``, ``α·s·min2``, the arg-min
            edge and the edge signs and rebuilds every old message from them (exact: the same
            values; 9.5–12.2 instead of 16 B per edge and iteration; on an H200 1.2–1.55× the
            per-edge kernel at 262,144 blocks, docs/benchmarks.md); ``"auto"`` (the default):
            compressed for per-layer launches, per edge in the persistent kernel (its only
            form).
        launch: Triton path only: ``"persistent"`` (the same bits as the per-layer kernel;
            on an H200 1.4–6.4× its speed up to 8,192 blocks per call, 0.45–0.67× at 262,144,
            docs/benchmarks.md) decodes the whole batch in ONE kernel launch (``ldpc_persistent_triton``: every iteration, the syndrome check and
            early termination in the kernel, each program's blocks in a slot state small
            enough to stay in L2, a finished block's slot refilled with the next block);
            ``"per-layer"`` launches one kernel per row group and iteration plus the syndrome
            kernels, with the blocks still decoding compacted between iterations; ``"auto"``
            (the default): persistent for calls of at most ``AUTO_PERSISTENT_MAX_BLOCKS``
            blocks (where the per-layer launches cost more than the kernel; the digital chain
            decodes in chunks of at most that many), per layer above. Same bits and iteration
            counts every way.
            ``check_state="compressed"`` always runs per layer.

    ``decoder(llr_ch [..., n]) -> [..., k]`` float32 bits, ``decoder.decode(llr_ch)`` a
    ``MinSumResult``. Index tables are built on first use per device; the device follows the
    input.
    """

    def __init__(
        self,
        encoder,
        num_iter: int = 20,
        alpha: float = 0.85,
        beta: float = 0.25,
        early_stop: bool = True,
        llr_max: float = 20.0,
        backend: str = "auto",
        harq_mode: bool = False,
        precision: str = "fp32",
        check_state: str = "auto",
        launch: str = "auto",
    ) -> None:
        if not isinstance(num_iter, int) or num_iter < 0:
            raise ValueError(f"LDPC min-sum 'num_iter' must be an int ≥ 0, got {num_iter!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"LDPC min-sum 'alpha' must be in (0, 1], got {alpha!r}")
        if not beta >= 0.0:
            raise ValueError(f"LDPC min-sum 'beta' must be ≥ 0, got {beta!r}")
        if not llr_max > 0.0:
            raise ValueError(f"LDPC min-sum 'llr_max' must be > 0, got {llr_max!r}")
        if backend not in BACKENDS:
            raise ValueError(f"LDPC min-sum 'backend' must be one of {BACKENDS}, got {backend!r}")
        if precision not in PRECISIONS:
            raise ValueError(
                f"LDPC min-sum 'precision' must be one of {tuple(PRECISIONS)}, got {precision!r}"
            )
        if check_state not in CHECK_STATES:
            raise ValueError(
                f"LDPC min-sum 'check_state' must be one of {CHECK_STATES}, got {check_state!r}"
            )
        if launch not in LAUNCHES:
            raise ValueError(f"LDPC min-sum 'launch' must be one of {LAUNCHES}, got {launch!r}")
        self.num_iter = num_iter
        self.launch = launch
        self.precision = precision
        self.check_state = check_state
        # what the per-layer kernels keep between iterations ("auto": the compressed state)
        self._layer_state = "edges" if check_state == "edges" else "compressed"
        self._dtype = PRECISIONS[precision]
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.early_stop = bool(early_stop)
        self.llr_max = float(llr_max)
        self.backend = backend
        self.harq_mode = bool(harq_mode)
        self.k = int(encoder.k)
        self.n = int(encoder.n)
        self.z = int(encoder.z)
        self.k_ldpc = int(encoder.k_ldpc)
        self.n_ldpc = int(encoder.n_ldpc)
        self._build(encoder)
        self._tables: dict[torch.device, _Tables] = {}

    # -- graph ---------------------------------------------------------------------------------

    def _build(self, encoder) -> None:
        """Base graph (shifts) from the lifted PCM, rows to decode, row groups, index maps."""
        z, k, n, k_ldpc, n_ldpc = self.z, self.k, self.n, self.k_ldpc, self.n_ldpc
        k_filler = k_ldpc - k
        buf_len = n_ldpc - 2 * z - k_filler  # circular buffer without the fillers
        if n > buf_len:
            raise ValueError(
                f"LDPC min-sum: n={n} exceeds the circular buffer ({buf_len}); as in Sionna, "
                "repetition beyond the mother code is not supported"
            )
        # Every Z×Z block of the lifted PCM is zero or a cyclic shift of the identity:
        # (row r·Z + i, column c·Z + (i + s) mod Z) for i < Z. Read the shifts back.
        pcm = encoder.pcm.tocoo()
        rows, cols = np.asarray(pcm.row), np.asarray(pcm.col)
        num_cb, num_rb = n_ldpc // z, pcm.shape[0] // z
        key = (rows // z) * num_cb + cols // z
        shift = (cols % z - rows % z) % z
        order = np.lexsort((shift, key))
        key, shift = key[order], shift[order]
        uniq, start, count = np.unique(key, return_index=True, return_counts=True)
        if not (count == z).all() or not (shift[start] == shift[start + z - 1]).all():
            raise ValueError("LDPC min-sum: the encoder's PCM is not a lifted (QC) base graph")
        base = -np.ones((num_rb, num_cb), dtype=np.int64)
        base[uniq // num_cb, uniq % num_cb] = shift[start]
        self.base_graph = base  # [row blocks, column blocks]: shift, −1 = zero block

        # Decoded part: up to the last transmitted bit, at least up to the trailing run of
        # degree-1 columns (the core), as Sionna's prune_pcm.
        vn_degree = (base >= 0).sum(axis=0)
        last_pos = num_cb
        for c in range(num_cb - 1, 0, -1):
            if vn_degree[c] != 1:
                break
            last_pos = c
        self._core_vns = last_pos * z
        n_used = n_ldpc if self.harq_mode else max(last_pos * z, 2 * z + n + k_filler)
        num_cols = math.ceil(n_used / z)
        row_cols = [np.flatnonzero(base[r] >= 0) for r in range(num_rb)]
        kept = [r for r in range(num_rb) if (row_cols[r] < num_cols).all()]
        for r in set(range(num_rb)) - set(kept):  # a dropped row owns a punctured degree-1 VN
            own = row_cols[r][row_cols[r] >= num_cols]
            if (vn_degree[own] != 1).any():
                raise ValueError("LDPC min-sum: cannot prune the base graph")
        self.n_used = n_used
        self.rows = kept
        v = num_cols * z  # decoded VNs; rows [v, v + z) of the LLR buffer are padding targets
        self._num_vns = v

        # Row groups: consecutive rows with pairwise disjoint columns, updated at once.
        groups: list[list[int]] = []
        used: set[int] = set()
        for r in kept:
            cs = set(row_cols[r].tolist())
            if groups and not cs & used:
                groups[-1].append(r)
                used |= cs
            else:
                groups.append([r])
                used = cs
        self.row_groups = groups
        zi = np.arange(z)
        self._group_np = []
        for g in groups:
            deg = max(len(row_cols[r]) for r in g)
            if deg > _ARG_SHIFT:  # 5G NR: at most 19 (base graph 1)
                raise ValueError(f"LDPC min-sum: row degree {deg} > {_ARG_SHIFT} unsupported")
            idx = np.broadcast_to(v + zi, (len(g), deg, z)).copy()
            real = np.zeros((len(g), deg), dtype=bool)
            for i, r in enumerate(g):
                for j, c in enumerate(row_cols[r]):
                    idx[i, j] = c * z + (zi + base[r, c]) % z
                    real[i, j] = True
            pad = np.flatnonzero(~real.reshape(-1))
            pad_rows = (pad[:, None] * z + zi).reshape(-1) if pad.size else None
            idx32 = np.where(real[:, :, None], idx, -1).reshape(-1).astype(np.int32)
            self._group_np.append((idx.reshape(-1), pad_rows, (len(g), deg, z), idx32))
        self.num_edges = int(sum(len(row_cols[r]) for r in kept)) * z

        # Syndrome over the checks of Sionna's pruned PCM: checks of the last kept row block
        # beyond the transmitted bits see only a punctured degree-1 VN and are left out (in
        # harq_mode, per call: the first ``_checks(rv)`` checks).
        num_checks = n_used - k_ldpc
        dmax = max(len(row_cols[r]) for r in kept)
        syn = np.full((num_checks, dmax), v, dtype=np.int64)  # v: the always-0 row
        for r in kept:
            cs = row_cols[r]
            for i in range(min(z, num_checks - r * z)):
                syn[r * z + i, : len(cs)] = cs * z + (i + base[r, cs]) % z
        self._syn_np = (syn.reshape(-1), (num_checks, dmax))

        # Placement of the rate-matched LLRs into the decoded VNs. Source rows: 0..n-1 the
        # input (interleaved order), n the constant 0 (punctured), n+1 the filler value.
        j = np.arange(n)
        interleaved = encoder.num_bits_per_symbol is not None
        out_int = encoder.out_int.cpu().numpy() if interleaved else j
        out_int_inv = encoder.out_int_inv.cpu().numpy() if interleaved else j
        pos = np.arange(v)
        place = np.full(v, n, dtype=np.int64)
        sys_ = (pos >= 2 * z) & (pos < k)
        place[sys_] = out_int_inv[pos[sys_] - 2 * z]
        place[(pos >= k) & (pos < k_ldpc)] = n + 1
        buf = pos - k_ldpc + (k - 2 * z)  # circular-buffer index of a parity bit
        par = (pos >= k_ldpc) & (buf < n)
        place[par] = out_int_inv[buf[par]]
        self._place_np = place
        # The VN row of every input column (each column feeds exactly one VN: no repetition),
        # and the rows no column feeds with their values (0 − source row, as decode computes
        # them; the padding rows [V, V + Z)).
        fed = place < n
        recv_row = np.full(n, -1, dtype=np.int64)
        recv_row[place[fed]] = np.flatnonzero(fed)
        if (recv_row < 0).any() or fed.sum() != n:
            raise ValueError("LDPC min-sum: the rate matching does not feed one VN per column")
        self._recv_row_np = recv_row.astype(np.int32)
        const_rows = np.concatenate([np.flatnonzero(~fed), np.arange(v, v + z)])
        const_vals = np.concatenate(
            [np.where(place[~fed] == n, 0.0, _FILLER_LLR), np.full(z, _PAD_LLR)]
        ).astype(np.float32)
        self._const_np = (const_rows, const_vals)
        vn_of_buf = np.where(j < k - 2 * z, j + 2 * z, j - (k - 2 * z) + k_ldpc)
        self._cw_np = vn_of_buf[out_int]
        # Redundancy versions (harq_mode): input column c of version r lands at circular-buffer
        # index (out_int[c] + start_r) mod buf_len; the VNs read the buffer ([buffer | 0 |
        # filler] rows) as in LDPC5GDecoder's HARQ mode.
        self._buf_len = buf_len
        self._rv_start = [int(x) for x in encoder.get_start_positions_comp([0, 1, 2, 3])]
        self._out_int_np = out_int
        place_buf = np.full(v, buf_len, dtype=np.int64)
        place_buf[sys_] = pos[sys_] - 2 * z
        place_buf[(pos >= k) & (pos < k_ldpc)] = buf_len + 1
        in_buf = (pos >= k_ldpc) & (buf < buf_len)
        place_buf[in_buf] = buf[in_buf]
        self._place_buf_np = place_buf

    def kernel_bytes_per_iteration(self) -> int:
        """Bytes one iteration of the Triton row-group kernels moves per block (traffic model:
        every LLR, message and check state value they touch read once and written once; the
        index tables, cached across blocks, and the syndrome check are not counted).

        Per edge: ``L`` read and written (2 × 4 B in float32), plus with ``check_state="edges"``
        its message read and written (16 B per edge in all), or with ``"compressed"`` (and
        ``"auto"``, whose per-layer kernels keep that state) per check ``α·s·min1``,
        ``α·s·min2`` and the int32 signs/arg-min read and written (2 × 12 B).
        """
        elt = torch.empty((), dtype=self._dtype).element_size()
        if self._layer_state == "edges":
            return 4 * elt * self.num_edges
        checks = sum(rows * z for _, _, (rows, _, z), _ in self._group_np)
        return 2 * elt * self.num_edges + 2 * (2 * elt + 4) * checks

    def _tables_on(self, device: torch.device) -> _Tables:
        t = self._tables.get(device)
        if t is None:
            groups = [
                _Group(
                    torch.as_tensor(idx, device=device),
                    None if pad is None else torch.as_tensor(pad, device=device),
                    shape,
                    torch.as_tensor(idx32, device=device),
                )
                for idx, pad, shape, idx32 in self._group_np
            ]
            eidx = [idx32 for *_, idx32 in self._group_np]
            shapes = [shape for _, _, shape, _ in self._group_np]
            first_edge = np.cumsum([0] + [e.size for e in eidx[:-1]])
            first_check = np.cumsum([0] + [rows * z for rows, _, z in shapes[:-1]])
            ginfo = np.array(
                [
                    [e0, rows * z, deg, c0]
                    for e0, c0, (rows, deg, z) in zip(first_edge, first_check, shapes)
                ],
                dtype=np.int32,
            )
            t = _Tables(
                place=torch.as_tensor(self._place_np, device=device),
                groups=groups,
                syn_idx=torch.as_tensor(self._syn_np[0], device=device),
                syn_shape=self._syn_np[1],
                cw_idx=torch.as_tensor(self._cw_np, device=device),
                place_buf=torch.as_tensor(self._place_buf_np, device=device),
                out_int=torch.as_tensor(self._out_int_np, device=device),
                one=torch.ones((), dtype=torch.float32, device=device),
                eidx32=torch.as_tensor(np.concatenate(eidx), device=device),
                ginfo=torch.as_tensor(ginfo, device=device),
                recv_row=torch.as_tensor(self._recv_row_np, device=device),
                const_rows=torch.as_tensor(self._const_np[0], device=device),
                const_vals=torch.as_tensor(self._const_np[1], device=device).to(self._dtype),
            )
            self._tables[device] = t
        return t

    def _use_triton(self, device: torch.device) -> bool:
        if self.backend == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
            return True  # Triton's interpreter (tests on the CPU)
        if self.backend == "torch" or device.type != "cuda":
            if self.backend == "triton":
                raise ValueError("LDPC min-sum: backend='triton' needs CUDA tensors")
            return False
        from v2x.common import triton_available

        if self.backend == "triton" and not triton_available():
            raise ValueError("LDPC min-sum: backend='triton' but triton is not installed")
        return triton_available()

    # -- decoding ------------------------------------------------------------------------------

    def __call__(self, llr_ch: torch.Tensor, rv: list[int] | None = None) -> torch.Tensor:
        """``llr_ch [..., n]`` channel logits → ``[..., k]`` float32 hard information bits."""
        return self.decode(llr_ch, rv=rv).bits

    def decode(
        self, llr_ch: torch.Tensor, return_codeword: bool = False, rv: list[int] | None = None
    ) -> MinSumResult:
        """Decode every block of ``llr_ch [..., n]`` (any leading shape) in one batch.

        With ``rv`` (``harq_mode`` only), ``llr_ch [..., R, n]`` holds ``R`` received
        redundancy versions ``rv[0..R-1]`` (each 0–3) of every block; their LLRs are added in
        the circular buffer before decoding, as Sionna's HARQ-mode ``LDPC5GDecoder`` does.
        """
        with on_device_of(llr_ch):  # the Triton kernels launch on llr_ch's device
            return self._decode(llr_ch, return_codeword, rv)

    def _decode(
        self, llr_ch: torch.Tensor, return_codeword: bool, rv: list[int] | None
    ) -> MinSumResult:
        if llr_ch.shape[-1] != self.n:
            raise ValueError(
                f"LDPC min-sum: llr_ch must be [..., n={self.n}], got {tuple(llr_ch.shape)}"
            )
        if rv is not None:
            rv = list(rv)
            if not self.harq_mode:
                raise ValueError("LDPC min-sum: 'rv' needs a decoder built with harq_mode=True")
            if not rv or any(r not in (0, 1, 2, 3) for r in rv):
                raise ValueError(f"LDPC min-sum: rv must be a non-empty list of 0..3, got {rv}")
            if llr_ch.dim() < 2 or llr_ch.shape[-2] != len(rv):
                raise ValueError(
                    f"LDPC min-sum: llr_ch must be [..., {len(rv)}, n] for rv={rv}, "
                    f"got {tuple(llr_ch.shape)}"
                )
        lead = tuple(llr_ch.shape[:-1] if rv is None else llr_ch.shape[:-2])
        x = llr_ch.reshape(-1, *(() if rv is None else (len(rv),)), self.n).to(torch.float32)
        nb = x.shape[0]
        device = x.device
        tab = self._tables_on(device)
        layer = self._layer_triton if nb and self._use_triton(device) else self._layer_torch
        persistent = self.check_state != "compressed" and (
            self.launch == "persistent"
            or (self.launch == "auto" and nb <= AUTO_PERSISTENT_MAX_BLOCKS)
        )
        if layer == self._layer_triton and persistent:
            return self._decode_persistent(x, rv, tab, lead, return_codeword)
        bits = torch.zeros(nb, self.k, dtype=torch.float32, device=device)
        converged = np.zeros(nb, dtype=bool)  # filled on the host, copied once at the end
        iterations = np.zeros(nb, dtype=np.int32)
        cw = torch.zeros(nb, self.n, device=device) if return_codeword else None

        # Internal LLRs (positive favours 0): L = −logit, batch-last, plus the z padding rows.
        # Source rows: the input columns (or the circular buffer), then 0 and the filler value.
        # The Triton path decodes ``width`` ≥ nb columns (``_BATCH_ALIGN``); the padding
        # columns start at L = 0 and are never read.
        v, z = self._num_vns, self.z
        use_torch = layer == self._layer_torch
        align = 1 if use_torch else _BATCH_ALIGN
        llr = torch.empty(v + z, _aligned(nb, align), dtype=self._dtype, device=device)
        if rv is None and not use_torch:
            self._channel_llr_triton(x, llr, tab)
        else:
            self._channel_llr_torch(x, rv, llr[:, :nb], tab)
        if llr.shape[1] > nb:
            llr[:, nb:] = 0.0
        state, msgs = self._new_state(tab, llr.shape[1], device, use_torch)
        max_e = max(g.idx.numel() for g in tab.groups)
        active = np.arange(nb)  # original index of every column still decoding

        def finish(cols: np.ndarray, ok: np.ndarray | bool, it: int, hard: torch.Tensor | None):
            """Write out the hard decisions of the active batch columns ``cols`` (from the
            syndrome check's packed words ``hard`` where it gives them)."""
            dest = active[cols]
            iterations[dest] = it
            converged[dest] = ok
            at = to_device_async(torch.from_numpy(np.stack([cols, dest])), device)
            if hard is None:
                bits[at[1]] = (llr[: self.k, at[0]] <= 0.0).t().to(torch.float32)
            else:
                self._hard_bits_triton(hard, at[0], at[1], bits)
            if cw is not None:
                cw[at[1]] = (llr.index_select(0, tab.cw_idx)[:, at[0]] <= 0.0).t().float()

        def iterate() -> None:
            for g, r in zip(tab.groups, msgs):
                layer(llr, g, r, work)

        # A block's output is its first codeword (or its state after num_iter iterations), so
        # it never depends on the other blocks of the batch; converged ("frozen") blocks leave
        # the batch once they are at least 1/_COMPACT[path] of it. With Triton (no codeword
        # asked), the next iteration's row kernels are queued before the host reads a check:
        # the device runs them while the host waits and books the finished blocks, whose bits
        # come from the check's packed words (that iteration is wasted on them, never read).
        work = self._work(max_e, nb, device) if use_torch else None
        checks = self._checks(rv)
        compact = _COMPACT["torch" if use_torch else "triton"]
        ahead = not use_torch and cw is None
        frozen = np.zeros(nb, dtype=bool)
        num_frozen = 0
        it = 0
        while nb:
            last = it == self.num_iter
            if not (last or (self.early_stop and it)):
                iterate()
                it += 1
                continue
            read, hard = self._check(llr, tab, checks, use_torch)
            if ahead and not last:
                iterate()
            ok = read()[: frozen.size]  # the host waits for the check (not for the row
            # kernels queued after it); the padding columns' outcomes are dropped
            if last:
                rest = np.flatnonzero(~frozen)
                finish(rest, ok[rest], it, hard)
                break
            new = ok & ~frozen
            cols = np.flatnonzero(new)
            if cols.size:
                num_frozen += cols.size  # ``new`` excludes the frozen columns
                finish(cols, True, it, hard)
                frozen |= new
                if num_frozen == frozen.size:
                    break
                if num_frozen * compact >= frozen.size:
                    keep_np = np.flatnonzero(~frozen)
                    keep = to_device_async(torch.from_numpy(_padded_index(keep_np, align)), device)
                    llr = llr.index_select(1, keep)
                    state, msgs = self._state_views(tab, [s.index_select(1, keep) for s in state])
                    active, frozen, num_frozen = active[keep_np], frozen[keep_np], 0
                    work = self._work(max_e, keep.numel(), device) if use_torch else None
            if not ahead:
                iterate()
            it += 1
        return MinSumResult(
            bits.reshape(*lead, self.k),
            to_device_async(torch.from_numpy(converged), device).reshape(lead),
            to_device_async(torch.from_numpy(iterations), device).reshape(lead),
            None if cw is None else cw.reshape(*lead, self.n),
        )

    def _decode_persistent(
        self,
        x: torch.Tensor,
        rv: list[int] | None,
        tab: _Tables,
        lead: tuple[int, ...],
        return_codeword: bool,
    ) -> MinSumResult:
        """``decode`` in one persistent kernel launch (``ldpc_persistent``): ``x [B, n]`` (or
        ``[B, R, n]`` with ``rv``) float32 channel logits. The initial LLRs are the per-layer
        path's, block-major ``[B, V]``."""
        from v2x.semcom.ldpc_persistent import LAUNCHER, PersistentInputs

        nb, device = x.shape[0], x.device
        if rv is None:
            src = torch.empty(nb, self.n + 2, dtype=torch.float32, device=device)
            torch.clamp(x, -self.llr_max, self.llr_max, out=src[:, : self.n])
            place = tab.place
        else:
            src = torch.zeros(nb, self._buf_len + 2, dtype=torch.float32, device=device)
            for i, r in enumerate(rv):
                at = (tab.out_int + self._rv_start[r]) % self._buf_len
                src.index_add_(1, at, x[:, i])
            src.clamp_(-self.llr_max, self.llr_max)  # after combining, as Sionna
            place = tab.place_buf
        src[:, -2] = 0.0
        src[:, -1] = -_FILLER_LLR
        l0 = src.index_select(1, place)
        del src
        l0 = torch.sub(0.0, l0, out=l0).to(self._dtype)  # +0, never −0
        inp = PersistentInputs(
            l0=l0, eidx=tab.eidx32, ginfo=tab.ginfo, z=self.z, checks=self._checks(rv),
            num_iter=self.num_iter, hard_rows=self._num_vns if return_codeword else self.k,
            alpha=self.alpha, beta=self.beta, pad_llr=_PAD_LLR,
            early=self.early_stop,
        )  # fmt: skip
        del l0
        hard, iterations, converged = LAUNCHER(inp)
        del inp
        cw = None
        if return_codeword:
            cw = hard.index_select(1, tab.cw_idx).float().reshape(*lead, self.n)
        return MinSumResult(
            hard[:, : self.k].float().reshape(*lead, self.k),
            converged.reshape(lead),
            iterations.reshape(lead),
            cw,
        )

    def _new_state(
        self, tab: _Tables, nb: int, device: torch.device, per_edge: bool
    ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Zero check-to-variable messages of every row group for ``nb`` blocks: the state
        tensors (every group's rows in one tensor per kind, one allocation and one compaction
        for all groups) and each group's views of them (``_state_views``).

        Per edge (torch path, Triton ``check_state="edges"``): ``[R [rows·degree·Z, nb]]`` per
        group. Compressed (Triton): ``[α·s·min1, α·s·min2]`` ``[rows·Z, nb]`` in the storage
        dtype and ``[rows·Z, nb]`` int32 holding the edge sign bits and the arg-min edge (all
        zero: every message +0, as the per-edge zeros).
        """
        per_edge = per_edge or self._layer_state == "edges"
        _, rows = _state_rows(tab, per_edge)
        dtypes = (self._dtype,) if per_edge else (self._dtype, self._dtype, torch.int32)
        state = [torch.zeros(rows, nb, dtype=dt, device=device) for dt in dtypes]
        return self._state_views(tab, state)

    @staticmethod
    def _state_views(
        tab: _Tables, state: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """``(state, per group [its rows of every state tensor])`` (``_state_rows``)."""
        rows, _ = _state_rows(tab, len(state) == 1)
        return state, [[s[a:b] for s in state] for a, b in rows]

    @staticmethod
    def _work(max_e: int, nb: int, device: torch.device) -> torch.Tensor:
        return torch.empty(3, max_e, nb, dtype=torch.float32, device=device)

    def _layer_torch(
        self, llr: torch.Tensor, g: _Group, state: list[torch.Tensor], work: torch.Tensor
    ) -> None:
        """One row group in torch: ``t = L − R``, check update, ``L = t + R_new`` (in place).

        ``state = [r_old [rows·degree·Z, B]]`` is overwritten with the new check-to-variable
        messages; ``work [3, ≥ rows·degree·Z, B]`` float32 is scratch space. Only float
        arithmetic and reductions (no bool masks, no arg-min), which are several times faster
        on CPU. With float16 storage the arithmetic is the same; ``α·s·min`` is rounded to
        float16 before it is used (the stored messages are exactly the messages used) and the
        new ``L`` is rounded when stored.
        """
        (r_old,) = state
        half = llr.dtype != torch.float32
        nb = llr.shape[1]
        e = r_old.shape[0]
        shape = (*g.shape, nb)
        if half:
            t = work[0, :e].view(shape)
            t.copy_(llr.index_select(0, g.idx).view(shape))
        else:
            t = torch.index_select(llr, 0, g.idx, out=work[0, :e]).view(shape)
        t -= r_old.view(shape)
        if g.pad is not None:
            t.view(e, nb).index_fill_(0, g.pad, _PAD_LLR)
        a = torch.abs(t, out=work[1, :e].view(shape))
        min1 = a.amin(dim=1, keepdim=True)
        at_min = torch.eq(a, min1, out=work[2, :e].view(shape))  # 1.0 on the minimum
        ties = at_min.sum(dim=1, keepdim=True)
        min2 = a.add_(at_min, alpha=_PAD_LLR).amin(dim=1, keepdim=True)  # smallest other |t|
        # A tied minimum: every edge's extrinsic minimum is min1 (exact: min1 + 0).
        min2 = torch.minimum(min2, min1 + (2.0 - ties).clamp_(0.0, 1.0) * _PAD_LLR)
        if self.beta:
            min1 = (min1 - self.beta).clamp_min_(0.0)
            min2 = (min2 - self.beta).clamp_min_(0.0)
        one = self._tables[t.device].one
        sgn = torch.copysign(one, t, out=a)  # ±1; +1 for +0 (Sionna's sign 0 = +1)
        scale = sgn.prod(dim=1, keepdim=True)  # product of the row's signs
        scale *= self.alpha
        # r = α · (product of the other signs = all signs · own sign) · (min2 on the minimum
        # edge, min1 elsewhere); lerp with weights 0/1 returns its end points exactly.
        if half:
            m1s, m2s = ((m * scale).to(llr.dtype).float() for m in (min1, min2))
            r = torch.lerp(m1s, m2s, at_min)
            r *= sgn
            r_old.view(shape).copy_(r)  # exact: ±(a float16 value)
            t += r
            llr.index_copy_(0, g.idx, t.view(e, nb).to(llr.dtype))
            return
        r = torch.lerp(min1 * scale, min2 * scale, at_min, out=r_old.view(shape))
        r *= sgn
        t += r
        llr.index_copy_(0, g.idx, t.view(e, nb))

    def _layer_triton(
        self, llr: torch.Tensor, g: _Group, state: list[torch.Tensor], work: None = None
    ) -> None:
        """One row group in one fused Triton kernel (same arithmetic as ``_layer_torch``).

        ``state``: ``[R]`` per edge or the compressed ``[α·s·min1, α·s·min2, signs | arg]``
        (``_new_state``), updated in place with ``llr``.
        """
        rows, deg, z = g.shape
        nb = llr.shape[1]
        half = llr.dtype != torch.float32
        if len(state) == 1:
            block_b, warps = _EDGE_LAUNCH[deg > 16]
            grid = (rows * z, math.ceil(nb / block_b))
            _kernel("edges")[grid](
                llr, state[0], g.idx32, nb, z,
                self.alpha, self.beta, _PAD_LLR,
                DEG=deg, BLOCK_B=block_b, OFFSET=self.beta > 0.0, HALF=half, num_warps=warps,
            )  # fmt: skip
        else:
            block_b, warps = _COMPRESSED_LAUNCH[deg > 16]
            grid = (rows * z, math.ceil(nb / block_b))
            _kernel("compressed")[grid](
                llr, state[0], state[1], state[2], g.idx32, nb, z,
                self.alpha, self.beta, _PAD_LLR,
                DEG=deg, BLOCK_B=block_b, OFFSET=self.beta > 0.0, HALF=half,
                ARG_SHIFT=_ARG_SHIFT, num_warps=warps,
            )  # fmt: skip

    def _checks(self, rv: list[int] | None) -> int:
        """Checks the syndrome covers: those of the rows whose parity bits were received (the
        others only see a degree-1 VN with no channel LLR)."""
        if not self.harq_mode:
            return self._syn_np[1][0]
        last = 0  # last circular-buffer index a received version covers
        for r in rv or [0]:
            start = self._rv_start[r]
            wraps = start + self.n > self._buf_len
            last = max(last, self._buf_len - 1 if wraps else start + self.n - 1)
        n_used = max(self._core_vns, 2 * self.z + self.k_ldpc - self.k + last + 1)
        return min(n_used, self.n_ldpc) - self.k_ldpc

    def _channel_llr_torch(
        self, x: torch.Tensor, rv: list[int] | None, llr: torch.Tensor, tab: _Tables
    ) -> None:
        """``llr [V + Z, B]`` from the channel logits ``x [B, n]`` (or ``[B, R, n]``, the
        received versions ``rv`` combined in the circular buffer): each VN's source row of
        ``[input columns (or buffer) | 0 | filler]``, negated, then the padding rows."""
        v, nb, device = self._num_vns, x.shape[0], x.device
        if rv is None:
            src = torch.empty(self.n + 2, nb, dtype=torch.float32, device=device)
            torch.clamp(x.t(), -self.llr_max, self.llr_max, out=src[: self.n])
            place = tab.place
        else:
            src = torch.zeros(self._buf_len + 2, nb, dtype=torch.float32, device=device)
            for i, r in enumerate(rv):
                at = (tab.out_int + self._rv_start[r]) % self._buf_len
                src.index_add_(0, at, x[:, i].t())
            src.clamp_(-self.llr_max, self.llr_max)  # after combining, as Sionna
            place = tab.place_buf
        src[-2] = 0.0
        src[-1] = -_FILLER_LLR
        torch.sub(0.0, src.index_select(0, place), out=llr[:v])  # 0 − (+0) = +0, never −0
        llr[v:] = _PAD_LLR

    def _channel_llr_triton(self, x: torch.Tensor, llr: torch.Tensor, tab: _Tables) -> None:
        """``llr [V + Z, ≥ B]`` (its first ``B`` columns) from the channel logits ``x [B, n]`` in
        one Triton pass (the values of ``decode``'s torch ops: ``0 − clamp(x)`` at the columns'
        VNs), then the rows no column feeds (punctured 0, fillers, padding)."""
        nb = x.shape[0]
        grid = (triton_cdiv(self.n, 64), triton_cdiv(nb, 64))
        _kernel("channel_llr")[grid](
            x.contiguous(), tab.recv_row, llr, nb, llr.stride(0), self.n, self.llr_max,
            BLOCK_P=64, BLOCK_B=64,
        )  # fmt: skip
        llr[tab.const_rows] = tab.const_vals[:, None]

    def _hard_bits_triton(
        self, hard: torch.Tensor, cols: torch.Tensor, dest: torch.Tensor, bits: torch.Tensor
    ) -> None:
        """``bits[dest] = `` the information bits of the active batch columns ``cols``, read
        from ``_syndrome_words_triton``'s packed hard decisions (``(llr[:k, cols] ≤ 0)ᵀ``)."""
        if not cols.numel():
            return
        grid = (triton_cdiv(cols.numel(), 32), triton_cdiv(self.k, 128))
        _kernel("hard_bits")[grid](
            hard, cols, dest, bits, cols.numel(), self.k, hard.shape[1], BLOCK_C=32, BLOCK_K=128
        )

    def _check(
        self, llr: torch.Tensor, tab: _Tables, checks: int, use_torch: bool
    ) -> tuple[Callable[[], np.ndarray], torch.Tensor | None]:
        """Queue the syndrome check of every batch column of ``llr``: ``(read, hard)``, where
        ``read()`` waits for the check alone and returns ``[B]`` bool on the host (True: a
        codeword) and ``hard`` the packed hard decisions (Triton; ``None`` in torch). On CUDA
        the violation words go to page-locked memory in a non-blocking copy, so work queued
        after the check runs while the host reads it."""
        if use_torch:
            ok, hard = self._syndrome_ok(llr, tab, checks)
            return (lambda: ok.cpu().numpy()), hard
        bad, hard = self._syndrome_words_triton(llr, tab, checks)
        nb = llr.shape[1]
        if bad.device.type != "cuda":  # Triton's interpreter
            return (lambda: _words_ok(bad.numpy(), nb)), hard
        host = torch.empty(bad.shape, dtype=bad.dtype, pin_memory=True)
        host.copy_(bad, non_blocking=True)
        done = torch.cuda.Event()
        done.record()

        def read() -> np.ndarray:
            done.synchronize()
            return _words_ok(host.numpy(), nb)

        return read, hard

    @staticmethod
    def _syndrome_words_triton(
        llr: torch.Tensor, tab: _Tables, checks: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The syndrome check of ``_syndrome_ok`` in two Triton kernels: hard decisions packed 32
        blocks to an int32 word (``hard [V + 1, ⌈B/32⌉]``, the last row 0 for padding slots),
        then per check the XOR of its VNs' words, OR-ed over the checks (≈ 4 B per VN and E/8 B
        per block read, instead of ~13 B per edge with torch's byte-wise gathers). Returns
        ``(bad [⌈B/32⌉] int32, hard)``: bit ``k`` of ``bad[w]`` set where block ``32·w + k``
        violates a check (``_words_ok`` unpacks it)."""
        v, nb = tab.place.numel(), llr.shape[1]
        nw = -(-nb // 32)
        hard = torch.empty(v + 1, nw, dtype=torch.int32, device=llr.device)
        hard[v] = 0
        _kernel("pack_hard")[(v, triton_cdiv(nw, 32))](llr, hard, nb, nw, BLOCK_W=32)
        bad = torch.zeros(nw, dtype=torch.int32, device=llr.device)
        d = tab.syn_shape[1]
        per = 64
        grid = (triton_cdiv(nw, 32), triton_cdiv(checks, per))
        _kernel("syndrome")[grid](
            hard, tab.syn_idx, bad, checks, nw,
            DMAX=d, DMAX_P2=triton_next_pow2(d), BLOCK_W=32, CHECKS_PER=per,
        )  # fmt: skip
        return bad, hard

    @staticmethod
    def _syndrome_ok(llr: torch.Tensor, tab: _Tables, checks: int) -> tuple[torch.Tensor, None]:
        """``[B]`` bool: the hard decision of each batch column satisfies every check (and
        ``None``: no packed hard decisions, as ``_syndrome_words_triton`` returns).

        Hard bits are bytes, four blocks to an int32 lane group: the gather and the sum over a
        check's edges (at most its degree, < 256 per byte: no carry between blocks) move a
        quarter of the elements.
        """
        v, nb = tab.place.numel(), llr.shape[1]
        nb4 = -(-nb // 4) * 4
        hard = torch.zeros(v + 1, nb4, dtype=torch.uint8, device=llr.device)
        torch.le(llr[:v], 0.0, out=hard[:v, :nb].view(torch.bool))
        d = tab.syn_shape[1]
        idx = tab.syn_idx[: checks * d]
        packed = hard.view(torch.int32).index_select(0, idx).view(checks, d, nb4 // 4)
        parity = packed.sum(dim=1, dtype=torch.int32).bitwise_and_(0x01010101)
        return parity.view(torch.uint8).amax(dim=0)[:nb] == 0, None


def _state_rows(tab: _Tables, per_edge: bool) -> tuple[list[tuple[int, int]], int]:
    """``([(first, end) row of each row group's check state], total rows)``: ``rows·degree·Z``
    rows per group of a per-edge state, ``rows·Z`` of a compressed one, each group starting at
    a multiple of 8 rows, so that every group's view is 16-byte aligned whatever the batch (a
    Triton kernel is compiled per pointer alignment)."""
    rows, at = [], 0
    for g in tab.groups:
        n = g.idx.numel() if per_edge else g.shape[0] * g.shape[2]
        rows.append((at, at + n))
        at += -(-n // 8) * 8
    return rows, at


def _aligned(n: int, align: int) -> int:
    """``n`` rounded up to a multiple of ``align``."""
    return -(-n // align) * align


def _padded_index(keep: np.ndarray, align: int) -> np.ndarray:
    """The batch columns ``keep`` (non-empty), then its last one repeated up to a multiple
    of ``align``: the columns a compaction keeps, the repeats filling the padding."""
    pad = _aligned(keep.size, align) - keep.size
    return np.concatenate([keep, np.full(pad, keep[-1], dtype=keep.dtype)]) if pad else keep


def _words_ok(bad: np.ndarray, nb: int) -> np.ndarray:
    """``[nb]`` bool: bit ``k`` of ``bad[w]`` (int32) clear for block ``32·w + k``."""
    bits = np.unpackbits(bad.astype("<i4").view(np.uint8), bitorder="little")
    return bits[:nb] == 0


def triton_next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _kernel(kind: str):
    """The Triton kernel of ``kind`` (``ldpc_minsum_triton.kernel``), imported on first use:
    Triton stays optional."""
    from v2x.semcom import ldpc_minsum_triton

    return ldpc_minsum_triton.kernel(kind)
