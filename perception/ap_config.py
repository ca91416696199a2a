"""Evaluation settings of ``v2x.perception.average_precision``: ``EvalConfig`` (a Hydra
structured config), the procedures it selects (``PROCEDURES``: OpenCOOD's, DAIR-V2X's) and the
bootstrap's resampling units (``BOOTSTRAP_UNITS``); the procedures themselves are described in
that module's docstring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from v2x.perception.ap_range import RANGE_MODES

__all__ = ["BOOTSTRAP_UNITS", "PROCEDURES", "EvalConfig", "SortMode"]

#: Resampling units of ``APAccumulator.compute(bootstrap_unit=...)`` (module docstring).
BOOTSTRAP_UNITS = ("auto", "sequence", "frame")


SortMode = Literal["per_frame", "global"]


#: Matching and AP procedures of ``EvalConfig.procedure`` (module docstring).
PROCEDURES = ("opencood", "dair_v2x")


#: What each procedure does, as ``EvalConfig.convention()`` reports it (``"procedure"``, ``"ap"``).
_PROCEDURE_CONVENTION = {
    "opencood": {
        "procedure": "opencood-greedy (TP iff max IoU >= thr, best remaining GT removed)",
        "ap": "voc-all-point",
    },
    "dair_v2x": {
        "procedure": "dair-v2x (GT-side: each GT takes the remaining detection of largest IoU "
        ">= thr, ties to the later; the rest FP)",
        "ap": "dair-v2x (sum of d(recall) * precision envelope, no (0, 0) start point)",
    },
}


@dataclass
class EvalConfig:
    """Evaluation settings (usable as a Hydra structured config).

    Attributes:
        iou_thresholds: IoU thresholds, each in (0, 1].
        iou_mode: ``"bev"`` (rotated BEV IoU, OpenCOOD) or ``"3d"``.
        sort: ``"per_frame"`` (OpenCOOD default) or ``"global"`` (HEAL/CoAlign).
        class_aware: whether the ``overall`` matching requires equal labels.
        eval_range: ``(x_min, y_min, x_max, y_max)`` in metres in the ego frame, ``(x_min,
            y_min, z_min, x_max, y_max, z_max)`` (3D), or ``None``.
        range_mode: ``"corners"`` (all corners inside, OpenCOOD), ``"centre"``,
            ``"any_corner"`` (DAIR-V2X's filter; 3D range only) or ``"opencood"`` (3D range
            only: ground truth's 8 corners in 3D, detections' BEV corners in x–y, as OpenCOOD
            filters them). See ``range_mask``.
        distance_bins: ``[lo, hi)`` bins in metres from the ego origin (BEV distance of centres).
        class_names: label -> name for result keys (labels without a name use the integer).
        per_class: whether to compute ``class/<name>`` groups.
        class_groups: name -> labels matched class-agnostically among themselves, reported as
            ``group/<name>`` (and ``group/<name>/<subset>`` for every GT subset); e.g.
            ``{"vehicle": (0, 1)}``: cars and trucks, OpenCOOD's vehicle AP. ``None``: none.
        procedure: ``"opencood"`` (greedy from the detections' side, VOC AP; the default) or
            ``"dair_v2x"`` (DAIR-V2X's official evaluator: matching from the GT side, its own
            AP sum; needs ``sort="global"``). See the module docstring.
    """

    iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7)
    iou_mode: str = "bev"
    sort: str = "per_frame"
    class_aware: bool = False
    eval_range: Sequence[float] | None = None
    range_mode: str = "corners"
    distance_bins: Sequence[Sequence[float]] = ((0.0, 30.0), (30.0, 50.0), (50.0, 100.0))
    class_names: Mapping[int, str] | None = None
    per_class: bool = True
    class_groups: Mapping[str, Sequence[int]] | None = None
    procedure: str = "opencood"

    def validate(self, name: str = "EvalConfig.{}") -> EvalConfig:
        """Check every field, raising ``ValueError`` naming the field; returns ``self``.

        ``name`` formats a field's name for the messages: the default gives
        ``EvalConfig.sort``; a sweep passes ``"sweep: field 'eval.{}'"``, the key its user types.
        """
        for flag in ("class_aware", "per_class"):
            if not isinstance(getattr(self, flag), bool | np.bool_):
                raise ValueError(
                    f"{name.format(flag)}: expected true or false, got {getattr(self, flag)!r}"
                )
        thr = _floats(name.format("iou_thresholds"), self.iou_thresholds)
        if not thr or any(not (0.0 < t <= 1.0) for t in thr) or len(set(thr)) < len(thr):
            raise ValueError(
                f"{name.format('iou_thresholds')}: expected distinct values in (0, 1], got {thr}"
            )
        if self.iou_mode not in ("bev", "3d"):
            raise ValueError(
                f"{name.format('iou_mode')}: expected 'bev' or '3d', got {self.iou_mode!r}"
            )
        if self.procedure not in PROCEDURES:
            raise ValueError(
                f"{name.format('procedure')}: expected one of {', '.join(PROCEDURES)}, "
                f"got {self.procedure!r}"
            )
        if self.sort not in ("per_frame", "global"):
            raise ValueError(
                f"{name.format('sort')}: expected 'per_frame' or 'global', got {self.sort!r}"
            )
        _check_sort(self.sort, self.procedure, name.format("sort"))
        if self.range_mode not in RANGE_MODES:
            raise ValueError(
                f"{name.format('range_mode')}: expected one of {', '.join(RANGE_MODES)}, "
                f"got {self.range_mode!r}"
            )
        if self.eval_range is not None:
            r = _floats(name.format("eval_range"), self.eval_range)
            axes = len(r) // 2
            if len(r) not in (4, 6) or any(r[i] >= r[i + axes] for i in range(axes)):
                raise ValueError(
                    f"{name.format('eval_range')}: expected (x_min, y_min, x_max, y_max) or "
                    "(x_min, y_min, z_min, x_max, y_max, z_max) with each minimum below its "
                    f"maximum, got {list(self.eval_range)}"
                )
        if self.range_mode in ("any_corner", "opencood") and (
            self.eval_range is None or len(r) != 6
        ):
            raise ValueError(
                f"{name.format('range_mode')}: {self.range_mode!r} tests the 8 box corners in "
                "3D and needs a 3D eval_range (x_min, y_min, z_min, x_max, y_max, z_max), got "
                f"{self.eval_range if self.eval_range is None else list(self.eval_range)}"
            )
        for b in self.distance_bins:
            bins = _floats(name.format("distance_bins"), b)
            if len(bins) != 2 or not (0.0 <= bins[0] < bins[1]):
                raise ValueError(
                    f"{name.format('distance_bins')}: expected [lo, hi) pairs with "
                    f"0 <= lo < hi, got {b}"
                )
        for group, labels in (self.class_groups or {}).items():
            if not str(group) or "/" in str(group) or not list(labels):
                raise ValueError(
                    f"{name.format('class_groups')}: expected {{name: [labels...]}} with a "
                    f"non-empty name without '/' and at least one label, got {group!r}: {labels!r}"
                )
        return self

    def convention(self) -> dict[str, Any]:
        """The settings that change AP values, for printing next to every number."""
        return {
            "procedure": _PROCEDURE_CONVENTION[self.procedure]["procedure"],
            "sort": self.sort,
            "iou_mode": self.iou_mode,
            "class_aware": bool(self.class_aware),
            "eval_range": None if self.eval_range is None else [float(v) for v in self.eval_range],
            "range_mode": self.range_mode,
            "ap": _PROCEDURE_CONVENTION[self.procedure]["ap"],
        }


def _check_sort(sort: str, procedure: str, name: str) -> None:
    """``ValueError`` naming ``name`` when ``procedure`` cannot run with ``sort``: DAIR-V2X's
    evaluator sorts every detection of every frame by score (``compute_ap``)."""
    if procedure == "dair_v2x" and sort != "global":
        raise ValueError(
            f"{name}: procedure 'dair_v2x' sorts all detections by score globally (DAIR-V2X "
            f"compute_ap); expected 'global', got {sort!r}"
        )


def _floats(name: str, values: Any) -> list[float]:
    """``values`` as floats; ``ValueError`` naming the field (``name``) and the value."""
    try:
        if isinstance(values, str | bytes):
            raise TypeError
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a list of numbers, got {values!r}") from None
