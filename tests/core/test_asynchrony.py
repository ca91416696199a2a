"""Time moves the world: a collaborator's data sensed ``phase + latency`` before the ego's instant.

Oracles: today's frames and detections (bit for bit at zero delay and in a static world), and
the closed form ``misalignment = speed × age`` of objects moving at constant speed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from tests.core.test_sweep import tiny_model
from v2x.asynchrony import SensingClock, aged_batch, frame_phases, motion_history
from v2x.datasets.frame import collate_frames, slot_order
from v2x.datasets.lidar import LidarConfig
from v2x.datasets.synthetic import generate_sequence
from v2x.datasets.synthetic_config import SyntheticConfig
from v2x.perception.boxes import transform_boxes
from v2x.perception.fusion import build_fusion
from v2x.perception.fusion_extrapolated import LateExtrapolatedFusion
from v2x.perception.warp import (
    boxes_in_level_frames,
    merge_points_to_ego,
    relative_level_transforms,
)

FPS = 10.0


def _cfg(**kw) -> SyntheticConfig:
    lid = {"columns": 256, "range_noise_m": 0.0, "dropout": 0.0}
    base = dict(
        vehicle_lidar=LidarConfig(preset="vlp16", max_range_m=60.0, **lid),
        rsu_lidar=LidarConfig(preset="rsu32", max_range_m=60.0, **lid),
        uav_lidar=LidarConfig(preset="uav_down", beams=16, max_range_m=100.0, **lid),
    )
    base.update(kw)
    return SyntheticConfig(**base)


def _static_cfg() -> SyntheticConfig:
    return _cfg(
        car_speed_mps=0.0, cyclist_speed_mps=0.0, pedestrian_speed_mps=0.0, uav_speed_mps=0.0
    )


def _tiny_pipeline(fusion: str, codec: str = "identity"):
    """The sweep tests' tiny detector (``tiny_model``, seed 0) with ``fusion`` and ``codec``
    over AWGN."""
    from v2x.channels import build_channel
    from v2x.perception.checkpoint import detector_config_from_dict
    from v2x.perception.detector import CoopDetector
    from v2x.pipeline import CooperativePipeline
    from v2x.semcom import build_codec

    torch.manual_seed(0)
    model = CoopDetector(detector_config_from_dict(tiny_model())).eval()
    return CooperativePipeline(
        model, build_fusion(fusion), build_codec(codec), build_channel("awgn")
    )


def _same_detections(a, b) -> None:
    for x, y in zip(
        (a.boxes, a.scores, a.labels, a.valid), (b.boxes, b.scores, b.labels, b.valid), strict=True
    ):
        assert torch.equal(x, y)


@pytest.fixture(scope="module")
def moving():
    """Two frames (indices 2 and 3) of a town with traffic and unsynchronised LiDARs."""
    cfg = _cfg(sensing_phase_max_s=0.05, clock_offset_std_s=0.01)
    return cfg, list(generate_sequence(cfg, 31, 2, start_index=2))


def test_resensing_at_the_frame_instants_gives_todays_detections(moving):
    """Zero delay: collaborators cast again at their own scan instants give the frames bit for
    bit, hence the same detections for every fusion stage; ages <= 1 µs keep the batch."""
    cfg, frames = moving
    clock = SensingClock(cfg)
    again = []
    for frame in frames:
        world, index = clock.world(frame), int(frame.meta["frame_index"])
        agents = [
            clock.renderer.observe(world, index, [a], index / FPS - world.agent_phase_s[a])[0][0]
            for a in range(frame.num_agents)
        ]
        again.append(dataclasses.replace(frame, agents=agents))
    batch, redo = collate_frames(frames), collate_frames(again)
    assert torch.equal(batch.points, redo.points) and torch.equal(batch.poses, redo.poses)
    tiny = torch.full(batch.agent_mask.shape, 0.9e-6, dtype=torch.float64)
    assert aged_batch(clock, frames, batch, tiny) is batch
    for fusion in ("late", "max", "early"):
        pipe = _tiny_pipeline(fusion)
        _same_detections(pipe.run(batch, torch.tensor([10.0])).detections,
                         pipe.run(redo, torch.tensor([10.0])).detections)  # fmt: skip


@pytest.mark.filterwarnings("ignore:divide by zero")  # parked traffic never clears a crossing
def test_in_a_static_world_any_delay_changes_nothing():
    cfg = _static_cfg()
    frames = list(generate_sequence(cfg, 12, 1, start_index=1))
    clock = SensingClock(cfg)
    batch = collate_frames(frames)
    ages = torch.tensor([[0.0, 0.05, 0.13, 0.4, 0.25]], dtype=torch.float64)
    aged = aged_batch(clock, frames, batch, ages)
    assert aged is not batch
    assert torch.equal(aged.points, batch.points) and torch.equal(aged.poses, batch.poses)
    pipe = _tiny_pipeline("max")
    _same_detections(pipe.run(batch, torch.tensor([5.0])).detections,
                     pipe.run(aged, torch.tensor([5.0])).detections)  # fmt: skip


@pytest.mark.filterwarnings("ignore:divide by zero")  # parked traffic never clears a crossing
def test_compensation_sees_no_false_speed_from_pose_noise():
    """Late fusion's latency compensation places a collaborator's previous scan with the same
    localisation error as its current one: in a static world (the previous scan is the current
    one) with pose noise, ``late_extrapolated`` gives ``late``'s detections bit for bit, and the
    pose-noise generator goes on as after one draw. A fresh draw for the previous scan would
    move every matched box by a false speed of about √2·σ / period × age."""
    from v2x.execution import seed_run
    from v2x.pipeline import MotionHistory

    cfg = _static_cfg()
    batch = collate_frames(list(generate_sequence(cfg, 12, 1, start_index=1)))
    age = torch.full(batch.agent_mask.shape, 0.3, dtype=torch.float64)
    history = MotionHistory(previous=batch, age_s=age, period_s=0.1)
    runs, states = [], []
    for fusion, motion in (("late", None), ("late_extrapolated", history)):
        pipe = _tiny_pipeline(fusion)
        pipe.pose_noise_m, pipe.pose_noise_yaw_rad = 0.5, 0.02
        seed_run(pipe, 4)
        runs.append(pipe.run(batch, torch.tensor([5.0]), motion).detections)
        states.append(pipe.generator.get_state())
    _same_detections(*runs)
    assert torch.equal(*states)
    assert int(runs[0].valid.sum()) > 0  # boxes to move: not vacuous


def _free_movers(world, t0: float, t1: float) -> np.ndarray:
    """Indices (into the movers) of those moving at their own speed over ``[t0, t1]``."""
    first, last = int(np.floor(t0 * FPS)), int(np.ceil(t1 * FPS))
    speeds = np.array([m.speed for m in world.movers])
    free = speeds > 1.0
    for n in range(max(first, 0), last):
        free &= np.isclose(world._advance(n), speeds / FPS, rtol=0, atol=1e-9)
    if first < 0:
        free &= np.isclose(world._advance(0), speeds / FPS, rtol=0, atol=1e-9)
    return np.flatnonzero(free)


def _surface_distance(xyz: np.ndarray, box: np.ndarray) -> np.ndarray:
    c, s = np.cos(box[6]), np.sin(box[6])
    rel = xyz - box[:3]
    local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], 1)
    q = np.abs(local) - box[3:6] / 2
    return np.abs(np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0))


@pytest.mark.parametrize("age_s", [0.03, 0.25])
def test_moving_objects_are_misaligned_by_speed_times_age(moving, age_s):
    """What a collaborator saw, taken to the ego frame with its pose at sensing time, lies
    ``speed × (phase + latency)`` behind the ground truth at the ego's instant; static objects
    line up exactly. Measured on its ground-truth-aligned boxes and on its points."""
    cfg, frames = moving
    frame = frames[0]
    clock = SensingClock(cfg)
    world = clock.world(frame)
    batch = collate_frames([frame])
    order = slot_order(frame)
    ages = torch.zeros(batch.agent_mask.shape, dtype=torch.float64)
    ages[0, 1:] = age_s
    aged = aged_batch(clock, [frame], batch, ages)
    phase = frame_phases(clock, [frame], batch)[0]
    t = int(frame.meta["frame_index"]) / FPS
    ego_gt = boxes_in_level_frames(batch.boxes, batch.poses[:, :1], 0.0)[0, 0].numpy()
    to_ego = torch.linalg.inv(relative_level_transforms(aged.poses))
    parked = len(world.parked_boxes)
    measured = 0
    for slot in range(1, len(order)):
        age = float(phase[slot]) + age_s
        sensed = torch.from_numpy(world.objects(t - age)[0])[None]
        # a perfect detector's boxes in the collaborator's levelled frame, then the late-fusion
        # transform to the ego with the pose the collaborator had when it sensed
        own = boxes_in_level_frames(sensed, aged.poses[:, slot : slot + 1], 0.0)
        seen = transform_boxes(own, to_ego[:, slot : slot + 1])[0, 0].numpy()
        shift = np.linalg.norm(ego_gt[:, :2] - seen[:, :2], axis=1)
        np.testing.assert_allclose(shift[:parked], 0.0, atol=1e-6)  # the static world lines up
        free = _free_movers(world, t - age, t)
        assert len(free) >= 5
        speeds = np.array([world.movers[i].speed for i in free])
        np.testing.assert_allclose(shift[parked + free], speeds * age, rtol=0, atol=1e-6)
        # its points: moved on by speed × age along the heading they lie on the box at t
        pts, mask = merge_points_to_ego(
            aged.points[:, slot : slot + 1], aged.point_mask[:, slot : slot + 1],
            aged.poses[:, slot : slot + 1], relative_level_transforms(aged.poses)[:, slot : slot + 1],
            0.0,
        )  # fmt: skip
        xyz = pts[0, mask[0], :3].double().numpy()
        for i, v in zip(free, speeds):
            box = ego_gt[parked + i]
            heading = np.array([np.cos(box[6]), np.sin(box[6]), 0.0])
            behind = box.copy()
            behind[:3] -= heading * v * age
            near = xyz[_surface_distance(xyz, behind) < 0.05]
            inside = np.all(np.abs(near[:, :2] - behind[:2]) < behind[3:5].max(), axis=1)
            near = near[inside]
            if len(near) < 10:
                continue
            candidates = np.arange(-0.5, v * age + 0.5, 0.005)
            cost = np.array([_surface_distance(near + heading * s, box).mean() for s in candidates])
            best = candidates[cost <= cost.min() + 1e-3]
            if best.max() - best.min() > 0.03:
                continue  # only faces along the heading seen: the shift is not determined
            assert candidates[int(np.argmin(cost))] == pytest.approx(v * age, abs=0.011)
            measured += 1
    assert measured >= 2


def test_extrapolation_closed_form():
    fusion = LateExtrapolatedFusion(max_speed_mps=20.0)
    boxes = torch.zeros(1, 2, 3, 7, dtype=torch.float64)
    boxes[..., 3:6] = 1.0
    boxes[0, 1, :, :2] = torch.tensor([[10.0, 0.0], [0.0, 5.0], [30.0, 30.0]])
    previous = boxes.clone()
    previous[0, 1, 0, :2] = torch.tensor([9.2, 0.0], dtype=torch.float64)  # 8 m/s along x
    previous[0, 1, 1, :2] = torch.tensor([0.0, 5.3], dtype=torch.float64)  # 3 m/s along -y
    previous[0, 1, 2, :2] = torch.tensor(
        [27.0, 30.0], dtype=torch.float64
    )  # 30 m/s: beyond the gate
    valid = torch.ones(1, 2, 3, dtype=torch.bool)
    labels = torch.zeros(1, 2, 3, dtype=torch.int64)
    age = torch.tensor([[0.7, 0.25]], dtype=torch.float64)
    out = fusion.extrapolate(boxes, valid, labels, previous, valid, labels, age, 0.1)
    np.testing.assert_allclose(out[0, 1, 0, :2], [10.0 + 8 * 0.25, 0.0], atol=1e-12)
    np.testing.assert_allclose(out[0, 1, 1, :2], [0.0, 5.0 - 3 * 0.25], atol=1e-12)
    assert torch.equal(out[0, 1, 2], boxes[0, 1, 2])  # unmatched: left in place
    assert torch.equal(out[0, 0], boxes[0, 0])  # the ego's own boxes are current
    assert torch.equal(out[..., 2:], boxes[..., 2:])
    other = fusion.extrapolate(boxes, valid, labels, previous, valid, labels + 1, age, 0.1)
    assert torch.equal(other, boxes)  # no box of the same class to match
    with pytest.raises(ValueError, match="max_speed_mps"):
        LateExtrapolatedFusion(max_speed_mps=0.0)
    slow = LateExtrapolatedFusion(max_speed_mps=20.0, min_speed_mps=5.0)
    out = slow.extrapolate(boxes, valid, labels, previous, valid, labels, age, 0.1)
    np.testing.assert_allclose(out[0, 1, 0, :2], [10.0 + 8 * 0.25, 0.0], atol=1e-12)
    assert torch.equal(out[0, 1, 1], boxes[0, 1, 1])  # 3 m/s < 5 m/s: standing still
    with pytest.raises(ValueError, match="min_speed_mps"):
        LateExtrapolatedFusion(min_speed_mps=-1.0)


def test_extrapolation_cancels_the_misalignment_of_ground_truth_aligned_boxes(moving):
    """The compensation with the collaborators' own previous scan (what ``motion_history``
    builds) takes a perfect detector's late boxes back onto the ground truth at the ego's
    instant, up to the clock offset's share (``speed × clock_offset``)."""
    cfg, frames = moving
    frame = frames[1]
    clock = SensingClock(cfg)
    world = clock.world(frame)
    batch = collate_frames([frame])
    latency = torch.zeros(batch.agent_mask.shape, dtype=torch.float64)
    latency[0, 1:] = 0.2
    aged = aged_batch(clock, [frame], batch, latency)
    history = motion_history(clock, [frame], batch, latency)
    assert history.period_s == pytest.approx(1 / FPS)
    phase = frame_phases(clock, [frame], batch)[0]
    offsets = clock.clock_offsets(frame)
    t = int(frame.meta["frame_index"]) / FPS
    order = slot_order(frame)

    # perfect detections of every slot now and one period earlier, in the ego frame
    def seen(b, extra: float) -> torch.Tensor:
        out = []
        to_ego = torch.linalg.inv(relative_level_transforms(b.poses))
        for slot in range(len(order)):
            age = 0.0 if slot == 0 else float(phase[slot] + latency[0, slot]) + extra
            objs = torch.from_numpy(world.objects(t - age)[0])[None]
            own = boxes_in_level_frames(objs, b.poses[:, slot : slot + 1], 0.0)
            out.append(transform_boxes(own, to_ego[:, slot : slot + 1])[0])
        return torch.stack(out, 1)  # [1, A, M, 7]

    now, before = seen(aged, 0.0), seen(history.previous, 1 / FPS)
    m = now.shape[2]
    valid = torch.ones(1, len(order), m, dtype=torch.bool)
    labels = torch.from_numpy(frame.classes)[None, None].expand(1, len(order), m)
    out = LateExtrapolatedFusion().extrapolate(
        now, valid, labels, before, valid, labels, history.age_s, history.period_s
    )
    gt = boxes_in_level_frames(batch.boxes, batch.poses[:, :1], 0.0)[0, 0]
    parked = len(world.parked_boxes)
    for slot in range(1, len(order)):
        age = float(phase[slot]) + 0.2
        free = _free_movers(world, t - age - 1 / FPS, t)
        rows = parked + torch.from_numpy(free)
        speeds = torch.tensor([world.movers[i].speed for i in free], dtype=torch.float64)
        raw = (now[0, slot, rows, :2] - gt[rows, :2]).norm(dim=1)
        fixed = (out[0, slot, rows, :2] - gt[rows, :2]).norm(dim=1)
        torch.testing.assert_close(raw, speeds * age, rtol=0, atol=1e-6)
        clock_error = speeds * abs(float(offsets[order[slot]]))
        torch.testing.assert_close(fixed, clock_error, rtol=0, atol=1e-6)
        assert float(fixed.mean()) < 0.2 * float(raw.mean())


