"""Heading-axis channels for a trained detector without training the network: the two new
output channels of the head's 3×3 regression convolution (``DetectorConfig.yaw_axis``,
``v2x.perception.head``) solved in closed form — ridge regression of ``(sin 2·yaw, cos 2·yaw)``
on the frozen head features around the ground-truth centre cells (the last layer trained as a
linear probe is). ``scripts/fit_axis_head.py`` runs it on training towns.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from v2x.perception.detector import CoopDetector, load_detector_weights
from v2x.perception.head import AXIS_CHANNELS, REG_CHANNELS, axis_targets, encode_box_regression

__all__ = ["centre_samples", "ridge", "with_axis_channels"]


def centre_samples(
    shared: torch.Tensor, boxes: torch.Tensor, model: CoopDetector
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the regression convolution reads at each box's centre cell, and its axis target.

    Args:
        shared: ``[C, h, w]`` the head's shared features (output of ``model.head.shared``).
        boxes: ``[M, 7]`` boxes in the same levelled frame (z above ground).

    Returns:
        ``X [M', C·9]`` float64 (the zero-padded 3×3 neighbourhood, in the convolution weight's
        ``(c, ky, kx)`` order) and ``Y [M', 2]`` float64 ``(sin 2·yaw, cos 2·yaw)``, for the
        ``M'`` boxes whose centre cell is on the map.
    """
    c, h, w = shared.shape
    reg, ix, iy = encode_box_regression(boxes, model.grid, model.stride)
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    patches = F.unfold(shared[None].float(), 3, padding=1)[0].view(c * 9, h, w)
    x = patches[:, iy[inside], ix[inside]].T
    return x.double().cpu(), axis_targets(reg[inside]).double().cpu()


def ridge(x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``argmin ||x W + b − y||² + lam ||W||²`` (the bias not penalised).

    Args: x ``[S, D]``, y ``[S, T]``. Returns ``W [D, T]``, ``b [T]``."""
    mean_x, mean_y = x.mean(0), y.mean(0)
    xc, yc = x - mean_x, y - mean_y
    a = xc.T @ xc + lam * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    weight = torch.linalg.solve(a, xc.T @ yc)
    return weight, mean_y - mean_x @ weight


def with_axis_channels(
    model: CoopDetector, weight: torch.Tensor, bias: torch.Tensor
) -> CoopDetector:
    """A copy of ``model`` (without axis channels) with them: every weight of ``model``, the
    axis channels computing ``X W + b`` on ``centre_samples``' ``X`` (``W [C·9, 2]``, ``b [2]``).
    """
    if model.config.yaw_axis:
        raise ValueError("with_axis_channels: the model already has heading-axis channels")
    grown = CoopDetector(dataclasses.replace(model.config, yaw_axis=True))
    load_detector_weights(grown, model.state_dict(), grow=True)
    conv = grown.head.reg
    with torch.no_grad():
        conv.weight[REG_CHANNELS:] = weight.T.reshape(AXIS_CHANNELS, *conv.weight.shape[1:])
        conv.bias[REG_CHANNELS:] = bias
    return grown.to(next(model.parameters()).device).train(model.training)
