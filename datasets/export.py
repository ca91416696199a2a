"""Export ``CoopFrame``s (e.g. the synthetic world's) into the real datasets' layouts.

``export_frames(frames, root, "v2xsim")`` writes V2X-Sim 2.0 (nuScenes tables + ``.pcd.bin``),
``export_frames(frames, root, "dair_v2x")`` writes DAIR-V2X-C (``data_info.json``, ``.pcd``,
calibrations, side and cooperative labels). Each returns the writer's summary dict. What a
format cannot hold is documented in the writers (``v2x.datasets.v2xsim.write_v2xsim``,
``v2x.datasets.dair.write_dair_v2x_c``): DAIR-V2X-C keeps two agents per frame (the ego vehicle
and the nearest RSU) and counts the others in ``agents_not_written``; V2X-Sim keeps every agent,
with kinds beyond vehicle/RSU and per-agent visibility in its ``v2x_frames.json`` side table.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from v2x.datasets.frame import CoopFrame

EXPORT_FORMATS: tuple[str, ...] = ("v2xsim", "dair_v2x")


def export_frames(
    frames: Iterable[CoopFrame], root: str | os.PathLike, fmt: str, **writer_kwargs
) -> dict:
    """Write ``frames`` under ``root`` in format ``fmt`` (one of ``EXPORT_FORMATS``).

    ``writer_kwargs`` go to the format's writer (e.g. ``sensor_to_ego`` for V2X-Sim,
    ``lidar_to_novatel`` / ``pcd_data`` for DAIR-V2X-C).
    """
    if fmt == "v2xsim":
        from v2x.datasets.v2xsim import write_v2xsim

        return write_v2xsim(frames, root, **writer_kwargs)
    if fmt == "dair_v2x":
        from v2x.datasets.dair import write_dair_v2x_c

        return write_dair_v2x_c(frames, root, **writer_kwargs)
    raise ValueError(f"export_frames: field 'fmt' must be one of {EXPORT_FORMATS}, got {fmt!r}")
