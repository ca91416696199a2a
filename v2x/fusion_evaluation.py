"""Headline metrics of each fusion strategy over one link condition (``evaluate_fusions``):
the comparison behind the README's fusion table (``scripts/evaluate_fusions.py``) and the
training app's validation. It runs the pipeline through ``v2x.execution.evaluate_frames``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from v2x.channels import build_channel
from v2x.datasets.frame import CoopFrame
from v2x.evaluation import HEADLINE_METRICS, headline_eval_config, headline_metrics
from v2x.execution import evaluate_frames
from v2x.perception.ap_paired import paired_difference
from v2x.perception.average_precision import APAccumulator
from v2x.perception.detector import CoopDetector
from v2x.perception.fusion import build_fusion
from v2x.pipeline import CooperativePipeline
from v2x.semcom import build_codec


def evaluate_fusions(
    model: CoopDetector,
    frames: Sequence[CoopFrame],
    fusions: Sequence[str],
    device: torch.device,
    batch_size: int = 8,
    snr_db: float = 30.0,
    bootstrap: int = 0,
    seed: int = 0,
    codec: str = "identity",
    codec_kwargs: dict[str, Any] | None = None,
    channel: str = "awgn",
    bootstrap_unit: str = "auto",
    fusion_options: dict[str, dict[str, Any]] | None = None,
    precision: str = "fp32",
    cuda_graph: bool = False,
    sorts: Sequence[str] = ("per_frame",),
    baseline: str | None = "none",
) -> dict[str, dict[str, Any]]:
    """Headline metrics of each fusion strategy over one link condition (by default an ideal
    link: identity codec, AWGN at ``snr_db``), the bits each sends per frame, and the
    evaluation convention.

    Args:
        model: the detector (moved to ``device``, evaluated in eval mode).
        frames: test frames.
        fusions: names from the fusion registry.
        bootstrap: resamples for the 95 % intervals (0: none).
        seed: seeds the channel and codec noise (``torch.manual_seed`` before each fusion, so a
            fusion's numbers do not depend on which fusions ran before it) and the bootstrap.
        bootstrap_unit: ``"auto"`` (whole sequences — towns, from the frame ids
            ``<sequence>/<index>`` — when frames come in sequences, else frames), ``"sequence"``
            or ``"frame"``; the unit used is reported as ``bootstrap_unit``.
        fusion_options: constructor kwargs per fusion name (the sweep's ``fusion_options``),
            e.g. ``{"semantic_map": {"max_fraction": 0.1}}``.
        precision: the detector's inference precision (``CoopDetector.configure_inference``:
            ``"fp32"``, ``"fp16"`` or ``"bf16"`` autocast); restored to fp32 afterwards.
        cuda_graph: on CUDA the encoder replays a CUDA graph per batch shape
            (``configure_inference(cuda_graph=True)``; speed only); the model's own setting
            is restored afterwards.
        sorts: AP sort conventions (``"per_frame"``: OpenCOOD's default, cumulative TP/FP in
            frame order; ``"global"``: all detections by score, HEAL/CoAlign and the textbook
            AP). The first gives the row's metrics; each other one the same metrics, interval
            and convention under ``"sort/<name>"``, from the same matches.
        baseline: with ``bootstrap > 0`` and this fusion among ``fusions`` (default: ego-only,
            ``"none"``), every other fusion's row also gets, per metric, its difference from
            the baseline on the same frames under ``"<metric>_gain"`` and that difference's
            paired bootstrap interval under ``"<metric>_gain_ci"`` (``v2x.perception.ap_paired``:
            the same resamples for both; a gain whose interval holds 0 is not a finding), and
            ``"gain_over"``: the baseline's name.

    Returns:
        ``{fusion: {metric: value, "<metric>_ci": (lo, hi), "bootstrap_unit": unit,
        "bootstrap_units": count, with a baseline "<metric>_gain", "<metric>_gain_ci", "gain_over",
        "source_bits_per_frame": bits, "num_frames": n, "convention": {...},
        "precision": precision}}``.
    """
    if not frames:
        raise ValueError("evaluate_fusions: no frames to evaluate")
    was_training = model.training
    model = model.to(device).eval()
    previous, had_graphs = model.precision, model.encode_graphs is not None
    model.configure_inference(precision, cuda_graph=True if cuda_graph else None)
    out: dict[str, dict[str, Any]] = {}
    accs: dict[str, APAccumulator] = {}
    for name in fusions:
        pipe = (
            CooperativePipeline(
                model,
                build_fusion(name, **(fusion_options or {}).get(name, {})),
                build_codec(codec, **(codec_kwargs or {})),
                build_channel(channel),
            )
            .to(device)
            .eval()
        )
        acc = APAccumulator(headline_eval_config(model.grid))
        torch.manual_seed(seed)
        with torch.no_grad():
            (bits,) = evaluate_frames(pipe, frames, [snr_db], [acc], batch_size, device)
        first, *others = sorts
        row: dict[str, Any] = dict(headline_metrics(acc, bootstrap, seed, bootstrap_unit, first))
        row.update(source_bits_per_frame=bits / len(frames), num_frames=len(frames),
                   convention={**acc.config.convention(), "sort": first},
                   precision=precision)  # fmt: skip
        for sort in others:
            row[f"sort/{sort}"] = {
                **headline_metrics(acc, bootstrap, seed, bootstrap_unit, sort),
                "convention": {**acc.config.convention(), "sort": sort},
            }
        out[name], accs[name] = row, acc
    if bootstrap and baseline in accs:
        for name, row in out.items():
            if name != baseline:
                row.update(
                    _gains(accs[name], accs[baseline], bootstrap, seed, bootstrap_unit, first)
                )
                row["gain_over"] = baseline
    model.configure_inference(previous, cuda_graph=had_graphs)
    model.train(was_training)
    return out


def _gains(
    acc: APAccumulator, base: APAccumulator, bootstrap: int, seed: int, unit: str, sort: str
) -> dict[str, Any]:
    """Each headline metric's ``AP(acc) − AP(base)`` (``"<metric>_gain"``) and its paired
    interval (``"<metric>_gain_ci"``), NaN where a group has no ground truth."""
    out: dict[str, Any] = {}
    scored = acc.compute(sort=sort)["ap"]
    for key, group, thr in HEADLINE_METRICS:
        if math.isnan(scored.get(group, {}).get(thr, math.nan)):  # no such group, or no GT
            out[f"{key}_gain"], out[f"{key}_gain_ci"] = math.nan, (math.nan, math.nan)
            continue
        diff, lo, hi = paired_difference(acc, base, group, thr, bootstrap, seed, unit, sort)
        out[f"{key}_gain"], out[f"{key}_gain_ci"] = diff, (lo, hi)
    return out


__all__ = ["evaluate_fusions"]
