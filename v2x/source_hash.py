"""The hash of the project's source code (``code_hash``) that keys every results cell. Imports
nothing from the project: one of ``v2x.common``'s jobs (it re-exports these names; parts import
them from there).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

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
