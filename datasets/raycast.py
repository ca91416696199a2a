"""Ray casting against a scene of oriented boxes on a ground plane, with two backends.

The scene (``BoxScene``) is a set of boxes ``(x, y, z, l, w, h, yaw)`` in the world frame — buildings,
vehicles, pedestrians and cyclists are all boxes — plus, optionally, the ground plane ``z = 0``.
Both backends see exactly the same geometry and share one interface::

    caster = make_raycaster("torch", device="cuda")      # or "open3d"
    hits = caster.cast(scene, origins, directions, max_range_m=70.0)

* ``TorchRaycaster`` (``raycast_torch``): a pure-torch slab test of every ray against every
  candidate box, batched over rays × boxes and chunked to bound memory; runs on CPU or CUDA.
  When rays leave sensor origins (one LiDAR scan, or several sensors' scans through
  ``cast_groups``), boxes are culled by range and bucketed by (sensor, elevation, azimuth), and
  each ray is only tested against the boxes whose angular footprint covers its bucket.
* ``Open3dRaycaster`` (``raycast_open3d``): open3d's ``RaycastingScene`` (Embree BVH) over the
  boxes' triangles and a ground quad large enough to cover every ray's range.
* ``raycast_scene``: the scene (``BoxScene``), the answer (``RayHits``, ``MISS``, ``GROUND``), the
  backends' interface (``Raycaster``) and the boxes' corners and triangles.

Geometry is recentred on the rays' mean origin in float64 before casting in float32, so precision
does not depend on where the town sits in the world. This module builds a backend by name
(``make_raycaster``) and keeps the import path ``v2x.datasets.raycast`` of every name above.
"""

from __future__ import annotations

from v2x.common import usable_device
from v2x.datasets.raycast_open3d import Open3dRaycaster
from v2x.datasets.raycast_scene import (
    BOX_CORNER_SIGNS,
    BOX_TRIANGLES,
    GROUND,
    MISS,
    BoxScene,
    Raycaster,
    RayHits,
    box_corners,
    box_triangles,
)
from v2x.datasets.raycast_torch import TorchRaycaster

__all__ = [
    "BOX_CORNER_SIGNS",
    "BOX_TRIANGLES",
    "GROUND",
    "MISS",
    "BoxScene",
    "Open3dRaycaster",
    "RayHits",
    "Raycaster",
    "TorchRaycaster",
    "box_corners",
    "box_triangles",
    "make_raycaster",
    "usable_device",  # imported here before the split: kept importable
]


def make_raycaster(backend: str = "torch", **kwargs) -> Raycaster:
    """Build a ray caster by name: ``"torch"`` (kwargs: device, chunk_elems, azimuth_bins) or
    ``"open3d"``."""
    if backend == "torch":
        return TorchRaycaster(**kwargs)
    if backend == "open3d":
        return Open3dRaycaster(**kwargs)
    raise ValueError(f"raycast: field 'backend' must be 'torch' or 'open3d', got {backend!r}")
