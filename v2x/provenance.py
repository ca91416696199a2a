"""What keys a number: stable hashes of configs, the source code's hash, cell ids, and the
SHA-256 of checkpoints and other files a result depends on. A result is reused only when all of
these match (``docs/sweeps.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from v2x.common import CODE_PACKAGES, check_whole, code_hash, source_tree_hash

__all__ = ["CODE_PACKAGES", "code_hash", "source_tree_hash"]  # re-exported: results keys

#: The name that asks for random weights (detector ``checkpoint``, codec ``checkpoint`` option).
UNTRAINED = "untrained"


def model_backbone(model: Any) -> str:
    """The ``backbone`` of a sweep's ``model`` section (``"small"`` when not set): it picks the
    shipped detector that ``checkpoint=shipped`` loads."""
    return str((dict(model) if model else {}).get("backbone", "small"))


def model_setting(model: Any, checkpoint_sha256: str) -> dict | None:
    """What of a sweep's ``model`` section changes its numbers: all of it for random weights
    (``untrained``: drawn from it), else its decode fields (``DECODE_FIELDS``: set on the
    checkpoint's detector; a field it leaves out keeps the checkpoint's, which its SHA-256
    keys)."""
    from v2x.perception.detector import DECODE_FIELDS

    if checkpoint_sha256 == UNTRAINED:
        return model
    given = dict(model) if model else {}
    return {name: given.get(name) for name in DECODE_FIELDS}


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
        if path.is_dir():
            raise ValueError(
                f"sweep: field 'checkpoint' names {path}, a folder; expected a detector "
                f"checkpoint file (.pt, as v2x-train writes), 'shipped' or '{UNTRAINED}'"
            )
        raise ValueError(f"sweep: field 'checkpoint' names {path}, which does not exist")
    return file_digest(path)


def model_feature_channels(model: Any) -> int:
    """The ``feature_channels`` of a sweep's ``model`` section (the detector's default when not
    set): the ``in_channels`` of the codecs that code its maps."""
    from v2x.perception.detector import DetectorConfig

    value = (dict(model) if model else {}).get("feature_channels", DetectorConfig.feature_channels)
    return check_whole("sweep: field 'model.feature_channels'", value, least=1)


def detector_feature_channels(checkpoint: str | None, model: Any) -> int:
    """The feature channels of the detector a sweep loads: a checkpoint file's own
    ``detector_config`` (it decides the architecture, whatever ``model`` says), else the
    ``model`` section's (the shipped detector of its backbone, or random weights)."""
    if checkpoint not in (None, "", "shipped", UNTRAINED):
        from v2x.perception.checkpoint import read_checkpoint

        saved = read_checkpoint(checkpoint)["detector_config"]
        if "feature_channels" in saved:
            return int(saved["feature_channels"])
    return model_feature_channels(model)


def codec_checkpoint_digest(
    codec: str, checkpoint: str, in_channels: int = 64, detector_sha: str | None = None
) -> str:
    """SHA-256 of a codec's checkpoint file (``"shipped"`` resolved to the packaged one for
    ``in_channels``, ``v2x.semcom.deepjscc_checkpoint.resolve_checkpoint``). With ``detector_sha`` (the
    sweep's detector), a logged warning when the file records that it was trained under
    another detector (``trained_with``, written by ``v2x-train-codec``): its maps may not be
    the ones the codec learned; a checkpoint of the same model runs (e.g. a fine-tuned one),
    another channel count is refused when the codec loads."""
    from v2x.semcom.deepjscc_checkpoint import resolve_checkpoint

    try:
        path = Path(resolve_checkpoint(checkpoint, in_channels))
    except ValueError as exc:
        raise ValueError(f"sweep: codec_options.{codec}.checkpoint: {exc}") from exc
    if not path.is_file():
        raise ValueError(
            f"sweep: codec_options.{codec}.checkpoint names {path}, which does not exist"
        )
    if detector_sha is not None:
        _warn_other_detector(codec, path, in_channels, detector_sha)
    return file_digest(path)


#: file digest of a codec checkpoint -> (the detector it records, its ``in_channels``)
_TRAINED_WITH: dict[str, tuple[str | None, int | None]] = {}


