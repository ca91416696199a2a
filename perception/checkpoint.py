"""Detector checkpoints: atomic writes with config and git revision; loading the shipped detector.

Lives in ``perception`` (it needs only the detector)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from v2x.common import atomic_torch_save, check_fields, code_hash, takes_tensors
from v2x.perception.bev import BEVGrid
from v2x.perception.detector import CoopDetector, DetectorConfig, load_detector_weights

SHIPPED_DETECTOR = "detector_synthetic.pt"
# The detector shipped for each backbone (``DetectorConfig.backbone``): ``checkpoint=shipped``
# with ``model=pointpillars`` loads the standard-scale detector, with the default model the
# small one. Training runs and figures: docs/results/ (README "Detector").
SHIPPED_DETECTORS = {"small": SHIPPED_DETECTOR, "pointpillars": "detector_pointpillars.pt"}


def _git(args: list[str], cwd: str | os.PathLike | None) -> str | None:
    """``git <args>``'s standard output in ``cwd`` (default: this source tree), or ``None``."""
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=5,
            cwd=Path(cwd) if cwd is not None else Path(__file__).resolve().parent,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_revision(cwd: str | os.PathLike | None = None) -> str:
    """The current git commit of the source tree, or ``"unknown"`` outside a checkout."""
    return (_git(["rev-parse", "HEAD"], cwd) or "").strip() or "unknown"


def git_dirty(cwd: str | os.PathLike | None = None) -> bool | None:
    """Whether tracked files of the source tree differ from ``git_revision`` (``None`` outside a
    checkout). A copy of a working tree whose ``.git`` lags behind its files (a machine that
    receives the tree, not the history) shows up as dirty, so ``git_revision`` alone would name
    the wrong code; ``code_hash`` in the checkpoint names the right one either way."""
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return None if status is None else bool(status.strip())


def detector_config_to_dict(config: DetectorConfig) -> dict:
    return dataclasses.asdict(config)


def detector_config_from_dict(data: dict) -> DetectorConfig:
    """A ``DetectorConfig`` from the ``model`` section; a key that is not a field (e.g.
    OpenCOOD's ``max_points_per_voxel``, which dynamic pillars have no use for) is refused
    naming it and the valid ones (it was a ``TypeError`` traceback)."""
    data = dict(data)
    grid = data.pop("grid", {})
    check_fields(DetectorConfig, data, "model")
    check_fields(BEVGrid, grid, "model: field 'grid'")
    grid = BEVGrid(**{k: tuple(v) if isinstance(v, list) else v for k, v in grid.items()})
    data["backbone_channels"] = tuple(data.get("backbone_channels", (64, 128)))
    for key in ("layer_nums", "layer_filters", "upsample_filters"):
        if key in data:
            data[key] = tuple(data[key])
    return DetectorConfig(grid=grid, **data)


def save_checkpoint(
    path: str | os.PathLike,
    model: CoopDetector,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    extra: dict | None = None,
) -> None:
    """Write model weights, detector config, optimiser state, step and the code that trained them
    (git revision, whether the tree differed from it, and ``v2x.common.code_hash``) atomically."""
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "detector_config": detector_config_to_dict(model.config),
        "step": step,
        "git_revision": git_revision(),
        "git_dirty": git_dirty(),
        "code_hash": code_hash(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "extra": extra or {},
    }
    atomic_torch_save(state, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict on the CPU; errors name the file and the missing field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the path
        raise ValueError(
            f"checkpoint {path}: cannot be read ({exc}); expected a detector checkpoint saved "
            "by torch.save (v2x-train writes them), a dict with fields 'model' and "
            "'detector_config'"
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(
            f"checkpoint {path}: expected a dict with fields 'model' and 'detector_config', "
            f"got {type(state).__name__}"
        )
    for key in ("model", "detector_config"):
        if key not in state:
            raise ValueError(f"checkpoint {path}: field '{key}' is missing")
    return state


def load_detector(
    path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    backbone: str = "small",
) -> CoopDetector:
    """Build a ``CoopDetector`` from a checkpoint, in eval mode. ``path`` ``None``/``"shipped"``:
    the detector shipped with v2x for ``backbone`` (``SHIPPED_DETECTORS``)."""
    path = shipped_detector_path(backbone) if path in (None, "", "shipped") else Path(path)
    state = read_checkpoint(path)
    try:
        config = detector_config_from_dict(state["detector_config"])
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"checkpoint {path}: field 'detector_config' is invalid ({exc})") from exc
    try:
        model = detector_holding(config, state["model"])
    except RuntimeError as exc:
        raise ValueError(
            f"checkpoint {path}: field 'model' does not match its 'detector_config' ({exc})"
        ) from exc
    return model.to(device).eval()


def detector_holding(config: DetectorConfig, weights: dict[str, torch.Tensor]) -> CoopDetector:
    """A ``CoopDetector`` of ``config`` holding ``weights`` (a state dict on the CPU).

    When ``weights`` has every entry of the model's state dict, in the model's shapes and
    dtypes, the model is built on the meta device (no initialisation) and takes the tensors of
    ``weights`` themselves (``load_state_dict(assign=True)``): no random initialisation that
    the checkpoint overwrites, no copy. Otherwise it is built and loaded as before
    (``load_detector_weights``: missing ``OPTIONAL_WEIGHTS`` keep their initial values).
    The global RNG is left as the first way leaves it: an initialisation would draw from it.
    Raises ``RuntimeError`` naming missing or unexpected keys or mismatched sizes."""
    with torch.device("meta"):
        shell = CoopDetector(config)
    if takes_tensors(shell.state_dict(), weights):
        shell.load_state_dict(weights, strict=True, assign=True)
        return shell
    with torch.random.fork_rng(devices=[]):
        model = CoopDetector(config)
    load_detector_weights(model, weights)
    return model


def shipped_detector_path(backbone: str = "small") -> Path:
    """The packaged checkpoint of the detector shipped for ``backbone`` (``SHIPPED_DETECTORS``)."""
    if backbone not in SHIPPED_DETECTORS:
        raise ValueError(
            f"model: field 'backbone' is {backbone!r}, for which no detector is shipped; "
            f"shipped: {', '.join(SHIPPED_DETECTORS)} (or give a checkpoint path)"
        )
    return Path(str(resources.files("v2x") / "assets" / SHIPPED_DETECTORS[backbone]))
