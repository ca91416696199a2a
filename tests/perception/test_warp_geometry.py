"""Frames and warps against independent world-frame geometry (numpy, float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.datasets import AgentObservation, CoopFrame, collate_frames
from v2x.perception.bev import BEVGrid, level_pose, points_to_level_frame
from v2x.perception.warp import (
    boxes_in_level_frames,
    merge_points_to_ego,
    relative_level_transforms,
    warp_to_ego,
)


def pose(x: float, y: float, z: float, yaw: float, pitch: float = 0.0) -> np.ndarray:
    cz, sz, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    out = np.eye(4)
    out[:3, :3] = rz @ ry
    out[:3, 3] = (x, y, z)
    return out


def to_sensor(world_points: np.ndarray, sensor_pose: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(sensor_pose)
    return world_points @ inv[:3, :3].T + inv[:3, 3]


@pytest.fixture
def frame() -> CoopFrame:
    rng = np.random.default_rng(3)
    world = np.c_[rng.uniform(-30, 30, (500, 2)), rng.uniform(0.1, 3.0, 500)]
    poses = [
        pose(2.0, -1.0, 1.8, 0.3),
        pose(-10.0, 12.0, 1.9, -2.0),
        pose(5.0, 5.0, 6.0, 1.1),
        pose(0.0, -8.0, 40.0, 0.7, pitch=math.pi / 2),  # UAV looking straight down
    ]
    kinds = ["vehicle", "vehicle", "rsu", "uav"]
    agents = [
        AgentObservation(f"a{i}", kind, p, np.c_[to_sensor(world, p), np.full(500, 0.5)])
        for i, (kind, p) in enumerate(zip(kinds, poses))
    ]
    boxes = np.array([[4.0, 3.0, 0.8, 4.5, 1.9, 1.6, 0.4], [-7.0, -2.0, 1.5, 10.0, 2.5, 3.0, -1.2]])
    return CoopFrame("geom", agents, boxes, [0, 1], [1, 2], meta={"world_points": world})


def test_points_of_every_agent_merge_onto_the_same_ego_points(frame):
    batch = collate_frames([frame])
    merged, mask = merge_points_to_ego(
        batch.points, batch.point_mask, batch.poses, relative_level_transforms(batch.poses), 0.0
    )
    world = frame.meta["world_points"]
    ego_level = level_pose(torch.from_numpy(frame.ego.pose)).numpy()
    expected = to_sensor(world, ego_level)  # ego levelled frame, z relative to the sensor
    per_agent = merged[0].view(4, -1, 4).numpy()
    for agent in range(4):
        np.testing.assert_allclose(per_agent[agent, :, :2], expected[:, :2], atol=2e-4)
        np.testing.assert_allclose(per_agent[agent, :, 2], world[:, 2], atol=2e-4)  # height


def test_points_to_level_frame_gives_height_above_ground_for_a_downward_uav(frame):
    uav = frame.agents[3]
    level = points_to_level_frame(
        torch.from_numpy(uav.points)[None, None], torch.from_numpy(uav.pose)[None, None], 0.0
    )[0, 0]
    np.testing.assert_allclose(level[:, 2].numpy(), frame.meta["world_points"][:, 2], atol=2e-4)


def test_boxes_in_level_frames_match_world_geometry(frame):
    batch = collate_frames([frame])
    boxes = boxes_in_level_frames(batch.boxes, batch.poses, 0.0)[0]  # [A, M, 7]
    for agent_index, agent in enumerate(frame.agents):
        lvl = level_pose(torch.from_numpy(agent.pose)).numpy()
        centres = to_sensor(frame.boxes[:, :3], lvl)
        np.testing.assert_allclose(boxes[agent_index, :, :2].numpy(), centres[:, :2], atol=1e-9)
        np.testing.assert_allclose(boxes[agent_index, :, 2].numpy(), frame.boxes[:, 2], atol=1e-9)
        yaw = frame.boxes[:, 6] - math.atan2(lvl[1, 0], lvl[0, 0])
        diff = np.angle(np.exp(1j * (boxes[agent_index, :, 6].numpy() - yaw)))
        np.testing.assert_allclose(diff, 0.0, atol=1e-9)


def test_warp_moves_a_feature_blob_to_where_the_ego_sees_it(frame):
    grid = BEVGrid(x_range_m=(-32.0, 32.0), y_range_m=(-32.0, 32.0), resolution_m=0.5)
    batch = collate_frames([frame])
    target_world = np.array([[6.0, 4.0, 0.0]])
    h = w = 64  # stride-2 map, 1 m cells
    maps = torch.zeros(1, 4, 1, h, w)
    for agent_index, agent in enumerate(frame.agents):
        lvl = level_pose(torch.from_numpy(agent.pose)).numpy()
        x, y = to_sensor(target_world, lvl)[0, :2]
        ix, iy = int((x + 32) // 1.0), int((y + 32) // 1.0)
        maps[0, agent_index, 0, iy - 1 : iy + 2, ix - 1 : ix + 2] = 1.0
    warped, coverage = warp_to_ego(maps, relative_level_transforms(batch.poses), grid)
    ego_lvl = level_pose(torch.from_numpy(frame.ego.pose)).numpy()
    ex, ey = to_sensor(target_world, ego_lvl)[0, :2]
    eix, eiy = int((ex + 32) // 1.0), int((ey + 32) // 1.0)
    for agent_index in range(4):
        peak = torch.nonzero(warped[0, agent_index, 0] == warped[0, agent_index, 0].max())[0]
        assert abs(int(peak[0]) - eiy) <= 1 and abs(int(peak[1]) - eix) <= 1
        assert bool(coverage[0, agent_index, 0, eiy, eix])
