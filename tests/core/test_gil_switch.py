"""Python's GIL switch interval for a while, and the one a GPU sweep's process runs its groups at."""

from __future__ import annotations

import sys

import pytest
import torch

import v2x.sweep
import v2x.sweep_group as sweep_group
from tests.core.test_sweep import _assert_same_results_and_ledger, tiny_config
from v2x.gil_switch import SWEEP_SWITCH_INTERVAL_S, sweep_switch_interval, switch_interval
from v2x.sweep import run_sweep


def test_the_interval_holds_inside_the_block_and_comes_back_after_it_also_on_an_error():
    before = sys.getswitchinterval()
    with switch_interval(0.002):
        assert sys.getswitchinterval() == pytest.approx(0.002)
    assert sys.getswitchinterval() == before
    with pytest.raises(KeyError), switch_interval(0.003):
        raise KeyError("inside")
    assert sys.getswitchinterval() == before
    with switch_interval(None):
        assert sys.getswitchinterval() == before
    with (
        pytest.raises(ValueError, match="GIL switch interval: expected seconds > 0, got 0"),
        switch_interval(0),
    ):
        pass
    assert sys.getswitchinterval() == before


@pytest.mark.parametrize(
    ("device", "expected"), [("cuda", SWEEP_SWITCH_INTERVAL_S), ("cuda:1", SWEEP_SWITCH_INTERVAL_S),
                             ("cpu", None)]
)  # fmt: skip
def test_a_gpu_sweep_runs_at_the_sweeps_interval_and_a_cpu_sweep_at_pythons(device, expected):
    assert pytest.approx(0.0005) == SWEEP_SWITCH_INTERVAL_S
    assert sweep_switch_interval(torch.device(device)) == expected


def test_the_sweeps_groups_are_booked_at_the_interval_it_gives_its_device(monkeypatch, tmp_path):
    """The groups' steps and their booking on the scorer thread run at the interval
    ``sweep_switch_interval`` gives the device (here the CPU, given one); after the sweep
    Python's own interval is back."""
    before = sys.getswitchinterval()
    seen: list[float] = []
    book_batch = sweep_group.book_batch

    def booked(*args, **kwargs):
        seen.append(sys.getswitchinterval())
        return book_batch(*args, **kwargs)

    ref = run_sweep(tiny_config(tmp_path / "frames", tmp_path / "ref", snr_db=[0.0]))
    assert sys.getswitchinterval() == before
    monkeypatch.setattr(sweep_group, "book_batch", booked)
    monkeypatch.setattr(v2x.sweep, "sweep_switch_interval", lambda device: 0.0007)
    path = run_sweep(tiny_config(tmp_path / "frames", tmp_path / "out", snr_db=[0.0]))
    assert seen and all(s == pytest.approx(0.0007) for s in seen)
    assert sys.getswitchinterval() == before
    _assert_same_results_and_ledger(path, ref)  # the interval changes no value


@pytest.mark.parametrize(("device", "expected"), [("cuda:0", 0.0005), ("cpu", None)])
def test_a_device_worker_process_runs_at_the_interval_of_its_device(monkeypatch, device, expected):
    """A multi-device sweep's worker process (``v2x.sweep_workers``, spawned for one device)
    sets the sweep's interval for its life when it starts on a GPU and keeps Python's on the
    CPU (its initialiser run here, the CUDA device and torch's determinism left alone)."""
    import logging

    import v2x.common
    import v2x.sweep_workers as sw

    before = sys.getswitchinterval()
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(v2x.common, "configure_determinism", lambda deterministic: None)
    for name in ("v2x.sweep_parts", "v2x.sweep_order"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    try:
        sw._start(True, device)
        assert sys.getswitchinterval() == pytest.approx(expected or before)
    finally:
        sys.setswitchinterval(before)
