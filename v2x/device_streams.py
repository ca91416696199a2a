"""The CUDA streams of a sweep's device: its own work first, side work in its gaps.

A sweep's device thread queues a frame batch's work on the GPU and then waits at host syncs
(NMS's pair count, the late-payload check, DeepJSCC's gate flag), each followed by Python that
queues nothing: the GPU idles there. Work that does not depend on the batch in hand (the next
batch's encoder, ``v2x.sweep_reuse.EncodeCache.prefetch``) can fill those gaps if it runs on a
stream of *lower* priority than the thread's own: CUDA's block scheduler then starts its blocks
only when the higher-priority stream leaves the SMs free, instead of sharing them with the
batch's kernels and delaying the syncs that gate the next Python (CUDA C Programming Guide,
"Stream Priorities"). The default stream has the lowest priority, so the device thread runs on
a stream of its own (``priority_stream``) and side work on an ordinary one (``side_stream``).

Streams change no number: the same kernels on the same inputs, ordered by events where one
stream reads what another wrote — the batches other threads copied (``wait_for``) and the
results other threads read back (``after_queued_work``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

__all__ = ["after_queued_work", "priority_stream", "recorded_event", "side_stream", "wait_for"]

T = TypeVar("T")

#: The device thread's stream priority (lower numbers run first; CUDA clamps it to the device's
#: range, whose lowest priority, 0, is the default stream's and ``side_stream``'s).
HIGH_PRIORITY = -1


@contextlib.contextmanager
def priority_stream(device: torch.device | str) -> Iterator[Any]:
    """This thread's work on ``device`` on a stream of higher priority than the default one,
    for the duration (yields it; ``None`` and nothing changed off CUDA).

    The stream first waits for the work the thread queued before (e.g. the model's weights
    copied to the device); at the end the thread waits until the stream is done, so that tensors
    it read but other streams allocated (the frame batches) can be freed safely afterwards.
    """
    device = torch.device(device)
    if device.type != "cuda":
        yield None
        return
    before = torch.cuda.current_stream(device)
    stream = torch.cuda.Stream(device, priority=HIGH_PRIORITY)
    stream.wait_stream(before)
    try:
        with torch.cuda.stream(stream):
            yield stream
    finally:
        stream.synchronize()


def side_stream(device: torch.device | str) -> Any:
    """A stream of ordinary (the lowest) priority for work that fills a ``priority_stream``'s
    gaps."""
    return torch.cuda.Stream(torch.device(device), priority=0)


def recorded_event(device: torch.device | str) -> Any:
    """A CUDA event recorded now on the calling thread's current stream of ``device`` (the work
    queued so far); ``None`` off CUDA."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(device))
    return event


def wait_for(event: Any, device: torch.device | str) -> None:
    """The calling thread's current stream of ``device`` waits (on the device, not the host)
    for ``event`` (``recorded_event``); nothing for ``None``."""
    if event is not None:
        torch.cuda.current_stream(torch.device(device)).wait_event(event)


def after_queued_work(fn: Callable[..., T], device: torch.device | str) -> Callable[..., T]:
    """``fn`` for another thread (e.g. one that copies results to the host), run there only
    after the device work the calling thread has queued so far: on CUDA that thread's current
    stream waits for an event recorded now on this thread's stream. Off CUDA: ``fn``."""
    done = recorded_event(device)
    if done is None:
        return fn

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        wait_for(done, device)
        return fn(*args, **kwargs)

    return run
