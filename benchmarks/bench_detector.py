"""Cooperative detector throughput, network only (OpenCOOD's benchmark setting).

5 agents on OpenCOOD's 704 x 200 BEV grid (x ±140.8 m, y ±40 m, 0.4 m pillars), ~25k points
per agent: pillar encoder + backbone for every agent, warp to the ego, attention fusion (or max,
``--fusion``), centre head (no NMS, no data loading). For every batch size, precision (fp32;
fp16/bf16 autocast) and execution mode it prints cooperative frames/s and two ratios:

* against the **reference**: OpenCOOD's PointPillar attention-fusion model (6.6 M parameters)
  measured on one H200 with torch 2.11 (124.5 frames/s at batch 1 and 135.7 at batch 8 in fp32,
  176.7 at batch 8 in fp16; the project's reference numbers, see ``OPENCOOD_FPS``); the goal is
  ≥ 2x at batch 1 and 8, fp32 and reduced precision;
* against **our plain model in this process** (fp32, NCHW layout, eager, the same batch: the
  in-run reference, printed as mode ``plain``).

Modes: ``plain`` (always first: fp32, NCHW, eager, batch norms as trained), ``eager`` (batch
norms folded into the layers before them, ``--fold-bn``, in the layout given by
``--channels-last``; reduced precision with its weights stored in its dtype, ``--cast-weights``;
with ``--fuse-relu`` each convolution + bias + ReLU one cuDNN call),
``graph`` (the same network captured once as a CUDA graph for the fixed input shape: no launch
overhead, no host synchronisation; CUDA only), ``compile`` (``torch.compile`` with
``--compile-mode``, one compilation per batch size and precision: tens of seconds each; a mode
without CUDA graphs of its own, ``default`` or ``max-autotune-no-cudagraphs``, is then captured
as one),
``hybrid`` (cuDNN encoder and head, the warp and fusion compiled by inductor with
``--hybrid-compile-mode``, the whole captured as one CUDA graph) and ``triton`` (the warp and
fusion as one Triton kernel, ``v2x.perception.warp_fusion_triton``, inside one CUDA graph).
Precision and layout do not change the fp32 computation; folding changes it by float32
rounding, the compiled and Triton warp-fusion by float32 summation order
(``v2x.perception.inference``; tested). Configurations that would start after ``--budget-s``
seconds are skipped (and say so); a configuration that fails prints its error (and, for a
capture, the host copies and synchronisations ``capture_hazards`` finds) and the others go on.
``--profile K`` prints each configuration's K costliest CUDA kernels. On one H200:

    python benchmarks/bench_detector.py --device cuda    # pointpillars, batch 1 and 8,
                                                         # fp32 and fp16, eager and graph
    python benchmarks/bench_detector.py --device cuda --modes triton hybrid
    python benchmarks/bench_detector.py --device cuda --modes eager compile \\
        --compile-mode reduce-overhead                   # inductor + CUDA graphs

CPU smoke run (small grid and model, seconds):

    python benchmarks/bench_detector.py --device cpu --model small --grid 176 48 \\
        --points 2000 --iters 2 --precision fp32 bf16 --modes eager compile
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

import v2x.conf
from v2x.perception.bev import BEVGrid
from v2x.perception.checkpoint import detector_config_from_dict
from v2x.perception.detector import CoopDetector
from v2x.perception.fusion import build_fusion
from v2x.perception.inference import (
    COMPILE_MODES,
    PRECISIONS,
    capture_graph,
    capture_hazards,
    cast_weights,
    compile_function,
    fold_batchnorm,
    fuse_conv_relu,
)
from v2x.perception.warp import relative_level_transforms, warp_sampling_grid, warp_to_ego

# (batch, precision) -> reference cooperative frames/s on one H200 (batch 1 fp16 not measured:
# the batch-8 figure is used for both batches there; bf16 is compared with the fp16 figure).
OPENCOOD_FPS = {(1, "fp32"): 124.5, (8, "fp32"): 135.7, (1, "fp16"): 176.7, (8, "fp16"): 176.7}
MODES = ("eager", "graph", "compile", "hybrid", "triton")  # after "plain", always measured first
#: compile modes without CUDA graphs of their own: 'compile' captures the compiled network
OWN_GRAPH_MODES = ("default", "max-autotune-no-cudagraphs")


def make_inputs(
    batch: int, agents: int, points: int, device: torch.device, grid: BEVGrid
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Uniform points over the grid: ``[B, A, N, 4]`` points, ``[B, A, N]`` mask (the last 10 %
    of every agent's slots padded), ``[B, A, 4, 4]`` float64 poses 10 m apart along x and the
    ``[B, A, 4, 4]`` ego-to-agent transforms (an input, like OpenCOOD's ``pairwise_t_matrix``,
    which its data loader computes)."""
    g = torch.Generator().manual_seed(0)
    lo = torch.tensor([grid.x_range_m[0], grid.y_range_m[0], -2.0])
    span = torch.tensor(
        [grid.x_range_m[1] - grid.x_range_m[0], grid.y_range_m[1] - grid.y_range_m[0], 4.0]
    )
    xyz = torch.rand(batch, agents, points, 3, generator=g) * span + lo
    pts = torch.cat([xyz, torch.rand(batch, agents, points, 1, generator=g)], -1)
    mask = torch.ones(batch, agents, points, dtype=torch.bool)
    mask[..., int(points * 0.9) :] = False
    poses = torch.eye(4, dtype=torch.float64).repeat(batch, agents, 1, 1)
    poses[..., 0, 3] = torch.linspace(0, 10.0 * (agents - 1), agents, dtype=torch.float64)
    poses[..., 2, 3] = 1.8
    transforms = relative_level_transforms(poses)
    return pts.to(device), mask.to(device), poses.to(device), transforms.to(device)


