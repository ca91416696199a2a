"""A forked worker process reached two ways: its pool (``submit``: futures, as any
``ProcessPoolExecutor``) and a channel of its own (``post`` and ``call``: ordered calls over two
pipes, written and read by the calling thread alone).

A pool's ``submit`` wakes two threads of this process: the pool's manager thread, which moves
the call to the workers' queue, and that queue's feeder thread, which pickles and writes it;
the result wakes the manager thread again. Each of them takes this process's GIL, which the
sweep's device thread needs for every kernel launch: handing a group's frame batches to the
scoring processes one ``submit`` each cost the groups that the host paces ≈ 0.1 s of a 3.9 s
sweep (measured on an H100 host, docs/benchmarks.md, "Fifty-fourth session"). A channel wakes
nothing here: ``post`` pickles the call and writes it to the worker's request pipe (one write
into a pipe of 1 MiB where Linux allows it) and returns; ``call`` does the same, then waits for
the reply with the GIL released. In the worker a reader thread drains the pipe at once and a
runner thread makes the calls in the order they were written, so a ``call`` sees every ``post``
made before it. Measured against the pool's ``submit`` for the same calls (alternated in one
process on an H100 host): the sweep's call shorter in six of six pairs, by 0.12 s at the
median (≈ 2 %; docs/benchmarks.md, "Fifty-sixth session").

A dead worker (killed for memory, say) raises ``BrokenProcessPool`` from ``post`` or ``call``,
as the pool's futures do, never a wait forever: a write that cannot finish and a reply that does
not come are checked every ``_POLL_S`` against the process's state (``os.waitid``: the worker is
this process's child). Posted calls return nothing: a posted function records its own errors
where a later ``call`` reads them (``v2x.sweep_scoring``).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pickle
import queue
import select
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from v2x.forked_pools import forked_pool

__all__ = ["ForkedWorker", "forked_worker"]

_HEADER = struct.Struct("<QB")  # a message's length in bytes and whether it wants a reply
_PIPE_BYTES = 1 << 20  # asked for each pipe (a frame batch's scored arrays fit in one write)
_POLL_S = 0.5  # how often a blocked write or read checks that the worker still lives


class _Dead(BrokenProcessPool):
    """The worker process ended (its channel is closed for good)."""


def _wide_pipe() -> tuple[int, int]:
    """A pipe ``(read, write)`` of ``_PIPE_BYTES`` where the host allows it (Linux)."""
    r, w = os.pipe()
    with contextlib.suppress(AttributeError, OSError):  # another OS, or above the user's limit
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    return r, w


def _framed(obj: Any, reply: bool) -> memoryview:
    """``obj`` pickled behind its ``_HEADER`` (its length, ``reply``), in one buffer (no copy of
    the pickle to prepend the header)."""
    buf = io.BytesIO()
    buf.write(bytes(_HEADER.size))
    pickle.dump(obj, buf, pickle.HIGHEST_PROTOCOL)
    view = buf.getbuffer()
    _HEADER.pack_into(view, 0, len(view) - _HEADER.size, reply)
    return view


def _read_blocking(fd: int, n: int) -> bytes | None:
    """``n`` bytes from ``fd`` (blocking, the GIL released in each read); ``None`` at EOF."""
    parts, left = [], n
    while left:
        part = os.read(fd, min(left, _PIPE_BYTES))
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


class ForkedWorker(Executor):
    """One forked worker process (``v2x.forked_pools.forked_pool`` of one worker, ``setup()``
    run first there) with a channel to it (module docstring).

    Args:
        setup: run first in the worker (e.g. its torch threads), or ``None``.
    """

    def __init__(self, setup: Callable[[], None] | None = None) -> None:
        self._requests = _wide_pipe()  # (read: worker, write: here)
        self._replies = _wide_pipe()  # (read: here, write: worker)
        self._send_lock = threading.Lock()
        self._call_lock = threading.Lock()  # one call waits for its reply at a time
        self._dead = False
        self._open = True  # this side's ends of the channel, until ``shutdown``
        self.pool = forked_pool(1, _Serve(self._requests[0], self._replies[1], setup))
        self._pid: Future = self.pool.submit(os.getpid)  # (the fork happens in this submit)
        os.close(self._requests[0])  # the worker's ends: only the worker holds them now
        os.close(self._replies[1])
        self._out, self._in = self._requests[1], self._replies[0]
        os.set_blocking(self._out, False)
        os.set_blocking(self._in, False)

    # ---- the pool ----------------------------------------------------------------------------

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        """``fn(*args, **kwargs)`` in the worker's main thread, through its pool (a future)."""
        return self.pool.submit(fn, *args, **kwargs)

    @property
    def broken(self) -> bool:
        """Whether the worker is known to have ended (through its pool or its channel)."""
        return self._dead or bool(getattr(self.pool, "_broken", False))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """End the worker (its pool shut down, as ``Executor.shutdown``) and close this side of
        its channel."""
        self.pool.shutdown(wait, cancel_futures=cancel_futures)
        with self._send_lock, self._call_lock:
            if self._open:  # once: a second close could hit a file that reused the numbers
                for fd in (self._out, self._in):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._open = False
            self._dead = True

    # ---- the channel -------------------------------------------------------------------------

    def post(self, fn: Callable, /, *args: Any) -> None:
        """``fn(*args)`` in the worker's runner thread after every call written before it; no
        reply (what it raises stays there). Raises ``BrokenProcessPool`` if the worker ended."""
        self._send(_framed((fn, args), reply=False))

    def call(self, fn: Callable, /, *args: Any) -> Any:
        """``fn(*args)``'s value, made as ``post`` makes it (what it raises is raised here).
        Raises ``BrokenProcessPool`` if the worker ended before replying."""
        message = _framed((fn, args), reply=True)
        with self._call_lock:
            self._send(message)
            ok, value = pickle.loads(self._receive())
        if not ok:
            raise value
        return value

    def _alive(self) -> bool:
        """Whether the worker process has not ended (its pool not broken, and as its parent
        this process sees it running: ``waitid`` without reaping it)."""
        if self.broken:
            return False
        if not self._pid.done():
            return True  # not started yet (or its pool breaks, which ``broken`` then says)
        try:
            pid = self._pid.result()
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except (ChildProcessError, BrokenProcessPool):  # reaped, or its pool broke
            return False

    def _ended(self) -> _Dead:
        self._dead = True
        return _Dead("the worker process ended")

    def _send(self, data: memoryview) -> None:
        with self._send_lock:
            if self._dead:
                raise self._ended()
            while data:
                try:
                    data = data[os.write(self._out, data) :]
                except BlockingIOError:  # the pipe is full: wait for the reader
                    if not select.select([], [self._out], [], _POLL_S)[1] and not self._alive():
                        raise self._ended() from None
                except OSError:  # (BrokenPipeError: the worker's end is closed)
                    raise self._ended() from None

    def _receive(self) -> bytes:
        return self._read(_HEADER.unpack(self._read(_HEADER.size))[0])

    def _read(self, n: int) -> bytes:
        parts, left = [], n
        while left:
            try:
                part = os.read(self._in, min(left, _PIPE_BYTES))
            except BlockingIOError:
                if not select.select([self._in], [], [], _POLL_S)[0] and not self._alive():
                    raise self._ended() from None
                continue
            if not part:  # EOF: the worker's end is closed
                raise self._ended()
            parts.append(part)
            left -= len(part)
        return b"".join(parts)


