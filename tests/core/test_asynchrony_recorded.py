"""Asynchrony on real data: the ego fuses each collaborator's recorded scan sensed at or before
its instant minus the payload's delay (``v2x.asynchrony_recorded``).

Oracles: hand-built V2X-Sim 2.0 / DAIR-V2X-C datasets with known sensing times
(``tests/datasets/timed_fixtures.py``): the scan served and its age read off the timestamps by
hand; the frame's own ground truth; today's sweep results (zero delay) bit for bit.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.core.test_asynchrony import _tiny_pipeline
from tests.core.test_sweep import tiny_model
from v2x.asynchrony import aged_batch
from v2x.asynchrony_recorded import RecordedClock
from v2x.datasets.dair_reader import DAIRV2XCDataset
from v2x.datasets.frame import collate_frames
from v2x.datasets.v2xsim_reader import V2XSimDataset

_spec = importlib.util.spec_from_file_location(
    "timed_fixtures", Path(__file__).parents[1] / "datasets" / "timed_fixtures.py"
)
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)


@pytest.fixture(scope="module")
def dair_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dair")
    fx.build_dair(root)
    return root


@pytest.fixture(scope="module")
def v2xsim_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("v2xsim")
    fx.build_v2xsim(root)
    return root


def _inf_t(frame: str) -> float:
    return fx.DAIR_INF_US[frame] * 1e-6


def _veh_t(frame: str) -> float:
    return fx.DAIR_VEH_US[frame] * 1e-6


def _same_ground_truth(a, b) -> None:
    for name in ("boxes", "classes", "track_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.meta == b.meta and a.frame_id == b.frame_id and a.ego_index == b.ego_index


# ---------------------------------------------------------------------------- the clock


def test_zero_delay_serves_the_frame_itself(dair_root, v2xsim_root):
    for reader in (DAIRV2XCDataset(dair_root), V2XSimDataset(v2xsim_root)):
        clock = RecordedClock(reader)
        frame = reader[len(reader) - 1]
        zero = np.zeros(frame.num_agents)
        assert clock.aged_frame(frame, zero) is frame
        assert clock.aged_frame(frame, zero + 0.9e-6) is frame  # at or below MIN_AGE_S
        np.testing.assert_array_equal(clock.served_ages(frame, zero), clock.phases(frame))


@pytest.mark.parametrize(
    ("pair", "delay", "served"),
    [
        (0, 0.0, "000013"),  # t_v = T0 + 300 ms, own scan at 280 ms: age 20 ms
        (0, 0.05, "000012"),
        (0, 0.15, "000011"),
        (1, 0.05, "000010"),  # t_v = T0 + 100 ms
        (2, 0.0, "000013"),  # paired with a scan 80 ms *after* the vehicle's: age -80 ms
        (2, 1e-5, "000012"),  # any delay: that scan had not arrived
    ],
)
def test_dair_age_is_the_sensing_time_difference_and_gt_stays(dair_root, pair, delay, served):
    reader = DAIRV2XCDataset(dair_root)
    clock = RecordedClock(reader)
    frame = reader[pair]
    veh = fx.DAIR_PAIRS[pair][0]
    age = clock.served_ages(frame, [0.0, delay])
    assert age[0] == 0.0
    assert age[1] == pytest.approx(_veh_t(veh) - _inf_t(served), abs=1e-6)
    aged = clock.aged_frame(frame, [0.0, delay])
    _same_ground_truth(aged, frame)
    assert aged.agents[0] is frame.agents[0]  # the ego is never aged
    assert aged.agents[1].timestamp == _inf_t(served)
    assert aged.agents[1].points[0, 3] == pytest.approx(fx.dair_intensity(served) / 255.0)
    expected = np.array(fx.dair_inf_translation(served)) + [fx.DAIR_OFFSET_X, 0.0, 0.0]
    np.testing.assert_allclose(aged.agents[1].pose[:3, 3], expected, atol=1e-12)


def test_v2xsim_collaborators_served_with_their_pose_at_sensing_time(v2xsim_root):
    reader = V2XSimDataset(v2xsim_root)
    clock = RecordedClock(reader)
    frame = reader[3]  # the ego's instant: 1.6 s; agents rsu_0, veh_1 (ego), veh_2
    delays = [0.04, 0.0, 0.3]
    np.testing.assert_allclose(clock.served_ages(frame, delays), [0.23, 0.0, 0.4], atol=1e-9)
    aged = clock.aged_frame(frame, delays)
    _same_ground_truth(aged, frame)
    np.testing.assert_allclose(aged.boxes[0, :3], fx.v2xsim_car_centre(3))  # GT at 1.6 s
    rsu, ego, veh = aged.agents
    assert ego is frame.agents[1]
    assert rsu.timestamp == pytest.approx(1.37) and veh.timestamp == pytest.approx(1.2)
    assert veh.points[0, 3] == pytest.approx(fx.v2xsim_intensity(2, 1))
    # sample 1: id_2's ego_pose turned +90° at (33, 5, 0), mount (1, 0, 1.8): the point
    # (1, 0, 0) lies at (33, 7, 1.8) in the world; the frame's own pose would put it at (41, 5, 1.8)
    np.testing.assert_allclose((veh.pose @ [1.0, 0.0, 0.0, 1.0])[:3], [33.0, 7.0, 1.8], atol=1e-9)
    np.testing.assert_allclose(veh.pose[:2, :2], [[0.0, -1.0], [1.0, 0.0]], atol=1e-12)


def test_aged_batch_takes_recorded_scans_and_keeps_the_masks(v2xsim_root):
    reader = V2XSimDataset(v2xsim_root)
    clock = RecordedClock(reader)
    frames = [reader[2], reader[3]]
    batch = collate_frames(frames)
    ages = torch.zeros(batch.agent_mask.shape, dtype=torch.float64)
    ages[1, 2] = 0.2  # frame 3, slot 2 (veh_2): the 1.4 s scan
    out = aged_batch(clock, frames, batch, ages)
    assert torch.equal(out.agent_mask, batch.agent_mask) and torch.equal(out.boxes, batch.boxes)
    assert out.points[1, 2, 0, 3].item() == pytest.approx(fx.v2xsim_intensity(2, 2))
    assert torch.equal(out.points[0], batch.points[0]) and torch.equal(out.poses[0], batch.poses[0])
    np.testing.assert_allclose(out.poses[1, 2, :3, 3].numpy(), [37.0, 5.0, 1.8], atol=1e-9)


def test_no_earlier_frame_is_dropped_and_recorded_or_raises(v2xsim_root):
    reader = V2XSimDataset(v2xsim_root)
    frame = reader[3]
    with pytest.raises(ValueError, match="veh_2.*no scan sensed at or before.*first scan: 1.0"):
        RecordedClock(reader, "error").aged_frame(frame, [0.0, 0.0, 0.7])
    clock = RecordedClock(reader, "drop")
    assert math.isnan(clock.served_ages(frame, [0.0, 0.0, 0.7])[2])
    kept = clock.aged_frame(frame, [0.0, 0.0, 0.7])
    assert kept.agents[2] is frame.agents[2] and clock.dropped == [(frame.frame_id, "veh_2", 0.7)]
    with pytest.raises(ValueError, match="no_earlier_frame"):
        RecordedClock(reader, "skip")


def test_motion_history_is_the_previous_recorded_scan(v2xsim_root):
    reader = V2XSimDataset(v2xsim_root)
    clock = RecordedClock(reader)
    frames = [reader[3]]
    batch = collate_frames(frames)
    delay = torch.tensor([[0.0, 0.05, 0.1]], dtype=torch.float64)  # slots: ego, rsu_0, veh_2
    motion = clock.motion_history(frames, batch, delay)
    # served: rsu 1.37 s (≤ 1.55), veh_2 1.4 s (≤ 1.5); previous: 1.17 s and 1.2 s
    torch.testing.assert_close(motion.age_s, torch.tensor([[0.0, 0.23, 0.2]], dtype=torch.float64))
    torch.testing.assert_close(
        motion.period_s[0, 1:], torch.tensor([0.2, 0.2], dtype=torch.float64)
    )
    prev = motion.previous
    assert prev.points[0, 1, 0, 3].item() == pytest.approx(fx.v2xsim_intensity(0, 1))
    assert prev.points[0, 2, 0, 3].item() == pytest.approx(fx.v2xsim_intensity(2, 1))
    # a served scan that is the first of the recording has no previous one: masked out
    first = clock.motion_history(frames, batch, torch.tensor([[0.0, 0.0, 0.6]]))
    assert first.previous.agent_mask.tolist() == [[True, True, False]]


class _GappyReader:
    """A recording of one frame: the ego scans at 0.35 s; collaborator ``a`` (slot 1) at 0.0,
    0.1, 0.2, 0.3 s, ``b`` (slot 2) at 0.0, 0.1, 0.3 s (its 0.2 s scan is missing, as scans
    are in real recordings). Each scan's single point has intensity = its time."""

    TIMES = {0: [0.35], 1: [0.0, 0.1, 0.2, 0.3], 2: [0.0, 0.1, 0.3]}
    IDS = ("ego", "a", "b")

    def _obs(self, agent: int, t: float):
        from v2x.datasets.frame import AgentObservation

        return AgentObservation(self.IDS[agent], "vehicle", np.eye(4), [[0, 0, 0, t]], t)

    def frame(self):
        from v2x.datasets.frame import CoopFrame

        agents = [self._obs(a, self.TIMES[a][-1]) for a in range(3)]
        empty = np.zeros((0, 7))
        return CoopFrame("gappy/0", agents, empty, np.zeros(0, np.int64), np.zeros(0, np.int64))

    def index_of(self, frame) -> int:
        return 0

    def sensing_times(self, index: int, agent: int) -> list[float]:
        return list(self.TIMES[agent])

    def observation_before(self, index: int, agent: int, until_s: float):
        times = [t for t in self.TIMES[agent] if t <= until_s + 1e-6]
        return self._obs(agent, times[-1]) if times else None


