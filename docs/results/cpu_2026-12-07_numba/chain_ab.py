"""The realistic-payload digital chain on the CPU (``profile_digital_payload.py``'s round trips,
small maps): the compiled LDPC backend (``backend="auto"``) against the torch path, alternated
in one process, one torch thread. (Both decoders give the same bits: tests/semcom.)"""

import sys
import time

import torch

sys.path.insert(0, "/work/main/benchmarks")
torch.set_num_threads(1)
from profile_digital_payload import feature_maps, round_trips  # noqa: E402

from v2x.semcom import ldpc_minsum_backends as mb  # noqa: E402
from v2x.semcom.digital_payload import DigitalPayloadCodec  # noqa: E402

real = mb.MinSumBackends._use_numba
snrs = [-10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0]
x = feature_maps(16, 16, 32, 1.0, 0)
codec = DigitalPayloadCodec(bits=4, harq_max_rounds=1, harq_combining="ir", ldpc_decoder="minsum")
rates = {"numba": [], "torch": []}
for r in range(4):
    for name in ("numba", "torch") if r % 2 == 0 else ("torch", "numba"):
        mb.MinSumBackends._use_numba = real if name == "numba" else (lambda self, device: False)
        torch.manual_seed(0)
        t = time.perf_counter()
        bits = round_trips(codec, x, snrs)
        dt = time.perf_counter() - t
        if r:
            rates[name].append(bits / dt / 1e6)
        print(
            f"round {r} {name}: {dt:.2f} s, {bits / dt / 1e6:.3f} Mbit/s of source bits", flush=True
        )
for k, v in rates.items():
    print(k, "mean", sum(v) / len(v))
