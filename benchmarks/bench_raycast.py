"""Ray-casting and frame-generation throughput: torch backend (CPU / CUDA) vs open3d.

Scene: a synthetic town with about 200 objects (plus its buildings); scan: a 64-beam × 2048-column
rotating LiDAR (HDL-64 field of view) from the ego's roof. Every figure is measured in this
process, and the torch/open3d ratio is printed against open3d measured in the same run.

    python benchmarks/bench_raycast.py                  # torch on CPU vs open3d
    python benchmarks/bench_raycast.py --device cuda    # torch on the GPU vs open3d on the CPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from v2x.datasets.lidar import LidarConfig, build_lidar
from v2x.datasets.raycast import make_raycaster
from v2x.datasets.raycast_scene import BoxScene
from v2x.datasets.raycast_torch import TorchRaycaster
from v2x.datasets.synthetic_config import SyntheticConfig
from v2x.datasets.synthetic_render import FrameRenderer
from v2x.datasets.synthetic_world import SyntheticWorld


def town_scene(target_objects: int, seed: int) -> tuple[BoxScene, np.ndarray, int, int]:
    """A town with about ``target_objects`` objects; returns scene, ego pose, objects, buildings."""
    cfg = SyntheticConfig(
        blocks=4,
        traffic_density=0.05,
        parked_density=0.08,
        pedestrian_density=0.03,
        cyclist_density=0.02,
    )
    world = SyntheticWorld(cfg, seed)
    boxes, _, _ = world.objects()
    if len(boxes) > target_objects:  # keep the ego's car (a mover) and trim the rest
        keep = np.sort(
            np.random.default_rng(seed).permutation(len(boxes) - 1)[: target_objects - 1]
        )
        ego_box = len(world.parked_boxes) + world.vehicle_agents[0]
        keep = np.unique(np.concatenate([keep[keep != ego_box], [ego_box]]))
    else:
        keep = np.arange(len(boxes))
    pose = world.sensor_poses(boxes)[0][2]
    scene = BoxScene(np.concatenate([boxes[keep], world.buildings]))
    return scene, pose, len(keep), len(world.buildings)


def time_call(fn, repeats: int, sync=None) -> float:
    """Best-of-``repeats`` wall time of ``fn()`` in seconds (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if sync:
            sync()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device for the torch backend")
    parser.add_argument("--beams", type=int, default=64)
    parser.add_argument("--columns", type=int, default=2048)
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=5, help="frames for the frames/s figure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads of the torch backend (0: torch's)"
    )
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    scene, pose, n_obj, n_bld = town_scene(args.objects, args.seed)
    lidar = build_lidar(
        LidarConfig(preset="hdl64", beams=args.beams, columns=args.columns, max_range_m=100.0)
    )
    origin, dirs = pose[:3, 3], lidar.directions @ pose[:3, :3].T
    rays = dirs.shape[0]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    try:
        o3d = make_raycaster("open3d")
        o3d.cast(scene, origin, dirs[:10], 100.0)
    except ImportError as exc:  # e.g. a GPU image without open3d: torch CPU is the reference
        print(f"open3d unavailable ({exc}); the reference is torch on the CPU")
        o3d = None
    tcpu = TorchRaycaster(device="cpu", num_threads=args.threads)
    tdev = TorchRaycaster(device=args.device, num_threads=args.threads)
    results: dict[str, float] = {}
    if o3d is not None:
        results["open3d_s"] = time_call(lambda: o3d.cast(scene, origin, dirs, 100.0), args.repeats)
    results["torch_cpu_s"] = time_call(lambda: tcpu.cast(scene, origin, dirs, 100.0), args.repeats)
    if args.device != "cpu":
        results["torch_dev_s"] = time_call(
            lambda: tdev.cast(scene, origin, dirs, 100.0), args.repeats, sync
        )
    ref_caster = o3d if o3d is not None else tcpu
    a, b = ref_caster.cast(scene, origin, dirs, 100.0), tdev.cast(scene, origin, dirs, 100.0)
    agree = float((a.hit == b.hit).mean())
    both = a.hit & b.hit
    max_dt = float(np.abs(a.t[both] - b.t[both]).max()) if both.any() else 0.0

    # Frames per second of the default world (5 agents), per backend.
    def frames_per_s(backend: str, device: str) -> float:
        cfg = SyntheticConfig(backend=backend, device=device, torch_threads=args.threads)
        world = SyntheticWorld(cfg, args.seed)
        renderer = FrameRenderer(cfg)
        renderer.render(world, 0)
        if sync and device != "cpu":
            sync()
        start = time.perf_counter()
        for i in range(args.frames):
            world.step()
            renderer.render(world, i + 1)
        return args.frames / (time.perf_counter() - start)

    if o3d is not None:
        results["frames_per_s_open3d"] = frames_per_s("open3d", "cpu")
    results["frames_per_s_torch_cpu"] = frames_per_s("torch", "cpu")
    if args.device != "cpu":
        results["frames_per_s_torch_dev"] = frames_per_s("torch", args.device)

    dev_name = (
        torch.cuda.get_device_name(torch.device(args.device))
        if args.device.startswith("cuda")
        else "cpu"
    )
    print(
        f"scene: {n_obj} objects + {n_bld} buildings + ground; scan {args.beams}x{args.columns}"
        f" = {rays} rays; host {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch CPU threads {args.threads or torch.get_num_threads()}; "
        f"device {dev_name}"
    )
    ref_name, ref_s = (
        ("open3d", results["open3d_s"])
        if o3d is not None
        else ("torch cpu", results["torch_cpu_s"])
    )
    print(
        f"hit/miss agreement torch({args.device}) vs {ref_name}: {agree:.5f}; "
        f"max |range difference| {max_dt * 1e3:.3f} mm"
    )
    rows = [("torch (cpu)", results["torch_cpu_s"])]
    if o3d is not None:
        rows.insert(0, ("open3d (cpu)", results["open3d_s"]))
    if "torch_dev_s" in results:
        rows.append((f"torch ({args.device})", results["torch_dev_s"]))
    print(f"{'backend':<20}{'ms/scan':>10}{'Mrays/s':>10}{'x ' + ref_name:>14}")
    for name, sec in rows:
        print(f"{name:<20}{sec * 1e3:>10.1f}{rays / sec / 1e6:>10.2f}{ref_s / sec:>14.2f}")
    print(
        "frames/s (default 5-agent world): "
        + ", ".join(
            f"{k[len('frames_per_s_') :]} {v:.2f}" for k, v in results.items() if "frames" in k
        )
    )
    results.update(
        {"rays": rays, "objects": n_obj, "buildings": n_bld, "agreement": agree,
         "max_range_diff_m": max_dt, "reference": ref_name}
    )  # fmt: skip
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({**results, "device": dev_name}, handle, indent=1)


if __name__ == "__main__":
    main()
