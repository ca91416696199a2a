"""The scene a ray caster sees and what it answers, shared by every backend.

A ``BoxScene`` is a set of oriented boxes ``(x, y, z, l, w, h, yaw)`` in the world frame (m,
rad; z at the centre) plus, optionally, the ground plane ``z = 0``; ``RayHits`` is each ray's
distance (m), what it hit (a box index, ``GROUND`` or ``MISS``) and the surface normal there.
``Raycaster`` is the backends' interface (``v2x.datasets.raycast_torch``,
``v2x.datasets.raycast_open3d``; ``v2x.datasets.raycast.make_raycaster`` picks one by name),
with the rays' validation they share and the boxes' corners and triangle mesh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MISS = -1
"""``RayHits.prim`` value of a ray that hits nothing within range."""
GROUND = -2
"""``RayHits.prim`` value of a ray that hits the ground plane ``z = 0``."""

# Corner signs of a unit box and its 12 outward-wound triangles (shared by the open3d backend
# and the tests).
BOX_CORNER_SIGNS = np.array(
    [
        [-1, -1, -1],
        [1, -1, -1],
        [1, 1, -1],
        [-1, 1, -1],
        [-1, -1, 1],
        [1, -1, 1],
        [1, 1, 1],
        [-1, 1, 1],
    ],
    dtype=np.float64,
)
BOX_TRIANGLES = np.array(
    [
        [0, 2, 1], [0, 3, 2],  # bottom (-z)
        [4, 5, 6], [4, 6, 7],  # top (+z)
        [0, 1, 5], [0, 5, 4],  # -y
        [2, 3, 7], [2, 7, 6],  # +y
        [1, 2, 6], [1, 6, 5],  # +x
        [3, 0, 4], [3, 4, 7],  # -x
    ],
    dtype=np.int64,
)  # fmt: skip


@dataclass
class BoxScene:
    """Oriented boxes plus an optional ground plane.

    Attributes:
        boxes: ``[K, 7]`` float64 world-frame boxes (x, y, z, l, w, h, yaw), z at the centre.
        reflectivity: ``[K]`` float64 in [0, 1] (used for intensity).
        ground: whether the plane ``z = 0`` is part of the scene.
        ground_reflectivity: reflectivity of the ground.
    """

    boxes: np.ndarray
    reflectivity: np.ndarray | None = None
    ground: bool = True
    ground_reflectivity: float = 0.15

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 7)
        if boxes.ndim != 2 or boxes.shape[1] != 7:
            raise ValueError(f"BoxScene: field 'boxes' must be [K, 7], got {boxes.shape}")
        if not np.all(np.isfinite(boxes)) or np.any(boxes[:, 3:6] <= 0):
            raise ValueError("BoxScene: field 'boxes' must be finite with positive sizes")
        self.boxes = np.ascontiguousarray(boxes)
        refl = np.full(len(boxes), 0.5) if self.reflectivity is None else self.reflectivity
        refl = np.asarray(refl, dtype=np.float64).reshape(-1)
        if refl.shape != (len(boxes),):
            raise ValueError(
                f"BoxScene: field 'reflectivity' must be [{len(boxes)}], got {refl.shape}"
            )
        self.reflectivity = refl

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])

    def triangles(self) -> tuple[np.ndarray, np.ndarray]:
        """Triangle mesh of the boxes: vertices ``[8K, 3]`` float64, faces ``[12K, 3]`` int64.

        Triangle ``12 k + j`` belongs to box ``k``.
        """
        return box_triangles(self.boxes)


@dataclass
class RayHits:
    """What each ray hit (numpy, CPU).

    Attributes:
        t: ``[R]`` float64 distance to the hit in metres along the unit ray (``inf`` = miss).
        prim: ``[R]`` int64 box index, ``GROUND`` or ``MISS``.
        normal: ``[R, 3]`` float64 unit surface normal at the hit (zeros for a miss); its sign
            is backend-dependent, use ``|normal · direction|``.
    """

    t: np.ndarray
    prim: np.ndarray
    normal: np.ndarray

    @property
    def hit(self) -> np.ndarray:
        return self.prim != MISS


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """Corners of oriented boxes: ``[K, 7]`` → ``[K, 8, 3]`` float64 (order of BOX_CORNER_SIGNS)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    local = BOX_CORNER_SIGNS[None] * boxes[:, None, 3:6] / 2.0
    c, s = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    x = c * local[..., 0] - s * local[..., 1] + boxes[:, None, 0]
    y = s * local[..., 0] + c * local[..., 1] + boxes[:, None, 1]
    z = local[..., 2] + boxes[:, None, 2]
    return np.stack([x, y, z], axis=-1)


