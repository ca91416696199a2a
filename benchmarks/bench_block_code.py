"""The block code's two ends: ``BlockCode.encode`` (CRC, LDPC encoding, rate matching,
scrambling, QAM mapping) and ``BlockCode.llr`` (noise clean-up, exact demapper, descrambling),
compiled — Triton on a GPU (``v2x.semcom.ldpc_encode_triton``, ``v2x.semcom.qam_triton``),
numba on the CPU (``v2x.semcom.block_code_numba``) — against the torch path (Sionna's encoder
and mapper, the separable demapper in torch) in the same process.

    python benchmarks/bench_block_code.py --device cuda [--blocks 65536] [--mcs 0,5,14,20,27]
    python benchmarks/bench_block_code.py [--blocks 2048]          # CPU: numba against torch

Prints, per MCS, million code blocks per second of each end on each path (median of
``--iters`` calls after a warm-up), their ratio, and checks the outputs: the symbols bit for
bit, the LLRs to float32 rounding. Without Triton (GPU) or numba (CPU) only the torch path
runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import v2x.semcom.fec as fec


def _median_seconds(fn: Callable[[], torch.Tensor], device: torch.device, iters: int) -> float:
    times = []
    for _ in range(iters + 1):  # the first call compiles and builds the tables
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def measure(code, bits: torch.Tensor, no: torch.Tensor, iters: int, compiled_on: bool) -> list:  # noqa: ANN001
    """``[(end, torch seconds, compiled seconds or None, same output or None)]`` for encode and
    llr of ``bits [N, payload_bits]`` (the LLRs of its symbols plus noise of variance 0.5)."""
    device = bits.device
    real = fec.triton_available, fec.compiled_on_host
    with torch.no_grad():
        fec.triton_available = lambda: False  # the torch path
        fec.compiled_on_host = lambda t: False
        try:
            x = code.encode(bits)
            y = x + torch.randn_like(x) * 0.5
            ref = (x, code.llr(y, no))
            slow = [_median_seconds(lambda: code.encode(bits), device, iters),
                    _median_seconds(lambda: code.llr(y, no), device, iters)]  # fmt: skip
        finally:
            fec.triton_available, fec.compiled_on_host = real
        if not compiled_on:
            return [("encode", slow[0], None, None), ("llr", slow[1], None, None)]
        fast_out = (code.encode(bits), code.llr(y, no))
        fast = [_median_seconds(lambda: code.encode(bits), device, iters),
                _median_seconds(lambda: code.llr(y, no), device, iters)]  # fmt: skip
    atol = 1e-5 * float(ref[1].abs().max())
    same = [torch.equal(fast_out[0], ref[0]),
            torch.allclose(fast_out[1], ref[1], rtol=1e-5, atol=atol)]  # fmt: skip
    return [(end, s, f, ok) for end, s, f, ok in zip(("encode", "llr"), slow, fast, same)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--blocks", type=int, default=0, help="code blocks per call (0: 65,536 on "
                   "CUDA, 256 on a CPU)")  # fmt: skip
    p.add_argument("--mcs", default="0,5,14,20,27")
    p.add_argument("--iters", type=int, default=5)
    args = p.parse_args()
    device = torch.device(args.device)
    blocks = args.blocks or (65536 if device.type == "cuda" else 2048)
    name = f"cuda:{device.index or 0}" if device.type == "cuda" else "cpu"
    if device.type == "cuda":
        compiler, compiled_on = "Triton", fec.triton_available()
    else:
        compiler, compiled_on = "numba", fec.compiled_on_host(torch.zeros(0))
    print(f"{blocks} blocks of 1,024 bits per call on {name} ({torch.get_num_threads()} CPU "
          f"threads); {compiler} {'on' if compiled_on else 'off'}")  # fmt: skip
    print(f"MCS | end | torch Mblocks/s | {compiler} Mblocks/s | × torch | same output")
    g = torch.Generator().manual_seed(0)
    for mcs in (int(m) for m in args.mcs.split(",")):
        code = fec.BlockCode(mcs, 1024, device=name, ldpc_decoder="minsum")
        bits = torch.randint(0, 2, (blocks, code.payload_bits), generator=g).float().to(device)
        no = torch.full((blocks, 1), 0.5, device=device)
        for end, slow, fast, same in measure(code, bits, no, args.iters, compiled_on):
            rate = f"{blocks / slow / 1e6:.3f}"
            if fast is None:
                print(f"{mcs} | {end} | {rate} | - | - | -")
            else:
                print(
                    f"{mcs} | {end} | {rate} | {blocks / fast / 1e6:.3f} | {slow / fast:.1f} | {same}"
                )


if __name__ == "__main__":
    main()
