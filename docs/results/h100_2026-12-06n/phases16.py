"""calls.py plus a log of the AP workers' compute_ap tasks (pid, wall start/end) in the phases call:
``python calls3.py <repo> <calls> <phases 0|1> [frames] [batch]``."""
import os
import sys
import time
from pathlib import Path

repo, calls, phases = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
frames = int(sys.argv[4]) if len(sys.argv) > 4 else 512
batch = int(sys.argv[5]) if len(sys.argv) > 5 else 16
sys.path.insert(0, str(repo / "benchmarks"))
import v2x  # noqa: E402
import v2x.sweep_rows as sr  # noqa: E402

if "SCORERS" in os.environ:  # scoring processes (before their pools start)
    import v2x.sweep_scoring as ss  # noqa: E402
    ss.SCORING_PROCESSES = int(os.environ["SCORERS"])
if "CELLS" in os.environ:  # AP worker processes (before the pool starts)
    sr.CELL_PROCESSES = int(os.environ["CELLS"])

print("v2x from", v2x.__file__, flush=True)
LOG = "/tmp/rowlog.txt"
_orig = sr.compute_ap
def compute_ap(acc, bootstrap, seed, unit="auto", groups=None):
    t0 = time.time()
    out = _orig(acc, bootstrap, seed, unit, groups)
    with open(LOG, "a") as f:
        f.write(f"{os.getpid()} {t0:.4f} {time.time():.4f} {acc.state_digest()[:8]} {len(groups or sr.RESULT_GROUPS)}\n")
    return out
compute_ap.__module__, compute_ap.__qualname__ = "v2x.sweep_rows", "compute_ap"
sr.compute_ap = compute_ap
from bench_sweep import EACH_CALL, bench_phases, bench_run_sweep, cuda_sweep_args  # noqa: E402

run = cuda_sweep_args(frames=frames, batch_size=batch)
run.precision = run.codec_precision = os.environ.get("PREC", "fp32")
rates = []
for i in range(calls + 1):
    s = bench_run_sweep(run)
    if i:
        rates.append(s["fc_per_s"])
    print(f"call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
print("warm: " + " ".join(f"{r:.0f}" for r in rates) + f" mean {sum(rates) / len(rates):.0f}")
if phases:
    if os.path.exists(LOG):
        os.remove(LOG)
    each = []
    t0 = time.time()
    for name, thread, n, total, first, last in bench_phases(run, each):
        print(f"  {name:16s} {thread:10s} {n:4d}x {total:7.2f} s  {first:6.2f} .. {last:6.2f} s")
    print("  every call of " + ", ".join(EACH_CALL) + ":")
    for name, thread, a, b in each:
        print(f"    {name:20s} {thread:10s} {a:6.3f} .. {b:6.3f} s")
    print("  AP worker tasks (wall clock from the phases call's start, approx.):")
    rows = []
    if os.path.exists(LOG):
        with open(LOG) as log:
            rows = [line.split() for line in log]
    for pid, a, b, d, g in sorted(rows, key=lambda r: float(r[1])):
        print(f"    pid {pid} {float(a) - t0:6.3f} .. {float(b) - t0:6.3f} s ({float(b) - float(a):.3f}) cell {d} groups {g}")
