"""Uniform scalar quantisation of feature maps, and the occupancy (empty-cell) map.

A BEV feature map is mostly empty: cells where every channel is exactly 0 carry no information.
``occupancy`` marks the non-empty cells; only those are quantised and sent (the digital codec
sends the occupancy bitmap as side information, deflate-compressed when that is smaller).

Quantisation is uniform with ``2^bits`` levels between the minimum and maximum of the occupied
cells, per channel (``per_channel=True``: one (offset, step) pair per channel) or per map. The
(offset, step) pairs are float32 side information (64 bits per pair, charged by the codec).
Reconstruction error is at most ``step / 2`` per value; empty cells come back exactly 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

MAX_BITS = 16


def check_bits(bits: int, name: str = "bits") -> None:
    if not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"quantiser '{name}' must be an int in 1..{MAX_BITS}, got {bits!r}")


def occupancy(features: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` → ``[B, H, W]`` bool: True where any channel is non-zero."""
    return (features != 0).any(dim=1)


@dataclass
class Quantized:
    """Quantised feature maps.

    Attributes:
        levels: ``[B, C, H, W]`` int64 in ``0 … 2^bits − 1`` (0 in empty cells).
        offset: ``[B, G]`` float32 value of level 0 (``G = C`` per channel, 1 per map).
        step: ``[B, G]`` float32 quantisation step (> 0).
        occupied: ``[B, H, W]`` bool occupancy map.
        bits: bits per level.
    """

    levels: torch.Tensor
    offset: torch.Tensor
    step: torch.Tensor
    occupied: torch.Tensor
    bits: int


def quantize(features: torch.Tensor, bits: int, per_channel: bool = True) -> Quantized:
    """Uniformly quantise ``features [B, C, H, W]`` float to ``bits`` bits (see module doc)."""
    check_bits(bits)
    if features.dim() != 4:
        raise ValueError(f"quantize: 'features' must be [B, C, H, W], got {tuple(features.shape)}")
    x = features.to(torch.float32)
    b, c = x.shape[:2]
    occ = occupancy(x)
    mask = occ[:, None].expand_as(x)
    big = torch.finfo(torch.float32).max
    lo_v = torch.where(mask, x, torch.full_like(x, big))
    hi_v = torch.where(mask, x, torch.full_like(x, -big))
    if per_channel:
        lo, hi = lo_v.amin(dim=(2, 3)), hi_v.amax(dim=(2, 3))  # [B, C]
    else:
        lo, hi = (
            lo_v.reshape(b, -1).amin(1, keepdim=True),
            hi_v.reshape(b, -1).amax(1, keepdim=True),
        )
    lo, step = _offset_step(lo, hi, bits)
    top = float(2**bits - 1)
    g = lo.shape[1]
    off_full = lo.reshape(b, g, 1, 1)
    step_full = step.reshape(b, g, 1, 1)
    levels = torch.round((x - off_full) / step_full).clamp_(0, top).to(torch.int64)
    levels = torch.where(mask, levels, torch.zeros_like(levels))
    return Quantized(
        levels=levels, offset=lo.contiguous(), step=step.contiguous(), occupied=occ, bits=bits
    )


def _offset_step(
    lo: torch.Tensor, hi: torch.Tensor, bits: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Offset and step of ``2^bits`` levels from each group's occupied ``lo``/``hi`` (``lo >
    hi``: no occupied cell, offset 0; a zero span gets step 1)."""
    empty = lo > hi  # no occupied cell in this group
    lo = torch.where(empty, torch.zeros_like(lo), lo)
    hi = torch.where(empty, torch.zeros_like(hi), hi)
    step = (hi - lo) / float(2**bits - 1)
    return lo, torch.where(step > 0, step, torch.ones_like(step))


@dataclass
class OccupiedLevels:
    """One map quantised as ``quantize`` does, kept for its occupied cells only: what the
    digital codec codes and sends.

    Attributes:
        levels: ``[C, n]`` int64 levels of the ``n`` occupied cells, in raster order
            (``quantize(features[None], …).levels[0][:, occupied]``, tested equal).
        offset: ``[G]`` float32 value of level 0 (``G = C`` per channel, 1 per map).
        step: ``[G]`` float32 quantisation step (> 0).
        occupied: ``[H, W]`` bool occupancy map.
        bits: bits per level.
    """

    levels: torch.Tensor
    offset: torch.Tensor
    step: torch.Tensor
    occupied: torch.Tensor
    bits: int


def _occupied_values(
    feature_map: torch.Tensor, per_channel: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``feature_map [C, H, W]`` → its occupied values ``[C, n]`` float32 (raster order), the
    occupancy ``[H, W]`` and each group's lowest and highest occupied value ``[G]``
    (``±float32 max`` for a group with no occupied cell, as ``quantize``'s masked minimum)."""
    x = feature_map.to(torch.float32)
    occ = occupancy(x[None])[0]
    cells = occ.reshape(-1).nonzero().squeeze(1)  # one read of the device, as x[:, occ] makes
    flat = x.reshape(x.shape[0], -1)
    # a dense map's values are the map itself (no copy); else the occupied cells, raster order
    values = flat if cells.numel() == flat.shape[1] else flat.index_select(1, cells)  # [C, n]
    grouped = values if per_channel else values.reshape(1, -1)
    big = torch.finfo(torch.float32).max
    if grouped.shape[1]:
        return values, occ, grouped.amin(1), grouped.amax(1)
    g = grouped.shape[0]
    return (
        values,
        occ,
        torch.full((g,), big, device=x.device),
        torch.full((g,), -big, device=x.device),
    )


