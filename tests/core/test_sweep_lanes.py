"""Groups that send nothing on air computed on a thread beside the device's (``v2x.sweep_lanes``).

Side lanes run on CUDA only by default; these tests turn them on for the CPU
(``SIDE_LANE_DEVICES``) and compare with the same sweep computed one group at a time on one
thread, the oracle every other sweep test holds the sweep to."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from tests.core.test_sweep import _assert_same_results_and_ledger, tiny_config
from v2x.results import read_results
from v2x.sweep import SweepInterrupted, plan_sweep, run_sweep


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("frames")


def _threads(monkeypatch) -> dict[tuple[str, str], set[str]]:
    """The names of the threads each group's (fusion, codec) steps ran on."""
    import v2x.sweep_group as sweep_group

    seen: dict[tuple[str, str], set[str]] = {}
    step = sweep_group.GroupRun.step

    def recording(self, *args, **kwargs):
        name = threading.current_thread().name
        seen.setdefault((self.group.fusion, self.group.codec), set()).add(name.split("_")[0])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(sweep_group.GroupRun, "step", recording)
    return seen


def _lanes_on_cpu(monkeypatch) -> None:
    import v2x.sweep_lanes as sweep_lanes

    monkeypatch.setattr(sweep_lanes, "SIDE_LANE_DEVICES", ("cuda", "cpu"))


def _identity_never_arrives(monkeypatch) -> None:
    """``silent_groups`` says the identity codec's maps never arrive (at 100 kHz they do not:
    ``test_groups_that_can_never_deliver_a_map_are_ordered_with_the_ego_only_ones``), and
    nothing of analog's, which then runs on the device's thread and drops every payload at
    the deadline."""
    import v2x.sweep as sweep
    from v2x.sweep_order import silent_groups

    def only_identity(budget, shape):
        silent = silent_groups(budget, shape)
        return lambda group, snrs: group.codec == "identity" and silent(group, snrs)

    monkeypatch.setattr(sweep, "silent_groups", only_identity)


_CUDA = [pytest.mark.gpu,
         pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]  # fmt: skip


