"""The ego-side warp + fusion kernel (``v2x.perception.warp_fusion_triton.fuse_collaborators``,
what ``fuse_at_ego`` runs in CUDA inference for max and attention fusion) against the torch
path it replaces (``sample_maps`` + the fusion's ``fuse_warped``), same process, same inputs.

    python benchmarks/bench_ego_fusion.py                      # the kernel alone, sweep shapes
    python benchmarks/bench_ego_fusion.py --sweep-ab 2         # and run_sweep with it off / on

Part 1: ``N`` fused maps of ``--collaborators`` ``--channels × size²`` maps, channels-first
and channels-last (``--layouts``; one frame batch, and ``K = 7`` conditions of it), milliseconds
per call, the ratio to torch, and GB/s of the minimum traffic (collaborators read once, the ego
and the fused map once), for each ``(cells per program, warps)`` of ``--configs``, writing the
channels-last fused map ``fuse_collaborators`` returns; the default launch of each layout is
``EGO_LAUNCH``'s.
Part 2 (``--sweep-ab R``, the standard detector, shipped checkpoint): ``R`` rounds of warm
``run_sweep`` calls alternating the torch path and the kernel (``bench_sweep``'s setting:
128 frames, identity / analog / DeepJSCC × none / late / max, 7 SNRs), then one 64-frame max
fusion sweep each way (AWGN and Rayleigh) with the number of AP values that differ.
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
import tempfile
import time
from pathlib import Path

import torch


def _time(fn, reps: int = 5) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def bench_kernel(
    n: int, e: int, m: int, c: int, size: int, configs: list[tuple[int, int]], last: bool
) -> None:
    import triton

    from v2x.perception import warp_fusion_triton as wf
    from v2x.perception.fusion import build_fusion
    from v2x.perception.warp import sample_maps

    dev = torch.device("cuda")
    g = torch.Generator(dev).manual_seed(0)
    collab = torch.randn(n, m, c, size, size, device=dev, generator=g)
    if last:  # each map channels-last, as DeepJSCC's and the analog receiver's are
        collab = collab.view(n * m, c, size, size).contiguous(memory_format=torch.channels_last)
        collab = collab.view(n, m, c, size, size)
    ego = torch.randn(e, 1, c, size, size, device=dev, generator=g)
    theta = torch.tensor([[0.98, -0.17, 0.1], [0.17, 0.98, -0.05]], device=dev)
    grid = torch.nn.functional.affine_grid(
        theta.repeat(n * m, 1, 1), [n * m, 1, size, size], align_corners=False
    )
    valid = (grid.abs() <= 1).all(-1).view(n, m, 1, size, size)
    fusion = build_fusion("max")

    def torch_path() -> torch.Tensor:
        warped = sample_maps(collab.reshape(-1, c, size, size), grid)
        warped = warped.view(n, m, c, size, size)
        return fusion.fuse_warped(ego.repeat(n // e, 1, 1, 1, 1), warped, valid)

    def kernel(block: int, warps: int) -> torch.Tensor:
        sent = valid.reshape(n * m, -1).to(torch.uint8)
        out = torch.empty(n, c, size, size, device=dev, memory_format=torch.channels_last)
        own = ego[:, 0]
        wf._fuse_at_ego_kernel[(triton.cdiv(size * size, block), n)](
            own, collab, grid, sent, out, m, c, size, size, size, size, e,
            *own.stride(), *collab.stride(), *out.stride(), math.sqrt(c),
            ATTENTION=False, BLOCK_P=block, BLOCK_C=triton.next_power_of_2(c), num_warps=warps,
        )  # fmt: skip
        return out

    ref = torch_path()
    t_ref = _time(torch_path)
    moved = (n * m + n + e) * c * size * size * 4
    layout = "channels-last" if last else "channels-first"
    print(f"N={n} fused maps, {m} {layout} collaborators, {c}x{size}x{size}: torch "
          f"{t_ref * 1e3:.2f} ms "
          f"({moved / t_ref / 1e9:.0f} GB/s of the minimum traffic)")  # fmt: skip
    for block, warps in configs:
        err = float((kernel(block, warps) - ref).abs().max() / ref.abs().max())
        t = _time(lambda: kernel(block, warps))  # noqa: B023
        mark = " (default)" if (block, warps) == wf.EGO_LAUNCH[last] else ""
        print(f"    {block:3d} cells, {warps:2d} warps{mark}: {t * 1e3:7.2f} ms = {t_ref / t:.2f}x "
              f"torch, {moved / t / 1e9:5.0f} GB/s, max rel. difference {err:.1e}", flush=True)  # fmt: skip


def sweep_ab(rounds: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_sweep as bs
    import pyarrow.parquet as pq

    import v2x.perception.ego_fusion as ef
    from v2x.sweep import run_sweep

    kernel_mode = ef._kernel_mode
    paths = {"torch": lambda *a: None, "kernel": kernel_mode}
    args = argparse.Namespace(
        device="cuda", frames=128, batch_size=16, snr_db=[-10.0, -5.0, 0.0, 5.0, 10.0, 20.0, 30.0],
        codecs=["identity", "analog", "deepjscc"], fusions=["none", "late", "max"],
        feature_cache_gb=8, model="pointpillars", small_model=False, checkpoint="shipped",
    )  # fmt: skip
    bs.bench_run_sweep(args)  # warm-up
    for rnd in range(rounds):
        for name, fn in paths.items():
            ef._kernel_mode = fn
            s = bs.bench_run_sweep(args)
            print(f"round {rnd} {name:6s}: run_sweep {s['fc_per_s']:.1f} frame-conditions/s "
                  f"({s['wall_s']:.2f} s)", flush=True)  # fmt: skip
    rows = {}
    for name, fn in paths.items():
        ef._kernel_mode = fn
        out = tempfile.mkdtemp()
        grid = {"snr_db": args.snr_db, "codecs": args.codecs, "fusions": ["max"],
                "channels": ["awgn", "rayleigh"]}  # fmt: skip
        run_sweep({"checkpoint": "shipped", "device": "cuda", "model": bs.model_section(args),
                   "data": {"num_frames": 64, "frames_per_sequence": 10, "seed": 0},
                   "batch_size": 16, "grid": grid, "output_dir": out, "quiet": True})  # fmt: skip
        path = [p for p in glob.glob(f"{out}/*.parquet") if "ledger" not in p][0]
        key = ("fusion", "codec", "channel", "snr_db")
        rows[name] = {tuple(r[k] for k in key): r for r in pq.read_table(path).to_pylist()}
    ef._kernel_mode = kernel_mode
    values = differ = 0
    for key, row in rows["torch"].items():
        for col, a in row.items():
            if "ap" in col.split("_") and isinstance(a, float):
                b = rows["kernel"][key][col]
                values += 1
                differ += not (a == b or (a != a and b != b))
    print(
        f"64 frames, {len(rows['torch'])} max-fusion cells: {differ} of {values} AP values differ"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=16, help="fused maps of one frame batch")
    p.add_argument("--conditions", type=int, default=7, help="condition blocks in the second run")
    p.add_argument("--collaborators", type=int, default=4)
    p.add_argument("--channels", type=int, default=384)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--configs", default="1x1,2x1,2x2,4x2,4x4,8x4,16x8,16x16,32x8",
                   help="cellsxwarps,...")
    p.add_argument("--layouts", default="first,last", help="the collaborators' maps: first,last")
    p.add_argument("--sweep-ab", type=int, default=0, help="rounds of run_sweep off / on")
    args = p.parse_args()
    print(f"device: {torch.cuda.get_device_name(0)}")
    configs = [tuple(int(v) for v in cfg.split("x")) for cfg in args.configs.split(",")]
    for layout in args.layouts.split(","):
        for blocks in (1, args.conditions):
            n = args.frames * blocks
            bench_kernel(n, args.frames, args.collaborators, args.channels, args.size, configs,
                         layout == "last")  # fmt: skip
            torch.cuda.empty_cache()
    if args.sweep_ab:
        sweep_ab(args.sweep_ab)


if __name__ == "__main__":
    main()
