"""Box geometry: BEV corners, exact rotated BEV IoU, 3D IoU and rigid transforms of boxes.

Boxes are ``(x, y, z, l, w, h, yaw)``: centre ``(x, y, z)`` in metres with ``z`` at the box
centre, ``l`` along the heading, ``w`` across it, ``h`` vertical, and ``yaw`` in radians about
+z measured from +x (right-handed, x forward, z up), the project-wide convention.

The IoU is exact for the convex BEV footprints (no rasterisation, no axis-aligned
approximation): the intersection polygon of two rotated rectangles is the convex polygon whose
vertices are (a) the corners of either rectangle that lie inside the other and (b) the crossing
points of their edges. All candidate vertices (4 + 4 + 16 = 24 per pair) are computed at once,
ordered by angle about their mean and integrated with the shoelace formula, for every pair in
one batched tensor program. Only pairs whose circumscribed circles overlap are evaluated, so
sparse scenes cost little. Coordinates are shifted to the pair's own origin before the
arithmetic, so float32 stays accurate far from the world origin.

Everything follows the device and dtype of its inputs; there are no Python loops over boxes.
On CUDA in inference the pairwise and paired areas (and ``rotated_iou_bev``'s IoU) run as one
Triton launch of the same construction (``boxes_triton``; equal to float rounding) instead of
the ~60 operators of the torch form.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "boxes_to_corners_bev",
    "boxes_bev_area",
    "intersection_area_bev_aligned",
    "rotated_iou_bev",
    "rotated_iou_bev_aligned",
    "iou_3d",
    "transform_boxes",
    "wrap_angle",
]

# Pairs of boxes are processed in chunks of at most this many candidate pairs to bound memory
# (each pair needs ~24 x 2 working values plus sorting buffers).
_PAIR_CHUNK = 1 << 18
# Pairwise matrices larger than this many entries are processed in blocks of rows.
_DENSE_CHUNK = 1 << 22


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    if not isinstance(boxes, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor [..., 7], got {type(boxes).__name__}")
    if boxes.ndim < 1 or boxes.shape[-1] != 7:
        raise ValueError(
            f"{name}: expected shape [..., 7] (x, y, z, l, w, h, yaw), got {tuple(boxes.shape)}"
        )
    if not boxes.is_floating_point():
        raise ValueError(f"{name}: expected a floating dtype, got {boxes.dtype}")


def wrap_angle(angle: torch.Tensor) -> torch.Tensor:
    """Wrap angles (radians) to ``[-pi, pi)``; any shape."""
    return torch.remainder(angle + math.pi, 2.0 * math.pi) - math.pi


def boxes_to_corners_bev(boxes: torch.Tensor) -> torch.Tensor:
    """BEV footprint corners of boxes.

    Args:
        boxes: ``[..., 7]`` (x, y, z, l, w, h, yaw).

    Returns:
        ``[..., 4, 2]`` corners (x, y) in metres, counter-clockwise (positive area for
        positive ``l``, ``w``), starting at the front-left corner: front-left, rear-left,
        rear-right, front-right (front = +l/2 along the heading, left = +w/2).
    """
    _check_boxes(boxes, "boxes")
    return _corners(boxes[..., 0:2], boxes[..., 3], boxes[..., 4], boxes[..., 6])


def _corners(
    centre_xy: torch.Tensor, length: torch.Tensor, width: torch.Tensor, yaw: torch.Tensor
) -> torch.Tensor:
    """``[..., 2]``, ``[...]``, ``[...]``, ``[...]`` -> ``[..., 4, 2]`` CCW corners."""
    cos, sin = torch.cos(yaw), torch.sin(yaw)
    hl, hw = 0.5 * length, 0.5 * width
    # local corners (CCW): (+l, +w), (-l, +w), (-l, -w), (+l, -w)
    sx = torch.stack([hl, -hl, -hl, hl], dim=-1)  # [..., 4]
    sy = torch.stack([hw, hw, -hw, -hw], dim=-1)
    cx = cos.unsqueeze(-1) * sx - sin.unsqueeze(-1) * sy + centre_xy[..., 0:1]
    cy = sin.unsqueeze(-1) * sx + cos.unsqueeze(-1) * sy + centre_xy[..., 1:2]
    return torch.stack([cx, cy], dim=-1)


def boxes_bev_area(boxes: torch.Tensor) -> torch.Tensor:
    """BEV footprint areas ``l * w`` in m^2: ``[..., 7]`` -> ``[...]``."""
    _check_boxes(boxes, "boxes")
    return boxes[..., 3] * boxes[..., 4]


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """z component of the 2D cross product of ``[..., 2]`` vectors."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _quad_xy(
    cx: torch.Tensor, cy: torch.Tensor, length: torch.Tensor, width: torch.Tensor, yaw: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[P]`` box parameters -> corner coordinates ``x [P, 4]``, ``y [P, 4]`` (CCW)."""
    cos, sin = torch.cos(yaw).unsqueeze(-1), torch.sin(yaw).unsqueeze(-1)
    # (+l, -l, -l, +l) / 2 and (+w, +w, -w, -w) / 2: signs by negation (exact, like a product
    # with +-1.0), with no host-to-device copy of a sign table (a sync on CUDA)
    hl, hw = 0.5 * length, 0.5 * width
    sx = torch.stack([hl, -hl, -hl, hl], dim=-1)
    sy = torch.stack([hw, hw, -hw, -hw], dim=-1)
    return cos * sx - sin * sy + cx.unsqueeze(-1), sin * sx + cos * sy + cy.unsqueeze(-1)


def _inside(
    px: torch.Tensor,
    py: torch.Tensor,
    ex: torch.Tensor,
    ey: torch.Tensor,
    offset: torch.Tensor,
    slack: torch.Tensor,
) -> torch.Tensor:
    """Points ``[P, K]`` on the inner side of all 4 CCW edges (direction ``ex, ey [P, 4]``,
    ``offset = ex * qy - ey * qx``), up to ``slack [P, 4]`` -> ``[P, K]``."""
    side = ex.unsqueeze(1) * py.unsqueeze(2) - ey.unsqueeze(1) * px.unsqueeze(2)
    return (side - offset.unsqueeze(1) >= -slack.unsqueeze(1)).all(dim=-1)


def _intersection_area_quads(
    ax: torch.Tensor, ay: torch.Tensor, bx: torch.Tensor, by: torch.Tensor
) -> torch.Tensor:
    """Exact intersection area of CCW convex quadrilaterals given as corner coordinates
    ``ax, ay, bx, by [P, 4]`` -> ``[P]``.

    The inputs should already be centred near the origin (the caller shifts each pair).
    Coordinates are kept as separate contiguous x / y tensors (faster on CPU than ``[..., 2]``).
    """
    dtype = ax.dtype
    eps = torch.finfo(dtype).eps
    # length scale per pair, for scale-aware tolerances
    scale = torch.stack([ax.abs(), ay.abs(), bx.abs(), by.abs()], dim=-1).amax(dim=(1, 2))
    tol = scale.clamp_min(1e-12) * (64.0 * eps)  # [P]

    dax, day = torch.roll(ax, -1, dims=1) - ax, torch.roll(ay, -1, dims=1) - ay  # [P, 4]
    dbx, dby = torch.roll(bx, -1, dims=1) - bx, torch.roll(by, -1, dims=1) - by
    len_a = torch.hypot(dax, day)
    len_b = torch.hypot(dbx, dby)
    a_in_b = _inside(ax, ay, dbx, dby, dbx * by - dby * bx, tol.unsqueeze(-1) * len_b)
    b_in_a = _inside(bx, by, dax, day, dax * ay - day * ax, tol.unsqueeze(-1) * len_a)

    # edge-edge crossings a_i + t da_i = b_j + u db_j, as [P, 4 (i), 4 (j)]
    dax_, day_ = dax.unsqueeze(2), day.unsqueeze(2)
    dbx_, dby_ = dbx.unsqueeze(1), dby.unsqueeze(1)
    abx = bx.unsqueeze(1) - ax.unsqueeze(2)
    aby = by.unsqueeze(1) - ay.unsqueeze(2)
    denom = dax_ * dby_ - day_ * dbx_
    # parallel (or degenerate) edges contribute no crossing; their shared points are corners
    ok = denom.abs() > (len_a.unsqueeze(2) * len_b.unsqueeze(1)) * (16.0 * eps)
    safe = torch.where(ok, denom, torch.ones_like(denom))
    t = (abx * dby_ - aby * dbx_) / safe
    u = (abx * day_ - aby * dax_) / safe
    slack = 16.0 * eps
    ok = ok & (t >= -slack) & (t <= 1 + slack) & (u >= -slack) & (u <= 1 + slack)
    cross_x = ax.unsqueeze(2) + t * dax_
    cross_y = ay.unsqueeze(2) + t * day_

    p = ax.shape[0]
    xs = torch.cat([ax, bx, cross_x.reshape(p, 16)], dim=1)  # [P, 24]
    ys = torch.cat([ay, by, cross_y.reshape(p, 16)], dim=1)
    valid = torch.cat([a_in_b, b_in_a, ok.reshape(p, 16)], dim=1)

    n_valid = valid.sum(dim=1)
    w = valid.to(dtype)
    denom_n = n_valid.clamp_min(1).to(dtype)
    rx = xs - ((xs * w).sum(dim=1) / denom_n).unsqueeze(-1)
    ry = ys - ((ys * w).sum(dim=1) / denom_n).unsqueeze(-1)
    # pseudo-angle: monotone in atan2 over one turn, cheaper than atan2, range (-1, 3]
    ratio = ry / (rx.abs() + ry.abs()).clamp_min(torch.finfo(dtype).tiny)
    ang = torch.where(rx < 0, 2.0 - ratio, ratio)
    ang = torch.where(valid, ang, torch.full_like(ang, 10.0))  # invalid points sort last
    order = torch.argsort(ang, dim=1)
    rx, ry = torch.gather(rx, 1, order), torch.gather(ry, 1, order)
    valid_sorted = torch.gather(valid, 1, order)
    # invalid slots repeat the first vertex: they add zero area to the closed shoelace sum
    rx = torch.where(valid_sorted, rx, rx[:, 0:1])
    ry = torch.where(valid_sorted, ry, ry[:, 0:1])
    area = 0.5 * (rx * torch.roll(ry, -1, dims=1) - torch.roll(rx, -1, dims=1) * ry).sum(dim=1)
    return torch.where(n_valid >= 3, area.clamp_min(0.0), torch.zeros_like(area))


def intersection_area_bev_aligned(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact BEV intersection area (m^2) of paired boxes ``a[i]`` and ``b[i]``.

    Args:
        a: ``[..., 7]`` boxes.
        b: ``[..., 7]`` boxes, broadcastable with ``a``.

    Returns:
        ``[...]`` intersection areas of the footprints.
    """
    _check_boxes(a, "a")
    _check_boxes(b, "b")
    a, b = torch.broadcast_tensors(a, b)
    batch_shape = a.shape[:-1]
    a2, b2 = a.reshape(-1, 7), b.reshape(-1, 7)
    out = a2.new_zeros(a2.shape[0])
    for start in range(0, a2.shape[0], _PAIR_CHUNK):
        sl = slice(start, start + _PAIR_CHUNK)
        out[sl] = _pair_intersection(a2[sl], b2[sl])
    return out.reshape(batch_shape)


