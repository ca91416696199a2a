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

``--processes P`` runs the chain in ``P`` processes at once on the same device (each its own
maps, codec and ``--source-workers``; spawned, as CUDA needs), the way a sweep deals its groups
to several workers of one GPU (``device: [cuda:0, cuda:0]``): each process warms up, all start
together, each times ``--passes`` passes on fresh maps, and the figure is every process's
frame-conditions over the span from the first start to the last end (one device's throughput
when the host's work of one process leaves it idle).

    python benchmarks/profile_digital_payload.py --device cuda --links 64 --channels 64 \
        --size 64 --density 1.0 --snr-db=-10,-5,0,5,10,15,20 --source-workers 4 \
        --processes 3 --passes 3
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import pstats
import queue
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from v2x.channels import build_channel
from v2x.channels.link import LinkState
from v2x.common import code_hash
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


def build_codec(args: argparse.Namespace) -> DigitalPayloadCodec:
    """The benchmark's codec: ``--bits``, ``--harq-rounds`` IR rounds, ``--ldpc-decoder``, one
    source coding per map for all SNRs (as a sweep), ``--source-workers`` forked workers."""
    codec = DigitalPayloadCodec(
        bits=args.bits,
        harq_max_rounds=args.harq_rounds,
        harq_combining="ir",
        ldpc_decoder=args.ldpc_decoder,
        skip_undecodable=args.skip_undecodable == "on",
    )
    codec.source_memo = {}  # as a sweep: one source coding per map for all SNRs
    if args.source_workers:
        context = multiprocessing.get_context("fork")
        codec.source_executor = ProcessPoolExecutor(args.source_workers, mp_context=context)
    return codec


def frame_conditions(args: argparse.Namespace, snrs: list[float]) -> float:
    """Frame-conditions of one pass: every SNR for every frame of ``--links`` maps."""
    return len(snrs) * args.links / args.links_per_frame


def timed_passes(
    args: argparse.Namespace, snrs: list[float], rank: int, start: object = None
) -> list[tuple[float, float, float]]:
    """Process ``rank``'s run: a warm-up pass, then (after ``start.wait()``, a barrier shared
    by the processes, when given) ``--passes`` timed passes on fresh maps. Returns each pass's
    ``(start, end, information bits)``, times from ``time.perf_counter`` (system-wide on
    Linux, so comparable between processes)."""
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    codec = build_codec(args)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    maps = [args.channels, args.size, args.density]
    round_trips(codec, feature_maps(args.links, *maps, 1_000 + rank).to(device), snrs)
    sync()
    if start is not None:
        start.wait()
    out = []
    for i in range(args.passes):
        x = feature_maps(args.links, *maps, 2_000 + rank * args.passes + i).to(device)
        sync()
        t0 = time.perf_counter()
        bits = round_trips(codec, x, snrs)
        sync()
        out.append((t0, time.perf_counter(), bits))
    if codec.source_executor is not None:
        codec.source_executor.shutdown()
    return out


def _process(args: argparse.Namespace, snrs: list[float], rank: int, start, results) -> None:
    """A spawned process of ``--processes``: ``timed_passes``, put on ``results``."""
    results.put((rank, timed_passes(args, snrs, rank, start)))


def run_processes(args: argparse.Namespace, snrs: list[float]) -> None:
    """``--processes`` spawned processes on ``--device`` at once; prints each pass and the
    total frame-conditions per second over the span of all timed passes."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(args.processes), context.Queue()
    procs = [
        context.Process(target=_process, args=(args, snrs, r, start, results))
        for r in range(args.processes)
    ]
    for proc in procs:
        proc.start()
    runs = {}
    while len(runs) < len(procs):
        try:
            rank, passes = results.get(timeout=1.0)
            runs[rank] = passes
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:  # a process failed (its traceback is above): stop the others
                for proc in procs:
                    proc.kill()
                raise SystemExit(f"--processes: a process exited with code {dead[0]}") from None
    for proc in procs:
        proc.join()
    fc = frame_conditions(args, snrs)
    for rank in sorted(runs):
        rates = " / ".join(f"{fc / (b - a):.1f}" for a, b, _ in runs[rank])
        print(f"  process {rank}: {rates} frame-conditions/s per pass")
    passes = [p for r in runs.values() for p in r]
    span = max(b for _, b, _ in passes) - min(a for a, _, _ in passes)
    bits = sum(x for _, _, x in passes)
    print(
        f"{args.processes} processes x {args.passes} passes on {args.device} "
        f"({multiprocessing.cpu_count()} CPU cores, {args.source_workers} source-coding workers "
        f"each): {fc * len(passes) / span:.1f} frame-conditions/s, "
        f"{bits / span / 1e6:.1f} Mbit/s of information over {span:.2f} s (v2x code "
        f"{code_hash()})"
    )


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
    p.add_argument(
        "--processes",
        type=int,
        default=0,
        help="run the chain in this many spawned processes at once on --device (module "
        "docstring); 0: the single timed pass in this process",
    )
    p.add_argument(
        "--skip-undecodable",
        choices=("on", "off"),
        default="on",
        help="blocks no decoder could decode declared failed undecoded (v2x.semcom.undecodable)",
    )
    p.add_argument("--passes", type=int, default=3, help="timed passes per --processes process")
    args = p.parse_args()
    device = torch.device(args.device)
    snrs = [float(s) for s in args.snr_db.split(",")]
    if args.processes:
        if args.profile:
            p.error("--profile profiles this process: leave out --processes")
        run_processes(args, snrs)
        return
    x = feature_maps(args.links, args.channels, args.size, args.density, 0).to(device)
    codec = build_codec(args)
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
        f"{frame_conditions(args, snrs) / dt:.1f} frame-conditions/s "
        f"({args.links_per_frame} links per frame; v2x code {code_hash()})"
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
