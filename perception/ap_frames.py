"""The frames going into an ``APAccumulator`` (``v2x.perception.average_precision``): each
frame validated, range-filtered and its detections sorted by score (``_Frame``), and the IoUs of
many frames from one batched call; ``FramePreparation`` is the accumulator's base that does it,
and ``add_frame_sets`` fills many accumulators with shared batched IoU calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from v2x.perception.ap_range import _cached_range_mask, _gt_in_range, range_mask
from v2x.perception.boxes import iou_3d, rotated_iou_bev

if TYPE_CHECKING:
    from v2x.perception.average_precision import APAccumulator

__all__ = ["FramePreparation", "add_frame_sets"]


def _as_tensor(x: Any, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except Exception as exc:  # noqa: BLE001 - re-raised with the field name
            raise ValueError(f"{name}: cannot convert {type(x).__name__} to a tensor") from exc
    return t if dtype is None else t.to(dtype)


def _host_array(x: Any, name: str) -> np.ndarray:
    """``_as_tensor(x, name).cpu().numpy()``, with no torch call for a numeric numpy array
    (the same array: what that round trip returns)."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        return x
    return _as_tensor(x, name).cpu().numpy()


@dataclass
class _Frame:
    """One validated, range-filtered frame with detections in descending score order."""

    det_boxes: torch.Tensor  # [D, 7] float64
    gt_boxes: torch.Tensor  # [G, 7] float64
    scores: np.ndarray  # [D]
    det_lab: np.ndarray  # [D] int64
    gt_lab: np.ndarray  # [G] int64
    ignore: np.ndarray  # [G] bool
    subsets: dict[str, np.ndarray]  # name -> [G] bool
    labelled: bool = False  # labels were given
    sequence: Any = None  # the frame's sequence (town, scene: the bootstrap unit), or None


def _padding(batch: int, n: int, x_m: float, device: torch.device) -> torch.Tensor:
    """``[batch, n, 7]`` unit boxes at ``(x_m, 0, 0)``."""
    pad = torch.zeros(batch, n, 7, dtype=torch.float64, device=device)
    pad[..., 0] = x_m
    pad[..., 3:6] = 1.0
    return pad


