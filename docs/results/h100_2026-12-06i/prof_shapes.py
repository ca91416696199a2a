"""Kernel time by CPU operator and input shape of the DeepJSCC group's batched pipeline (every
frame's features cached), detector × DeepJSCC precision: ``python3 prof_shapes.py <repo root>``
on a CUDA machine (call 4 of this folder, ``c13.sh``)."""

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile


def main(root: str) -> None:
    sys.path.insert(0, root + "/benchmarks")
    import bench_sweep as bs

    from v2x.common import configure_determinism
    from v2x.execution import run_conditions
    from v2x.sweep_reuse import EncodeCache

    configure_determinism(True)
    args = argparse.Namespace(frames=64, batch_size=32, device="cuda", checkpoint="untrained",
                              model="pointpillars", small_model=False)  # fmt: skip
    _, model, batches, device = bs.build(args)
    snr = torch.tensor([-10.0, -5.0, 0.0, 5.0, 10.0, 20.0, 30.0])
    seeds = list(range(7))
    for det, codec in (("fp32", "fp16"), ("fp16", "fp16")):
        model.configure_inference(det)
        with torch.no_grad():
            cache = EncodeCache(model, 64e9)
            pipe = bs.pipeline(cache, "max", "deepjscc", device, codec)

            def one(pipe=pipe, cache=cache) -> None:
                for bi, b in enumerate(batches):
                    cache.batch_index = bi
                    run_conditions(pipe, b, snr, seeds).detections.valid.any().item()

            one()
            torch.cuda.synchronize()
            activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
            with profile(activities=activities, record_shapes=True) as prof:
                one()
                torch.cuda.synchronize()
        print(f"===== detector {det}, codec {codec}")
        table = prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=40,
            max_shapes_column_width=90,
        )  # fmt: skip
        print(table)


if __name__ == "__main__":
    main(sys.argv[1])
