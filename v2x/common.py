"""Plumbing every part may use: the registry of interchangeable parts, atomic file writes,
config helpers, device resolution, progress bars' switch and the switch that makes GPU numbers
reproducible (``configure_determinism``). It imports nothing from the project, so the parts may
use it under the one-way dependency rule (DESIGN.md): the only module of the core a part imports.
Every file the project writes goes through ``atomic_path``: a reader never sees a half written
file, a crash leaves the previous version in place, and new files get the permissions of any file
the user creates (``0666`` less the umask), so shared output folders work.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import numbers
import os
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# The registry of interchangeable parts (fusion, codec, channel, link model) and plugins.
# ---------------------------------------------------------------------------------------------


def import_plugins(modules: Sequence[str] | None, field_name: str = "plugins") -> list[str]:
    """Import user ``modules`` (on ``PYTHONPATH``, e.g. ``["my_parts"]``) that register parts in
    the project's registries, so a config can name them; returns their names. ``ValueError``
    naming ``field_name`` and the module when one cannot be imported."""
    done = []
    for name in modules or []:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{field_name}: expected module names, got {name!r}")
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(
                f"{field_name}: cannot import module {name!r} ({exc}); it must be importable, "
                "e.g. on PYTHONPATH"
            ) from exc
        done.append(name)
    return done


class Registry(Generic[T]):
    """Maps a config name (``"awgn"``, ``"max"``) to a factory.

    A registry of parts with a base class (``Registry("channel", base=Channel)``) accepts only
    subclasses of it, or factory functions that declare the subclass they build
    (``register(name, builds=FadingChannel)``): what a part can do is then read from its class
    (``part_class(name)``, e.g. ``Codec.sweep_arguments``), never probed on the factory.

    >>> CHANNELS = Registry("channel")
    >>> @CHANNELS.register("awgn")
    ... class AWGNChannel: ...
    >>> CHANNELS.build("awgn")
    """

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._factories: dict[str, Callable[..., T]] = {}
        self._classes: dict[str, type | None] = {}

    def register(
        self, name: str, builds: type | None = None
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering a class, or a factory function that returns ``builds``
        instances, under ``name`` (``TypeError`` when the registry has a base class that
        neither is a subclass of; ``ValueError`` for a name taken by another factory)."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls = factory if isinstance(factory, type) else builds
            if self.base is not None and not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(
                    f"{self.kind} {name!r}: register a subclass of {self.base.__name__}, or a "
                    f"factory function with builds=<the {self.base.__name__} subclass it returns>"
                )
            self._factories[name] = factory
            self._classes[name] = cls
            return factory

        return decorator

    def part_class(self, name: str) -> type:
        """The class ``name`` builds (where its declared capabilities live); ``ValueError`` for
        an unknown name or a registry without a base class whose factory declared none."""
        self.get(name)
        cls = self._classes.get(name)
        if cls is None:
            raise ValueError(f"{self.kind} {name!r} declares no class (register(..., builds=))")
        return cls

    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str, field: str = "") -> Callable[..., T]:  # field: "<where>: " or ""
        try:
            return self._factories[name]
        except KeyError:
            raise ValueError(
                f"{field}unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)

    def __contains__(self, name: str) -> bool:
        return name in self._factories


# ---------------------------------------------------------------------------------------------
# Reproducible numbers, then atomic writes.
# ---------------------------------------------------------------------------------------------
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
    with (
        atomic_path(path) as tmp,
        open(tmp, mode.replace("x", "w").replace("a", "w"), **kwargs) as handle,
    ):
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


# ---------------------------------------------------------------------------------------------
# Config helpers: plain Python from Hydra nodes, dataclasses from plain mappings, devices.
# ---------------------------------------------------------------------------------------------


def to_plain(obj: Any) -> Any:
    """OmegaConf containers (resolved), mappings, lists and tuples → plain ``dict``/``list``
    (recursively; path-likes become ``str``); anything else is returned as is. The project's one
    config-to-plain conversion (omegaconf is imported only when it is already loaded)."""
    import sys

    omegaconf = sys.modules.get("omegaconf")
    if omegaconf is not None and isinstance(obj, omegaconf.DictConfig | omegaconf.ListConfig):
        return omegaconf.OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj


def check_fields(cls: type, data: Mapping, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if ``data`` has keys that ``cls`` has no field for."""
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; valid: {sorted(names)}")