def use_box_kernel(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the Triton kernels (``boxes_triton``: the same construction in one launch) can
    take ``a`` and ``b``: CUDA, one float32/float64 dtype, no gradient wanted, Triton
    installed."""
    if not (a.is_cuda and b.is_cuda and a.dtype == b.dtype):
        return False
    if a.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return False
    from v2x.common import triton_available

    return triton_available()


def _pair_intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[P, 7], [P, 7] -> [P]`` intersection area, each pair shifted to its own origin."""
    if use_box_kernel(a, b):
        from v2x.perception.boxes_triton import aligned_intersection_triton

        return aligned_intersection_triton(a, b)
    origin = 0.5 * (a[:, 0:2] + b[:, 0:2])
    ax, ay = _quad_xy(a[:, 0] - origin[:, 0], a[:, 1] - origin[:, 1], a[:, 3], a[:, 4], a[:, 6])
    bx, by = _quad_xy(b[:, 0] - origin[:, 0], b[:, 1] - origin[:, 1], b[:, 3], b[:, 4], b[:, 6])
    return _intersection_area_quads(ax, ay, bx, by)


def _pairwise_by_kernel(a: torch.Tensor, b: torch.Tensor, iou: bool) -> torch.Tensor | None:
    """``[..., N, M]`` areas (IoUs with ``iou``) of ``a [..., N, 7]``, ``b [..., M, 7]`` from
    ``boxes_triton.pairwise_intersection_triton``; ``None`` where it cannot take them (not
    ``use_box_kernel``, other batch dimensions, or ``N · M ≥ 2**31``: its int32 pair index)."""
    n, m = a.shape[-2], b.shape[-2]
    if a.shape[:-2] != b.shape[:-2] or n * m >= 2**31 or not use_box_kernel(a, b):
        return None
    from v2x.perception.boxes_triton import pairwise_intersection_triton

    out = pairwise_intersection_triton(a.reshape(-1, n, 7), b.reshape(-1, m, 7), iou=iou)
    return out.reshape(*a.shape[:-2], n, m)


def _pairwise_intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a [..., N, 7]``, ``b [..., M, 7]`` (same batch dims) -> ``[..., N, M]`` BEV areas.

    Pairs whose circumscribed circles do not overlap are skipped (their area is exactly 0).
    """
    if a.shape[:-2] != b.shape[:-2]:
        raise ValueError(
            f"a {tuple(a.shape)} and b {tuple(b.shape)} must share their batch dimensions "
            "[..., N, 7] / [..., M, 7]"
        )
    inter = _pairwise_by_kernel(a, b, iou=False)
    if inter is not None:
        return inter
    n, m = a.shape[-2], b.shape[-2]
    out = a.new_zeros(*a.shape[:-2], n, m)
    if n == 0 or m == 0:
        return out
    if out.numel() > _DENSE_CHUNK and n > 1:  # bound the [..., N, M] working set: row blocks
        rows = max(1, _DENSE_CHUNK // (out.numel() // n))
        for start in range(0, n, rows):
            out[..., start : start + rows, :] = _pairwise_intersection(
                a[..., start : start + rows, :], b
            )
        return out
    radius_a = 0.5 * torch.hypot(a[..., 3], a[..., 4])  # [..., N]
    radius_b = 0.5 * torch.hypot(b[..., 3], b[..., 4])
    dist = torch.linalg.vector_norm(a[..., :, None, 0:2] - b[..., None, :, 0:2], dim=-1)
    candidate = dist <= (radius_a[..., :, None] + radius_b[..., None, :]) * (1.0 + 1e-6)
    idx = candidate.nonzero(as_tuple=True)  # tuple over batch dims + (n, m)
    if idx[0].numel() == 0:
        return out
    batch_idx = idx[:-2]
    pa = a[(*batch_idx, idx[-2])]  # [P, 7]
    pb = b[(*batch_idx, idx[-1])]
    areas = torch.empty(pa.shape[0], dtype=a.dtype, device=a.device)
    for start in range(0, pa.shape[0], _PAIR_CHUNK):
        sl = slice(start, start + _PAIR_CHUNK)
        areas[sl] = _pair_intersection(pa[sl], pb[sl])
    out[idx] = areas
    return out


def _promote(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Common dtype of ``a`` and ``b``; half precision (e.g. under autocast) goes to float32."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return a.to(dtype), b.to(dtype)


def rotated_iou_bev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact IoU of the rotated BEV footprints of every pair of boxes.

    Args:
        a: ``[..., N, 7]`` boxes (x, y, z, l, w, h, yaw).
        b: ``[..., M, 7]`` boxes with the same leading batch dimensions as ``a``.

    Returns:
        ``[..., N, M]`` IoU in [0, 1] (0 where the union area is 0).
    """
    _check_boxes(a, "a")
    _check_boxes(b, "b")
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"a and b must be [..., N, 7] and [..., M, 7], got {a.shape}, {b.shape}")
    a, b = _promote(a, b)
    iou = _pairwise_by_kernel(a, b, iou=True)  # the IoU in the kernel: one launch
    if iou is not None:
        return iou
    inter = _pairwise_intersection(a, b)
    area_a = (a[..., 3] * a[..., 4]).unsqueeze(-1)
    area_b = (b[..., 3] * b[..., 4]).unsqueeze(-2)
    union = area_a + area_b - inter
    iou = inter / union.clamp_min(torch.finfo(a.dtype).tiny)
    return iou.clamp(0.0, 1.0)


