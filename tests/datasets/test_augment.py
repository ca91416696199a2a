"""Global augmentation: the augmented world is the mirrored, scaled world, every agent's points
land there through its new pose, and each agent's own view is rotated by φ (closed forms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from v2x.datasets.augment import AugmentConfig, augment_frame, random_augment
from v2x.datasets.frame import AgentObservation, CoopFrame
from v2x.perception.bev import points_to_level_frame


def _pose(yaw: float, pitch: float, roll: float, t: tuple[float, float, float]) -> np.ndarray:
    cz, sz, cy, sy, cx, sx = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch),
                              np.cos(roll), np.sin(roll))  # fmt: skip
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    pose = np.eye(4)
    pose[:3, :3] = rz @ ry @ rx
    pose[:3, 3] = t
    return pose


def _frame(flat: bool = False) -> CoopFrame:
    rng = np.random.default_rng(0)
    tilt = (0.0, 0.0) if flat else (0.03, -0.02)
    agents = [
        AgentObservation(f"a{i}", "vehicle", _pose(yaw, *tilt, t),
                         np.c_[rng.uniform(-30, 30, (50, 3)), rng.random(50)].astype(np.float32))
        for i, (yaw, t) in enumerate([(0.3, (1.0, 2.0, 1.8)), (-2.0, (20.0, -5.0, 1.7))])
    ]  # fmt: skip
    boxes = np.array([[5.0, 3.0, 0.8, 4.5, 1.9, 1.6, 0.4], [-8.0, 10.0, 0.9, 0.8, 0.6, 1.7, -1.2]])
    return CoopFrame("t/0", agents, boxes, np.array([0, 2]), np.array([1, 2]),
                     visibility=np.array([[3, 0], [1, 5]]))  # fmt: skip


@pytest.mark.parametrize("flip", [False, True])
def test_points_land_in_the_mirrored_scaled_world(flip: bool) -> None:
    frame, phi, s = _frame(), 0.5, 1.04
    out = augment_frame(frame, flip, phi, s)
    g = s * np.diag([1.0, -1.0 if flip else 1.0, 1.0])
    for old, new in zip(frame.agents, out.agents, strict=True):
        world_old = old.points[:, :3].astype(np.float64) @ old.pose[:3, :3].T + old.pose[:3, 3]
        world_new = new.points[:, :3].astype(np.float64) @ new.pose[:3, :3].T + new.pose[:3, 3]
        np.testing.assert_allclose(world_new, world_old @ g.T, atol=1e-4)
        np.testing.assert_allclose(new.points[:, 3], old.points[:, 3])
        assert np.linalg.det(new.pose[:3, :3]) == pytest.approx(1.0)
    np.testing.assert_allclose(out.boxes[:, :3], frame.boxes[:, :3] @ g.T)
    np.testing.assert_allclose(out.boxes[:, 3:6], s * frame.boxes[:, 3:6])
    np.testing.assert_allclose(out.boxes[:, 6], -frame.boxes[:, 6] if flip else frame.boxes[:, 6])
    np.testing.assert_array_equal(out.visibility, frame.visibility)
    np.testing.assert_array_equal(out.classes, frame.classes)
    assert out.meta["augment"] == {"flip": flip, "rotation_rad": phi, "scale": s}


def test_each_agent_sees_its_view_rotated_by_phi() -> None:
    frame, phi = _frame(flat=True), 0.7
    out = augment_frame(frame, False, phi, 1.0)
    for old, new in zip(frame.agents, out.agents, strict=True):
        lv = [points_to_level_frame(torch.from_numpy(a.points)[None, None],
                                    torch.from_numpy(a.pose)[None, None], 0.0)[0, 0].numpy()
              for a in (old, new)]  # fmt: skip
        c, s = np.cos(phi), np.sin(phi)
        np.testing.assert_allclose(lv[1][:, :2], lv[0][:, :2] @ np.array([[c, -s], [s, c]]).T,
                                   atol=1e-4)  # fmt: skip
        np.testing.assert_allclose(lv[1][:, 2], lv[0][:, 2], atol=1e-4)


def test_identity_draw_changes_nothing_and_draws_repeat() -> None:
    frame = _frame()
    same = augment_frame(frame, False, 0.0, 1.0)
    for old, new in zip(frame.agents, same.agents, strict=True):
        np.testing.assert_allclose(new.pose, old.pose, atol=1e-12)
        np.testing.assert_allclose(new.points, old.points, atol=1e-5)
    cfg = AugmentConfig()
    a = random_augment(frame, np.random.default_rng(5), cfg).meta["augment"]
    b = random_augment(frame, np.random.default_rng(5), cfg).meta["augment"]
    assert a == b and abs(a["rotation_rad"]) <= cfg.rotation_rad
    with pytest.raises(ValueError, match="scale_range"):
        AugmentConfig(scale_range=(1.1, 1.0))
