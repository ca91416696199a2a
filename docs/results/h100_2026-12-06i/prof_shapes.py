"""Kernel time by CPU op and input shape for the DeepJSCC group's pipeline (cached features)."""
import sys, argparse, torch
sys.path.insert(0, sys.argv[1] + "/benchmarks")
import bench_sweep as bs
from torch.profiler import profile, ProfilerActivity
from v2x.common import configure_determinism
configure_determinism(True)
args = argparse.Namespace(frames=64, batch_size=32, device="cuda", checkpoint="untrained", model="pointpillars", small_model=False)
frames, model, batches, device = bs.build(args)
from v2x.execution import run_conditions
from v2x.sweep_reuse import EncodeCache
snr = torch.tensor([-10.0, -5.0, 0.0, 5.0, 10.0, 20.0, 30.0]); seeds = list(range(7))
for det, codec in (("fp32", "fp16"), ("fp16", "fp16")):
    model.configure_inference(det)
    with torch.no_grad():
        cache = EncodeCache(model, 64e9)
        pipe = bs.pipeline(cache, "max", "deepjscc", device, codec)
        def one():
            for bi, b in enumerate(batches):
                cache.batch_index = bi
                run_conditions(pipe, b, snr, seeds).detections.valid.any().item()
        one(); torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
            one(); torch.cuda.synchronize()
    print(f"===== detector {det}, codec {codec}")
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=40, max_shapes_column_width=90))