def rotated_iou_bev_aligned(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """BEV IoU of paired boxes ``a[i]`` and ``b[i]``: ``[..., 7], [..., 7] -> [...]``."""
    a, b = _promote(a, b)
    inter = intersection_area_bev_aligned(a, b)
    union = a[..., 3] * a[..., 4] + b[..., 3] * b[..., 4] - inter
    return (inter / union.clamp_min(torch.finfo(a.dtype).tiny)).clamp(0.0, 1.0)


def iou_3d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """3D IoU of rotated boxes (yaw-only rotation): BEV intersection x z-overlap / union volume.

    Args:
        a: ``[..., N, 7]`` boxes.
        b: ``[..., M, 7]`` boxes with the same leading batch dimensions.

    Returns:
        ``[..., N, M]`` 3D IoU in [0, 1].
    """
    _check_boxes(a, "a")
    _check_boxes(b, "b")
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"a and b must be [..., N, 7] and [..., M, 7], got {a.shape}, {b.shape}")
    a, b = _promote(a, b)
    inter_bev = _pairwise_intersection(a, b)
    top = torch.minimum(
        (a[..., 2] + 0.5 * a[..., 5]).unsqueeze(-1), (b[..., 2] + 0.5 * b[..., 5]).unsqueeze(-2)
    )
    bottom = torch.maximum(
        (a[..., 2] - 0.5 * a[..., 5]).unsqueeze(-1), (b[..., 2] - 0.5 * b[..., 5]).unsqueeze(-2)
    )
    inter = inter_bev * (top - bottom).clamp_min(0.0)
    vol_a = (a[..., 3] * a[..., 4] * a[..., 5]).unsqueeze(-1)
    vol_b = (b[..., 3] * b[..., 4] * b[..., 5]).unsqueeze(-2)
    union = vol_a + vol_b - inter
    return (inter / union.clamp_min(torch.finfo(a.dtype).tiny)).clamp(0.0, 1.0)


