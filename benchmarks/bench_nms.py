"""Throughput of rotated BEV IoU, rotated NMS and the AP evaluator, against shapely loops.

Every figure is printed with a ratio against a reference measured in the same process:
shapely ``Polygon.intersection/union`` per pair for IoU, a textbook greedy NMS loop over shapely
polygons for NMS, and an OpenCOOD-style per-detection shapely matching loop for evaluation.

    python benchmarks/bench_nms.py                 # CPU
    python benchmarks/bench_nms.py --device cuda   # GPU (the shapely references stay on CPU)

On CUDA the IoU and NMS rows also time the torch construction (``boxes_triton`` switched off in
the same process) and print the kernel's ratio to it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from shapely.geometry import Polygon

from v2x.perception.ap_config import EvalConfig
from v2x.perception.average_precision import APAccumulator
from v2x.perception.boxes import boxes_to_corners_bev, rotated_iou_bev
from v2x.perception.nms import batched_rotated_nms


def random_boxes(rng: np.random.Generator, n: int, extent_m: float) -> np.ndarray:
    """``[n, 7]`` car-sized boxes spread uniformly over a square of side ``2 * extent_m``."""
    boxes = np.zeros((n, 7))
    boxes[:, 0:2] = rng.uniform(-extent_m, extent_m, (n, 2))
    boxes[:, 3] = rng.uniform(3.5, 5.0, n)
    boxes[:, 4] = rng.uniform(1.6, 2.2, n)
    boxes[:, 5] = 1.6
    boxes[:, 6] = rng.uniform(-math.pi, math.pi, n)
    return boxes


def polygons(boxes: np.ndarray) -> list[Polygon]:
    corners = boxes_to_corners_bev(torch.from_numpy(boxes)).numpy()
    return [Polygon(c) for c in corners]


def timeit(fn: Callable[[], object], device: str, min_time_s: float = 0.5) -> float:
    """Seconds per call (median of repeated batches, after a warm-up)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fn()
    sync()
    times = []
    total = 0.0
    while total < min_time_s or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        sync()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return float(np.median(times))


@contextlib.contextmanager
def torch_form() -> Iterator[None]:
    """The torch construction of the rotated areas (``boxes._intersection_area_quads``) instead
    of the one-launch Triton kernels (``boxes_triton``), inside the block."""
    import v2x.perception.boxes as boxes_module
    import v2x.perception.nms as nms_module

    saved = boxes_module.use_box_kernel
    boxes_module.use_box_kernel = nms_module.use_box_kernel = lambda *boxes: False
    try:
        yield
    finally:
        boxes_module.use_box_kernel = nms_module.use_box_kernel = saved


def against_torch_form(fn: Callable[[], object], sec: float, device: str) -> str:
    """On CUDA: `` | kernel R× the torch form``, ``R`` the ratio of ``fn``'s seconds under
    ``torch_form`` to ``sec`` (``""`` elsewhere)."""
    if not device.startswith("cuda"):
        return ""
    with torch_form():
        ref = timeit(fn, device)
    return f" | kernel {ref / sec:5.2f}x the torch form"


def shapely_iou_matrix(pa: list[Polygon], pb: list[Polygon]) -> np.ndarray:
    out = np.zeros((len(pa), len(pb)))
    for i, p in enumerate(pa):
        for j, q in enumerate(pb):
            inter = p.intersection(q).area
            out[i, j] = inter / (p.area + q.area - inter)
    return out


