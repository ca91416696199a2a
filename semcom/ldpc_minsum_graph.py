"""The min-sum LDPC decoder's graph (``v2x.semcom.ldpc_minsum``): the base graph read back from
a Sionna ``LDPC5GEncoder``'s lifted parity-check matrix, the rows decoded and their row groups,
the placement of the rate-matched LLRs (and of HARQ redundancy versions) into the decoded
variable nodes, the syndrome's checks, the index tables on each device, and the layout of the
check-to-variable state (per edge or compressed per check).

``MinSumGraph`` is a part of ``LDPC5GMinSumDecoder`` (its ``_build``, ``_tables_on``,
``_checks``, ``_new_state``, ...); shapes and units as there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

#: Internal LLR of a filler bit (known 0): larger than any message, so never the minimum.
_FILLER_LLR = 1.0e4
#: |t| given to the padding edges of a row group: never the minimum, sign +.
_PAD_LLR = 3.0e4
#: Bit of the packed check state where the arg-min edge index starts (edge sign bits below).
_ARG_SHIFT = 24


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
    buf_src: torch.Tensor  # [4, buf_len] int64 per RV: the input column that lands on each
    # circular-buffer index (n where none does: a zero column appended to the input)
    one: torch.Tensor  # 0-dim 1.0 (copysign's magnitude)
    eidx32: torch.Tensor  # every group's idx32, concatenated (persistent kernel)
    ginfo: torch.Tensor  # [groups, 4] int32: first edge in eidx32, rows·Z, degree, first check
    recv_row: torch.Tensor  # [n] int32 VN row of every input column (``place`` inverted)
    const_rows: torch.Tensor  # [c] int64 rows of the LLR buffer no input column feeds
    const_vals: torch.Tensor  # [c] their values (0, the filler, padding), storage dtype


class MinSumGraph:
    """The decoder's Tanner graph and index tables (a part of ``LDPC5GMinSumDecoder``, which
    sets ``z``, ``k``, ``n``, ``k_ldpc``, ``n_ldpc``, ``harq_mode``, ``_dtype`` and
    ``_layer_state`` before ``_build``)."""

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
        self._buf_src_np = np.full((4, buf_len), n, dtype=np.int64)
        for r, start in enumerate(self._rv_start):  # out_int is one-to-one: one column an index
            self._buf_src_np[r, (np.asarray(out_int) + start) % buf_len] = np.arange(n)
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
                buf_src=torch.as_tensor(self._buf_src_np, device=device),
                one=torch.ones((), dtype=torch.float32, device=device),
                eidx32=torch.as_tensor(np.concatenate(eidx), device=device),
                ginfo=torch.as_tensor(ginfo, device=device),
                recv_row=torch.as_tensor(self._recv_row_np, device=device),
                const_rows=torch.as_tensor(self._const_np[0], device=device),
                const_vals=torch.as_tensor(self._const_np[1], device=device).to(self._dtype),
            )
            self._tables[device] = t
        return t

    def _versions_in_buffer(self, x: torch.Tensor, rv: list[int], tab: _Tables) -> torch.Tensor:
        """``[B, buf_len + 2]`` float32: the received versions ``x [B, R, n]`` (redundancy
        versions ``rv``) added into the circular buffer in order, clamped to ``±llr_max`` after
        combining (as Sionna), the two columns after the buffer 0 (the callers' constant rows).

        One gather a version (``tab.buf_src``, a zero column where the version sends nothing),
        not ``index_add_``, which CUDA's deterministic mode runs as a sort (21 ms a call for
        40,000 MCS-0 blocks on an H100); the same sums: ``0 + x₀ (+ 0) + x₁ …`` in order.
        """
        src = torch.zeros(x.shape[0], self._buf_len + 2, dtype=torch.float32, device=x.device)
        buf = src[:, : self._buf_len]
        for i, r in enumerate(rv):
            buf += torch.nn.functional.pad(x[:, i], (0, 1)).index_select(1, tab.buf_src[r])
        return src.clamp_(-self.llr_max, self.llr_max)

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
