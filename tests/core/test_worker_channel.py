"""``v2x.worker_channel.ForkedWorker``: calls over its channel run in the worker in the order
written, return their values and raise their errors here, pass messages larger than the pipe,
never use the pool's threads, and a dead worker raises ``BrokenProcessPool`` (never a wait
forever). Oracles: the same functions called in this process; the worker's own pid."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from v2x.worker_channel import forked_worker

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the worker is forked (Linux)")

_LOG: list = []  # in the worker: what posted calls appended, in order


def _append(value) -> None:
    _LOG.append(value)


def _log() -> list:
    return list(_LOG)


def _fails(message: str) -> None:
    raise ValueError(message)


def _echo(value):
    return value


def _thread_name() -> str:
    return threading.current_thread().name


def _unpicklable():
    return threading.Lock()


class _FailsThere:
    """Pickles here; unpickling it (in the worker) raises."""

    def __reduce__(self):
        return (_fails, ("cannot be read there",))


@pytest.fixture
def worker():
    one = forked_worker()
    yield one
    one.shutdown()


def test_posted_calls_run_in_order_before_a_later_call(worker):
    for i in range(200):
        worker.post(_append, i)
    assert worker.call(_log) == list(range(200))
    assert worker.call(os.getpid) == worker.submit(os.getpid).result() != os.getpid()
    # the channel's calls run beside the pool's main thread, on a thread of their own
    assert worker.call(_thread_name) == "channel-runner"
    assert worker.submit(_thread_name).result() == "MainThread"


def test_values_and_errors_come_back_and_large_messages_pass(worker):
    rng = np.random.default_rng(0)
    big = rng.random(3 * (1 << 20) // 8)  # 3 MiB: three times the pipe
    back = worker.call(_echo, {"a": big, "b": [1, "x"]})
    np.testing.assert_array_equal(back["a"], big)
    assert back["b"] == [1, "x"]
    with pytest.raises(ValueError, match="no such cell"):
        worker.call(_fails, "no such cell")
    worker.post(_fails, "kept there")  # a posted call's error stays in the worker
    with pytest.raises(RuntimeError, match="lock"):  # a value that does not pickle
        worker.call(_unpicklable)
    with pytest.raises(ValueError, match="cannot be read there"):  # a request it cannot read
        worker.call(_echo, _FailsThere())
    worker.post(_echo, _FailsThere())
    assert worker.call(_echo, 7) == 7  # the channel goes on


def test_the_channel_does_not_use_the_pool(worker):
    worker.submit(int).result()

    def refused(*args, **kwargs):
        raise AssertionError("the channel used the pool")

    worker.pool.submit = refused
    worker.post(_append, "a")
    assert worker.call(_log) == ["a"]


def test_a_second_shutdown_closes_nothing_else():
    worker = forked_worker()
    assert worker.call(_echo, 1) == 1
    worker.shutdown()
    r, w = os.pipe()  # (may take the numbers the channel's ends had)
    try:
        worker.shutdown()
        os.write(w, b"x")
        assert os.read(r, 1) == b"x"
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(BrokenProcessPool):
        worker.post(_append, 1)


def test_a_dead_worker_raises_broken_process_pool_from_post_and_call(worker):
    assert worker.call(_echo, 1) == 1
    with pytest.raises(BrokenProcessPool):  # the worker dies (as if killed for memory)
        worker.submit(os._exit, 1).result()
    with pytest.raises(BrokenProcessPool):
        for _ in range(10_000):  # posts fill the pipe, then find the worker gone
            worker.post(_append, np.zeros(1024))
        worker.call(_log)
    assert worker.broken
    with pytest.raises(BrokenProcessPool):
        worker.call(_log)
    with pytest.raises(BrokenProcessPool):
        worker.post(_append, 1)


def test_a_worker_dead_while_a_call_waits_raises(worker):
    with pytest.raises(BrokenProcessPool):
        worker.call(_sleep_then_exit, 0.2)
    assert worker.broken


def _sleep_then_exit(seconds: float) -> None:
    import time

    time.sleep(seconds)
    os._exit(1)
