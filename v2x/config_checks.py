"""Config checking: plain Python from Hydra nodes, dataclasses from plain mappings, and the checks
of a config value (a whole number, a switch) whose ``ValueError`` names the field. Imports nothing
from the project: one of ``v2x.common``'s jobs (it re-exports these names; parts import them from
there).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


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
