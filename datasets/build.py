"""Write synthetic datasets to disk (what ``v2x-generate`` runs) and the evaluation-split cache.

``generate_dataset(cfg)`` writes ``train``/``val``/``test`` splits of synthetic sequences into a
store folder (``v2x.datasets.store``): one atomic ``.npz`` per frame, a manifest with the seed,
the config, the counts and every file's SHA-256, and a BEV PNG per sequence. It is resumable:
frames already on disk that read back as valid frames with the expected id are kept, only the
missing or corrupt ones are generated again.

Sequence ``s`` of split ``k`` uses the world seed ``seed * 10_000_000 + k * 1_000_000 + s``, so
splits never share a town and the same config always gives the same files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from v2x.common import atomic_path, check_switch, check_whole, progress_enabled, to_plain
from v2x.datasets.store import (
    FORMAT,
    MANIFEST,
    SPLITS,
    VERSION,
    SplitDataset,
    read_frame,
    read_manifest,
    sha256_file,
    write_frame,
    write_manifest,
)
from v2x.datasets.synthetic_config import GENERATOR_VERSION, SyntheticConfig
from v2x.datasets.synthetic_render import FrameRenderer
from v2x.datasets.synthetic_world import SyntheticWorld

log = logging.getLogger(__name__)

_DEFAULTS: dict[str, Any] = {
    "out_dir": "data/synthetic",
    "seed": 0,
    "frames_per_sequence": 10,
    "splits": {"train": 100, "val": 20, "test": 20},
    "quiet": False,
    "overwrite": False,
    "png": True,
}


def _as_dict(cfg: Any) -> dict:
    """A plain dict from a DictConfig / ``SyntheticConfig`` / mapping (``v2x.common.to_plain``)."""
    if isinstance(cfg, SyntheticConfig):
        return cfg.to_dict()
    plain = to_plain(cfg)
    if not isinstance(plain, dict):
        raise ValueError(f"generate: config must be a mapping, got {type(cfg).__name__}")
    return plain


def sequence_seed(seed: int, split: str, sequence: int) -> int:
    """World seed of sequence ``sequence`` of ``split`` (disjoint across splits)."""
    return int(seed) * 10_000_000 + SPLITS.index(split) * 1_000_000 + int(sequence)


def _frame_file(split: str, sequence: int, index: int) -> str:
    return f"{split}/{sequence:05d}_{index:04d}.npz"


def config_differences(old: Any, new: Any, name: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted field, old value, new value)`` for every leaf where two JSON-like configs
    differ (a missing field reads as ``None``), so that a refusal names what changed."""
    old, new = json.loads(json.dumps(old)), json.loads(json.dumps(new))
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [(name, old, new)]
    return [
        diff
        for key in dict.fromkeys([*old, *new])
        for diff in config_differences(old.get(key), new.get(key), f"{name}.{key}" if name else key)
    ]


