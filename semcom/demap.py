"""Exact (``"app"``) bit LLRs of square Gray QAM, one dimension at a time.

Sionna's ``Demapper("app", "qam", Qm)`` computes, for every symbol, the squared distance to all
``M = 2^Qm`` points and, for every bit, a log-sum-exp over the ``M/2`` points whose label has
that bit at 1 minus the same over those at 0 (LLR = ln P(b=1) / P(b=0), the logit convention):
``Qm · M`` exponentials per symbol, 2,048 for 256-QAM.

For a square QAM whose labels split into in-phase bits (a function of the real part) and
quadrature bits (of the imaginary part) — the 38.211 QAM that Sionna builds — the sum
factorises: with ``x = (a, b)``,

    Σ_{x: b_k = 1} exp(−|y − x|² / N0) = Σ_{a: b_k = 1} exp(−(y_I − a)² / N0) · Σ_b exp(−(y_Q − b)² / N0)

for an in-phase bit ``k``, and the quadrature factor is the same for ``b_k = 0`` and cancels in
the LLR. So each bit needs a log-sum-exp over the ``√M / 2`` levels of its own dimension:
``Qm · √M`` exponentials per symbol (128 for 256-QAM, 16× fewer). The LLRs are the same
quantities as Sionna's, up to float32 rounding (``tests/semcom/test_demap.py`` compares them
with Sionna's demapper over every MCS's modulation and over erased symbols).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SeparableQamDemapper"]


class SeparableQamDemapper:
    """``(x_hat [..., n] complex, no [..., n] float) → [..., n · Qm]`` float32 LLRs.

    Args:
        points: ``[2^Qm]`` complex constellation; point ``i`` carries the bits of ``i`` with
            bit 0 the most significant (Sionna's labelling).
        num_bits_per_symbol: ``Qm``.
        no_floor: the smallest noise variance used (Sionna's demapper clamps to float32's
            ``tiny``).

    Raises:
        ValueError: a bit of the labelling is neither a function of the real part nor of the
            imaginary part of the points (not a separable QAM).
    """

    def __init__(
        self,
        points: torch.Tensor,
        num_bits_per_symbol: int,
        no_floor: float = float(np.finfo(np.float32).tiny),
    ) -> None:
        qm = int(num_bits_per_symbol)
        pts = points.detach().cpu().to(torch.complex64)
        if pts.numel() != 2**qm:
            raise ValueError(f"demapper: {pts.numel()} points for {qm} bits per symbol")
        labels = (np.arange(2**qm)[:, None] >> np.arange(qm - 1, -1, -1)[None, :]) & 1  # [M, Qm]
        self.qm = qm
        self.no_floor = no_floor
        self._dims: list[tuple[torch.Tensor, list[int], torch.Tensor, torch.Tensor]] = []
        parts = (pts.real.numpy(), pts.imag.numpy())
        owner = [self._owner(labels[:, k], parts) for k in range(qm)]
        self._owners = owner
        for d, coord in enumerate(parts):
            bits = [k for k in range(qm) if owner[k] == d]
            if not bits:
                continue
            levels, first = np.unique(coord, return_index=True)  # [L] sorted, a point of each
            level_bits = labels[first][:, bits]  # [L, nb]: the bits each level carries
            ones = [np.flatnonzero(level_bits[:, j] == 1) for j in range(len(bits))]
            zeros = [np.flatnonzero(level_bits[:, j] == 0) for j in range(len(bits))]
            if len({len(i) for i in ones + zeros}) != 1:
                raise ValueError("demapper: levels do not split evenly by every bit")
            self._dims.append(
                (
                    torch.as_tensor(levels, dtype=torch.float32),
                    bits,
                    torch.as_tensor(np.stack(ones), dtype=torch.int64),  # [nb, L/2]
                    torch.as_tensor(np.stack(zeros), dtype=torch.int64),
                )
            )
        self._device: torch.device | None = None

    @staticmethod
    def _owner(bit: np.ndarray, parts: tuple[np.ndarray, np.ndarray]) -> int:
        """0 if ``bit`` (``[M]``) is a function of the real part, 1 of the imaginary part."""
        for d, coord in enumerate(parts):
            if all(len(set(bit[coord == c].tolist())) == 1 for c in np.unique(coord)):
                return d
        raise ValueError("demapper: a bit depends on both the real and the imaginary part")

    def _to(self, device: torch.device) -> None:
        """Keep the level tables on ``device`` (moved once, on the first call there)."""
        if self._device != device:
            self._dims = [
                (levels.to(device), bits, ones.to(device), zeros.to(device))
                for levels, bits, ones, zeros in self._dims
            ]
            self._device = device

    def bit_tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The same tables per bit, for ``v2x.semcom.qam_triton``: ``dims [Qm]`` int32 (0 when
        bit ``k`` is carried by the real part, 1 by the imaginary part), ``levels [Qm, L]``
        float32 (that dimension's levels) and ``labels [Qm, L]`` int32 (bit ``k`` of each
        level's label), on the CPU."""
        qm, num_levels = self.qm, self._dims[0][0].numel()
        dims = torch.zeros(qm, dtype=torch.int32)
        levels = torch.zeros(qm, num_levels, dtype=torch.float32)
        labels = torch.zeros(qm, num_levels, dtype=torch.int32)
        for lv, bits, ones, _zeros in self._dims:
            if lv.numel() != num_levels:
                raise ValueError("demapper: the two dimensions have different level counts")
            for j, k in enumerate(bits):
                dims[k] = self._owners[k]
                levels[k] = lv.cpu()
                labels[k, ones[j].cpu()] = 1
        return dims, levels, labels

    def __call__(self, x_hat: torch.Tensor, no: torch.Tensor) -> torch.Tensor:
        self._to(x_hat.device)
        no = torch.as_tensor(no, dtype=torch.float32, device=x_hat.device).expand(x_hat.shape)
        no = no.clamp_min(self.no_floor).unsqueeze(-1)
        llr = torch.empty(*x_hat.shape, self.qm, dtype=torch.float32, device=x_hat.device)
        for (levels, bits, ones, zeros), coord in zip(self._dims, (x_hat.real, x_hat.imag)):
            z = -(coord.to(torch.float32).unsqueeze(-1) - levels).square() / no  # [..., n, L]
            llr[..., bits] = torch.logsumexp(z[..., ones], dim=-1) - torch.logsumexp(
                z[..., zeros], dim=-1
            )
        return llr.reshape(*x_hat.shape[:-1], x_hat.shape[-1] * self.qm)
