"""DeepJSCC throughput on BEV feature maps, against the uncoded analog codec in the same run.

Maps: ``[B, 64, 128, 128]`` float32 (the backbone's intermediate features), default codec config
(hidden 128, two stride-2 stages, K_max = 256 latent channels), bandwidth ratio 1/64, AWGN.
Reported: maps/s of encode → channel → decode (inference), of one training step
(``forward_train`` + backward + Adam), and the ratio to the analog codec's encode → channel →
decode measured here.

    python benchmarks/bench_deepjscc.py                 # CPU
    python benchmarks/bench_deepjscc.py --device cuda   # GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from v2x.channels.awgn import AWGNChannel
from v2x.channels.link import LinkState
from v2x.semcom.deepjscc import DeepJSCCCodec
from v2x.semcom.identity import AnalogCodec


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--ratio", type=float, default=1 / 64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.relu(torch.randn(args.batch, args.channels, args.size, args.size, device=device))
    link = LinkState.from_snr(torch.full((args.batch,), 10.0, device=device))
    channel = AWGNChannel(backend="torch", validate=False)
    codec = DeepJSCCCodec(in_channels=args.channels, bandwidth_ratio=args.ratio).to(device)
    analog = AnalogCodec().to(device)

    def through(c) -> None:
        tx = c.encode(x, link)
        y, state = channel(tx.symbols, link.snr_db)
        c.decode(tx.received(y, state), link)

    codec.eval()
    with torch.no_grad():
        t_jscc = _timed(lambda: through(codec), device, args.repeats)
        t_analog = _timed(lambda: through(analog), device, args.repeats)

    codec.train()
    opt = torch.optim.Adam(codec.parameters(), lr=1e-4)

    def step() -> None:
        out, _ = codec.forward_train(x, link.snr_db, args.ratio, channel=channel)
        loss = codec.standardized_mse(out, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t_train = _timed(step, device, args.repeats)
    uses = codec.channel_uses_for((args.channels, args.size, args.size), args.ratio)
    result = {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "host": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "maps": [args.batch, args.channels, args.size, args.size],
        "params": sum(p.numel() for p in codec.parameters()),
        "channel_uses_per_map": uses,
        "deepjscc_maps_per_s": args.batch / t_jscc,
        "analog_maps_per_s": args.batch / t_analog,
        "deepjscc_time_over_analog": t_jscc / t_analog,
        "train_maps_per_s": args.batch / t_train,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
