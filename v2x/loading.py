"""Frames, models and devices for the apps: the frame set a config names (synthetic split, a
``v2x-generate`` store, V2X-Sim 2.0, DAIR-V2X-C), its content hash and identity, the detector
a config names, device resolution, and progress bars.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import torch

from v2x.common import check_whole, progress_enabled, resolve_device, to_plain
from v2x.datasets.frame import CoopFrame
from v2x.detector_loading import detector_from, load_model  # noqa: F401 - also reachable here
from v2x.sweep_config import READERS
from v2x.sweep_plan import UNTRAINED  # noqa: F401 - the loading API

log = logging.getLogger(__name__)


def load_frames(data: Mapping, quiet: bool = False) -> list[CoopFrame]:
    """The sweep's frames.

    ``source=synthetic``: ``num_frames`` frames of the built-in world (``frames_per_sequence``
    per 10 Hz town, dataset seed ``seed``), generated into the cache on first use
    (``v2x.datasets.build.cached_split``; ``cache_dir`` default ``$V2X_CACHE`` or
    ``~/.cache/v2x``). ``source=store``: the ``split`` of a ``v2x-generate`` folder ``path``,
    truncated to ``num_frames``. ``source=v2xsim`` / ``dair_v2x`` / ``opv2v`` (``READERS``): the
    real-data readers on the dataset root ``path`` with ``reader`` as their keyword arguments
    (e.g. ``split``, ``split_scenes``, ``labels``; see ``conf/dataset/<source>.yaml``), the first
    ``num_frames`` frames.
    """
    return FrameStream(data, quiet).frames()


def _frame_reader(
    data: Mapping, quiet: bool, processes: Executor | None = None, part: slice = slice(None)
) -> tuple[Callable[[], Iterator[CoopFrame]], int]:
    """``(read, count)``: ``read()`` yields ``load_frames``' frames in order (those of ``part``
    only), ``count`` of them (a synthetic split is generated here, before anything is read);
    stored frames are read in the worker ``processes`` when given (``SplitDataset.iter_frames``)."""
    if data["source"] in READERS:
        dataset = open_reader(data)
        wanted = range(_frames_wanted(data, len(dataset)))[part]
        return lambda: (dataset[i] for i in wanted), len(wanted)
    if data.get("reader"):  # (it was ignored: the frames of another source, without a word)
        raise ValueError(
            f"sweep: field 'data.reader' is {dict(data['reader'])!r}, but data.source is "
            f"{data['source']!r}; expected it empty: reader options apply to {', '.join(READERS)}"
        )
    if data["source"] == "store":
        from v2x.datasets.store import load_split

        split = load_split(Path(str(data["path"])), str(data["split"]))
        count = _frames_wanted(data, len(split))
    else:
        from v2x.datasets.build import SPLITS, cached_split

        if data["split"] not in SPLITS:  # (before any frame is generated)
            raise ValueError(
                f"sweep: field 'data.split' is {data['split']!r}; valid choices for "
                f"data.source=synthetic: {', '.join(SPLITS)}"
            )
        if data.get("cache_dir"):  # (a file there: one message, not the OS error)
            from v2x.output_folders import writable_folder

            writable_folder(data["cache_dir"], "sweep: field 'data.cache_dir'")
        split = cached_split(
            dict(data.get("synthetic") or {}),
            split=str(data["split"]),
            num_frames=int(data["num_frames"]),
            frames_per_sequence=int(data["frames_per_sequence"]),
            seed=int(data["seed"]),
            cache_dir=data.get("cache_dir"),
            quiet=quiet or not progress_enabled(quiet),
        )
        count = len(split)
    wanted = range(count)[part]

    def read() -> Iterator[CoopFrame]:
        done = 0
        try:
            for frame in split.iter_frames(wanted, processes=processes):
                done += 1
                yield frame
        except BrokenProcessPool as err:  # a worker died (e.g. out of memory): read them here
            log.warning("frames: the reading processes stopped (%s); reading in this one", err)
            yield from split.iter_frames(wanted[done:])

    return read, len(wanted)


class FrameStream(Sequence[CoopFrame]):
    """``load_frames``' frames, read in order on a background thread from construction on, and
    their content hash (``frames_digest``) taken as they arrive: a sweep's device starts on the
    first frame batch while the others are still read.

    The source is opened (a synthetic split generated) in the constructor, so its errors are
    raised there. ``len()`` is known at once; indexing waits for the frames it asks for;
    ``frames()`` and ``data_id()`` wait for all of them. A frame that cannot be read stops the
    reading, and every wait from then on raises its error (which names the file and field).
    Stored and synthetic frames are read in the worker ``processes`` when given (a sweep's AP
    workers, idle until the first group ends): on threads of this process the reading holds
    the GIL that the device's thread needs. ``part``: only those of the frames (e.g. a device
    worker's shard of a sweep's), the others not read.
    """

    def __init__(
        self,
        data: Mapping,
        quiet: bool = False,
        processes: Executor | None = None,
        part: slice = slice(None),
    ) -> None:
        self._data = data
        read, self._count = _frame_reader(data, quiet, processes, part)
        self._frames: list[CoopFrame] = []
        self._digest = FramesDigest()
        self._error: BaseException | None = None
        self._done = self._closed = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(
            target=self._read, args=(read,), name="v2x-frames", daemon=True
        )
        self._reader.start()

    def _read(self, read: Callable[[], Iterator[CoopFrame]]) -> None:
        try:
            for frame in read():
                if self._closed:
                    break
                self._digest.add(frame)
                with self._changed:
                    self._frames.append(frame)
                    self._changed.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            self._error = exc
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def _wait(self, count: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: len(self._frames) >= count or self._done)
        if len(self._frames) < count:
            if self._error is not None:
                raise self._error
            closed = " (the reading was closed)" if self._closed else ""
            raise RuntimeError(f"frames: {len(self._frames)} of {self._count} were read{closed}")

    def close(self) -> None:
        """Stop reading once the frame being read arrives, and let go of the frames read (a
        device worker's shard of a sweep that ended early: its reading went on in the
        background); waits for frames not read then raise."""
        self._closed = True
        self._reader.join()
        with self._changed:
            self._frames.clear()
            self._changed.notify_all()

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence's signature
        if isinstance(index, slice):
            wanted = range(*index.indices(self._count))
            if wanted:
                self._wait(max(wanted) + 1)
            return [self._frames[i] for i in wanted]
        if not -self._count <= index < self._count:
            raise IndexError(f"frames: index {index} out of range [0, {self._count})")
        self._wait(index % self._count + 1)
        return self._frames[index]

    def frames(self) -> list[CoopFrame]:
        """Every frame, once all are read."""
        self._wait(self._count)
        return list(self._frames)

    def data_id(self) -> dict:
        """``data_identity`` of the frames, once all are read."""
        self._wait(self._count)
        return data_identity(self._data, self._frames, self._digest.hexdigest())


def reader_class(source: str) -> type:
    """The reader class of ``READERS[source]`` (imported on first use)."""
    import importlib

    module, name = READERS[source].split(":")
    return getattr(importlib.import_module(module), name)


def open_reader(data: Mapping, app: str = "sweep", section: str = "data") -> Any:
    """The real-data reader of a ``data`` section (``source`` one of ``READERS``) on the
    dataset root ``path`` with ``reader`` as its keyword arguments; messages name ``app`` and
    the config ``section``."""
    if data["source"] not in READERS:
        raise ValueError(
            f"{app}: field '{section}.source' is {data['source']!r}; a real-data reader needs "
            f"one of {', '.join(READERS)}"
        )
    if not data.get("path"):
        raise ValueError(
            f"{app}: field '{section}.path' must name the dataset root when "
            f"{section}.source={data['source']}"
        )
    if not os.path.isdir(data["path"]):  # (the reader named a file under it, as if it existed)
        raise ValueError(
            f"{app}: field '{section}.path' is {str(data['path'])!r}, which is not a folder; "
            f"expected the {data['source']} dataset root (docs/real_data.md)"
        )
    Reader = reader_class(data["source"])
    reader = dict(data.get("reader") or {})
    valid = set(inspect.signature(Reader.__init__).parameters) - {"self", "root"}
    if set(reader) - valid:  # (a misspelled option was a TypeError traceback)
        raise ValueError(
            f"{app}: field '{section}.reader' has unknown field(s) "
            f"{sorted(set(reader) - valid)} for {data['source']}; valid: {sorted(valid)}"
        )
    if data["source"] == "v2xsim" and reader.get("split") and not reader.get("split_scenes"):
        reader["split_scenes"] = v2xsim_split_scenes()  # the shipped split, as dataset=v2xsim
    if data["source"] != "opv2v" and reader.get("split") is None and reader.get("scenes") is None:
        # (data.split reads as one; an OPV2V root without a split is a split folder itself)
        log.warning(
            "%s: the %s dataset at %s is read whole, train, val and test alike (%s.split "
            "applies to synthetic and store data only); choose a part with "
            "'+%s.reader.split=train|val|test' (dataset=%s: dataset.split=...)",
            section, data["source"], data["path"], section, section, data["source"],
        )  # fmt: skip
    return Reader(str(data["path"]), **reader)


def v2xsim_split_scenes() -> dict[str, list[int]]:
    """The scene-index split of ``conf/dataset/v2xsim.yaml`` (``split_scenes``: the 80/10/10
    split of OpenCOOD-family V2X-Sim 2.0 info generators), for a ``split`` given alone."""
    from importlib import resources

    from omegaconf import OmegaConf

    text = resources.files("v2x.conf").joinpath("dataset", "v2xsim.yaml").read_text()
    return OmegaConf.to_container(OmegaConf.create(text).split_scenes)


def _reader_settings(data: Mapping) -> str:
    """The settings that choose the frames, for messages."""
    keys = ("split",) if data["source"] == "store" else ("reader",)
    return ", ".join(f"{k}={data.get(k)!r}" for k in keys)


def _frames_wanted(data: Mapping, available: int, app: str = "sweep", section: str = "data") -> int:
    """``data.num_frames`` (``None``: all), checked against the frames the dataset has (never
    silently fewer)."""
    where = f"{data['path']}" + (f" (split {data['split']})" if data["source"] == "store" else "")
    if available == 0:  # e.g. an empty split: an empty sweep is not a result
        raise ValueError(
            f"data: the {data['source']} dataset at {where} gives no frames with the settings "
            f"of 'data' ({_reader_settings(data)}); expected at least one"
        )
    if data.get("num_frames") is None:
        return available
    wanted = int(data["num_frames"])
    if wanted > available:
        raise ValueError(
            f"{app}: field '{section}.num_frames' is {wanted}, but the {data['source']} dataset "
            f"at {where} has {available} frame(s); set {section}.num_frames <= {available}"
        )
    return wanted


def frames_digest(frames: Sequence[CoopFrame]) -> str:
    """SHA-256 of the frames' content (every agent's id, kind, pose, points and timestamp; the
    boxes, classes, track ids, visibility and meta), in order: the data part of a cell's key."""
    digest = FramesDigest()
    for frame in frames:
        digest.add(frame)
    return digest.hexdigest()


