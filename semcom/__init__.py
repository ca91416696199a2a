"""Semantic communication: feature codecs (identity, analog, digital, digital_payload, deepjscc,
selective).

Each codec module registers itself in ``CODECS`` on import; the imports below populate it.
"""

from v2x.semcom.base import CODECS, Codec, Cost, Transmission

__all__ = ["CODECS", "Codec", "Cost", "Transmission", "build_codec"]


def build_codec(name: str, **kwargs) -> Codec:
    """Build a registered codec by config name."""
    _load_all()
    return CODECS.build(name, **kwargs)


def _load_all() -> None:
    # Imported lazily: the digital chain pulls in Sionna's FEC stack.
    import importlib

    for module in _CODEC_MODULES:
        importlib.import_module(module)


# Codec modules (each adds itself to CODECS). Add a line when you add a codec.
_CODEC_MODULES: list[str] = [
    "v2x.semcom.identity",
    "v2x.semcom.digital",
    "v2x.semcom.digital_payload",
    "v2x.semcom.deepjscc",
    "v2x.semcom.selective",
]
