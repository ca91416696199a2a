"""The light groups' steps taken in a heavy group's device waits (``v2x.sweep_fill``)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import v2x.sweep as sweep
from v2x.channels.base import _DEFERRED, deferred_checks, require
from v2x.sweep_fill import DeviceWaitFiller
from v2x.sweep_plan import plan_sweep

sys.path.insert(0, str(Path(__file__).parent))
from test_sweep import _assert_same_results_and_ledger, tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("frames")


def _sweep_taking_light_steps(monkeypatch, cfg: dict, busy: bool = True) -> tuple[Path, list]:
    """``cfg``'s sweep with the light groups stepped in the heavy group's waits (on a CPU too;
    every wait taken as one with the device still busy, or none with ``busy=False``): the
    results file and ``(group index, batch, taken inside the heavy group's step)`` of every
    light step."""
    light_groups, step = sweep._light_groups, DeviceWaitFiller._step
    taken = []

    def recording(self, index, bi):
        taken.append((index, bi, self._cache.while_device_works is not None))
        return step(self, index, bi)

    monkeypatch.setattr(sweep, "_light_groups", lambda w, s, d, f: light_groups(w, s, d, True))
    monkeypatch.setattr(DeviceWaitFiller, "_step", recording)
    for name in ("_host_busy", "_device_busy"):
        monkeypatch.setattr(DeviceWaitFiller, name, lambda self: lambda: busy)
    return sweep.run_sweep(cfg), taken


def test_light_groups_stepped_in_a_heavy_groups_waits_give_the_same_results(
    cache_dir, tmp_path, monkeypatch
):
    """Ego-only, late fusion and the identity codec's max fusion (nothing through the channel)
    stepped inside the analog codec's max fusion group (its maps through the channel) give the
    results and ledger of the groups run one after the other; every light group takes each
    batch in order, the first batch's steps inside the heavy group's second batch, the rest
    after its last."""
    apart = sweep.run_sweep(tiny_config(cache_dir, tmp_path / "apart"))
    path, taken = _sweep_taking_light_steps(monkeypatch, tiny_config(cache_dir, tmp_path / "in"))
    _assert_same_results_and_ledger(path, apart)
    assert sorted(taken) == [(i, b, b == 0) for i in range(3) for b in range(2)]
    assert [b for _, b, _ in taken] == [0, 0, 0, 1, 1, 1]  # batch by batch


def test_with_the_device_never_busy_the_light_groups_run_after_the_heavy_one(
    cache_dir, tmp_path, monkeypatch
):
    """A device that has always caught up leaves nothing to fill: the light steps all run after
    the heavy group's last batch, with the same results."""
    apart = sweep.run_sweep(tiny_config(cache_dir, tmp_path / "apart"))
    cfg = tiny_config(cache_dir, tmp_path / "in")
    path, taken = _sweep_taking_light_steps(monkeypatch, cfg, busy=False)
    _assert_same_results_and_ledger(path, apart)
    assert len(taken) == 6 and not any(inside for _, _, inside in taken)


def test_which_groups_are_light(cache_dir, tmp_path):
    """Light: the groups that send nothing on air (ego-only, late fusion, a codec that does not
    use the channel); taken out only when every group runs alone, there is a heavy group and
    filling is on (by default on CUDA only)."""
    plan = plan_sweep(tiny_config(cache_dir, tmp_path))
    waves = [[(g, list(plan.snr_db))] for g in plan.groups]
    never = lambda group, snrs: False  # noqa: E731
    heavy, light = sweep._light_groups(waves, never, torch.device("cpu"), True)
    assert [(w[0][0].fusion, w[0][0].codec) for w in heavy] == [("max", "analog")]
    assert [(g.fusion, g.codec) for g, _ in light] == [
        ("none", "n/a"),
        ("late", "n/a"),
        ("max", "identity"),
    ]
    assert sweep._light_groups(waves, never, torch.device("cpu"), None) == (waves, [])
    assert sweep._light_groups(waves, never, torch.device("cpu"), False) == (waves, [])
    assert sweep._light_groups([sum(waves, [])], never, "cpu", True) == ([sum(waves, [])], [])
    light_only = [w for w in waves if w[0][0].codec != "analog"]
    assert sweep._light_groups(light_only, never, "cpu", True) == (light_only, [])
    silent = lambda group, snrs: group.codec == "analog"  # noqa: E731
    assert sweep._light_groups(waves, silent, "cpu", True) == (waves, [])


class _Run:
    """A light group's run whose step draws from torch's generator, sets the feature cache's
    batch index and opens the channel's deferred checks."""

    def __init__(self, cache, log: list) -> None:
        self.cache, self.log = cache, log

    def step(self, bi, item, bar) -> None:
        self.cache.batch_index = 100 + bi
        with deferred_checks():
            require(torch.tensor(True), "never")
            self.log.append((bi, torch.rand(()).item(), len(_DEFERRED.queue)))


def test_a_light_step_leaves_the_generator_the_batch_index_and_the_checks_as_it_found_them():
    """Taken in the middle of a heavy group's step, a light step restores torch's generator
    state and the feature cache's batch index, and its channel checks go to a block of its own
    (not the heavy step's open one); a step is taken only on a batch the heavy group has
    finished; ``drain`` takes the rest."""
    cache, log, built = SimpleNamespace(batch_index=7), [], []

    def start(index):
        built.append(index)
        return _Run(cache, log)

    always = lambda: lambda: True  # noqa: E731
    filler = DeviceWaitFiller(start, 1, [None] * 3, cache, torch.device("cpu"), None, busy=always)
    torch.manual_seed(0)
    with deferred_checks():
        require(torch.tensor(True), "the heavy step's check")
        filler()  # nothing done yet: nothing to take
        assert built == [] and log == []
        filler.batch_done(0)
        filler.batch_done(1)
        state = torch.get_rng_state()
        filler()
        assert torch.equal(torch.get_rng_state(), state) and cache.batch_index == 7
        assert len(_DEFERRED.queue) == 1  # only the heavy step's own check
    assert built == [0] and [(b, n) for b, _, n in log] == [(0, 1), (1, 1)]
    torch.manual_seed(0)
    assert log[0][1] == log[1][1] == torch.rand(()).item()  # each from the state it found
    filler.batch_done(2)
    filler.drain()
    assert [b for b, _, _ in log] == [0, 1, 2]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_light_groups_in_the_heavy_groups_waits_give_the_same_results(
    cache_dir, tmp_path, monkeypatch
):
    """On CUDA (the default there: on a stream of their own, scored after it) the light
    groups stepped in the heavy group's waits give the results and ledger of the groups one
    after the other (``FILL_DEVICE_WAITS`` off), with pose noise too: as the device's timing
    has it, and with a step taken at every wait."""
    grid = {"pose_noise": [[0.0, 0.0], [0.5, 0.02]]}
    monkeypatch.setattr(sweep, "FILL_DEVICE_WAITS", False)
    apart = sweep.run_sweep(
        {**tiny_config(cache_dir, tmp_path / "apart", **grid), "device": "cuda"}
    )
    monkeypatch.setattr(sweep, "FILL_DEVICE_WAITS", True)
    cfg = {**tiny_config(cache_dir, tmp_path / "in", **grid), "device": "cuda"}
    _assert_same_results_and_ledger(sweep.run_sweep(cfg), apart)
    path, taken = _sweep_taking_light_steps(monkeypatch, {**cfg, "output_dir": str(tmp_path / "b")})
    _assert_same_results_and_ledger(path, apart)
    light = {i for i, _, _ in taken}  # (ego-only and late fusion per pose noise, identity's)
    assert len(light) == 5 and sum(inside for _, _, inside in taken) == len(light)  # batch 0's
