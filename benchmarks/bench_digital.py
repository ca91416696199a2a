"""Digital codec throughput: information bits/s of the exact (Sionna LDPC BP) and fast (BLER
table) decoders, same process, same payload, same channel.

    python benchmarks/bench_digital.py                         # CPU (keep it small)
    python benchmarks/bench_digital.py --device cuda --channels 64 --size 64 --mcs 14

Times ``encode → AWGN → decode`` of one batch of feature maps for both decoders and prints
information bits/s (source bits = entropy-coded stream incl. side information, per second of
the whole round trip), the exact decoder's LDPC share, and the fast / exact ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from v2x.channels import build_channel
from v2x.channels.link import LinkState
from v2x.semcom.digital import DigitalCodec


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(codec: DigitalCodec, x: torch.Tensor, link: LinkState, iters: int) -> tuple[float, float]:
    """Median seconds of one round trip and its source bits."""
    channel = build_channel("awgn", validate=False)
    times = []
    bits = 0.0
    for i in range(iters + 1):  # first call warms up (builds Sionna's LDPC graphs)
        _sync(x.device)
        t0 = time.perf_counter()
        tx = codec.encode(x, link)
        y, state = channel(tx.symbols, link.snr_db.to(x.device))
        codec.decode(tx.received(y, state), link)
        _sync(x.device)
        if i:
            times.append(time.perf_counter() - t0)
        bits = float(tx.cost.source_bits.sum())
    times.sort()
    return times[len(times) // 2], bits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--size", type=int, default=16, help="H = W of the BEV map")
    p.add_argument("--density", type=float, default=0.3, help="fraction of occupied cells")
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--mcs", default="14", help="fixed MCS index or 'auto'")
    p.add_argument("--snr-db", type=float, default=15.0)
    p.add_argument("--iters", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    shape = (args.batch, args.channels, args.size, args.size)
    x = torch.relu(torch.randn(shape, device=device))
    x = x * (torch.rand(args.batch, 1, args.size, args.size, device=device) < args.density)
    link = LinkState.from_snr(args.snr_db, batch=args.batch)
    mcs = args.mcs if args.mcs == "auto" else int(args.mcs)
    results = {}
    for decoder in ("exact", "fast"):
        codec = DigitalCodec(bits=args.bits, mcs=mcs, decoder=decoder)
        t, bits = run(codec, x, link, args.iters)
        results[decoder] = bits / t
        tx = codec.encode(x, link)
        print(
            f"{decoder:5s}: {bits / t / 1e6:9.4f} Mbit/s information "
            f"({bits:.0f} source bits, {sum(tx.meta['num_blocks'])} code blocks, "
            f"MCS {tx.meta['mcs'].tolist()}, {t * 1e3:.1f} ms per round trip)"
        )
    print(f"fast / exact = {results['fast'] / results['exact']:.1f}x  (device {device})")


if __name__ == "__main__":
    main()