def warp_fuse_fn(model: CoopDetector, fusion: torch.nn.Module) -> Callable:
    """``(features [B, A, C, h, w], ego_to_agent) -> fused [B, C, h, w]``: the warp and the
    fusion, the memory-bound part between the convolutions (what 'hybrid' compiles)."""

    def warp_fuse(feats, ego_to_agent):
        warped, cov = warp_to_ego(feats, ego_to_agent, model.grid)
        return fusion(warped, cov)

    return warp_fuse


def network_fn(
    model: CoopDetector, fusion: torch.nn.Module, middle: Callable | None = None
) -> Callable:
    """``(points, mask, poses, ego_to_agent) -> (heat, reg)``: encode every agent, warp, fuse,
    head (the network of a cooperative frame, no pre- or post-processing); ``middle`` replaces
    the warp and fusion (``warp_fuse_fn``'s signature)."""
    middle = middle if middle is not None else warp_fuse_fn(model, fusion)

    def network(pts, mask, poses, ego_to_agent):
        # reduced precision: the map reaches the warp in its autocast dtype (cast there)
        feats = model.encode(pts, mask, poses, float_output=False)
        return model.head(middle(feats, ego_to_agent))

    return network


def triton_middle(model: CoopDetector, fusion_name: str) -> Callable:
    """The warp and fusion as one Triton kernel (``v2x.perception.warp_fusion_triton``):
    ``(features [B, A, C, h, w], ego_to_agent) -> fused [B, C, h, w]``."""
    from v2x.perception.warp_fusion_triton import warp_fuse

    def middle(feats, ego_to_agent):
        sample_grid, _ = warp_sampling_grid(ego_to_agent, model.grid, *feats.shape[-2:])
        return warp_fuse(feats, sample_grid, fusion_name)

    return middle


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable, inputs, iters: int, device: torch.device, warmup: int = 3) -> float:
    """Seconds per call of ``fn(*inputs)`` (mean over ``iters`` after ``warmup`` calls)."""
    with torch.no_grad():
        for _ in range(warmup):
            fn(*inputs)
        synchronize(device)
        t = time.perf_counter()
        for _ in range(iters):
            fn(*inputs)
        synchronize(device)
    return (time.perf_counter() - t) / iters


def hazards_line(model: CoopDetector, fusion: torch.nn.Module, inputs) -> str:
    """The first capture hazards of ``model``'s network (``capture_hazards`` on a ``meta``
    copy), or that there are none: printed when a capture fails."""
    meta = copy.deepcopy(model).to("meta")
    with torch.no_grad():
        found = capture_hazards(network_fn(meta, fusion), [t.to("meta") for t in inputs])
    return "; ".join(found[:3]) if found else "none found on meta tensors"