def generate_dataset(cfg: Any) -> dict:
    """Generate (or complete) a synthetic dataset on disk.

    Args:
        cfg: mapping / DictConfig with ``out_dir``, ``seed``, ``frames_per_sequence``,
            ``splits`` (split → number of frames), ``quiet``, ``overwrite``, ``png`` and
            ``dataset`` (a ``SyntheticConfig`` mapping).

    Returns:
        summary dict: ``root``, ``counts`` (frames per split), ``generated`` and ``reused``.

    Raises:
        ValueError: bad config fields, or an existing folder written with another config
            (unless ``overwrite``).
    """
    data = {**_DEFAULTS, **_as_dict(cfg)}
    dataset_cfg = SyntheticConfig.from_dict({k: v for k, v in (data.get("dataset") or {}).items()})
    if data["out_dir"] is None or not str(data["out_dir"]).strip():
        raise ValueError(f"generate: field 'out_dir' must name a folder, got {data['out_dir']!r}")
    root = Path(os.path.expanduser(str(data["out_dir"])))
    existing = next(p for p in (root, *root.parents) if p.exists())  # (the root / always does)
    if not existing.is_dir():
        raise ValueError(
            f"generate: field 'out_dir' is {str(data['out_dir'])!r}, but {str(existing)!r} is a "
            "file; expected a folder to write the dataset into (made if missing)"
        )
    for switch in ("quiet", "overwrite", "png"):
        check_switch(f"generate: field {switch!r}", data[switch])
    seed = check_whole("generate: field 'seed'", data["seed"], 0)
    fps_seq = check_whole("generate: field 'frames_per_sequence'", data["frames_per_sequence"], 1)
    splits = {str(k): v for k, v in dict(data["splits"]).items()}
    for name, count in splits.items():
        if name not in SPLITS:
            raise ValueError(
                f"generate: field 'splits' must map names in {SPLITS} to counts >= 0, "
                f"got {name}: {count}"
            )
        splits[name] = check_whole(f"generate: field 'splits.{name}'", count, 0)
    identity = {
        "seed": seed,
        "frames_per_sequence": fps_seq,
        "dataset": dataset_cfg.to_dict(),
        "generator_version": GENERATOR_VERSION,
    }
    previous: dict = {}
    trust_files = True  # frames on disk were written with this identity
    if (root / MANIFEST).exists():
        old = read_manifest(root)
        old_identity = {k: old.get(k) for k in identity}
        if json.loads(json.dumps(old_identity)) != json.loads(json.dumps(identity)):
            if not data["overwrite"]:
                changed = "; ".join(
                    f"{name}: {was!r} there, {now!r} here"
                    for name, was, now in config_differences(old_identity, identity)
                )
                raise ValueError(
                    f"{root / MANIFEST}: written with other settings ({changed}); expected the "
                    "same settings to resume it, another out_dir, or overwrite=true"
                )
            trust_files = False
        else:
            previous = {
                e["file"]: e["sha256"] for entries in old["splits"].values() for e in entries
            }

    manifest = {
        "format": FORMAT,
        "version": VERSION,
        **identity,
        "splits": {},
        "counts": {},
    }
    # Record the identity first, so that frames written before a crash are attributable.
    if trust_files and not (root / MANIFEST).exists():
        write_manifest(root, manifest)
    total = sum(splits.values())
    renderer = FrameRenderer(dataset_cfg)
    from tqdm import tqdm

    bar = tqdm(
        total=total, desc=f"v2x-generate {root}", unit="frame",
        disable=not progress_enabled(bool(data["quiet"])),
    )  # fmt: skip
    generated = reused = 0
    try:
        for split, count in splits.items():
            entries: list[dict] = []
            manifest["splits"][split] = entries
            n_seq = -(-count // fps_seq)
            for s in range(n_seq):
                n_frames = min(fps_seq, count - s * fps_seq)
                world_seed = sequence_seed(seed, split, s)
                world: SyntheticWorld | None = None
                for i in range(n_frames):
                    rel = _frame_file(split, s, i)
                    frame_id = f"synthetic-{world_seed}/{i:06d}"
                    sha = (
                        _existing(root / rel, frame_id, previous.get(rel)) if trust_files else None
                    )
                    if sha is None:
                        if world is None:
                            world = SyntheticWorld(dataset_cfg, world_seed)
                        while world.step_index < i:
                            world.step()
                        frame = renderer.render(world, i)
                        sha = write_frame(root / rel, frame)
                        generated += 1
                        if generated == 1:  # the first frame's size: room for the rest?
                            left = total - reused - generated
                            _check_room(root, (root / rel).stat().st_size, left, total)
                        if data["png"] and i == 0:
                            _preview(frame, root / split / "preview" / f"{s:05d}.png")
                    else:
                        reused += 1
                        png = root / split / "preview" / f"{s:05d}.png"
                        if data["png"] and i == 0 and not png.exists():
                            _preview(read_frame(root / rel), png)
                    entries.append(
                        {"file": rel, "frame_id": frame_id, "sha256": sha, "sequence": s,
                         "index": i, "world_seed": world_seed}
                    )  # fmt: skip
                    bar.update(1)
                manifest["counts"][split] = len(entries)
                write_manifest(root, manifest)
        for split in splits:
            manifest["counts"][split] = len(manifest["splits"][split])
        write_manifest(root, manifest)
    finally:
        bar.close()
    return {"root": str(root), "counts": dict(manifest["counts"]), "generated": generated,
            "reused": reused}  # fmt: skip


def _check_room(root: Path, frame_bytes: int, left: int, total: int) -> None:
    """``ValueError`` before ``left`` more frames of about ``frame_bytes`` each are written
    into ``root`` when its disk has not the room (with 5 % to spare): the frames fill it part
    way otherwise (a sweep's ``data.num_frames=100000`` wrote 4.7 GB in 30 s). The frames
    written are kept (the same command resumes them elsewhere or with a smaller count)."""
    import shutil

    need = 1.05 * frame_bytes * left
    free = shutil.disk_usage(root).free
    if need > free:
        raise ValueError(
            f"generate: {total} frames of about {frame_bytes / 1e6:.1f} MB each need "
            f"≈ {need / 1e9:.1f} GB more in {root}, whose disk has {free / 1e9:.1f} GB free; "
            "expected fewer frames (a sweep's data.num_frames, v2x-generate's splits) or a "
            "folder on a larger disk (data.cache_dir or V2X_CACHE; v2x-generate's out_dir)"
        )


def _existing(path: Path, frame_id: str, manifest_sha: str | None) -> str | None:
    """SHA-256 of a valid existing frame file with the expected id, else ``None``."""
    if not path.is_file():
        return None
    sha = sha256_file(path)
    if manifest_sha is not None:  # listed: trust exactly the recorded bytes
        return sha if sha == manifest_sha else None
    try:  # not (yet) in a manifest: accept it only if it reads back as the expected frame
        frame = read_frame(path)
    except ValueError:
        return None
    return sha if frame.frame_id == frame_id else None


def _preview(frame, path: Path) -> None:
    from v2x.datasets.preview import render_bev_png

    with atomic_path(path) as tmp:
        render_bev_png(frame, tmp)


def cache_root() -> Path:
    """The cache folder: ``$V2X_CACHE`` or ``~/.cache/v2x``."""
    return Path(os.environ.get("V2X_CACHE") or Path.home() / ".cache" / "v2x")


def cached_split(
    cfg: SyntheticConfig | Mapping | None = None,
    split: str = "test",
    num_frames: int = 20,
    frames_per_sequence: int = 10,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    quiet: bool = True,
) -> SplitDataset:
    """A small synthetic split, generated into the cache on first use and reused afterwards.

    The cache folder is keyed by a hash of everything that determines the frames, so a changed
    config never returns stale data. Generation is resumable and atomic per frame, so an
    interrupted first use is completed by the next call.

    Args:
        cfg: the world's ``SyntheticConfig`` (or a mapping of its fields); default config if None.
        split: ``train`` / ``val`` / ``test``.
        num_frames: frames in the split.
        frames_per_sequence: frames per 10 Hz sequence.
        seed: dataset seed.
        cache_dir: cache folder (default ``cache_root()``).
        quiet: no progress bar.

    Returns:
        the split as a ``SplitDataset`` of ``CoopFrame``.
    """
    dataset_cfg = SyntheticConfig.from_dict(_as_dict(cfg) if cfg is not None else {})
    if split not in SPLITS:
        raise ValueError(f"cached_split: field 'split' must be one of {SPLITS}, got {split!r}")
    key_data = {
        "dataset": dataset_cfg.to_dict(),
        "split": split,
        "num_frames": int(num_frames),
        "frames_per_sequence": int(frames_per_sequence),
        "seed": int(seed),
        "version": VERSION,
        "generator_version": GENERATOR_VERSION,
    }
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    out = root / f"synthetic-{split}-{key}"
    manifest_ok = False
    if (out / MANIFEST).exists():
        try:
            manifest = read_manifest(out)
            manifest_ok = manifest["counts"].get(split) == int(num_frames) and all(
                (out / e["file"]).is_file() for e in manifest["splits"].get(split, [])
            )
        except ValueError:
            manifest_ok = False
    if not manifest_ok:  # said, since it may take long (about 1.4 MB per default frame)
        log.info(
            "frames: generating %d synthetic %s frames into %s (first use; reused afterwards)",
            int(num_frames), split, out,
        )  # fmt: skip
        generate_dataset(
            {
                "out_dir": str(out),
                "seed": seed,
                "frames_per_sequence": frames_per_sequence,
                "splits": {split: int(num_frames)},
                "quiet": quiet,
                "overwrite": True,
                "png": False,
                "dataset": dataset_cfg.to_dict(),
            }
        )
    return SplitDataset(out, split)
