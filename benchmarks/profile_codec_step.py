"""Where a DeepJSCC training step's time goes (``v2x-train-codec``, one process).

Composes an app config (default ``train_codec_pointpillars``, the standard detector's codec),
builds its frozen detector, codec and a few training frames, times ``--steps`` plain steps of
``v2x.codec_training.train_codec_for_task`` (steps/s), then profiles ``--profile-steps`` more
under ``torch.profiler`` and prints the operators by self device time and by self host time.

    python benchmarks/profile_codec_step.py [--config train_codec_pointpillars] [key=value ...]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import replace

import torch
from hydra import compose, initialize_config_module

from v2x.codec_training import codec_train_config, task_codec, train_codec_for_task
from v2x.common import configure_determinism, resolve_device, to_plain
from v2x.loading import detector_from, load_training_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="train_codec_pointpillars")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--profile-steps", type=int, default=8)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the app config")
    args = parser.parse_args()
    with initialize_config_module(config_module="v2x.conf", version_base=None):
        cfg = compose(args.config, overrides=["data.num_sequences=2", *args.overrides])
    configure_determinism(bool(cfg.deterministic))
    device = resolve_device(str(cfg.device))
    detector = detector_from(cfg.checkpoint, to_plain(cfg.model), device)
    codec = task_codec(cfg, detector)
    started = time.perf_counter()
    frames = load_training_frames(cfg.data)
    print(
        f"{len(frames)} frames in {time.perf_counter() - started:.1f} s; codec "
        f"{sum(p.numel() for p in codec.parameters()) / 1e6:.2f} M parameters"
    )
    tmp = tempfile.mkdtemp()
    train = replace(
        codec_train_config(cfg),
        max_seconds=None,
        quiet=True,
        log_every=10**9,
        out_path=f"{tmp}/c.pt",
        log_path=f"{tmp}/log.csv",
    )

    def run(steps: int) -> float:
        def sample(step: int, count: int) -> list:
            return random.Random(step).sample(frames, count)

        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_codec_for_task(codec, detector, sample, replace(train, steps=steps), device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    run(3)  # warm-up: kernels, allocator
    seconds = run(args.steps)
    print(f"{args.steps} steps, batch {train.batch_size}: {args.steps / seconds:.2f} steps/s")
    if args.profile_steps < 1:
        return
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        run(args.profile_steps)
    table = prof.key_averages()
    if device.type == "cuda":
        print(table.table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=60))
    print(table.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60))


if __name__ == "__main__":
    main()
