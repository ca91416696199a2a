"""Block error rate (BLER) tables of the digital chain: build with the exact decoder, load, look up.

A table gives, for each MCS of ``v2x.semcom.mcs.MCS_TABLE`` and one code-block size, the
probability that a code block fails its CRC after exact Sionna LDPC decoding, versus Es/N0 (dB)
on AWGN. It drives the digital codec's ``decoder: fast`` mode (each block fails with that
probability) and the link-adaptation thresholds (SNR at the target BLER).

Build (slow: exact BP decoding; on a 2-core CPU about 15–60 kbit/s of decoded information)::

    python -m v2x.semcom.bler_table --block-bits 1024 --blocks 40 --out semcom/bler_table.json
    python -m v2x.semcom.bler_table --device cuda ...   # on a GPU; merges into an existing file

Per MCS the builder finds the 50 % point by bisection (16 blocks per probe), then measures a grid
of SNRs 0.25 dB apart around it, extended downwards until BLER ≥ 0.95 and upwards until no block
fails, so that below the grid BLER = 1 and above it BLER = 0 are measured, not assumed.
Every point stores its block count, so the statistical precision is visible in the file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from v2x.common import atomic_write_text
from v2x.semcom.fec import block_code
from v2x.semcom.mcs import MCS_TABLE

DEFAULT_TABLE_PATH = Path(__file__).with_name("bler_table.json")
_BLER_FLOOR = 1e-6  # log-domain interpolation floor (a point with no failure is stored as 0)


def simulate_bler(
    mcs_index: int,
    block_bits: int,
    snr_db: float,
    num_blocks: int,
    num_iter: int = 20,
    cn_update: str = "boxplus-phi",
    device: str = "cpu",
    batch: int = 64,
    generator: torch.Generator | None = None,
    ldpc_decoder: str = "sionna",
) -> tuple[int, int]:
    """Send ``num_blocks`` random blocks through AWGN at ``snr_db``; return (CRC failures, blocks).

    The blocks and the noise come from ``generator`` only (no decoder draws random numbers), so
    two calls with equally seeded generators see the same channel: ``ldpc_decoder`` ``"sionna"``
    and ``"minsum"`` (``v2x.semcom.fec.BlockCode``) are then compared block for block.
    """
    code = block_code(mcs_index, block_bits, num_iter, cn_update, device, ldpc_decoder)
    no = 10.0 ** (-snr_db / 10.0)
    failures = 0
    done = 0
    while done < num_blocks:
        n = min(batch, num_blocks - done)
        bits = torch.randint(0, 2, (n, code.payload_bits), generator=generator).float().to(device)
        x = code.encode(bits)
        noise = torch.randn(n, x.shape[1], 2, generator=generator).to(device) * math.sqrt(no / 2.0)
        y = x + torch.view_as_complex(noise)
        _, ok = code.decode(y, torch.full((1,), no, device=device))
        failures += int((~ok).sum())
        done += n
    return failures, done


def build_mcs_curve(
    mcs_index: int,
    block_bits: int,
    blocks: int,
    num_iter: int,
    cn_update: str,
    device: str,
    generator: torch.Generator,
    step_db: float = 0.25,
    batch: int = 64,
) -> dict:
    """Measure one MCS's BLER curve (see the module docstring for the grid rule)."""
    mcs = MCS_TABLE[mcs_index]
    shannon = 10 * math.log10(2.0**mcs.spectral_efficiency - 1.0)
    lo, hi = shannon - 1.0, shannon + 6.0
    for _ in range(5):  # bisection for BLER = 0.5 (0.22 dB resolution)
        mid = 0.5 * (lo + hi)
        fail, n = simulate_bler(
            mcs_index, block_bits, mid, 16, num_iter, cn_update, device, batch, generator
        )
        if fail / n > 0.5:
            lo = mid
        else:
            hi = mid
    center = round(0.5 * (lo + hi) / step_db) * step_db
    measured: dict[float, tuple[int, int]] = {}

    def measure(s: float) -> float:
        s = round(s, 4)
        if s not in measured:
            measured[s] = simulate_bler(
                mcs_index, block_bits, s, blocks, num_iter, cn_update, device, batch, generator
            )
        fail, n = measured[s]
        return fail / n

    for j in range(-3, 5):
        measure(center + j * step_db)
    s = min(measured)
    for _ in range(8):  # extend downwards until the block almost always fails
        if measure(s) >= 0.95:
            break
        s -= 2 * step_db
    s = max(measured)
    for _ in range(8):  # extend upwards until no block fails
        if measure(s) == 0.0:
            break
        s += 2 * step_db
    grid = sorted(measured)
    return {
        "qm": mcs.qm,
        "rate_x1024": mcs.rate_x1024,
        "snr_db": grid,
        "bler": [measured[g][0] / measured[g][1] for g in grid],
        "failures": [measured[g][0] for g in grid],
        "blocks": [measured[g][1] for g in grid],
    }


