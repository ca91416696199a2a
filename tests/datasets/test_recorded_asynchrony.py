"""Readers serve a collaborator's scan sensed at or before an instant (asynchrony on real data).

Oracles: hand-built datasets in the published formats with known sensing times
(``timed_fixtures.py``): the scan served for several delays, read off the timestamps by hand
(boundaries included); its pose, hand-computed from the ``ego_pose`` / calibration of that scan;
and for DAIR-V2X-C the official asynchronous split's rule (``VICAsyncDataset.prev_inf_frame``:
the infrastructure frame ``k`` ids before the paired one, within the sequence) on a 10 Hz
sequence.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from v2x.datasets.dair_reader import DAIRV2XCDataset
from v2x.datasets.v2xsim_reader import V2XSimDataset

_spec = importlib.util.spec_from_file_location(
    "timed_fixtures", Path(__file__).with_name("timed_fixtures.py")
)
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)


@pytest.fixture(scope="module")
def v2xsim(tmp_path_factory) -> V2XSimDataset:
    root = tmp_path_factory.mktemp("v2xsim")
    fx.build_v2xsim(root)
    return V2XSimDataset(root)


@pytest.fixture(scope="module")
def dair(tmp_path_factory) -> DAIRV2XCDataset:
    root = tmp_path_factory.mktemp("dair")
    fx.build_dair(root)
    return DAIRV2XCDataset(root)


# ------------------------------------------------------------------------------ V2X-Sim 2.0

# (delay s, sample served) for LIDAR_TOP_id_2 at the ego's instant 1.6 s; samples at 1.0, 1.2,
# 1.4, 1.6 s; the non-key sweep at 1.5 s is never served.
V2XSIM_CASES = [
    (0.0, 3),
    (0.1, 2),  # 1.5 s: the sweep is there, the key frame before it is served
    (0.2, 2),  # exactly one period: 1.4 s (1.6 - 0.2 = 1.3999999999999999 in float64)
    (0.200002, 1),
    (0.45, 0),
    (0.6, 0),  # exactly the first scan
    (0.600002, None),  # before the recording
]
# World position of the point (1, 0, 0) of id_2's scan at each sample: its ego_pose at that
# sample ∘ mount (1, 0, 1.8); at sample 1 the vehicle is turned +90° about z.
V2XSIM_POINT_WORLD = {
    0: [32.0, 5.0, 1.8],
    1: [33.0, 7.0, 1.8],
    2: [38.0, 5.0, 1.8],
    3: [41.0, 5.0, 1.8],
}


def test_v2xsim_sensing_times_are_the_key_frames_of_the_channel_in_the_scene(v2xsim):
    frame = v2xsim[3]
    assert [a.agent_id for a in frame.agents] == ["rsu_0", "veh_1", "veh_2"]
    assert frame.ego.agent_id == "veh_1" and frame.ego.timestamp == pytest.approx(1.6)
    np.testing.assert_allclose(v2xsim.sensing_times(3, 2), [1.0, 1.2, 1.4, 1.6], atol=1e-12)
    np.testing.assert_allclose(v2xsim.sensing_times(3, 0), [0.97, 1.17, 1.37, 1.57], atol=1e-12)
    assert v2xsim.index_of(frame) == 3


@pytest.mark.parametrize(("delay", "sample"), V2XSIM_CASES)
def test_v2xsim_serves_the_latest_scan_at_or_before_the_instant_minus_the_delay(
    v2xsim, delay, sample
):
    seen = v2xsim.observation_before(3, 2, 1.6 - delay)
    if sample is None:
        assert seen is None
        return
    assert seen.agent_id == "veh_2" and seen.kind == "vehicle"
    assert seen.timestamp == pytest.approx(fx.V2XSIM_SAMPLE_US[sample] * 1e-6, abs=1e-12)
    assert seen.points[0, 3] == pytest.approx(fx.v2xsim_intensity(2, sample))
    # the pose of its own sensing time
    world = seen.pose @ np.r_[seen.points[0, :3], 1.0]
    np.testing.assert_allclose(world[:3], V2XSIM_POINT_WORLD[sample], atol=1e-9)


def test_v2xsim_rsu_scans_on_its_own_times(v2xsim):
    # RSU scans 30 ms before each sample: at 1.6 s a 10 ms delay still gets its own (1.57 s)
    # scan, a 40 ms delay the one before (1.37 s).
    assert v2xsim.observation_before(3, 0, 1.6 - 0.01).timestamp == pytest.approx(1.57)
    seen = v2xsim.observation_before(3, 0, 1.6 - 0.04)
    assert seen.timestamp == pytest.approx(1.37)
    assert seen.points[0, 3] == pytest.approx(fx.v2xsim_intensity(0, 2))


def test_v2xsim_reading_a_frame_is_unchanged(v2xsim):
    """The refactored ``__getitem__`` reads the frame's own scans as before."""
    frame = v2xsim[1]
    for a, k in enumerate((0, 1, 2)):
        assert frame.agents[a].points[0, 3] == pytest.approx(fx.v2xsim_intensity(k, 1))
    np.testing.assert_allclose(frame.boxes[0, :3], fx.v2xsim_car_centre(1))


def test_v2xsim_bad_agent_or_foreign_frame_name_the_field(v2xsim, tmp_path):
    with pytest.raises(ValueError, match="field 'agent'"):
        v2xsim.sensing_times(0, 3)
    frame = v2xsim[0]
    frame.meta["sample_token"] = "f" * 32
    with pytest.raises(ValueError, match="sample_token"):
        v2xsim.index_of(frame)


# ------------------------------------------------------------------------------ DAIR-V2X-C


