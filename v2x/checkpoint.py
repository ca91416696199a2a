"""Detector checkpoints (moved to ``v2x.perception.checkpoint``; re-exported here)."""

from v2x.common import atomic_torch_save
from v2x.perception.checkpoint import (
    SHIPPED_DETECTOR,
    SHIPPED_DETECTORS,
    detector_config_from_dict,
    detector_config_to_dict,
    git_revision,
    load_detector,
    read_checkpoint,
    save_checkpoint,
    shipped_detector_path,
)

__all__ = [
    "SHIPPED_DETECTOR",
    "SHIPPED_DETECTORS",
    "atomic_torch_save",
    "detector_config_from_dict",
    "detector_config_to_dict",
    "git_revision",
    "load_detector",
    "read_checkpoint",
    "save_checkpoint",
    "shipped_detector_path",
]