def check_whole(where: str, value: Any, least: int = 0) -> int:
    """``value`` as an int >= ``least``; ``ValueError`` naming ``where`` (e.g.
    ``"train: field 'train.steps'"``) and the value for anything else (a bool, a float, text)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{where} must be a whole number >= {least}, got {value!r}")
    return int(value)


def check_switch(where: str, value: Any) -> bool:
    """``value`` if it is a bool, else ``ValueError`` naming ``where`` (config text such as
    ``"maybe"`` would read as true)."""
    if not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false, got {value!r}")
    return value


def dataclass_from(cls: type[T], data: Mapping | T | None, where: str, **defaults: Any) -> T:
    """``cls(**defaults, **data)`` after checking the keys; ``None`` gives ``cls()``, an
    instance is returned as is."""
    if data is None:
        return cls(**defaults)
    if isinstance(data, cls):
        return data
    data = dict(data)
    check_fields(cls, data, where)
    return cls(**{**defaults, **data})


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


def takes_tensors(own: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor]) -> bool:
    """Whether a module whose state dict is ``own`` can take the tensors of ``weights`` (a CPU
    state dict) themselves, ``load_state_dict(weights, assign=True)``: the same keys, shapes
    and dtypes, and ``own`` on the CPU or the meta device (a module built uninitialised)."""
    return own.keys() == weights.keys() and all(
        w.device.type == "cpu" and o.device.type in ("cpu", "meta")
        and w.shape == o.shape and w.dtype == o.dtype
        for o, w in ((own[k], weights[k]) for k in own)
    )  # fmt: skip


def tensor_identity(t: torch.Tensor) -> tuple[Any, tuple]:
    """``(weak reference to t's storage, key)``: what identifies ``t``'s values without reading
    them. The key holds the storage's address, offset, shape, strides, dtype, device and version
    counter (bumped by every in-place write to any view of the storage); check the reference
    (``expired()``) before trusting a match, so that a freed storage's successor at the same
    address is never taken for it."""
    from torch.multiprocessing.reductions import StorageWeakRef

    storage = t.untyped_storage()
    ref = StorageWeakRef(storage)
    key = (ref.cdata, storage.data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(),
           t.dtype, t.device, t._version)  # fmt: skip
    return ref, key


class TensorMemo:
    """Values computed from tensors, kept per input identity (``tensor_identity``): the last
    ``size`` of them, least recently used dropped first.

    A sweep sends the same maps at ``K`` SNRs, each condition's block a view of one tensor
    (``v2x.condition_streams``): a codec keeps here what it computes from the maps alone, and
    the ``K - 1`` repeats reuse it. A hit is returned only while the inputs are unchanged
    (same storage, alive, not written since) and the value's own tensors have not been written
    in place (their version counters are checked too), so a caller that modifies what it got
    makes the next call compute afresh. Nothing is kept for inference tensors (no version
    counter) or while autograd records a graph through the inputs.
    """

    def __init__(self, size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"TensorMemo: size must be >= 1, got {size}")
        self.size = size
        self._entries: dict[tuple, tuple[list, Any, tuple]] = {}

    def get(self, inputs: Sequence[torch.Tensor], compute: Callable[[], T]) -> T:
        """``compute()``'s value for ``inputs`` (every tensor it reads: data and parameters),
        computed now or kept from an earlier call with the same inputs."""
        import torch

        if any(t.is_inference() for t in inputs):  # (no version counter: writes go unseen)
            return compute()
        if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
            return compute()  # a value with autograd history belongs to its own graph
        identities = [tensor_identity(t) for t in inputs]
        refs = [ref for ref, _ in identities]
        key = tuple(k for _, k in identities)
        hit = self._entries.pop(key, None)
        alive = hit is not None and not any(r.expired() for r in hit[0])
        if alive and _versions(hit[1]) == hit[2]:
            self._entries[key] = hit  # most recently used last
            return hit[1]
        value = compute()
        self._entries[key] = (refs, value, _versions(value))
        while len(self._entries) > self.size:
            del self._entries[next(iter(self._entries))]
        return value

    def __getstate__(self) -> dict:  # copies and pickles start empty (weak references do not copy)
        return {"size": self.size}

    def __setstate__(self, state: dict) -> None:
        self.size, self._entries = state["size"], {}


def _versions(value: Any) -> tuple:
    """The version counters of the tensors in ``value`` (a tensor, or a tuple / list of them and
    other values)."""
    import torch

    items = value if isinstance(value, (tuple, list)) else (value,)
    return tuple(v._version for v in items if isinstance(v, torch.Tensor))


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


def progress_enabled(quiet: bool) -> bool:
    """Draw a progress bar: not ``quiet``, stderr a terminal, and not under CI (``$CI`` unset)."""
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


#: The packages whose sources make up ``code_hash`` (every package under the ``v2x`` namespace;
#: ``tests/core/test_results.py`` checks the list against ``pyproject.toml``).
CODE_PACKAGES: tuple[str, ...] = (
    "v2x", "v2x.apps", "v2x.datasets", "v2x.perception", "v2x.semcom", "v2x.channels", "v2x.conf",
)  # fmt: skip


def source_tree_hash(roots: Mapping[str, str | os.PathLike]) -> str:
    """SHA-256 over the ``.py`` and ``.json`` files (tables code reads, e.g. the digital chain's
    ``semcom/bler_table.json``) under each ``{package name: folder}`` of ``roots``. Each file
    enters as its module path in its package (``v2x.channels/awgn.py`` → ``v2x.channels.awgn``;
    a table keeps its suffix) and its bytes, sorted, so the hash is the same however the package
    is installed and changes with any edit, addition, removal or rename of such a file.
    ``__pycache__`` and hidden folders are skipped."""
    files: dict[str, Path] = {}
    for package, root in roots.items():
        root = Path(root)
        for path in [*root.rglob("*.py"), *root.rglob("*.json")]:
            rel = path.relative_to(root)
            if any(part == "__pycache__" or part.startswith(".") for part in rel.parts[:-1]):
                continue
            module = ".".join([package, *rel.with_suffix("").parts])
            files.setdefault(module + ("" if path.suffix == ".py" else path.suffix), path)
    digest = hashlib.sha256()
    for module in sorted(files):
        data = files[module].read_bytes()
        digest.update(f"{module}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def code_hash() -> str:
    """``source_tree_hash`` of the installed ``v2x`` packages (``CODE_PACKAGES``), once per process.

    Keys every results cell: results computed by other code are never resumed or mixed.
    """
    roots: dict[str, str] = {}
    for name in CODE_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"results: package {name} is not installed")
        roots[name] = list(spec.submodule_search_locations)[0]
    return source_tree_hash(roots)
