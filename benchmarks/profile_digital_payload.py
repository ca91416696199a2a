"""Where the time of one realistic-payload digital link goes: ``digital_payload`` (the whole map
at ``bits`` per value, exact chain, min-sum LDPC, HARQ) over AWGN, as a sweep sends it — one
frame's ``--links`` maps at each SNR of ``--snr-db`` (one ``encode`` → channel → HARQ → decode
call per SNR, the source coding memoised across SNRs as in a sweep).

    python benchmarks/profile_digital_payload.py --device cuda --channels 384 --size 128

The issue-16 setting (1 Mbit per link, a sweep's batch of 16 frames × 4 links, 7 SNRs):

    python benchmarks/profile_digital_payload.py --device cuda --links 64 --channels 64 \
        --size 64 --density 1.0 --snr-db=-10,-5,0,5,10,15,20

Prints information bits/s of the whole round trip and, with ``--profile N``, the N costliest
functions of the main thread (cProfile, cumulative; CUDA work shows up where the host waits
for it) and of the device (torch.profiler, self CUDA time).
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import pstats
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from v2x.channels import build_channel
from v2x.channels.link import LinkState
from v2x.semcom.digital_payload import DigitalPayloadCodec
from v2x.semcom.harq import transmit


def feature_maps(links: int, channels: int, size: int, density: float, seed: int) -> torch.Tensor:
    """``[links, C, H, W]`` float32: non-negative values (a ReLU map) on ``density`` of the
    cells, zero elsewhere (empty BEV cells)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(links, channels, size, size, generator=g))
    occupied = torch.rand(links, 1, size, size, generator=g) < density
    return x * occupied


def round_trips(codec, x: torch.Tensor, snrs: list[float]) -> float:
    """Send ``x`` at every SNR (one call each); returns the source bits sent in all."""
    channel = build_channel("awgn", validate=False)
    bits = 0.0
    for i, snr in enumerate(snrs):
        torch.manual_seed(i)
        snr_db = torch.full((x.shape[0],), snr, device=x.device)
        link = LinkState.before_sending(channel, snr_db)
        tx = codec.encode(x, link)
        transmit(codec, channel, tx, snr_db, link)
        bits += float(tx.cost.source_bits.sum())
    return bits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--links", type=int, default=4, help="maps sent per call (a sweep: frames × 4)")
    p.add_argument("--links-per-frame", type=int, default=4, help="collaborators of a frame")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--density", type=float, default=0.5)
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--harq-rounds", type=int, default=1)
    p.add_argument("--snr-db", default="0,10,20")
    p.add_argument("--profile", type=int, default=0, help="print the N costliest functions")
    p.add_argument("--ldpc-decoder", default="minsum", help="minsum | minsum-fp16 | sionna")
    p.add_argument(
        "--trace",
        default="",
        help="with --profile on CUDA: also write the device pass's Chrome trace (JSON, with the "
        "Python call stack) here",
    )
    p.add_argument(
        "--source-workers",
        type=int,
        default=0,
        help="forked worker processes for the host's source coding and decoding (a sweep "
        "uses v2x.sweep_rows.cell_pool's); 0: in this process",
    )
    args = p.parse_args()
    device = torch.device(args.device)
    snrs = [float(s) for s in args.snr_db.split(",")]
    x = feature_maps(args.links, args.channels, args.size, args.density, 0).to(device)
    codec = DigitalPayloadCodec(
        bits=args.bits,
        harq_max_rounds=args.harq_rounds,
        harq_combining="ir",
        ldpc_decoder=args.ldpc_decoder,
    )
    codec.source_memo = {}  # as a sweep: one source coding per map for all SNRs
    if args.source_workers:
        context = multiprocessing.get_context("fork")
        codec.source_executor = ProcessPoolExecutor(args.source_workers, mp_context=context)
    # warm-up on other maps of the same size: every MCS's kernels and LDPC graphs at the timed
    # pass's block counts (a launch's kernel depends on them); the timed pass source-codes each
    # of its maps once for all SNRs, as a sweep does per frame
    warm = feature_maps(args.links, args.channels, args.size, args.density, 1).to(device)
    round_trips(codec, warm, snrs)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    prof = cProfile.Profile() if args.profile else None
    sync()
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    bits = round_trips(codec, x, snrs)
    sync()
    if prof:
        prof.disable()
    dt = time.perf_counter() - t0
    print(
        f"{args.links} maps {args.channels}x{args.size}x{args.size} at {args.bits} bits, "
        f"SNRs {snrs}: {bits / 1e6:.1f} Mbit of information in {dt:.2f} s = "
        f"{bits / dt / 1e6:.1f} Mbit/s end to end (source coding memoised across SNRs), "
        f"{len(snrs) * args.links / args.links_per_frame / dt:.1f} frame-conditions/s "
        f"({args.links_per_frame} links per frame)"
    )
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.profile)
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
        if device.type == "cuda":
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
            with profile(activities=activities, with_stack=bool(args.trace)) as tp:
                round_trips(codec, x, snrs)
                sync()
            print(tp.key_averages().table(sort_by="self_cuda_time_total", row_limit=args.profile))
            if args.trace:
                tp.export_chrome_trace(args.trace)


if __name__ == "__main__":
    main()
