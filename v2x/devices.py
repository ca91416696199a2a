"""Devices: a configured device name resolved (``"auto"``, ``"cuda:1"``) or refused where this
process cannot compute on it, host-to-device copies, the current CUDA device for Triton launches,
whether Triton can run, the inference precisions (``fp32``, ``fp16``, ``bf16``) a model may
compute in, and how many processes share a GPU's memory (``memory_share``). Imports nothing from
the project: one of ``v2x.common``'s jobs (it re-exports these names; parts import them from
there).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


#: the inference precisions a model may compute in (the detector's ``eval.precision``,
#: DeepJSCC's ``precision``)
PRECISION_NAMES = ("fp32", "fp16", "bf16")


def check_precision(precision: str, field: str = "precision") -> str:
    """Return ``precision`` if it is one of :data:`PRECISION_NAMES`, else raise ``ValueError``
    naming ``field``, the value and the valid names."""
    if precision not in PRECISION_NAMES:
        names = ", ".join(PRECISION_NAMES)
        raise ValueError(f"{field}: expected one of {names}, got {precision!r}")
    return precision


def precision_dtype(precision: str) -> torch.dtype:
    """The dtype of a precision name (``check_precision``'s): float32, float16 or bfloat16."""
    import torch

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    return dtypes[check_precision(precision)]


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``; ``"auto"``: ``cuda`` when a CUDA device is visible, else ``cpu``."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def usable_device(name: str, field: str) -> torch.device:
    """``resolve_device(name)`` where this process can compute on it; else ``ValueError`` naming
    ``field`` (e.g. ``"sweep: field 'device'"``), the value and what is there instead."""
    import torch

    try:
        device = resolve_device(name)
    except RuntimeError:  # (torch's message lists every backend it was built to know)
        raise ValueError(f"{field} is {name!r}; expected auto, cpu, cuda or cuda:<index>") from None
    if device.type != "cuda":  # (CUDA is asked only about a CUDA device)
        return device
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if (device.index or 0) >= count:
        why = f"{count} CUDA device(s) are visible" if count else "no CUDA device is visible"
        build = "" if torch.version.cuda else f" (torch {torch.__version__} is a CPU-only build)"
        raise ValueError(f"{field} is {name!r}, but {why}{build}; use 'cpu' or 'auto'")
    return device


#: How many processes draw on a CUDA device's memory, by device index (``set_memory_share``: a
#: sweep's device workers on one GPU); a device not here is this process's alone.
_MEMORY_SHARE: dict[int, int] = {}


def _cuda_index(device: torch.device | str) -> int | None:
    """``device``'s CUDA index (the current device's for ``"cuda"``), ``None`` if not CUDA."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    if device.index is not None:
        return device.index
    return torch.cuda.current_device() if torch.cuda.is_available() else 0


def set_memory_share(device: torch.device | str, processes: int) -> None:
    """Record that ``processes`` processes, this one among them, draw on ``device``'s memory
    (``v2x.sweep_workers``: the workers a sweep puts on one GPU); 1 forgets it. Work sized by a
    device's memory takes its share (``memory_share``). Nothing is recorded but for CUDA."""
    index = _cuda_index(device)
    if index is None:
        return
    if processes > 1:
        _MEMORY_SHARE[index] = int(processes)
    else:
        _MEMORY_SHARE.pop(index, None)


def memory_share(device: torch.device | str) -> int:
    """How many processes draw on ``device``'s memory (``set_memory_share``; 1 by default and
    for every device but CUDA ones): what sizes a call by the device's memory divides it by."""
    index = _cuda_index(device)
    return 1 if index is None else _MEMORY_SHARE.get(index, 1)


def to_device_async(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``t`` on ``device``, the same values. A host tensor bound for a CUDA device goes through
    page-locked memory as a non-blocking copy (a copy from ordinary host memory waits until the
    device has run everything queued before it). Pinning costs a host copy and at times an
    allocation: for many one-off or large tensors a plain copy can cost less (the digital chain:
    84–136 frame-conditions/s against 129–140, docs/benchmarks.md); keep it for small tensors."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


@contextmanager
def on_device_of(t: torch.Tensor) -> Iterator[None]:
    """Within the block, the current CUDA device is ``t``'s (nothing changes for a host tensor).

    Triton launches a kernel on the current device and its current stream, not on its
    arguments' device: called with tensors on ``cuda:1`` while ``cuda:0`` is current (a sweep
    worker of ``device=all``, or ``device=cuda:1``), a kernel would run on the wrong device,
    unordered with the work that produced its inputs. Every Triton wrapper launches inside it.
    """
    import torch

    if not t.is_cuda:
        yield
        return
    with torch.cuda.device(t.device):
        yield


def triton_available() -> bool:
    """Triton is installed and a CUDA device is visible (its kernels can run compiled)."""
    import torch

    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()