def _sweep_config(tmp_path, **overrides) -> dict:
    lidar = {"columns": 128, "max_range_m": 40.0}
    cfg = {
        "checkpoint": "untrained",
        "model": tiny_model(),
        "data": {
            "num_frames": 2,
            "frames_per_sequence": 2,
            "seed": 7,
            "cache_dir": str(tmp_path / "cache"),
            "synthetic": {
                "vehicle_lidar": {"preset": "vlp16", **lidar},
                "rsu_lidar": {"preset": "rsu32", **lidar},
                "uav_lidar": {"preset": "uav_down", "beams": 8, **lidar},
            },
        },
        "batch_size": 2,
        "grid": {
            "snr_db": [10.0],
            "codecs": ["identity"],
            "fusions": ["late", "late_extrapolated", "max", "early"],
        },
        "budget": {"bandwidth_hz": 1e15},  # latencies below 1 µs: a zero-delay configuration
        "eval": {"bootstrap": 0},
        "quiet": True,
        "table": False,
        "plots": False,
    }
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


_CONDITION = ("fusion", "added_delay_s", "late_policy")


def _by_condition(rows: list[dict], drop: tuple[str, ...]) -> dict:
    out = {}
    for r in rows:
        key = tuple(r[c] for c in _CONDITION)
        out[key] = {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in r.items()
            if k not in drop
        }
    return out


