"""Where2comm's cell selection, as plain functions (``v2x.perception.fusion_where2comm.Where2commFusion``).

Published Where2comm (Hu et al., NeurIPS 2022; ``Communication`` in
``opencood/models/comm_modules/where2comm.py`` of MediaBrain-SJTU/Where2comm and HEAL, and in
OpenCOOD's ``where2comm_fuse.py``) sends each collaborator's cells whose confidence map — the
sigmoid of its own head's class logits, maximum over classes/anchors — optionally smoothed by a
``k_size × k_size`` Gaussian of ``c_sigma`` (zero padding, not normalised), is strictly above a
threshold ``thre`` (0.01 in their configs): a count of cells that varies per agent and frame.

* ``gaussian_kernel``: that smoothing kernel, ``exp(-(x² + y²) / (2σ²)) / (2πσ)`` at integer
  offsets from the centre.
* ``smoothed``: a ``[S, 1, h, w]`` map convolved with it.
* ``above_threshold``: the cells of a score map above a threshold (threshold 0: every cell).
* ``where2comm_options``: the checked and completed constructor options of the fusion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: The fraction of cells a top-k Where2comm sends when neither budget nor threshold is given.
DEFAULT_MAX_FRACTION = 0.1
SELECTIONS = ("window", "gaussian")


def gaussian_kernel(
    k_size: int, c_sigma: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``[1, 1, k_size, k_size]`` float32 Where2comm's smoothing kernel, as its
    ``Communication.init_gaussian_filter`` writes it: ``exp(-(x² + y²) / (2σ²)) / (2πσ)`` at
    integer offsets from the centre (not normalised: a threshold is compared with the map it
    gives, a ranking does not change with a scale)."""
    offsets = torch.arange(k_size, dtype=torch.float64) - k_size // 2
    square = offsets[:, None] ** 2 + offsets[None, :] ** 2
    kernel = torch.exp(-square / (2 * c_sigma**2)) / (2 * math.pi * c_sigma)
    return kernel.to(device, torch.float32)[None, None]


def smoothed(confidence: torch.Tensor, k_size: int, c_sigma: float) -> torch.Tensor:
    """``confidence [S, 1, h, w]`` convolved with ``gaussian_kernel`` (zero padding, the
    published ``Conv2d(padding=(k_size - 1) // 2)`` with a zero bias): ``[S, 1, h, w]``."""
    kernel = gaussian_kernel(k_size, c_sigma, confidence.device)
    return F.conv2d(confidence.float(), kernel, padding=k_size // 2)


def above_threshold(score: torch.Tensor, threshold: float) -> torch.Tensor:
    """``score [S, 1, h, w]`` → ``[S, 1, h, w]`` bool: the cells whose score is strictly above
    ``threshold`` (the published ``communication_maps > thre``); ``threshold = 0`` keeps every
    cell (a confidence is > 0 but for float underflow; OpenCOOD-style configs without a
    threshold send the whole map)."""
    if threshold == 0:
        return torch.ones_like(score, dtype=torch.bool)
    return score > threshold


def _odd_side(name: str, side) -> int:
    if isinstance(side, bool) or not isinstance(side, int | float) or not math.isfinite(side):
        raise ValueError(f"where2comm: '{name}' must be an odd integer >= 1, got {side!r}")
    if not float(side).is_integer() or side < 1 or int(side) % 2 == 0:
        raise ValueError(f"where2comm: '{name}' must be an odd integer >= 1, got {side!r}")
    return int(side)


def where2comm_options(
    max_fraction: float | None,
    threshold: float | None,
    window_cells: int,
    selection: str | None,
    k_size: int,
    c_sigma: float,
) -> dict:
    """The checked options of ``Where2commFusion``: ``max_fraction`` (None in threshold mode,
    else given or ``DEFAULT_MAX_FRACTION``), ``threshold``, ``window_cells``, ``selection``
    (given, or ``"gaussian"`` — the published smoothing — in threshold mode and ``"window"``
    with a budget), ``k_size``, ``c_sigma``. A bad value raises ``ValueError`` naming the
    field, the value and the expected range."""
    if threshold is not None and max_fraction is not None:
        raise ValueError(
            f"where2comm: 'threshold' ({threshold!r}) and 'max_fraction' ({max_fraction!r}) are "
            "mutually exclusive: set one (the other null)"
        )
    if threshold is not None:
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
            or threshold < 0
        ):
            raise ValueError(
                f"where2comm: 'threshold' must be a finite number >= 0 (a confidence in [0, 1], "
                f"or its Gaussian smoothing) or null, got {threshold!r}"
            )
        threshold = float(threshold)
    elif max_fraction is None:
        max_fraction = DEFAULT_MAX_FRACTION
    if max_fraction is not None and not (
        isinstance(max_fraction, int | float)
        and not isinstance(max_fraction, bool)
        and 0.0 < max_fraction <= 1.0
    ):
        raise ValueError(f"where2comm: 'max_fraction' must be in (0, 1], got {max_fraction!r}")
    if selection is None:
        selection = "gaussian" if threshold is not None else "window"
    if selection not in SELECTIONS:
        raise ValueError(
            f"where2comm: 'selection' must be one of {', '.join(SELECTIONS)}, got {selection!r}"
        )
    if not (
        isinstance(c_sigma, int | float)
        and not isinstance(c_sigma, bool)
        and math.isfinite(c_sigma)
        and c_sigma > 0
    ):
        raise ValueError(f"where2comm: 'c_sigma' must be a number > 0, got {c_sigma!r}")
    return {
        "max_fraction": None if max_fraction is None else float(max_fraction),
        "threshold": threshold,
        "window_cells": _odd_side("window_cells", window_cells),
        "selection": selection,
        "k_size": _odd_side("k_size", k_size),
        "c_sigma": float(c_sigma),
    }