def test_extrapolation_uses_each_collaborators_own_scan_gap():
    """A car at 10 m/s along x, seen by two collaborators whose served scans (0.3 s) follow
    their previous ones by 0.1 s (``a``) and 0.2 s (``b``, a scan missing). Oracle by hand: the
    car is at x = 3 m at 0.3 s and 1 m / 2 m at 0.1 s / 0.2 s, and at the ego's instant 0.35 s
    at x = 3.5 m. A period averaged over the batch (0.15 s) put it at 3.33 m (a) and 3.67 m (b)."""
    from v2x.perception.fusion import build_fusion

    reader = _GappyReader()
    frame = reader.frame()
    batch = collate_frames([frame])
    delay = torch.tensor([[0.0, 0.05, 0.05]], dtype=torch.float64)  # served: both at 0.3 s
    motion = RecordedClock(reader).motion_history([frame], batch, delay)
    torch.testing.assert_close(motion.age_s, torch.tensor([[0.0, 0.05, 0.05]], dtype=torch.float64))
    assert motion.previous.points[0, 1, 0, 3].item() == pytest.approx(0.2)
    assert motion.previous.points[0, 2, 0, 3].item() == pytest.approx(0.1)
    torch.testing.assert_close(
        motion.period_s[0, 1:], torch.tensor([0.1, 0.2], dtype=torch.float64)
    )

    def box(x: float) -> list[float]:
        return [x, 0.0, 0.8, 4.5, 1.9, 1.6, 0.0]

    now = torch.tensor([[[box(0.0)], [box(3.0)], [box(3.0)]]], dtype=torch.float64)
    before = torch.tensor([[[box(0.0)], [box(2.0)], [box(1.0)]]], dtype=torch.float64)
    valid = torch.ones(1, 3, 1, dtype=torch.bool)
    labels = torch.zeros(1, 3, 1, dtype=torch.int64)
    fusion = build_fusion("late_extrapolated")
    moved = fusion.extrapolate(
        now, valid, labels, before, valid, labels, motion.age_s, motion.period_s
    )
    torch.testing.assert_close(moved[0, 1:, 0, 0], torch.tensor([3.5, 3.5], dtype=torch.float64))
    assert moved[0, 0, 0, 0].item() == 0.0  # the ego is not moved