class FramePreparation:
    """The frame intake of ``APAccumulator`` (a base of it): validation, the range filter, the
    per-frame score order and the batched IoU of prepared frames. Reads the accumulator's
    ``config`` and keeps its ``_labelled``, ``_subset_names`` and ``_classes`` up to date."""

    def _prepare_item(
        self,
        item: Mapping[str, Any],
        replicas: Sequence[APAccumulator] = (),
        keep_d: torch.Tensor | None = None,
    ) -> _Frame:
        """``_prepare`` of one ``add_frames`` item, admitted in every replica (``keep_d``: its
        detections' range mask, from ``_det_range_masks``)."""
        frame = self._prepare(
            item["det_boxes"],
            item["det_scores"],
            item.get("det_labels"),
            item["gt_boxes"],
            item.get("gt_labels"),
            item.get("gt_ignore_mask"),
            item.get("gt_subsets"),
            keep_d=keep_d,
        )
        frame.sequence = item.get("sequence")
        for acc in replicas:
            acc._admit(frame)
        return frame

    def _det_range_masks(self, items: Sequence[Mapping[str, Any]]) -> list[torch.Tensor | None]:
        """Each item's detection ``range_mask`` from one call on all of them (an element-wise
        test: what ``_prepare`` computes frame by frame), or ``None`` per item where there is no
        range or an item is not a CPU float ``[D, 7]`` tensor or array (``_prepare`` then
        validates and computes it)."""
        cfg = self.config
        none: list[torch.Tensor | None] = [None] * len(items)
        if cfg.eval_range is None or len(items) < 2:
            return none
        boxes = []
        for item in items:
            b = item["det_boxes"]
            if isinstance(b, np.ndarray) and b.dtype.kind == "f":
                b = torch.from_numpy(b)
            ok = isinstance(b, torch.Tensor) and b.ndim == 2 and b.shape[1] == 7
            if not ok or not b.is_floating_point() or b.device.type != "cpu":
                return none
            boxes.append(b.detach().to(torch.float64))
        mask = range_mask(torch.cat(boxes), cfg.eval_range, cfg.range_mode, ground_truth=False)
        return list(mask.split([b.shape[0] for b in boxes]))

    def _admit(self, frame: _Frame) -> None:
        """The state checks and updates ``_prepare`` makes, for a frame prepared elsewhere."""
        if self._labelled is None:
            self._labelled = frame.labelled
        elif frame.labelled != self._labelled:
            raise ValueError(
                "det_labels/gt_labels: give labels for every frame or for none "
                f"(earlier frames: {'with' if self._labelled else 'without'} labels)"
            )
        names = tuple(sorted(frame.subsets))
        self._admit_subset_names(names)
        self._classes.update(int(c) for c in np.unique(frame.gt_lab))
        self._classes.update(int(c) for c in np.unique(frame.det_lab))

    def _iou(self, frames: list[_Frame]) -> list[np.ndarray]:
        """``[D_f, G_f]`` float64 IoU per frame, from one batched (padded) IoU call."""
        out = [np.zeros((f.det_boxes.shape[0], f.gt_boxes.shape[0])) for f in frames]
        busy = [i for i, f in enumerate(frames) if f.det_boxes.shape[0] and f.gt_boxes.shape[0]]
        if not busy:
            return out
        iou_fn = rotated_iou_bev if self.config.iou_mode == "bev" else iou_3d
        if len(busy) == 1:
            f = frames[busy[0]]
            out[busy[0]] = iou_fn(f.det_boxes, f.gt_boxes).cpu().numpy()
            return out
        device = frames[busy[0]].det_boxes.device
        dmax = max(frames[i].det_boxes.shape[0] for i in busy)
        gmax = max(frames[i].gt_boxes.shape[0] for i in busy)
        # padding: unit boxes far away on opposite sides, never candidates for any pair
        on_host = all(
            t.device.type == "cpu" for i in busy for t in (frames[i].det_boxes, frames[i].gt_boxes)
        )
        if on_host:  # filled in numpy (plain copies, no torch call per frame)
            det_np = _padding(len(busy), dmax, 1e7, device).numpy()
            gt_np = _padding(len(busy), gmax, -1e7, device).numpy()
            for k, i in enumerate(busy):
                det_np[k, : frames[i].det_boxes.shape[0]] = frames[i].det_boxes.numpy()
                gt_np[k, : frames[i].gt_boxes.shape[0]] = frames[i].gt_boxes.numpy()
            det, gt = torch.from_numpy(det_np), torch.from_numpy(gt_np)
        else:
            det = _padding(len(busy), dmax, 1e7, device)
            gt = _padding(len(busy), gmax, -1e7, device)
            for k, i in enumerate(busy):
                det[k, : frames[i].det_boxes.shape[0]] = frames[i].det_boxes.to(device)
                gt[k, : frames[i].gt_boxes.shape[0]] = frames[i].gt_boxes.to(device)
        iou = iou_fn(det, gt).cpu().numpy()
        for k, i in enumerate(busy):
            out[i] = iou[k, : frames[i].det_boxes.shape[0], : frames[i].gt_boxes.shape[0]]
        return out

    def _prepare(
        self,
        det_boxes: torch.Tensor | np.ndarray,
        det_scores: torch.Tensor | np.ndarray,
        det_labels: torch.Tensor | np.ndarray | None,
        gt_boxes: torch.Tensor | np.ndarray,
        gt_labels: torch.Tensor | np.ndarray | None = None,
        gt_ignore_mask: torch.Tensor | np.ndarray | None = None,
        gt_subsets: Mapping[str, torch.Tensor | np.ndarray] | None = None,
        keep_d: torch.Tensor | None = None,
    ) -> _Frame:
        """Validate one frame, apply the range filter and sort detections by score
        (``keep_d``: the detections' ``range_mask``, when already computed)."""
        cfg = self.config
        numeric = (det_boxes, det_scores, gt_boxes)
        if all(isinstance(x, np.ndarray) and x.dtype.kind in "biuf" for x in numeric):
            # numpy in, numpy through (no torch call): the same tests and values
            return self._prepare_host(
                det_boxes, det_scores, det_labels, gt_boxes, gt_labels, gt_ignore_mask,
                gt_subsets, keep_d,
            )  # fmt: skip
        det_boxes = _as_tensor(det_boxes, "det_boxes")
        gt_boxes = _as_tensor(gt_boxes, "gt_boxes")
        if det_boxes.numel() == 0:
            det_boxes = det_boxes.reshape(0, 7)
        if gt_boxes.numel() == 0:
            gt_boxes = gt_boxes.reshape(0, 7)
        if det_boxes.ndim != 2 or det_boxes.shape[1] != 7:
            raise ValueError(f"det_boxes: expected [D, 7], got {tuple(det_boxes.shape)}")
        if gt_boxes.ndim != 2 or gt_boxes.shape[1] != 7:
            raise ValueError(f"gt_boxes: expected [G, 7], got {tuple(gt_boxes.shape)}")
        d, g = det_boxes.shape[0], gt_boxes.shape[0]
        # IoU in float64 (like shapely), so TP decisions at the threshold do not depend on the
        # detector's dtype
        det_boxes = det_boxes.to(torch.float64)
        gt_boxes = gt_boxes.to(dtype=torch.float64, device=det_boxes.device)
        scores = _as_tensor(det_scores, "det_scores", torch.float64).reshape(-1).cpu()
        if scores.shape[0] != d:
            raise ValueError(f"det_scores: expected [D] = [{d}], got {tuple(scores.shape)}")
        on_host = det_boxes.device.type == "cpu"  # then numpy: the same tests, fewer torch calls
        det_np = det_boxes.numpy() if on_host else None
        gt_np = gt_boxes.numpy() if on_host else None
        scores_np = scores.numpy()
        if on_host:
            finite = np.isfinite(det_np).all() and np.isfinite(scores_np).all()
        else:
            finite = torch.isfinite(det_boxes).all() and torch.isfinite(scores).all()
        if not finite:
            raise ValueError("det_boxes/det_scores: contain non-finite values")
        if not (np.isfinite(gt_np).all() if on_host else torch.isfinite(gt_boxes).all()):
            raise ValueError("gt_boxes: contains non-finite values")
        labelled, det_lab, gt_lab, ignore, subsets = self._annotations(
            det_labels, gt_labels, gt_ignore_mask, gt_subsets, d, g
        )

        # evaluation range: drop boxes outside before anything else
        if cfg.eval_range is not None:
            if keep_d is None:
                keep_d = range_mask(det_boxes, cfg.eval_range, cfg.range_mode, ground_truth=False)
            keep_g = _gt_in_range(gt_boxes, cfg.eval_range, cfg.range_mode)
            keep_d_np, keep_g = keep_d.cpu().numpy(), keep_g.cpu().numpy()
            if on_host:
                det_np, gt_np = det_np[keep_d_np], gt_np[keep_g]
            else:
                det_boxes, gt_boxes = det_boxes[keep_d], gt_boxes[keep_g]
            scores_np, det_lab = scores_np[keep_d_np], det_lab[keep_d_np]
            gt_lab, ignore = gt_lab[keep_g], ignore[keep_g]
            subsets = {k: v[keep_g] for k, v in subsets.items()}

        # per-frame score order (stable, descending; the order of torch's stable argsort)
        order = np.argsort(-scores_np, kind="stable")
        scores_np = scores_np[order]
        if on_host:
            det_boxes, gt_boxes = torch.from_numpy(det_np[order]), torch.from_numpy(gt_np)
        else:
            det_boxes = det_boxes[torch.from_numpy(order).to(det_boxes.device)]
        det_lab = det_lab[order]
        self._classes.update(gt_lab.tolist())  # int64 arrays: Python ints
        self._classes.update(det_lab.tolist())

        return _Frame(det_boxes, gt_boxes, scores_np, det_lab, gt_lab, ignore, subsets, labelled)

    def _annotations(
        self,
        det_labels: Any,
        gt_labels: Any,
        gt_ignore_mask: Any,
        gt_subsets: Mapping[str, Any] | None,
        d: int,
        g: int,
    ) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """A frame's labels, ignore mask and GT subsets, checked (``D`` detections, ``G`` GT
        boxes): ``(labelled, det_labels [D], gt_labels [G], ignore [G] bool, subsets)``; labels
        must be given for every frame or for none."""
        labelled = det_labels is not None or gt_labels is not None
        if self._labelled is None:
            self._labelled = labelled
        elif labelled != self._labelled:
            raise ValueError(
                "det_labels/gt_labels: give labels for every frame or for none "
                f"(earlier frames: {'with' if self._labelled else 'without'} labels)"
            )
        det_lab = self._labels(det_labels, d, "det_labels")
        gt_lab = self._labels(gt_labels, g, "gt_labels")
        ignore = np.zeros(g, dtype=bool)
        if gt_ignore_mask is not None:
            ignore = _host_array(gt_ignore_mask, "gt_ignore_mask").astype(bool)
            if ignore.shape != (g,):
                raise ValueError(f"gt_ignore_mask: expected [G] = [{g}], got {ignore.shape}")
        return labelled, det_lab, gt_lab, ignore, self._subsets(gt_subsets, g)

    def _prepare_host(
        self,
        det_boxes: np.ndarray,
        det_scores: np.ndarray,
        det_labels: Any,
        gt_boxes: np.ndarray,
        gt_labels: Any,
        gt_ignore_mask: Any,
        gt_subsets: Mapping[str, Any] | None,
        keep_d: torch.Tensor | np.ndarray | None,
    ) -> _Frame:
        """``_prepare`` of numeric numpy boxes and scores, in numpy: the same checks in the
        same order with the same messages, the same float64 values, range masks (torch's,
        ``range_mask``) and stable score order."""
        cfg = self.config
        if det_boxes.size == 0:
            det_boxes = det_boxes.reshape(0, 7)
        if gt_boxes.size == 0:
            gt_boxes = gt_boxes.reshape(0, 7)
        if det_boxes.ndim != 2 or det_boxes.shape[1] != 7:
            raise ValueError(f"det_boxes: expected [D, 7], got {tuple(det_boxes.shape)}")
        if gt_boxes.ndim != 2 or gt_boxes.shape[1] != 7:
            raise ValueError(f"gt_boxes: expected [G, 7], got {tuple(gt_boxes.shape)}")
        d, g = det_boxes.shape[0], gt_boxes.shape[0]
        det_np = det_boxes.astype(np.float64, copy=False)
        gt_np = gt_boxes.astype(np.float64, copy=False)
        scores_np = det_scores.astype(np.float64, copy=False).reshape(-1)
        if scores_np.shape[0] != d:
            raise ValueError(f"det_scores: expected [D] = [{d}], got {tuple(scores_np.shape)}")
        if not (np.isfinite(det_np).all() and np.isfinite(scores_np).all()):
            raise ValueError("det_boxes/det_scores: contain non-finite values")
        if not np.isfinite(gt_np).all():
            raise ValueError("gt_boxes: contains non-finite values")
        labelled, det_lab, gt_lab, ignore, subsets = self._annotations(
            det_labels, gt_labels, gt_ignore_mask, gt_subsets, d, g
        )
        if cfg.eval_range is not None:
            if keep_d is None:
                keep_d = range_mask(
                    torch.from_numpy(det_np), cfg.eval_range, cfg.range_mode, ground_truth=False
                )
            keep_d_np = keep_d.numpy() if isinstance(keep_d, torch.Tensor) else keep_d
            if g:  # the cached mask of this GT set (every condition scores the same GT)
                rng = tuple(float(v) for v in cfg.eval_range)
                key = np.ascontiguousarray(gt_np).tobytes()
                keep_g = _cached_range_mask(key, rng, cfg.range_mode).numpy()
            else:
                keep_g = np.zeros(0, dtype=bool)
            det_np, gt_np = det_np[keep_d_np], gt_np[keep_g]
            scores_np, det_lab = scores_np[keep_d_np], det_lab[keep_d_np]
            gt_lab, ignore = gt_lab[keep_g], ignore[keep_g]
            subsets = {k: v[keep_g] for k, v in subsets.items()}
        order = np.argsort(-scores_np, kind="stable")
        scores_np, det_lab = scores_np[order], det_lab[order]
        det_t = torch.from_numpy(np.ascontiguousarray(det_np[order]))
        gt_t = torch.from_numpy(np.ascontiguousarray(gt_np))
        self._classes.update(gt_lab.tolist())
        self._classes.update(det_lab.tolist())
        return _Frame(det_t, gt_t, scores_np, det_lab, gt_lab, ignore, subsets, labelled)

    def _labels(self, labels: Any, n: int, name: str) -> np.ndarray:
        if labels is None:
            return np.zeros(n, dtype=np.int64)
        arr = _host_array(labels, name).reshape(-1)
        if arr.shape != (n,):
            raise ValueError(f"{name}: expected [{n}], got {arr.shape}")
        integral = arr.dtype.kind in "iub" or not arr.size
        if not integral and not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name}: expected integer class labels")
        return arr.astype(np.int64)

    def _admit_subset_names(self, names: tuple[str, ...]) -> None:
        """The first frame fixes the subset names; every later frame must give the same."""
        if self._subset_names is None:
            self._subset_names = names
        elif names != self._subset_names:
            raise ValueError(
                f"gt_subsets: every frame must give the same subsets {list(self._subset_names)}, "
                f"got {list(names)}"
            )

    def _subsets(self, gt_subsets: Mapping[str, Any] | None, g: int) -> dict[str, np.ndarray]:
        names = tuple(sorted(gt_subsets)) if gt_subsets else ()
        self._admit_subset_names(names)
        out = {}
        for key in names:
            mask = _host_array(gt_subsets[key], f"gt_subsets[{key!r}]").astype(bool)
            if mask.shape != (g,):
                raise ValueError(f"gt_subsets[{key!r}]: expected [G] = [{g}], got {mask.shape}")
            out[key] = mask
        return out