_PROVENANCE = ("cell_id", "config_hash", "setting_key", "setting", "code_hash")


def test_a_zero_delay_sweep_reproduces_todays_results_and_ledger(tmp_path):
    from v2x.results import read_results
    from v2x.sweep import run_sweep

    today = run_sweep(_sweep_config(tmp_path, output_dir=str(tmp_path / "a")))
    timed = run_sweep(
        _sweep_config(tmp_path, output_dir=str(tmp_path / "b"), asynchrony={"enabled": True})
    )
    a, b = read_results([today]).to_pylist(), read_results([timed]).to_pylist()
    assert _by_condition(a, _PROVENANCE) == _by_condition(b, _PROVENANCE)
    la = read_results([today], ledger=True).drop_columns(["cell_id"]).to_pylist()
    lb = read_results([timed], ledger=True).drop_columns(["cell_id"]).to_pylist()
    assert sorted(map(repr, la)) == sorted(map(repr, lb))


def test_added_delay_and_late_policy_are_grid_axes_the_ledger_ages_with(tmp_path):
    from v2x.results import read_results
    from v2x.sweep import run_sweep

    path = run_sweep(
        _sweep_config(
            tmp_path,
            output_dir=str(tmp_path / "out"),
            asynchrony={"enabled": True},
            grid={
                "fusions": ["late_extrapolated"],
                "added_delay_s": [0.0, 0.25],
                "late_policy": ["drop", "stale"],
            },
            data={"synthetic": {"sensing_phase_max_s": 0.05}},
        )  # fmt: skip
    )
    rows = read_results([path]).to_pylist()
    assert sorted({(r["added_delay_s"], r["late_policy"]) for r in rows}) == [
        (0.0, "drop"), (0.0, "stale"), (0.25, "drop"), (0.25, "stale")
    ]  # fmt: skip
    assert len(rows) == 4
    ledger = read_results([path], ledger=True).to_pylist()
    cells = {r["cell_id"]: r for r in rows}
    clock = SensingClock(
        SyntheticConfig.from_dict(
            _sweep_config(tmp_path)["data"]["synthetic"] | {"sensing_phase_max_s": 0.05}
        )
    )
    from v2x.loading import load_frames
    from v2x.sweep_plan import plan_sweep

    plan = plan_sweep(_sweep_config(tmp_path, data={"synthetic": {"sensing_phase_max_s": 0.05}}))
    frames = {f.frame_id: f for f in load_frames(plan.data, True)}
    for row in ledger:
        if not row["sent"]:
            continue
        cell = cells[row["cell_id"]]
        assert row["latency_s"] == pytest.approx(cell["added_delay_s"], abs=1e-6)
        frame = frames[row["frame_id"]]
        phase = clock.phases(frame)[[a.agent_id for a in frame.agents].index(row["tx_agent"])]
        if cell["added_delay_s"] > 0.1 and cell["late_policy"] == "drop":
            assert not row["delivered"] and math.isnan(row["aoi_s"])  # past the 0.1 s deadline
        else:  # age of information: the LiDAR's phase + the payload's latency
            assert row["aoi_s"] == pytest.approx(phase + row["latency_s"], abs=1e-12)
            assert phase > 0