def profile_lines(fn: Callable, inputs, device: torch.device, top: int) -> list[str]:
    """The ``top`` CUDA kernels by device time (operators by self CPU time on the CPU) over 5
    calls, as ``  name  ms per call  share`` lines after the total per call."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    calls = 5
    with torch.no_grad(), profile(activities=activities) as prof:
        for _ in range(calls):
            fn(*inputs)
        synchronize(device)
    if cuda:  # the kernels themselves (an operator's device time would count them twice)
        events = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
        times = [e.device_time_total for e in events]
    else:
        events = list(prof.key_averages())
        times = [e.self_cpu_time_total for e in events]
    ranked = sorted(zip(times, events, strict=True), key=lambda te: te[0], reverse=True)
    total = sum(times) or 1.0
    count = f" in {sum(e.count for e in events) / calls:.0f} kernels" if cuda else ""
    lines = [f"  profile: {total / calls / 1e3:.3f} ms per call{count}"]
    for t, e in ranked[:top]:
        lines.append(f"  {e.key[:96]:96s} {t / calls / 1e3:8.3f} ms {100 * t / total:5.1f} %")
    return lines


def build_model(name: str, grid: BEVGrid, device: torch.device) -> CoopDetector:
    conf_name = "pillars_center" if name == "small" else name
    path = Path(v2x.conf.__file__).parent / "model" / f"{conf_name}.yaml"
    data = yaml.safe_load(path.read_text())
    data.pop("grid", None)
    config = detector_config_from_dict({**data, "grid": dataclasses.asdict(grid)})
    torch.manual_seed(0)
    return CoopDetector(config).to(device).eval()


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--agents", type=int, default=5)
    ap.add_argument("--points", type=int, default=25_000)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--model", default="pointpillars",
                    help="conf/model name: pointpillars (the standard model) or small")  # fmt: skip
    ap.add_argument("--fusion", default="attention", choices=["attention", "max"])
    ap.add_argument("--precision", nargs="+", default=["fp32", "fp16"], choices=list(PRECISIONS))
    ap.add_argument("--modes", nargs="+", default=["eager", "graph"], choices=MODES)
    ap.add_argument("--compile-mode", default="reduce-overhead", choices=COMPILE_MODES,
                    help="torch.compile mode of the 'compile' runs")
    ap.add_argument("--hybrid-compile-mode", default="max-autotune-no-cudagraphs",
                    choices=[m for m in COMPILE_MODES if "no-cudagraphs" in m or m == "default"],
                    help="torch.compile mode of the warp and fusion in 'hybrid' runs (no CUDA "
                    "graphs of its own: the whole network is captured as one)")  # fmt: skip
    ap.add_argument("--budget-s", type=float, default=170.0,
                    help="skip configurations that would start later than this")  # fmt: skip
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--fold-bn", action=argparse.BooleanOptionalAction, default=True,
                    help="fold batch norms into the layers before them (not in 'plain')")  # fmt: skip
    ap.add_argument("--fuse-relu", action=argparse.BooleanOptionalAction, default=False,
                    help="convolution + bias + ReLU as one cuDNN call each (with --fold-bn; "
                    "not in 'plain')")  # fmt: skip
    ap.add_argument("--shuffle-upsample", action="store_true",
                    help="the upsamplers as 1x1 convolution + pixel shuffle, without the fused "
                    "cuDNN call of --fuse-relu (which includes them)")  # fmt: skip
    ap.add_argument("--cast-weights", action=argparse.BooleanOptionalAction, default=True,
                    help="reduced precision: weights stored in its dtype (not in 'plain')")  # fmt: skip
    ap.add_argument("--profile", type=int, default=0, metavar="K",
                    help="after each configuration, its K operators/kernels by device time")  # fmt: skip
    ap.add_argument("--grid", type=int, nargs=2, default=[704, 200], metavar=("W", "H"),
                    help="BEV grid in 0.4 m cells (704 200 for the benchmark; a multiple of 8 "
                    "each, smaller for CPU smoke runs)")  # fmt: skip
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    sx, sy = args.grid[0] * 0.2, args.grid[1] * 0.2
    grid = BEVGrid(x_range_m=(-sx, sx), y_range_m=(-sy, sy), z_range_m=(-1.0, 5.0))
    model = build_model(args.model, grid, device)
    params = sum(p.numel() for p in model.parameters())
    fusion = build_fusion(args.fusion)
    fast = fold_batchnorm(model) if args.fold_bn else model
    if args.fuse_relu or args.shuffle_upsample:
        fast = fuse_conv_relu(fast, cudnn=args.fuse_relu)
    # reduced precision: weights stored in its dtype (autocast casts none per call)
    nets = {p: cast_weights(fast, p) if args.cast_weights and p != "fp32" else fast
            for p in args.precision}  # fmt: skip
    # graph needs CUDA (hybrid, triton and compile run uncaptured elsewhere)
    modes = [m for m in args.modes if m != "graph" or device.type == "cuda"]
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else device}, "
          f"torch {torch.__version__}, model {args.model} ({params / 1e6:.2f} M parameters), grid "
          f"{grid.width}x{grid.height}, agents {args.agents}, points/agent {args.points}, fusion "
          f"{args.fusion}, "
          f"channels_last {args.channels_last}, fold_bn {args.fold_bn}, fuse_relu "
          f"{args.fuse_relu}, shuffle_upsample {args.shuffle_upsample or args.fuse_relu}, "
          f"cast_weights {args.cast_weights}, modes {modes}")  # fmt: skip
    rows = []
    begun = time.perf_counter()
    for b in args.batch:
        inputs = make_inputs(b, args.agents, args.points, device, grid)
        # the in-run reference: the plain model (fp32, NCHW, eager), as the pipeline runs it;
        # then every mode in turn (eager ones first: a failing capture cannot hide them)
        runs = [("fp32", "plain", False)]
        runs += [(p, m, args.channels_last) for m in modes for p in args.precision]
        baseline, reference = math.nan, None
        for precision, mode, channels_last in runs:
            started = time.perf_counter()
            if started - begun > args.budget_s:
                print(f"batch {b} {precision:4s} {mode:7s}: skipped (--budget-s "
                      f"{args.budget_s:g} s spent)", flush=True)  # fmt: skip
                continue
            net = model if mode == "plain" else nets[precision]
            network = network_fn(net, fusion)
            net.configure_inference(precision, channels_last=channels_last)
            try:
                with torch.no_grad():
                    if mode == "hybrid":
                        torch._dynamo.reset()
                        middle = warp_fuse_fn(net, fusion)
                        middle = compile_function(middle, args.hybrid_compile_mode)
                        network = network_fn(net, fusion, middle)
                    elif mode == "triton":
                        network = network_fn(net, fusion, triton_middle(net, args.fusion))
                    fn = network  # eager; 'graph', 'hybrid', 'triton': captured on CUDA
                    if mode == "graph" or (mode in ("hybrid", "triton") and device.type == "cuda"):
                        fn = capture_graph(network, inputs)  # hybrid: compiles in its warm-up
                    elif mode == "compile":
                        torch._dynamo.reset()
                        fn = network = compile_function(network, args.compile_mode)
                        fn(*inputs)  # compile now, outside the timing
                        if device.type == "cuda" and args.compile_mode in OWN_GRAPH_MODES:
                            fn = capture_graph(fn, inputs)  # no CUDA graphs of its own
                    outputs = [o.clone() for o in fn(*inputs)]
                setup_s = time.perf_counter() - started
                fps = b / measure(fn, inputs, args.iters, device)
            except Exception as exc:  # report and go on: the other configurations still count
                print(f"batch {b} {precision:4s} {mode:7s}: failed: {type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}", flush=True)  # fmt: skip
                if mode in ("graph", "hybrid", "triton"):
                    print(f"  capture hazards: {hazards_line(net, fusion, inputs)}", flush=True)
                continue
            if mode == "plain":
                baseline, reference = fps, outputs
            # max |out - plain| / max |plain| over the heatmap logits and box regression
            error = max(float((o - r).abs().max() / r.abs().max().clamp_min(1e-30))
                        for o, r in zip(outputs, reference, strict=True))  # fmt: skip
            ref = OPENCOOD_FPS.get((b, "fp32" if precision == "fp32" else "fp16"), math.nan)
            rows.append({"batch": b, "precision": precision, "mode": mode, "fps": fps,
                         "channels_last": channels_last, "vs_reference": fps / ref,
                         "vs_plain_fp32": fps / baseline, "max_rel_error": error})  # fmt: skip
            print(f"batch {b} {precision:4s} {mode:7s}: {fps:8.1f} coop frames/s | "
                  f"{fps / ref:5.2f}x reference ({ref:.1f}) | {fps / baseline:5.2f}x our plain "
                  f"fp32 | max rel. error vs plain {error:.1e} | setup {setup_s:5.1f} s",
                  flush=True)  # fmt: skip
            if args.profile:  # the kernels of a graph, launched one by one (the profiler
                # may not see inside a graph replay)
                print("\n".join(profile_lines(network, inputs, device, args.profile)), flush=True)
    return rows


if __name__ == "__main__":
    main()
