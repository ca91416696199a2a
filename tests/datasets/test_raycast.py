"""Ray casting: closed-form hits, occlusion, and the torch ↔ open3d cross-check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.datasets.lidar import LidarConfig, build_lidar
from v2x.datasets.raycast import make_raycaster
from v2x.datasets.raycast_scene import GROUND, MISS, BoxScene, box_corners
from v2x.datasets.raycast_torch import TorchRaycaster
from v2x.datasets.synthetic_config import SyntheticConfig
from v2x.datasets.synthetic_world import SyntheticWorld

BACKENDS = ["torch", "torch-dense", "open3d"]


def _caster(name: str):
    if name == "torch-dense":
        return TorchRaycaster(azimuth_bins=0)
    return make_raycaster(name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_closed_form_hits(backend):
    caster = _caster(backend)
    # Axis-aligned box 2×2×2 centred at (10, 0, 1); a yawed 45° copy at (0, 10, 1).
    scene = BoxScene([[10, 0, 1, 2, 2, 2, 0.0], [0, 10, 1, 2, 2, 2, math.pi / 4]])
    origin = np.array([0.0, 0.0, 1.0])
    dirs = np.array(
        [
            [1.0, 0.0, 0.0],  # front face of box 0 at x = 9
            [0.0, 1.0, 0.0],  # corner of the yawed box at y = 10 - sqrt(2)
            [0.0, 0.0, 1.0],  # up: nothing
            [math.cos(0.3), 0.0, -math.sin(0.3)],  # ground at 1 / sin(0.3)
            [-1.0, 0.0, -1e-3],  # grazing the ground far away: beyond range
        ]
    )
    hits = caster.cast(scene, origin, dirs, max_range_m=100.0)
    np.testing.assert_array_equal(hits.prim, [0, 1, MISS, GROUND, MISS])
    np.testing.assert_allclose(hits.t[:2], [9.0, 10 - math.sqrt(2)], atol=1e-4)
    assert hits.t[2] == math.inf and hits.t[4] == math.inf
    np.testing.assert_allclose(hits.t[3], 1 / math.sin(0.3), rtol=1e-5)
    np.testing.assert_allclose(np.abs(hits.normal[0]), [1, 0, 0], atol=1e-5)
    np.testing.assert_allclose(np.abs(hits.normal[3]), [0, 0, 1], atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_origin_inside_box_hits_exit_face(backend):
    scene = BoxScene([[0, 0, 5, 4, 2, 10, 0.3]], ground=False)
    dirs = np.array([[math.cos(0.3), math.sin(0.3), 0.0], [0.0, 0.0, -1.0]])
    hits = _caster(backend).cast(scene, np.array([0.0, 0.0, 5.0]), dirs)
    np.testing.assert_allclose(hits.t, [2.0, 5.0], atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_building_occludes_car(backend):
    """A car fully behind a building gets no points; without the building it gets many."""
    car = [30.0, 0.0, 0.8, 4.5, 1.9, 1.6, 0.2]
    building = [15.0, 0.0, 10.0, 6.0, 20.0, 20.0, 0.0]
    lidar = build_lidar(LidarConfig(preset="hdl64", columns=1024))
    origin = np.array([0.0, 0.0, 1.9])
    caster = _caster(backend)
    blocked = caster.cast(BoxScene([car, building]), origin, lidar.directions, 70.0)
    free = caster.cast(BoxScene([car]), origin, lidar.directions, 70.0)
    assert (blocked.prim == 0).sum() == 0
    assert (free.prim == 0).sum() > 50
    # Sanity: the rays that hit the car in the free scene are stopped by the building.
    assert np.all(blocked.prim[free.prim == 0] == 1)


def _town_rays():
    cfg = SyntheticConfig(blocks=3, traffic_density=0.04, pedestrian_density=0.02)
    world = SyntheticWorld(cfg, seed=5)
    for _ in range(7):
        world.step()
    boxes, _, _ = world.objects()
    scene = BoxScene(np.concatenate([boxes, world.buildings]))
    patterns = {
        "vehicle": build_lidar(LidarConfig(preset="hdl64", columns=512)),
        "rsu": build_lidar(LidarConfig(preset="rsu32", columns=512)),
        "uav": build_lidar(LidarConfig(preset="uav_down", beams=32, columns=512)),
    }
    for _, kind, pose, _ in world.sensor_poses(boxes):
        yield scene, pose[:3, 3], patterns[kind].directions @ pose[:3, :3].T


def test_torch_matches_open3d_on_a_town():
    """Same scene, both backends: hit/miss identical for ≥ 99.5 % of rays, ranges within 1 cm."""
    torch_caster, o3d_caster = TorchRaycaster(), make_raycaster("open3d")
    total = agree = 0
    for scene, origin, dirs in _town_rays():
        a = torch_caster.cast(scene, origin, dirs, max_range_m=100.0)
        b = o3d_caster.cast(scene, origin, dirs, max_range_m=100.0)
        total += len(dirs)
        agree += int((a.hit == b.hit).sum())
        both = a.hit & b.hit
        assert both.sum() > 0.5 * len(dirs)
        assert np.abs(a.t[both] - b.t[both]).max() < 0.01
        assert (a.prim[both] == b.prim[both]).mean() > 0.995
    assert agree / total >= 0.995


def test_binned_and_dense_torch_agree_and_multi_origin():
    dense, binned = TorchRaycaster(azimuth_bins=0, chunk_elems=50_000), TorchRaycaster()
    for scene, origin, dirs in _town_rays():
        dirs = dirs[::23]
        a, b = dense.cast(scene, origin, dirs, 100.0), binned.cast(scene, origin, dirs, 100.0)
        np.testing.assert_array_equal(a.prim, b.prim)
        np.testing.assert_allclose(a.t, b.t, atol=1e-4)
        # Same rays given per-ray origins (the general path).
        c = binned.cast(scene, np.broadcast_to(origin, dirs.shape).copy(), dirs, 100.0)
        np.testing.assert_array_equal(a.prim, c.prim)
        # Many small chunks of (ray, box) pairs give the same answer as one.
        e = TorchRaycaster(chunk_elems=500).cast(scene, origin, dirs, 100.0)
        np.testing.assert_array_equal(a.prim, e.prim)


def test_box_corners_closed_form():
    corners = box_corners(np.array([[1.0, 2.0, 3.0, 4.0, 2.0, 6.0, math.pi / 2]]))[0]
    # Yaw 90°: length runs along +y.
    np.testing.assert_allclose(corners.min(axis=0), [0.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(corners.max(axis=0), [2.0, 4.0, 6.0], atol=1e-12)


def test_bad_rays_and_scenes_raise():
    caster = TorchRaycaster()
    with pytest.raises(ValueError, match="directions"):
        caster.cast(BoxScene([]), np.zeros(3), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="origins"):
        caster.cast(BoxScene([]), np.zeros((2, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="boxes"):
        BoxScene([[0, 0, 0, 1, -1, 1, 0]])
    with pytest.raises(ValueError, match="backend"):
        make_raycaster("embree")


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu, gpu = TorchRaycaster(), TorchRaycaster(device="cuda")
    for scene, origin, dirs in _town_rays():
        a, b = cpu.cast(scene, origin, dirs, 100.0), gpu.cast(scene, origin, dirs, 100.0)
        assert (a.prim == b.prim).mean() > 0.999
        both = a.hit & b.hit
        assert np.abs(a.t[both] - b.t[both]).max() < 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_cast_groups_equals_one_cast_per_sensor(backend):
    caster = _caster(backend)
    sensors = list(_town_rays())
    scene = sensors[0][0]
    origins = np.stack([origin for _, origin, _ in sensors])
    dirs = np.concatenate([d[::5] for _, _, d in sensors])
    group = np.concatenate([np.full(len(d[::5]), i) for i, (_, _, d) in enumerate(sensors)])
    together = caster.cast_groups(scene, origins, dirs, group, 100.0)
    alone = [caster.cast(scene, o, d[::5], 100.0) for _, o, d in sensors]
    np.testing.assert_array_equal(together.prim, np.concatenate([h.prim for h in alone]))
    np.testing.assert_allclose(together.t, np.concatenate([h.t for h in alone]), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="group"):
        caster.cast_groups(scene, origins, dirs, group + len(origins))
