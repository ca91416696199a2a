"""The detector a config names, as every app loads it: a checkpoint, the shipped detector of
the model's backbone, or ``untrained`` weights (``detector_from``), and a sweep's detector
(``load_model``). Also reachable from ``v2x.loading``."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import torch

from v2x.sweep_plan import UNTRAINED, SweepConfig

#: the loading API's logger: a checkpoint's unused model fields are warned of under it
log = logging.getLogger("v2x.loading")


def detector_from(checkpoint: str | None, model: Mapping | None, device: torch.device):
    """The detector every app starts from: ``checkpoint`` (a path; ``None``/``"shipped"``: the
    shipped detector of ``model``'s ``backbone``), or for ``"untrained"`` a ``CoopDetector``
    of ``model``'s config with weights from torch's global RNG (the caller seeds it), in eval
    mode on ``device``. A checkpoint's detector keeps its own architecture (a ``model`` field
    that differs is named in a warning) but takes ``model``'s decode fields
    (``DECODE_FIELDS``: score threshold, NMS IoU, detections kept), as OpenCOOD's
    post-processing settings act on any trained model."""
    from v2x.perception.checkpoint import detector_config_from_dict, load_detector
    from v2x.perception.detector import DECODE_FIELDS, CoopDetector
    from v2x.provenance import model_backbone

    if checkpoint == UNTRAINED:
        return CoopDetector(detector_config_from_dict(dict(model or {}))).to(device).eval()
    detector = load_detector(checkpoint, device=device, backbone=model_backbone(model))
    decode = {k: v for k, v in dict(model or {}).items() if k in DECODE_FIELDS}
    if decode:  # (validated as any model field: 'model: field ...')
        detector.config = dataclasses.replace(detector.config, **decode)
    unused = _model_fields_unused(model, detector.config)
    if unused:  # a checkpoint's detector runs with its own architecture: say so, once per load
        shipped = checkpoint in (None, "", "shipped")
        log.warning(
            "model: %s runs with its own config; the model section's %s are not used (the "
            "results record the checkpoint, detector_sha256; checkpoint=untrained builds a "
            "detector from the model section)",
            "the shipped detector" if shipped else f"checkpoint {checkpoint}", ", ".join(unused),
        )  # fmt: skip
    return detector


def _model_fields_unused(model: Mapping | None, config: Any) -> list[str]:
    """The ``model`` section's fields (``name=value``) that the loaded detector's ``config``
    does not have (none when the section is empty or a preset of that detector)."""
    from v2x.perception.checkpoint import detector_config_from_dict

    if not model:
        return []
    try:
        asked = dataclasses.asdict(detector_config_from_dict(dict(model)))
    except (TypeError, ValueError) as exc:
        return [f"fields ({exc})"]
    have = dataclasses.asdict(config)
    return [f"{k}={asked[k]!r}" for k in asked if asked[k] != have.get(k)]


def load_model(cfg: SweepConfig, device: torch.device):
    """The sweep's detector (``detector_from``): a checkpoint, the shipped one, or
    ``untrained`` (random weights seeded by ``cfg.seed``, the global RNG left as it was)."""
    from v2x.perception.checkpoint import shipped_detector_path
    from v2x.sweep_plan import model_backbone

    ckpt = cfg.checkpoint
    backbone = model_backbone(cfg.model)
    if ckpt in (None, "", "shipped") and not shipped_detector_path(backbone).is_file():
        raise ValueError(
            f"sweep: field 'checkpoint' is {ckpt!r} (the shipped detector), but "
            f"{shipped_detector_path(backbone)} does not exist; valid: a checkpoint path, or "
            f"'{UNTRAINED}' for random weights (smoke runs)"
        )
    if ckpt == UNTRAINED:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.seed))
            return detector_from(ckpt, cfg.model, device)
    return detector_from(ckpt, cfg.model, device)
