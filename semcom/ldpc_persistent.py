"""Host side of the persistent Triton LDPC decoder (``ldpc_persistent_triton.decode_kernel``):
slot buffers, the launch, and the choice of launch configuration.

A configuration is ``CB`` block slots per program, programs per SM, the tile size (elements of
one ``[checks, edges, slots]`` tile) and the warps per program. Every configuration decodes
every block with the same arithmetic (bit-identical outputs), so the first call for a given
code, batch size (power-of-two bucket) and mode on CUDA with at least ``TUNE_MIN_BLOCKS`` blocks
times each of ``CONFIGS`` once on the real batch (after a compile run on a few blocks), keeps the
fastest for later calls and returns its output; smaller batches use ``CONFIGS[0]``. The
environment variable ``V2X_LDPC_PERSISTENT="CB,PPS,TILE,WARPS"`` (e.g. ``16,2,2048,8``) forces
one configuration. Triton stays optional: the kernel module is imported on first use.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass

import torch

#: Batches from this size on are tuned (once per code, batch bucket and mode).
TUNE_MIN_BLOCKS = 16384


@dataclass(frozen=True)
class PersistentConfig:
    """Launch configuration of the persistent kernel.

    Attributes:
        cb: block slots per program (the batch-last width of its state rows; 8 float32 = one
            32-byte sector).
        pps: programs per SM (the grid is ``pps × SMs``, at most one slot per block).
        tile: elements of one ``[checks, DEG_P2, cb]`` tile (≥ 32·cb: ≥ 1 check of degree 32).
        num_warps: warps per program.
    """

    cb: int
    pps: int
    tile: int
    num_warps: int

    @property
    def maxnreg(self) -> int:
        """Registers per thread that keep ``pps`` programs resident on an SM (64 K registers;
        ptxas would take up to 255 and leave room for one)."""
        return min(255, 65536 // (self.pps * self.num_warps * 32) // 8 * 8)

    def __str__(self) -> str:
        return f"CB={self.cb},PPS={self.pps},TILE={self.tile},W={self.num_warps}"


#: Tried in this order; the first is the default below ``TUNE_MIN_BLOCKS``. Slot state per block
#: ≈ 4·(V + E) B (39 kB at MCS 14, 57 kB at MCS 5): on 132 SMs the 1,056 slots of (8, 1) stay in
#: the 50 MB L2, the others trade L2 hits for warps per SM (8–16). Registers are capped
#: (``maxnreg``) so that every program of the grid is resident; ptxas (sm_90, Triton 3.6): 117,
#: 151 and 168 registers per thread and no spills for the first three, 104 B of spills for the
#: last.
CONFIGS = (
    PersistentConfig(8, 2, 1024, 8),
    PersistentConfig(8, 1, 1024, 8),
    PersistentConfig(8, 3, 1024, 4),
    PersistentConfig(16, 2, 2048, 8),
)
#: Under Triton's interpreter (tests): few slots, two programs, so that slots are refilled.
INTERPRET_CONFIG = PersistentConfig(4, 2, 512, 4)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _forced() -> PersistentConfig | None:
    env = os.environ.get("V2X_LDPC_PERSISTENT")
    if not env:
        return None
    cb, pps, tile, warps = (int(s) for s in env.split(","))
    return PersistentConfig(cb, pps, tile, warps)


@dataclass
class PersistentInputs:
    """One decode call: ``l0 [nb, V]`` initial internal LLRs (float32 or float16) and the index
    tables (``eidx`` int32 VN per edge, ``ginfo [groups, 4]`` int32) with the scalar
    parameters of ``decode_kernel`` (``checks``: the parity checks of the syndrome, the first
    ones of the row groups)."""

    l0: torch.Tensor
    eidx: torch.Tensor
    ginfo: torch.Tensor
    z: int
    checks: int
    num_iter: int
    hard_rows: int
    alpha: float
    beta: float
    pad_llr: float
    early: bool


class PersistentLauncher:
    """Runs ``decode_kernel`` with a chosen configuration; remembers per key the tuned one
    (``tuned``) and the timings of the last tuning (``last_tuning``: ``[(config, seconds)]``)."""

    def __init__(self) -> None:
        self.tuned: dict[tuple, PersistentConfig] = {}
        self.last_tuning: list[tuple[PersistentConfig, float]] = []
        self.last_config: PersistentConfig | None = None

    def __call__(self, inp: PersistentInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode every block: ``hard [nb, hard_rows]`` int8 (``L ≤ 0`` of the first
        ``hard_rows`` VNs), ``iterations [nb]`` int32, ``converged [nb]`` bool."""
        nb, v = inp.l0.shape
        forced = _forced()
        if _interpreting() or inp.l0.device.type != "cuda":
            cfg = forced or INTERPRET_CONFIG
        elif forced is not None:
            cfg = forced
        else:
            key = (
                inp.l0.device, v, inp.eidx.numel(), inp.z, inp.checks, nb.bit_length(),
                inp.num_iter, inp.early, inp.l0.dtype,
            )  # fmt: skip
            cfg = self.tuned.get(key)
            if cfg is None and nb >= TUNE_MIN_BLOCKS:
                return self._tune(inp, key)
            cfg = cfg or CONFIGS[0]
        self.last_config = cfg
        return self._run(inp, cfg)

    def _tune(self, inp: PersistentInputs, key: tuple):
        """Time every configuration on the batch (after a compile run on a few blocks); keep
        the fastest and return its output."""
        best, out, timings = None, None, []
        for cfg in CONFIGS:
            small = PersistentInputs(**{**inp.__dict__, "l0": inp.l0[: 2 * cfg.cb]})
            try:  # a configuration this GPU or Triton cannot run is skipped
                self._run(small, cfg)
            except Exception as exc:  # noqa: BLE001 (OutOfResources, PTXASError, ...)
                warnings.warn(f"LDPC persistent kernel: {cfg} skipped: {exc}", stacklevel=2)
                continue
            torch.cuda.synchronize(inp.l0.device)
            t0 = time.perf_counter()
            res = self._run(inp, cfg)
            torch.cuda.synchronize(inp.l0.device)
            dt = time.perf_counter() - t0
            timings.append((cfg, dt))
            if best is None or dt < best[1]:
                best, out = (cfg, dt), res
            del res
        if best is None:
            raise RuntimeError("LDPC persistent kernel: no launch configuration runs here")
        self.tuned[key] = best[0]
        self.last_tuning = timings
        self.last_config = best[0]
        return out

    @staticmethod
    def _run(inp: PersistentInputs, cfg: PersistentConfig):
        from v2x.semcom.ldpc_persistent_triton import kernel

        l0 = inp.l0.contiguous()
        nb, v = l0.shape
        e = inp.eidx.numel()
        dev = l0.device
        if dev.type == "cuda":
            sms = torch.cuda.get_device_properties(dev).multi_processor_count
        else:
            sms = 1
        programs = max(1, min(sms * cfg.pps, math.ceil(nb / cfg.cb)))
        # zeros: slots that never hold a block are still updated (finite values)
        sl = torch.zeros(programs * v * cfg.cb, dtype=l0.dtype, device=dev)
        sr = torch.zeros(programs * e * cfg.cb, dtype=l0.dtype, device=dev)
        hard = torch.empty(nb, inp.hard_rows, dtype=torch.int8, device=dev)
        iters = torch.empty(nb, dtype=torch.int32, device=dev)
        conv = torch.empty(nb, dtype=torch.int8, device=dev)
        counter = torch.zeros(1, dtype=torch.int32, device=dev)
        if nb:
            kernel()[(programs,)](
                l0, sl, sr, hard, iters, conv, counter, inp.eidx, inp.ginfo,
                nb, v, e, inp.z, inp.ginfo.shape[0], inp.checks, inp.num_iter, inp.hard_rows,
                inp.alpha, inp.beta, inp.pad_llr,
                EARLY=inp.early, OFFSET=inp.beta > 0.0, HALF=l0.dtype == torch.float16, CB=cfg.cb,
                TILE=cfg.tile, num_warps=cfg.num_warps, num_stages=1, maxnreg=cfg.maxnreg,
            )  # fmt: skip
        return hard, iters, conv.bool()


#: The launcher every decoder shares (tuned configurations are per code and batch, not per
#: decoder object).
LAUNCHER = PersistentLauncher()
