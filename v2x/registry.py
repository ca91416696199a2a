"""A tiny name → factory registry for interchangeable parts (fusion, codec, channel, link model).

This module imports nothing from the project, so every package may use it without breaking the
one-way dependency rule (it is a leaf utility, not part of the core's logic).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def import_plugins(modules: Sequence[str] | None, field_name: str = "plugins") -> list[str]:
    """Import user modules that register parts (channels, codecs, fusions, link models) in the
    project's registries, so that a config can name them without editing the package.

    Args:
        modules: importable module names (on ``sys.path``/``PYTHONPATH``), e.g. ``["my_parts"]``.
        field_name: the config field, for error messages.

    Returns:
        the names imported. Raises ``ValueError`` naming the field and the module when one
        cannot be imported.
    """
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

    >>> CHANNELS = Registry("channel")
    >>> @CHANNELS.register("awgn")
    ... class AWGNChannel: ...
    >>> CHANNELS.build("awgn")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)

    def __contains__(self, name: str) -> bool:
        return name in self._factories
