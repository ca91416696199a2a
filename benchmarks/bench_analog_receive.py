"""The analog receiver with the AWGN channel's noise in its own pass, against the channel kernel
then the one-pass receiver (the reference), same process, same maps.

    python benchmarks/bench_analog_receive.py --device cuda
    python benchmarks/bench_analog_receive.py --device cuda --configs 32x32x4,64x32x4,32x64x8

Times ``analog_triton.receive_noisy`` (configs ``pairs x channels x warps`` of its program)
and ``receive(awgn_fused(x))`` interleaved on ``--rows`` maps of ``--channels x --size x --size``
(a condition block of the issue-16 sweep: 32 frames x 4 collaborators), and prints µs per map,
the bandwidth of the minimal traffic (the symbols read once, the float32 maps written once:
8 B per value) and the ratio to the reference; each config's maps are checked bit for bit
against the reference's (on CUDA they may differ by float32 rounding: the largest difference
is printed).
"""

from __future__ import annotations

import argparse
import time

import torch


def _median_us(fn, device: torch.device, iters: int) -> float:
    times = []
    for _ in range(iters):
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] * 1e6


def main() -> None:
    import v2x.semcom.analog_triton as analog
    from v2x.channels.awgn_triton import PendingNoise, awgn_fused

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--rows", type=int, default=32)
    p.add_argument("--channels", type=int, default=384)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--configs", default="32x32x4,64x32x4,32x64x4,32x32x8,64x64x8,16x32x4")
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"device: {torch.cuda.get_device_name(device)}")
    b, c, s = args.rows, args.channels, args.size
    shape = torch.Size((b, c, s, s))
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(b, c * s * s // 2, dtype=torch.complex64, device=device, generator=g)
    noise = PendingNoise(torch.rand(b, device=device) + 0.01, 1234)
    shrink = torch.rand(b, 1, device=device) + 0.5
    scale = torch.rand(b, 1, device=device) + 0.5
    out = torch.empty(shape, device=device).contiguous(memory_format=torch.channels_last)

    def reference() -> torch.Tensor:
        y = awgn_fused(x, noise.noise_variance, noise.seed)
        return analog.receive(y, shrink, scale, shape, out=out)

    want = reference().clone()
    minimal = 8.0 * c * s * s  # bytes per map: 4 read (half a complex64 symbol), 4 written
    ref_us = _median_us(reference, device, args.iters) / b
    print(f"maps: {b} x {c} x {s} x {s}; reference (channel kernel, then receive): "
          f"{ref_us:.1f} us per map, {minimal / ref_us / 1e3:.0f} GB/s of the minimal traffic")
    for config in args.configs.split(","):
        pairs, block_c, warps = (int(v) for v in config.split("x"))
        analog.NOISY_PAIRS, analog.NOISY_BLOCK_C, analog.NOISY_WARPS = pairs, block_c, warps
        got = analog.receive_noisy(x, noise, shrink, scale, shape, out=out)
        same = torch.equal(got, want)
        error = float((got - want).abs().max() / want.abs().max())
        def fused() -> torch.Tensor:
            return analog.receive_noisy(x, noise, shrink, scale, shape, out=out)

        us = min(_median_us(fused, device, args.iters) for _ in range(2)) / b
        ref_again = _median_us(reference, device, args.iters) / b
        print(f"  receive_noisy {config:>9} (pairs x channels x warps): {us:6.1f} us per map, "
              f"{minimal / us / 1e3:5.0f} GB/s, {ref_again / us:.2f}x the reference "
              f"({ref_again:.1f} us in the same round); bits equal: {same}, largest "
              f"difference {error:.1e} of the largest value")


if __name__ == "__main__":
    main()