class FramesDigest:
    """``frames_digest`` taken one frame at a time (``add`` in order, then ``hexdigest``)."""

    def __init__(self) -> None:
        import hashlib

        self._sha = hashlib.sha256()

    def add(self, frame: CoopFrame) -> None:
        self._feed(frame)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def _feed(self, value: Any) -> None:
        import numpy as np

        update = self._sha.update
        if isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value)
            update(f"A{arr.dtype.str}{arr.shape}".encode())
            update(memoryview(arr.reshape(-1)).cast("B"))  # tobytes()'s bytes, no copy
        elif isinstance(value, torch.Tensor):
            self._feed(value.detach().cpu().numpy())
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            update(f"D{type(value).__name__}".encode())
            for f in dataclasses.fields(value):
                update(f.name.encode())
                self._feed(getattr(value, f.name))
        elif isinstance(value, Mapping):
            update(f"M{len(value)}".encode())
            for key in sorted(value, key=str):
                update(str(key).encode())
                self._feed(value[key])
        elif isinstance(value, list | tuple):
            update(f"L{len(value)}".encode())
            for item in value:
                self._feed(item)
        else:
            update(f"S{value!r}".encode())


def data_identity(data: Mapping, frames: Sequence[CoopFrame], digest: str | None = None) -> dict:
    """What the results record of the frame set: source, path, split (``split_label``), frame
    count, content hash (``digest``: the frames' ``frames_digest``, when already taken)."""
    return {
        "source": str(data["source"]),
        "path": "" if data.get("path") in (None, "") else str(data["path"]),
        "split": split_label(data),
        "num_frames": len(frames),
        "hash": frames_digest(frames) if digest is None else digest,
    }


