"""Global data augmentation of cooperative frames, applied consistently to every agent.

The augmentations of PointPillars / OpenCOOD training — a flip across the x axis, a rotation
about z, a uniform scaling — carried over to frames whose agents each hold points in their own
sensor frame. One draw per frame:

* every agent's sensor-frame points are rotated by ``φ`` about z, mirrored (``y → −y``) when
  flipped, and scaled by ``s``: ``p' = s F R(φ) p``;
* the world is mirrored and scaled (``x' = s F x``; a rotation of the whole world would change
  nothing any agent sees), so the ground-truth boxes become ``c' = s F c``, sizes ``s·(l, w, h)``,
  yaw ``−yaw`` when flipped;
* every pose is rewritten so that the augmented points land where the augmented world says:
  ``P' = [F R_P R(φ)ᵀ F | s F t_P]`` (a proper rotation: ``F`` appears twice).

So each agent sees its scene rotated by ``φ``, mirrored and scaled in its own frame — what the
detector trains on — while relative poses, visibility and which agent sees which box are
unchanged. ``F = diag(1, −1, 1)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from v2x.datasets.frame import CoopFrame


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the per-frame draw (OpenCOOD's defaults).

    Attributes:
        flip_prob: probability of mirroring across the x axis.
        rotation_rad: ``φ`` uniform in ``[-rotation_rad, rotation_rad]``.
        scale_range: ``s`` uniform in ``[lo, hi]``, ``0 < lo <= hi``.
    """

    flip_prob: float = 0.5
    rotation_rad: float = 0.78539816
    scale_range: tuple[float, float] = (0.95, 1.05)

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.scale_range)
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"augment: field 'flip_prob' must be in [0, 1], got {self.flip_prob}")
        if self.rotation_rad < 0:
            raise ValueError(f"augment: field 'rotation_rad' must be >= 0, got {self.rotation_rad}")
        if not 0.0 < lo <= hi:
            raise ValueError(f"augment: field 'scale_range' must be [lo, hi] with 0 < lo <= hi, got {self.scale_range}")


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def augment_frame(frame: CoopFrame, flip: bool, rotation_rad: float, scale: float) -> CoopFrame:
    """The frame with one global flip / rotation / scaling applied (see the module docstring).

    Args:
        frame: the frame (not modified).
        flip: mirror ``y → −y``.
        rotation_rad: ``φ``, rotation of every agent's view about its z axis.
        scale: ``s > 0``.

    Returns:
        a new ``CoopFrame``; ``meta["augment"]`` records the draw.
    """
    if not scale > 0:
        raise ValueError(f"augment_frame: 'scale' must be > 0, got {scale}")
    f = np.diag([1.0, -1.0 if flip else 1.0, 1.0])
    rot = _rot_z(rotation_rad)
    sensor_map = scale * f @ rot  # p' = s F R(φ) p
    agents = []
    for agent in frame.agents:
        pts = agent.points.copy()
        pts[:, :3] = (pts[:, :3].astype(np.float64) @ sensor_map.T).astype(np.float32)
        pose = np.eye(4)
        pose[:3, :3] = f @ agent.pose[:3, :3] @ rot.T @ f
        pose[:3, 3] = scale * (f @ agent.pose[:3, 3])
        agents.append(dataclasses.replace(agent, points=pts, pose=pose))
    boxes = frame.boxes.copy()
    boxes[:, :3] = scale * boxes[:, :3] @ f.T
    boxes[:, 3:6] *= scale
    if flip:
        boxes[:, 6] = -boxes[:, 6]
    meta = {**frame.meta, "augment": {"flip": bool(flip), "rotation_rad": float(rotation_rad),
                                      "scale": float(scale)}}  # fmt: skip
    return dataclasses.replace(frame, agents=agents, boxes=boxes, meta=meta)


def random_augment(frame: CoopFrame, rng: np.random.Generator, cfg: AugmentConfig) -> CoopFrame:
    """``augment_frame`` with a draw from ``cfg``'s ranges (one draw for the whole frame)."""
    flip = bool(rng.random() < cfg.flip_prob)
    angle = float(rng.uniform(-cfg.rotation_rad, cfg.rotation_rad))
    scale = float(rng.uniform(*cfg.scale_range))
    return augment_frame(frame, flip, angle, scale)
