"""Calibrating a learned analog codec's SNR gate so that fusion never falls below ego-only.

An analog receiver cannot tell noise from signal by a checksum; it knows only its SNR. The gate
(``DeepJSCCCodec.gate_snr_db``) is the lowest SNR, per bandwidth ratio, from which fusing the
decoded maps keeps AP at or above ego-only at every higher SNR of a validation grid:

    threshold(ρ) = min{ s_i : AP(ρ, s_j) ≥ AP_ego − margin  for all j ≥ i, all channels, all IoU }

(``+inf`` if no such ``s_i``: the ratio is never worth fusing). Below the lowest grid SNR the
codec is not validated, so the threshold never goes under it. Calibrate on validation frames
and report on different (test) frames.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from v2x.channels import CHANNELS, build_channel
from v2x.common import check_whole
from v2x.datasets.frame import CoopFrame
from v2x.evaluation import default_eval_config
from v2x.execution import evaluate_frames
from v2x.perception.ap_config import EvalConfig
from v2x.perception.average_precision import APAccumulator
from v2x.perception.detector import CoopDetector
from v2x.perception.fusion import FUSIONS, build_fusion
from v2x.pipeline import CooperativePipeline
from v2x.semcom.base import Codec

log = logging.getLogger(__name__)


@dataclass
class GateCalibration:
    """What ``calibrate_snr_gate`` measured and set.

    Attributes:
        snr_db: the SNR grid (dB).
        iou_thresholds: the IoU thresholds checked.
        ego_ap: ``{iou: AP}`` of ego-only fusion.
        curves: ``{(channel, ratio): {iou: [AP per snr_db]}}`` without the gate.
        thresholds_db: ``{ratio: gate SNR in dB}`` (``inf``: never delivered).
    """

    snr_db: list[float]
    iou_thresholds: list[float]
    ego_ap: dict[float, float]
    curves: dict[tuple[str, float], dict[float, list[float]]]
    thresholds_db: dict[float, float]

    def to_dict(self) -> dict:
        """JSON-ready form (keys as strings)."""
        return {
            "snr_db": self.snr_db,
            "ego_ap": {str(k): v for k, v in self.ego_ap.items()},
            "curves": {
                f"{ch}@{ratio:g}": {str(k): v for k, v in per_iou.items()}
                for (ch, ratio), per_iou in self.curves.items()
            },
            "thresholds_db": {f"{r:g}": t for r, t in self.thresholds_db.items()},
        }


#: ``calibrate_snr_gate``'s (and ``check_calibration``'s) default channels, SNR grid (dB) and
#: IoU thresholds.
DEFAULT_CHANNELS = ("awgn", "rayleigh")
DEFAULT_SNRS_DB = (-10, -7.5, -5, -2.5, 0, 2.5, 5, 7.5, 10, 15, 20, 30)
DEFAULT_IOU_THRESHOLDS = (0.5, 0.7)


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_calibration(
    channels: Sequence[str] = DEFAULT_CHANNELS,
    snr_db: Sequence[float] = DEFAULT_SNRS_DB,
    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
    fusion: str = "max",
    margin: float = 0.0,
    batch_size: int = 4,
) -> None:
    """Refuse settings of ``calibrate_snr_gate`` (the ``calibrate`` section) before any AP is
    measured, naming the field and the value: NaN would pass a plain ``<`` test."""
    where = "train_codec: field 'calibrate."
    names = list(channels or ())
    if not names or any(name not in CHANNELS.names() for name in names):
        raise ValueError(
            f"{where}channels' must list channels of {', '.join(CHANNELS.names())}, got {names}"
        )
    grid = list(snr_db or ())
    if not grid or not all(map(_real, grid)) or len(set(grid)) != len(grid):
        raise ValueError(
            f"{where}snr_db' must list distinct finite SNRs in dB (at least one), got {grid}"
        )
    known = [float(t) for t in EvalConfig.iou_thresholds]
    ious = list(iou_thresholds or ())
    if not ious or not all(_real(t) and float(t) in known for t in ious):
        raise ValueError(
            f"{where}iou_thresholds' must list IoU thresholds of {known} (those AP is "
            f"computed at), got {ious}"
        )
    if fusion not in FUSIONS.names():
        raise ValueError(
            f"{where}fusion' is {fusion!r}; valid choices: {', '.join(FUSIONS.names())}"
        )
    if not (_real(margin) and 0 <= margin <= 1):
        raise ValueError(f"{where}margin' must be an AP shortfall in [0, 1], got {margin!r}")
    check_whole(f"{where}batch_size'", batch_size, 1)


def gate_threshold(
    snr_db: Sequence[float],
    curves: Sequence[Sequence[float]],
    floors: Sequence[float],
    margin: float = 0.0,
) -> float:
    """Lowest ``snr_db[i]`` from which every curve stays at or above its floor.

    Args:
        snr_db: increasing SNR grid ``[S]`` (dB).
        curves: ``[M][S]`` AP values (one curve per channel and IoU threshold).
        floors: ``[M]`` the ego-only AP of each curve.
        margin: tolerated shortfall (AP units) for evaluation noise.

    Returns:
        the threshold in dB, or ``inf`` when even the highest SNR falls short.
    """
    grid = [float(s) for s in snr_db]
    if any(b <= a for a, b in zip(grid, grid[1:])):
        raise ValueError(f"gate_threshold: 'snr_db' must increase strictly, got {grid}")
    if len(curves) != len(floors):
        raise ValueError(
            f"gate_threshold: {len(curves)} curves but {len(floors)} floors (one per curve)"
        )
    threshold = float("-inf")
    for curve, floor in zip(curves, floors):
        if len(curve) != len(grid):
            raise ValueError(
                f"gate_threshold: a curve has {len(curve)} points, 'snr_db' has {len(grid)}"
            )
        ok_from = len(grid)  # index from which this curve never falls short
        for i in range(len(grid) - 1, -1, -1):
            if curve[i] < floor - margin:
                break
            ok_from = i
        threshold = max(threshold, grid[ok_from] if ok_from < len(grid) else float("inf"))
    return max(threshold, grid[0])


def ap_per_snr(
    pipe: CooperativePipeline,
    frames: Sequence[CoopFrame],
    snr_db: Sequence[float],
    iou_thresholds: Sequence[float],
    batch_size: int,
    device: torch.device,
) -> dict[float, list[float]]:
    """``{iou: [AP per snr_db]}`` of ``pipe`` over ``frames`` (all SNRs batched per call:
    ``v2x.execution.evaluate_frames``)."""
    eval_cfg = default_eval_config(pipe.model.grid)
    accs = [APAccumulator(eval_cfg) for _ in snr_db]
    evaluate_frames(pipe, frames, [float(s) for s in snr_db], accs, batch_size, device)
    results = [acc.compute()["ap"]["overall"] for acc in accs]
    return {float(t): [float(r[t]) for r in results] for t in iou_thresholds}


def calibrate_snr_gate(
    detector: CoopDetector,
    codec: Codec,
    frames: Sequence[CoopFrame],
    channels: Sequence[str] = DEFAULT_CHANNELS,
    snr_db: Sequence[float] = DEFAULT_SNRS_DB,
    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
    fusion: str = "max",
    margin: float = 0.0,
    batch_size: int = 4,
) -> GateCalibration:
    """Measure AP vs SNR per ratio of ``codec.gate_ratios`` and set ``codec``'s gate.

    Args:
        detector: the detector whose features the codec carries (eval mode).
        codec: a codec with an SNR gate (``Codec.snr_gated``: ``deepjscc``).
        frames: validation frames (not the frames results are reported on).
        channels: ``v2x.channels`` names the gate must hold on.
        snr_db: increasing SNR grid (dB).
        iou_thresholds: AP thresholds that must each stay at or above ego-only.
        fusion: the intermediate fusion used.
        margin: tolerated AP shortfall (evaluation noise).

    Returns:
        the measurements; ``codec`` leaves with the new gate and ``snr_gate=True``.
    """
    check_calibration(channels, snr_db, iou_thresholds, fusion, margin, batch_size)
    if not frames:
        raise ValueError("calibrate_snr_gate: 'frames' is empty")
    if not (isinstance(codec, Codec) and codec.snr_gated):
        raise ValueError(
            f"calibrate_snr_gate: codec {type(codec).__name__} has no SNR gate "
            "(gate_ratios, set_gate, snr_gate); only learned analog codecs such as deepjscc do"
        )
    device = next(detector.parameters()).device
    grid = sorted(float(s) for s in snr_db)
    ratios = [float(r) for r in codec.gate_ratios]
    log.info(  # (minutes on a CPU, and nothing else is said meanwhile)
        "SNR gate: measuring AP on %d frames at %d SNRs for %d ratios x %d channel(s) with %s "
        "fusion, and ego-only",
        len(frames), len(grid), len(ratios), len(channels), fusion,
    )  # fmt: skip
    ego_pipe = CooperativePipeline(detector, build_fusion("none"), codec, build_channel("awgn"))
    ego = ap_per_snr(ego_pipe.to(device), frames, grid[:1], iou_thresholds, batch_size, device)
    ego_ap = {t: v[0] for t, v in ego.items()}
    saved_ratio, codec.snr_gate = codec.bandwidth_ratio, False
    curves: dict[tuple[str, float], dict[float, list[float]]] = {}
    try:
        for name in channels:
            pipe = CooperativePipeline(detector, build_fusion(fusion), codec, build_channel(name))
            pipe = pipe.to(device)
            for ratio in ratios:
                codec.bandwidth_ratio = ratio
                curves[(name, ratio)] = ap_per_snr(
                    pipe, frames, grid, iou_thresholds, batch_size, device
                )
    finally:
        codec.bandwidth_ratio = saved_ratio
        codec.snr_gate = True
    thresholds = {}
    for ratio in ratios:
        lines = [curves[(name, ratio)][t] for name in channels for t in iou_thresholds]
        floors = [ego_ap[t] for _ in channels for t in iou_thresholds]
        thresholds[ratio] = gate_threshold(grid, lines, floors, margin)
    codec.set_gate(thresholds)
    return GateCalibration(grid, [float(t) for t in iou_thresholds], ego_ap, curves, thresholds)


__all__ = [
    "GateCalibration",
    "ap_per_snr",
    "calibrate_snr_gate",
    "check_calibration",
    "gate_threshold",
]
