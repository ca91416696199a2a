"""Synthetic world: contract, determinism, traffic sanity, LiDAR geometry against box surfaces."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Polygon

from v2x.datasets.frame import AGENT_KINDS, CLASS_NAMES
from v2x.datasets.lidar import LidarConfig
from v2x.datasets.synthetic import generate_frame, generate_sequence
from v2x.datasets.synthetic_config import SyntheticConfig
from v2x.datasets.synthetic_world import SyntheticWorld


def _small_cfg(**kw) -> SyntheticConfig:
    lid = {"columns": 256, "range_noise_m": 0.0, "dropout": 0.0}
    base = dict(
        vehicle_lidar=LidarConfig(preset="hdl32", max_range_m=70.0, **lid),
        rsu_lidar=LidarConfig(preset="rsu32", max_range_m=80.0, **lid),
        uav_lidar=LidarConfig(preset="uav_down", beams=32, max_range_m=120.0, **lid),
    )
    base.update(kw)
    return SyntheticConfig(**base)


def _to_world(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    return points[:, :3].astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]


def _local(xyz: np.ndarray, box: np.ndarray) -> np.ndarray:
    """World points into a box's frame (independent of the ray caster's math)."""
    c, s = np.cos(box[6]), np.sin(box[6])
    rel = xyz - box[:3]
    return np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], 1)


def _surface_distance(xyz: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Unsigned distance of points to a box's surface."""
    q = np.abs(_local(xyz, box)) - box[3:6] / 2
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
    inside = np.minimum(q.max(axis=1), 0.0)
    return np.abs(outside + inside)


@pytest.fixture(scope="module")
def frame():
    return generate_frame(_small_cfg(), seed=7, index=3)


def test_frame_contract(frame):
    kinds = [a.kind for a in frame.agents]
    assert kinds.count("vehicle") >= 3 and kinds.count("rsu") >= 1 and kinds.count("uav") >= 1
    assert frame.ego.kind == "vehicle" and frame.ego_index == 0
    assert set(kinds) <= set(AGENT_KINDS)
    assert frame.boxes.shape[1] == 7 and len(frame.boxes) > 5
    assert frame.visibility.shape == (frame.num_agents, len(frame.boxes))
    assert frame.classes.max() < len(CLASS_NAMES)
    # Boxes sit on the ground with z at their centre.
    np.testing.assert_allclose(frame.boxes[:, 2], frame.boxes[:, 5] / 2)
    # Every agent sees something; the ego sits near the town centre.
    assert all(a.points.shape[0] > 100 for a in frame.agents)
    assert np.linalg.norm(frame.ego.pose[:2, 3]) <= 20.0 + 1e-6
    for a in frame.agents:
        assert a.pose.dtype == np.float64 and a.points.dtype == np.float32
        z = a.pose[2, 3]
        if a.kind == "uav":
            assert 20.0 <= z <= 60.0
        elif a.kind == "rsu":
            assert 5.0 <= z <= 6.0


def test_points_lie_on_ground_or_box_surfaces(frame):
    """With zero noise every return is on z = 0 or on the surface of a box of the scene."""
    scene = np.concatenate([frame.boxes, frame.meta["buildings"]])
    for agent in frame.agents:
        xyz = _to_world(agent.points, agent.pose)
        dist = np.abs(xyz[:, 2])
        for box in scene:
            dist = np.minimum(dist, _surface_distance(xyz, box))
        assert np.quantile(dist, 0.999) < 5e-3, agent.agent_id
        ranges = np.linalg.norm(agent.points[:, :3], axis=1)
        assert ranges.max() <= 120.0 + 1e-3


