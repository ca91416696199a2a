"""``python kept_ab.py <repo> <rounds> <frames> <batch>``: warm issue-16 run_sweep calls (fp16 /
fp16, 1e11 Hz) alternating the sweep's feature cache as it now is (the encoder's float16 maps)
and as it was (float32 maps: ``CoopDetector.encode`` ignoring ``float_output`` and
``encoded_dtype`` float32), in one process; one unmeasured call of each first; whether each
call ran its groups in lockstep"""
import sys
from pathlib import Path

repo, rounds, frames, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep as sweep  # noqa: E402
from v2x.perception.detector import CoopDetector  # noqa: E402

kept_encode, kept_dtype = CoopDetector.encode, CoopDetector.encoded_dtype
original_waves = sweep.lockstep_waves
state = {"lockstep": None}


def float_encode(self, *a, float_output=True):
    return kept_encode(self, *a)


def use(name):
    if name == "kept_float16":
        CoopDetector.encode, CoopDetector.encoded_dtype = kept_encode, kept_dtype
    else:
        CoopDetector.encode = float_encode
        CoopDetector.encoded_dtype = property(lambda self: torch.float32)


def waves(ordered, fits):
    state["lockstep"] = not fits
    return original_waves(ordered, fits)


sweep.lockstep_waves = waves
run = cuda_sweep_args(frames=frames, batch_size=batch, bandwidth_hz=1e11, precision="fp16",
                      codec_precision="fp16")
variants = ["kept_float16", "float32"]
rates = {name: [] for name in variants}
for name in variants:
    use(name)
    s = bench_run_sweep(run)
    print(f"first {name}: {s['fc_per_s']:.1f} lockstep={state['lockstep']}", flush=True)
for r in range(rounds):
    for name in (variants if r % 2 == 0 else variants[::-1]):
        use(name)
        s = bench_run_sweep(run)
        rates[name].append(s["fc_per_s"])
        print(f"round {r} {name}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s "
              f"lockstep={state['lockstep']}", flush=True)
for name, rs in rates.items():
    print(f"{name}: " + " ".join(f"{x:.0f}" for x in rs) + f" mean {sum(rs) / len(rs):.0f}")
