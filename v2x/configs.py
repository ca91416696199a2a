"""Building config dataclasses from plain mappings (Hydra nodes already converted)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def check_fields(cls: type, data: Mapping, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if ``data`` has keys that ``cls`` has no field for."""
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; valid: {sorted(names)}")


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