def build_table(
    block_bits: int,
    blocks: int,
    mcs_indices: list[int],
    num_iter: int = 20,
    cn_update: str = "boxplus-phi",
    device: str = "cpu",
    seed: int = 0,
    out: Path | None = None,
    existing: dict | None = None,
    batch: int = 64,
) -> dict:
    """Build (or extend) a table; written to ``out`` atomically after every MCS."""
    import sionna

    table = existing or {}
    table.setdefault(
        "_comment",
        "BLER (CRC failure rate per code block) of v2x.semcom digital chain: CRC24A + 5G LDPC "
        "(Sionna LDPC5GEncoder/LDPC5GDecoder, exact BP) + Gray QAM, AWGN, snr_db = Es/N0. "
        "Built by python -m v2x.semcom.bler_table.",
    )
    entry = table.setdefault("tables", {}).setdefault(str(block_bits), {})
    entry.update(
        {
            "block_bits": block_bits,
            "crc": "CRC24A",
            "num_iter": num_iter,
            "cn_update": cn_update,
            "sionna": sionna.__version__,
        }
    )
    curves = entry.setdefault("mcs", {})
    generator = torch.Generator().manual_seed(seed)
    for m in mcs_indices:
        t0 = time.time()
        curves[str(m)] = build_mcs_curve(
            m, block_bits, blocks, num_iter, cn_update, device, generator, batch=batch
        )
        c = curves[str(m)]
        print(
            f"mcs {m:2d}: {len(c['snr_db'])} points {c['snr_db'][0]:.2f}..{c['snr_db'][-1]:.2f} dB, "
            f"10% at {threshold_from_curve(c, 0.1):.2f} dB, {time.time() - t0:.0f} s",
            flush=True,
        )
        entry["built"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        entry["device"] = device
        if out is not None:
            atomic_write_text(out, json.dumps(table, indent=1))
    return table


def threshold_from_curve(curve: dict, target_bler: float) -> float:
    """Lowest SNR (dB) above which every measured point has BLER ≤ target (linear interp)."""
    snr = np.asarray(curve["snr_db"], dtype=np.float64)
    bler = np.asarray(curve["bler"], dtype=np.float64)
    bad = np.nonzero(bler > target_bler)[0]
    if bad.size == 0:
        return float(snr[0])
    i = int(bad[-1])
    if i + 1 >= snr.size:
        return float("inf")
    # Interpolate log BLER between the last failing point and the next one.
    lb0, lb1 = math.log(max(bler[i], _BLER_FLOOR)), math.log(max(bler[i + 1], _BLER_FLOOR))
    t = (math.log(target_bler) - lb0) / (lb1 - lb0)
    return float(snr[i] + t * (snr[i + 1] - snr[i]))


def _monotone_decreasing(curve: dict) -> np.ndarray:
    """Pool-adjacent-violators fit of ``curve["bler"]`` (non-increasing, weights = blocks)."""
    values = [float(v) for v in curve["bler"]]
    weights = [float(w) for w in curve.get("blocks", [1] * len(values))]
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values, weights):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return np.concatenate([np.full(int(c), v) for v, _, c in blocks])