def split_label(data: Mapping) -> str:
    """The part of the dataset a frame set is, as the results' ``split`` column says it:
    ``data.split`` for synthetic and stored frames; for a real-data reader its own ``split``
    (``data.split`` is not read there), else the scenes it was given, else ``all``."""
    if data["source"] not in READERS:
        return str(data["split"])
    reader = data.get("reader") or {}
    if reader.get("split") is not None:
        return str(reader["split"])
    scenes = reader.get("scenes", reader.get("scenarios"))
    return "all" if scenes is None else f"scenes {list(scenes)}"


_DEVICE_CHOICES = "cpu, cuda, cuda:N, auto, all, or a list of one kind such as [cuda:0,cuda:1]"


def resolve_devices(value: str | Sequence[str]) -> list[torch.device]:
    """The devices a sweep computes on: one name (``cpu``, ``cuda``, ``cuda:1``, ``auto``),
    ``all`` (every visible CUDA device, one sweep worker each), or a list of names of one device
    type (one worker per entry; ``[cpu,cpu]`` is two CPU workers). Raises ``ValueError`` naming
    the field for an unknown name, an empty or mixed list, or ``all`` without a CUDA device."""
    if isinstance(value, str) and value == "all":
        count = torch.cuda.device_count()
        if count == 0:
            raise ValueError(
                f"sweep: field 'device' is 'all' but no CUDA device is visible; valid: "
                f"{_DEVICE_CHOICES}"
            )
        return [torch.device(f"cuda:{i}") for i in range(count)]
    names = [value] if isinstance(value, str) else list(value)
    try:
        devices = [resolve_device(str(n)) for n in names]
    except RuntimeError as exc:
        raise ValueError(
            f"sweep: field 'device' is {value!r}: {exc}; valid: {_DEVICE_CHOICES}"
        ) from None
    if not devices or len({d.type for d in devices}) > 1:
        raise ValueError(
            f"sweep: field 'device' is {value!r}; a list needs at least one device, all of one "
            f"type (their cells are keyed by it); valid: {_DEVICE_CHOICES}"
        )
    return devices


