"""Bird's-eye-view pictures of a ``CoopFrame``: every agent's points in its own colour, GT boxes.

matplotlib is imported lazily (Agg backend) so that importing datasets stays cheap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from v2x.datasets.frame import CLASS_NAMES, CoopFrame
from v2x.datasets.raycast_scene import box_corners

_AGENT_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
_CLASS_COLOURS = {"car": "black", "truck": "darkred", "pedestrian": "magenta", "cyclist": "teal"}


def render_bev_png(
    frame: CoopFrame,
    path: str | Path,
    extent_m: float = 60.0,
    max_points_per_agent: int = 20000,
    dpi: int = 110,
) -> Path:
    """Save a BEV picture of ``frame`` centred on the ego to ``path`` (PNG); returns the path.

    Args:
        frame: the frame to draw; points are moved to the world frame with each agent's pose.
        path: output file.
        extent_m: half-width of the square view around the ego, metres.
        max_points_per_agent: points are subsampled (deterministically) beyond this.
        dpi: resolution.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon as MplPolygon

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    centre = frame.ego.pose[:2, 3]
    fig, ax = plt.subplots(figsize=(8, 8))
    buildings = frame.meta.get("buildings")
    if isinstance(buildings, np.ndarray) and buildings.size:
        for corners in box_corners(buildings)[:, :4, :2]:
            ax.add_patch(MplPolygon(corners, closed=True, color="0.9", zorder=0))
    for a, agent in enumerate(frame.agents):
        pts = agent.points
        if pts.shape[0] > max_points_per_agent:
            pts = pts[:: int(np.ceil(pts.shape[0] / max_points_per_agent))]
        xyz = pts[:, :3].astype(np.float64) @ agent.pose[:3, :3].T + agent.pose[:3, 3]
        colour = _AGENT_COLOURS[a % len(_AGENT_COLOURS)]
        ax.scatter(xyz[:, 0], xyz[:, 1], s=0.8, c=colour, alpha=0.6, linewidths=0, zorder=1)
        x, y = agent.pose[:2, 3]
        marker = {"vehicle": "o", "rsu": "^", "uav": "*"}[agent.kind]
        ax.scatter([x], [y], s=80, c=colour, marker=marker, edgecolors="k", zorder=4,
                   label=f"{agent.agent_id} ({agent.points.shape[0]} pts)")  # fmt: skip
    for box, cls in zip(frame.boxes, frame.classes):
        corners = box_corners(box[None])[0, :4, :2]
        colour = _CLASS_COLOURS[CLASS_NAMES[int(cls)]]
        ax.add_patch(MplPolygon(corners, closed=True, fill=False, ec=colour, lw=0.8, zorder=3))
        head = box[:2] + 0.5 * box[3] * np.array([np.cos(box[6]), np.sin(box[6])])
        ax.plot([box[0], head[0]], [box[1], head[1]], color=colour, lw=0.6, zorder=3)
    ax.set_xlim(centre[0] - extent_m, centre[0] + extent_m)
    ax.set_ylim(centre[1] - extent_m, centre[1] + extent_m)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, world)")
    ax.set_ylabel("y (m, world)")
    ax.set_title(f"{frame.frame_id}: {len(frame.boxes)} boxes, {frame.num_agents} agents")
    ax.legend(loc="upper right", fontsize=7, markerscale=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