def test_visibility_counts_points_inside_boxes(frame):
    for a, agent in enumerate(frame.agents):
        xyz = _to_world(agent.points, agent.pose)
        for m, box in enumerate(frame.boxes):
            inside = np.all(np.abs(_local(xyz, box)) <= box[3:6] / 2 + 2e-3, axis=1)
            assert abs(int(inside.sum()) - int(frame.visibility[a, m])) <= max(
                2, 0.02 * frame.visibility[a, m]
            ), (agent.agent_id, m)
    # Collaborators see objects the ego does not.
    only_others = (frame.visibility[0] == 0) & (frame.visibility[1:].sum(0) > 0)
    assert only_others.any()


def test_same_seed_same_frame_and_sequence_consistency():
    cfg = _small_cfg(
        vehicle_lidar=LidarConfig(preset="vlp16", columns=128, dropout=0.1),
        rsu_lidar=LidarConfig(preset="vlp16", columns=64),
        uav_lidar=LidarConfig(preset="uav_down", beams=16, columns=64),
    )
    a = generate_frame(cfg, seed=3, index=2)
    b = generate_frame(cfg, seed=3, index=2)
    seq = list(generate_sequence(cfg, seed=3, num_frames=3))
    for other in (b, seq[2]):
        np.testing.assert_array_equal(a.boxes, other.boxes)
        np.testing.assert_array_equal(a.visibility, other.visibility)
        for x, y in zip(a.agents, other.agents):
            np.testing.assert_array_equal(x.points, y.points)
            np.testing.assert_array_equal(x.pose, y.pose)
    c = generate_frame(cfg, seed=4, index=2)
    assert c.boxes.shape != a.boxes.shape or not np.allclose(c.boxes, a.boxes)
    assert [f.frame_id for f in seq] == [f"synthetic-3/{i:06d}" for i in range(3)]
    np.testing.assert_allclose([f.ego.timestamp for f in seq], [0.0, 0.1, 0.2])


def _footprint(box: np.ndarray) -> Polygon:
    c, s = np.cos(box[6]), np.sin(box[6])
    pts = []
    for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1)):
        dx, dy = sx * box[3] / 2, sy * box[4] / 2
        pts.append((box[0] + c * dx - s * dy, box[1] + s * dx + c * dy))
    return Polygon(pts)


def test_traffic_never_overlaps_and_tracks_are_stable():
    cfg = SyntheticConfig(traffic_density=0.05, pedestrian_density=0.03, cyclist_density=0.02)
    world = SyntheticWorld(cfg, seed=11)
    buildings = [_footprint(b) for b in world.buildings]
    boxes0, classes0, tracks0 = world.objects()
    prev, prev_tracks, seen_tracks, wraps = boxes0, tracks0, set(tracks0.tolist()), 0
    assert len(seen_tracks) == len(tracks0)
    moved = np.zeros(len(boxes0), dtype=bool)
    for step in range(300):  # 30 s: more than a full traffic-light cycle
        world.step()
        boxes, classes, tracks = world.objects()
        np.testing.assert_array_equal(classes, classes0)
        jump = np.linalg.norm(boxes[:, :2] - prev[:, :2], axis=1)
        wrapped = jump > cfg.town_size_m / 2
        assert np.all(jump[~wrapped] <= 1.2 * 1.2 * cfg.car_speed_mps / cfg.fps + 1e-9)
        # Track ids are kept except by objects re-entering at the other edge (new, unique ids).
        np.testing.assert_array_equal(tracks[~wrapped], prev_tracks[~wrapped])
        assert not set(tracks[wrapped]) & seen_tracks
        seen_tracks |= set(tracks.tolist())
        wraps += int(wrapped.sum())
        prev_tracks = tracks
        moved |= jump > 0
        prev = boxes
        if step % 5:
            continue
        polys = [_footprint(b) for b in boxes]
        for i in range(len(polys)):
            for j in range(i + 1, len(polys)):
                assert polys[i].intersection(polys[j]).area < 1e-6, (step, i, j)
            for bp in buildings:
                assert polys[i].intersection(bp).area < 1e-6
    assert moved.sum() > len(boxes0) // 3
    assert wraps > 0
    assert set(classes0.tolist()) == set(range(len(CLASS_NAMES)))


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="num_vehicle_agents"):
        SyntheticConfig(num_vehicle_agents=0)
    with pytest.raises(ValueError, match="unknown field"):
        SyntheticConfig.from_dict({"blokcs": 3})
    with pytest.raises(ValueError, match="preset"):
        generate_frame(_small_cfg(vehicle_lidar=LidarConfig(preset="nope")))