def shapely_nms(pols: list[Polygon], scores: np.ndarray, thr: float) -> list[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            inter = pols[i].intersection(pols[j]).area
            if inter / (pols[i].area + pols[j].area - inter) <= thr:
                rest.append(j)
        order = rest
    return keep


def bench_iou(args: argparse.Namespace, rng: np.random.Generator) -> None:
    print(f"\n== rotated BEV IoU, {args.n} x {args.n} pairs ==")
    for label, extent in (("dense (all overlap-candidates)", 1.0), ("scene (100 m x 100 m)", 50.0)):
        a = random_boxes(rng, args.n, extent)
        b = random_boxes(rng, args.n, extent)
        ta = torch.tensor(a, dtype=torch.float32, device=args.device)
        tb = torch.tensor(b, dtype=torch.float32, device=args.device)
        sec = timeit(lambda ta=ta, tb=tb: rotated_iou_bev(ta, tb), args.device)
        ours = args.n * args.n / sec
        k = min(args.ref_n, args.n)
        pa, pb = polygons(a[:k]), polygons(b[:k])
        ref_sec = timeit(lambda pa=pa, pb=pb: shapely_iou_matrix(pa, pb), "cpu", 0.2)
        ref = k * k / ref_sec
        err = np.abs(
            rotated_iou_bev(ta[:k], tb[:k]).double().cpu().numpy() - shapely_iou_matrix(pa, pb)
        ).max()
        versus = against_torch_form(lambda ta=ta, tb=tb: rotated_iou_bev(ta, tb), sec, args.device)
        print(
            f"  {label:<32s} torch {ours:12.3e} pairs/s | shapely {ref:10.3e} pairs/s | "
            f"ratio {ours / ref:8.1f}x | max |diff| {err:.1e}{versus}"
        )


def bench_nms(args: argparse.Namespace, rng: np.random.Generator) -> None:
    print(f"\n== batched rotated NMS: {args.batch} sets x {args.nms_n} boxes, IoU > 0.1 ==")
    sets, scores = [], []
    for _ in range(args.batch):
        # detections clustered around objects, as a detector head produces them
        centres = random_boxes(rng, max(1, args.nms_n // 10), 40.0)
        pick = rng.integers(0, len(centres), args.nms_n)
        boxes = centres[pick].copy()
        boxes[:, 0:2] += rng.normal(0, 0.7, (args.nms_n, 2))
        boxes[:, 6] += rng.normal(0, 0.2, args.nms_n)
        sets.append(boxes)
        scores.append(rng.uniform(0, 1, args.nms_n))
    tb = torch.tensor(np.stack(sets), dtype=torch.float32, device=args.device)
    ts = torch.tensor(np.stack(scores), dtype=torch.float32, device=args.device)
    sec = timeit(lambda: batched_rotated_nms(tb, ts, iou_threshold=0.1), args.device)
    ours = args.batch / sec
    pols = polygons(sets[0])
    ref_sec = timeit(lambda: shapely_nms(pols, scores[0], 0.1), "cpu", 0.2)
    ref = 1.0 / ref_sec
    got = batched_rotated_nms(tb[:1], ts[:1], iou_threshold=0.1)
    same = got.indices[0][got.mask[0]].tolist() == [
        int(i) for i in shapely_nms(pols, scores[0], 0.1)
    ]
    versus = against_torch_form(
        lambda: batched_rotated_nms(tb, ts, iou_threshold=0.1), sec, args.device
    )
    if versus:
        with torch_form():
            plain = batched_rotated_nms(tb, ts, iou_threshold=0.1)
        full = batched_rotated_nms(tb, ts, iou_threshold=0.1)
        versus += f" (same keep sets: {torch.equal(plain.indices, full.indices)})"
    print(
        f"  torch {ours:10.1f} sets/s ({ours * args.nms_n:.3e} boxes/s) | "
        f"shapely loop {ref:8.1f} sets/s | ratio {ours / ref:8.1f}x | same keep set: {same}"
        f"{versus}"
    )


def bench_eval(args: argparse.Namespace, rng: np.random.Generator) -> None:
    print(f"\n== evaluator: {args.frames} frames, ~30 GT / ~40 detections each ==")
    frames = []
    for _ in range(args.frames):
        gt = random_boxes(rng, 30, 50.0)
        det = gt[rng.uniform(size=30) < 0.8].copy()
        det[:, 0:2] += rng.normal(0, 0.4, (len(det), 2))
        det = np.concatenate([det, random_boxes(rng, 16, 50.0)])
        frames.append((det, rng.uniform(0, 1, len(det)), gt))
    torch_frames = [
        (torch.tensor(d, dtype=torch.float32, device=args.device), torch.tensor(s), torch.tensor(g))
        for d, s, g in frames
    ]

    def run() -> None:
        acc = APAccumulator(EvalConfig())  # 3 thresholds, overall + 3 distance bins
        for d, s, g in torch_frames:
            acc.add_frame(d, s, None, g.to(args.device))
        acc.compute()

    def run_batched() -> None:
        acc = APAccumulator(EvalConfig())
        acc.add_frames(
            {"det_boxes": d, "det_scores": s, "gt_boxes": g.to(args.device)}
            for d, s, g in torch_frames
        )
        acc.compute()

    ours = args.frames / timeit(run, args.device, 0.2)
    ours_batched = args.frames / timeit(run_batched, args.device, 0.2)

    def reference(n: int) -> None:  # OpenCOOD-style loop, overall group only, 3 thresholds
        for det, s, gt in frames[:n]:
            for thr in (0.3, 0.5, 0.7):
                remaining = polygons(gt)
                for i in np.argsort(-s):
                    p = polygons(det[i : i + 1])[0]
                    ious = [p.intersection(q).area / p.union(q).area for q in remaining]
                    if ious and max(ious) >= thr:
                        remaining.pop(int(np.argmax(ious)))

    n_ref = min(args.frames, 20)
    ref = n_ref / timeit(lambda: reference(n_ref), "cpu", 0.2)
    versus = against_torch_form(run_batched, args.frames / ours_batched, args.device)
    print(
        f"  add_frame  {ours:8.1f} frames/s | add_frames {ours_batched:8.1f} frames/s "
        f"(overall + 3 distance bins, 3 thresholds) | shapely loop {ref:6.1f} frames/s "
        f"(overall only) | ratio {ours / ref:6.1f}x / {ours_batched / ref:6.1f}x"
        f"{versus.replace('kernel', 'add_frames with the kernel')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--n", type=int, default=500, help="boxes per side of the IoU matrix")
    parser.add_argument("--ref-n", type=int, default=60, help="boxes per side for shapely")
    parser.add_argument("--batch", type=int, default=8, help="NMS sets per batch")
    parser.add_argument("--nms-n", type=int, default=300, help="boxes per NMS set")
    parser.add_argument("--frames", type=int, default=200, help="frames for the evaluator")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"device: {args.device} ({name}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    bench_iou(args, rng)
    bench_nms(args, rng)
    bench_eval(args, rng)


if __name__ == "__main__":
    main()
