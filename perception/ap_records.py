"""What an ``APAccumulator`` (``v2x.perception.average_precision``) keeps of each frame: the
matching problems of its result groups (overall, classes, class groups, distance bins, GT
subsets) at every threshold, and per group and threshold the TP flags and scores of its counted
detections (``_GroupStore``, pickled compactly between processes). ``GroupRecords`` is the
accumulator's base that matches prepared frames and records them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from v2x.perception.ap_frames import _Frame
from v2x.perception.ap_match import greedy_match_batched, gt_side_match_batched

if TYPE_CHECKING:
    from v2x.perception.average_precision import APAccumulator

__all__ = ["GroupRecords"]


def _flags(
    matched: np.ndarray,
    det_mask: np.ndarray,
    scores: np.ndarray,
    ignore: np.ndarray,
    tp_first: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per threshold, the int8 TP flags and the scores of a group's counted detections:
    those in ``det_mask [D]`` not matched (``matched [T, D]``: GT index or -1) to a GT that
    ``ignore [G]`` marks; a detection matched to an ignored GT is neither TP nor FP.

    In score order (``scores`` descending); ``tp_first``: true positives before false
    positives of equal score, as DAIR-V2X's ``compute_type`` lists a frame's detections (its
    true positives, then the rest), which its stable global sort keeps."""
    hit = matched >= 0
    counted = (
        det_mask[None, :] & ~(hit & ignore[np.where(hit, matched, 0)])
        if ignore.size
        else np.broadcast_to(det_mask[None, :], hit.shape)
    )
    tp = [hit[ti][counted[ti]].astype(np.int8) for ti in range(hit.shape[0])]
    kept = [scores[counted[ti]] for ti in range(hit.shape[0])]
    if tp_first:
        order = [np.lexsort((1 - f, -s)) for f, s in zip(tp, kept, strict=True)]
        tp = [f[o] for f, o in zip(tp, order, strict=True)]
        kept = [s[o] for s, o in zip(kept, order, strict=True)]
    return tp, kept


def _distances(boxes: torch.Tensor) -> np.ndarray:
    """``[N]`` float64 BEV distance of ``[N, 7]`` box centres from the origin (``torch.hypot``,
    whose CPU kernel this keeps: numpy's may differ in the last bit)."""
    if boxes.device.type == "cpu" and boxes.dtype == torch.float64:
        return torch.hypot(boxes[:, 0], boxes[:, 1]).numpy()
    return torch.hypot(boxes[:, 0], boxes[:, 1]).double().cpu().numpy()