def _warn_other_detector(codec: str, path: Path, in_channels: int, detector_sha: str) -> None:
    """``codec_checkpoint_digest``'s warning, one log line: the codec file at ``path`` records
    another detector than ``detector_sha`` and codes maps of the sweep's ``in_channels`` (a
    codec of another channel count is refused when it loads, with its own message)."""
    import logging

    from v2x.semcom.deepjscc_checkpoint import read_codec_checkpoint

    digest = file_digest(path)
    if digest not in _TRAINED_WITH:  # read once per file content in this process
        blob = read_codec_checkpoint(str(path), in_channels)[1]
        trained = (blob.get("trained_with") or {}).get("detector_sha256")
        _TRAINED_WITH[digest] = (trained, blob["config"].get("in_channels"))
    trained, channels = _TRAINED_WITH[digest]
    if trained and trained != detector_sha and channels in (None, in_channels):
        logging.getLogger("v2x.sweep").warning(
            "sweep: codec_options.%s.checkpoint (%s) was trained under detector %s; this "
            "sweep's detector is %s: its feature maps may not be those the codec learned "
            "(retrain it with v2x-train-codec, or run its detector)",
            codec, path, trained[:12], detector_sha[:12],
        )  # fmt: skip


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of the file at ``path``.

    Remembered in this process per file and state (device, inode, size, modification and
    status-change times in ns, ``_file_state``) once the file is over 2 s old: a sweep hashes
    its checkpoints in every ``plan_sweep``, and a file written, replaced or touched in any way
    since gets a new status-change time (which no program can set back), so it is hashed
    again."""
    state = _file_state(path)
    known = _DIGESTS.get(state)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    # remembered when unchanged while it was read and last changed over 2 s ago (a file system
    # with coarse times could give a file written again within its granularity the same state)
    if _file_state(path) == state and time.time_ns() - max(state[-2:]) > 2_000_000_000:
        _DIGESTS[state] = digest.hexdigest()
    return digest.hexdigest()


def _file_state(path: Path) -> tuple:
    """What ``file_digest`` remembers a file's digest by."""
    st = os.stat(path)
    return (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_DIGESTS: dict[tuple, str] = {}  # file_digest's: _file_state -> SHA-256


#: the libraries whose versions key results: their kernels, generators and coders make the
#: numbers (``library_versions``)
KEYED_LIBRARIES = ("torch", "numpy", "scipy", "sionna-no-rt", "constriction")


def library_versions() -> dict[str, str | None]:
    """``{distribution: installed version}`` of ``KEYED_LIBRARIES`` (``None``: not installed):
    results computed under another stack are not resumed as this one's."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in KEYED_LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


#: a string option with one of these suffixes (or a folder in it) that names a file is keyed
#: by that file's content (``with_file_digests``)
DATA_FILE_SUFFIXES = (".json", ".yaml", ".yml", ".csv", ".txt", ".npz", ".npy", ".pt", ".pth")


def with_file_digests(setting: Any) -> Any:
    """``setting`` (nested mappings and lists) with every string that names an existing file — a
    path with a folder in it or a ``DATA_FILE_SUFFIXES`` suffix — followed by that file's
    SHA-256 (``path@sha256:…``): an option such as the digital codec's ``bler_table`` keys
    results by the table's content, not by its path, so a table edited in place is not resumed
    as the old one."""
    if isinstance(setting, Mapping):
        return {k: with_file_digests(v) for k, v in setting.items()}
    if isinstance(setting, list | tuple):
        return [with_file_digests(v) for v in setting]
    named = isinstance(setting, str) and (os.sep in setting or setting.endswith(DATA_FILE_SUFFIXES))
    if named and Path(setting).is_file():
        return f"{setting}@sha256:{file_digest(Path(setting))}"
    return setting


def canonical_json(data: object) -> str:
    """The canonical JSON of ``data``: sorted keys, no spaces, what JSON cannot hold by
    ``repr`` (what ``stable_hash`` hashes)."""
    return json.dumps(data, sort_keys=True, default=repr, separators=(",", ":"))


def text_hash(text: str, length: int = 12) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def stable_hash(data: object, length: int = 12) -> str:
    """Hex digest of the canonical JSON of ``data`` (``canonical_json``)."""
    return text_hash(canonical_json(data), length)
