"""torch's intra-op threads for a while, and the count a GPU sweep's own process keeps."""

from __future__ import annotations

import pytest
import torch

import v2x.sweep_rows
import v2x.sweep_scoring
from v2x.torch_threads import sweep_process_threads, torch_threads


def test_the_count_holds_inside_the_block_and_comes_back_after_it_also_on_an_error():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError), torch_threads(other):
        raise KeyError("inside")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with (
        pytest.raises(ValueError, match="torch threads: expected a count >= 1, got 0"),
        torch_threads(0),
    ):
        pass
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("device", "cells", "scorers", "cores", "expected"),
    [
        ("cuda", 8, 4, 16, 4),  # an H200 host: 16 cores, 8 AP workers, 4 scoring processes
        ("cuda", 8, 4, 12, 1),  # never below one
        ("cuda", 0, 0, 2, None),  # no worker processes (the 2-core VM): torch's own count
        ("cpu", 8, 4, 16, None),  # on the CPU the detector's work is the process's own
    ],
)
def test_a_gpu_sweep_keeps_the_cores_its_workers_leave(
    monkeypatch, device, cells, scorers, cores, expected
):
    monkeypatch.setattr(v2x.sweep_rows, "CELL_PROCESSES", cells)
    monkeypatch.setattr(v2x.sweep_scoring, "SCORING_PROCESSES", scorers)
    assert sweep_process_threads(torch.device(device), cores) == expected