@dataclass
class _GroupStore:
    """Per-threshold TP flags, scores and GT counts of one result group."""

    tp: list[list[np.ndarray]] = field(default_factory=list)  # [threshold][frame] -> [k] int8
    scores: list[list[np.ndarray]] = field(default_factory=list)
    num_gt: int = 0
    frame_gt: list[int] = field(default_factory=list)  # [record] -> non-ignored GT count
    frame_index: list[int] = field(default_factory=list)  # [record] -> accumulator frame index

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with each threshold's records as one array and their lengths
        (``_packed``): a sweep sends its cells' accumulators between processes, and thousands
        of small arrays pickle one by one (≈ 40 ms per accumulator of 128 frames, with the
        sending process's GIL held) where one array is a copy."""
        return {
            **self.__dict__,
            "tp": [_packed(parts) for parts in self.tp],
            "scores": [_packed(parts) for parts in self.scores],
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """The records as they were: the same values, dtypes and lengths (views of one array
        per threshold; records are never modified, ``_record``)."""
        self.__dict__.update(
            {
                **state,
                "tp": [_unpacked(parts) for parts in state["tp"]],
                "scores": [_unpacked(parts) for parts in state["scores"]],
            }
        )


def _packed(parts: list[np.ndarray]) -> Any:
    """``(values, lengths)`` of 1-D arrays of one dtype (``parts`` itself otherwise)."""
    if not parts or any(a.ndim != 1 or a.dtype != parts[0].dtype for a in parts):
        return parts
    return np.concatenate(parts), np.array([len(a) for a in parts], dtype=np.int64)


def _unpacked(packed: Any) -> list[np.ndarray]:
    """The arrays ``_packed`` joined, as views of its one array (what ``np.split`` returns,
    whose Python loop took 12 µs per array: unpickling a 512-frame group's partial
    accumulators when a sweep joins them took 0.32–0.40 s with it, 0.23–0.25 s sliced here,
    on the 2-core VM)."""
    if isinstance(packed, list):
        return packed
    values, lengths = packed
    ends = list(itertools.accumulate(lengths.tolist()))
    return [values[a:b] for a, b in zip([0, *ends[:-1]], ends)]


class GroupRecords:
    """The records of ``APAccumulator`` (a base of it): the matching of prepared frames for
    every group and threshold, and each group's per-frame records (``_GroupStore``). Reads the
    accumulator's ``config``, ``thresholds``, ``_labelled``, ``_classes`` and ``num_frames``;
    keeps its ``_groups``, ``_sequences`` and ``num_frames``."""

    def _store(self, name: str) -> _GroupStore:
        store = self._groups.get(name)
        if store is None:
            t = len(self.thresholds)
            store = _GroupStore(tp=[[] for _ in range(t)], scores=[[] for _ in range(t)])
            self._groups[name] = store
        return store

    def _class_name(self, label: int) -> str:
        names = self.config.class_names
        return str(names[label]) if names is not None and label in names else str(label)

    def _match(
        self, frame: _Frame, iou: np.ndarray, targets: Sequence[APAccumulator] | None = None
    ) -> None:
        """Greedy matching of one prepared frame for every group and threshold; records flags
        in ``targets`` (default: this accumulator)."""
        self._match_frames([frame], [iou], targets)

    def _match_frames(
        self,
        frames: Sequence[_Frame],
        ious: Sequence[np.ndarray],
        targets: Sequence[APAccumulator] | None = None,
    ) -> None:
        """``_match`` of each frame in order, the greedy matching of all of them in one
        ``greedy_match_batched`` call (frames are matched independently; records are made in
        frame order)."""
        setups = [self._match_problems(frame, iou) for frame, iou in zip(frames, ious, strict=True)]
        if not setups:
            return
        match = (
            greedy_match_batched if self.config.procedure == "opencood" else gt_side_match_batched
        )
        matched = match(*zip(*(setup[1] for setup in setups), strict=True))
        for frame, (groups, _), m in zip(frames, setups, matched, strict=True):
            self._record_frame(frame, groups, m, targets)

    def _match_problems(
        self, frame: _Frame, iou: np.ndarray
    ) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], tuple]:
        """A frame's matching problems: its groups ``(name, det mask [D], gt mask [G])`` and
        ``greedy_match``'s arguments for every group and threshold."""
        cfg = self.config
        det_boxes, gt_boxes = frame.det_boxes, frame.gt_boxes
        det_lab, gt_lab = frame.det_lab, frame.gt_lab
        d, g = det_boxes.shape[0], gt_boxes.shape[0]
        det_dist, gt_dist = _distances(det_boxes), _distances(gt_boxes)

        # groups of independent matching problems: (name, det mask [D], gt mask [G]). A class
        # with no box in this frame has empty masks: it is matched nowhere and recorded empty.
        groups: list[tuple[str, np.ndarray, np.ndarray]] = []
        all_d, all_g = np.ones(d, dtype=bool), np.ones(g, dtype=bool)
        groups.append(("overall", all_d, all_g))
        frame_classes = sorted({int(c) for c in det_lab} | {int(c) for c in gt_lab})
        if cfg.per_class and frame.labelled:
            for c in frame_classes:
                groups.append((f"class/{c}", det_lab == c, gt_lab == c))
        for gname, glabels in (cfg.class_groups or {}).items():
            members = np.asarray(list(glabels), dtype=np.int64)
            groups.append((f"group/{gname}", np.isin(det_lab, members), np.isin(gt_lab, members)))
        for lo, hi in cfg.distance_bins:
            lo, hi = float(lo), float(hi)
            groups.append(
                (
                    f"distance/{lo:g}-{hi:g}",
                    (det_dist >= lo) & (det_dist < hi),
                    (gt_dist >= lo) & (gt_dist < hi),
                )
            )
        match_iou = iou
        if cfg.class_aware and d and g:
            match_iou = np.where(det_lab[:, None] == gt_lab[None, :], iou, 0.0)

        t = len(self.thresholds)
        n_groups = len(groups)
        det_in = np.repeat(np.stack([gm[1] for gm in groups]), t, axis=0)  # [n_groups * t, d]
        gt_in = np.repeat(np.stack([gm[2] for gm in groups]), t, axis=0)
        thr = np.tile(self.thresholds, n_groups)
        # class groups already restrict labels, so class-aware IoU is equivalent for them
        return groups, (match_iou, thr, det_in, gt_in)

    def _record_frame(
        self,
        frame: _Frame,
        groups: list[tuple[str, np.ndarray, np.ndarray]],
        matched: np.ndarray,
        targets: Sequence[APAccumulator] | None,
    ) -> None:
        """Record a matched frame's flags (``matched [n_groups * T, D]``) in ``targets``."""
        cfg = self.config
        scores_np, ignore, subsets = frame.scores, frame.ignore, frame.subsets
        d = frame.det_boxes.shape[0]
        all_d = np.ones(d, dtype=bool)
        matched = matched.reshape(len(groups), len(self.thresholds), d)
        found = {
            name: (matched[gi], dmask, gmask) for gi, (name, dmask, gmask) in enumerate(groups)
        }
        none_d = np.zeros(d, dtype=bool)
        flags: dict[str, tuple[int, list[np.ndarray], list[np.ndarray]]] = {}
        tp_first = cfg.procedure == "dair_v2x"

        def record(
            acc: APAccumulator, name: str, m: np.ndarray, dmask: np.ndarray, n_gt: int,
            ign: np.ndarray,
        ) -> None:  # fmt: skip
            """One group's record of this frame, computed once and stored in every target."""
            if name not in flags:
                flags[name] = (n_gt, *_flags(m, dmask, scores_np, ign, tp_first))
            acc._record(name, *flags[name])

        for acc in [self] if targets is None else targets:
            record(acc, "overall", matched[0], all_d, int((~ignore).sum()), ignore)
            if cfg.per_class and acc._labelled:
                # every class seen so far gets its group (classes absent here: empty records)
                for c in sorted(acc._classes):
                    hit = found.get(f"class/{c}")
                    m, dmask, gmask = hit if hit else (matched[0], none_d, None)
                    n_gt = int((gmask & ~ignore).sum()) if hit else 0
                    record(acc, f"class/{acc._class_name(c)}", m, dmask, n_gt, ignore)
            for name, _, gmask in groups:
                if name.startswith(("distance/", "group/")):
                    m, dmask, _ = found[name]
                    record(acc, name, m, dmask, int((gmask & ~ignore).sum()), ignore)
                if name.startswith("group/"):
                    m, dmask, _ = found[name]
                    for sname, member in subsets.items():
                        sub_ignore = ignore | ~member
                        record(
                            acc, f"{name}/{sname}", m, dmask, int((gmask & ~sub_ignore).sum()),
                            sub_ignore,
                        )  # fmt: skip
            for sname, member in subsets.items():
                sub_ignore = ignore | ~member
                record(
                    acc, f"subset/{sname}", matched[0], all_d, int((~sub_ignore).sum()),
                    sub_ignore,
                )  # fmt: skip
            acc._sequences.append(frame.sequence)
            acc.num_frames += 1

    def _every_frame(self, store: _GroupStore | None) -> _GroupStore:
        """``store``'s records with an empty one (no GT, no detection) on each frame it has
        none for: a class group as ``_record_frame`` keeps it once the class is known."""
        have = {} if store is None else {f: r for r, f in enumerate(store.frame_index)}
        if len(have) == self.num_frames:
            return store
        overall = self._groups["overall"]  # a record on every frame
        t = len(self.thresholds)
        out = _GroupStore(tp=[[] for _ in range(t)], scores=[[] for _ in range(t)])
        out.num_gt = 0 if store is None else store.num_gt
        for f in range(self.num_frames):
            r = have.get(f)
            out.frame_gt.append(0 if r is None else store.frame_gt[r])
            out.frame_index.append(f)
            for ti in range(t):
                empty = (np.zeros(0, np.int8), overall.scores[ti][f][:0])
                out.tp[ti].append(empty[0] if r is None else store.tp[ti][r])
                out.scores[ti].append(empty[1] if r is None else store.scores[ti][r])
        return out

    def _record(
        self, name: str, num_gt: int, tp: list[np.ndarray], scores: list[np.ndarray]
    ) -> None:
        """Store one frame's record of a group: its GT count and, per threshold, the TP flags
        and scores of its counted detections (``_flags``; the arrays are never modified)."""
        store = self._store(name)
        store.num_gt += num_gt
        store.frame_gt.append(num_gt)
        store.frame_index.append(self.num_frames)
        for ti in range(len(self.thresholds)):
            store.tp[ti].append(tp[ti])
            store.scores[ti].append(scores[ti])
