"""The host-bound groups of a sweep computed while the device works for another group.

On one CUDA device ``v2x.sweep._run_groups`` runs the groups one after the other. A group that
sends its maps over the channel (e.g. DeepJSCC's) queues tens of milliseconds of device work
per frame batch and then waits for it at its first host read (NMS); the groups that send
nothing on air (ego-only, late and early fusion, and the feature groups whose every map misses
the deadline) are the opposite: little device work, mostly Python. ``DeviceWaitFiller`` runs
the latter's batch steps in the former's waits, on the same thread: when the heavy group's
pipeline is about to read its detections back (``EncodeCache.postprocess``) and the device is
still busy with what it queued, the filler takes steps of the light groups until the device
has caught up. No second thread competes for the GIL (a thread of its own was slower:
docs/benchmarks.md, "side lane").

Nothing changes a number:

* every cell has its own seeds and every group its own generators (``v2x.sweep_group``); a step
  taken in the middle of another group's step leaves torch's global generators, the feature
  cache's batch index and the channel's deferred input checks (``v2x.channels.base.own_checks``) as
  it found them;
* a light group's steps run in batch order, on a CUDA stream of their own (of high priority, so
  that their few small kernels do not queue behind the heavy group's), and only on a frame
  batch the heavy group has finished queueing (its features and copies done: the stream waits
  for an event recorded after that batch's step); their scoring waits for that stream;
* the same kernels on the same inputs give the same bits on any stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from contextlib import nullcontext
from typing import Any

import torch

from v2x.channels.base import own_checks
from v2x.sweep_reuse import EncodeCache


class _AfterStream:
    """``scorer`` (a one-thread executor) for steps computed on ``stream``: each task first
    waits for the work ``stream`` had queued when it was submitted (the step's detections),
    since the scoring thread reads them through its own stream."""

    def __init__(self, scorer: Executor, stream: Any) -> None:
        self._scorer, self._stream = scorer, stream

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        done = torch.cuda.Event()
        done.record(self._stream)

        def after() -> Any:
            done.synchronize()
            return fn(*args, **kwargs)

        return self._scorer.submit(after)


class DeviceWaitFiller:
    """Steps of light groups taken while the device works for a heavy one.

    Args:
        start: ``start(index) -> GroupRun``: light group ``index``'s run, built when its first
            step is taken (on the filler's stream; a rate-adaptive codec's run waits for every
            frame batch, so ``startable(index)`` says when that would not wait).
        count: how many light groups there are.
        batches: the sweep's frame batches.
        cache: the sweep's feature cache (its ``batch_index`` is restored after each step).
        device: the CUDA device.
        bar: the sweep's progress bar.
        startable: ``startable(index) -> bool``; default: always.
        busy: whether the device still runs the heavy group's queued work; default: on CUDA
            an event's query, elsewhere never (a CPU computes as it goes: nothing to fill).
    """

    def __init__(
        self,
        start: Callable[[int], Any],
        count: int,
        batches: Sequence[Any],
        cache: EncodeCache,
        device: torch.device,
        bar: Any,
        startable: Callable[[int], bool] | None = None,
        busy: Callable[[], Callable[[], bool]] | None = None,
    ) -> None:
        self._start, self._startable = start, startable or (lambda index: True)
        self._batches, self._cache, self._device, self._bar = batches, cache, device, bar
        self.runs: list[Any] = [None] * count
        self.seconds = [0.0] * count
        self._next = [0] * count  # the next batch of each light group
        self._cuda = torch.device(device).type == "cuda"
        self._events: list[Any] = []  # per heavy batch done: its queued work (CUDA events)
        self.stream = torch.cuda.Stream(device, priority=-1) if self._cuda else None
        self._busy_now = busy or (self._device_busy if self._cuda else self._host_busy)
        self._busy = False

    def batch_done(self, index: int) -> None:
        """The heavy group finished its step on batch ``index`` (called on its stream)."""
        event = None
        if self._cuda:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self._device))
        self._events.append(event)
        assert len(self._events) == index + 1, "batches are done in order"

    def __call__(self) -> None:
        """While the device still runs what the heavy group queued so far, take light steps."""
        if self._busy:
            return
        busy = self._busy_now()
        while busy() and self._take():
            pass

    def _device_busy(self) -> Callable[[], bool]:
        queued = torch.cuda.Event()
        queued.record(torch.cuda.current_stream(self._device))
        return lambda: not queued.query()

    def _host_busy(self) -> Callable[[], bool]:
        return lambda: False  # (a CPU's work is done when queued)

    def drain(self) -> None:
        """Take every light step left (after the heavy group's last batch)."""
        while self._take():
            pass

    def _take(self) -> bool:
        """One light step: the group furthest behind among those with a batch the heavy group
        has done; ``False`` when there is none."""
        ready = [
            (n, i)
            for i, n in enumerate(self._next)
            if n < len(self._events) and n < len(self._batches) and self._started(i)
        ]
        if not ready:
            return False
        n, i = min(ready)
        self._step(i, n)
        self._next[i] = n + 1
        return True

    def _started(self, index: int) -> bool:
        return self.runs[index] is not None or self._startable(index)

    def _step(self, index: int, bi: int) -> None:
        started = time.perf_counter()
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state(self._device) if self._cuda else None
        batch_index = self._cache.batch_index
        self._busy = True
        try:
            with own_checks(), torch.cuda.stream(self.stream) if self._cuda else nullcontext():
                if self._cuda:
                    self.stream.wait_event(self._events[bi])
                if self.runs[index] is None:
                    self.runs[index] = self._start(index)
                self.runs[index].step(bi, self._batches[bi], self._bar)
        finally:
            self._busy = False
            self._cache.batch_index = batch_index
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state(cuda_rng, self._device)
            self.seconds[index] += time.perf_counter() - started

    def scorer(self, scorer: Executor | None) -> Executor | None:
        """The scoring executor light groups' runs are built with."""
        if scorer is None or self.stream is None:
            return scorer
        return _AfterStream(scorer, self.stream)


__all__ = ["DeviceWaitFiller"]
