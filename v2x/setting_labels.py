"""What tells results rows of different settings apart, in words: the leaves of their
``setting`` column (the canonical JSON that ``setting_key`` hashes,
``v2x.sweep_group.setting_text``) in which they differ — ``eval.precision=fp16``,
``codec_kwargs.fade_aware=true`` — for the figures' labels (``v2x.plots``) and the results
table (``v2x.results_table``) where a hash alone would say only *that* two settings differ.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

#: the most differing leaves one label names (then ``+N``)
MAX_SHOWN = 3
#: the longest value shown whole (longer ones are cut, ``…``)
MAX_VALUE_CHARS = 24
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MISSING = "-"


def _value_text(value: object) -> str:
    """A leaf's value as short text: strings as they are, anything else as compact JSON;
    SHA-256 digests by their first 8 hex digits (as the tables show hashes); long values cut."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    text = _HEX64.sub(lambda m: m.group(0)[:8], text)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def setting_leaves(text: str) -> dict[str, str]:
    """A row's ``setting`` JSON flattened: dotted path of every leaf (lists and empty mappings
    are leaves, whole) → its value as short text (``_value_text``); ``{}`` for ``""`` (rows
    written before the column existed)."""
    out: dict[str, str] = {}

    def walk(node: object, path: str) -> None:
        if isinstance(node, Mapping) and node:
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        else:
            out[path] = _value_text(node)

    if text:
        walk(json.loads(text), "")
    return out


def setting_differences(rows: Sequence[Mapping]) -> list[str]:
    """For each of ``rows``, ``path=value`` of each setting leaf in which ``rows`` differ
    (comma-separated, in path order, at most ``MAX_SHOWN`` then ``+N``; a leaf a row lacks
    reads ``-``); ``""`` for every row where they agree in all leaves or one of them has no
    ``setting`` (files from before the column: the caller shows ``setting_key`` instead)."""
    texts = [str(r.get("setting") or "") for r in rows]
    if not all(texts):
        return [""] * len(rows)
    parsed = {text: setting_leaves(text) for text in set(texts)}
    paths = sorted({p for leaves in parsed.values() for p in leaves})
    differing = [
        p for p in paths if len({leaves.get(p, _MISSING) for leaves in parsed.values()}) > 1
    ]
    shown, hidden = differing[:MAX_SHOWN], len(differing) - MAX_SHOWN
    out = []
    for text in texts:
        parts = [f"{p}={parsed[text].get(p, _MISSING)}" for p in shown]
        out.append(", ".join(parts + ([f"+{hidden}"] if hidden > 0 else [])))
    return out


__all__ = ["setting_differences", "setting_leaves"]
