"""The open3d ray caster (``make_raycaster("open3d")``): open3d's ``RaycastingScene`` (CPU,
Embree BVH) over the boxes' triangles and a ground quad large enough to cover every ray's range.

open3d is imported lazily, on the first cast (``v2x.datasets.o3d``).
"""

from __future__ import annotations

import math

import numpy as np

from v2x.datasets.raycast_scene import GROUND, MISS, BoxScene, Raycaster, RayHits, _as_rays


class Open3dRaycaster(Raycaster):
    """open3d ``RaycastingScene`` backend (CPU, Embree BVH)."""

    name = "open3d"

    def __init__(self, ground_half_extent_m: float = 1e4) -> None:
        self.ground_half_extent_m = float(ground_half_extent_m)

    def cast(
        self,
        scene: BoxScene,
        origins: np.ndarray,
        directions: np.ndarray,
        max_range_m: float = math.inf,
    ) -> RayHits:
        from v2x.datasets.o3d import import_open3d

        o3d = import_open3d()
        o, d, _ = _as_rays(origins, directions)
        ref = o.mean(axis=0)
        verts, faces = scene.triangles()
        verts = verts - ref
        n_box_tris = faces.shape[0]
        if scene.ground:
            reach = max_range_m if math.isfinite(max_range_m) else self.ground_half_extent_m
            span = np.abs(o - ref).max() + reach + 1.0
            gz = -ref[2]
            ground_v = np.array(
                [[-span, -span, gz], [span, -span, gz], [span, span, gz], [-span, span, gz]]
            )
            ground_f = np.array([[0, 1, 2], [0, 2, 3]]) + verts.shape[0]
            verts = np.concatenate([verts, ground_v])
            faces = np.concatenate([faces, ground_f])
        rc = o3d.t.geometry.RaycastingScene()
        if faces.shape[0]:
            rc.add_triangles(
                o3d.core.Tensor(verts.astype(np.float32)),
                o3d.core.Tensor(faces.astype(np.uint32)),
            )
        rays = np.concatenate([np.broadcast_to(o - ref, d.shape), d], axis=1).astype(np.float32)
        ans = rc.cast_rays(o3d.core.Tensor(rays))
        t = ans["t_hit"].numpy().astype(np.float64)
        tri = ans["primitive_ids"].numpy().astype(np.int64)
        normal = ans["primitive_normals"].numpy().astype(np.float64)
        hit = np.isfinite(t) & (t <= max_range_m)
        prim = np.where(tri >= n_box_tris, GROUND, tri // 12)
        prim = np.where(hit, prim, MISS)
        t = np.where(hit, t, np.inf)
        normal[~hit] = 0.0
        return RayHits(t=t, prim=prim, normal=normal)
