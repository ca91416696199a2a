"""Warp collaborators' BEV maps into the ego's levelled frame (``affine_grid``/``grid_sample``).

Pose noise is applied here (not hidden in the readers): a noisy pose moves the collaborator's
map the way a real localisation error would. Latency reaches the warp through the poses it is
given: with ``v2x.asynchrony`` a collaborator's map comes with its pose at sensing time, so the
static world lines up and moving objects lag by ``speed × age``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from v2x.perception.bev import BEVGrid, level_pose, points_to_level_frame
from v2x.perception.boxes import transform_boxes
from v2x.perception.grid_sample import bilinear_sample


def relative_level_transforms(poses: torch.Tensor, ego_index: int = 0) -> torch.Tensor:
    """``[B, A, 4, 4]`` float64 transforms mapping ego-level coordinates to agent-level ones.

    Args:
        poses: ``[B, A, 4, 4]`` float64 sensor → world of every agent.
    """
    level = level_pose(poses)
    ego = level[:, ego_index : ego_index + 1]
    # inv_ex: the same inverse as linalg.inv without its error check, which would synchronise
    # with the GPU (and break CUDA graph capture); a levelled pose is always invertible
    return torch.linalg.inv_ex(level).inverse @ ego


def perturb_poses(
    poses: torch.Tensor,
    translation_std_m: float,
    yaw_std_rad: float,
    generator: torch.Generator | None = None,
    ego_index: int = 0,
) -> torch.Tensor:
    """Add Gaussian localisation error (x, y, yaw) to every agent's pose except the ego's.

    Args:
        poses: ``[B, A, 4, 4]`` float64.
    Returns: ``[B, A, 4, 4]`` float64 noisy poses (world frame error, applied on the left).
    """
    if translation_std_m == 0 and yaw_std_rad == 0:
        return poses
    b, a = poses.shape[:2]
    noise = torch.randn(b, a, 3, generator=generator, dtype=torch.float64).to(poses.device)
    noise[..., :2] *= translation_std_m
    noise[..., 2] *= yaw_std_rad
    noise[:, ego_index] = 0
    c, s = torch.cos(noise[..., 2]), torch.sin(noise[..., 2])
    delta = torch.eye(4, dtype=poses.dtype, device=poses.device).repeat(b, a, 1, 1)
    delta[..., 0, 0], delta[..., 0, 1], delta[..., 1, 0], delta[..., 1, 1] = c, -s, s, c
    delta[..., 0, 3], delta[..., 1, 3] = noise[..., 0], noise[..., 1]
    # Rotate about the agent's own position, then shift.
    centred = poses.clone()
    centred[..., :3, 3] = 0
    out = delta @ centred
    out[..., :3, 3] = poses[..., :3, 3] + delta[..., :3, 3]
    return out


def warp_sampling_grid(
    ego_to_agent: torch.Tensor, grid: BEVGrid, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each ego cell samples each agent's map (``warp_to_ego`` without the resampling).

    Args:
        ego_to_agent: ``[N, A, 4, 4]`` float64 from ``relative_level_transforms``.
        grid: the BEV grid (same extent for every agent); ``h × w`` the (strided) map size.

    Returns:
        ``sample_grid [N·A, h, w, 2]`` float32 for ``F.grid_sample`` and ``coverage
        [N, A, 1, h, w]`` bool (cells inside the agent's own grid).
    """
    n, a = ego_to_agent.shape[:2]
    sx = (grid.x_range_m[1] - grid.x_range_m[0]) / 2
    sy = (grid.y_range_m[1] - grid.y_range_m[0]) / 2
    ox = (grid.x_range_m[1] + grid.x_range_m[0]) / 2
    oy = (grid.y_range_m[1] + grid.y_range_m[0]) / 2
    # normalised → metric: p = S u + o (S = diag(sx, sy)); metric → normalised:
    # u = S^-1 (p - o). theta = S^-1 [R | t] [[S, o], [0, 1]] written out entry by entry from
    # the ego-to-agent rotation R and translation t, with Python-scalar factors only: no
    # constant matrices (a Python number assigned to one element of a CUDA tensor is a
    # host-to-device copy, which CUDA graph capture refuses) and no inverse (whose check
    # synchronises). The factors are grouped as in the product (S^-1 [R | t]) [[S, o], [0, 1]].
    r00, r01 = ego_to_agent[..., 0, 0], ego_to_agent[..., 0, 1]
    r10, r11 = ego_to_agent[..., 1, 0], ego_to_agent[..., 1, 1]
    m00, m01, m02 = r00 / sx, r01 / sx, ego_to_agent[..., 0, 3] / sx - ox / sx
    m10, m11, m12 = r10 / sy, r11 / sy, ego_to_agent[..., 1, 3] / sy - oy / sy
    theta = torch.stack(
        [
            torch.stack([m00 * sx, m01 * sy, m00 * ox + m01 * oy + m02], dim=-1),
            torch.stack([m10 * sx, m11 * sy, m10 * ox + m11 * oy + m12], dim=-1),
        ],
        dim=-2,
    )  # [N, A, 2, 3] float64
    theta = theta.float().reshape(n * a, 2, 3)
    sample_grid = F.affine_grid(theta, [n * a, 1, h, w], align_corners=False)
    coverage = (sample_grid.abs() <= 1).all(dim=-1)
    return sample_grid, coverage.view(n, a, 1, h, w)


