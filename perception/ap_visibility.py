"""GT subsets from per-agent LiDAR visibility (``visibility_subsets``), for
``APAccumulator.add_frame(gt_subsets=...)``: the objects the ego alone cannot see, those of them
another agent sees (where cooperation can help), and those the ego sees.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["visibility_subsets"]


def visibility_subsets(
    visibility: torch.Tensor | np.ndarray,
    ego_index: int = 0,
    min_points: int = 1,
    agent_mask: torch.Tensor | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """GT subsets from per-agent LiDAR visibility, for ``APAccumulator.add_frame(gt_subsets=...)``.

    Args:
        visibility: ``[A, M]`` int, LiDAR points agent ``a`` has inside box ``m`` (``-1``:
            unknown), as in ``CoopFrame.visibility`` / ``CoopBatch.visibility[b]``.
        ego_index: the ego agent's row.
        min_points: a box is visible to an agent with at least this many points.
        agent_mask: ``[A]`` bool, agents present (padding rows excluded); ``None``: all.

    Returns:
        ``ego_invisible``: ego has a known count ``< min_points``;
        ``ego_invisible_coop_visible``: of those, some other present agent sees it (where
        cooperation can help); ``ego_visible``: ego sees it. Boxes with unknown ego visibility
        are in none of the subsets (so they are ignored there). Each ``[M]`` bool.
    """
    vis = np.asarray(
        visibility.detach().cpu().numpy() if isinstance(visibility, torch.Tensor) else visibility
    )
    if vis.ndim != 2:
        raise ValueError(f"visibility: expected [A, M] point counts, got shape {vis.shape}")
    a = vis.shape[0]
    if not 0 <= ego_index < a:
        raise ValueError(f"ego_index: expected 0 <= ego_index < {a}, got {ego_index}")
    present = np.ones(a, dtype=bool)
    if agent_mask is not None:
        present = np.asarray(
            agent_mask.detach().cpu().numpy()
            if isinstance(agent_mask, torch.Tensor)
            else agent_mask,
            dtype=bool,
        ).reshape(-1)
        if present.shape != (a,):
            raise ValueError(f"agent_mask: expected [{a}], got {present.shape}")
    ego = vis[ego_index]
    known = ego >= 0
    others = present.copy()
    others[ego_index] = False
    coop = (vis[others] >= min_points).any(axis=0) if others.any() else np.zeros_like(known)
    invisible = known & (ego < min_points)
    return {
        "ego_invisible": invisible,
        "ego_invisible_coop_visible": invisible & coop,
        "ego_visible": known & (ego >= min_points),
    }
