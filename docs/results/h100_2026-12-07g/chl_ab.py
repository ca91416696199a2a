"""``python chl_ab.py <repo> <rounds> <frames> <batch>``: warm issue-16 run_sweep calls (fp16 /
fp16, 1e11 Hz) alternating the sweep's detector as it is (its convolutions' weights and
features channels-first) and the same detector configured channels-last
(``configure_inference(channels_last=True)``: the features leave the backbone NHWC, so the
ego's map is read by the fusion kernel one row per cell and identity's float16 maps need no
layout copy), in one process; one unmeasured call of each first."""
import sys
from pathlib import Path

repo, rounds, frames, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep_batches as sweep_batches  # noqa: E402

original = sweep_batches.sweep_detector


def channels_last_detector(plan, device):
    model = original(plan, device)
    return model.configure_inference(plan.precision, channels_last=True,
                                     cuda_graph=bool(plan.config.cuda_graph))


variants = {"as_is": original, "channels_last": channels_last_detector}
run = cuda_sweep_args(frames=frames, batch_size=batch, bandwidth_hz=1e11, precision="fp16",
                      codec_precision="fp16")
rates = {name: [] for name in variants}
for name, fn in variants.items():  # first calls: imports, kernels, cuDNN's choices
    sweep_batches.sweep_detector = fn
    print(f"first {name}: {bench_run_sweep(run)['fc_per_s']:.1f}", flush=True)
for r in range(rounds):
    for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
        sweep_batches.sweep_detector = variants[name]
        s = bench_run_sweep(run)
        rates[name].append(s["fc_per_s"])
        print(f"round {r} {name}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
for name, rs in rates.items():
    print(f"{name}: " + " ".join(f"{x:.0f}" for x in rs) + f" mean {sum(rs) / len(rs):.0f}")
