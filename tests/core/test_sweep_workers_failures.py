"""Multi-device sweeps (``v2x.sweep_workers``) when something goes wrong: a frame that cannot
be read, a worker process killed mid-sweep, Ctrl-C, a caller that stops taking the groups, and
a sweep resumed on several devices. Run on the CPU (``device=[cpu,cpu]``)."""

from __future__ import annotations

import concurrent.futures as cf
import shutil
import time
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from tests.core.test_sweep import _assert_same_results, _canonical, _kept_pids, tiny_config
from v2x.results import read_results
from v2x.sweep import run_sweep
from v2x.sweep_errors import SweepWorkerStopped


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("frames")


class _InlinePool:
    """A device worker's pool whose tasks run as they are submitted (exceptions of any kind,
    Ctrl-C included, handed over in the future as a process pool does)."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def submit(self, fn, *args):
        future = cf.Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - as a worker process hands it back
            future.set_exception(exc)
        return future

    def shutdown(self, wait=True, cancel_futures=False) -> None:
        pass


def _inline_workers(monkeypatch, compute, joined=None):
    """``run_groups_on_devices``' workers inline (``_InlinePool``), ``_compute`` replaced by
    ``compute``; returns a plan of 4 groups ``g0..g3`` (one group per task) and its todo."""
    import v2x.sweep_order
    import v2x.sweep_workers as sw

    monkeypatch.setattr(sw, "ProcessPoolExecutor", _InlinePool)
    monkeypatch.setattr(sw, "_KEPT", {})
    monkeypatch.setattr(sw, "_LOADED", {})
    monkeypatch.setattr(sw, "_load", lambda *args: None)
    monkeypatch.setattr(sw, "_release", lambda: None)
    monkeypatch.setattr(sw, "_compute", compute)
    monkeypatch.setattr(sw, "_facts", lambda links: (True, (8, 4, 4), None, 1e9, 4))
    monkeypatch.setattr(sw, "joined_rows", joined or (lambda plan, g, s, parts, d: (
        [{"group": [p.group for p in parts]}], None)))  # fmt: skip
    monkeypatch.setattr(v2x.sweep_order, "device_order", lambda todo, silent: list(todo))
    monkeypatch.setattr(v2x.sweep_order, "silent_groups", lambda budget, shape: None)
    groups = [SimpleNamespace(name=f"g{i}", stage="ego") for i in range(4)]

    def plan(name: str = "a"):
        config = SimpleNamespace(to_dict=lambda: {"name": name}, batch_size=2, deterministic=True)
        return SimpleNamespace(groups=groups, config=config, budget=None)

    return plan, [(g, [0.0, 10.0]) for g in groups]


def _parts(indices, snrs, most_links, data_id):
    return [SimpleNamespace(group=indices[0], num_frames=2)], [0.1], 3


def test_a_failing_device_worker_keeps_every_finished_group(monkeypatch):
    """Device workers: when one group fails (here out of memory), the tasks not started are
    cancelled, every group whose parts all came back from the workers is still handed over to
    be saved (also those after the failed one), and then the failure is raised. The workers
    run inline here, each task as it is submitted."""
    import torch

    import v2x.sweep_workers as sw

    def compute(indices, snrs, most_links, data_id):
        if indices == [1]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 10.50 GiB.")
        return _parts(indices, snrs, most_links, data_id)

    plan, todo = _inline_workers(monkeypatch, compute)
    bar = SimpleNamespace(update=lambda n: None)
    got = []
    with pytest.raises(torch.OutOfMemoryError):
        for item in sw.run_groups_on_devices(plan(), todo, ["cpu", "cpu"], bar, 4, [], {}):
            got.append(item[2][0]["group"])  # (group, snrs, rows, ledger, seconds)
    assert got == [[0, 0], [2, 2], [3, 3]]  # each group's two parts, one per worker


def test_ctrl_c_in_a_multi_device_sweep_keeps_the_groups_every_worker_finished(monkeypatch):
    """Ctrl-C (or SIGTERM, which unwinds the same way) while the sweep's process waits for a
    group from its device workers: the groups whose parts all came back before it, their rows
    still being computed on a thread, are handed over to be saved, as one process saves the
    groups it finished; then the interrupt is raised. They were dropped."""
    import v2x.sweep_workers as sw

    def compute(indices, snrs, most_links, data_id):
        if indices == [2]:
            raise KeyboardInterrupt  # (as a worker hands back Ctrl-C, or the wait is stopped)
        return _parts(indices, snrs, most_links, data_id)

    def slow_rows(plan, group, snrs, parts, data_id):
        time.sleep(0.3)  # not yet done when the interrupt comes
        return [{"group": [p.group for p in parts]}], None

    plan, todo = _inline_workers(monkeypatch, compute, slow_rows)
    bar = SimpleNamespace(update=lambda n: None)
    got = []
    with pytest.raises(KeyboardInterrupt):
        for item in sw.run_groups_on_devices(plan(), todo, ["cpu", "cpu"], bar, 4, [], {}):
            got.append(item[2][0]["group"])
    assert got[:2] == [[0, 0], [1, 1]] and [2, 2] not in got
    assert not sw._LOADED


def test_a_stopped_sweeps_generator_lets_go_of_its_own_load_only(monkeypatch):
    """The generator of a sweep whose caller stopped taking its groups, closed late (e.g. by
    the garbage collector, once the error that stopped it is dropped), releases the shards its
    workers loaded for it, never those of the sweep loaded since: it released whichever sweep
    ``_LOADED`` held then, and that sweep's workers had let go of their frames and detector
    when its groups came."""
    import v2x.sweep_workers as sw

    plan, todo = _inline_workers(monkeypatch, _parts)
    bar = SimpleNamespace(update=lambda n: None)
    first = sw.run_groups_on_devices(plan("a"), todo, ["cpu", "cpu"], bar, 4, [], {})
    next(first)  # the caller takes one group, then stops (an error while saving it)
    later = plan("b")
    sw.load_workers(later, ["cpu", "cpu"], 4)  # the process's next sweep loads its shards
    first.close()
    assert sw._LOADED.get("key") == sw._sweep_key(later, ["cpu", "cpu"], 4)
    sw.release_workers()


@pytest.mark.slow
def test_a_sweep_that_fails_to_save_lets_go_of_its_workers_at_once(
    cache_dir, tmp_path, monkeypatch
):
    """An error while a group is saved (a full disk) ends the multi-device sweep: its workers
    let go of their shards at once (their groups' generator closed; it stayed open, the
    workers computing and holding the sweep, for as long as the error was referenced, e.g. by
    an interactive session's last traceback), and the next sweep in the process gives the
    one-process results."""
    import v2x.sweep_workers as sw
    from v2x.results import ResultsStore

    add = ResultsStore.add

    def full(self, rows, ledger):
        raise OSError(28, "No space left on device", str(self.path))

    one = run_sweep(tiny_config(cache_dir, tmp_path / "one"))
    monkeypatch.setattr(ResultsStore, "add", full)
    cfg = {**tiny_config(cache_dir, tmp_path / "two"), "device": ["cpu", "cpu"]}
    with pytest.raises(OSError, match="No space left on device") as info:
        run_sweep(cfg)
    assert not sw._LOADED  # while the error (its traceback: the sweep's frame) is still held
    monkeypatch.setattr(ResultsStore, "add", add)
    del info
    _assert_same_results(run_sweep(cfg), one)


@pytest.mark.slow
def test_an_unreadable_frame_is_one_error_naming_it_and_the_next_sweep_runs(cache_dir, tmp_path):
    """A stored frame that cannot be read (truncated) stops a multi-device sweep with one
    error that names the file; the workers let go of what they loaded and stay for the next
    sweep of the process, which runs and gives the one-process results."""
    import v2x.sweep_workers as sw
    from v2x.datasets.build import cached_split
    from v2x.sweep_config import SweepConfig

    cfg = tiny_config(cache_dir, tmp_path / "one")
    data = SweepConfig.from_any(cfg).data
    split = cached_split(dict(data["synthetic"]), split=data["split"], num_frames=4,
                         frames_per_sequence=data["frames_per_sequence"], seed=data["seed"],
                         cache_dir=data["cache_dir"], quiet=True)  # fmt: skip
    root = tmp_path / "store"
    shutil.copytree(split.root, root)
    bad = root / split.entries[3]["file"]  # in the second worker's shard
    bad.write_bytes(bad.read_bytes()[:100])
    stored = {"source": "store", "path": str(root), "split": split.split}
    broken = {**tiny_config(cache_dir, tmp_path / "broken"), "device": ["cpu", "cpu"]}
    broken["data"] = {**broken["data"], **stored}
    with pytest.raises(ValueError, match=bad.name) as info:
        run_sweep(broken)
    assert "Broken" not in repr(info.value) and info.value.__cause__ is None
    assert not sw._LOADED and len(_kept_pids()) == 2
    workers = _kept_pids()
    one = run_sweep(cfg)
    two = run_sweep({**tiny_config(cache_dir, tmp_path / "two"), "device": ["cpu", "cpu"]})
    assert _kept_pids() == workers
    _assert_same_results(two, one)


@pytest.mark.slow
def test_a_multi_device_sweep_resumes_a_sweep_that_holds_some_cells(cache_dir, tmp_path):
    """A results folder that holds some cells (a sweep of one SNR, on one process) and a
    [cpu,cpu] sweep of the grown grid: only the missing cells are computed on the workers; the
    file, row order, cell ids and ledger equal those of the same two sweeps on one process, and
    the rows those of an uninterrupted run (the ledger's ``condition_id`` is the SNR's index in
    the run that computed it: 0 for the second SNR here, as on one process)."""
    one = run_sweep(tiny_config(cache_dir, tmp_path / "one"))
    runs = {}
    for name, device in (("process", "cpu"), ("workers", ["cpu", "cpu"])):
        out = tmp_path / name
        run_sweep(tiny_config(cache_dir, out, snr_db=[10.0]))
        runs[name] = run_sweep({**tiny_config(cache_dir, out), "device": device})
    assert pq.read_table(runs["workers"]).num_rows == 8
    _assert_same_results(runs["workers"], runs["process"])
    rows = [pq.read_table(p).drop_columns(["config_hash"]) for p in (one, runs["workers"])]
    assert _canonical(rows[0]) == _canonical(rows[1])


FATAL = '''
"""AWGN whose first call in a sweep's device worker kills that worker (SIGKILL, as the
kernel's out-of-memory killer does); once per marker file."""
import multiprocessing
import os
import signal

from v2x.channels import CHANNELS
from v2x.channels.awgn import AWGNChannel

@CHANNELS.register("plugin_fatal_awgn")
class FatalAWGN(AWGNChannel):
    def forward(self, x, *args, **kwargs):
        marker = os.environ.get("V2X_TEST_KILL_MARKER")
        if marker and multiprocessing.parent_process() is not None:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x, *args, **kwargs)
