"""Warm run_sweep at <frames> under torch.profiler with stacks; trace to <out>: python idle_trace.py <repo> <frames> <out.json>."""

import sys
from pathlib import Path

repo, frames, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

run = cuda_sweep_args(frames=frames)
for i in range(2):
    s = bench_run_sweep(run)
    print(f"call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], with_stack=True) as p:
    s = bench_run_sweep(run)
print(f"profiled: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
p.export_chrome_trace(out)
from trace_idle import report  # noqa: E402

report(
    out,
    top=40,
    children="_run_features,evaluate_batch,GroupRun.step,_run_group,postprocess,remove_late_payloads,_send_jointly,decode_blocks",
)
