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
* :class:`GraphCache` — a function replayed from CUDA graphs, one per input signature, captured on
  first use (``CoopDetector.configure_inference(cuda_graph=True)`` puts ``encode`` behind one).
* :func:`capture_hazards` — what in a function would break CUDA graph capture (host-device
  copies, host synchronisation, data-dependent shapes), found without a GPU on ``meta`` tensors.
* :func:`compile_function` — ``torch.compile`` with a checked mode.
* :func:`cast_weights` — an inference copy whose weights are stored in a reduced precision's
  dtype (its autocast then casts no weights: fewer kernels per call, the same values).
* :func:`fuse_conv_relu` — an inference copy whose convolution + ReLU pairs run as one cuDNN call
  each on CUDA (and whose stride-k k×k transposed convolutions as a 1×1 convolution + pixel
  shuffle, so that they fuse too).
* :func:`fold_batchnorm` — an inference copy with every eval-mode batch norm folded into the
  convolution or linear layer before it (one pass over the activations fewer per layer; the
  fp32 outputs move by float32 rounding only, unlike the options above it is a new model).
"""

from __future__ import annotations

import contextlib
import copy
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from v2x.common import PRECISION_NAMES, check_precision, on_device_of, precision_dtype

__all__ = ["PRECISIONS", "COMPILE_MODES", "GraphCache", "autocast", "check_precision",
           "capture_graph", "capture_hazards", "cast_weights", "compile_function",
           "fold_batchnorm", "fuse_conv_relu", "pixel_shuffle_channels_last"]  # fmt: skip

#: precision name -> autocast dtype (``None``: full float32, no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {
    name: None if name == "fp32" else precision_dtype(name) for name in PRECISION_NAMES
}

#: ``torch.compile`` modes accepted by :func:`compile_function`
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


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
    with on_device_of(static[0]), torch.cuda.graph(graph):  # captured on the inputs' device
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


class GraphCache:
    """``fn`` replayed from CUDA graphs: one per input signature (shapes, strides, dtypes,
    device), captured by :func:`capture_graph` on its first use.

    Calls run ``fn`` eagerly when an input is not a CUDA tensor, when autograd is recording,
    when ``max_graphs`` signatures already have graphs (each holds its own memory pool: a batch
    of new shapes must not keep capturing), or when the capture failed (e.g. an operator that
    synchronises in torch's deterministic mode: warned once per signature, kept in
    ``failed``). Replays return clones of the graph's outputs (the next replay overwrites them).
    ``fn`` must have no host synchronisation and read nothing that moves between calls but its
    inputs (parameters must stay where they are: :meth:`clear` after moving them). A deep copy
    starts with no graphs.

    Args:
        fn: a function of tensors returning a tensor or a tuple of tensors.
        max_graphs: signatures captured at most.
    """

    def __init__(self, fn: Callable[..., Any], max_graphs: int = 4) -> None:
        if max_graphs < 1:
            raise ValueError(f"GraphCache: 'max_graphs' must be >= 1, got {max_graphs}")
        self.fn = fn
        self.max_graphs = max_graphs
        self.graphs: dict[tuple, Callable[..., Any]] = {}
        self.failed: dict[tuple, str] = {}  # signature -> why its capture failed

    def capturable(self, inputs: Sequence[Any]) -> bool:
        """Whether a call with ``inputs`` may replay a graph (CUDA tensors, no autograd)."""
        tensors = all(isinstance(t, torch.Tensor) and t.is_cuda for t in inputs)
        return bool(inputs) and tensors and not torch.is_grad_enabled()

    def __call__(self, *inputs: torch.Tensor) -> Any:
        if not self.capturable(inputs):
            return self.fn(*inputs)
        key = tuple((t.shape, t.stride(), t.dtype, t.device) for t in inputs)
        graph = self.graphs.get(key)
        if graph is None:
            if len(self.graphs) >= self.max_graphs or key in self.failed:
                return self.fn(*inputs)
            try:
                graph = capture_graph(self.fn, inputs)
            except RuntimeError as exc:  # run eagerly from now on, for this signature
                self.failed[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                warnings.warn(f"GraphCache: capture failed, running eagerly ({self.failed[key]})",
                              RuntimeWarning, stacklevel=2)  # fmt: skip
                return self.fn(*inputs)
            self.graphs[key] = graph
        out = graph(*inputs)
        return out.clone() if isinstance(out, torch.Tensor) else type(out)(o.clone() for o in out)

    def clear(self) -> None:
        """Drop every graph (and its memory pool) and the record of failed captures."""
        self.graphs.clear()
        self.failed.clear()

    def __deepcopy__(self, memo: dict) -> GraphCache:
        return GraphCache(copy.deepcopy(self.fn, memo), self.max_graphs)


#: ATen operators that wait for the device (a value or a shape read back by the host)
SYNCHRONISING_OPS = frozenset({
    "_local_scalar_dense", "nonzero", "nonzero_static_", "masked_select", "is_nonzero", "equal",
    "_linalg_check_errors", "unique", "_unique", "_unique2", "unique_consecutive",
    "unique_dim", "repeat_interleave", "bincount", "histc",
})  # fmt: skip
#: ``Tensor`` methods that return host values (a synchronisation on a CUDA tensor)
HOST_METHODS = frozenset({
    "item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__",
})  # fmt: skip


def _caller(frames: traceback.StackSummary | None = None) -> str:
    """``file:line`` of the innermost frame outside torch and this module (of ``frames``, by
    default the current stack)."""
    for frame in reversed(frames if frames is not None else traceback.extract_stack()):
        parts = Path(frame.filename).parts
        if "torch" not in parts and Path(frame.filename) != Path(__file__):
            return f"{Path(frame.filename).name}:{frame.lineno}"
    return "?"


class _HostFunctionProbe(TorchFunctionMode):
    """Python-level hazards: host reads, and a Python number assigned to a single element (on
    a CUDA tensor ``t[i, j] = 1.0`` copies a CPU scalar into the 0-dim slice: ``copy_`` from
    host memory; a larger slice is filled on the device)."""

    def __init__(self, found: list[str]) -> None:
        super().__init__()
        self.found = found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if func is torch.Tensor.__setitem__ and isinstance(args[2], (bool, int, float, complex)):
            with torch._C.DisableTorchFunction():
                element = args[0][args[1]].dim() == 0
            if element:
                self.found.append(f"{_caller()}: a Python number assigned to one element "
                                  "(host-to-device copy on CUDA)")  # fmt: skip
        elif name in HOST_METHODS and isinstance(args[0], torch.Tensor):
            self.found.append(f"{_caller()}: Tensor.{name}() reads the value on the host")
        return func(*args, **kwargs)


class _HostDispatchProbe(TorchDispatchMode):
    """ATen-level hazards: host memory in the captured region (a CPU tensor that is not a
    0-dim scalar argument, any copy from or to the CPU) and synchronising operators."""

    def __init__(self, found: list[str]) -> None:
        super().__init__()
        self.found = found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCHRONISING_OPS:  # before the call: on 'meta' most of them raise
            self.found.append(f"{_caller()}: aten.{name} synchronises with the host")
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        host = [t for t in tensors if t.device.type == "cpu"]
        copy_op = name in ("copy_", "_to_copy", "_copy_from", "to")
        if (copy_op and host) or any(t.dim() > 0 for t in host):
            self.found.append(f"{_caller()}: aten.{name} on host memory "
                              f"({', '.join(sorted({t.device.type for t in tensors}))})")  # fmt: skip
        return out


def capture_hazards(fn: Callable[..., Any], inputs: Sequence[torch.Tensor]) -> list[str]:
    """What in ``fn(*inputs)`` would break (or silently freeze into) a CUDA graph capture,
    found without a GPU.

    Run it on ``meta`` tensors: ``inputs`` and every tensor ``fn`` closes over (a model:
    ``copy.deepcopy(model).to("meta")``) on the ``meta`` device, so that every tensor made on
    the host stands out. Reported, each as ``"file:line: what"`` (the innermost frame outside
    torch): operators on host tensors other than 0-dim scalar arguments and copies from or
    to the host (e.g. ``torch.tensor(...).to(device)``), synchronising operators
    (:data:`SYNCHRONISING_OPS`: ``.item()``, ``nonzero``, boolean indexing, a checked
    inverse), host reads (:data:`HOST_METHODS`), a Python number assigned to a single element,
    and an exception of ``fn`` (a data-dependent shape cannot be computed on ``meta``).

    Returns: the hazards in the order met, duplicates (same line, same message) dropped.
    """
    if not inputs or any(t.device.type != "meta" for t in inputs):
        raise ValueError("capture_hazards: 'inputs' must be tensors on the 'meta' device")
    found: list[str] = []
    try:
        with _HostFunctionProbe(found), _HostDispatchProbe(found):
            fn(*inputs)
    except Exception as exc:  # noqa: BLE001 - reported as a hazard
        where = _caller(traceback.extract_tb(exc.__traceback__))
        found.append(f"{where}: raised {type(exc).__name__}: {str(exc)[:100]}")
    return list(dict.fromkeys(found))


def compile_function(fn: Callable[..., Any], mode: str = "default") -> Callable[..., Any]:
    """``torch.compile(fn, mode=mode, dynamic=False)`` with ``mode`` checked (fixed shapes: one
    compilation per input shape)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode: expected one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    return torch.compile(fn, mode=mode, dynamic=False)


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """An eval-mode copy of ``model`` in which each batch norm that directly follows a
    convolution (``Conv2d``/``ConvTranspose2d`` then ``BatchNorm2d`` in an ``nn.Sequential``) or
    a linear layer (a module's ``linear`` and ``norm`` attributes, as in ``PillarEncoder``) is
    folded into that layer's weights and replaced by ``nn.Identity``. ``model`` is left as it is
    (``inplace``: ``model`` itself is folded and returned, without the copy of every weight; for
    a model nothing else holds, e.g. one just loaded).

    The copy computes ``w' x + b'`` with ``w' = w·γ/√(σ²+ε)``, ``b' = (b − μ)·γ/√(σ²+ε) + β``:
    the same function, rounded differently (about 1e-6 relative in float32). Inference only:
    the folded copy cannot be trained as the original.
    """
    folded = (model if inplace else copy.deepcopy(model)).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            children = list(module)
            for i in range(len(children) - 1):
                layer, norm = children[i], children[i + 1]
                if isinstance(norm, nn.BatchNorm2d) and isinstance(
                    layer, (nn.Conv2d, nn.ConvTranspose2d)
                ):
                    transpose = isinstance(layer, nn.ConvTranspose2d)
                    module[i] = fuse_conv_bn_eval(layer, norm, transpose=transpose)
                    module[i + 1] = nn.Identity()
        linear, norm = getattr(module, "linear", None), getattr(module, "norm", None)
        if isinstance(linear, nn.Linear) and isinstance(norm, nn.BatchNorm1d):
            module.linear = fuse_linear_bn_eval(linear, norm)
            module.norm = nn.Identity()
    return folded