'''


@pytest.mark.slow
def test_a_killed_worker_keeps_the_finished_groups_says_so_and_new_workers_follow(
    cache_dir, tmp_path, monkeypatch
):
    """One device worker is killed (SIGKILL) in the second group it computes: the group every
    worker finished is saved, the error names the device, the signal and what was saved, the
    other worker is not kept, and the same command again starts new workers, computes the
    rest and gives the one-process results."""
    import v2x.sweep_workers as sw

    (tmp_path / "v2x_fatal_channel.py").write_text(FATAL)
    monkeypatch.syspath_prepend(str(tmp_path))
    for pools in sw._KEPT.values():  # workers that can import the plugin
        for pool in pools:
            pool.shutdown(wait=True)
    sw._KEPT.clear()
    monkeypatch.setenv("V2X_TEST_KILL_MARKER", str(tmp_path / "killed"))

    def cfg(out):
        config = tiny_config(cache_dir, tmp_path / out, codecs=["analog"], fusions=["none", "max"])
        config["grid"]["channels"] = ["awgn", "plugin_fatal_awgn"]
        return {**config, "plugins": ["v2x_fatal_channel"]}

    one = run_sweep(cfg("one"))  # (not a worker: nothing killed)
    assert pq.read_table(one).num_rows == 6 and not (tmp_path / "killed").exists()
    two = {**cfg("two"), "device": ["cpu", "cpu"]}
    with pytest.raises(SweepWorkerStopped) as info:
        run_sweep(two)
    message = str(info.value)
    assert (tmp_path / "killed").exists()
    assert message.count("the device worker on cpu (process ") == 1, message  # the one killed
    assert "was killed by SIGKILL" in message, message
    assert "2 of the 6 cells to compute were saved" in message, message
    assert "run the same command again to resume" in message, message
    saved = read_results([tmp_path / "two"]).to_pylist()
    assert [(r["codec"], r["channel"]) for r in saved] == [("analog", "awgn")] * 2
    assert not sw._LOADED and not _kept_pids()
    path = run_sweep(two)
    assert len(_kept_pids()) == 2
    _assert_same_results(path, one)


def test_a_device_worker_sizes_memory_bound_calls_by_its_share_of_the_gpu(monkeypatch):
    """A sweep's worker records how many workers draw on its GPU's memory
    (``memory_sharers``) when it loads the sweep, so that the digital chain's decoder calls
    (``decode_chunk``) take its share, and forgets it when it lets the sweep go."""
    import torch

    import v2x.sweep
    import v2x.sweep_plan
    import v2x.sweep_workers as sw
    from v2x import loading
    from v2x.common import memory_share
    from v2x.sweep_reuse import memory_sharers

    monkeypatch.setattr("v2x.devices._MEMORY_SHARE", {})
    monkeypatch.setattr(sw, "_WORKER", {})
    monkeypatch.setattr(v2x.sweep_plan, "plan_sweep", lambda config: SimpleNamespace(
        config=SimpleNamespace(batch_size=2), data=None))  # fmt: skip
    class _Frames(list):
        def close(self) -> None:
            pass

    monkeypatch.setattr(loading, "FrameStream", lambda *a, **k: _Frames())
    seen = []
    monkeypatch.setattr(v2x.sweep, "prepare_device", lambda plan, frames, device, sharers: (
        seen.append((str(device), sharers, memory_share(device))) or (None, [])))  # fmt: skip
    threads = torch.get_num_threads()
    try:
        sharers = memory_sharers(["cuda:1", "cuda:1", "cuda:0"])
        sw._load({}, "cuda:1", 1, (0, 1), sharers)
        assert seen == [("cuda:1", 2, 2)] and memory_share("cuda:0") == 1
        sw._release()
        assert memory_share("cuda:1") == 1
        sw._load({}, "cuda:0", 1, (1, 2), sharers)  # alone on its GPU
        assert seen[-1] == ("cuda:0", 1, 1)
        sw._release()
    finally:
        torch.set_num_threads(threads)