def device_key(value: str | Sequence[str]) -> str:
    """The device as it keys a sweep's cells: one name as given (``cuda:1``, ``auto``), or the
    device type of ``all`` and of a list (``cuda``), whose cells equal those of that device."""
    devices = resolve_devices(value)  # validates the name(s)
    return value if isinstance(value, str) and value != "all" else devices[0].type


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def __enter__(self) -> _NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress(total: int, desc: str, quiet: bool, unit: str = "it"):
    """A tqdm bar with rate and ETA, or a silent stand-in when quiet / non-TTY / CI."""
    if not progress_enabled(quiet):
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, smoothing=0.1)


TRAIN_DATA_SOURCES = ("synthetic", "store", *READERS)


def _rank_device(device: str) -> str:
    """``cuda`` → this process's GPU under ``torchrun`` (``LOCAL_RANK``); others unchanged."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def load_training_frames(
    data: Mapping | Any, rank: int = 0, world: int = 1, app: str = "train", section: str = "data"
) -> list[CoopFrame]:
    """The training frames named by the ``data`` config section.

    Synthetic towns are split across DDP ranks: rank ``r`` of ``world`` generates (on its own
    GPU when ``data.synthetic.device=cuda``) and trains on the towns ``s ≡ r (mod world)``;
    ``num_sequences`` must be a multiple of ``world`` (equal shares, every town drawn as often).
    Messages about bad settings name ``<app>: field '<section>.<key>'``.
    """

    data = to_plain(data)
    source = data.get("source")
    if source == "synthetic":
        from v2x.datasets.synthetic import generate_sequence
        from v2x.datasets.synthetic_config import SyntheticConfig

        for key, least in (("num_sequences", 1), ("frames_per_sequence", 1), ("seed", 0)):
            data[key] = check_whole(f"{app}: field '{section}.{key}'", data.get(key), least)
        if data["num_sequences"] % world:  # each rank draws its share of a step from its towns
            raise ValueError(
                f"{app}: field '{section}.num_sequences' ({data['num_sequences']}) must be "
                f"a multiple of the DDP world size ({world}): each process trains on its own "
                "towns, the same number of frames per step, so uneven shares would weight the "
                "towns of the smaller ones more (or leave a process without frames)"
            )
        syn = dict(data.get("synthetic") or {})
        syn["device"] = _rank_device(str(syn.get("device", "cpu")))
        cfg = SyntheticConfig.from_dict(syn)
        frames: list[CoopFrame] = []
        for s in range(rank, data["num_sequences"], world):
            frames.extend(generate_sequence(cfg, data["seed"] + s, data["frames_per_sequence"]))
        return frames
    if source in READERS:  # (messages name this app: "sweep" misled)
        dataset = open_reader(data, app, section)
        return [dataset[i] for i in range(_frames_wanted(data, len(dataset), app, section))]
    if source == "store":
        from v2x.datasets.store import load_split

        if not data.get("path"):
            raise ValueError(
                f"{app}: field '{section}.path' must name a v2x-generate folder when "
                f"{section}.source=store"
            )
        return list(load_split(Path(data["path"]), data.get("split", "train")))
    raise ValueError(
        f"{app}: field '{section}.source' must be one of {TRAIN_DATA_SOURCES}, got {source!r}"
    )
