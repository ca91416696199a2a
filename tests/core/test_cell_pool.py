"""The sweep's AP worker processes (``v2x.sweep_rows.cell_pool``) and scoring processes
(``v2x.sweep_scoring.scoring_pools``) end with the process that made them, also when that
process is itself a pool's worker: a sweep's device worker (``v2x.sweep_workers``,
``device=all`` or ``[cuda:0,cuda:0]``) on a host with ≥ 4 cores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import multiprocessing, os
    from concurrent.futures import ProcessPoolExecutor

    def device_worker():
        from v2x import sweep_rows, sweep_scoring
        sweep_rows.CELL_PROCESSES = 2  # as on a host with >= 4 cores
        sweep_scoring.SCORING_PROCESSES = 2
        sweep_scoring.can_fork_workers = lambda: True
        pools = [sweep_rows.cell_pool(), *sweep_scoring.scoring_pools()]
        return len(pools) == 3 and all(p.submit(os.getpid).result() != os.getpid() for p in pools)

    if __name__ == "__main__":
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            assert pool.submit(device_worker).result()
        print("ended")
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="the cell workers are forked (Linux only)")
def test_a_device_worker_that_made_cell_workers_ends(tmp_path):
    """The device worker's exit shuts its cell workers and scoring processes down before
    multiprocessing joins its children; before, the parent's pool shutdown (the end of every multi-device sweep) waited
    forever (found on an H200 host: ``device=[cuda:0,cuda:0]`` never returned)."""
    script = tmp_path / "device_worker_exit.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # one process group: a hang is killed with every child
    )
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the device worker never ended: its exit waited on its cell workers")
    assert proc.returncode == 0 and out.strip() == "ended", err


def _collector_state() -> tuple[int, int]:
    import gc

    return gc.get_freeze_count(), len(gc.get_objects())


@pytest.mark.skipif(sys.platform != "linux", reason="the cell workers are forked (Linux only)")
def test_a_forked_worker_leaves_the_objects_it_inherited_to_the_parent():
    """A forked worker freezes what it inherited (``gc.freeze``): its cyclic collections scan
    only its own objects. The sweep's process holds ~180,000 tracked objects; without the
    freeze each scoring process scanned them all again (a 512-frame group's join on the VM:
    0.20–0.32 s, 0.05–0.06 s with it)."""
    import gc

    from v2x.forked_pools import forked_pool

    keep = [[i] for i in range(50_000)]  # objects the worker inherits
    pool = forked_pool(1)
    try:
        frozen, tracked = pool.submit(_collector_state).result()
    finally:
        pool.shutdown()
    assert frozen >= len(keep) and frozen >= len(gc.get_objects()) // 2
    assert tracked < frozen  # the collector's generations hold only the worker's own objects


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import os, signal
    import torch
    from v2x.forked_pools import forked_pool
    from v2x.sweep_workers import _workers

    if __name__ == "__main__":
        cell_pool = forked_pool(2)  # as the AP workers and scoring processes
        cell_pool.submit(os.getpid).result()  # forks both workers
        device_pool = _workers([torch.device("cpu")], False)[0]  # a spawned device worker
        pids = [*cell_pool._processes, device_pool.submit(os.getpid).result()]
        print(" ".join(map(str, pids)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no exit hook, no pool shutdown runs
    """
)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="the cell workers are forked (Linux only)")
def test_workers_end_when_the_sweep_process_is_killed(tmp_path):
    """A sweep killed outright (SIGKILL; SIGTERM from ``timeout`` alike) takes its forked cell
    workers and its spawned device worker with it (``exit_with_parent``). Before, they lived on
    as orphans blocked on their queues, holding the dead sweep's open GPU device files and so
    its GPU memory (an H100: 12 workers, 927 MiB still held 30 s after the SIGTERM)."""
    import time

    script, out = tmp_path / "killed_sweep.py", tmp_path / "pids.txt"
    script.write_text(ORPHAN_SCRIPT)
    with out.open("w") as f:  # a file, not a pipe: orphans holding a pipe would block its reader
        code = subprocess.run([sys.executable, str(script)], stdout=f, timeout=300).returncode
    assert code == -signal.SIGKILL, code
    pids = [int(p) for p in out.read_text().split()]
    assert len(pids) == 3, out.read_text()
    deadline = time.monotonic() + 60  # liveness, not speed: they end within milliseconds
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if _alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed parent"