class _Serve:
    """The worker's setup: closes this side's ends of the channel, runs ``setup``, then starts
    the reader thread (drains the request pipe into a queue) and the runner thread (makes the
    calls in order, writes the replies). A plain object: the fork hands it over as it is."""

    def __init__(self, requests: int, replies: int, setup: Callable[[], None] | None) -> None:
        self.requests, self.replies, self.setup = requests, replies, setup

    def __call__(self) -> None:
        if self.setup is not None:
            self.setup()
        calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(
            target=self._read, args=(calls,), name="channel-reader", daemon=True
        ).start()
        threading.Thread(
            target=self._run, args=(calls,), name="channel-runner", daemon=True
        ).start()

    def _read(self, calls: queue.SimpleQueue) -> None:
        while True:
            header = _read_blocking(self.requests, _HEADER.size)
            if header is None:  # the sweep's process closed its end
                calls.put(None)
                return
            size, reply = _HEADER.unpack(header)
            calls.put((_read_blocking(self.requests, size), reply))

    def _run(self, calls: queue.SimpleQueue) -> None:
        while (message := calls.get()) is not None:
            blob, reply = message
            try:  # (never ends this thread: a call after it would wait for ever)
                fn, args = pickle.loads(blob)
                out = (True, fn(*args))
            except BaseException as err:  # noqa: BLE001 - handed to the caller (or recorded by fn)
                out = (False, err)
            if not reply:
                continue
            try:
                framed = _framed(out, reply=False)
            except Exception as err:  # noqa: BLE001 - an error or value that does not pickle
                framed = _framed((False, RuntimeError(f"{out[1]!r} ({err})")), reply=False)
            while framed:
                framed = framed[os.write(self.replies, framed) :]


def forked_worker(setup: Callable[[], None] | None = None) -> ForkedWorker:
    """A ``ForkedWorker`` (a forked process with its pool and its channel); ``setup()`` runs
    first in it."""
    return ForkedWorker(setup)