def add_frame_sets(
    jobs: Sequence[tuple[APAccumulator, Sequence[Mapping[str, Any]], Sequence[APAccumulator]]],
    chunk: int = 256,
) -> None:
    """``acc.add_frames(frames, chunk, replicas)`` for each ``(acc, frames, replicas)`` of
    ``jobs`` in order, with the IoUs of all jobs' frames from shared batched calls (up to
    ``chunk`` frames each; e.g. every distinct condition of a sweep's frame batch at once).

    Results are those of the ``add_frames`` calls: IoU is a function of each frame alone, and
    every job's frames are prepared before any is matched, as ``add_frames`` does within one
    chunk. Where that ordering could differ (a job of more than ``chunk`` frames, or an
    accumulator in two jobs) the jobs run one ``add_frames`` call after the other.
    """
    jobs = [(acc, list(frames), list(replicas)) for acc, frames, replicas in jobs]
    owners = [id(a) for acc, _, replicas in jobs for a in (acc, *replicas)]
    if len(set(owners)) < len(owners) or any(len(frames) > chunk for _, frames, _ in jobs):
        for acc, frames, replicas in jobs:
            acc.add_frames(frames, chunk, replicas)
        return
    prepared = []
    for acc, frames, replicas in jobs:
        acc._check_replicas(replicas)
        masks = acc._det_range_masks(frames)
        prepared.append(
            (acc, [acc._prepare_item(f, replicas, m) for f, m in zip(frames, masks)], replicas)
        )
    # one batched IoU call per IoU mode and chunk of frames
    ious: dict[int, list[np.ndarray]] = {}
    for mode in dict.fromkeys(acc.config.iou_mode for acc, _, _ in prepared):
        share = [(ji, p) for ji, p in enumerate(prepared) if p[0].config.iou_mode == mode]
        flat = [(ji, f) for ji, (_, frames, _) in share for f in frames]
        values: list[np.ndarray] = []
        for start in range(0, len(flat), chunk):
            values += share[0][1][0]._iou([f for _, f in flat[start : start + chunk]])
        for (ji, _), iou in zip(flat, values, strict=True):
            ious.setdefault(ji, []).append(iou)
    for ji, (acc, frames, replicas) in enumerate(prepared):
        acc._match_frames(frames, ious.get(ji, []), [acc, *replicas])
