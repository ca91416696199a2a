"""``python mem_probe.py <repo> <frames> <batch>``: each group's device working set in a sweep
(fp16 / fp32 detector and DeepJSCC precisions): run_sweep with one codec (max fusion; and the
ego-only and late groups alone) and no feature cache, the peak allocated memory less what was
allocated before and less the one batch of features the cache keeps, in units of one batch's
float32 features per condition (WORKING_SET_BATCHES_PER_CONDITION's unit)."""
import sys
from pathlib import Path

repo, frames, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, str(repo / "benchmarks"))
import torch  # noqa: E402
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

values = 384 * 128 * 128 * 5 * batch  # one batch's features (5 agents)
unit = values * 4
settings = [("fp16", "fp16"), ("fp32", "fp32")]
groups = [(["analog"], ["max"]), (["deepjscc"], ["max"]), (["identity", "analog", "deepjscc"], ["none", "late", "max"])]
for det, codec in settings:
    for codecs, fusions in groups:
        run = cuda_sweep_args(frames=frames, batch_size=batch, codecs=codecs, bandwidth_hz=1e11,
                              precision=det, codec_precision=codec)
        run.fusions, run.feature_cache_gb = fusions, "0"
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        base_reserved = torch.cuda.memory_reserved()
        torch.cuda.reset_peak_memory_stats()
        s = bench_run_sweep(run)
        peak = torch.cuda.max_memory_allocated() - before
        reserved = torch.cuda.max_memory_reserved() - base_reserved
        kept = values * (2 if det != "fp32" else 4)
        ws = (peak - kept) / unit / 7
        print(f"det {det} codec {codec} {fusions[0]}/{codecs[0]}: peak {peak / 1e9:.1f} GB, "
              f"working set {(peak - kept) / 1e9:.1f} GB = {ws:.2f} float32 batches per "
              f"condition; peak reserved {reserved / 1e9:.1f} GB: {(reserved - kept) / unit / 7:.2f} "
              f"per condition ({s['fc_per_s']:.0f} fc/s)", flush=True)