@pytest.mark.parametrize(
    ("bandwidth_hz", "device"),
    [(2.0e7, "cpu"), (1.0e5, "cpu"), pytest.param(2.0e7, "cuda", marks=_CUDA),
     pytest.param(1.0e5, "cuda", marks=_CUDA)],
    ids=["maps-arrive", "never-arrive", "cuda-maps-arrive", "cuda-never-arrive"],
)  # fmt: skip
def test_groups_that_send_nothing_run_beside_the_others_and_change_no_number(
    cache_dir, tmp_path, monkeypatch, bandwidth_hz, device
):
    """Ego-only and late fusion (and at 100 kHz the identity codec, whose maps are known never
    to arrive, ``v2x.known_drops``) run on the side lane's thread while the device's thread runs
    the feature groups on air; results and ledger equal those of the sweep computed one group
    at a time on one thread (pose noise, drawn from each group's own generator, included). On
    CUDA, where side lanes are on by default, too."""
    import v2x.sweep_lanes as sweep_lanes

    cfg = tiny_config(cache_dir, tmp_path / "one", pose_noise=[[0.5, 0.02]])
    cfg.update(budget={"bandwidth_hz": bandwidth_hz}, device=device)
    _identity_never_arrives(monkeypatch)
    seen = _threads(monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(sweep_lanes, "SIDE_LANE_DEVICES", ())
        alone = run_sweep(cfg)
    assert all(names == {"MainThread"} for names in seen.values())
    seen.clear()
    if device == "cpu":
        _lanes_on_cpu(monkeypatch)
    beside = run_sweep({**cfg, "output_dir": str(tmp_path / "lanes")})
    side = {"v2x-side-lane"}
    expected = {("none", "n/a"): side, ("late", "n/a"): side, ("max", "analog"): {"MainThread"}}
    expected[("max", "identity")] = side if bandwidth_hz < 1e6 else {"MainThread"}
    assert seen == expected
    _assert_same_results_and_ledger(beside, alone)
    ledger = read_results([beside], ledger=True).to_pydict()
    maps = [d for d, c in zip(ledger["delivered"], ledger["codec"]) if c != "n/a"]
    assert any(ledger["sent"]) and any(maps) == (bandwidth_hz > 1e6)


def test_a_group_sent_on_air_beside_the_device_thread_is_refused_and_the_rest_saved(
    cache_dir, tmp_path, monkeypatch
):
    """Were a group that sends maps on air put in the side lane, it would draw from torch's
    global generators while the device's thread seeds and draws from them per condition block:
    ``send`` refuses it there with a message naming the rule, and the groups of the device's
    thread are saved."""
    import v2x.sweep_lanes as sweep_lanes

    _lanes_on_cpu(monkeypatch)
    monkeypatch.setattr(
        sweep_lanes, "sends_nothing", lambda group, snrs, silent: group.codec != "analog"
    )
    cfg = tiny_config(cache_dir, tmp_path)
    with pytest.raises(RuntimeError, match="draws from torch's global generators.*side"):
        run_sweep(cfg)
    saved = read_results([tmp_path]).to_pydict()
    groups = sorted(zip(saved["fusion"], saved["codec"]))
    assert groups == sorted([("max", "analog"), ("late", "n/a"), ("none", "n/a")] * 2)


def test_ctrl_c_on_the_device_thread_stops_the_side_lane_and_the_sweep_resumes(
    cache_dir, tmp_path, monkeypatch
):
    """Ctrl-C in the device thread's first step: the side lane stops after its current frame
    batch, the groups it finished are saved, and the same command computes the rest, giving the
    results and ledger of a sweep computed one group at a time."""
    import v2x.sweep_group as sweep_group

    cfg = tiny_config(cache_dir, tmp_path / "lanes")
    alone = run_sweep({**cfg, "output_dir": str(tmp_path / "one")})
    _lanes_on_cpu(monkeypatch)
    step = sweep_group.GroupRun.step

    def interrupted(self, *args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(sweep_group.GroupRun, "step", interrupted)
    with pytest.raises(SweepInterrupted, match="of the 8 cells to compute were saved"):
        run_sweep(cfg)
    files = list((tmp_path / "lanes").glob("*.parquet"))
    saved = read_results([tmp_path / "lanes"]).to_pydict()["fusion"] if files else []
    assert set(saved) <= {"none", "late"}  # only side-lane groups
    monkeypatch.setattr(sweep_group.GroupRun, "step", step)
    _assert_same_results_and_ledger(run_sweep(cfg), alone)


def test_side_lanes_only_where_every_group_runs_alone_without_clock_or_graphs(cache_dir):
    """``split_lanes``: on the side lane's devices, with one group per wave, the groups that send
    nothing go beside the others, in their order; not on the CPU by default, not when the
    groups run in lockstep (features beyond the cache), with asynchronous sensing or CUDA
    graphs, nor when no group would be left for the device's thread."""
    from v2x.sweep_lanes import split_lanes

    def lanes(device="cuda", wave=1, silent=lambda g, s: False, **cfg):
        plan = plan_sweep({**tiny_config(cache_dir, Path("unused")), **cfg})
        todo = [(g, list(plan.snr_db)) for g in plan.groups]
        waves = [todo[i : i + wave] for i in range(0, len(todo), wave)]
        main, side = split_lanes(plan, waves, silent, torch.device(device))
        name = lambda item: (item[0].fusion, item[0].codec)  # noqa: E731
        return [[name(i) for i in w] for w in main], [name(i) for i in side]

    main, side = lanes()
    assert side == [("none", "n/a"), ("late", "n/a")]
    assert main == [[("max", "identity")], [("max", "analog")]]
    main, side = lanes(silent=lambda g, s: g.codec == "identity")
    assert side == [("none", "n/a"), ("late", "n/a"), ("max", "identity")]
    assert main == [[("max", "analog")]]
    for off in (
        lanes(device="cpu"),
        lanes(wave=2),
        lanes(asynchrony={"enabled": True}),
        lanes(cuda_graph=True),
        lanes(silent=lambda g, s: True),
    ):
        assert off[1] == [] and len(sum(off[0], [])) == 4


def test_seeds_do_nothing_and_sending_is_refused_inside_global_rng_untouched():
    """Inside ``global_rng_untouched`` ``seed_torch`` leaves torch's global CPU generator as it
    was, and ``send`` (maps on air) raises before drawing anything; outside, both work."""
    from v2x.channels import build_channel
    from v2x.condition_streams import send
    from v2x.global_rng import global_rng_untouched, seed_torch
    from v2x.semcom import build_codec

    codec, channel = build_codec("analog"), build_channel("awgn")
    maps, snr = torch.rand(2, 4, 8, 8), torch.full((2,), 10.0)
    seed_torch(3)
    state = torch.get_rng_state()
    with global_rng_untouched():
        seed_torch(5)
        assert torch.equal(torch.get_rng_state(), state)
        with pytest.raises(RuntimeError, match="draws from torch's global generators"):
            send(codec, channel, maps, snr, seeds=[1])
        assert torch.equal(torch.get_rng_state(), state)
    seed_torch(5)
    assert not torch.equal(torch.get_rng_state(), state)
    assert send(codec, channel, maps, snr, seeds=[1]).decoded.shape == maps.shape


def test_each_thread_has_its_own_batch_index_in_the_feature_cache():
    """Two threads share one ``EncodeCache``: each sees the batch index it set."""
    from v2x.sweep_reuse import EncodeCache

    cache = EncodeCache(torch.nn.Identity(), 0.0)
    cache.batch_index = 3
    seen = []
    thread = threading.Thread(target=lambda: (seen.append(cache.batch_index),
                                              setattr(cache, "batch_index", 7)))  # fmt: skip
    thread.start()
    thread.join()
    assert seen == [None] and cache.batch_index == 3
