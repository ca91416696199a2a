"""Continuous time in the synthetic world: trajectories between frames, casting at any instant,
unsynchronised LiDARs and clock offsets (defaults 0 leave the frames as they were)."""

from __future__ import annotations

import numpy as np
import pytest

from v2x.datasets.lidar import LidarConfig
from v2x.datasets.synthetic import generate_frame, generate_sequence
from v2x.datasets.synthetic_config import SyntheticConfig
from v2x.datasets.synthetic_render import FrameRenderer
from v2x.datasets.synthetic_world import SyntheticWorld


def _small_cfg(**kw) -> SyntheticConfig:
    lid = {"columns": 128, "range_noise_m": 0.0, "dropout": 0.0}
    base = dict(
        vehicle_lidar=LidarConfig(preset="vlp16", max_range_m=60.0, **lid),
        rsu_lidar=LidarConfig(preset="rsu32", max_range_m=60.0, **lid),
        uav_lidar=LidarConfig(preset="uav_down", beams=16, max_range_m=100.0, **lid),
    )
    base.update(kw)
    return SyntheticConfig(**base)


def _same_agent(a, b) -> None:
    assert a.agent_id == b.agent_id and a.kind == b.kind
    assert np.array_equal(a.pose, b.pose)
    assert np.array_equal(a.points, b.points)
    assert a.timestamp == b.timestamp


def test_casting_at_a_past_frame_instant_gives_that_frame_bit_for_bit():
    cfg = _small_cfg()
    frames = list(generate_sequence(cfg, 21, 3))
    world = SyntheticWorld(cfg, 21)
    for _ in range(2):
        world.step()
    renderer = FrameRenderer(cfg)
    for n, frame in enumerate(frames):
        obs, vis = renderer.observe(world, n, range(frame.num_agents), n / cfg.fps)
        for a, b in zip(obs, frame.agents):
            _same_agent(a, b)
        assert np.array_equal(vis, frame.visibility)
        boxes, classes, tracks = world.objects(n / cfg.fps)
        assert np.array_equal(boxes, frame.boxes) and np.array_equal(tracks, frame.track_ids)


def test_objects_move_at_constant_velocity_within_a_step_and_before_the_first_frame():
    cfg = _small_cfg()
    world = SyntheticWorld(cfg, 5)
    b0 = world.objects(0.0)[0]
    world.step()
    b1 = world.objects(0.1)[0]
    p = len(world.parked_boxes)
    step = b1[:, :2] - b0[:, :2]
    moving = np.linalg.norm(step, axis=1) > 0
    ok = moving & (np.linalg.norm(step, axis=1) < 5.0)  # leave out movers wrapping the torus
    assert ok[p:].sum() > 5 and not moving[:p].any()
    for frac in (0.25, 0.5, 0.8, -0.4, -3.0):
        bt = world.objects(frac / cfg.fps)[0]
        np.testing.assert_allclose(bt[ok, :2], b0[ok, :2] + frac * step[ok], atol=1e-9)
        np.testing.assert_array_equal(bt[:p], b0[:p])  # parked: static
        np.testing.assert_array_equal(bt[:, 2:], b0[:, 2:])  # sizes, heights, headings
    with pytest.raises(ValueError, match="time_s"):
        world.objects(0.2)


def test_the_first_step_velocity_is_known_before_the_world_is_stepped():
    cfg = _small_cfg()
    fresh = SyntheticWorld(cfg, 8)
    before = fresh.objects(-0.05)[0]
    stepped = SyntheticWorld(cfg, 8)
    stepped.step()
    np.testing.assert_array_equal(before, stepped.objects(-0.05)[0])


def test_unsynchronised_lidars_scan_before_the_frame_and_stamp_their_own_clock():
    cfg = _small_cfg(sensing_phase_max_s=0.08, clock_offset_std_s=0.02)
    frame = generate_frame(cfg, seed=9, index=2)
    world = SyntheticWorld(cfg, 9)
    world.step()
    world.step()
    phase, clock = world.agent_phase_s, world.agent_clock_offset_s
    assert phase[0] == 0 and clock[0] == 0
    assert np.all((phase[1:] > 0) & (phase[1:] < 0.08)) and np.all(clock[1:] != 0)
    t = 2 / cfg.fps
    boxes, _, _ = world.objects()
    np.testing.assert_array_equal(frame.boxes, boxes)  # ground truth at the ego's instant
    renderer = FrameRenderer(cfg)
    for a, agent in enumerate(frame.agents):
        sensed = t - phase[a]
        assert agent.timestamp == pytest.approx(sensed + clock[a], abs=1e-12)
        _same_agent(agent, renderer.observe(world, 2, [a], sensed)[0][0])
    # a moving collaborator's pose is the one at its own scan instant
    veh = frame.agents[1]
    pose_now = world.sensor_poses(boxes)[1][2]
    assert not np.allclose(veh.pose[:2, 3], pose_now[:2, 3])
    # the same seed draws the same offsets
    again = SyntheticWorld(cfg, 9)
    np.testing.assert_array_equal(again.agent_phase_s, phase)


def test_time_fields_default_to_zero_and_leave_the_config_identity_alone():
    cfg = SyntheticConfig()
    assert "sensing_phase_max_s" not in cfg.to_dict()
    assert "clock_offset_std_s" not in cfg.to_dict()
    shifted = SyntheticConfig(sensing_phase_max_s=0.05)
    assert shifted.to_dict()["sensing_phase_max_s"] == 0.05
    assert SyntheticConfig.from_dict(shifted.to_dict()) == shifted
    with pytest.raises(ValueError, match="sensing_phase_max_s"):
        SyntheticConfig(sensing_phase_max_s=0.2)  # more than one frame period
    with pytest.raises(ValueError, match="clock_offset_std_s"):
        SyntheticConfig(clock_offset_std_s=-1.0)