def test_delays_up_to_a_microsecond_leave_the_detections_bit_for_bit(dair_root):
    """``evaluate_batch`` with every payload 0.5 µs old gives the detections of a run without
    asynchrony (no re-run: a re-run would draw other channel noise); 50 ms changes them."""
    from v2x.evaluation import default_eval_config, ego_ground_truth
    from v2x.execution import Arrival, evaluate_batch
    from v2x.perception.average_precision import APAccumulator

    reader = DAIRV2XCDataset(dair_root)
    clock = RecordedClock(reader)
    frames = [reader[i] for i in range(len(reader))]
    batch = collate_frames(frames)
    pipe = _tiny_pipeline("max", "analog")  # analog over AWGN: the noise follows the seed
    gt = ego_ground_truth(batch, pipe.model.grid, min_points=0)
    snr = torch.tensor([10.0])

    def run(age_s: float | None):
        acc = APAccumulator(default_eval_config(pipe.model.grid))
        deliver = None
        if age_s is not None:

            def deliver(cost):
                ages = torch.where(cost.sent, age_s, 0.0).double()
                return Arrival(cost.sent, ages, clock.MIN_AGE_S)

        def resense(b, ages):
            return aged_batch(clock, frames, b, ages), None

        return evaluate_batch(
            pipe, batch, snr, gt, [acc], seeds=[5], deliver=deliver, resense=resense
        ).detections

    today, fresh, late = run(None), run(0.5e-6), run(0.05)
    for x, y in zip(
        (today.boxes, today.scores, today.valid), (fresh.boxes, fresh.scores, fresh.valid)
    ):
        assert torch.equal(x, y)
    assert not torch.equal(today.scores, late.scores)