def test_without_asynchrony_the_ledger_ages_the_frames_own_data(tmp_path):
    """Asynchrony off (the world does not move with the latency) but unsynchronised LiDARs: the
    data fused is still as old as its scan, so the ledger's ``aoi_s`` is the LiDAR's phase (here
    the frame's timestamps, without clock offsets) plus the payload's latency, as with
    asynchrony on; LiDARs in phase give the latency alone."""
    from v2x.loading import load_frames
    from v2x.results import read_results
    from v2x.sweep import run_sweep
    from v2x.sweep_plan import plan_sweep

    for phase_max in (0.05, 0.0):
        overrides = {
            "data": {"synthetic": {"sensing_phase_max_s": phase_max}},
            "grid": {"fusions": ["max"], "added_delay_s": [0.02]},
        }
        out = str(tmp_path / f"out{phase_max}")
        path = run_sweep(_sweep_config(tmp_path, output_dir=out, **overrides))
        frames = load_frames(plan_sweep(_sweep_config(tmp_path, **overrides)).data, True)
        frames = {f.frame_id: f for f in frames}
        rows = [r for r in read_results([path], ledger=True).to_pylist() if r["delivered"]]
        assert rows
        for row in rows:
            frame = frames[row["frame_id"]]
            agent = next(a for a in frame.agents if a.agent_id == row["tx_agent"])
            phase = frame.ego.timestamp - agent.timestamp
            assert row["latency_s"] == pytest.approx(0.02, abs=1e-6)
            assert row["aoi_s"] == pytest.approx(phase + row["latency_s"], abs=1e-12)
        if phase_max:
            assert any(
                f.ego.timestamp - a.timestamp > 0.001 for f in frames.values() for a in f.agents
            )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"grid": {"added_delay_s": [-0.1]}}, "grid.added_delay_s"),
        ({"grid": {"added_delay_s": [0.1, 0.1]}}, "grid.added_delay_s"),
        ({"grid": {"late_policy": ["sometimes"]}}, "late_policy"),
        ({"asynchrony": {"enabled": "yes"}}, "asynchrony: field 'enabled'"),
        ({"asynchrony": {"enable": True}}, "asynchrony: unknown field"),
        ({"asynchrony": {"enabled": True, "no_earlier_frame": "skip"}},
         "asynchrony: field 'no_earlier_frame'"),
    ],
)  # fmt: skip
def test_bad_asynchrony_settings_name_the_field(tmp_path, override, message):
    from v2x.sweep_plan import plan_sweep

    with pytest.raises(ValueError, match=message):
        plan_sweep(_sweep_config(tmp_path, **override))


