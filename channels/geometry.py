"""Line-of-sight from the scene: is the segment between two antennas blocked by a box?

Vectorised slab test (Kay & Kajiya 1986; Williams et al., "An efficient and robust ray–box
intersection algorithm", JGT 2005) of ``S`` segments against ``K`` oriented boxes
``(x, y, z, l, w, h, yaw)`` (centre, size along the box's x/y/z, yaw about +z in radians), all in
one world frame (float64).
"""

from __future__ import annotations

import numpy as np
import torch


def segments_blocked(
    p0,
    p1,
    boxes,
    ignore_endpoint_boxes: bool = True,
    return_matrix: bool = False,
):
    """Which segments ``p0 → p1`` pass through any box.

    Args:
        p0, p1: ``[S, 3]`` segment endpoints (m), torch or numpy.
        boxes: ``[K, 7]`` boxes ``(x, y, z, l, w, h, yaw)``; ``z`` is the box centre.
        ignore_endpoint_boxes: ignore, per segment, boxes that contain one of its endpoints (the
            transmitter's / receiver's own vehicle body).
        return_matrix: also return the ``[S, K]`` hit matrix.

    Returns:
        ``[S]`` bool (torch in → torch out, numpy in → numpy out), True if blocked; and the
        ``[S, K]`` matrix when ``return_matrix``.
    """
    as_numpy = isinstance(p0, np.ndarray)
    a = torch.as_tensor(p0, dtype=torch.float64).reshape(-1, 3)
    b = torch.as_tensor(p1, dtype=torch.float64).reshape(-1, 3)
    bx = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 7)
    if a.shape != b.shape:
        raise ValueError(
            f"segments_blocked: 'p0' {tuple(a.shape)} and 'p1' {tuple(b.shape)} differ"
        )
    if not (torch.isfinite(a).all() and torch.isfinite(b).all() and torch.isfinite(bx).all()):
        raise ValueError("segments_blocked: 'p0', 'p1' and 'boxes' must be finite")
    if bool((bx[:, 3:6] < 0).any()):
        raise ValueError("segments_blocked: box sizes (l, w, h) in 'boxes' must be >= 0")
    s, k = a.shape[0], bx.shape[0]
    if k == 0:
        hit = torch.zeros(s, 0, dtype=torch.bool)
    else:
        c, s_yaw = torch.cos(bx[:, 6]), torch.sin(bx[:, 6])
        half = bx[:, 3:6] / 2  # [K, 3]

        def to_box(p: torch.Tensor) -> torch.Tensor:  # [S, 3] → [S, K, 3] in each box's frame
            d = p[:, None, :] - bx[None, :, :3]
            x = c * d[..., 0] + s_yaw * d[..., 1]
            y = -s_yaw * d[..., 0] + c * d[..., 1]
            return torch.stack([x, y, d[..., 2]], dim=-1)

        qa, qb = to_box(a), to_box(b)
        d = qb - qa
        eps = 1e-12
        parallel = d.abs() < eps
        safe = torch.where(parallel, torch.full_like(d, eps), d)
        t1 = (-half - qa) / safe
        t2 = (half - qa) / safe
        lo = torch.minimum(t1, t2)
        hi = torch.maximum(t1, t2)
        inside_slab = qa.abs() <= half
        lo = torch.where(parallel, torch.where(inside_slab, -torch.inf, torch.inf), lo)
        hi = torch.where(parallel, torch.where(inside_slab, torch.inf, -torch.inf), hi)
        t_enter = lo.amax(dim=-1).clamp_min(0.0)
        t_exit = hi.amin(dim=-1).clamp_max(1.0)
        hit = t_enter <= t_exit
        if ignore_endpoint_boxes:
            own = (qa.abs() <= half).all(-1) | (qb.abs() <= half).all(-1)
            hit = hit & ~own
    blocked = hit.any(dim=1)
    if as_numpy:
        blocked, hit = blocked.numpy(), hit.numpy()
    return (blocked, hit) if return_matrix else blocked


def link_conditions(p0, p1, buildings=None, vehicles=None, ignore_endpoint_boxes: bool = True):
    """``[S]`` int link conditions for TR 37.885-style models from the scene's boxes.

    ``NLOS`` (1) where a building / terrain box blocks the segment, else ``NLOSV`` (2) where a
    vehicle box does, else ``LOS`` (0). Pass the result as ``los=`` to a link model
    (``los_mode="geometric"``). ``buildings`` / ``vehicles``: ``[K, 7]`` boxes or ``None``.
    """
    from v2x.channels.link import LOS, NLOS, NLOSV

    a = torch.as_tensor(p0, dtype=torch.float64).reshape(-1, 3)
    b = torch.as_tensor(p1, dtype=torch.float64).reshape(-1, 3)
    empty = torch.zeros(0, 7, dtype=torch.float64)
    by_building = segments_blocked(
        a, b, empty if buildings is None else buildings, ignore_endpoint_boxes
    )
    by_vehicle = segments_blocked(
        a, b, empty if vehicles is None else vehicles, ignore_endpoint_boxes
    )
    cond = torch.full((a.shape[0],), LOS, dtype=torch.long)
    cond = torch.where(by_vehicle, NLOSV, cond)
    return torch.where(by_building, NLOS, cond)