# ---------------------------------------------------------------------------- the sweep


def _sweep_config(tmp_path: Path, root: Path, **overrides) -> dict:
    cfg = {
        "checkpoint": "untrained",
        "model": tiny_model(),
        "data": {"source": "dair_v2x", "path": str(root), "num_frames": 3},
        "batch_size": 3,
        "grid": {"snr_db": [10.0], "codecs": ["identity"], "fusions": ["late_extrapolated", "max"]},
        "budget": {"bandwidth_hz": 1e15},  # latencies below 1 µs: a zero-delay configuration
        "eval": {"bootstrap": 0, "min_points": 0},
        "quiet": True,
        "table": False,
        "plots": False,
    }
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


_PROVENANCE = ("cell_id", "config_hash", "setting_key", "setting", "code_hash")


def test_dair_sweep_at_zero_delay_reproduces_todays_results(tmp_path, dair_root):
    from v2x.results import read_results
    from v2x.sweep import run_sweep

    today = run_sweep(_sweep_config(tmp_path, dair_root, output_dir=str(tmp_path / "a")))
    timed = run_sweep(
        _sweep_config(
            tmp_path, dair_root, output_dir=str(tmp_path / "b"), asynchrony={"enabled": True}
        )
    )
    key = ("fusion", "added_delay_s")

    def rows(path):
        out = {}
        for r in read_results([path]).to_pylist():
            clean = {k: v for k, v in r.items() if k not in (*_PROVENANCE, "mean_aoi_s")}
            out[tuple(r[k] for k in key)] = {
                k: None if isinstance(v, float) and math.isnan(v) else v for k, v in clean.items()
            }
        return out

    assert rows(today) == rows(timed)
    la = read_results([today], ledger=True).to_pylist()
    lb = read_results([timed], ledger=True).to_pylist()
    strip = lambda r: repr({k: v for k, v in r.items() if k not in ("cell_id", "aoi_s")})  # noqa: E731
    assert sorted(map(strip, la)) == sorted(map(strip, lb))
    # the age recorded with asynchrony: the dataset's pairing (t_vehicle − t_infrastructure)
    phase = {f"dair/{v}": _veh_t(v) - _inf_t(i) for v, i in fx.DAIR_PAIRS}
    for r in lb:
        assert r["delivered"] and r["aoi_s"] == pytest.approx(phase[r["frame_id"]], abs=1e-6)


