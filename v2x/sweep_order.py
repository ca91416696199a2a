"""The order one device computes a sweep's groups in (``v2x.sweep._run_groups``): a speed
choice only; every cell has its own seeds, so results do not depend on it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from v2x.scheduling import BudgetConfig, meets_deadline
from v2x.semcom.base import Codec
from v2x.sweep_parts import codec_class, codec_kwargs_for
from v2x.sweep_plan import FEATURE_STAGE, Group

log = logging.getLogger("v2x.sweep")


def device_order(
    todo: Sequence[tuple[Group, list[float]]],
    silent: Callable[[Group, list[float]], bool] | None = None,
) -> list[tuple[Group, list[float]]]:
    """The order one device computes ``todo`` in, each rank in plan order: the feature groups
    whose maps go through the channel, then late and early fusion, then the groups whose cells
    all get one result (``snr_independent``: ego-only, and feature groups whose codec does not
    use the channel; and those ``silent(group, snrs)`` says deliver nothing, e.g.
    ``silent_groups``). The first group runs while the frame batches are still being prepared
    on a thread (``prepare_device``) and waits on that work unless its own is heavier. A group's
    rows (APs and bootstrap intervals, one computation per distinct cell, in the AP worker
    processes) are computed while the device goes on, and those of the last groups after it
    is done: last come the groups with one distinct cell, whose one computation is split over
    the workers (``v2x.sweep_rows.interval_parts``) and ends soon, while the earlier groups'
    rows finish during their device work (``bench_sweep.py --order-ab``, docs/benchmarks.md).
    Results do not depend on the order: every cell has its own seeds, and the feature cache
    and the ego-alone detections are the same whichever group computes them first."""

    def rank(item: tuple[Group, list[float]]) -> int:
        group = item[0]
        if (silent is not None and silent(*item)) or snr_independent(group):
            return 2
        return 0 if group.stage == FEATURE_STAGE else 1

    return sorted(todo, key=rank)


def silent_groups(
    budget: BudgetConfig, map_shape: tuple[int, int, int]
) -> Callable[[Group, list[float]], bool]:
    """``device_order``'s ``silent``: whether a group's maps (``map_shape``, the detector's
    ``(C, h, w)``) can never arrive by the deadline at its SNRs under ``budget``
    (``_never_delivers``: feature fusion sending whole maps at fixed SNRs with a
    codec whose cost is known before the air). Such a group's cells are the ego's alone (the
    groups whose maps do arrive run first, so that their rows finish while it runs); each is
    logged once."""
    from v2x.perception.fusion import FUSIONS
    from v2x.semcom import build_codec

    def silent(group: Group, snrs: list[float]) -> bool:
        if group.stage != FEATURE_STAGE or group.snr_mode != "fixed":
            return False
        fusion = FUSIONS.part_class(group.fusion)
        if fusion.selects_cells or fusion.sends_payload:  # not whole maps
            return False
        if codec_class(group.codec).cost_before_air is Codec.cost_before_air:
            return False  # not known before the air (and the codec may be costly to build)
        kwargs = codec_kwargs_for(group.codec, group.codec_kwargs, map_shape[0])
        if not _never_delivers(build_codec(group.codec, **kwargs), map_shape, snrs,
                              group.budget(budget)):  # fmt: skip
            return False
        log.info(
            "%s/%s/%s: no map can arrive by the %g s deadline at any of its SNRs, even alone on "
            "the band: its cells are the ego's alone",
            group.fusion, group.codec, group.channel, budget.deadline_s,
        )  # fmt: skip
        return True

    return silent


def _never_delivers(
    codec: Codec,
    map_shape: tuple[int, int, int],
    snr_db: Sequence[float],
    budget: BudgetConfig,
) -> bool:
    """Whether no map of ``map_shape`` (``(C, h, w)``) that ``codec`` sends at any of ``snr_db``
    (dB) can arrive by the deadline: late payloads are dropped and, even alone on the whole
    band, each map's cost known before the air (``Codec.cost_before_air``) keeps it on air
    past the deadline (a scheduler's share is at most the band; retransmissions and feedback
    only add). Then every cell of the setting is the ego's alone, whatever the frames."""
    if budget.late_policy != "drop" or not len(snr_db):
        return False
    snr = torch.tensor([float(s) for s in snr_db], dtype=torch.float32)
    cost = codec.cost_before_air((len(snr), *map_shape), snr)
    if cost is None:
        return False
    fastest = float(cost.channel_uses.min()) / budget.bandwidth_hz
    return not meets_deadline(budget.processing_latency_s + fastest, budget.deadline_s)


def snr_independent(group: Group) -> bool:
    """Whether every condition of ``group`` gets the same detections: ego-only fusion, or
    feature fusion with a codec that does not use the channel (``Codec.uses_channel``: the
    identity codec's maps arrive as sent) and no pose noise (which each condition draws
    itself). A guess for the computing order only (``device_order``); which cells share a
    result is decided from their records (``v2x.sweep_rows``)."""
    if group.stage == "ego":
        return True
    if group.stage != FEATURE_STAGE or group.pose_noise_m or group.pose_noise_yaw_rad:
        return False
    return not codec_class(group.codec).uses_channel


def log_waves(groups: int, fits: bool, cache_bytes: float, num_frames: int, wave: int) -> None:
    """Say (at INFO) whether ``groups`` groups run one after another (the features of
    ``num_frames`` frames fit the ``cache_bytes`` feature cache) or in lockstep waves of up to
    ``wave``: the same numbers, another speed (docs/sweeps.md)."""
    if groups < 2:
        return
    how = "one after another" if fits else f"in lockstep waves of up to {wave}"
    held = "holds" if fits else "cannot hold"
    log.info(f"feature cache {cache_bytes / 1e9:.1f} GB, {held} {num_frames} frames' features: "
             f"groups {how}")  # fmt: skip


__all__ = ["device_order", "log_waves", "silent_groups", "snr_independent"]