def cast_weights(model: nn.Module, precision: str) -> nn.Module:
    """An eval-mode copy of ``model`` whose convolution and linear weights and biases are
    stored in ``precision``'s autocast dtype (``model`` unchanged; ``"fp32"``: a plain copy).

    Run it under that precision (``configure_inference(precision)``): autocast casts a layer's
    weight to its dtype on every call (a kernel and a pass over the weight each, inside a CUDA
    graph too, since the weight cache is off there); stored in that dtype there is nothing to
    cast, and the values are those autocast would have made. Batch norms stay float32 (fold
    them first, ``fold_batchnorm``). Inference only.
    """
    dtype = PRECISIONS[check_precision(precision)]
    cast = copy.deepcopy(model).eval()
    if dtype is None:
        return cast
    layers = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    for module in cast.modules():
        if isinstance(module, layers):
            module.to(dtype)
    return cast


def _conv_relu(x: torch.Tensor, conv: nn.Conv2d, cudnn: bool = True) -> torch.Tensor:
    """``relu(conv(x))``; on CUDA with ``cudnn`` one ``torch.cudnn_convolution_relu`` call
    (convolution, bias and ReLU in one kernel sequence with one write of the output, instead of
    the convolution, a bias pass and a ReLU pass), the input cast to the weight's dtype (what
    autocast does for a convolution: this fused operator is not on autocast's lists)."""
    if cudnn and x.is_cuda:
        x = x.to(conv.weight.dtype)
        return torch.cudnn_convolution_relu(
            x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups
        )
    return torch.relu(conv(x))


