"""The order one device computes a sweep's groups in (``v2x.sweep._run_groups``): a speed
choice only; every cell has its own seeds, so results do not depend on it."""

from __future__ import annotations

from collections.abc import Sequence

from v2x.sweep_parts import codec_class
from v2x.sweep_plan import FEATURE_STAGE, Group


def device_order(todo: Sequence[tuple[Group, list[float]]]) -> list[tuple[Group, list[float]]]:
    """The order one device computes ``todo`` in, each rank in plan order: the feature groups
    whose maps go through the channel, then late and early fusion, then the groups whose cells
    all get one result (``snr_independent``: ego-only, and feature groups whose codec does not
    use the channel). The first group runs while the frame batches are still being prepared
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
        if snr_independent(group):
            return 2
        return 0 if group.stage == FEATURE_STAGE else 1

    return sorted(todo, key=rank)


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


__all__ = ["device_order", "snr_independent"]
