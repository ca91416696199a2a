"""What keys a number: stable hashes of configs, the source code's hash, cell ids, and the
SHA-256 of checkpoints and other files a result depends on. A result is reused only when all of
these match (``docs/sweeps.md``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

#: The name that asks for random weights (detector ``checkpoint``, codec ``checkpoint`` option).
UNTRAINED = "untrained"


def model_backbone(model: Any) -> str:
    """The ``backbone`` of a sweep's ``model`` section (``"small"`` when not set): it picks the
    shipped detector that ``checkpoint=shipped`` loads."""
    return str((dict(model) if model else {}).get("backbone", "small"))


def checkpoint_digest(checkpoint: str | None, backbone: str = "small") -> str:
    """SHA-256 of the detector checkpoint the sweep will load (``"untrained"`` for none)."""
    from v2x.perception.checkpoint import shipped_detector_path

    if checkpoint == UNTRAINED:
        return UNTRAINED
    shipped = checkpoint in (None, "", "shipped")
    path = shipped_detector_path(backbone) if shipped else Path(checkpoint)
    if not path.is_file():
        if checkpoint in (None, "", "shipped"):
            raise ValueError(
                f"sweep: field 'checkpoint' is {checkpoint!r} (the shipped detector), but "
                f"{path} does not exist; valid: a checkpoint path, or '{UNTRAINED}' for "
                "random weights (smoke runs)"
            )
        raise ValueError(f"sweep: field 'checkpoint' names {path}, which does not exist")
    return file_digest(path)


def codec_checkpoint_digest(codec: str, checkpoint: str) -> str:
    """SHA-256 of a codec's checkpoint file (``"shipped"`` resolved to the packaged one)."""
    from v2x.semcom.deepjscc import resolve_checkpoint

    path = Path(resolve_checkpoint(checkpoint))
    if not path.is_file():
        raise ValueError(
            f"sweep: codec_options.{codec}.checkpoint names {path}, which does not exist"
        )
    return file_digest(path)


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: The packages whose Python sources make up ``code_hash`` (every package installed under the
#: ``v2x`` namespace; ``tests/core/test_results.py`` checks the list against ``pyproject.toml``).
CODE_PACKAGES: tuple[str, ...] = (
    "v2x",
    "v2x.apps",
    "v2x.datasets",
    "v2x.perception",
    "v2x.semcom",
    "v2x.channels",
    "v2x.conf",
)


def source_tree_hash(roots: Mapping[str, str | os.PathLike]) -> str:
    """SHA-256 over the ``.py`` files under each ``{package name: folder}`` of ``roots``.

    Each file enters as its module path relative to its package (``v2x.channels/awgn.py`` →
    ``v2x.channels.awgn``) and its bytes, in sorted order, so the hash is the same wherever and
    however (editable or not) the package is installed, and changes with any edit, addition,
    removal or rename of a source file. ``__pycache__`` and hidden folders are skipped.
    """
    files: dict[str, Path] = {}
    for package, root in roots.items():
        root = Path(root)
        for path in root.rglob("*.py"):
            rel = path.relative_to(root)
            if any(part == "__pycache__" or part.startswith(".") for part in rel.parts[:-1]):
                continue
            module = ".".join([package, *rel.with_suffix("").parts])
            files.setdefault(module, path)
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


def stable_hash(data: object, length: int = 12) -> str:
    """Hex digest of the canonical JSON of ``data`` (sorted keys; floats by ``repr``)."""
    text = json.dumps(data, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]
