"""Channel throughput: complex symbols/s through our channels vs Sionna's blocks, same process.

    python benchmarks/bench_channels.py                      # CPU
    python benchmarks/bench_channels.py --device cuda --compile --peak-bw 3.35e12   # H100

Reports, per channel, symbols/s for ours and for the equivalent chain of Sionna blocks called
directly (ratio = ours / Sionna, > 1 is faster), and for the memory-bound flat channels the
achieved fraction of ``--peak-bw``: the minimal traffic of y = h·x + n is 16 B per complex64
symbol (read x, write y; noise generated in registers). The unfused torch path moves 32 B
(randn writes 8 B that addcmul reads back), so 50 % of peak on the 16 B model means the kernels
run at ~100 % of bandwidth on the bytes they actually move.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from v2x.channels import build_channel


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(fn_a, fn_b, device: torch.device, iters: int, warmup: int = 2) -> tuple[float, float]:
    """Median seconds per call of two functions, timed interleaved (a, b, a, b, …) so that
    background load on a shared machine hits both alike."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    _sync(device)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(iters):
        for fn, out in ((fn_a, times[0]), (fn_b, times[1])):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            out.append(time.perf_counter() - t0)
    return tuple(sorted(t)[len(t) // 2] for t in times)  # type: ignore[return-value]


def bench_flat(args, device: torch.device) -> list[dict]:
    from sionna.phy.channel import AWGN, GenerateFlatFadingChannel

    dev = f"cuda:{device.index or 0}" if device.type == "cuda" else "cpu"
    b, n = args.batch, args.n
    x = torch.view_as_complex(torch.randn(b, n, 2, device=device) * math.sqrt(0.5))
    snr = torch.full((b,), 10.0, device=device)
    no = torch.pow(10.0, -snr / 10).reshape(-1, 1)
    awgn = build_channel("awgn", validate=False, compile=args.compile)
    ray = build_channel("rayleigh", validate=False, compile=args.compile)
    s_awgn = AWGN(device=dev)
    s_gen = GenerateFlatFadingChannel(1, 1, device=dev)

    def sionna_rayleigh():
        h = s_gen(b)[:, :, 0]  # [B, 1]
        return s_awgn(h * x, no)

    rows = []
    with torch.no_grad():
        for name, ours, ref in (
            ("awgn", lambda: awgn(x, snr), lambda: s_awgn(x, no)),
            ("rayleigh (block)", lambda: ray(x, snr), sionna_rayleigh),
        ):
            t_ours, t_ref = compare(ours, ref, device, args.iters)
            rows.append(
                {
                    "channel": name,
                    "ours": b * n / t_ours,
                    "sionna": b * n / t_ref,
                    "bw_frac": b * n * 16 / t_ours / args.peak_bw,
                }
            )
    return rows


def bench_tdl(args, device: torch.device) -> dict:
    import numpy as np
    from sionna.phy.channel import OFDMChannel
    from sionna.phy.channel.tr38901 import TDL
    from sionna.phy.mimo import StreamManagement
    from sionna.phy.ofdm import LMMSEEqualizer, LSChannelEstimator, ResourceGrid, ResourceGridMapper

    dev = f"cuda:{device.index or 0}" if device.type == "cuda" else "cpu"
    ours = build_channel(
        "tdl", model="A", delay_spread_s=100e-9, speed_mps=30.0, return_csi=False, validate=False
    )
    nd = ours.data_per_grid()
    grids = args.tdl_grids
    x = torch.view_as_complex(torch.randn(grids, nd, 2, device=device) * math.sqrt(0.5))
    snr = torch.full((grids,), 10.0, device=device)
    rg = ResourceGrid(
        14,
        72,
        30e3,
        1,
        1,
        6,
        pilot_pattern="kronecker",
        pilot_ofdm_symbol_indices=[2, 11],
        device=dev,
    )
    mapper = ResourceGridMapper(rg, device=dev)
    tdl = TDL("A", 100e-9, 5.9e9, min_speed=30.0, max_speed=30.0, device=dev)
    chan = OFDMChannel(tdl, rg, return_channel=False, device=dev)
    est = LSChannelEstimator(rg, interpolation_type="lin", device=dev)
    eq = LMMSEEqualizer(rg, StreamManagement(np.ones([1, 1]), 1), device=dev)
    no = torch.pow(10.0, -snr / 10)

    def sionna_chain():
        y = chan(mapper(x.reshape(grids, 1, 1, nd)), no)
        h_hat, err = est(y, no)
        return eq(y, h_hat, err, no)

    with torch.no_grad():
        t_ours, t_ref = compare(
            lambda: ours(x, snr), sionna_chain, device, max(3, args.iters // 2), warmup=1
        )
    return {
        "channel": "tdl-A ofdm (LS+LMMSE)",
        "ours": grids * nd / t_ours,
        "sionna": grids * nd / t_ref,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="complex symbols/s through the channels")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n", type=int, default=65536, help="symbols per transmission")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--tdl-grids", type=int, default=64, help="OFDM resource grids per TDL call")
    p.add_argument("--peak-bw", type=float, default=3.35e12, help="peak memory bandwidth, B/s")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the AWGN and Rayleigh kernels (CUDA)"
    )
    p.add_argument("--skip-tdl", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows = bench_flat(args, device)
    if not args.skip_tdl:
        rows.append(bench_tdl(args, device))
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()} threads"
    )
    print(f"device: {name}; batch={args.batch} n={args.n}; peak bandwidth {args.peak_bw:.3g} B/s")
    print(
        f"{'channel':26s} {'ours sym/s':>12s} {'sionna sym/s':>13s} {'ratio':>6s} {'% peak BW (16 B/sym)':>21s}"
    )
    for r in rows:
        bw = f"{100 * r['bw_frac']:.1f}" if "bw_frac" in r else "-"
        ratio = r["ours"] / r["sionna"]
        print(f"{r['channel']:26s} {r['ours']:12.3e} {r['sionna']:13.3e} {ratio:6.2f} {bw:>21s}")
    return rows


if __name__ == "__main__":
    main()
