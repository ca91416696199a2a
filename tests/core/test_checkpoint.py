"""Checkpoints: atomic writes, errors that name the file and field, the shipped detector."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch

import v2x.perception.checkpoint as ckpt
from v2x.common import atomic_torch_save
from v2x.perception.bev import BEVGrid
from v2x.perception.checkpoint import (
    detector_config_from_dict,
    detector_config_to_dict,
    git_revision,
    load_detector,
    read_checkpoint,
    save_checkpoint,
    shipped_detector_path,
)
from v2x.perception.detector import (
    OPTIONAL_WEIGHTS,
    CoopDetector,
    DetectorConfig,
    load_detector_weights,
)

TINY = DetectorConfig(
    grid=BEVGrid(x_range_m=(-6.4, 6.4), y_range_m=(-3.2, 3.2), resolution_m=0.4),
    pillar_channels=4,
    backbone_channels=(4, 8),
    backbone_layers=1,
    feature_channels=4,
    num_classes=2,
)


def test_atomic_save_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "last.pt"
    atomic_torch_save({"a": 1}, target)
    before = target.read_bytes()

    def broken_save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")  # a half-written file, then the failure
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)  # what atomic_torch_save calls
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"a": 2}, target)
    assert target.read_bytes() == before  # the previous checkpoint is intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.pt"]  # no temp left
    with pytest.raises(OSError):
        atomic_torch_save({"a": 2}, tmp_path / "new.pt")
    assert not (tmp_path / "new.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = CoopDetector(TINY)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    path = tmp_path / "c.pt"
    save_checkpoint(path, model, step=7, optimizer=opt, extra={"train": {"steps": 9}})
    state = read_checkpoint(path)
    assert state["step"] == 7 and state["extra"] == {"train": {"steps": 9}}
    assert state["optimizer"] is not None and state["scheduler"] is None
    assert detector_config_from_dict(state["detector_config"]) == TINY
    loaded = load_detector(path)
    assert not loaded.training and loaded.config == TINY
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_git_revision_matches_git():
    rev = git_revision()
    repo = Path(ckpt.__file__).resolve().parent
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=repo)
    if out.returncode != 0:
        assert rev == "unknown"
    else:
        assert rev == out.stdout.strip() and re.fullmatch(r"[0-9a-f]{40}", rev)


def test_checkpoint_names_the_code_that_wrote_it(tmp_path):
    """A checkpoint records the source hash (the results' ``code_hash``) and whether the tree
    differed from its git revision: a tree copied to another machine with a stale ``.git``
    must not pass for that revision."""
    from v2x.common import code_hash

    path = tmp_path / "c.pt"
    save_checkpoint(path, CoopDetector(TINY), step=1)
    state = read_checkpoint(path)
    assert state["code_hash"] == code_hash() and len(state["code_hash"]) == 64
    assert state["git_dirty"] in (True, False, None)


def test_git_dirty_sees_a_tree_that_differs_from_its_revision(tmp_path):
    from v2x.perception.checkpoint import git_dirty

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    assert git_dirty(tmp_path) is None  # not a checkout
    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    assert git_dirty(tmp_path) is False and re.fullmatch(r"[0-9a-f]{40}", git_revision(tmp_path))
    (tmp_path / "a.py").write_text("x = 2\n")  # the files moved on, the history did not
    assert git_dirty(tmp_path) is True
    (tmp_path / "b.py").write_text("")  # untracked files do not count
    (tmp_path / "a.py").write_text("x = 1\n")
    assert git_dirty(tmp_path) is False


def test_config_dict_round_trip_from_plain_lists():
    data = detector_config_to_dict(TINY)
    # As YAML/JSON would give it back: tuples become lists.
    data["grid"] = {k: list(v) if isinstance(v, tuple) else v for k, v in data["grid"].items()}
    data["backbone_channels"] = list(data["backbone_channels"])
    assert detector_config_from_dict(data) == TINY


def test_a_complete_state_is_taken_uninitialised_and_a_partial_one_loaded_as_before():
    """``detector_holding``: with every entry, the model holds the state's own tensors (built
    on the meta device, nothing initialised or copied); with an optional adapter missing, it is
    built and loaded as ``load_detector_weights`` does (the adapters at their initial values).
    Either way the global RNG is left as it was, and the weights equal the state's."""
    torch.manual_seed(3)
    state = CoopDetector(TINY).state_dict()
    partial = {k: v for k, v in state.items() if not k.startswith(OPTIONAL_WEIGHTS)}
    assert len(partial) < len(state)
    rng = torch.get_rng_state()
    taken = ckpt.detector_holding(TINY, dict(state))
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in taken.state_dict().items():
        assert value.data_ptr() == state[key].data_ptr(), key  # the state's tensor itself
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in taken.parameters())
    loaded = ckpt.detector_holding(TINY, dict(partial))
    assert torch.equal(torch.get_rng_state(), rng)
    reference = CoopDetector(TINY)
    load_detector_weights(reference, partial)
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
        if key in partial:
            assert value.data_ptr() != partial[key].data_ptr()  # copied, as before
    wrong = {**state, "head.heatmap.weight": torch.zeros(1)}
    with pytest.raises(RuntimeError, match="head.heatmap.weight"):
        ckpt.detector_holding(TINY, wrong)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        read_checkpoint(path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_detector(path)


def test_unreadable_file_names_the_path(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*cannot be read"):
        read_checkpoint(path)


def test_missing_and_invalid_fields_are_named(tmp_path):
    path = tmp_path / "partial.pt"
    torch.save({"model": {}}, path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*'detector_config'"):
        read_checkpoint(path)
    torch.save({"detector_config": {}}, path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*'model'"):
        read_checkpoint(path)
    torch.save(torch.zeros(3), path)  # not a dict at all
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_checkpoint(path)
    torch.save({"model": {}, "detector_config": {"nope": 1}}, path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*'detector_config'"):
        load_detector(path)
    torch.save(
        {"model": {"x": torch.zeros(1)}, "detector_config": detector_config_to_dict(TINY)}, path
    )
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*'model'"):
        load_detector(path)


def test_shipped_detector_loads_and_gives_finite_outputs():
    assert shipped_detector_path().is_file()
    model = load_detector()
    assert not model.training and model.config.grid.width == 256
    state = read_checkpoint(shipped_detector_path())
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", state["git_revision"])
    g = torch.Generator().manual_seed(0)
    n = 2000
    pts = torch.stack(
        [
            torch.rand(n, generator=g) * 60 - 30,
            torch.rand(n, generator=g) * 60 - 30,
            torch.rand(n, generator=g) * 2 - 1.7,
            torch.rand(n, generator=g),
        ],
        -1,
    )
    pose = torch.eye(4, dtype=torch.float64)
    pose[2, 3] = 1.8
    with torch.no_grad():
        feats = model.encode(
            pts[None, None], torch.ones(1, 1, n, dtype=torch.bool), pose[None, None]
        )
        heat, reg = model.head(feats[:, 0])
    assert feats.shape == (1, 1, 64, 128, 128)
    assert torch.isfinite(feats).all() and torch.isfinite(heat).all() and torch.isfinite(reg).all()
    det = model.postprocess(heat, reg)
    assert torch.isfinite(det.boxes[det.valid]).all()


def test_shipped_standard_detector_is_picked_by_the_model_backbone():
    """``checkpoint=shipped`` follows ``model.backbone``: the standard PointPillars detector
    (6.5-7 M parameters, the field's scale) for ``pointpillars``, the small one otherwise; an
    unknown backbone is refused with the field and the valid choices."""
    from omegaconf import OmegaConf

    from v2x.loading import load_model
    from v2x.provenance import checkpoint_digest as _checkpoint_digest
    from v2x.provenance import model_backbone

    path = shipped_detector_path("pointpillars")
    assert path.is_file() and path != shipped_detector_path()
    state = read_checkpoint(path)
    assert state["detector_config"]["backbone"] == "pointpillars"
    assert state["extra"]["data"]["train_towns"] == 600
    model_cfg = OmegaConf.load(Path(__file__).parents[2] / "conf" / "model" / "pointpillars.yaml")
    assert model_backbone(model_cfg) == "pointpillars" and model_backbone(None) == "small"
    cfg = type("Cfg", (), {"checkpoint": None, "model": model_cfg, "seed": 0})()
    model = load_model(cfg, torch.device("cpu"))
    assert model.config.backbone == "pointpillars"
    assert 6.5e6 < sum(p.numel() for p in model.parameters()) < 7.0e6
    assert _checkpoint_digest(None, "pointpillars") != _checkpoint_digest(None, "small")
    with pytest.raises(ValueError, match=r"'backbone' is 'resnet'.*small, pointpillars"):
        shipped_detector_path("resnet")


def test_a_checkpoints_detector_takes_the_model_sections_decode_fields_only(caplog):
    """A checkpoint's detector keeps its own architecture (``v2x.detector_loading.detector_from``): a
    ``model`` section that says otherwise is named in a warning, and the preset of that
    detector says nothing. The decode fields (score threshold, NMS IoU, detections kept) act
    on any trained detector, as OpenCOOD's post-processing settings do: a user's
    ``model.score_threshold=0.9`` beside the shipped detector was named in a warning and
    dropped, so a sweep of it gave the same AP at every value."""
    import logging

    from v2x.loading import detector_from
    from v2x.sweep_config import model_preset

    preset = model_preset("pillars_center")
    with caplog.at_level(logging.WARNING, logger="v2x.loading"):
        plain = detector_from(None, preset, torch.device("cpu"))
    assert not caplog.records
    decode = {"score_threshold": 0.9, "nms_iou_threshold": 0.3, "max_detections": 7}
    with caplog.at_level(logging.WARNING, logger="v2x.loading"):
        asked = detector_from("shipped", {**preset, **decode}, torch.device("cpu"))
    assert not caplog.records  # taken, so nothing to warn about
    assert (asked.config.score_threshold, asked.config.nms_iou_threshold) == (0.9, 0.3)
    assert asked.config.max_detections == 7 and plain.config.score_threshold == 0.2
    torch.manual_seed(0)
    x = torch.randn(1, plain.config.feature_channels, 16, 16)
    with torch.no_grad():  # the same weights: only decoding differs
        heat, reg = plain.head(x)
        assert torch.equal(asked.head(x)[0], heat)
        heat = 4.0 * torch.randn_like(heat)  # scores spread over (0, 1)
        few, many = asked.postprocess(heat, reg), plain.postprocess(heat, reg)
    assert 0 < int(few.valid.sum()) <= 7 < int(many.valid.sum())
    assert float(few.scores[few.valid].min()) >= 0.9
    with caplog.at_level(logging.WARNING, logger="v2x.loading"):
        other = detector_from("shipped", {**preset, "feature_channels": 32}, torch.device("cpu"))
    (record,) = caplog.records
    assert "feature_channels=32 are not used" in record.getMessage()
    assert record.getMessage().startswith("model: the shipped detector runs with its own config")
    assert other.config.feature_channels == plain.config.feature_channels != 32
    with pytest.raises(ValueError, match=r"model: field 'score_threshold' .*\[0, 1\], got 2"):
        detector_from("shipped", {**preset, "score_threshold": 2.0}, torch.device("cpu"))