def sample_maps(maps: torch.Tensor, sample_grid: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of ``maps [N, C, h, w]`` at ``sample_grid [N, h, w, 2]``
    (``warp_sampling_grid``); zeros outside the source grid. Returns float32.

    Training on CUDA in torch's deterministic mode, the gradient to ``maps`` is added in a fixed
    order (``v2x.perception.grid_sample``; torch's own backward uses float atomics)."""
    maps = maps.float()
    if maps.is_cuda and maps.requires_grad and torch.are_deterministic_algorithms_enabled():
        return bilinear_sample(maps, sample_grid)
    return F.grid_sample(
        maps, sample_grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )


def warp_to_ego(
    features: torch.Tensor, ego_to_agent: torch.Tensor, grid: BEVGrid
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample every agent's map on the ego's grid.

    Args:
        features: ``[B, A, C, h, w]`` maps, each in its agent's levelled frame.
        ego_to_agent: ``[B, A, 4, 4]`` from ``relative_level_transforms``.
        grid: the BEV grid (same extent for every agent; the map may be strided).

    Returns:
        warped ``[B, A, C, h, w]`` float32 and coverage ``[B, A, 1, h, w]`` bool (cells that fall
        inside the agent's own grid).
    """
    b, a, c, h, w = features.shape
    sample_grid, coverage = warp_sampling_grid(ego_to_agent, grid, h, w)
    flat = features.reshape(b * a, c, h, w)
    warped = sample_maps(flat, sample_grid)
    return warped.view(b, a, c, h, w), coverage


def merge_points_to_ego(
    points: torch.Tensor,
    point_mask: torch.Tensor,
    poses: torch.Tensor,
    ego_to_agent: torch.Tensor,
    ground_z_m: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Early fusion: every agent's points in the ego's levelled frame, concatenated.

    Args:
        points: ``[B, A, N, 4]`` sensor-frame points; point_mask ``[B, A, N]``.
        poses: ``[B, A, 4, 4]`` float64 sensor → world (true poses: the levelling is local).
        ego_to_agent: ``[B, A, 4, 4]`` from ``relative_level_transforms`` (possibly noisy).

    Returns: points ``[B, A·N, 4]`` (x, y in the ego level frame, z above ground, intensity) and
    mask ``[B, A·N]``.
    """
    b, a, n, _ = points.shape
    level = points_to_level_frame(points, poses, ground_z_m)
    agent_to_ego = torch.linalg.inv(ego_to_agent).float()
    xy1 = torch.cat(
        [level[..., :2], torch.zeros_like(level[..., :1]), torch.ones_like(level[..., :1])], -1
    )
    moved = torch.einsum("baij,banj->bani", agent_to_ego, xy1)
    merged = torch.cat([moved[..., :2], level[..., 2:4]], dim=-1).reshape(b, a * n, 4)
    return merged, point_mask.reshape(b, a * n)


def boxes_in_level_frames(boxes: torch.Tensor, poses: torch.Tensor, ground_z_m: float) -> torch.Tensor:
    """World boxes in each agent's levelled frame.

    Args:
        boxes: ``[B, M, 7]`` float64 world frame; poses ``[B, A, 4, 4]`` float64.
    Returns: ``[B, A, M, 7]`` float64, z = the box centre's height above ground.
    """
    world_to_level = torch.linalg.inv(level_pose(poses))
    out = transform_boxes(boxes[:, None].expand(-1, poses.shape[1], -1, -1), world_to_level)
    out[..., 2] = (boxes[..., 2] - ground_z_m)[:, None]
    return out


def box_flow(
    boxes: torch.Tensor,
    displacement: torch.Tensor,
    valid: torch.Tensor,
    grid: BEVGrid,
    h: int,
    w: int,
    margin_m: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A BEV flow field that moves each box's cells by its displacement (box-level feature
    flow in the style of CoBEVFlow): the cells of each moved box (its footprint, grown by
    ``margin_m``, at ``centre + displacement``) take the values from ``displacement`` behind
    them; every other cell stays.

    Args:
        boxes: ``[N, K, 7]`` boxes (x, y, z, l, w, h, yaw; m, rad) in the frame of the maps.
        displacement: ``[N, K, 2]`` metres each box moves (x, y).
        valid: ``[N, K]`` bool, boxes that exist.
        grid: the BEV grid of the maps; ``h × w`` the (strided) map size.
        margin_m: grows each box footprint on every side (features spread past the box).

    Returns:
        ``flow [N, h, w, 2]`` float32 normalised sampling positions (``F.grid_sample``,
        ``align_corners=False``; the identity grid where nothing moves), ``moved [N, 1, h, w]``
        bool (cells that take a box's moved values) and ``vacated [N, 1, h, w]`` bool (cells
        of a moved box's old footprint that no moved box covers: what is left there is stale).
    """
    n, k = boxes.shape[:2]
    device = boxes.device
    sx = (grid.x_range_m[1] - grid.x_range_m[0]) / 2
    sy = (grid.y_range_m[1] - grid.y_range_m[0]) / 2
    ox = (grid.x_range_m[1] + grid.x_range_m[0]) / 2
    oy = (grid.y_range_m[1] + grid.y_range_m[0]) / 2
    u = (torch.arange(w, device=device, dtype=torch.float64) * 2 + 1) / w - 1
    v = (torch.arange(h, device=device, dtype=torch.float64) * 2 + 1) / h - 1
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    identity = torch.stack([uu, vv], dim=-1)  # [h, w, 2]
    cells = torch.stack([uu * sx + ox, vv * sy + oy], dim=-1)  # [h, w, 2] metres
    boxes, displacement = boxes.to(torch.float64), displacement.to(torch.float64)
    moving = valid & (displacement.abs().amax(dim=-1) > 0)
    flow = identity.expand(n, h, w, 2).clone()
    moved = torch.zeros(n, 1, h, w, dtype=torch.bool, device=device)
    vacated = torch.zeros_like(moved)
    half = boxes[..., 3:5] / 2 + margin_m  # [N, K, 2]
    cos, sin = torch.cos(boxes[..., 6]), torch.sin(boxes[..., 6])

    def inside(i: int, sel: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        rel = cells[None] - centres[:, None, None, :]  # [k', h, w, 2]
        c, s = cos[i, sel][:, None, None], sin[i, sel][:, None, None]
        along = c * rel[..., 0] + s * rel[..., 1]
        across = -s * rel[..., 0] + c * rel[..., 1]
        hx, hy = half[i, sel, 0][:, None, None], half[i, sel, 1][:, None, None]
        return (along.abs() <= hx) & (across.abs() <= hy)  # [k', h, w]

    for i in range(n):  # one map at a time: [K, h, w] masks
        sel = torch.nonzero(moving[i]).flatten()
        if sel.numel() == 0:
            continue
        d = displacement[i, sel]  # [k', 2]
        dest = inside(i, sel, boxes[i, sel, :2] + d)
        source = inside(i, sel, boxes[i, sel, :2])
        covered = dest.any(dim=0)
        first = dest.to(torch.int8).argmax(dim=0)  # the first moved box covering each cell
        shift = d[first]  # [h, w, 2]
        norm = torch.stack([shift[..., 0] / sx, shift[..., 1] / sy], dim=-1)
        flow[i] = torch.where(covered[..., None], identity - norm, identity)
        moved[i, 0] = covered
        vacated[i, 0] = source.any(dim=0) & ~covered
    return flow.float(), moved, vacated


def compose_sampling(
    sample_grid: torch.Tensor,
    flow: torch.Tensor,
    moved: torch.Tensor,
    vacated: torch.Tensor,
    valid: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A warp followed by a flow: where each cell samples the source once the warp's result
    is moved by ``flow`` (``box_flow``), and which cells stay valid.

    Args:
        sample_grid: ``[N, h, w, 2]`` the warp (``warp_sampling_grid``).
        flow, moved, vacated: ``box_flow``'s ``[N, h, w, 2]``, ``[N, 1, h, w]``, ``[N, 1, h, w]``.
        valid: ``[N, 1, h, w]`` bool, the warped map's valid cells.

    Returns: ``(sample_grid [N, h, w, 2], valid [N, 1, h, w])``: a moved cell samples (and is
    valid) where the warp put the cell ``displacement`` behind it; a vacated cell is invalid;
    every other cell keeps its sampling position and validity exactly.
    """
    field = F.grid_sample(
        sample_grid.permute(0, 3, 1, 2), flow, mode="bilinear", padding_mode="border",
        align_corners=False,
    ).permute(0, 2, 3, 1)  # fmt: skip
    composed = torch.where(moved.permute(0, 2, 3, 1), field, sample_grid)
    behind = F.grid_sample(
        valid.float(), flow, mode="nearest", padding_mode="zeros", align_corners=False
    )  # fmt: skip
    out_valid = torch.where(moved, behind > 0.5, valid) & ~vacated
    return composed, out_valid