def _on_top_faces(xyz: np.ndarray, boxes: np.ndarray, tol: float = 5e-3) -> np.ndarray:
    """Points on the top face of one of ``boxes`` (5 cm in from its edges): ``[N]`` bool."""
    hit = np.zeros(len(xyz), dtype=bool)
    for box in boxes:
        loc = _local(xyz, box)
        top = np.abs(loc[:, 2] - box[5] / 2) < tol
        hit |= top & np.all(np.abs(loc[:, :2]) <= box[3:5] / 2 - 0.05, axis=1)
    return hit


def test_uav_sees_roofs_and_vehicle_tops_ground_agents_do_not(frame):
    buildings = frame.meta["buildings"]
    uav = next(a for a in frame.agents if a.kind == "uav")
    uav_xyz = _to_world(uav.points, uav.pose)
    assert _on_top_faces(uav_xyz, buildings).sum() > 100
    vehicles = frame.boxes[np.isin(frame.classes, [0, 1])]
    assert _on_top_faces(uav_xyz, vehicles).sum() > 10
    # The downward-looking pattern: every UAV ray points below the horizon.
    assert np.all(uav.points[:, 2] < 0)
    for agent in frame.agents:
        if agent.kind == "vehicle":
            assert _on_top_faces(_to_world(agent.points, agent.pose), buildings).sum() == 0


def test_agent_box_index_points_at_the_agents_cars(frame):
    index = frame.meta["agent_box_index"]
    assert len(index) == frame.num_agents
    for agent, m in zip(frame.agents, index):
        if agent.kind != "vehicle":
            assert m == -1
            continue
        box = frame.boxes[m]
        np.testing.assert_allclose(agent.pose[:2, 3], box[:2], atol=1e-9)
        assert agent.pose[2, 3] > box[5]  # roof LiDAR above the car
        # The own car hides nothing from the agent and is not counted as seen by it.
        assert frame.visibility[index.index(m), m] == 0


def test_headings_are_not_only_axis_aligned():
    """Parking lots and heading jitter give yaws away from multiples of 90 degrees."""
    cfg = SyntheticConfig(parking_lot_probability=1.0, empty_lot_probability=0.0)
    world = SyntheticWorld(cfg, seed=2)
    assert len(world.buildings) == 0 and len(world.parking_lots) == cfg.blocks**2
    boxes, classes, _ = world.objects()
    off_axis = np.abs((np.degrees(boxes[:, 6]) + 45.0) % 90.0 - 45.0)
    assert (off_axis > 10).sum() >= 10
    # Every parked lot car lies inside its lot square.
    for cx, cy, lot in world.parking_lots:
        near = np.all(np.abs(boxes[:, :2] - [cx, cy]) < lot / 2, axis=1)
        assert near.any() and np.all(classes[near] == 0)


def test_open3d_backend_gives_the_same_frame():
    cfg = _small_cfg()
    a = generate_frame(cfg, seed=5, index=1)
    b = generate_frame(SyntheticConfig(**{**cfg.__dict__, "backend": "open3d"}), seed=5, index=1)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    for x, y in zip(a.agents, b.agents):
        np.testing.assert_array_equal(x.pose, y.pose)
        assert abs(len(x.points) - len(y.points)) <= 0.005 * len(x.points)
    assert np.abs(a.visibility - b.visibility).sum() <= 0.005 * a.visibility.sum() + 2
