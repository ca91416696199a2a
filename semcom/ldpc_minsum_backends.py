"""Which backend the min-sum LDPC decoder (``v2x.semcom.ldpc_minsum``) runs a call on: Triton
on CUDA, the numba-compiled persistent algorithm on the CPU (``ldpc_numba``), or torch.

``MinSumBackends`` is a part of ``LDPC5GMinSumDecoder`` (its ``backend`` and ``precision``).
"""

from __future__ import annotations

import os

import torch


class MinSumBackends:
    """The decoder's backend choice (``_use_numba``, ``_use_triton``)."""

    backend: str
    precision: str

    def _use_numba(self, device: torch.device) -> bool:
        """Whether ``decode`` runs ``ldpc_numba`` (CPU tensors, float32 storage)."""
        from v2x.semcom.ldpc_numba import numba_available

        if self.backend == "numba":
            if device.type != "cpu" or self.precision != "fp32":
                raise ValueError(
                    "LDPC min-sum: backend='numba' needs CPU tensors and precision='fp32', got "
                    f"{device.type} tensors and precision={self.precision!r}"
                )
            if not numba_available():
                raise ValueError("LDPC min-sum: backend='numba' but numba is not installed")
            return True
        return (
            self.backend == "auto"
            and device.type == "cpu"
            and self.precision == "fp32"
            and numba_available()
        )

    def _use_triton(self, device: torch.device) -> bool:
        """Whether ``decode`` runs the Triton kernels (CUDA, or Triton's interpreter in tests
        with ``backend="triton"``)."""
        if self.backend == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
            return True  # Triton's interpreter (tests on the CPU)
        if self.backend in ("torch", "numba") or device.type != "cuda":
            if self.backend == "triton":
                raise ValueError("LDPC min-sum: backend='triton' needs CUDA tensors")
            return False
        from v2x.common import triton_available

        if self.backend == "triton" and not triton_available():
            raise ValueError("LDPC min-sum: backend='triton' but triton is not installed")
        return triton_available()
