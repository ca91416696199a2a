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

The decoder is built from one part per job; this module holds the decoding loops (per layer and
persistent) and re-exports the parts' names:

* ``ldpc_minsum_graph``: the base graph, rows and row groups, LLR placement, syndrome checks,
  index tables per device, and the check-state layout (``MinSumGraph``);
* ``ldpc_minsum_torch``: one row group, the channel LLRs and the syndrome check in torch, the
  reference (``MinSumTorchPath``);
* ``ldpc_minsum_launch``: the same steps as per-layer Triton launches (``MinSumTritonPath``;
  the kernels in ``ldpc_minsum_triton``, the persistent one in ``ldpc_persistent_triton``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from v2x.common import on_device_of, to_device_async
from v2x.semcom.ldpc_minsum_backends import MinSumBackends
from v2x.semcom.ldpc_minsum_graph import _FILLER_LLR, _PAD_LLR, MinSumGraph, _Tables
from v2x.semcom.ldpc_minsum_launch import (
    _COMPRESSED_LAUNCH,  # noqa: F401 (the old import path; rebind it in ldpc_minsum_launch)
    _EDGE_LAUNCH,  # noqa: F401 (the old import path; rebind it in ldpc_minsum_launch)
    MinSumTritonPath,
    _words_ok,
    triton_cdiv,
    triton_next_pow2,
)
from v2x.semcom.ldpc_minsum_torch import MinSumTorchPath

__all__ = [
    "AUTO_PERSISTENT_MAX_BLOCKS",
    "BACKENDS",
    "CHECK_STATES",
    "LAUNCHES",
    "PRECISIONS",
    "LDPC5GMinSumDecoder",
    "MinSumResult",
    "triton_cdiv",
    "triton_next_pow2",
]

#: Blocks are dropped from the batch once at least 1/_COMPACT[path] of the active ones
#: converged. The torch path moves ~14 passes per edge and iteration, so the copy is cheap
#: (1/16); with the Triton per-edge kernel it costs about half an iteration (1/4: on an H200 at
#: the 10 % BLER point 4–10 % faster than 1/16 for MCS 5, 14, 20 and 27).
_COMPACT = {"torch": 16, "triton": 4}
#: The Triton path's batch is ``[rows, width]`` with ``width`` the live blocks rounded up to a
#: multiple of this (the padding columns are decoded and never read): every row then starts
#: 16-element aligned and the kernels' ``b < width`` mask is constant over 16 blocks, which
#: lets Triton compile one kernel per shape (no re-specialisation as the batch shrinks) whose
#: loads and stores can be vectorised over a thread's consecutive blocks.
_BATCH_ALIGN = 16
BACKENDS = ("auto", "torch", "triton", "numba")
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


class LDPC5GMinSumDecoder(MinSumGraph, MinSumTorchPath, MinSumTritonPath, MinSumBackends):
    """Layered normalised offset min-sum decoder of a Sionna ``LDPC5GEncoder``'s code.

    Args:
        encoder: ``sionna.phy.fec.ldpc.LDPC5GEncoder`` (gives ``k``, ``n``, ``Z``, the PCM, the
            filler bits and the output interleaver).
        num_iter: maximum layered iterations per block.
        alpha: normalisation factor of the check-node messages (plain min-sum: 1).
        beta: offset subtracted from the check-node magnitudes (none: 0).
        early_stop: stop a block once its hard decision has a zero syndrome.
        llr_max: channel LLRs are clipped to ``±llr_max`` (Sionna's default 20).
        backend: ``"torch"``, ``"triton"`` (CUDA), ``"numba"`` (CPU, float32 storage:
            ``ldpc_numba``, the persistent kernel's algorithm compiled for the host) or
            ``"auto"`` (Triton on CUDA, numba on the CPU with ``precision="fp32"``, where
            installed; else torch). Every backend gives the same bits, iteration counts and
            convergence flags.
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
        if nb and self._use_numba(device):  # the persistent kernel's algorithm, compiled
            return self._decode_persistent(x, rv, tab, lead, return_codeword, compiled=True)
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
        compiled: bool = False,
    ) -> MinSumResult:
        """``decode`` in one persistent kernel launch (``ldpc_persistent``), or with
        ``compiled`` in one call of its algorithm compiled for the CPU (``ldpc_numba``):
        ``x [B, n]`` (or ``[B, R, n]`` with ``rv``) float32 channel logits. The initial LLRs
        are the per-layer path's, block-major ``[B, V]``."""
        from v2x.semcom.ldpc_numba import decode_numba
        from v2x.semcom.ldpc_persistent import LAUNCHER, PersistentInputs

        nb, device = x.shape[0], x.device
        if rv is None:
            src = torch.empty(nb, self.n + 2, dtype=torch.float32, device=device)
            torch.clamp(x, -self.llr_max, self.llr_max, out=src[:, : self.n])
            place = tab.place
        else:
            src = self._versions_in_buffer(x, rv, tab)
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
        hard, iterations, converged = (decode_numba if compiled else LAUNCHER)(inp)
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


def _aligned(n: int, align: int) -> int:
    """``n`` rounded up to a multiple of ``align``."""
    return -(-n // align) * align


def _padded_index(keep: np.ndarray, align: int) -> np.ndarray:
    """The batch columns ``keep`` (non-empty), then its last one repeated up to a multiple
    of ``align``: the columns a compaction keeps, the repeats filling the padding."""
    pad = _aligned(keep.size, align) - keep.size
    return np.concatenate([keep, np.full(pad, keep[-1], dtype=keep.dtype)]) if pad else keep
