"""The bytes a frame feeds its content hash (``v2x.loading.frames_digest``, the data part of a
sweep's cell key), as a sequence of parts: ``hash_parts``. A reader in a worker process can
send them along with the frame (``v2x.datasets.shared_frames``), so the process that hashes
them walks nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["hash_parts", "part_bytes"]


def hash_parts(value: Any) -> Iterator[bytes | np.ndarray]:
    """The parts ``value`` feeds the hash, in order: ``bytes``, or a C-contiguous array whose
    raw bytes are fed (``part_bytes``; the array itself when it already is one, e.g. an agent's
    points). Arrays are tagged with dtype and shape; dataclasses with their type and field
    names; mappings with their sorted keys; lists and tuples with their length; anything
    else by its ``repr``."""
    import torch

    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        yield f"A{arr.dtype.str}{arr.shape}".encode()
        yield arr
    elif isinstance(value, torch.Tensor):
        yield from hash_parts(value.detach().cpu().numpy())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        yield f"D{type(value).__name__}".encode()
        for f in dataclasses.fields(value):
            yield f.name.encode()
            yield from hash_parts(getattr(value, f.name))
    elif isinstance(value, Mapping):
        yield f"M{len(value)}".encode()
        for key in sorted(value, key=str):
            yield str(key).encode()
            yield from hash_parts(value[key])
    elif isinstance(value, list | tuple):
        yield f"L{len(value)}".encode()
        for item in value:
            yield from hash_parts(item)
    else:
        yield f"S{value!r}".encode()


def part_bytes(part: bytes | np.ndarray) -> bytes | memoryview:
    """The bytes of one ``hash_parts`` part (an array's raw bytes, not copied)."""
    return part if isinstance(part, bytes) else memoryview(part.reshape(-1)).cast("B")
