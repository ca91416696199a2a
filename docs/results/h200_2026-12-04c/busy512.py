"""GPU busy time per sweep group in a warm run_sweep: python busy512.py <repo> <frames>."""

import json
import sys
import time
from pathlib import Path

repo, frames = Path(sys.argv[1]), int(sys.argv[2])
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

import v2x.sweep as sw  # noqa: E402

orig = sw._run_group


def labelled(plan, group, *a, **k):
    with record_function(f"grp:{group.fusion}/{group.codec}/{group.channel}"):
        out = orig(plan, group, *a, **k)
        torch.cuda.synchronize()
        return out


sw._run_group = labelled
run = cuda_sweep_args(frames=frames)
for i in range(2):
    s = bench_run_sweep(run)
    print(f"call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
    t0 = time.perf_counter()
    s = bench_run_sweep(run)
    wall = time.perf_counter() - t0
print(f"profiled: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
p.export_chrome_trace("/tmp/busy.json")
ev = json.load(open("/tmp/busy.json"))["traceEvents"]  # noqa: SIM115
dev = sorted(
    (e["ts"], e["ts"] + e["dur"])
    for e in ev
    if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and "dur" in e
)
merged = []
for a, b in dev:
    if merged and a <= merged[-1][1]:
        merged[-1][1] = max(merged[-1][1], b)
    else:
        merged.append([a, b])


def busy(lo, hi):
    return sum(max(0, min(b, hi) - max(a, lo)) for a, b in merged if b > lo and a < hi)


tot = sum(b - a for a, b in merged)
print(
    f"device busy {tot / 1e3:.1f} ms in the {wall * 1e3:.0f} ms call ({100 * tot / 1e3 / (wall * 1e3):.0f} %)"
)
for e in sorted(
    (e for e in ev if str(e.get("name", "")).startswith("grp:") and e.get("ph") == "X"),
    key=lambda e: e["ts"],
):
    lo, hi = e["ts"], e["ts"] + e["dur"]
    print(
        f"  {e['name']:28s} span {e['dur'] / 1e3:8.1f} ms  GPU busy {busy(lo, hi) / 1e3:8.1f} ms ({100 * busy(lo, hi) / e['dur']:.0f} %)"
    )
