"""The per-frame network: link budget against hand-computed values, LOS against shapely."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely.geometry import LineString, Polygon

from v2x.datasets.frame import AgentObservation, CoopFrame
from v2x.network import (
    NetworkConfig,
    build_frame_network,
    build_network_batch,
    kind_pair,
    segment_hits_boxes,
)

C = 299_792_458.0


def _pose(x: float, y: float, z: float) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, 3] = [x, y, z]
    return pose


def _frame(positions, kinds, buildings=None, boxes=None) -> CoopFrame:
    agents = [
        AgentObservation(f"a{i}", kind, _pose(*p), np.zeros((0, 4), np.float32))
        for i, (p, kind) in enumerate(zip(positions, kinds))
    ]
    boxes = np.zeros((0, 7)) if boxes is None else np.asarray(boxes, dtype=np.float64)
    meta = {} if buildings is None else {"buildings": np.asarray(buildings, dtype=np.float64)}
    return CoopFrame(
        "f0", agents, boxes, np.zeros(len(boxes), np.int64), np.arange(len(boxes)), meta=meta
    )


def _noise_dbm(bandwidth_hz: float, nf_db: float) -> float:
    return -174.0 + 10 * math.log10(bandwidth_hz) + nf_db


def test_free_space_link_budget_matches_hand_computation():
    cfg = NetworkConfig(los_mode="los", link_models={"vehicle-vehicle": "free_space"})
    net = build_frame_network(_frame([(0, 0, 1.5), (60, 80, 1.5)], ["vehicle", "vehicle"]), cfg)
    d = 100.0
    fspl = 20 * math.log10(4 * math.pi * d * 5.9e9 / C)
    expected = 23.0 + 3.0 + 3.0 - fspl - _noise_dbm(20e6, 9.0)
    assert net.distance_m[1] == pytest.approx(d)
    assert net.path_loss_db[1] == pytest.approx(fspl, abs=0.01)  # c rounded in 32.45 dB
    assert net.snr_db[1] == pytest.approx(expected, abs=0.01)
    assert math.isnan(net.snr_db[0]) and net.kind_pairs[1] == "vehicle-vehicle"


def test_rsu_radio_gains_and_umi_model():
    cfg = NetworkConfig(los_mode="los")
    net = build_frame_network(_frame([(0, 0, 1.5), (30, 40, 10.0)], ["vehicle", "rsu"]), cfg)
    assert net.link_models[1] == "umi_street_canyon"
    d2, d3 = 50.0, math.sqrt(50.0**2 + 8.5**2)
    d_bp = 4 * 9.0 * 0.5 * 5.9e9 / C  # h' = h - 1 m: 9 m and 0.5 m -> 354 m breakpoint
    assert d2 < d_bp
    pl = 32.4 + 21 * math.log10(d3) + 20 * math.log10(5.9)
    assert net.path_loss_db[1] == pytest.approx(pl, abs=1e-4)
    # tx: RSU 30 dBm, 8 dBi, 2 antennas (+3.01 dB); rx: vehicle 3 dBi, NF 9 dB.
    snr = 30 + 8 + 3 + 10 * math.log10(2) - pl - _noise_dbm(20e6, 9.0)
    assert net.snr_db[1] == pytest.approx(snr, abs=1e-4)
    far = build_frame_network(_frame([(0, 0, 1.5), (600, 0, 10.0)], ["vehicle", "rsu"]), cfg)
    d3 = math.sqrt(600.0**2 + 8.5**2)
    pl2 = 32.4 + 40 * math.log10(d3) + 20 * math.log10(5.9) - 9.5 * math.log10(d_bp**2 + 8.5**2)
    assert far.path_loss_db[1] == pytest.approx(pl2, abs=1e-4)


def test_geometric_los_building_vs_vehicle_blockage():
    ego, other = (0, 0, 1.5), (50, 0, 1.5)
    building = [[25, 0, 10, 10, 10, 20, 0.0]]
    truck = [[25, 0, 1.5, 8, 2.5, 3.0, 0.3]]
    cfg = NetworkConfig(los_mode="geometric")
    d, fc = 50.0, 5.9
    by_building = build_frame_network(
        _frame([ego, other], ["vehicle"] * 2, buildings=building), cfg
    )
    assert by_building.blocker[1] == "building" and not by_building.los[1]
    assert by_building.path_loss_db[1] == pytest.approx(
        36.85 + 30 * math.log10(d) + 18.9 * math.log10(fc), abs=1e-4
    )
    by_truck = build_frame_network(_frame([ego, other], ["vehicle"] * 2, boxes=truck), cfg)
    assert by_truck.blocker[1] == "vehicle"
    los = 38.77 + 16.7 * math.log10(d) + 18.2 * math.log10(fc)
    # both antennas below the 1.6 m blocker: mean blockage 9 + max(0, 15 log10 d - 41) dB
    assert by_truck.path_loss_db[1] == pytest.approx(
        los + 9.0 + max(0.0, 15 * math.log10(d) - 41), abs=1e-4
    )
    clear = build_frame_network(_frame([ego, other], ["vehicle"] * 2), cfg)
    assert clear.los[1] and clear.path_loss_db[1] == pytest.approx(los, abs=1e-4)


def test_segment_box_intersection_matches_shapely():
    rng = np.random.default_rng(0)
    boxes = np.column_stack(
        [
            rng.uniform(-20, 20, 40),
            rng.uniform(-20, 20, 40),
            np.full(40, 5.0),
            rng.uniform(1, 8, 40),
            rng.uniform(1, 8, 40),
            np.full(40, 10.0),
            rng.uniform(-3, 3, 40),
        ]
    )
    p0 = np.column_stack([rng.uniform(-30, 30, 60), rng.uniform(-30, 30, 60), np.full(60, 2.0)])
    p1 = np.column_stack([rng.uniform(-30, 30, 60), rng.uniform(-30, 30, 60), np.full(60, 3.0)])
    got = segment_hits_boxes(p0, p1, boxes)
    checked = 0
    for j, (x, y, _, length, width, _, yaw) in enumerate(boxes):
        c, s = math.cos(yaw), math.sin(yaw)
        corners = [
            (x + c * u - s * v, y + s * u + c * v)
            for u, v in (
                (length / 2, width / 2),
                (-length / 2, width / 2),
                (-length / 2, -width / 2),
                (length / 2, -width / 2),
            )
        ]
        poly = Polygon(corners)
        for i in range(len(p0)):
            a, b = tuple(p0[i, :2]), tuple(p1[i, :2])
            if poly.buffer(1e-6).contains(LineString([a, a]).centroid) or poly.buffer(
                1e-6
            ).contains(LineString([b, b]).centroid):
                assert not got[i, j]  # boxes holding an end point never block
                continue
            line = LineString([a, b])
            if abs(line.distance(poly.exterior)) < 1e-6 and not line.crosses(poly):
                continue  # grazing contacts are ambiguous
            assert got[i, j] == line.intersects(poly), (i, j)
            checked += 1
    assert checked > 2000 and got.any()


def test_comm_range_and_batch_layout():
    cfg = NetworkConfig(comm_range_m=300.0)
    near = _frame([(0, 0, 1.5), (100, 0, 1.5), (400, 0, 1.5)], ["vehicle", "vehicle", "uav"])
    small = _frame([(0, 0, 1.5), (10, 0, 1.5)], ["vehicle", "vehicle"])
    batch = build_network_batch([near, small], cfg)
    assert batch.in_range.tolist() == [[True, True, False], [True, True, False]]
    assert batch.distance_m[0, 2].item() == pytest.approx(400.0)
    assert math.isnan(batch.distance_m[1, 2].item())
    assert batch.frames[0].link_models[2] == "al_hourani"


def test_bad_config_names_the_field_and_choices():
    with pytest.raises(ValueError, match="los_mode.*geometric"):
        NetworkConfig(los_mode="sometimes")
    with pytest.raises(ValueError, match="link_models.vehicle-rsu.*free_space"):
        NetworkConfig(link_models={"vehicle-rsu": "nonsense"})
    with pytest.raises(ValueError, match="unknown agent kind"):
        kind_pair("vehicle", "boat")
    with pytest.raises(ValueError, match="comm_range_m"):
        NetworkConfig.from_dict({"comm_range_m": -1})
    with pytest.raises(ValueError, match="unknown field"):
        NetworkConfig.from_dict({"range": 3})


def test_probabilistic_los_is_seeded():
    cfg = NetworkConfig(los_mode="probabilistic", seed=3)
    frame = _frame([(0, 0, 1.5)] + [(30 * i, 5, 1.5) for i in range(1, 8)], ["vehicle"] * 8)
    a = build_frame_network(frame, cfg)
    b = build_frame_network(frame, cfg)
    np.testing.assert_array_equal(a.los, b.los)
    np.testing.assert_array_equal(a.snr_db, b.snr_db)


def test_networks_read_no_point_clouds():
    """``frame_networks`` of frames without their points (``v2x.sweep_batches``: what goes to
    a worker process) equal ``build_network_batch`` of the frames themselves, field for field,
    with geometric blockage by buildings and vehicles and probabilistic LOS; ``frame_networks``
    is numpy only (a worker can send it back), ``stack_networks`` lays it out."""
    from v2x.network import frame_networks, stack_networks
    from v2x.sweep_batches import _without_points

    rng = np.random.default_rng(4)
    frames = []
    for i in range(3):
        frame = _frame(
            [(0, 0, 1.5), (60, 3, 1.5), (20, -40, 6.0), (150, 80, 40.0)],
            ["vehicle", "vehicle", "rsu", "uav"],
            buildings=[[30, 1, 10, 8, 8, 20, 0.1]],  # between the ego and the vehicle
            boxes=[[2, -4, 1.5, 4.5, 2.5, 3.0, 0.0]],  # a truck between the ego and the RSU
        )
        frame.frame_id = f"f{i}"
        for agent in frame.agents:
            agent.points = rng.normal(size=(50, 4)).astype(np.float32)
        frames.append(frame)
    for cfg in (NetworkConfig(), NetworkConfig(los_mode="probabilistic", seed=5)):
        whole = build_network_batch(frames, cfg)
        nets = frame_networks([_without_points(f) for f in frames], cfg)
        light = stack_networks(nets)
        for name in ("distance_m", "snr_db", "in_range", "los"):
            torch.testing.assert_close(
                getattr(light, name), getattr(whole, name), rtol=0, atol=0, equal_nan=True
            )
        for net, ref in zip(nets, whole.frames, strict=True):
            for name, value in vars(ref).items():
                np.testing.assert_array_equal(getattr(net, name), value)
            assert not any(type(v).__module__.startswith("torch") for v in vars(net).values())
        if cfg.los_mode == "geometric":
            assert {"building", "vehicle"} <= set(whole.frames[0].blocker)
    assert all(len(a.points) == 50 for f in frames for a in f.agents)  # the frames untouched


def _networks_and_their_warnings(frames, cfg):
    """``frame_networks`` computed in a forked worker process: the networks and the warnings
    logged there (a sweep's scoring processes build its batches' networks)."""
    import logging

    from v2x.network import frame_networks

    class Caught(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    caught = Caught()
    logging.getLogger("v2x.channels.link").addHandler(caught)
    try:
        nets = frame_networks(frames, cfg)
    finally:
        logging.getLogger("v2x.channels.link").removeHandler(caught)
    return nets, caught.messages


def test_links_outside_the_range_are_logged_once_by_the_process_that_stacks_them(
    caplog, monkeypatch
):
    """Worker processes that build frames' networks log nothing (each logged once, so a GPU
    sweep printed one line per scoring process); the sentence travels with the network
    (``FrameNetwork.outside_range``) and ``stack_networks`` logs it once per link model."""
    import concurrent.futures
    import logging
    import multiprocessing

    import v2x.channels.link as link
    from v2x.network import stack_networks

    monkeypatch.setattr(link, "_WARNED_OUTSIDE", set())
    cfg = NetworkConfig(los_mode="los")
    near = _frame([(0, 0, 1.5), (30, 40, 10.0)], ["vehicle", "rsu"])  # 50 m: in range
    far = _frame([(0, 0, 1.5), (6000, 0, 10.0)], ["vehicle", "rsu"])  # beyond 5,000 m
    far.frame_id = "f1"
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        nets, logged_there = pool.submit(_networks_and_their_warnings, [near, far], cfg).result()
    assert logged_there == []
    assert nets[0].outside_range == ()
    (model, sentence), = nets[1].outside_range
    assert model == "umi_street_canyon" and "10 m <= d2D <= 5000 m" in sentence
    with caplog.at_level(logging.WARNING, logger="v2x.channels.link"):
        stack_networks(nets)
        stack_networks(nets)  # (the next batch: not again)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"{sentence} (logged once per link model)"]
