"""Store format, atomic writes, resumable generation, the evaluation-split cache and the app."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from v2x.datasets.build import cached_split, generate_dataset
from v2x.datasets.frame import AgentObservation, CoopFrame
from v2x.datasets.store import (
    MANIFEST,
    load_split,
    read_frame,
    read_manifest,
    sha256_file,
    write_frame,
)

TINY = {
    "vehicle_lidar": {"preset": "vlp16", "columns": 128},
    "rsu_lidar": {"preset": "vlp16", "columns": 128},
    "uav_lidar": {"preset": "uav_down", "beams": 8, "columns": 128},
}


def _frame() -> CoopFrame:
    rng = np.random.default_rng(0)
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]
    agents = [
        AgentObservation("veh_0", "vehicle", pose, rng.normal(size=(5, 4)), 0.1),
        AgentObservation("uav_0", "uav", np.eye(4), np.zeros((0, 4)), 0.1),
    ]
    return CoopFrame(
        frame_id="t/0",
        agents=agents,
        boxes=[[1, 2, 0.8, 4, 2, 1.6, 0.3], [5, 5, 1, 1, 1, 2, -1.0]],
        classes=[0, 2],
        track_ids=[7, 9],
        visibility=[[3, 0], [0, 0]],
        meta={"seed": 3, "buildings": np.ones((2, 7))},
    )


def _assert_same(a: CoopFrame, b: CoopFrame) -> None:
    assert a.frame_id == b.frame_id and a.ego_index == b.ego_index
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_array_equal(a.track_ids, b.track_ids)
    np.testing.assert_array_equal(a.visibility, b.visibility)
    for x, y in zip(a.agents, b.agents, strict=True):
        assert (x.agent_id, x.kind, x.timestamp) == (y.agent_id, y.kind, y.timestamp)
        np.testing.assert_array_equal(x.pose, y.pose)
        np.testing.assert_array_equal(x.points, y.points)


def test_round_trip_and_checksum(tmp_path):
    frame = _frame()
    path = tmp_path / "f.npz"
    sha = write_frame(path, frame)
    assert sha == sha256_file(path)
    back = read_frame(path, expected_sha256=sha)
    _assert_same(frame, back)
    assert back.meta["seed"] == 3
    np.testing.assert_array_equal(back.meta["buildings"], np.ones((2, 7)))
    # The file is a plain npz any numpy can read (no pickles).
    with np.load(path, allow_pickle=False) as data:
        assert data["points"].shape == (5, 4) and str(data["frame_id"]) == "t/0"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # stored, not deflated (point clouds barely deflate; inflating was most of a read) ...
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    # ... and a deflated frame, as stores written before hold, reads the same
    from v2x.datasets.store import frame_to_arrays

    old = tmp_path / "deflated.npz"
    np.savez_compressed(old, **frame_to_arrays(frame))
    with zipfile.ZipFile(old) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    _assert_same(read_frame(old, expected_sha256=sha256_file(old)), back)


def test_reader_names_file_and_field(tmp_path):
    path = tmp_path / "f.npz"
    sha = write_frame(path, _frame())
    with pytest.raises(ValueError, match="sha256"):
        read_frame(path, expected_sha256="0" * 64)
    # Drop a field.
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "boxes"}
    np.savez_compressed(tmp_path / "g.npz", **arrays)
    with pytest.raises(ValueError, match=r"g\.npz: field 'boxes' is missing"):
        read_frame(tmp_path / "g.npz")
    # Inconsistent point counts.
    arrays = {**arrays, "boxes": np.zeros((2, 7)) + 1, "point_counts": np.array([4, 0])}
    np.savez_compressed(tmp_path / "h.npz", **arrays)
    with pytest.raises(ValueError, match=r"h\.npz: field 'point_counts'"):
        read_frame(tmp_path / "h.npz")
    # A pose that is not rigid.
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["poses"] = arrays["poses"].copy()
    arrays["poses"][0, 0, 0] = 2.0
    np.savez_compressed(tmp_path / "p.npz", **arrays)
    with pytest.raises(ValueError, match=r"p\.npz: .*field 'pose'"):
        read_frame(tmp_path / "p.npz")
    # Truncated file.
    data = path.read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"t\.npz: cannot read"):
        read_frame(tmp_path / "t.npz")
    with pytest.raises(ValueError, match="does not exist"):
        read_frame(tmp_path / "missing.npz")
    assert sha


def _gen_cfg(tmp_path, **kw):
    cfg = {
        "out_dir": str(tmp_path / "ds"),
        "seed": 1,
        "frames_per_sequence": 2,
        "splits": {"train": 3, "val": 1, "test": 1},
        "quiet": True,
        "png": True,
        "dataset": TINY,
    }
    cfg.update(kw)
    return cfg


def test_generate_is_resumable_and_verified(tmp_path):
    cfg = _gen_cfg(tmp_path)
    summary = generate_dataset(cfg)
    assert summary["counts"] == {"train": 3, "val": 1, "test": 1}
    assert summary["generated"] == 5
    root = tmp_path / "ds"
    manifest = read_manifest(root)
    assert manifest["seed"] == 1 and manifest["dataset"]["vehicle_lidar"]["preset"] == "vlp16"
    for entries in manifest["splits"].values():
        for e in entries:
            assert sha256_file(root / e["file"]) == e["sha256"]
    train = load_split(root, "train")
    frames = list(train)
    assert len(frames) == 3 and len({f.frame_id for f in frames}) == 3
    assert (
        [f.frame_id for f in train[1:]] == train.frame_ids[1:] == [f.frame_id for f in frames[1:]]
    )
    assert train[-1].frame_id == frames[-1].frame_id and "frames=3" in repr(train)
    with pytest.raises(IndexError):
        train[3]
    # Frames 0 and 1 form one 10 Hz sequence with stable track ids.
    np.testing.assert_array_equal(frames[0].track_ids, frames[1].track_ids)
    assert frames[1].ego.timestamp == pytest.approx(0.1)
    # Splits use different towns.
    assert load_split(root, "val")[0].frame_id != frames[0].frame_id
    assert (root / "train" / "preview" / "00000.png").stat().st_size > 1000
    # Resume: nothing to do; then corrupt one frame and delete another.
    assert generate_dataset(cfg)["generated"] == 0
    first = root / manifest["splits"]["train"][0]["file"]
    original = first.read_bytes()
    first.write_bytes(b"garbage")
    os.unlink(root / manifest["splits"]["train"][2]["file"])
    with pytest.raises(ValueError, match="sha256"):
        load_split(root, "train")[0]
    again = generate_dataset(cfg)
    assert again["generated"] == 2 and again["reused"] == 3
    assert first.read_bytes() == original  # deterministic regeneration
    # A different config in the same folder is refused unless overwrite.
    with pytest.raises(ValueError, match="overwrite"):
        generate_dataset(_gen_cfg(tmp_path, seed=2))


def test_unlisted_frames_from_a_crash_are_reused(tmp_path):
    cfg = _gen_cfg(tmp_path, splits={"train": 2}, png=False)
    generate_dataset(cfg)
    root = tmp_path / "ds"
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["splits"]["train"] = []  # as if the process died before the manifest update
    (root / MANIFEST).write_text(json.dumps(manifest))
    assert generate_dataset(cfg)["reused"] == 2
    assert zipfile.is_zipfile(root / "train" / "00000_0000.npz")


def test_a_folder_written_with_other_settings_is_refused_naming_only_what_changed(tmp_path):
    """The refusal named all four identity fields whatever changed; it names the leaves that
    differ (nested dataset fields dotted) with both values, and nothing that did not change."""
    generate_dataset(_gen_cfg(tmp_path, splits={"train": 1}, png=False))
    manifest_before = (tmp_path / "ds" / MANIFEST).read_bytes()
    other = {**TINY, "rsu_lidar": {"preset": "vlp16", "columns": 64}}
    with pytest.raises(ValueError) as caught:
        generate_dataset(
            _gen_cfg(tmp_path, splits={"train": 1}, png=False, frames_per_sequence=3, dataset=other)
        )
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'ds' / MANIFEST}: written with other settings (")
    assert "frames_per_sequence: 2 there, 3 here" in message
    assert "dataset.rsu_lidar.columns: 128 there, 64 here" in message
    assert "seed" not in message and "generator_version" not in message
    assert "vehicle_lidar" not in message and "overwrite=true" in message
    assert (tmp_path / "ds" / MANIFEST).read_bytes() == manifest_before  # nothing touched


def test_cached_split_generates_once(tmp_path, monkeypatch, caplog):
    import logging

    monkeypatch.setenv("V2X_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="v2x.datasets.build"):
        a = cached_split(TINY, "test", num_frames=2, frames_per_sequence=2)
    files = sorted((tmp_path / "cache").rglob("*.npz"))
    assert len(a) == 2 and len(files) == 2
    # generating is said (a large split took minutes without a word), reusing is not
    # (its own logger's records: an earlier test may leave other `v2x` loggers at INFO)
    (said,) = [r.getMessage() for r in caplog.records if r.name == "v2x.datasets.build"]
    assert said.startswith("frames: generating 2 synthetic test frames into ")
    caplog.clear()
    stamps = [f.stat().st_mtime_ns for f in files]
    with caplog.at_level(logging.INFO, logger="v2x.datasets.build"):
        b = cached_split(TINY, "test", num_frames=2, frames_per_sequence=2)
    assert not [r for r in caplog.records if r.name == "v2x.datasets.build"]
    assert [f.stat().st_mtime_ns for f in files] == stamps
    _assert_same(a[1], b[1])
    c = cached_split({**TINY, "num_uavs": 0}, "test", num_frames=2, frames_per_sequence=2)
    assert c[0].num_agents == a[0].num_agents - 1
    with pytest.raises(ValueError, match="split"):
        cached_split(TINY, "dev")


def test_hydra_app_composes_and_runs(tmp_path):
    from hydra import compose, initialize_config_module

    from v2x.apps.generate import generate_dataset as app_generate

    with initialize_config_module(config_module="v2x.conf", version_base=None):
        cfg = compose(
            config_name="generate",
            overrides=[
                f"out_dir={tmp_path / 'app'}",
                "splits.train=1",
                "splits.val=0",
                "splits.test=0",
                "quiet=true",
                "png=false",
                "dataset.vehicle_lidar.columns=64",
                "dataset.rsu_lidar.columns=64",
                "dataset.uav_lidar.columns=64",
            ],
        )
    assert cfg.dataset.name == "synthetic" and cfg.dataset.num_vehicle_agents >= 3
    summary = app_generate(cfg)
    assert summary["counts"] == {"train": 1, "val": 0, "test": 0}
    frame = load_split(tmp_path / "app", "train")[0]
    assert [a.kind for a in frame.agents] == ["vehicle"] * 3 + ["rsu", "uav"]


def test_frame_sequence_from_meta_or_id_survives_the_store_and_reaches_the_batch(tmp_path):
    """The bootstrap unit of a frame: the reader's meta["sequence"], else the id's prefix."""
    import dataclasses

    from v2x.datasets.frame import collate_frames

    town = _frame()  # "t/0"
    alone = dataclasses.replace(town, frame_id="solo")
    drive = dataclasses.replace(town, frame_id="dair/015344", meta={"sequence": "dair/42"})
    assert (town.sequence, alone.sequence, drive.sequence) == ("t", "solo", "dair/42")
    write_frame(tmp_path / "f.npz", drive)
    back = read_frame(tmp_path / "f.npz")
    assert back.sequence == "dair/42"
    assert collate_frames([town, alone, back]).sequences == ["t", "solo", "dair/42"]


def test_read_frames_on_threads_equals_the_loop_and_names_the_first_bad_file(tmp_path):
    generate_dataset(_gen_cfg(tmp_path, png=False))
    split = load_split(tmp_path / "ds", "train")
    order = [2, 0, 1, 2]
    threaded = split.read_frames(order, threads=3)
    assert [f.frame_id for f in threaded] == [split[i].frame_id for i in order]
    for got, i in zip(threaded, order, strict=True):
        _assert_same(got, split[i])
    assert split.read_frames([], threads=3) == []
    # corrupt two frames: the error is the loop's, for the first bad one in the given order
    for i in (0, 2):
        path = tmp_path / "ds" / split.entries[i]["file"]
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError) as looped:
        [split[i] for i in (1, 2, 0)]
    with pytest.raises(ValueError) as threaded_err:
        split.read_frames([1, 2, 0], threads=3)
    assert str(threaded_err.value) == str(looped.value)
    assert split.entries[2]["file"].split("/")[-1] in str(threaded_err.value)


def test_rigid_pose_check_decides_as_numpys_allclose():
    """The oracle: ``np.allclose`` / ``np.isclose`` with the same tolerance, on rotations
    perturbed from far inside to far outside it."""
    from v2x.datasets.frame import _RIGID_TOL, check_rigid_pose

    rng = np.random.default_rng(0)
    decided = {True: 0, False: 0}
    for _ in range(3000):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q[:, 0] *= np.sign(np.linalg.det(q))
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = q, rng.normal(size=3) * 50
        pose += rng.normal(size=(4, 4)) * 10 ** rng.uniform(-8, -3)
        rot = pose[:3, :3]
        want = (
            np.allclose(rot @ rot.T, np.eye(3), atol=_RIGID_TOL)
            and np.isclose(np.linalg.det(rot), 1.0, atol=_RIGID_TOL)
            and np.allclose(pose[3], [0.0, 0.0, 0.0, 1.0], atol=_RIGID_TOL)
        )
        try:
            check_rigid_pose(pose, "frame 'x'")
            got = True
        except ValueError as err:
            assert "field 'pose'" in str(err)
            got = False
        assert got == want
        decided[got] += 1
    assert min(decided.values()) > 300  # both outcomes exercised


def test_collated_points_are_each_agents_points_then_zeros(unwritten_memory_is_nan):
    """``collate_frames`` writes every element of the padded points once: each agent's points,
    zeros after them and in the slots of a frame with fewer agents. Checked with new tensors
    filled with NaN, as unwritten memory would be."""
    import dataclasses

    import torch

    from v2x.datasets.frame import collate_frames

    two = _frame()  # 5 points and an empty UAV
    one = dataclasses.replace(two, agents=two.agents[:1], frame_id="t/1", visibility=[[3, 0]])
    batch = collate_frames([one, two])
    assert batch.points.shape == (2, 2, 5, 4)
    expected = torch.zeros(2, 2, 5, 4)
    expected[0, 0] = expected[1, 0] = torch.from_numpy(two.agents[0].points).float()
    assert torch.equal(batch.points, expected)
    assert batch.point_mask.sum().item() == 10 and not batch.point_mask[:, 1].any()


@pytest.mark.gpu
def test_a_batch_collated_into_page_locked_memory_arrives_on_cuda_with_the_same_values():
    """``collate_frames(pin_memory=True)`` (the sweep's batches on CUDA) writes the points and
    their mask into page-locked memory, and the batch, pinned whole, reaches the device by
    non-blocking copies with exactly the values of an ordinary collation."""
    import dataclasses

    import torch

    from v2x.datasets.frame import collate_frames

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    two = _frame()
    one = dataclasses.replace(two, agents=two.agents[:1], frame_id="t/1", visibility=[[3, 0]])
    plain = collate_frames([one, two])
    pinned = collate_frames([one, two], pin_memory=True)
    assert pinned.points.is_pinned() and pinned.point_mask.is_pinned()
    whole = pinned.pin_memory()
    assert whole.points.data_ptr() == pinned.points.data_ptr()  # already pinned: not copied
    moved = whole.to("cuda")
    torch.cuda.synchronize()
    for name, value in vars(plain).items():
        if isinstance(value, torch.Tensor):
            assert getattr(moved, name).is_cuda, name
            assert torch.equal(getattr(moved, name).cpu(), value), name


@pytest.mark.parametrize(
    ("override", "message"),
    [({"seed": "abc"}, r"'seed' must be a whole number >= 0, got 'abc'"),
     ({"seed": -1}, r"'seed' must be a whole number >= 0, got -1"),
     ({"frames_per_sequence": 0}, r"'frames_per_sequence' must be a whole number >= 1, got 0"),
     ({"splits": {"train": "abc"}}, r"'splits.train' must be a whole number >= 0, got 'abc'"),
     ({"splits": {"train": 2.5}}, r"'splits.train' must be a whole number >= 0, got 2.5"),
     ({"splits": {"dev": 1}}, r"'splits' must map names in"),
     ({"out_dir": ""}, r"'out_dir' must name a folder, got ''"),
     ({"out_dir": None}, r"'out_dir' must name a folder, got None"),
     ({"overwrite": "maybe"}, r"'overwrite' must be true or false, got 'maybe'")],
)  # fmt: skip
def test_a_bad_generate_setting_is_refused_naming_the_field(tmp_path, override, message):
    """An empty ``out_dir`` used to write the dataset into the working folder, and a text count
    to fail in ``int()`` without naming its field: now each is refused before anything is written."""
    with pytest.raises(ValueError, match=rf"^generate: field {message}"):
        generate_dataset(_gen_cfg(tmp_path, **override))
    assert not any(tmp_path.iterdir())


def test_a_manifest_entry_whose_file_holds_another_frame_is_refused(tmp_path):
    """The manifest's frame ids were never compared with the files': two entries whose files
    (and checksums) were swapped, e.g. by a hand-merged manifest, read each other's frames
    under the listed ids, in the loop, on threads and in worker processes alike."""
    from concurrent.futures import ProcessPoolExecutor

    generate_dataset(_gen_cfg(tmp_path, png=False))
    root = tmp_path / "ds"
    manifest = json.loads((root / MANIFEST).read_text())
    entries = manifest["splits"]["train"]
    first, second = entries[0], entries[1]
    for key in ("file", "sha256"):
        first[key], second[key] = second[key], first[key]
    (root / MANIFEST).write_text(json.dumps(manifest))
    split = load_split(root, "train")
    expected = rf"{first['file']}: field 'frame_id' is .*manifest lists this file as frame"
    with pytest.raises(ValueError, match=expected):
        split[0]
    with pytest.raises(ValueError, match=expected):
        split.read_frames([0, 1], threads=2)
    with ProcessPoolExecutor(1) as pool, pytest.raises(ValueError, match=expected):
        list(split.iter_frames([0, 1], processes=pool))
    assert split[2].frame_id == split.frame_ids[2]  # the others read as before


@pytest.mark.parametrize("below", ["", "sub"])
def test_generate_into_a_file_names_the_field_and_the_file(tmp_path, below):
    """``out_dir`` naming a file, or a folder under one, was the OS error alone ("File exists",
    "Not a directory")."""
    blocker = tmp_path / "afile"
    blocker.write_text("")
    out = blocker / below if below else blocker
    with pytest.raises(ValueError, match=rf"^generate: field 'out_dir' is '{out}', but "
                                         rf"'{blocker}' is a file; expected a folder"):
        generate_dataset(_gen_cfg(tmp_path, out_dir=str(out)))


def test_generation_stops_after_one_frame_when_the_rest_would_not_fit(tmp_path, monkeypatch):
    """A frame count the disk cannot hold (``data.num_frames=100000`` wrote 4.7 GB in 30 s
    before it was stopped) is refused once the first frame's size is known: one message with
    the count, the room needed and the room free; that frame stays on disk. With room, the
    same call writes every frame."""
    import shutil

    real = shutil.disk_usage
    usage = real(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(ValueError) as full:
        generate_dataset(_gen_cfg(tmp_path))
    message = str(full.value)
    assert message.startswith("generate: 5 frames of about ") and "MB each need" in message
    assert "whose disk has 0.0 GB free; expected fewer frames" in message
    assert len(list((tmp_path / "ds").rglob("*.npz"))) == 1
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert generate_dataset(_gen_cfg(tmp_path))["counts"] == {"train": 3, "val": 1, "test": 1}
