"""Which earlier observation a recorded dataset serves: the latest one sensed at or before an
instant.

A real dataset holds each agent's scans on its own time grid (V2X-Sim 2.0: every ``sample`` at
5 Hz; DAIR-V2X-C: each side's frames at 10 Hz with its own ``pointcloud_timestamp``). A
collaborator's data that took ``delay`` seconds to reach the ego is, at the ego's instant
``t``, the newest scan whose sensing time is at or before ``t − delay``: a later one had not
arrived yet. The readers (``V2XSimDataset.observation_before``,
``DAIRV2XCDataset.observation_before``) search their per-agent histories with
``latest_at_or_before``; ``None`` means the recording holds no scan that early.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

#: Sensing times within this many seconds of the instant count as at it (1 µs: the datasets'
#: timestamp resolution; ``1.4 − 0.2`` is ``1.1999999999999997`` in float64, and a scan stamped
#: 1.2 s must still be served for a 0.2 s delay at 1.4 s).
TIME_TOL_S = 1e-6


def latest_at_or_before(
    times_s: Sequence[float], until_s: float, tol_s: float = TIME_TOL_S
) -> int | None:
    """Index of the last of ``times_s`` (ascending, s) at or before ``until_s`` (within
    ``tol_s``); ``None`` when the first is already later. Ties go to the last of them."""
    i = bisect.bisect_right(times_s, until_s + tol_s) - 1
    return i if i >= 0 else None