def test_the_documented_delay_figure_command_on_two_frames(tmp_path):
    """``v2x-sweep --config-name sweep_asynchrony`` then ``v2x-plot metric=ap_70``: the shipped
    config (with the tiny untrained model and 2 frames) gives AP against every added delay and
    the ``ap_vs_delay`` figure."""
    from v2x.common import to_plain
    from v2x.plots import make_plots
    from v2x.results import read_results
    from v2x.sweep import run_sweep
    from v2x.sweep_plan import _compose_defaults

    shipped = to_plain(_compose_defaults("sweep_asynchrony"))
    tiny = _sweep_config(tmp_path)
    cfg = {
        **shipped,
        **{k: tiny[k] for k in ("checkpoint", "model", "quiet", "table", "plots")},
        "data": {**shipped["data"], **tiny["data"]},
        "output_dir": str(tmp_path / "out"),
    }
    cfg["eval"] = {**shipped["eval"], "bootstrap": 0}
    assert shipped["grid"]["added_delay_s"] == [0.0, 0.1, 0.2, 0.3, 0.4]
    cfg["grid"] = {**shipped["grid"], "added_delay_s": [0.0, 0.4]}  # two of them: a fast test
    path = run_sweep(cfg)
    rows = read_results([path]).to_pylist()
    assert sorted({r["added_delay_s"] for r in rows}) == [0.0, 0.4]
    assert {r["late_policy"] for r in rows} == {"stale"}
    assert {r["fusion"] for r in rows} == {
        "none", "late", "late_extrapolated", "max", "max_extrapolated"
    }  # fmt: skip
    for r in rows:
        if r["fusion"] != "none":  # an ideal link: the age is the added delay
            assert r["mean_aoi_s"] == pytest.approx(r["added_delay_s"], abs=1e-6)
    files = make_plots([path], tmp_path / "plots", formats=["png"], metric="ap_70", table=False)
    assert tmp_path / "plots" / "ap_vs_delay.png" in files


