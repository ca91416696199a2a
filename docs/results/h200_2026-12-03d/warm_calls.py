"""Warm run_sweep calls (bench_sweep's H200 setting) with the GIL's switch interval set first."""
import argparse, sys
from pathlib import Path
R = Path(sys.argv[1]); si = float(sys.argv[2]); n = int(sys.argv[3])
if si > 0: sys.setswitchinterval(si)
sys.path.insert(0, str(R / "benchmarks"))
from bench_sweep import bench_run_sweep
run = argparse.Namespace(device="cuda", frames=128, batch_size=16,
    snr_db=[-10.0, -5.0, 0.0, 5.0, 10.0, 20.0, 30.0], codecs=["identity", "analog", "deepjscc"],
    fusions=["none", "late", "max"], feature_cache_gb="auto", model="pointpillars",
    small_model=False, checkpoint="shipped")
rates = []
for i in range(n + 1):
    s = bench_run_sweep(run)
    if i: rates.append(s["fc_per_s"])
    print(f"switch {sys.getswitchinterval()*1e3:.3f} ms call {i}: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s", flush=True)
print(f"switch {sys.getswitchinterval()*1e3:.3f} ms warm: " + " ".join(f"{r:.0f}" for r in rates) + f" mean {sum(rates)/len(rates):.0f}")