def test_dair_sweep_ages_with_the_delay_and_drops_what_was_not_recorded(tmp_path, dair_root):
    from v2x.results import read_results
    from v2x.sweep import run_sweep

    path = run_sweep(
        _sweep_config(
            tmp_path,
            dair_root,
            output_dir=str(tmp_path / "out"),
            asynchrony={"enabled": True},
            grid={"added_delay_s": [0.0, 0.15, 0.25], "late_policy": ["stale"]},
        )
    )
    cells = {r["cell_id"]: r for r in read_results([path]).to_pylist()}
    # scan served at t_vehicle − delay (by hand from the timestamps; None: before the recording)
    served = {
        (0.15, "000103"): "000011",
        (0.15, "000101"): None,  # 0.1 − 0.15 s: before 000010 (−0.02 s)
        (0.15, "000102"): "000010",
        (0.25, "000103"): "000010",
        (0.25, "000101"): None,
        (0.25, "000102"): None,
    }
    seen = 0
    for row in read_results([path], ledger=True).to_pylist():
        delay = cells[row["cell_id"]]["added_delay_s"]
        veh = row["frame_id"].split("/")[1]
        if delay == 0.0:
            continue
        seen += 1
        assert row["sent"] and row["latency_s"] == pytest.approx(delay, abs=1e-6)
        inf = served[(delay, veh)]
        if inf is None:  # dropped: on time, nothing lost on air, not fused, no age
            assert not row["delivered"] and math.isnan(row["aoi_s"])
            assert row["packets_lost"] == 0.0
        else:
            assert row["delivered"]
            assert row["aoi_s"] == pytest.approx(_veh_t(veh) - _inf_t(inf), abs=1e-6)
    assert seen == 2 * 2 * 3  # two fusions x two delays x three pairs
    for r in cells.values():
        if r["added_delay_s"] == 0.15:  # (0.22 + 0.22) / 2: the mean age of what was fused
            assert r["mean_aoi_s"] == pytest.approx(0.22, abs=1e-6)


def test_v2xsim_sweep_runs_with_asynchrony(tmp_path, v2xsim_root):
    from v2x.results import read_results
    from v2x.sweep import run_sweep

    path = run_sweep(
        _sweep_config(
            tmp_path,
            v2xsim_root,
            output_dir=str(tmp_path / "out"),
            data={"source": "v2xsim", "num_frames": 4},
            batch_size=4,
            asynchrony={"enabled": True, "no_earlier_frame": "drop"},
            grid={"added_delay_s": [0.3], "late_policy": ["stale"], "fusions": ["max"]},
        )
    )
    ledger = read_results([path], ledger=True).to_pylist()
    # at 1.0, 1.2 s nothing was recorded 0.3 s earlier; at 1.4 s the 1.0 s scans (RSU 0.97 s)
    # are served, at 1.6 s the 1.2 s ones (RSU 1.17 s)
    expected = {
        ("scene_3/0002", "rsu_0"): 0.43,
        ("scene_3/0002", "veh_2"): 0.4,
        ("scene_3/0003", "rsu_0"): 0.43,
        ("scene_3/0003", "veh_2"): 0.4,
    }
    assert len(ledger) == 8
    for row in ledger:
        age = expected.get((row["frame_id"], row["tx_agent"]))
        if age is None:
            assert not row["delivered"] and math.isnan(row["aoi_s"])
        else:
            assert row["delivered"] and row["aoi_s"] == pytest.approx(age, abs=1e-6)


def test_no_earlier_frame_error_stops_the_sweep(tmp_path, dair_root):
    from v2x.sweep import run_sweep

    cfg = _sweep_config(
        tmp_path,
        dair_root,
        output_dir=str(tmp_path / "out"),
        asynchrony={"enabled": True, "no_earlier_frame": "error"},
        grid={"added_delay_s": [0.25], "late_policy": ["stale"], "fusions": ["max"]},
    )
    with pytest.raises(ValueError, match="dair/000101.*infrastructure.*no scan sensed"):
        run_sweep(cfg)
