"""Reproducible numbers: the switch that makes GPU numbers reproducible (``configure_determinism``)
and the seeding of torch's generators (``seed_torch``). Imports, of the project, only
``v2x.config_checks``: one of ``v2x.common``'s jobs (it re-exports these names; parts import them
from there).
"""

from __future__ import annotations

import os

from v2x.config_checks import check_switch

#: cuBLAS workspace setting that makes its kernels reproducible (NVIDIA cuBLAS docs, "Results
#: reproducibility"; torch's deterministic mode asks for it on CUDA >= 10.2).
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def configure_determinism(enabled: bool) -> None:
    """Make this process compute the same numbers from the same inputs on every run (the apps'
    ``deterministic`` key, default ``True``; ``ValueError`` for a non-bool such as ``"false"``).

    ``True``: ``torch.use_deterministic_algorithms(True, warn_only=True)`` (CUDA scatter/index
    accumulations and float ``cumsum`` take fixed-order kernels; an op without one warns),
    cuDNN ``benchmark`` off and ``deterministic`` on, ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless
    set (cuBLAS reads it at its first workspace: call this before the first CUDA matrix
    product), and ``fill_uninitialized_memory`` off: its NaN fill of every ``torch.empty``
    (≈ 50 µs of a DeepJSCC frame-condition's 0.9 ms on an H200) only makes reads of unwritten
    memory repeatable, and the project reads none (tests). ``False``: torch's defaults for the
    two switches (``benchmark`` left as the caller set it). CPU kernels are deterministic
    already; the project's Triton kernels have no order-dependent float accumulation.
    """
    check_switch("field 'deterministic'", enabled)
    import torch

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.utils.deterministic.fill_uninitialized_memory = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def seed_torch(seed: int) -> None:
    """``torch.manual_seed(seed)`` for the generators the project draws from: torch's CPU
    generator and every CUDA device's default generator get the same states (tested).
    ``torch.manual_seed`` also seeds XPU, MPS and MTIA, each lazily until that backend starts,
    and a lazy seed formats the caller's stack trace on every call (≈ 0.5 ms; a sweep seeds
    every condition block, ``v2x.condition_streams``); those backends are skipped here, and
    CUDA's lazy seed is queued only where CUDA could start."""
    import torch

    seed = int(seed)
    if torch.cuda.is_initialized() or torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.default_generator.manual_seed(seed)