def official_async_k(info_by_id: dict[str, dict], inf_id: str, k: int) -> str | None:
    """The published rule of DAIR-V2X's ``VICAsyncDataset.prev_inf_frame`` (lidar): the
    infrastructure frame ``k`` ids before the paired one, if it is not before the sequence's
    ``batch_start_id`` and is listed in the side's data_info; else none (pair left out)."""
    prev = int(inf_id) - k
    if prev < int(info_by_id[inf_id]["batch_start_id"]) or f"{prev:06d}" not in info_by_id:
        return None
    return f"{prev:06d}"


# (delay s, infrastructure frame served) for pair 0: vehicle 000103 at T0 + 300 ms, paired
# with 000013 at T0 + 280 ms; batch 7 has 000010..000014 at T0 − 20, 80, 180, 280, 380 ms; the
# other sequence's 000099 at T0 + 250 ms is never served.
DAIR_CASES = [
    (0.0, "000013"),
    (0.02, "000013"),  # exactly its own scan
    (0.05, "000012"),  # not 000099 (T0 + 250 ms, batch 8)
    (0.12, "000012"),
    (0.120002, "000011"),
    (0.32, "000010"),
    (0.320002, None),
]


def _t(us: int) -> float:
    return us * 1e-6


@pytest.mark.parametrize(("delay", "inf"), DAIR_CASES)
def test_dair_serves_the_latest_infrastructure_scan_of_the_sequence(dair, delay, inf):
    frame = dair[0]
    t_ego = frame.ego.timestamp
    assert t_ego == _t(fx.DAIR_VEH_US["000103"])
    seen = dair.observation_before(0, 1, t_ego - delay)
    if inf is None:
        assert seen is None
        return
    assert seen.agent_id == "infrastructure" and seen.kind == "rsu"
    assert seen.timestamp == _t(fx.DAIR_INF_US[inf])
    assert seen.points[0, 3] == pytest.approx(fx.dair_intensity(inf) / 255.0)
    # that frame's virtuallidar_to_world, with the pair's system_error_offset (0.5, not 9)
    expected = np.array(fx.dair_inf_translation(inf)) + [fx.DAIR_OFFSET_X, 0.0, 0.0]
    np.testing.assert_allclose(seen.pose[:3, 3], expected, atol=1e-12)
    np.testing.assert_allclose(seen.pose[:3, :3], np.eye(3), atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_dair_a_delay_of_k_periods_serves_the_official_async_k_frame(dair, k):
    info = {
        Path(r["pointcloud_path"]).stem: r
        for r in json.loads((dair.root / "infrastructure-side/data_info.json").read_text())
    }
    official = official_async_k(info, "000013", k)
    seen = dair.observation_before(0, 1, dair[0].ego.timestamp - 0.1 * k)
    ours = None if seen is None else f"{round(float(seen.points[0, 3]) * 255):06d}"
    assert ours == official
    assert official == (None if k == 4 else f"{13 - k:06d}")


def test_dair_sensing_times_stay_in_the_sequence(dair):
    np.testing.assert_array_equal(
        dair.sensing_times(0, 1), [_t(fx.DAIR_INF_US[f]) for f in sorted(fx.DAIR_INF_US)]
    )
    np.testing.assert_array_equal(
        dair.sensing_times(0, 0), [_t(fx.DAIR_VEH_US[f]) for f in sorted(fx.DAIR_VEH_US)]
    )
    assert [dair.index_of(dair[i]) for i in range(len(dair))] == [0, 1, 2]


def test_dair_vehicle_side_is_served_by_its_own_calibration(dair):
    seen = dair.observation_before(0, 0, _t(fx.DAIR_VEH_US["000101"]))
    assert seen.agent_id == "vehicle" and seen.timestamp == _t(fx.DAIR_VEH_US["000101"])
    np.testing.assert_allclose(seen.pose[:3, 3], fx.dair_veh_translation("000101"), atol=1e-12)



@pytest.mark.parametrize("batch_id", [None, "", "  "])
def test_dair_a_frame_without_its_sequence_is_refused(tmp_path, batch_id):
    """Without a ``batch_id`` a frame's earlier scans cannot be told from other recordings'
    (every such frame would be one sequence): refused, naming the file, frame and field."""
    fx.build_dair(tmp_path)
    path = tmp_path / "infrastructure-side/data_info.json"
    rows = json.loads(path.read_text())
    for row in rows:
        if batch_id is None:
            row.pop("batch_id", None)
        else:
            row["batch_id"] = batch_id
    path.write_text(json.dumps(rows))
    ds = DAIRV2XCDataset(tmp_path)
    with pytest.raises(ValueError, match=r"data_info.json \[\d+\]: field 'batch_id'"):
        ds.sensing_times(0, 1)
    assert len(ds.sensing_times(0, 0)) > 1  # the vehicle side keeps its sequences

def test_dair_missing_timestamps_or_agents_name_the_field(tmp_path):
    fx.build_dair(tmp_path)
    path = tmp_path / "infrastructure-side/data_info.json"
    rows = json.loads(path.read_text())
    rows[0]["pointcloud_timestamp"] = ""
    path.write_text(json.dumps(rows))
    ds = DAIRV2XCDataset(tmp_path)
    with pytest.raises(ValueError, match="pointcloud_timestamp"):
        ds.sensing_times(0, 1)
    with pytest.raises(ValueError, match="field 'agent'"):
        ds.observation_before(0, 2, 0.0)
    frame = ds[0]
    frame.meta["vehicle_frame"] = "123456"
    with pytest.raises(ValueError, match="vehicle_frame"):
        ds.index_of(frame)
    (tmp_path / "infrastructure-side/data_info.json").unlink()
    with pytest.raises(ValueError, match="data_info.json"):
        DAIRV2XCDataset(tmp_path).sensing_times(0, 1)
