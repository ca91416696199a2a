"""Fast-inference options for the detector: reduced precision, channels-last, fixed-shape graphs.

None of these changes what the fp32 eager model computes: ``precision="fp32"`` is the plain
model (no autocast), ``channels_last`` only changes the memory layout of the convolutions'
tensors, and a captured graph or a compiled function replays the same operations (up to the
summation order a different kernel may choose). Reduced precision (``"fp16"``, ``"bf16"``)
runs the convolutions and linear layers under ``torch.autocast``, and the detector's encoder and
head return float32 (``"fp32"`` leaves them exactly as they were, inside an enclosing autocast
too).

* :func:`autocast` — the autocast context of a precision (a no-op for fp32).
* :func:`capture_graph` — a CUDA graph of a function on fixed-shape inputs (CUDA only), replayed
  on new inputs copied into its static buffers (what ``torch.compile(mode="reduce-overhead")``
  does, without the compilation).
* :func:`compile_function` — ``torch.compile`` with a checked mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["PRECISIONS", "COMPILE_MODES", "autocast", "check_precision", "capture_graph",
           "compile_function"]  # fmt: skip

#: precision name -> autocast dtype (``None``: full float32, no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}

#: ``torch.compile`` modes accepted by :func:`compile_function`
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_precision(precision: str, field: str = "precision") -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise ``ValueError``."""
    if precision not in PRECISIONS:
        raise ValueError(f"{field}: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def autocast(
    device: torch.device | str, precision: str = "fp32", cache_enabled: bool = True
) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` on ``device``'s type (``nullcontext`` for fp32).

    ``cache_enabled=False`` is needed inside a CUDA graph capture (the autocast weight cache
    would hold tensors created during the capture)."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=dtype, cache_enabled=cache_enabled)


def capture_graph(
    fn: Callable[..., Any], inputs: Sequence[torch.Tensor], warmup: int = 3
) -> Callable[..., Any]:
    """Capture ``fn(*inputs)`` (tensors on one CUDA device, fixed shapes) as a CUDA graph.

    Args:
        fn: a function of tensors with no host synchronisation (no ``.item()``, no boolean
            indexing, no data-dependent shapes) that returns a tensor or a tuple of tensors.
        inputs: example inputs; their shapes, dtypes and device are the graph's.
        warmup: eager calls on a side stream before capture (cuDNN autotuning, allocator).

    Returns:
        ``run(*new_inputs)``: copies ``new_inputs`` (same shapes and dtypes) into the static
        buffers, replays the graph and returns the static outputs (overwritten by the next
        call: clone what must be kept).
    """
    if not inputs or any(t.device.type != "cuda" for t in inputs):
        raise ValueError("capture_graph: 'inputs' must be tensors on a CUDA device")
    static = [t.clone() for t in inputs]
    stream = torch.cuda.Stream(device=static[0].device)
    stream.wait_stream(torch.cuda.current_stream(static[0].device))
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn(*static)
    torch.cuda.current_stream(static[0].device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn(*static)

    def run(*new_inputs: torch.Tensor) -> Any:
        if len(new_inputs) != len(static):
            raise ValueError(f"capture_graph: expected {len(static)} inputs, got {len(new_inputs)}")
        for dst, src in zip(static, new_inputs, strict=True):
            if src.shape != dst.shape or src.dtype != dst.dtype:
                raise ValueError(
                    f"capture_graph: input of shape {tuple(src.shape)} {src.dtype}, the graph "
                    f"was captured for {tuple(dst.shape)} {dst.dtype}"
                )
            if src.data_ptr() != dst.data_ptr():
                dst.copy_(src)
        graph.replay()
        return outputs

    return run


def compile_function(fn: Callable[..., Any], mode: str = "default") -> Callable[..., Any]:
    """``torch.compile(fn, mode=mode, dynamic=False)`` with ``mode`` checked (fixed shapes: one
    compilation per input shape)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode: expected one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    return torch.compile(fn, mode=mode, dynamic=False)
