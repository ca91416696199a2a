"""The pure-torch ray caster (``make_raycaster("torch")``): CPU or CUDA.

A slab test of every ray against every candidate box, batched over rays × boxes and chunked to
bound memory. When rays leave sensor origins (one LiDAR scan, or several sensors' scans through
``cast_groups``), boxes are culled by range and bucketed by (sensor, elevation, azimuth), and
each ray is only tested against the boxes whose angular footprint covers its bucket. Geometry is
recentred on the rays' mean origin in float64 before casting in float32 (``dtype``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from v2x.common import usable_device
from v2x.datasets.raycast_scene import (
    GROUND,
    MISS,
    BoxScene,
    Raycaster,
    RayHits,
    _as_groups,
    _as_rays,
)


class TorchRaycaster(Raycaster):
    """Pure-torch ray caster (CPU or CUDA).

    Args:
        device: torch device for the computation (results come back as numpy).
        chunk_elems: bound on rays × boxes pairs per chunk (memory ≈ 60 bytes per pair).
        azimuth_bins: number of azimuth buckets used to cull boxes for casts from sensor
            origins (``cast`` with one origin, ``cast_groups``); 0 disables culling and tests
            every ray against every box within range.
        elevation_bins: number of elevation buckets (over −90°..90°) for the same culling.
        dtype: compute dtype (float32 is accurate to < 1 mm over 200 m after recentring).
        num_threads: torch CPU threads during a CPU cast (restored afterwards; 0 = leave
            torch's setting). One thread is the default: on small tensors torch's intra-op
            parallelism is slower, and on shared cores it can be 10-20x slower.
    """

    name = "torch"

    def __init__(
        self,
        device: str | torch.device = "cpu",
        chunk_elems: int | None = None,
        azimuth_bins: int = 256,
        elevation_bins: int = 64,
        dtype: torch.dtype = torch.float32,
        num_threads: int = 1,
    ) -> None:
        self.device = usable_device(str(device), "dataset (synthetic): field 'device'")
        if num_threads < 0:
            raise ValueError(f"TorchRaycaster: 'num_threads' must be >= 0, got {num_threads}")
        self.num_threads = int(num_threads)
        if chunk_elems is None:
            chunk_elems = 2**25 if self.device.type == "cuda" else 2**20
        if chunk_elems < 1:
            raise ValueError(f"TorchRaycaster: 'chunk_elems' must be >= 1, got {chunk_elems}")
        self.chunk_elems = int(chunk_elems)
        self.azimuth_bins = int(azimuth_bins)
        self.elevation_bins = max(1, int(elevation_bins))
        self.dtype = dtype

    # ------------------------------------------------------------------ public
    def cast(
        self,
        scene: BoxScene,
        origins: np.ndarray,
        directions: np.ndarray,
        max_range_m: float = math.inf,
    ) -> RayHits:
        o, d, single = _as_rays(origins, directions)
        if single:
            return self._run(scene, o, d, None, max_range_m, per_ray=False)
        return self._run(scene, o, d, None, max_range_m, per_ray=True)

    def cast_groups(
        self,
        scene: BoxScene,
        origins: np.ndarray,
        directions: np.ndarray,
        group: np.ndarray,
        max_range_m: float = math.inf,
    ) -> RayHits:
        o, g = _as_groups(origins, directions, group)
        _, d, _ = _as_rays(np.zeros(3), directions)
        if self.azimuth_bins <= 0:
            return self._run(scene, o[g], d, None, max_range_m, per_ray=True)
        return self._run(scene, o, d, g, max_range_m, per_ray=False)

    def _run(
        self,
        scene: BoxScene,
        o: np.ndarray,
        d: np.ndarray,
        group: np.ndarray | None,
        max_range_m: float,
        per_ray: bool,
    ) -> RayHits:
        ref = o.mean(axis=0)
        previous = torch.get_num_threads()
        limit = self.device.type == "cpu" and 0 < self.num_threads != previous
        if limit:
            torch.set_num_threads(self.num_threads)
        try:
            t, prim, normal = self.cast_tensors(
                scene, o - ref, d, ref, max_range_m, group=group, per_ray=per_ray
            )
        finally:
            if limit:
                torch.set_num_threads(previous)
        return RayHits(
            t=t.double().cpu().numpy(),
            prim=prim.cpu().numpy(),
            normal=normal.double().cpu().numpy(),
        )

    def cast_tensors(
        self,
        scene: BoxScene,
        origins_rel: np.ndarray,
        directions: np.ndarray,
        ref: np.ndarray,
        max_range_m: float,
        group: np.ndarray | None = None,
        per_ray: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cast on ``self.device``; origins are relative to ``ref`` (world frame).

        Args:
            origins_rel: ``[R, 3]`` per-ray origins when ``per_ray`` (every ray against every
                box in range), else ``[G, 3]`` sensor origins with ray ``i`` leaving
                ``origins_rel[group[i]]`` (``group=None``: all rays leave origin 0), culled by
                angular buckets when ``azimuth_bins > 0``.
            directions: ``[R, 3]`` unit directions.

        Returns ``t [R]``, ``prim [R]`` int64 and ``normal [R, 3]`` on ``self.device``.
        """
        dev, dt = self.device, self.dtype
        r = directions.shape[0]
        o = torch.as_tensor(origins_rel, dtype=dt, device=dev)
        d = torch.as_tensor(directions, dtype=dt, device=dev)
        g = None if group is None or per_ray else torch.as_tensor(group, device=dev)
        # Per-ray origin rows ([R, 3], or [1, 3] broadcasting) for the ground and the normals.
        o_ray = o if per_ray or g is None else o[g]
        boxes = scene.boxes.copy()
        boxes[:, :3] -= ref
        keep = self._range_cull(boxes, origins_rel, max_range_m)
        box_index = np.flatnonzero(keep)
        boxes = boxes[keep]
        t = torch.full((r,), math.inf, dtype=dt, device=dev)
        prim = torch.full((r,), MISS, dtype=torch.int64, device=dev)
        normal = torch.zeros((r, 3), dtype=dt, device=dev)
        # Ground plane z = 0 (in world frame; ref shifts it to z = -ref_z).
        if scene.ground:
            oz = o_ray[:, 2] + float(ref[2])
            tg = torch.where(d[:, 2] < -1e-12, -oz / d[:, 2].clamp(max=-1e-12), math.inf)
            tg = torch.where(tg > 0, tg, math.inf)
            ground_hit = torch.isfinite(tg)
            t = torch.where(ground_hit, tg, t)
            prim = torch.where(ground_hit, torch.full_like(prim, GROUND), prim)
            normal[ground_hit, 2] = 1.0
        if len(boxes):
            params = self._box_params(boxes)
            if not per_ray and self.azimuth_bins > 0:
                tb, kb = self._cast_binned(o, d, params, g)
            else:
                tb, kb = self._cast_dense(o_ray, d, params)
            closer = tb < t
            t = torch.where(closer, tb, t)
            kidx = torch.as_tensor(box_index, device=dev)[kb.clamp(min=0)]
            prim = torch.where(closer, kidx, prim)
            if bool(closer.any()):
                sel = torch.nonzero(closer).squeeze(1)
                normal[sel] = self._box_normals(o_ray, d, t, params, kb, sel)
        if math.isfinite(max_range_m):
            far = t > max_range_m
            t = torch.where(far, math.inf, t)
            prim = torch.where(far, torch.full_like(prim, MISS), prim)
            normal[far] = 0.0
        return t, prim, normal

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _range_cull(boxes: np.ndarray, origins_rel: np.ndarray, max_range_m: float) -> np.ndarray:
        """Boxes whose bounding sphere comes within ``max_range_m`` of some origin."""
        if not math.isfinite(max_range_m):
            return np.ones(len(boxes), dtype=bool)
        lo, hi = origins_rel.min(axis=0), origins_rel.max(axis=0)
        radius = 0.5 * np.linalg.norm(boxes[:, 3:6], axis=1)
        gap = np.maximum(np.maximum(lo - boxes[:, :3], boxes[:, :3] - hi), 0.0)
        return np.linalg.norm(gap, axis=1) - radius <= max_range_m

    def _box_params(self, boxes: np.ndarray) -> dict[str, torch.Tensor]:
        dev, dt = self.device, self.dtype
        b = torch.as_tensor(boxes, dtype=torch.float64, device=dev)
        return {
            "c": b[:, :3].to(dt),
            "half": (b[:, 3:6] / 2).to(dt),
            "cos": torch.cos(b[:, 6]).to(dt),
            "sin": torch.sin(b[:, 6]).to(dt),
        }

    @staticmethod
    def _slab(
        ox: torch.Tensor,
        oy: torch.Tensor,
        oz: torch.Tensor,
        dx: torch.Tensor,
        dy: torch.Tensor,
        dz: torch.Tensor,
        hx: torch.Tensor,
        hy: torch.Tensor,
        hz: torch.Tensor,
    ) -> torch.Tensor:
        """Slab test in box-local coordinates (broadcasting); returns entry distance or inf."""
        eps = 1e-12

        def axis(o: torch.Tensor, dd: torch.Tensor, h: torch.Tensor):
            inv = 1.0 / torch.where(dd.abs() < eps, torch.full_like(dd, eps), dd)
            t1 = (-h - o) * inv
            t2 = (h - o) * inv
            return torch.minimum(t1, t2), torch.maximum(t1, t2)

        n1, f1 = axis(ox, dx, hx)
        n2, f2 = axis(oy, dy, hy)
        n3, f3 = axis(oz, dz, hz)
        tnear = torch.maximum(torch.maximum(n1, n2), n3)
        tfar = torch.minimum(torch.minimum(f1, f2), f3)
        # Inside a box the first surface met is its exit face (as with a triangle mesh).
        tt = torch.where(tnear > 0, tnear, tfar)
        return torch.where((tnear <= tfar) & (tfar > 0), tt, torch.full_like(tt, math.inf))

    def _cast_dense(
        self, o: torch.Tensor, d: torch.Tensor, p: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every ray against every box: ``[R]`` nearest distance and local box index (−1)."""
        r, k = d.shape[0], p["c"].shape[0]
        step = max(1, self.chunk_elems // k)
        t_out = torch.empty(r, dtype=d.dtype, device=d.device)
        k_out = torch.empty(r, dtype=torch.int64, device=d.device)
        cs, sn = p["cos"][None], p["sin"][None]
        hx, hy, hz = p["half"][None, :, 0], p["half"][None, :, 1], p["half"][None, :, 2]
        for s in range(0, r, step):
            oo = o if o.shape[0] == 1 else o[s : s + step]
            dd = d[s : s + step]
            rx = oo[:, 0:1] - p["c"][None, :, 0]
            ry = oo[:, 1:2] - p["c"][None, :, 1]
            rz = oo[:, 2:3] - p["c"][None, :, 2]
            lx, ly = cs * rx + sn * ry, cs * ry - sn * rx
            dx, dy = cs * dd[:, 0:1] + sn * dd[:, 1:2], cs * dd[:, 1:2] - sn * dd[:, 0:1]
            tt = self._slab(lx, ly, rz, dx, dy, dd[:, 2:3], hx, hy, hz)
            tmin, kmin = tt.min(dim=1)
            t_out[s : s + step] = tmin
            k_out[s : s + step] = torch.where(torch.isfinite(tmin), kmin, -1)
        return t_out, k_out

    def _bin_members(self, p: dict[str, torch.Tensor], origin: torch.Tensor) -> torch.Tensor:
        """Which boxes each (elevation, azimuth) bucket of rays from ``origin`` can hit.

        A box is listed in every bucket that overlaps its (conservative) angular footprint:
        its azimuth interval seen from the origin and its elevation interval bounded using
        the nearest and farthest horizontal distance to its footprint. Runs on the boxes'
        device.

        Returns:
            ``[elevation_bins * azimuth_bins, K]`` bool.
        """
        na, ne = self.azimuth_bins, self.elevation_bins
        dev = origin.device
        rel = p["c"] - origin[None]
        cs, sn, half = p["cos"], p["sin"], p["half"]
        # Nearest horizontal distance from the origin to each footprint (0 when inside).
        lx = (cs * rel[:, 0] + sn * rel[:, 1]).abs()
        ly = (cs * rel[:, 1] - sn * rel[:, 0]).abs()
        dmin = torch.hypot((lx - half[:, 0]).clamp(min=0), (ly - half[:, 1]).clamp(min=0))
        inside = dmin < 1e-3
        signs = torch.tensor([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=rel.dtype, device=dev)
        ux, uy = signs[None, :, 0] * half[:, None, 0], signs[None, :, 1] * half[:, None, 1]
        cx = rel[:, None, 0] + cs[:, None] * ux - sn[:, None] * uy  # [K, 4] footprint corners
        cy = rel[:, None, 1] + sn[:, None] * ux + cs[:, None] * uy
        dmax = torch.hypot(cx, cy).amax(dim=1)
        # Azimuth interval (the footprint is convex; spans < pi unless the origin is inside).
        az_c = torch.atan2(rel[:, 1], rel[:, 0])
        delta = torch.remainder(torch.atan2(cy, cx) - az_c[:, None] + math.pi, 2 * math.pi)
        delta = delta - math.pi
        margin = 1e-3
        width = 2 * math.pi / na
        start = torch.floor((az_c + delta.amin(dim=1) - margin + math.pi) / width).long()
        stop = torch.floor((az_c + delta.amax(dim=1) + margin + math.pi) / width).long()
        count = torch.where(inside, na, torch.clamp(stop - start + 1, max=na))
        bins_a = torch.arange(na, device=dev)[:, None]
        az_member = torch.remainder(bins_a - torch.remainder(start, na)[None], na) < count[None]
        # Elevation interval.
        zt = rel[:, 2] + half[:, 2]
        zb = rel[:, 2] - half[:, 2]
        el_hi = torch.atan2(zt, torch.where(zt >= 0, dmin, dmax))
        el_lo = torch.atan2(zb, torch.where(zb >= 0, dmax, dmin))
        height = math.pi / ne
        e0 = torch.floor((el_lo - margin + math.pi / 2) / height).long().clamp(0, ne - 1)
        e1 = torch.floor((el_hi + margin + math.pi / 2) / height).long().clamp(0, ne - 1)
        bins_e = torch.arange(ne, device=dev)[:, None]
        el_member = (bins_e >= e0[None]) & (bins_e <= e1[None])
        return (el_member[:, None, :] & az_member[None, :, :]).reshape(ne * na, -1)

    def _ray_bins(self, d: torch.Tensor) -> torch.Tensor:
        """Bucket index ``[R]`` of unit directions ``d [R, 3]`` (elevation-major)."""
        na, ne = self.azimuth_bins, self.elevation_bins
        az = torch.atan2(d[:, 1], d[:, 0])
        el = torch.asin(d[:, 2].clamp(-1.0, 1.0))
        ia = ((az + math.pi) / (2 * math.pi / na)).floor().long().clamp(0, na - 1)
        ie = ((el + math.pi / 2) / (math.pi / ne)).floor().long().clamp(0, ne - 1)
        return ie * na + ia

    def _cast_binned(
        self,
        origins: torch.Tensor,
        d: torch.Tensor,
        p: dict[str, torch.Tensor],
        group: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cast from ``G`` sensor origins over candidate (ray, box) pairs from angular buckets.

        Each sensor has its own buckets (``G × elevation_bins × azimuth_bins``). Rays are sorted
        by bucket; each bucket's rays are paired with the bucket's boxes, the slab test runs
        once per pair (chunks of at most ``chunk_elems`` pairs), and the nearest hit per ray is
        reduced with ``scatter_reduce``.

        Args:
            origins: ``[G, 3]`` sensor origins; ``group``: ``[R]`` sensor of each ray (or None).
        """
        dev = d.device
        n_groups = origins.shape[0]
        member = torch.cat([self._bin_members(p, origins[i]) for i in range(n_groups)])
        per_group = member.shape[0] // n_groups  # buckets per sensor
        n_boxes = p["c"].shape[0]
        nk = member.sum(dim=1)
        # CSR lists of candidate boxes per bucket (nonzero is row-major: sorted by bucket).
        _, box_of = member.nonzero(as_tuple=True)
        box_start = torch.cumsum(nk, 0) - nk
        bins = self._ray_bins(d)
        if group is not None:
            bins = bins + group * per_group
        ray_order = torch.argsort(bins)
        nr = torch.bincount(bins, minlength=member.shape[0])
        ray_start = torch.cumsum(nr, 0) - nr
        pairs = nr * nk
        pairs_cpu = pairs.cpu().numpy()
        # Local coordinates of each sensor origin per box, and box constants: [G * K, 8].
        rx, ry, rz = (origins[:, None, i] - p["c"][None, :, i] for i in range(3))  # [G, K]
        cs, sn = p["cos"].expand_as(rx), p["sin"].expand_as(rx)
        half = p["half"].expand(n_groups, n_boxes, 3)
        per_box = torch.stack(
            [cs * rx + sn * ry, cs * ry - sn * rx, rz, cs, sn, half[..., 0], half[..., 1],
             half[..., 2]],
            dim=-1,
        ).reshape(n_groups * n_boxes, 8)  # fmt: skip
        r = d.shape[0]
        t_out = torch.full((r,), math.inf, dtype=d.dtype, device=dev)
        k_out = torch.full((r,), -1, dtype=torch.int64, device=dev)
        cum = np.concatenate([[0], np.cumsum(pairs_cpu)])
        b, nbins = 0, member.shape[0]
        while b < nbins:
            # Group consecutive buckets up to chunk_elems pairs (at least one bucket).
            e = int(np.searchsorted(cum, cum[b] + self.chunk_elems, side="right")) - 1
            e = min(max(e, b + 1), nbins)
            total = int(cum[e] - cum[b])
            if total:
                bin_ids = torch.arange(b, e, device=dev)
                pair_bin = torch.repeat_interleave(bin_ids, pairs[b:e], output_size=total)
                local = torch.arange(total, device=dev) - (
                    torch.as_tensor(cum[:-1], device=dev)[pair_bin] - int(cum[b])
                )
                kb = nk[pair_bin]
                ray = ray_order[ray_start[pair_bin] + torch.div(local, kb, rounding_mode="floor")]
                box = box_of[box_start[pair_bin] + local % kb]
                q = per_box[torch.div(pair_bin, per_group, rounding_mode="floor") * n_boxes + box]
                dd = d[ray]
                cs, sn = q[:, 3], q[:, 4]
                dx = cs * dd[:, 0] + sn * dd[:, 1]
                dy = cs * dd[:, 1] - sn * dd[:, 0]
                tt = self._slab(q[:, 0], q[:, 1], q[:, 2], dx, dy, dd[:, 2], q[:, 5], q[:, 6],
                                q[:, 7])  # fmt: skip
                t_out.scatter_reduce_(0, ray, tt, reduce="amin")
                win = (tt == t_out[ray]) & torch.isfinite(tt)
                k_out.scatter_reduce_(0, ray[win], box[win], reduce="amax")
            b = e
        return t_out, k_out

    @staticmethod
    def _box_normals(
        o: torch.Tensor,
        d: torch.Tensor,
        t: torch.Tensor,
        p: dict[str, torch.Tensor],
        kb: torch.Tensor,
        sel: torch.Tensor,
    ) -> torch.Tensor:
        """World-frame outward normals of the face each selected ray hit: ``[S, 3]``."""
        k = kb[sel]
        oo = o[sel] if o.shape[0] > 1 else o.expand(sel.shape[0], 3)
        hit = oo + d[sel] * t[sel, None] - p["c"][k]
        cs, sn = p["cos"][k], p["sin"][k]
        lx, ly = cs * hit[:, 0] + sn * hit[:, 1], cs * hit[:, 1] - sn * hit[:, 0]
        local = torch.stack([lx, ly, hit[:, 2]], dim=1) / p["half"][k]
        axis = local.abs().argmax(dim=1)
        sign = torch.sign(local.gather(1, axis[:, None]).squeeze(1))
        n_local = torch.zeros_like(local)
        n_local.scatter_(1, axis[:, None], sign[:, None])
        nx = cs * n_local[:, 0] - sn * n_local[:, 1]
        ny = sn * n_local[:, 0] + cs * n_local[:, 1]
        return torch.stack([nx, ny, n_local[:, 2]], dim=1)