def test_asynchronous_groups_in_lockstep_equal_groups_one_at_a_time(tmp_path, monkeypatch):
    """Asynchronous sensing (payloads aged by the LiDARs' phases and their latency, batches
    re-sensed, latency-compensating fusions with their motion history) with no room for
    features: the groups in lockstep over the frame batches (``v2x.sweep._waves``) give the
    results and ledger of the same groups run one at a time."""
    from v2x.results import read_results
    from v2x.sweep import run_sweep

    def run(groups: int, out: str) -> tuple[list[str], list[str]]:
        monkeypatch.setattr("v2x.sweep.LOCKSTEP_GROUPS", groups)
        path = run_sweep(
            _sweep_config(
                tmp_path,
                output_dir=str(tmp_path / out),
                feature_cache_gb=0,
                batch_size=1,  # two frame batches: the groups' steps interleave
                asynchrony={"enabled": True},
                grid={
                    "fusions": ["none", "late", "late_extrapolated", "max", "max_extrapolated"],
                    "codecs": ["analog"],
                    "added_delay_s": [0.0, 0.2],
                    "late_policy": ["stale"],
                },
                data={"synthetic": {"sensing_phase_max_s": 0.05}},
            )  # fmt: skip
        )
        rows, ledger = read_results([path]), read_results([path], ledger=True)
        return sorted(map(repr, rows.to_pylist())), sorted(map(repr, ledger.to_pylist()))

    lockstep, apart = run(8, "wave"), run(1, "apart")
    assert lockstep[0] and lockstep[1]
    assert lockstep == apart


