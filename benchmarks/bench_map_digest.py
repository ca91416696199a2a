"""The digital chain's source-coding memo keys of a batch of maps (``v2x.semcom.digital_source``):
``map_digest`` row by row (a host copy and a SHA-256 per map, the reference) against
``map_digests`` (the rows copied together, hashed side by side on threads), in this process.

    python benchmarks/bench_map_digest.py                     # CPU: 64 maps of 64 x 64 x 64
    python benchmarks/bench_map_digest.py --device cuda       # the copies from the GPU too

Every map is new in every repeat (fresh tensors, as each frame batch of a sweep brings), so
both sides hash all of them; the digests are checked equal.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from v2x.semcom.digital_source import map_digest, map_digests


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--maps", type=int, default=64, help="rows of the batch (a sweep: frames × 4)")
    p.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], help="C H W per map")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    times: dict[str, list[float]] = {"row by row": [], "batched": []}
    for _ in range(args.repeats):
        for name in times:  # alternated, each on fresh maps
            maps = torch.randn(args.maps, *args.shape, device=device)
            _sync(device)
            t0 = time.perf_counter()
            cache: dict = {}
            if name == "batched":
                map_digests(maps, cache)
            keys = [map_digest(maps[r], cache) for r in range(args.maps)]
            times[name].append(time.perf_counter() - t0)
            if name == "batched":  # the same digests as row by row
                assert keys == [map_digest(maps[r], {}) for r in range(args.maps)]
    mb = args.maps * torch.Size(args.shape).numel() * 4 / 1e6
    ref, new = min(times["row by row"]), min(times["batched"])
    print(f"{args.maps} maps of {'x'.join(map(str, args.shape))} float32 ({mb:.0f} MB) on "
          f"{device}, {os.cpu_count()} cores; best of {args.repeats}:")  # fmt: skip
    print(f"  map_digest row by row (reference): {ref * 1e3:8.1f} ms")
    print(f"  map_digests batched:               {new * 1e3:8.1f} ms  ({ref / new:.2f}x)")


if __name__ == "__main__":
    main()
