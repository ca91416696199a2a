"""Sums over runs of equal keys in a fixed order: the deterministic replacement for a float
``index_add_`` on CUDA.

torch's CUDA ``index_add_`` adds with float atomics (the last bits depend on thread order); its
deterministic mode sorts and then adds each run of equal indices in one thread, which is slow
when one index collects many rows (a pillar encoder's dump row holds every padding point: 67 ms
of a 180 ms codec training step on an H200). Here the rows are stably sorted by key and each run
is summed by a segmented tree reduction, ``⌈log₂ L⌉`` shifted adds for runs of up to ``L`` rows.
"""

from __future__ import annotations

import math

import torch


def segment_sums(
    sorted_keys: torch.Tensor, values: torch.Tensor, longest: int | None = None
) -> torch.Tensor:
    """``out[i] = values[i] + values[i + 1] + …`` up to the end of ``i``'s run of equal keys.

    Pass ``k`` adds the partial sum ``2**k`` rows ahead when that row is in the same run: a
    fixed order, the same bits on every run and device.

    Args:
        sorted_keys: ``[L]`` integer keys in ascending order.
        values: ``[L, C]`` float rows.
        longest: an upper bound on the run length (no host synchronisation, as CUDA graphs
            need); ``None`` measures it (one synchronisation).

    Returns:
        ``[L, C]``; at the first row of each run, the run's sum.
    """
    length = sorted_keys.numel()
    if length == 0:
        return values.clone()
    row = torch.arange(length, device=sorted_keys.device)
    end = torch.searchsorted(sorted_keys, sorted_keys, right=True)  # first row of the next run
    if longest is None:
        longest = int((end - row).max())
    sums = values
    for k in range(math.ceil(math.log2(max(longest, 1)))):
        ahead = row + 2**k
        sums = sums + torch.where((ahead < end)[:, None], sums[ahead.clamp_max(length - 1)], 0.0)
    return sums


def sums_by_key(
    keys: torch.Tensor, values: torch.Tensor, longest: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every row ``i``: the sum of ``values`` over the rows with key ``keys[i]`` and their
    count, in a fixed order (``segment_sums`` over the stably sorted rows).

    Args:
        keys: ``[L]`` integer keys, any order.
        values: ``[L, C]`` float rows.
        longest: an upper bound on the rows that share a key (``segment_sums``).

    Returns:
        ``sums [L, C]`` (row ``i``: the sum of its key's rows) and ``counts [L]`` int64.
    """
    sorted_keys, order = torch.sort(keys, stable=True)
    sums = segment_sums(sorted_keys, values[order], longest)
    first = torch.searchsorted(sorted_keys, keys)
    last = torch.searchsorted(sorted_keys, keys, right=True)
    return sums[first], last - first