class BlerTable:
    """Look-up of block error rates for one code-block size.

    Args:
        curves: ``{mcs_index: {"snr_db": [...], "bler": [...]}}``.

    ``bler(mcs [N] int, snr_db [N]) -> [N] float64``: log-linear interpolation in SNR of the
    monotone (non-increasing) fit of the measured points; 1 below the measured grid, 0 above it
    (the builder measures until those hold).
    """

    def __init__(self, curves: dict[int, dict], block_bits: int, meta: dict | None = None) -> None:
        missing = [m.index for m in MCS_TABLE if m.index not in curves]
        if missing:
            raise ValueError(f"BLER table for block_bits={block_bits} lacks MCS {missing}")
        self.block_bits = block_bits
        self.meta = meta or {}
        self.curves = curves
        self._snr = [
            torch.tensor(curves[m.index]["snr_db"], dtype=torch.float64) for m in MCS_TABLE
        ]
        # Block error rates fall with SNR: the measured points (noisy at a few dozen blocks)
        # are replaced by their block-weighted monotone (non-increasing) least-squares fit.
        self._logb = [
            torch.from_numpy(_monotone_decreasing(curves[m.index])).clamp_min(_BLER_FLOOR).log()
            for m in MCS_TABLE
        ]

    def bler(self, mcs: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        mcs = torch.as_tensor(mcs).reshape(-1).cpu()
        snr = torch.as_tensor(snr_db, dtype=torch.float64).reshape(-1).cpu()
        out = torch.empty_like(snr)
        for m in torch.unique(mcs).tolist():
            sel = mcs == m
            x = snr[sel].numpy()
            grid, logb = self._snr[m].numpy(), self._logb[m].numpy()
            v = np.exp(np.interp(x, grid, logb))
            v = np.where(x < grid[0], 1.0, v)
            v = np.where(x > grid[-1], 0.0, v)
            v = np.where(v <= _BLER_FLOOR * 1.0001, 0.0, v)
            out[sel] = torch.from_numpy(v)
        return out

    def thresholds_db(self, target_bler: float = 0.1) -> torch.Tensor:
        """``[29]`` float64 SNR (dB) at which each MCS reaches ``target_bler``."""
        return torch.tensor(
            [threshold_from_curve(self.curves[m.index], target_bler) for m in MCS_TABLE],
            dtype=torch.float64,
        )


@lru_cache(maxsize=8)
def load_bler_table(block_bits: int, path: str | None = None) -> BlerTable | None:
    """The shipped (or given) table for ``block_bits``; ``None`` when the file lacks it."""
    p = Path(path) if path else DEFAULT_TABLE_PATH
    if not p.is_file():
        if path:
            raise ValueError(f"BLER table file {p} does not exist")
        return None
    data = json.loads(p.read_text())
    entry = data.get("tables", {}).get(str(block_bits))
    if entry is None:
        return None
    curves = {int(k): v for k, v in entry.get("mcs", {}).items()}
    if len(curves) < len(MCS_TABLE):
        return None
    meta = {k: v for k, v in entry.items() if k != "mcs"}
    return BlerTable(curves, block_bits, meta)


def codec_bler_table(
    block_bits: int,
    path: str | None,
    decoder: str,
    num_iter: int,
    cn_update: str,
    target_unit: str,
    mcs: str | int,
) -> BlerTable | None:
    """The digital codec's BLER table (``load_bler_table``), or ``ValueError`` where its
    settings need one it lacks: the fast decoder (the table's own decoder settings too) and the
    segment target of link adaptation."""
    table = load_bler_table(block_bits, path)
    if decoder == "fast" and table is None:
        raise ValueError(
            f"digital codec: decoder='fast' needs a BLER table for block_bits={block_bits}; "
            "build one with python -m v2x.semcom.bler_table --block-bits "
            f"{block_bits} (or use decoder='exact')"
        )
    if decoder == "fast" and table is not None:
        built = (table.meta.get("num_iter"), table.meta.get("cn_update"))
        if built != (num_iter, cn_update):
            raise ValueError(
                f"digital codec: decoder='fast' reproduces the BLER table's decoder "
                f"(num_iter, cn_update) = {built}, but {(num_iter, cn_update)} was asked; "
                "rebuild the table with python -m v2x.semcom.bler_table or use those values"
            )
    if target_unit not in ("segment", "block", "cells"):
        raise ValueError(
            "digital codec 'target_unit' must be 'segment', 'block' or 'cells', got "
            f"{target_unit!r}"
        )
    if target_unit in ("segment", "cells") and mcs == "auto" and table is None:
        raise ValueError(
            f"digital codec: target_unit={target_unit!r} plans segment losses from the BLER table, "
            f"which has no curves for block_bits={block_bits}; build them with python -m "
            f"v2x.semcom.bler_table --block-bits {block_bits}, or set target_unit='block' "
            "(Shannon-gap thresholds) or a fixed 'mcs'"
        )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--block-bits", type=int, default=1024)
    parser.add_argument("--blocks", type=int, default=40, help="blocks per SNR point")
    parser.add_argument("--mcs", type=str, default="all", help="'all' or comma-separated indices")
    parser.add_argument("--num-iter", type=int, default=20)
    parser.add_argument("--cn-update", type=str, default="boxplus-phi")
    parser.add_argument("--device", type=str, default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64, help="blocks decoded per call")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--out", type=Path, default=DEFAULT_TABLE_PATH)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    indices = (
        [m.index for m in MCS_TABLE] if args.mcs == "all" else [int(s) for s in args.mcs.split(",")]
    )
    existing = json.loads(args.out.read_text()) if args.out.is_file() else None
    build_table(
        args.block_bits, args.blocks, indices, args.num_iter, args.cn_update, args.device,
        args.seed, args.out, existing, args.batch,
    )  # fmt: skip


if __name__ == "__main__":
    main()
