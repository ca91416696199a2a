"""Average-power normalisation and real ↔ complex packing for analog (JSCC) channel inputs.

Convention: a real vector ``[B, 2n]`` becomes ``n`` complex symbols by pairing *adjacent* values,
``z[b, i] = r[b, 2i] + 1j * r[b, 2i + 1]``. ``complex_to_real`` is the exact inverse.

Power: every transmission (one row of the batch) is scaled so that its mean symbol energy over
the symbols actually sent (``mask`` True) is exactly 1, i.e. ``sum(|z|^2 * mask) / sum(mask) == 1``
(Es = 1, which is what ``v2x.channels`` assumes when it turns ``snr_db`` into a noise variance).
Unsent slots are set to 0. A row whose used symbols are all zero cannot be scaled up; it is sent
as zeros (average power 0 ≤ 1) instead of NaN.
"""

from __future__ import annotations

import torch

#: Rows with mean energy below this are treated as all-zero (left at 0 instead of divided by ~0).
ZERO_ENERGY = 1e-20


def real_to_complex(x: torch.Tensor) -> torch.Tensor:
    """Pack ``[B, 2n]`` real values into ``[B, n]`` complex64 symbols (adjacent pairs).

    Raises:
        ValueError: if ``x`` is not 2-D real with an even last dimension.
    """
    if x.dim() != 2 or torch.is_complex(x):
        raise ValueError(
            f"real_to_complex: 'x' must be a real [B, 2n] tensor, got {tuple(x.shape)}"
        )
    if x.shape[1] % 2:
        raise ValueError(
            f"real_to_complex: last dimension of 'x' must be even (2n), got {x.shape[1]}"
        )
    pairs = x.to(torch.float32).reshape(x.shape[0], x.shape[1] // 2, 2)
    return torch.view_as_complex(pairs.contiguous())


def complex_to_real(z: torch.Tensor) -> torch.Tensor:
    """Unpack ``[B, n]`` complex symbols into ``[B, 2n]`` float32 (re, im, re, im, …)."""
    if z.dim() != 2 or not torch.is_complex(z):
        raise ValueError(f"complex_to_real: 'z' must be a complex [B, n] tensor, got {z.dtype}")
    return torch.view_as_real(z.to(torch.complex64)).reshape(z.shape[0], 2 * z.shape[1])


def _check_mask(z: torch.Tensor, mask: torch.Tensor | None) -> None:
    if mask is not None and (mask.shape != z.shape or mask.dtype != torch.bool):
        raise ValueError(
            f"power: 'mask' must be a bool tensor of shape {tuple(z.shape)}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )


def average_power(z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B]`` float32 mean ``|z|^2`` over the used symbols of each row (0 for rows with none).

    Args:
        z: ``[B, n]`` complex symbols.
        mask: ``[B, n]`` bool, True where the symbol is sent; ``None`` means all.
    """
    _check_mask(z, mask)
    energy = z.abs().square().to(torch.float32)
    if mask is None:
        return energy.mean(dim=1) if z.shape[1] else energy.sum(dim=1)
    used = mask.sum(dim=1).clamp_min(1).to(torch.float32)
    return (energy * mask).sum(dim=1) / used


def normalize_power(z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scale each row of ``z`` to unit average energy over its used symbols; zero unused slots.

    Differentiable (the scale is part of the graph, as in DeepJSCC's normalisation layer).

    Args:
        z: ``[B, n]`` complex symbols.
        mask: ``[B, n]`` bool, True where the symbol is sent; ``None`` means all.

    Returns:
        ``[B, n]`` complex64 with ``average_power(out, mask) == 1`` for every row whose used
        symbols are not all zero (those rows stay 0).
    """
    z = z.to(torch.complex64)
    power = average_power(z, mask)
    alive = power > ZERO_ENERGY
    scale = torch.where(alive, torch.rsqrt(power.clamp_min(ZERO_ENERGY)), torch.zeros_like(power))
    out = z * scale.reshape(-1, 1)
    if mask is not None:
        out = torch.where(mask, out, 0.0)
    return out


def prefix_mask(lengths: torch.Tensor, n: int) -> torch.Tensor:
    """``[B, n]`` bool, True in the first ``lengths[b]`` slots of row ``b``.

    Args:
        lengths: ``[B]`` integer symbol counts (0 ≤ lengths ≤ n).
        n: row length.
    """
    positions = torch.arange(n, device=lengths.device)
    return positions.reshape(1, -1) < lengths.reshape(-1, 1)
