"""``python f16_ab.py <repo> <rounds> <frames> <batch>``: warm issue-16 run_sweep calls (fp16 /
fp16, 1e11 Hz) alternating the sweep's encoder features as they are (float32 out of the fp16
autocast) and kept in float16 (``encode(float_output=False)``, the cache counting 2 bytes a
value): a timing probe, not a results path. Prints whether each call ran its groups in lockstep."""
import functools
import sys
from pathlib import Path

repo, rounds, frames, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

import v2x.sweep as sweep  # noqa: E402
import v2x.sweep_batches as sweep_batches  # noqa: E402
from v2x.sweep_reuse import EncodeCache  # noqa: E402

original_detector = sweep_batches.sweep_detector
original_hold = EncodeCache.would_hold
original_waves = sweep.lockstep_waves
state = {"half": False, "lockstep": None}


def detector(plan, device):
    model = original_detector(plan, device)
    if state["half"]:
        model.encode = functools.partial(type(model).encode, model, float_output=False)
    return model


def would_hold(self, batch, num_frames):
    if not state["half"]:
        return original_hold(self, batch, num_frames)
    agents = batch.agent_mask.shape[1]
    frame_bytes = agents * self.map_values * 2
    self._reserve_for(frame_bytes * batch.batch_size)
    return frame_bytes * num_frames <= self._max_bytes - self._bytes


def waves(ordered, fits):
    state["lockstep"] = not fits
    return original_waves(ordered, fits)


sweep_batches.sweep_detector = detector
EncodeCache.would_hold = would_hold
sweep.lockstep_waves = waves
run = cuda_sweep_args(frames=frames, batch_size=batch, bandwidth_hz=1e11, precision="fp16",
                      codec_precision="fp16")
variants = {"float32_features": False, "float16_features": True}
rates = {name: [] for name in variants}
for name, half in variants.items():
    state["half"] = half
    s = bench_run_sweep(run)
    print(f"first {name}: {s['fc_per_s']:.1f} lockstep={state['lockstep']} "
          f"peak {torch.cuda.max_memory_allocated() / 1e9:.1f} GB", flush=True)
for r in range(rounds):
    for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
        state["half"] = variants[name]
        s = bench_run_sweep(run)
        rates[name].append(s["fc_per_s"])
        print(f"round {r} {name}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s "
              f"lockstep={state['lockstep']}", flush=True)
for name, rs in rates.items():
    print(f"{name}: " + " ".join(f"{x:.0f}" for x in rs) + f" mean {sum(rs) / len(rs):.0f}")
