"""LDPC decoder throughput: the batched min-sum decoder (``v2x.semcom.ldpc_minsum``) against
Sionna's ``LDPC5GDecoder`` (BP, the digital chain's reference), same process, same LLRs, same
maximum number of iterations.

    python benchmarks/bench_ldpc.py                       # CPU, 512 blocks per MCS
    python benchmarks/bench_ldpc.py --threads 1           # one torch thread (a busy machine)
    python benchmarks/bench_ldpc.py --device cuda --mcs 5,14 --blocks 262144 \
        --sionna-blocks 16384 --early on                  # H200: every GPU mode, < 2 min

For each MCS (default 5, 14, 20, 27) the code is the digital chain's (``block_code(mcs,
block_bits)``: ``block_bits`` information bits incl. CRC, rate-matched to the chain's coded
length, its modulation's output interleaver). Random codewords are Gray-QAM modulated, sent
over AWGN at the SNR where the chain's BLER is 10 % (the link-adaptation operating point, from
the shipped BLER table) plus ``--snr-offset-db``, and demapped to LLRs (``--llr-chunk`` blocks
at a time: Sionna's demapper needs ~0.5 MB per block). Every decoder decodes the same LLRs
(Sionna the first ``--sionna-blocks`` of them). Figures: information bits (``block_bits`` per
block) per second of decoding, the median of ``--repeats`` timed calls after a warm-up, and
the ratio to Sionna; the min-sum decoder with early termination and without it (every block
runs all ``--num-iter`` iterations, as Sionna's always does).

``--modes`` (default ``torch,numba`` on the CPU; ``torch,triton,triton-edges,triton-persistent``
on CUDA): ``torch`` the reference path; ``numba`` the CPU's compiled backend (``ldpc_numba``:
the persistent kernel's algorithm, 64 blocks side by side in vector registers; what
``backend="auto"`` runs on the CPU); ``triton-edges`` one fused kernel launch per row group and
iteration storing one float32 message per edge (16 B per edge per iteration), blocks compacted
between iterations; ``triton`` the same with the compressed check state (what the decoder's
default ``launch="auto"`` runs above 8,192 blocks per call); ``triton-persistent`` what it runs
up to 8,192 (the digital chain's chunks): ONE launch for the whole batch (every iteration, syndrome and early
termination in the kernel, one float32 message per edge in a per-program slot state that can
stay in L2; the launch configuration is tuned on the first large call, and the chosen one and
every configuration's time are printed); a ``-fp16`` suffix stores LLRs and messages in
float16 (opt-in); a ``@BxW`` suffix on a per-layer Triton mode (e.g. ``triton-fp16@256x4``)
runs its row-group kernels with ``B`` blocks per program on ``W`` warps. For Triton modes the
traffic model of ``kernel_bytes_per_iteration`` gives the bytes per edge and the achieved GB/s
(bytes of the iterations run ÷ time, syndrome checks not counted; for ``triton-persistent``
much of it is L2 traffic). Also printed:
the mean number of iterations, the fraction of blocks decoded to the sent codeword, whether
the decoded bits are identical wherever the decoder and Sionna both recovered the block, and
for every mode whether its bits and iteration counts equal those of the first mode of its
storage precision.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch

from v2x.common import code_hash
from v2x.semcom.bler_table import load_bler_table
from v2x.semcom.fec import block_code, device_string
from v2x.semcom.ldpc_minsum import LDPC5GMinSumDecoder


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, x: torch.Tensor, repeats: int) -> tuple[float, object]:
    """Median seconds of ``fn(x)`` over ``repeats`` calls (after one warm-up call on 8 rows)."""
    fn(x[:8])
    times, out = [], None
    for _ in range(repeats):
        _sync(x.device)
        t0 = time.perf_counter()
        out = fn(x)
        _sync(x.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _llrs(
    mcs: int,
    block_bits: int,
    blocks: int,
    snr_db: float,
    device: torch.device,
    gen,
    chunk: int = 16384,
):
    """Information bits ``[blocks, block_bits]`` and channel LLRs ``[blocks, n]`` of the chain's
    LDPC code for ``mcs`` after Gray QAM over AWGN at ``snr_db`` (Es/N0), built ``chunk``
    blocks at a time (the demapper's intermediates are ~0.5 MB per block)."""
    from sionna.phy.mapping import Demapper, Mapper

    dev = device_string(device)
    code = block_code(mcs, block_bits, device=dev)  # the chain's code (rate ≥ 1/5 part)
    enc, qm = code.ldpc_encoder, code.mcs.qm
    mapper, demapper = Mapper("qam", qm, device=dev), Demapper("app", "qam", qm, device=dev)
    u = torch.randint(0, 2, (blocks, block_bits), generator=gen, device=device).float()
    llr = torch.empty(blocks, enc.n, device=device)
    no = 10.0 ** (-snr_db / 10.0)
    for i in range(0, blocks, chunk):
        x = mapper(enc(u[i : i + chunk]))
        noise = torch.randn(*x.shape, 2, generator=gen, device=device) * (no / 2.0) ** 0.5
        llr[i : i + chunk] = demapper(x + torch.view_as_complex(noise), no)
    return enc, u, llr


def _mode(name: str) -> dict:
    """``"triton-edges-fp16"`` → decoder keyword arguments; a suffix ``@BxW`` (e.g.
    ``triton-fp16@256x4``) also sets the per-layer kernel's launch, ``B`` blocks per program on
    ``W`` warps (key ``"_launch"``, not a decoder argument)."""
    name, _, launch = name.partition("@")
    parts = name.split("-")
    ok = {"edges", "fp16", "persistent"}
    if parts[0] not in ("torch", "triton", "numba") or not set(parts[1:]) <= ok:
        raise SystemExit(
            f"--modes: unknown mode {name!r} (torch|numba|triton[-edges|-persistent][-fp16])"
        )
    if parts[0] == "numba" and len(parts) > 1:
        raise SystemExit(f"--modes: {name!r}: numba is float32, one form (no suffix)")
    if "edges" in parts and "persistent" in parts:
        raise SystemExit(f"--modes: {name!r}: -persistent always stores messages per edge")
    persistent = "persistent" in parts
    extra = {}
    if launch:
        try:
            block_b, warps = (int(v) for v in launch.split("x"))
        except ValueError:
            raise SystemExit(
                f"--modes: {name}@{launch}: the launch must be BxW, e.g. 256x4"
            ) from None
        if persistent or parts[0] != "triton":
            raise SystemExit(f"--modes: {name}@{launch}: a launch is for per-layer Triton modes")
        extra["_launch"] = (block_b, warps)
    return extra | {
        "backend": parts[0],
        "check_state": "edges" if "edges" in parts or persistent else "compressed",
        "precision": "fp16" if "fp16" in parts else "fp32",
        "launch": "persistent" if persistent else "per-layer",
    }


@contextlib.contextmanager
def _per_layer_launch(launch: tuple[int, int] | None):
    """The per-layer kernels' launch set to ``(blocks per program, warps)`` for every check
    degree inside the block (``None``: the decoder's own)."""
    from v2x.semcom import ldpc_minsum_launch

    saved = ldpc_minsum_launch._EDGE_LAUNCH, ldpc_minsum_launch._COMPRESSED_LAUNCH
    if launch is not None:
        ldpc_minsum_launch._EDGE_LAUNCH = {False: launch, True: launch}
        ldpc_minsum_launch._COMPRESSED_LAUNCH = {False: launch, True: launch}
    try:
        yield
    finally:
        ldpc_minsum_launch._EDGE_LAUNCH, ldpc_minsum_launch._COMPRESSED_LAUNCH = saved


def _tuning() -> str:
    """The persistent kernel's configuration of the last call, and the configurations timed
    when it was tuned (during this mode's first timed call)."""
    from v2x.semcom.ldpc_persistent import LAUNCHER

    out = f"; config {LAUNCHER.last_config}"
    if LAUNCHER.last_tuning:
        times = ", ".join(f"{c}: {t * 1e3:.0f} ms" for c, t in LAUNCHER.last_tuning)
        out += f" (tuned: {times})"
        LAUNCHER.last_tuning = []
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--mcs", default="5,14,20,27")
    p.add_argument("--block-bits", type=int, default=1024)
    p.add_argument("--blocks", type=int, default=512, help="code blocks per call (min-sum)")
    p.add_argument("--sionna-blocks", type=int, default=0, help="Sionna's blocks (0: --blocks)")
    p.add_argument("--num-iter", type=int, default=20)
    p.add_argument("--snr-offset-db", type=float, default=0.0, help="above the 10 %% BLER SNR")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sionna-repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", default="", help="torch|triton[-edges][-fp16],... (see above)")
    p.add_argument("--early", default="on,off", help="early termination: on, off or on,off")
    p.add_argument("--llr-chunk", type=int, default=16384, help="blocks per demapper call")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dev = device_string(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device {device} ({name or platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, {args.num_iter} iterations, "
        f"{args.block_bits}-bit blocks, v2x code {code_hash()}"
    )
    from sionna.phy.fec.ldpc import LDPC5GDecoder

    table = load_bler_table(args.block_bits)
    gen = torch.Generator(device).manual_seed(args.seed)
    nb_s = args.sionna_blocks or args.blocks
    default = (
        "torch,triton,triton-edges,triton-persistent" if device.type == "cuda" else "torch,numba"
    )
    modes = (args.modes or default).split(",")
    kwargs = {mode: _mode(mode) for mode in modes}
    earlies = [{"on": True, "off": False}[e] for e in args.early.split(",")]
    for m in [int(s) for s in args.mcs.split(",")]:
        snr = (float(table.thresholds_db(0.1)[m]) if table else 10.0) + args.snr_offset_db
        enc, u, llr = _llrs(m, args.block_bits, args.blocks, snr, device, gen, args.llr_chunk)
        sionna = LDPC5GDecoder(enc, num_iter=args.num_iter, hard_out=True, device=dev)
        t_s, u_s = _time(sionna, llr[:nb_s], args.sionna_repeats)
        r_s = nb_s * args.block_bits / t_s
        ok_s = (u_s == u[:nb_s]).all(dim=1)
        print(
            f"MCS {m:2d} (Qm {enc.num_bits_per_symbol}, n {enc.n}, {enc._bg}, Z {enc.z}) at "
            f"{snr:.2f} dB: sionna {r_s / 1e6:9.3f} Mbit/s ({nb_s} blocks, "
            f"{ok_s.float().mean():.4f} recovered)"
        )
        del sionna
        for early in earlies:
            first = {}  # precision: (mode, bits, iterations) of its first mode
            for mode in modes:
                kw = dict(kwargs[mode])
                launch = kw.pop("_launch", None)
                dec = LDPC5GMinSumDecoder(enc, num_iter=args.num_iter, early_stop=early, **kw)
                with _per_layer_launch(launch):
                    t_m, res = _time(dec.decode, llr, args.repeats)
                rate = args.blocks * args.block_bits / t_m
                ok_m = (res.bits == u).all(dim=1)
                both = ok_m[:nb_s] & ok_s
                same = bool((res.bits[:nb_s][both] == u_s[both]).all())
                extra = ""
                if kwargs[mode]["backend"] == "triton":
                    per_it = dec.kernel_bytes_per_iteration()
                    moved = per_it * float(res.iterations.double().sum())
                    extra = (
                        f"; {per_it / dec.num_edges:5.2f} B/edge/iteration, "
                        f"{moved / t_m / 1e9:6.0f} GB/s"
                    )
                ref = first.setdefault(kw["precision"], (mode, res.bits, res.iterations))
                if ref[0] != mode:
                    equal = torch.equal(res.bits, ref[1]) and torch.equal(res.iterations, ref[2])
                    extra += f"; bits+iterations == {ref[0]}: {equal}"
                if kwargs[mode]["launch"] == "persistent":
                    extra += _tuning()
                print(
                    f"        minsum[{mode}, early stop {'on ' if early else 'off'}] "
                    f"{rate / 1e6:9.3f} Mbit/s = {rate / r_s:6.1f}x sionna "
                    f"({args.blocks} blocks, {res.iterations.float().mean():.2f} iterations, "
                    f"{ok_m.float().mean():.4f} recovered; identical where both recovered: "
                    f"{same}{extra})",
                    flush=True,
                )
                del dec, res


if __name__ == "__main__":
    main()
