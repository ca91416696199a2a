"""Plumbing every part may use: the registry of interchangeable parts and the plugins that add
to it, and progress bars' switch; and, re-exported from the modules they live in (one job each),
the rest of the plumbing: config helpers (``v2x.config_checks``), atomic file writes
(``v2x.atomic_files``: every file the project writes goes through ``atomic_path``), device
resolution (``v2x.devices``), tensors reused rather than computed again (``v2x.tensor_memo``),
the code hash (``v2x.source_hash``) and the switch that makes GPU numbers reproducible
(``v2x.determinism``: ``configure_determinism``, ``seed_torch``). It imports nothing else from
the project, so the parts may use it under the one-way dependency rule (DESIGN.md): the only
module of the core a part imports (tests/core/test_import_directions.py).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

# the plumbing's other jobs, each in its own module, importable from here as before
from v2x.atomic_files import (  # noqa: F401
    atomic_open,
    atomic_path,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
)
from v2x.config_checks import (  # noqa: F401
    check_fields,
    check_switch,
    check_whole,
    dataclass_from,
    to_plain,
)
from v2x.determinism import CUBLAS_WORKSPACE_CONFIG, configure_determinism, seed_torch  # noqa: F401
from v2x.devices import (  # noqa: F401
    PRECISION_NAMES,
    check_precision,
    memory_share,
    on_device_of,
    precision_dtype,
    resolve_device,
    set_memory_share,
    to_device_async,
    triton_available,
    usable_device,
)
from v2x.source_hash import CODE_PACKAGES, code_hash, source_tree_hash  # noqa: F401
from v2x.tensor_memo import TensorMemo, _versions, takes_tensors, tensor_identity  # noqa: F401

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


def progress_enabled(quiet: bool) -> bool:
    """Draw a progress bar: not ``quiet``, stderr a terminal, and not under CI (``$CI`` unset)."""
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")
