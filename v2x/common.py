"""Plumbing that every part of the project may use: atomic file writes and the switch that
makes GPU numbers reproducible (``configure_determinism``).

This module imports nothing from the project (like ``v2x.registry``), so ``datasets``,
``perception``, ``semcom`` and ``channels`` may use it without breaking the one-way dependency
rule. Every file the project writes goes through ``atomic_path``: a reader never sees a half
written file, a crash leaves the previous version in place, and new files get the permissions
of any file the user creates (``0666`` less the umask), so shared output folders work.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: cuBLAS workspace setting that makes its kernels reproducible (NVIDIA cuBLAS docs, "Results
#: reproducibility"; torch's deterministic mode asks for it on CUDA >= 10.2).
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def configure_determinism(enabled: bool) -> None:
    """Make this process compute the same numbers from the same inputs on every run (the apps'
    ``deterministic`` config key; default ``True``).

    ``enabled=True``: ``torch.use_deterministic_algorithms(True, warn_only=True)`` (CUDA
    ``index_add_``, ``scatter_add_``, ``index_put_(accumulate=True)``, ``scatter_reduce`` sum
    and mean, float ``cumsum`` and duplicate-index writes take their sort-based, fixed-order
    kernels; an op without one warns instead of failing), cuDNN ``benchmark`` off and
    ``deterministic`` on (no timing-based algorithm choice, no atomics), and
    ``CUBLAS_WORKSPACE_CONFIG`` set to ``:4096:8`` unless the user set it. cuBLAS reads that
    variable when it first allocates a handle's workspace, so this must run before the
    process's first CUDA matrix product: the apps call it first thing. It changes nothing on the
    CPU (every CPU kernel the project uses is already deterministic).

    ``enabled=False``: torch's defaults for the two determinism switches (``benchmark`` is left
    as it is: a speed choice of the caller's), so runs may differ in the last bits.

    Raises ``ValueError`` when ``enabled`` is not a bool (a config value such as ``"false"``).

    Triton kernels are not covered by torch's mode: the project's (``channels.awgn_triton``,
    ``semcom.ldpc_minsum_triton``) have no order-dependent float accumulation (the LDPC
    kernel's only atomic is an integer ``atomic_or``).
    """
    if not isinstance(enabled, bool):
        raise ValueError(f"field 'deterministic' must be true or false, got {enabled!r}")
    import torch

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; moved onto ``path`` when the block ends
    without an exception (after an ``fsync``), removed otherwise.

    The temporary file exists (empty, ``0666`` less the umask) when the block starts; its name
    keeps ``path``'s suffix, so writers that choose a format by suffix (matplotlib) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        break
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode, **kwargs)`` through ``atomic_path`` (``mode`` must write)."""
    if not any(c in mode for c in "wax"):
        raise ValueError(f"atomic_open: mode {mode!r} does not write")
    # the file is closed (inner context) before it is synced and moved (outer context)
    with atomic_path(path) as tmp, open(tmp, mode.replace("x", "w").replace("a", "w"), **kwargs) as handle:
        yield handle


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)