def _levels(
    values: torch.Tensor,
    lo: torch.Tensor,
    step: torch.Tensor,
    bits: int,
    shifted: torch.Tensor | None = None,
) -> torch.Tensor:
    """``values [G, n]`` or ``[C, n]`` → float32 levels in ``0 … 2^bits − 1``, with ``quantize``'s
    arithmetic (``round((x − offset) / step)``, clamped); ``lo``/``step`` ``[G]`` broadcast.
    ``shifted``: ``values − lo`` when already computed (the offset does not depend on the
    depth)."""
    top = float(2**bits - 1)
    shifted = values - lo[:, None] if shifted is None else shifted
    return torch.div(shifted, step[:, None]).round_().clamp_(0, top)


def quantize_occupied(
    feature_map: torch.Tensor, bits: int, per_channel: bool = True
) -> OccupiedLevels:
    """``quantize(feature_map[None], bits, per_channel)`` for one ``[C, H, W]`` map, computed on
    its occupied cells only (same offsets, steps and float32 arithmetic; no full-size masked
    copies), on the map's device."""
    check_bits(bits)
    if feature_map.dim() != 3:
        raise ValueError(
            f"quantize_occupied: 'feature_map' must be [C, H, W], got {tuple(feature_map.shape)}"
        )
    values, occ, lo, hi = _occupied_values(feature_map, per_channel)
    lo, step = _offset_step(lo, hi, bits)
    levels = _levels(values, lo, step, bits).to(torch.int64)
    return OccupiedLevels(levels=levels, offset=lo, step=step, occupied=occ, bits=bits)


def level_histograms(
    features: torch.Tensor, bits: Iterable[int], per_channel: bool = True
) -> dict[int, np.ndarray]:
    """Histograms of ``quantize(features, b, per_channel).levels`` over the occupied cells of one
    map for every ``b`` in ``bits``, without quantising the whole map each time (the same
    offsets, steps and float32 arithmetic as ``quantize``, on the occupied values only; tested
    equal).

    Args:
        features: ``[1, C, H, W]`` float, one map (any device).
        bits: the bit depths wanted.
        per_channel: as ``quantize``'s.

    Returns:
        ``{b: [2^b] int64}``: how many occupied values fall on each level.
    """
    if features.dim() != 4 or features.shape[0] != 1:
        raise ValueError(
            f"level_histograms: 'features' must be [1, C, H, W], got {tuple(features.shape)}"
        )
    depths = list(bits)
    for b in depths:
        check_bits(b)
    if not depths:
        return {}
    values, _, lo_all, hi_all = _occupied_values(features[0], per_channel)
    values = values if per_channel else values.reshape(1, -1)  # [G, n]
    offsets = [_offset_step(lo_all, hi_all, b) for b in depths]  # the offset is every depth's
    # depth i's levels counted in bins starts[i] … starts[i + 1] − 1 of one array
    starts = np.concatenate([[0], np.cumsum([2**b for b in depths])]).astype(np.int64)
    from v2x.semcom.ldpc_numba import compiled_on_host

    counts = None
    if compiled_on_host(values):  # one compiled pass over the values for every depth
        from v2x.semcom.quantize_numba import level_counts

        counts = level_counts(values, offsets[0][0], [s for _, s in offsets], depths, starts)
    if counts is None:  # read once (on a GPU: bincount's own wait per depth, then one read)
        shifted = values - offsets[0][0][:, None]  # values − offset
        per_depth = [
            torch.bincount(_levels(values, lo, step, b, shifted).to(torch.int32).reshape(-1),
                           minlength=2**b)
            for b, (lo, step) in zip(depths, offsets)
        ]  # fmt: skip
        counts = torch.cat(per_depth).cpu().numpy()
    return {b: counts[starts[i] : starts[i + 1]].copy() for i, b in enumerate(depths)}


def dequantize(q: Quantized) -> torch.Tensor:
    """``Quantized`` → ``[B, C, H, W]`` float32 (``offset + level · step``; 0 in empty cells)."""
    b, g = q.offset.shape
    x = q.offset.reshape(b, g, 1, 1) + q.levels.to(torch.float32) * q.step.reshape(b, g, 1, 1)
    return torch.where(q.occupied[:, None], x, torch.zeros_like(x))
