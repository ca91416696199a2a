"""The min-sum LDPC decoder's per-layer Triton launches (``v2x.semcom.ldpc_minsum``): one row
group per kernel (per-edge or compressed check state), the channel LLRs, the packed hard
decisions and the syndrome words. The kernels themselves live in ``ldpc_minsum_triton`` and are
imported on first use (``_kernel``): Triton stays optional.

``MinSumTritonPath`` is a part of ``LDPC5GMinSumDecoder``; shapes and units as there.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from v2x.semcom.ldpc_minsum_graph import _ARG_SHIFT, _PAD_LLR, _Group, _Tables

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


class MinSumTritonPath:
    """The per-layer Triton path of ``LDPC5GMinSumDecoder`` (its ``_layer_triton``,
    ``_channel_llr_triton``, ``_hard_bits_triton``, ``_syndrome_words_triton``)."""

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