def test_a_sweeps_groups_share_one_clock_and_the_numbers_do_not_change(tmp_path, monkeypatch):
    """With asynchrony on, the sweep's groups share one ``SensingClock`` (the worlds built and
    stepped once per sweep, not once per group): the results and ledger equal those of a
    clock built anew for every group, with the groups run one after another and in lockstep
    (each batch re-sensed by every group in turn, the worlds already stepped by the others)."""
    import v2x.asynchrony as asynchrony
    import v2x.sweep_clock as sweep_clock
    from v2x.results import read_results
    from v2x.sweep import run_sweep

    built = []
    real = asynchrony.SensingClock

    class Counted(real):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(asynchrony, "SensingClock", Counted)
    overrides = dict(
        asynchrony={"enabled": True},
        grid={"fusions": ["late_extrapolated", "max_extrapolated"],
              "added_delay_s": [0.25], "late_policy": ["stale"]},
        data={"num_frames": 4, "synthetic": {"sensing_phase_max_s": 0.05}},
    )  # fmt: skip
    tables = {}
    for name, cache_gb, fresh in (("shared", "auto", False), ("lockstep", 0, False),
                                  ("per_group", "auto", True)):  # fmt: skip
        if fresh:  # the code before: every GroupRun built its own clock
            shared = sweep_clock.sensing_clock
            monkeypatch.setattr(
                sweep_clock, "sensing_clock",
                lambda plan, _f=shared: sweep_clock._CLOCKS.clear() or _f(plan),
            )  # fmt: skip
            import v2x.sweep_group as sweep_group

            monkeypatch.setattr(sweep_group, "sensing_clock", sweep_clock.sensing_clock)
        built.clear()
        out = str(tmp_path / name)
        path = run_sweep(_sweep_config(tmp_path, output_dir=out, feature_cache_gb=cache_gb,
                                       **overrides))  # fmt: skip
        groups = len({(r["fusion"], r["added_delay_s"]) for r in read_results([path]).to_pylist()})
        assert len(built) == (groups if fresh else 1), name
        rows = read_results([path]).drop_columns(["config_hash"]).to_pylist()
        ledger = read_results([path], ledger=True).to_pylist()
        tables[name] = (sorted(map(repr, rows)), sorted(map(repr, ledger)))
    assert tables["shared"] == tables["per_group"] == tables["lockstep"]
