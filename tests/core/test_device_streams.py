"""``v2x.device_streams``: the sweep's CUDA streams, and nothing off CUDA."""

from __future__ import annotations

import threading

import pytest
import torch

from v2x.device_streams import (
    after_queued_work,
    priority_stream,
    recorded_event,
    side_stream,
    wait_for,
)


def test_off_cuda_the_streams_change_nothing():
    """On the CPU no stream is made, no event recorded, and work for another thread is the
    very function given."""

    def fn() -> int:
        return 3

    with priority_stream("cpu") as stream:
        assert stream is None
    assert recorded_event("cpu") is None
    wait_for(None, "cpu")  # nothing to wait for
    assert after_queued_work(fn, torch.device("cpu")) is fn


def _slow_then_fill(x: torch.Tensor, value: float) -> None:
    """Queue about a second of device work, then ``x.fill_(value)`` behind it."""
    a = torch.randn(4096, 4096, device=x.device)
    for _ in range(60):
        a = a @ a
        a = a / a.norm()
    x.fill_(value)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_another_thread_reads_what_the_priority_stream_wrote():
    """A thread on the default stream reads a tensor the priority stream wrote behind a long
    queue (``after_queued_work``): it sees the written values, and the priority stream ranks
    above the default and side streams."""
    device = torch.device("cuda")
    x = torch.zeros(1 << 20, device=device)
    torch.cuda.synchronize()
    got = []
    with priority_stream(device) as stream:
        assert stream.priority < torch.cuda.default_stream(device).priority
        assert side_stream(device).priority == torch.cuda.default_stream(device).priority
        _slow_then_fill(x, 2.0)
        reader = threading.Thread(target=after_queued_work(lambda: got.append(x.cpu()), device))
        reader.start()
        reader.join()
    assert torch.equal(got[0], torch.full_like(got[0], 2.0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_a_stream_waits_for_an_event_of_another():
    """``wait_for``: work queued on one stream after waiting for another's event sees that
    stream's writes (the batches copied on the preparing thread's stream)."""
    device = torch.device("cuda")
    x = torch.zeros(1 << 20, device=device)
    torch.cuda.synchronize()
    other = side_stream(device)
    with torch.cuda.stream(other):
        _slow_then_fill(x, 5.0)
        done = recorded_event(device)
    with priority_stream(device):
        wait_for(done, device)
        y = x * 2
    assert torch.equal(y.cpu(), torch.full((1 << 20,), 10.0))