def box_triangles(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangle mesh of boxes: vertices ``[8K, 3]`` float64 and faces ``[12K, 3]`` int64."""
    corners = box_corners(boxes)
    k = corners.shape[0]
    faces = (BOX_TRIANGLES[None] + 8 * np.arange(k)[:, None, None]).reshape(-1, 3)
    return corners.reshape(-1, 3), faces


def _as_rays(origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate rays; returns origins ``[R, 3]`` (``[1, 3]`` for a single origin), unit
    directions ``[R, 3]`` and the single-origin flag."""
    d = np.asarray(directions, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != 3:
        raise ValueError(f"raycast: field 'directions' must be [R, 3], got {d.shape}")
    o = np.asarray(origins, dtype=np.float64)
    single = o.shape == (3,)
    if single:
        o = o[None]
    elif o.shape != d.shape:
        raise ValueError(f"raycast: field 'origins' must be [3] or {d.shape}, got {o.shape}")
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    if np.any(norm < 1e-12) or not np.all(np.isfinite(d)) or not np.all(np.isfinite(o)):
        raise ValueError("raycast: rays must be finite with non-zero directions")
    return o, d / norm, single


def _as_groups(
    origins: np.ndarray, directions: np.ndarray, group: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate grouped rays; returns origins ``[G, 3]`` float64 and group ``[R]`` int64."""
    o = np.asarray(origins, dtype=np.float64)
    if o.ndim != 2 or o.shape[1] != 3 or not np.all(np.isfinite(o)):
        raise ValueError(f"raycast: field 'origins' must be finite [G, 3], got {o.shape}")
    g = np.asarray(group)
    r = np.shape(directions)[0]
    if g.shape != (r,) or not np.issubdtype(g.dtype, np.integer):
        raise ValueError(f"raycast: field 'group' must be [{r}] integers, got {g.shape} {g.dtype}")
    if r and (g.min() < 0 or g.max() >= len(o)):
        raise ValueError(f"raycast: field 'group' must index the {len(o)} origins")
    return o, g.astype(np.int64)


class Raycaster:
    """Common interface of the backends."""

    name = "base"

    def cast(
        self,
        scene: BoxScene,
        origins: np.ndarray,
        directions: np.ndarray,
        max_range_m: float = math.inf,
    ) -> RayHits:
        """Cast rays into ``scene``.

        Args:
            scene: the boxes and ground.
            origins: ``[3]`` (one origin for all rays) or ``[R, 3]`` float64, world frame.
            directions: ``[R, 3]`` world-frame directions (normalised internally).
            max_range_m: hits farther than this count as misses.

        Returns:
            ``RayHits`` with ``t`` measured along the normalised directions.
        """
        raise NotImplementedError

    def cast_groups(
        self,
        scene: BoxScene,
        origins: np.ndarray,
        directions: np.ndarray,
        group: np.ndarray,
        max_range_m: float = math.inf,
    ) -> RayHits:
        """Cast several sensors' rays at once: ray ``i`` starts at ``origins[group[i]]``.

        Args:
            origins: ``[G, 3]`` float64 world-frame sensor positions.
            directions: ``[R, 3]`` world-frame directions.
            group: ``[R]`` int index into ``origins``.
        """
        o, g = _as_groups(origins, directions, group)
        return self.cast(scene, o[g], directions, max_range_m)
