"""The ego's side of intermediate fusion: what arrived from the collaborators, warped to the ego's
grid, fused with the ego's own map, through the head.

One path for training and evaluation: ``v2x.pipeline.CooperativePipeline`` (evaluation, after
the codec and the channel), the detector's fused training losses and codec training
(``v2x.perception.losses.fused_head_outputs``) all call ``fuse_at_ego``, so that what a model
is trained on and what it is scored on cannot drift apart. In CUDA inference with max or
attention fusion the warp and the fusion run as one Triton kernel
(``warp_fusion_triton.fuse_collaborators``): the same values up to the float32 rounding of the
bilinear sample, tested against this module's torch path.

Shapes: ``N`` fused maps (frames, or frames × conditions), ``M`` collaborators per map,
``C`` feature channels, ``h × w`` the strided BEV grid.
"""

from __future__ import annotations

import torch
from torch import nn

from v2x.common import triton_available
from v2x.perception.fusion_base import repeated_ego
from v2x.perception.fusion_basic import AttentionFusion, MaxFusion
from v2x.perception.inference import PRECISIONS
from v2x.perception.warp import sample_maps


def arrived_cells(sample_grid: torch.Tensor, sent: torch.Tensor | None = None) -> torch.Tensor:
    """Ego cells that a collaborator's sent cells cover once warped.

    Args:
        sample_grid: ``[S, h, w, 2]`` where each ego cell samples the collaborator's map
            (``v2x.perception.warp.warp_sampling_grid``; one row per collaborator map).
        sent: ``[S, 1, h, w]`` (float or bool) the cells that arrived in the collaborator's own
            frame, 1 where they did; ``None``: all of them.

    Returns:
        ``[S, 1, h, w]`` bool, True where more than half of the bilinear sample comes from
        arrived cells.
    """
    s, h, w, _ = sample_grid.shape
    if sent is None:
        sent = torch.ones(s, 1, h, w, device=sample_grid.device)
    return sample_maps(sent.reshape(-1, 1, h, w), sample_grid) > 0.5


def fuse_at_ego(
    model: nn.Module,
    fusion: nn.Module,
    ego: torch.Tensor,
    collaborators: torch.Tensor,
    sample_grid: torch.Tensor,
    valid: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warp the collaborators' maps to the ego, fuse them with the ego's own, run the head.

    Args:
        model: the detector (its ``head``).
        fusion: a feature-stage fusion, ``fusion(features [N, 1+M, C, h, w], valid) -> [N, C, h, w]``.
        ego: ``[E, 1, C, h, w]`` the ego's own maps (already in the ego frame: not resampled),
            float32 or a reduced-precision encoder's float16 / bfloat16 (read as float32);
            ``E`` divides ``N`` and fused map ``n`` uses row ``n % E`` (one map per frame for
            ``N / E`` blocks of conditions; ``E = N``: one each).
        collaborators: ``[N, M, C, h, w]`` what arrived of each collaborator's map, in its own
            levelled frame: float32, or float16 / bfloat16 (a reduced-precision codec's decoded
            maps, ``Codec.decode``; the kernel reads them into float32, the torch path's
            ``sample_maps`` converts them), of another dtype than ``ego`` possibly.
        sample_grid: ``[N·M, h, w, 2]`` where each ego cell samples each collaborator's map.
        valid: ``[N, M, 1, h, w]`` bool, the ego cells each collaborator's map may fuse into
            (inside its grid, arrived, agent present).

    Returns:
        ``(fused [N, C, h, w], heat_logits [N, K, h, w], reg [N, 8, h, w])`` (``fused`` from the
        kernel in the dtype the head reads, ``_head_input_dtype``: float32 unless the head runs
        at fp16 / bf16); differentiable
        with respect to ``collaborators`` (and ``ego``).
    """
    n, m, c, h, w = collaborators.shape
    if n % max(ego.shape[0], 1):
        raise ValueError(f"fuse_at_ego: {ego.shape[0]} ego maps do not divide {n} fused maps")
    mode = _kernel_mode(fusion, ego, collaborators) if m else None
    if mode is not None:  # warp + fusion in one Triton kernel (CUDA inference)
        from v2x.perception.warp_fusion_triton import fuse_collaborators

        # channels-last, in the dtype the head's first convolution reads (_head_input_dtype)
        dtype = _head_input_dtype(model)
        fused = fuse_collaborators(ego, collaborators, sample_grid, valid, mode, dtype=dtype)
        heat, reg = model.head(fused)  # the head's outputs keep its layout: made contiguous
        return fused, heat.contiguous(), reg.contiguous()
    ego = ego.float()  # (a reduced-precision encoder's maps: the torch fusions' float32)
    if m == 0:  # the ego alone
        ego_valid = torch.ones(n, 1, 1, h, w, dtype=torch.bool, device=ego.device)
        return _fused_head(model, fusion, repeated_ego(ego, n), ego_valid)
    warped = sample_maps(collaborators.reshape(-1, c, h, w), sample_grid).view(n, m, c, h, w)
    fused = fusion.fuse_warped(ego, warped, valid)
    heat, reg = model.head(fused)
    return fused, heat, reg


def _head_input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype the head's convolutions read the fused map in: its reduced inference
    precision's (``CenterHead.precision``: under that autocast the first convolution would cast
    a float32 map to it, rounding to nearest even as the fusion kernel's store does, so the head
    gets the same bits without that pass), else float32."""
    precision = getattr(getattr(model, "head", None), "precision", "fp32")
    return PRECISIONS.get(precision) or torch.float32


def _kernel_mode(fusion: nn.Module, ego: torch.Tensor, collaborators: torch.Tensor) -> str | None:
    """``"max"`` / ``"attention"`` where ``warp_fusion_triton.fuse_collaborators`` computes this
    fusion's ``fuse_warped`` of the warped maps (CUDA, Triton installed, no gradient, the
    fusion's ``forward`` is ``max``'s or ``attention``'s own), else ``None``."""
    if not collaborators.is_cuda or not triton_available():
        return None
    if torch.is_grad_enabled() and (ego.requires_grad or collaborators.requires_grad):
        return None
    forward = type(fusion).forward
    return {MaxFusion.forward: "max", AttentionFusion.forward: "attention"}.get(forward)


def _fused_head(
    model: nn.Module, fusion: nn.Module, features: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    fused = fusion(features, valid)
    heat, reg = model.head(fused)
    return fused, heat, reg