class ConvReLU(nn.Module):
    """``relu(conv(x))`` of a ``Conv2d`` with zero padding (``_conv_relu``)."""

    def __init__(self, conv: nn.Conv2d, cudnn: bool = True) -> None:
        super().__init__()
        self.conv = conv
        self.cudnn = cudnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv_relu(x, self.conv, self.cudnn)


class ShuffleUpsampleReLU(nn.Module):
    """``relu(conv_transpose(x))`` of a ``ConvTranspose2d`` with kernel = stride = ``k`` (no
    padding, groups or dilation), as a 1×1 convolution to ``u·k²`` channels (fused with its bias
    and ReLU on CUDA) and a pixel shuffle: output ``[u, y·k + i, x·k + j] = Σ_c W[c, u, i, j]
    x[c, y, x] + b[u]``, the same sum."""

    def __init__(self, deconv: nn.ConvTranspose2d, cudnn: bool = True) -> None:
        super().__init__()
        c_in, u, k, _ = deconv.weight.shape
        self.k = k
        self.cudnn = cudnn
        self.conv = nn.Conv2d(c_in, u * k * k, 1, bias=True)
        with torch.no_grad():  # channel u·k² + i·k + j <- W[:, u, i, j] (pixel_shuffle's order)
            weight = deconv.weight.permute(1, 2, 3, 0).reshape(u * k * k, c_in, 1, 1)
            self.conv.weight.copy_(weight)
            bias = deconv.bias if deconv.bias is not None else torch.zeros(u)
            self.conv.bias.copy_(bias.repeat_interleave(k * k))
        self.conv.to(deconv.weight.device, deconv.weight.dtype)
        fmt = torch.channels_last if _is_channels_last(deconv.weight) else torch.contiguous_format
        self.conv.weight.data = self.conv.weight.data.contiguous(memory_format=fmt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _conv_relu(x, self.conv, self.cudnn)
        return y if self.k == 1 else pixel_shuffle_channels_last(y, self.k)


def pixel_shuffle_channels_last(y: torch.Tensor, k: int) -> torch.Tensor:
    """``F.pixel_shuffle(y, k)`` (``[S, u·k², h, w]`` → ``[S, u, h·k, w·k]``) returned with
    channels-last strides, in one copy (``F.pixel_shuffle`` returns the plain layout on CUDA,
    which would make the maps concatenated with it, and every reader after, plain too)."""
    s, c, h, w = y.shape
    u = c // (k * k)
    nhwc = y.permute(0, 2, 3, 1).reshape(s, h, w, u, k, k)  # a view of a channels-last y
    out = nhwc.permute(0, 1, 4, 2, 5, 3).reshape(s, h * k, w * k, u)  # [S, h, i, w, j, u]
    return out.permute(0, 3, 1, 2)


def _is_channels_last(weight: torch.Tensor) -> bool:
    return (
        weight.dim() == 4
        and weight.is_contiguous(memory_format=torch.channels_last)
        and not weight.is_contiguous()
    )


def _fusable(layer: nn.Module, cudnn: bool) -> nn.Module | None:
    """The fused replacement of ``layer`` followed by a ReLU, or ``None``."""
    zeros = getattr(layer, "padding_mode", "") == "zeros" and not isinstance(layer.padding, str)
    if isinstance(layer, nn.Conv2d) and zeros:
        return ConvReLU(layer, cudnn)
    if isinstance(layer, nn.ConvTranspose2d):
        k, s = layer.kernel_size, layer.stride
        plain = layer.padding == (0, 0) and layer.output_padding == (0, 0) and layer.groups == 1
        if k[0] == k[1] == s[0] == s[1] and layer.dilation == (1, 1) and plain:
            return ShuffleUpsampleReLU(layer, cudnn)
    return None


def fuse_conv_relu(model: nn.Module, cudnn: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` in which each ``nn.Sequential`` run of a convolution, any
    ``nn.Identity`` (a folded batch norm, ``fold_batchnorm``) and a ``nn.ReLU`` is one fused
    module (``ConvReLU``; a transposed convolution with kernel = stride: ``ShuffleUpsampleReLU``),
    the rest ``nn.Identity``. Fold the batch norms first (a batch norm between them blocks the
    fusion). ``model`` is left as it is.

    On CUDA each fused module writes its output once (cuDNN's fused convolution + bias + ReLU),
    instead of a convolution, a bias pass and a ReLU pass over it (two passes fewer per layer,
    two kernels fewer per layer at batch 1); elsewhere it computes ``relu(conv(x))``. The
    values are the same sums (float32 rounding aside). Inference only. ``cudnn=False``: the
    same modules computing ``relu(conv(x))`` on CUDA too (only the transposed convolutions
    change, to 1×1 convolution + pixel shuffle).
    """
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module)
        for i, layer in enumerate(children):
            j = i + 1
            while j < len(children) and isinstance(children[j], nn.Identity):
                j += 1
            if j < len(children) and isinstance(children[j], nn.ReLU):
                replacement = _fusable(layer, cudnn)
                if replacement is not None:
                    module[i] = replacement
                    for k in range(i + 1, j + 1):
                        module[k] = nn.Identity()
    return fused