def transform_boxes(boxes: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
    """Apply a rigid transform to boxes.

    The centre is mapped by ``T`` (``p' = R p + t``) and the yaw is increased by the rotation's
    heading ``atan2(T[1, 0], T[0, 0])``, then wrapped to ``[-pi, pi)``. Sizes are unchanged.
    Roll/pitch in ``T`` (e.g. a tilted UAV) cannot be represented by a yaw-only box: the
    centre is still exact; the footprint is the yaw-only approximation.

    Args:
        boxes: ``[..., N, 7]`` boxes, float64 recommended (poses are float64 in this project).
        transform: ``[..., 4, 4]`` homogeneous transforms (leading dims broadcast with the
            boxes' leading dims), mapping the boxes' frame to the target frame.

    Returns:
        ``[..., N, 7]`` boxes in the target frame, in the promoted dtype of the inputs.
    """
    _check_boxes(boxes, "boxes")
    if not isinstance(transform, torch.Tensor) or transform.shape[-2:] != (4, 4):
        shape = tuple(transform.shape) if isinstance(transform, torch.Tensor) else None
        raise ValueError(f"transform: expected a tensor [..., 4, 4], got {shape}")
    if boxes.ndim < 2:
        raise ValueError(f"boxes: expected [..., N, 7], got {tuple(boxes.shape)}")
    dtype = torch.promote_types(boxes.dtype, transform.dtype)
    boxes = boxes.to(dtype)
    transform = transform.to(dtype=dtype, device=boxes.device)
    rot = transform[..., :3, :3]  # [..., 3, 3]
    trans = transform[..., :3, 3]  # [..., 3]
    centres = boxes[..., 0:3] @ rot.transpose(-1, -2) + trans.unsqueeze(-2)
    dyaw = torch.atan2(transform[..., 1, 0], transform[..., 0, 0]).unsqueeze(-1)
    yaw = wrap_angle(boxes[..., 6] + dyaw)
    return torch.cat([centres, boxes[..., 3:6], yaw.unsqueeze(-1)], dim=-1)
