"""Sweeps end to end on a tiny model and frame set: validation, accounting, resume, determinism."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from v2x.perception.detector import CoopDetector
from v2x.results import read_results
from v2x.sweep import plan_sweep, run_sweep
from v2x.sweep_rows import compute_ap

FEATURES = 8  # feature channels of the tiny model; its map is [8, 64, 64] (±25.6 m, 0.4 m, /2)


def tiny_model(feature_channels: int = FEATURES) -> dict:
    """The sweep tests' detector config: the small detector at its smallest, ±25.6 m (the
    sweeps' default is the standard detector: ``backbone`` names the small one's fields)."""
    return {
        "backbone": "small",
        "grid": {"x_range_m": [-25.6, 25.6], "y_range_m": [-25.6, 25.6]},
        "pillar_channels": 8,
        "backbone_channels": [8, 16],
        "backbone_layers": 1,
        "feature_channels": feature_channels,
        "score_threshold": 0.0,
        "max_detections": 20,
    }


def tiny_config(cache_dir: Path, output_dir: Path, **grid) -> dict:
    lidar = {"columns": 128, "max_range_m": 40.0}
    return {
        "checkpoint": "untrained",
        "model": tiny_model(),
        "data": {
            "num_frames": 4,
            "frames_per_sequence": 2,
            "seed": 7,
            "cache_dir": str(cache_dir),
            "synthetic": {
                "vehicle_lidar": {"preset": "vlp16", **lidar},
                "rsu_lidar": {"preset": "rsu32", **lidar},
                "uav_lidar": {"preset": "uav_down", "beams": 8, **lidar},
            },
        },
        "batch_size": 2,
        "grid": {
            "snr_db": [0.0, 10.0],
            "codecs": ["identity", "analog"],
            "fusions": ["none", "late", "max"],
            **grid,
        },
        "output_dir": str(output_dir),
        "quiet": True,
    }


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("frames")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir):
    """One uninterrupted sweep, with the encoder calls counted."""
    out = tmp_path_factory.mktemp("reference")
    calls = []
    original = CoopDetector.encode

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    CoopDetector.encode = counting
    try:
        path = run_sweep(tiny_config(cache_dir, out))
    finally:
        CoopDetector.encode = original
    return path, len(calls)


def _canonical(table) -> list[tuple]:
    rows = table.to_pylist()
    out = []
    for r in rows:
        out.append(
            tuple(
                (k, None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in sorted(r.items())
            )
        )
    return sorted(out, key=repr)


def _assert_same_results_and_ledger(path: Path, ref_path: Path) -> None:
    """The results files and their ledgers hold the same rows (``_canonical``)."""
    assert _canonical(read_results([path])) == _canonical(read_results([ref_path]))
    ledger, ref_ledger = (
        pq.read_table(p.with_name(p.name.replace(".parquet", ".ledger.parquet")))
        for p in (path, ref_path)
    )
    assert _canonical(ledger) == _canonical(ref_ledger)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"codecs": ["nonsense"]},
            "^sweep: field 'grid.codecs': unknown codec 'nonsense'; valid choices: .*identity",
        ),
        (
            {"channels": ["ether"]},
            "^sweep: field 'grid.channels': unknown channel 'ether'; valid choices: .*awgn",
        ),
        (
            {"fusions": ["telepathy"]},
            "^sweep: field 'grid.fusions': unknown fusion 'telepathy'; valid choices: .*max",
        ),
        ({"snr_db": []}, "grid.snr_db' is empty"),
        ({"bandwidth_ratios": [1.5]}, r"bandwidth_ratios' holds 1.5; each must be in \(0, 1\]"),
        ({"bandwidth_ratios": [0.0]}, r"bandwidth_ratios' holds 0.0"),
        ({"pose_noise": [[-1.0, 0.0]]}, "pose_noise"),
        # one (translation, yaw) setting written without its brackets: two bare numbers, each
        # once read as a translation-only entry, now refused (it ran as two other settings)
        ({"pose_noise": [0.2, 0.01]}, r"grid.pose_noise' entries must be .* pairs .*got 0.2$"),
        ({"pose_noise": 5}, r"pairs \(one setting: \[\[0.2, 0.01\]\]\), finite and >= 0, got 5$"),
    ],
)
def test_bad_config_fails_before_any_work(tmp_path, override, message):
    cache, out = tmp_path / "cache", tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        run_sweep(tiny_config(cache, out, **override))
    assert not cache.exists() and not out.exists()


def test_bad_sections_name_the_field(tmp_path):
    cfg = tiny_config(tmp_path, tmp_path)
    with pytest.raises(ValueError, match="unknown config field"):
        plan_sweep({**cfg, "gird": {}})
    # a value of the wrong type or range is refused naming its field, not failed on mid-run
    for section, field, value, message in (
        ("budget", "deadline_s", "abc", r"budget: field 'deadline_s' is 'abc'; expected"),
        ("budget", "processing_latency_s", -0.1, r"'processing_latency_s' is -0.1; expected"),
        ("network", "comm_range_m", "far", r"network: field 'comm_range_m' is 'far'; expected"),
        ("data", "max_agents", 0, r"sweep: field 'data.max_agents' must be >= 1, got 0"),
    ):
        with pytest.raises(ValueError, match=message):
            plan_sweep({**cfg, section: {**cfg.get(section, {}), field: value}})
    # an empty output folder (an unset shell variable) is not the working folder
    with pytest.raises(ValueError, match=r"sweep: field 'output_dir' must name a folder, got ''"):
        plan_sweep({**cfg, "output_dir": ""})
    # a switch is true or false (any text was taken as true)
    for switch in ("quiet", "plots", "table", "allow_corrupt", "cuda_graph", "deterministic"):
        with pytest.raises(ValueError, match=rf"'{switch}' must be true or false, got 'maybe'"):
            plan_sweep({**cfg, switch: "maybe"})
    with pytest.raises(ValueError, match="scheduler"):
        plan_sweep({**cfg, "budget": {"scheduler": "lottery"}})
    with pytest.raises(ValueError, match="deepjscc.*bandwidth_ratio"):
        plan_sweep(
            {**cfg, "grid": {**cfg["grid"], "codecs": ["deepjscc"], "bandwidth_ratios": [0.9]},
             "codec_options": {"deepjscc": {"checkpoint": "untrained"}}}  # fmt: skip
        )
    # no packaged codec codes the tiny model's 8-channel maps: refused before any work
    with pytest.raises(ValueError, match="deepjscc.checkpoint.*no packaged codec for in_channels=8"):
        plan_sweep({**cfg, "grid": {**cfg["grid"], "codecs": ["deepjscc"]}})
    # the standard detector's shipped codec allows ratios up to 1/16, checked when planning
    with pytest.raises(ValueError, match="bandwidth_ratio"):
        plan_sweep({"model": "pointpillars", "grid": {"bandwidth_ratios": [0.125]}})


def test_groups_codec_free_fusions_once_and_encodes_once_per_batch(reference):
    path, encodes = reference
    table = pq.read_table(path)
    # none + late (no codec, no channel) and max x {identity, analog}: 4 groups x 2 SNRs.
    assert table.num_rows == 8
    assert sorted(set(zip(table["fusion"].to_pylist(), table["codec"].to_pylist()))) == [
        ("late", "n/a"),
        ("max", "analog"),
        ("max", "identity"),
        ("none", "n/a"),
    ]
    assert encodes == 2  # 4 frames in batches of 2: one encoder pass per batch for every group
    ego = table.filter(pc.equal(table["fusion"], "none"))
    assert len(set(ego["ap_30"].to_pylist())) == 1  # nothing sent: no SNR dependence
    assert len(set(table["cell_id"].to_pylist())) == 8
    assert set(table["num_frames"].to_pylist()) == {4}
    assert all(json.loads(c)["sort"] == "per_frame" for c in table["eval_convention"].to_pylist())


def _encoded(monkeypatch, cfg: dict) -> tuple[Path, int]:
    """``run_sweep(cfg)``'s results file and its encoder passes."""
    calls = []
    original = CoopDetector.encode

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CoopDetector, "encode", counting)
    path = run_sweep(cfg)
    monkeypatch.setattr(CoopDetector, "encode", original)
    return path, len(calls)


def test_groups_run_in_lockstep_over_the_batches_when_the_features_do_not_fit(
    reference, cache_dir, tmp_path, monkeypatch
):
    """With no room for features (``feature_cache_gb: 0``) the groups run in lockstep over the
    frame batches (``v2x.sweep._waves``): each batch is encoded once for all of them, where
    groups run one at a time encode it once per group. Both give the reference sweep's results
    and ledger (its cache holds every batch); with pose noise, which each group draws from its
    own generator, lockstep and one group at a time agree too."""
    import v2x.sweep as sweep

    uncached = {**tiny_config(cache_dir, tmp_path / "lockstep"), "feature_cache_gb": 0}
    path, encodes = _encoded(monkeypatch, uncached)
    assert encodes == 2  # 4 frames in batches of 2, 4 groups
    _assert_same_results_and_ledger(path, reference[0])
    monkeypatch.setattr(sweep, "LOCKSTEP_GROUPS", 1)  # one group at a time
    one_at_a_time = {**uncached, "output_dir": str(tmp_path / "one")}
    path, encodes = _encoded(monkeypatch, one_at_a_time)
    assert encodes == 8  # each of the 4 groups encodes each batch
    _assert_same_results_and_ledger(path, reference[0])
    noisy = tiny_config(cache_dir, tmp_path, codecs=["analog"], pose_noise=[[0.5, 0.02]])
    noisy["feature_cache_gb"] = 0
    assert _lockstep_and_apart(monkeypatch, noisy, tmp_path) == (2, 6)  # 3 groups


def test_a_lockstep_group_is_finished_right_after_its_last_step():
    """``run_lockstep``'s ``finished``: each group's rows can start as soon as its own last step
    is queued, before the groups after it in the last batch run (``_run_lockstep`` hands them
    to the rows' pool there); every step still runs, batch by batch, in order."""
    from v2x.sweep import run_lockstep

    events: list[tuple] = []

    class Run:
        def __init__(self, name: str) -> None:
            self.name = name

        def step(self, bi: int, item: object, bar: object) -> None:
            events.append(("step", self.name, bi))

    runs = [Run("heavy"), Run("light")]
    _, seconds = run_lockstep(
        runs, ["b0", "b1", "b2"], None, first_batch=4,
        finished=lambda run: events.append(("finished", run.name)),
    )  # fmt: skip
    assert len(seconds) == 2
    assert events == [
        ("step", "heavy", 4), ("step", "light", 4), ("step", "heavy", 5), ("step", "light", 5),
        ("step", "heavy", 6), ("finished", "heavy"), ("step", "light", 6), ("finished", "light"),
    ]  # fmt: skip


def test_digital_groups_in_lockstep_equal_them_one_at_a_time(cache_dir, tmp_path, monkeypatch):
    """The digital chain (its source coding shared within a group's batch, HARQ rounds, a
    Rayleigh channel, pose noise) in lockstep with another digital group gives what the two
    groups give one at a time, with one encoder pass per batch."""
    grid = {**_DIGITAL_GRID, "fusions": ["attention", "max"]}
    cfg = {**tiny_config(cache_dir, tmp_path, **grid), "feature_cache_gb": 0}
    cfg["eval"] = {"bootstrap": 0}
    assert _lockstep_and_apart(monkeypatch, cfg, tmp_path) == (2, 4)


def _lockstep_and_apart(monkeypatch, cfg: dict, tmp_path: Path) -> tuple[int, int]:
    """``cfg``'s sweep with its groups in lockstep and one at a time: asserts the same results
    and ledger; returns the two runs' encoder passes."""
    import v2x.sweep as sweep

    monkeypatch.setattr(sweep, "LOCKSTEP_GROUPS", 8)
    lockstep, in_lockstep = _encoded(monkeypatch, {**cfg, "output_dir": str(tmp_path / "wave")})
    monkeypatch.setattr(sweep, "LOCKSTEP_GROUPS", 1)
    apart, one_at_a_time = _encoded(monkeypatch, {**cfg, "output_dir": str(tmp_path / "apart")})
    _assert_same_results_and_ledger(lockstep, apart)
    return in_lockstep, one_at_a_time


def test_ctrl_c_in_a_lockstep_wave_saves_the_waves_before_it(cache_dir, tmp_path, monkeypatch):
    """Groups in lockstep waves of two (no room for features): Ctrl-C during the second wave
    keeps the first wave's two groups (4 of the 8 cells), says so, and the same command
    resumes with the other two groups."""
    import v2x.sweep as sweep
    import v2x.sweep_group as sweep_group

    monkeypatch.setattr(sweep, "LOCKSTEP_GROUPS", 2)
    steps, step = [], sweep_group.GroupRun.step

    def interrupted(self, *args, **kwargs):
        steps.append(self.group.key)
        if len(steps) == 6:  # the second wave's second step (waves of 2 groups x 2 batches)
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(sweep_group.GroupRun, "step", interrupted)
    cfg = {**tiny_config(cache_dir, tmp_path), "feature_cache_gb": 0}
    with pytest.raises(sweep.SweepInterrupted, match="4 of the 8 cells to compute were saved"):
        run_sweep(cfg)
    assert len(read_results([tmp_path]).to_pylist()) == 4
    monkeypatch.setattr(sweep_group.GroupRun, "step", step)
    computed = _computed_cells(monkeypatch)
    path = run_sweep(cfg)
    assert pq.read_table(path).num_rows == 8 and computed == [2, 2]


def test_a_waves_pending_rows_do_not_hold_up_the_next_wave(
    reference, cache_dir, tmp_path, monkeypatch
):
    """Waves of two groups with one row thread: the second wave starts while the first wave's
    two groups still wait for their rows (the device used to wait for all but ``ROW_THREADS``
    of them); the rows are released there (or, were the device to wait, by a timer after 60 s,
    which the test then reports), and the sweep gives the reference's results."""
    import threading
    from concurrent.futures import Future

    import v2x.sweep as sweep
    import v2x.sweep_group as sweep_group

    monkeypatch.setattr(sweep, "LOCKSTEP_GROUPS", 2)
    monkeypatch.setattr(sweep, "ROW_THREADS", 1)
    held: list[tuple[Future, tuple]] = []
    events: list[str] = []
    lock = threading.Lock()

    def release(why: str) -> None:
        with lock:
            if held and not held[0][0].done():
                events.append(why)
                for future, rows in held:
                    future.set_result(rows)

    finish, step = sweep_group.GroupRun.finish, sweep_group.GroupRun.step

    def holding(self, pool=None):
        rows = finish(self, None)  # computed now; handed over when released
        if len(held) == 2:
            return rows
        held.append((Future(), rows))
        if len(held) == 2:
            timer = threading.Timer(60, release, ("released by the timer",))
            timer.daemon = True
            timer.start()
        return held[-1][0]

    def stepping(self, *args, **kwargs):
        if len(held) == 2:
            release("the second wave started")
        return step(self, *args, **kwargs)

    monkeypatch.setattr(sweep_group.GroupRun, "finish", holding)
    monkeypatch.setattr(sweep_group.GroupRun, "step", stepping)
    path = run_sweep({**tiny_config(cache_dir, tmp_path), "feature_cache_gb": 0})
    assert events == ["the second wave started"]
    _assert_same_results_and_ledger(path, reference[0])


def _computed_cells(monkeypatch) -> list[int]:
    """The SNRs of each group ``run_sweep`` computes in a lockstep wave (``GroupRun``)."""
    import v2x.sweep_group as sweep_group

    counts: list[int] = []
    init = sweep_group.GroupRun.__init__

    def counting(self, plan, group, snrs, *args, **kwargs):
        counts.append(len(snrs))
        init(self, plan, group, snrs, *args, **kwargs)

    monkeypatch.setattr(sweep_group.GroupRun, "__init__", counting)
    return counts


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_groups_in_lockstep_equal_groups_one_at_a_time(cache_dir, tmp_path, monkeypatch):
    """On CUDA too, 8 groups (two pose noises) in lockstep over the batches give the results
    and ledger of the same groups run one at a time, with one encoder pass per batch."""
    cfg = tiny_config(cache_dir, tmp_path, pose_noise=[[0.0, 0.0], [0.5, 0.02]])
    cfg.update(device="cuda", feature_cache_gb=0)
    assert _lockstep_and_apart(monkeypatch, cfg, tmp_path) == (2, 16)  # 8 groups


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_next_batch_encoded_on_a_side_stream_changes_nothing(
    cache_dir, tmp_path, monkeypatch
):
    """On CUDA each group queues the next frame batch's encoding on a side stream while it
    works on the current one (``EncodeCache.prefetch``; here every batch after the first, the
    batches taken as soon as they are asked for): the results and ledger of the same sweep with
    no feature cache (every group encodes every batch itself, on the one stream), one encoder
    pass per batch."""
    import v2x.sweep as sweep
    from v2x.sweep_batches import PreparedBatches
    from v2x.sweep_reuse import EncodeCache

    monkeypatch.setattr(PreparedBatches, "ready", lambda self, index: True)
    queued, prefetch = [], EncodeCache.prefetch

    def counting(self, key, batch):
        before = len(self._pending)
        prefetch(self, key, batch)
        queued.extend([key] * (len(self._pending) - before))

    monkeypatch.setattr(EncodeCache, "prefetch", counting)
    cfg = {**tiny_config(cache_dir, tmp_path), "device": "cuda"}
    fetched, encodes = _encoded(monkeypatch, {**cfg, "output_dir": str(tmp_path / "fetched")})
    assert queued == [1] and encodes == 2  # 4 frames in batches of 2: batch 1 queued ahead
    monkeypatch.setattr(sweep, "LOCKSTEP_GROUPS", 1)  # one group at a time, nothing cached
    plain, _ = _encoded(monkeypatch, {**cfg, "output_dir": str(tmp_path / "plain"),
                                      "feature_cache_gb": 0})  # fmt: skip
    _assert_same_results_and_ledger(fetched, plain)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_batches_are_booked_from_host_copies_queued_behind_an_event(
    cache_dir, tmp_path, monkeypatch
):
    """On CUDA each batch's detections and ledger values reach the host through copies queued
    on the device's thread behind an event, for which the scorer thread waits
    (``queue_host_copies``): the results and ledger of the same sweep whose copies are complete
    before the device's thread goes on (the event waited for at once)."""
    import v2x.sweep_group as sweep_group

    queue, events = sweep_group.queue_host_copies, []

    def recorded(scored, item, delivery):
        on_host = queue(scored, item, delivery)
        events.append(on_host.ready is not None)
        return on_host

    monkeypatch.setattr(sweep_group, "queue_host_copies", recorded)
    cfg = {**tiny_config(cache_dir, tmp_path), "device": "cuda"}
    queued = run_sweep({**cfg, "output_dir": str(tmp_path / "queued")})
    assert events and all(events)
    monkeypatch.setattr(sweep_group, "queue_host_copies", lambda *a: queue(*a).wait())
    waited = run_sweep({**cfg, "output_dir": str(tmp_path / "waited")})
    _assert_same_results_and_ledger(queued, waited)


def test_a_sweep_refuses_symbols_that_are_not_finite_once_the_batch_is_done(
    cache_dir, tmp_path, monkeypatch
):
    """The channel's input checks of a batch's conditions are read once they all ran (one host
    read, ``v2x.execution.run_conditions``), and a failed one still stops the sweep with the
    channel's clear message."""
    import v2x.channels.base as channel_base

    monkeypatch.setattr(channel_base, "_finite", lambda x: torch.tensor(False))
    cfg = tiny_config(cache_dir, tmp_path, codecs=["analog"], fusions=["max"])
    with pytest.raises(ValueError, match="channel input 'x' contains NaN or Inf symbols"):
        run_sweep(cfg)


def test_the_feature_cache_queues_nothing_ahead_on_the_cpu():
    """``EncodeCache.prefetch`` is a CUDA-stream overlap: on the CPU it encodes nothing."""
    from v2x.sweep_reuse import EncodeCache

    class Model:
        feature_map_shape = (2, 4, 4)

        def encode(self, *args):
            raise AssertionError("encoded ahead on the CPU")

    cache = EncodeCache(Model(), 1e9)
    agents = torch.ones(1, 2, dtype=torch.bool)
    batch = SimpleNamespace(points=torch.zeros(1, 2, 8, 4), point_mask=agents, poses=None,
                            agent_mask=agents, batch_size=1)  # fmt: skip
    cache.prefetch(1, batch)
    assert cache.encodes == 0 and not cache._pending


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_feature_cache_says_whether_a_sweeps_features_fit(cache_dir, tmp_path, precision):
    """``EncodeCache.would_hold`` against the features the detector computes: a cache of
    exactly one batch's bytes holds that batch's frames and not one frame more. At a reduced
    precision it keeps the encoder's own maps (bfloat16: half the bytes) and hands them out
    as float32 unless asked for them as kept: the same values."""
    from v2x.sweep import load_frames
    from v2x.sweep_batches import prepare_device
    from v2x.sweep_reuse import EncodeCache

    cfg = tiny_config(cache_dir, tmp_path)
    plan = plan_sweep({**cfg, "eval": {**cfg.get("eval", {}), "precision": precision}})
    cache, batches = prepare_device(plan, load_frames(plan.data, True), torch.device("cpu"))
    batch = batches[0].batch
    cache.batch_index = 0
    kept = cache.encode(batch.points, batch.point_mask, batch.poses, float_output=False)
    assert kept.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    features = cache.encode(batch.points, batch.point_mask, batch.poses)
    assert cache.encodes == 1 and features.dtype == torch.float32
    assert torch.equal(features, kept.float())
    exact = EncodeCache(cache, kept.numel() * kept.element_size())
    assert exact.would_hold(batch, batch.batch_size)
    assert not exact.would_hold(batch, batch.batch_size + 1)


@pytest.mark.parametrize(
    ("device", "precision"),
    [("cpu", "bf16"), pytest.param("cuda", "fp16", marks=pytest.mark.gpu)],
)
def test_a_reduced_precision_sweep_keeping_its_encoders_maps_gives_the_float32_maps_table(
    cache_dir, tmp_path, monkeypatch, device, precision
):
    """At a reduced precision the sweep keeps the encoder's float16 / bfloat16 maps (half the
    cache) and its groups read them as their float32 copies: the same results and ledger, bit
    for bit, as the maps handed over as float32 throughout (ego only, late and max fusion;
    identity, analog, the digital payload)."""
    from v2x.perception.detector import CoopDetector

    codecs = ["identity", "analog", {"name": "digital_payload", "bits": 4}]
    cfg = tiny_config(cache_dir, tmp_path / "kept", codecs=codecs)
    cfg.update(device=device, eval={"precision": precision, "bootstrap": 20})
    kept = run_sweep(cfg)
    original = CoopDetector.encode
    monkeypatch.setattr(
        CoopDetector, "encode", lambda self, *a, float_output=True: original(self, *a)
    )
    floats = run_sweep({**cfg, "output_dir": str(tmp_path / "floats")})
    _assert_same_results_and_ledger(kept, floats)


def test_the_sweep_says_whether_its_groups_run_one_after_another_or_in_lockstep(
    cache_dir, tmp_path, caplog
):
    """``log_waves``: the feature cache's size, whether it holds the frames' features and so
    how the groups run, at INFO (what a slower sweep on a smaller GPU is owed)."""
    import logging
    import re

    cfg = tiny_config(cache_dir, tmp_path / "cached", snr_db=[10.0])
    with caplog.at_level(logging.INFO, logger="v2x.sweep"):
        run_sweep(cfg)
        run_sweep({**cfg, "output_dir": str(tmp_path / "uncached"), "feature_cache_gb": 0})
    said = [r.getMessage() for r in caplog.records if "frames' features: groups" in r.getMessage()]
    assert len(said) == 2, said
    assert re.fullmatch(r"feature cache [\d.]+ GB, holds 4 frames' features: groups one after "
                        r"another", said[0]), said[0]  # fmt: skip
    assert said[1] == ("feature cache 0.0 GB, cannot hold 4 frames' features: groups in "
                       "lockstep waves of up to 8")  # fmt: skip


def test_workers_sharing_memory_reserve_each_others_working_sets(cache_dir, tmp_path, monkeypatch):
    """``prepare_device`` for one of two workers on the host's memory with ``auto``: its cache
    is its share less the other worker's working set (``auto_cache_reserve``: 2.5 batches of
    features per SNR, half each), the unit being the first batch's features as the detector
    computes them; alone, or with a number of GB, the whole share."""
    import v2x.sweep_reuse as reuse
    from v2x.sweep import load_frames
    from v2x.sweep_batches import prepare_device

    monkeypatch.setattr(reuse, "_available_host_bytes", lambda: 64e9)
    monkeypatch.setattr(reuse, "_free_heap_bytes", lambda: 0.0)
    plan = plan_sweep(tiny_config(cache_dir, tmp_path))
    frames = load_frames(plan.data, True)
    for sharers in (1, 2):
        cache, batches = prepare_device(plan, frames, torch.device("cpu"), sharers)
        batch = batches[0].batch
        features = cache.encode(batch.points, batch.point_mask, batch.poses)
        size = features.numel() * features.element_size()
        share = 0.25 * 64e9 / sharers
        reserve = (sharers - 1) / sharers * 2.5 * len(plan.snr_db) * size
        assert cache.max_bytes == pytest.approx(share - reserve)
    fixed = plan_sweep({**tiny_config(cache_dir, tmp_path), "feature_cache_gb": 1})
    cache, batches = prepare_device(fixed, frames, torch.device("cpu"), 2)
    batch = batches[0].batch
    cache.encode(batch.points, batch.point_mask, batch.poses)
    assert cache.max_bytes == 1e9


def test_one_workers_auto_cache_leaves_its_own_working_set_free(cache_dir, tmp_path, monkeypatch):
    """With ``auto``, a worker's cache is at most its part of the free memory less its own
    working set (``auto_cache_room``: 2.5 batches of features per SNR; one worker on an 80 GB
    GPU at batches of 32 ran out of memory with half the free memory cached); where that
    leaves more than the share, the share; with a number of GB, that number."""
    import v2x.sweep_reuse as reuse
    from v2x.sweep import load_frames
    from v2x.sweep_batches import prepare_device

    monkeypatch.setattr(reuse, "_free_heap_bytes", lambda: 0.0)
    plan = plan_sweep(tiny_config(cache_dir, tmp_path))
    frames = load_frames(plan.data, True)
    working_set = 2.5 * len(plan.snr_db)  # batches

    def cache_for(free: float, sharers: int = 1, config=plan):
        monkeypatch.setattr(reuse, "_available_host_bytes", lambda: free)
        cache, batches = prepare_device(config, frames, torch.device("cpu"), sharers)
        batch = batches[0].batch
        features = cache.encode(batch.points, batch.point_mask, batch.poses)
        return cache, features.numel() * features.element_size()

    _, size = cache_for(64e9)
    tight, _ = cache_for(6 * size)  # share 1.5 batches; free less the working set: 1 batch
    assert tight.max_bytes == pytest.approx(6 * size - working_set * size)
    roomy, _ = cache_for(100 * size)  # the share (25 batches) leaves the working set free
    assert roomy.max_bytes == pytest.approx(0.25 * 100 * size)
    none_left, _ = cache_for(4 * size)  # not even the working set fits: no cache
    assert none_left.max_bytes == 0.0
    pair, _ = cache_for(40 * size, sharers=2)  # each: min(5 - 2.5, 20 - 5) batches
    assert pair.max_bytes == pytest.approx(0.25 * 40 * size / 2 - working_set / 2 * size)
    fixed = plan_sweep({**tiny_config(cache_dir, tmp_path), "feature_cache_gb": 1})
    chosen, _ = cache_for(4 * size, config=fixed)
    assert chosen.max_bytes == 1e9


def test_ledger_matches_hand_computed_costs_and_results_sums(reference):
    path, _ = reference
    results = pq.read_table(path)
    ledger = read_results([path], ledger=True)
    values = FEATURES * 64 * 64
    for codec, snr in (("identity", 0.0), ("identity", 10.0), ("analog", 10.0)):
        rows = ledger.filter(
            pc.and_(pc.equal(ledger["codec"], codec), pc.equal(ledger["snr_db"], snr))
        ).to_pylist()
        sent = [r for r in rows if r["sent"]]
        assert sent
        for r in sent:
            if codec == "identity":  # float16 over an ideal link at capacity log2(1 + snr)
                assert r["source_bits"] == values * 16
                capacity = math.log2(1 + 10 ** (snr / 10))
                assert r["channel_uses"] == pytest.approx(
                    math.ceil(values * 16 / capacity), rel=1e-6
                )
            else:  # two real values per complex symbol
                assert r["channel_uses"] == values / 2
            per_frame = sum(1 for x in sent if x["frame_id"] == r["frame_id"])
            assert r["share"] == pytest.approx(1 / per_frame)
            assert r["latency_s"] == pytest.approx(r["channel_uses"] / (20e6 / per_frame))
            assert r["delivered"] == (r["latency_s"] <= 0.1)
        cell = results.filter(
            pc.and_(pc.equal(results["codec"], codec), pc.equal(results["snr_db"], snr))
        ).to_pylist()[0]
        assert cell["mean_channel_uses_per_frame"] == pytest.approx(
            sum(r["channel_uses"] for r in sent) / 4
        )
        lost = sum(r["packets_lost"] for r in sent) / sum(r["packets_sent"] for r in sent)
        assert cell["packet_loss_rate"] == pytest.approx(lost)
        assert cell["realised_ratio"] == pytest.approx(
            sum(r["channel_uses"] for r in sent) / len(sent) / values
        )
    # identity at 0 dB needs 16 bits / 1 bit per use > the 0.1 s deadline: payloads are dropped.
    assert results.filter(
        pc.and_(pc.equal(results["codec"], "identity"), pc.equal(results["snr_db"], 0.0))
    )["delivered_fraction"].to_pylist() == [0.0]
    ego = results.filter(pc.equal(results["fusion"], "none"))
    assert ego["mean_channel_uses_per_frame"].to_pylist() == [0.0, 0.0]


def test_rerun_is_a_no_op_and_killed_sweep_resumes_identically(reference, cache_dir, tmp_path):
    path, _ = reference
    before = path.read_bytes()
    assert run_sweep(tiny_config(cache_dir, path.parent)) == path
    assert path.read_bytes() == before  # every cell done: nothing recomputed or rewritten

    out = tmp_path / "killed"
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(tiny_config(cache_dir, out)))
    # The child kills itself (SIGKILL, no clean-up) right after the 3rd group's ledger is on
    # disk but before its results are: two groups finished, one group's ledger orphaned. (Each
    # group is written as it finishes: SAVE_EVERY_S = 0; by default they are written together.)
    script = textwrap.dedent(
        f"""
        import json, os, signal
        import v2x.results as results
        import v2x.sweep_saving as saving
        from v2x.sweep import run_sweep
        saving.SAVE_EVERY_S = 0.0
        original, writes = results.atomic_write_parquet, []
        def write(table, path):
            original(table, path)
            writes.append(str(path))
            if len(writes) == 5:
                os.kill(os.getpid(), signal.SIGKILL)
        results.atomic_write_parquet = write
        run_sweep(json.load(open({str(cfg_file)!r})))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    partial = out / path.name
    assert pq.read_table(partial).num_rows == 4  # two groups x two SNRs survived the kill
    assert (
        pq.read_table(partial.with_name(path.name.replace(".parquet", ".ledger.parquet"))).num_rows
        > 0
    )

    resumed = run_sweep(tiny_config(cache_dir, out))
    assert resumed == partial
    final = pq.read_table(resumed)
    assert final.num_rows == 8 and len(set(final["cell_id"].to_pylist())) == 8
    assert _canonical(final) == _canonical(pq.read_table(path))  # same config + seed, same numbers
    ledger_a = read_results([path], ledger=True)
    ledger_b = read_results([resumed], ledger=True)
    assert _canonical(ledger_a) == _canonical(ledger_b)


def test_plots_and_table(reference, tmp_path, capsys):
    from v2x.plots import make_plots

    path, _ = reference
    files = make_plots([path.parent], tmp_path, formats=["png", "pdf"], metric="ap_30")
    names = sorted(f.name for f in files)
    assert names == sorted(
        f"{n}.{e}"
        for n in ("ap_vs_snr", "ap_vs_bandwidth", "latency_aoi_cdf", "snr_map")
        for e in ("png", "pdf")
    )
    for f in files:
        head = f.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if f.suffix == ".png" else head.startswith(b"%PDF")
    text = capsys.readouterr().out
    assert "identity" in text and "AP convention" in text
    with pytest.raises(ValueError, match="unknown metric"):
        make_plots([path.parent], tmp_path, metric="accuracy")
    with pytest.raises(ValueError, match=r"plot: field 'out_dir' must name a folder, got ''"):
        make_plots([path.parent], "")
    with pytest.raises(ValueError, match=r"plot: field 'table' must be true or false, got 'no'"):
        make_plots([path.parent], tmp_path, table="no")  # (any text was taken as true)


def test_launcher_configs_compose():
    from hydra import compose, initialize_config_module

    targets = {
        "joblib": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
        "submitit_slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
        "ray": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
    }
    with initialize_config_module(config_module="v2x.conf", version_base=None):
        for name, target in targets.items():
            cfg = compose("sweep", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
            assert cfg.hydra.launcher._target_ == target
        cfg = compose("sweep")
        plan = plan_sweep(cfg)  # the shipped defaults validate
        assert {g.fusion for g in plan.groups} == {"none", "late", "max"}
        assert plan.snr_db == [-10.0, -5.0, 0.0, 5.0, 10.0, 20.0, 30.0]


@pytest.mark.slow
def test_joblib_multirun_writes_one_file_per_job(tmp_path, cache_dir):
    cfg = tiny_config(cache_dir, tmp_path / "out")
    m = cfg["model"]
    overrides = [
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model=pillars_center",  # the small detector: the overrides below are its fields
        "checkpoint=untrained",
        "model.grid.x_range_m=[-25.6,25.6]",
        "model.grid.y_range_m=[-25.6,25.6]",
        f"model.pillar_channels={m['pillar_channels']}",
        "model.backbone_channels=[8,16]",
        "model.backbone_layers=1",
        f"model.feature_channels={FEATURES}",
        "data.num_frames=2",
        "data.frames_per_sequence=2",
        f"data.cache_dir={cache_dir}",
        "data.synthetic.vehicle_lidar.columns=128",
        "data.synthetic.rsu_lidar.columns=128",
        "data.synthetic.uav_lidar.columns=128",
        "grid.codecs=[analog]",
        "grid.fusions=[max]",
        "grid.snr_db=[0,10]",
        "grid.channels=[awgn],[rayleigh]",
        f"output_dir={tmp_path / 'out'}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        "quiet=true",
        "table=false",
        "plots=false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "v2x.apps.sweep", *overrides],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = read_results([tmp_path / "out"])
    assert sorted(set(table["channel"].to_pylist())) == ["awgn", "rayleigh"]
    assert len(list((tmp_path / "out").glob("sweep-*.ledger.parquet"))) == 2
    assert torch.isfinite(torch.tensor(table["ap_30"].to_pylist())).all()


def test_importance_scheduler_and_stale_payloads(cache_dir, tmp_path):
    from v2x.datasets.build import cached_split

    cfg = tiny_config(cache_dir, tmp_path, snr_db=[0.0], codecs=["identity"], fusions=["max"])
    cfg["budget"] = {
        "scheduler": "importance",
        "late_policy": "stale",
        "alpha": 1.0,
        "beta": 0.0,
        "bandwidth_hz": 2e6,
    }
    path = run_sweep(cfg)
    ledger = read_results([path], ledger=True).to_pylist()
    data = cfg["data"]
    frames = {
        f.frame_id: f
        for f in cached_split(
            data["synthetic"],
            "test",
            data["num_frames"],
            data["frames_per_sequence"],
            data["seed"],
            cache_dir,
        )
    }
    for frame_id, frame in frames.items():
        rows = [r for r in ledger if r["frame_id"] == frame_id and r["sent"]]
        ego_blind = frame.visibility[frame.ego_index] == 0
        own = frame.meta.get("agent_box_index")
        if own is not None and int(own[frame.ego_index]) >= 0:
            ego_blind[int(own[frame.ego_index])] = False  # the ego's own car is not an object
        ids = [a.agent_id for a in frame.agents]
        novelty = {
            r["tx_agent"]: int(((frame.visibility[ids.index(r["tx_agent"])] > 0) & ego_blind).sum())
            for r in rows
        }
        total = sum(1 + n for n in novelty.values())
        for r in rows:  # beta = 0: shares proportional to 1 + objects only this agent sees
            assert r["share"] == pytest.approx((1 + novelty[r["tx_agent"]]) / total)
            # identity at 0 dB: 16 bits per value at 1 bit per use is far beyond the 0.1 s
            # deadline; "stale" fuses it anyway and records its age
            assert r["delivered"] and r["aoi_s"] == pytest.approx(r["latency_s"])
            assert r["latency_s"] > 0.1
            assert r["packets_lost"] == 0


def test_sweep_reads_real_data_layouts_through_the_readers(tmp_path):
    """``data.source=v2xsim`` / ``dair_v2x``: frames exported in the published layouts come back
    through the readers with their boxes (the readers' own tests check the formats)."""
    from v2x.datasets.export import export_frames
    from v2x.datasets.synthetic import generate_frame
    from v2x.datasets.synthetic_config import SyntheticConfig
    from v2x.sweep import load_frames

    frame = generate_frame(SyntheticConfig(), seed=3)
    for fmt in ("v2xsim", "dair_v2x"):
        root = tmp_path / fmt
        export_frames([frame], root, fmt)
        data = {"source": fmt, "path": str(root), "num_frames": 1, "reader": {}}
        frames = load_frames(data)
        assert len(frames) == 1
        assert frames[0].num_agents >= 2 and frames[0].boxes.shape[1] == 7
        # more frames than the dataset has is an error saying how many it has (never fewer)
        with pytest.raises(ValueError, match=r"data.num_frames' is 5.* has 1 frame"):
            load_frames({**data, "num_frames": 5})
    # a split that chooses no frame was an empty sweep without a word
    empty = {"split": "val", "split_scenes": {"val": [], "train": [0]}}
    data = {"source": "v2xsim", "path": str(tmp_path / "v2xsim"), "num_frames": None}
    with pytest.raises(ValueError, match=r"v2xsim dataset at .* gives no frames .*'val'"):
        load_frames({**data, "reader": empty})
    # a split alone takes the shipped scene split (conf/dataset/v2xsim.yaml: val is scenes 1,
    # 3, ...; this export has scene 0 only); it was refused as "not a key of 'split_scenes'"
    with pytest.raises(ValueError, match=r"has no scene 1 \(chosen by field 'split' = 'val' "):
        load_frames({**data, "reader": {"split": "val"}})
    mine = {"split": "val", "split_scenes": {"val": [0]}}  # a split of one's own still rules
    assert len(load_frames({**data, "reader": mine})) == 1
    # reader options beside the built-in world were ignored without a word
    with pytest.raises(ValueError, match=r"'data.reader' is \{'scenes': \[0, 2\]\}, but .*synthetic"):
        load_frames({"source": "synthetic", "num_frames": 1, "reader": {"scenes": [0, 2]}})
    # a misspelled reader option was a TypeError traceback
    with pytest.raises(ValueError, match=r"'data.reader' has unknown field\(s\) \['scene'\] "):
        load_frames({**data, "reader": {"scene": [0]}})
    with pytest.raises(ValueError, match="data.path"):
        load_frames({"source": "v2xsim", "path": None, "num_frames": 1})



def test_the_split_the_results_record_is_the_readers_own_on_real_data():
    """The results' ``split`` column said ``data.split`` (the built-in world's field, ``test``
    by default) for real data too, whatever part the reader read: a V2X-Sim sweep of its val
    scenes was recorded as ``test``. Now the reader's split, its scenes, or ``all``."""
    from v2x.loading import data_identity

    real = {"source": "v2xsim", "path": "/d", "split": "test"}
    assert data_identity({**real, "reader": {"split": "val"}}, [], "h")["split"] == "val"
    assert data_identity({**real, "reader": {"scenes": [0, 2]}}, [], "h")["split"] == "scenes [0, 2]"
    assert data_identity({**real, "reader": {}}, [], "h")["split"] == "all"
    opv2v = {"source": "opv2v", "path": "/d", "split": "test", "reader": {"split": "validate"}}
    assert data_identity(opv2v, [], "h")["split"] == "validate"
    synthetic = {"source": "synthetic", "split": "val", "reader": {"split": "x"}}
    assert data_identity(synthetic, [], "h")["split"] == "val"


def test_a_retrained_codec_checkpoint_changes_the_sweep_hash(tmp_path):
    """Resuming must not reuse results of other codec weights stored under the same path."""
    from v2x.semcom import build_codec

    path = tmp_path / "codec.pt"
    codec = build_codec("deepjscc", in_channels=FEATURES, hidden=8)
    codec.save_checkpoint(str(path))
    cfg = tiny_config(tmp_path, tmp_path, codecs=["deepjscc"], fusions=["max"])
    cfg["codec_options"] = {"deepjscc": {"checkpoint": str(path), "hidden": 8}}
    before = plan_sweep(cfg).config_hash
    assert plan_sweep(cfg).config_hash == before
    with torch.no_grad():
        codec.decoder.out.bias.add_(1.0)
    codec.save_checkpoint(str(path))
    assert plan_sweep(cfg).config_hash != before
    cfg["codec_options"]["deepjscc"]["checkpoint"] = str(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="codec_options.deepjscc.checkpoint"):
        plan_sweep(cfg)


def test_a_table_an_option_names_keys_the_results_by_its_content(tmp_path):
    """The digital codec's ``bler_table`` option was keyed by its path: a table edited in place
    resumed the old table's cells (other MCS choices, other numbers) under the same ids."""
    import json
    import shutil

    from v2x.semcom.bler_table import DEFAULT_TABLE_PATH
    from v2x.sweep_group import setting_key

    table = tmp_path / "tables" / "bler.json"
    table.parent.mkdir()
    shutil.copy(DEFAULT_TABLE_PATH, table)
    cfg = tiny_config(tmp_path, tmp_path, codecs=["digital"], fusions=["max"])
    cfg["codec_options"] = {"digital": {"bler_table": str(table)}}
    data = {"source": "synthetic", "split": "test", "num_frames": 4, "hash": "h"}
    before = setting_key(plan_sweep(cfg).groups[0], data)
    assert setting_key(plan_sweep(cfg).groups[0], data) == before
    content = json.loads(table.read_text())
    content["_comment"] = "shifted"  # any edit: the codec reads the whole file
    table.write_text(json.dumps(content))
    assert setting_key(plan_sweep(cfg).groups[0], data) != before


def test_each_row_says_what_produced_it_in_the_json_its_key_hashes(reference):
    """A row's ``setting`` is the canonical JSON that ``setting_key`` hashes (code, checkpoints,
    config, codec and channel options, precisions, frames): the key is its SHA-256, and what it
    holds is the group's own (its codec's options; the frames' content hash)."""
    from v2x.provenance import text_hash

    path, _ = reference
    rows = read_results([path]).to_pylist()
    assert rows
    for row in rows:
        assert text_hash(row["setting"], 16) == row["setting_key"]
        setting = json.loads(row["setting"])
        assert setting["data"]["hash"] == row["data_hash"]
        assert setting["code_hash"] == row["code_hash"]
        assert setting["eval"]["precision"] in ("fp32", "fp16", "bf16")
        assert {"codec_kwargs", "channel_options", "fusion_options", "model"} <= set(setting)


def test_the_library_versions_key_the_results(tmp_path, monkeypatch):
    """Results computed under another torch, numpy, Sionna, SciPy or constriction were resumed
    as this stack's (only the v2x code was keyed)."""
    from importlib.metadata import version

    import v2x.provenance as provenance
    import v2x.sweep_plan
    from v2x.sweep_group import setting_key

    assert provenance.library_versions()["torch"] == version("torch") == torch.__version__
    cfg = tiny_config(tmp_path, tmp_path, codecs=["analog"], fusions=["max"])
    data = {"source": "synthetic", "split": "test", "num_frames": 4, "hash": "h"}
    before = setting_key(plan_sweep(cfg).groups[0], data)
    real = provenance.library_versions
    for name in provenance.KEYED_LIBRARIES:
        monkeypatch.setattr(v2x.sweep_plan, "library_versions", lambda n=name: {**real(), n: "0"})
        assert setting_key(plan_sweep(cfg).groups[0], data) != before, name


def test_a_checkpoints_decode_fields_from_the_model_section_key_the_results(tmp_path):
    """With a detector checkpoint the ``model`` section's decode fields (score threshold, NMS
    IoU, detections kept) act on the loaded detector, so they key its results; its
    architecture fields do not (the checkpoint's own architecture runs, and its SHA-256 keys
    it). Before, the whole section was dropped from the key and from the detector."""
    from v2x.perception.checkpoint import detector_config_from_dict, save_checkpoint
    from v2x.perception.detector import CoopDetector
    from v2x.sweep import load_model
    from v2x.sweep_group import setting_key

    cfg = tiny_config(tmp_path, tmp_path, codecs=["analog"], fusions=["max"])
    path = tmp_path / "detector.pt"
    save_checkpoint(path, CoopDetector(detector_config_from_dict(dict(cfg["model"]))), step=0)
    cfg["checkpoint"] = str(path)
    data = {"source": "synthetic", "split": "test", "num_frames": 4, "hash": "h"}

    def keyed(**model) -> tuple[str, object]:
        run = {**cfg, "model": {**cfg["model"], **model}}
        plan = plan_sweep(run)
        return setting_key(plan.groups[0], data), load_model(plan.config, torch.device("cpu"))

    key, detector = keyed()
    assert detector.config.score_threshold == 0.0
    higher, stricter = keyed(score_threshold=0.5)
    assert higher != key and stricter.config.score_threshold == 0.5
    assert keyed(nms_iou_threshold=0.5)[0] != key and keyed(max_detections=5)[0] != key
    wider, same = keyed(pillar_channels=16)  # the checkpoint's architecture runs: same numbers
    assert wider == key and same.config.pillar_channels == 8


def test_geometric_snr_mode_runs_each_link_at_its_link_budget_plus_the_offset(tmp_path, cache_dir):
    import pyarrow.compute as pc

    cfg = tiny_config(cache_dir, tmp_path, snr_db=[-20.0, 0.0], snr_mode="geometric",
                      codecs=["analog"], fusions=["max"])
    path = run_sweep(cfg)
    results = read_results([path])
    assert set(results.column("snr_mode").to_pylist()) == {"geometric"}
    ledger = read_results([path], ledger=True)
    sent = ledger.filter(pc.equal(ledger["sent"], True))
    assert sent.num_rows > 0
    for offset in (-20.0, 0.0):
        rows = sent.filter(pc.equal(sent["cell_id"], _cell_of(results, offset)))
        link = np.asarray(rows.column("link_snr_db").to_pylist())
        used = np.asarray(rows.column("snr_db").to_pylist())
        assert np.all(np.isfinite(link))
        np.testing.assert_allclose(used, link + offset, atol=1e-4)  # float32 on the way
    with pytest.raises(ValueError, match="snr_mode"):
        plan_sweep(tiny_config(cache_dir, tmp_path, snr_mode="per-link"))


def _cell_of(results, snr_db: float) -> str:
    import pyarrow.compute as pc

    return results.filter(pc.equal(results["snr_db"], snr_db)).column("cell_id")[0].as_py()


# ----------------------------------------------------------------- keys: never stale, never mixed
def _computed(monkeypatch) -> list[int]:
    """Count the cells ``run_sweep`` computes (not reused)."""
    import v2x.sweep as sweep

    counts: list[int] = []
    original = sweep._run_group

    def counting(plan, group, snrs, *args, **kwargs):
        counts.append(len(snrs))
        return original(plan, group, snrs, *args, **kwargs)

    monkeypatch.setattr(sweep, "_run_group", counting)
    return counts


def test_results_carry_seed_data_identity_and_checkpoint_hashes(reference, cache_dir):
    from v2x.results import code_hash
    from v2x.sweep import frames_digest, load_frames

    path, _ = reference
    rows = read_results([path]).to_pylist()
    plan = plan_sweep(tiny_config(cache_dir, path.parent))
    frames = load_frames(plan.data)
    for r in rows:
        assert r["seed"] == 0 and r["dataset"] == "synthetic" and r["split"] == "test"
        assert r["num_frames"] == 4 and r["data_path"] == ""
        assert r["data_hash"] == frames_digest(frames)
        assert r["detector_sha256"] == "untrained" and r["code_hash"] == code_hash()
        assert r["codec_sha256"] == "" and len(r["setting_key"]) == 16
    other_seed = plan_sweep({**tiny_config(cache_dir, path.parent), "seed": 1})
    assert other_seed.config_hash != plan.config_hash


def test_changed_code_is_never_resumed(reference, cache_dir, tmp_path, monkeypatch):
    """Editing the package (here: a different code hash, as after editing a channel) recomputes
    every cell into another file; the old file stays as it was."""
    import shutil

    import v2x.sweep_plan as sweep_plan  # plans (and so keys) the cells

    path, _ = reference
    out = tmp_path / "out"
    shutil.copytree(path.parent, out)
    before = (out / path.name).read_bytes()
    counts = _computed(monkeypatch)
    assert run_sweep(tiny_config(cache_dir, out)) == out / path.name and counts == []
    monkeypatch.setattr(sweep_plan, "code_hash", lambda: "e" * 64)
    new = run_sweep(tiny_config(cache_dir, out))
    assert new != out / path.name and sum(counts) == 8
    assert (out / path.name).read_bytes() == before
    assert set(read_results([new])["code_hash"].to_pylist()) == {"e" * 64}
    assert not set(read_results([new])["cell_id"].to_pylist()) & set(
        read_results([path])["cell_id"].to_pylist()
    )


def test_a_part_registered_outside_v2x_is_keyed_by_its_source(tmp_path, cache_dir, monkeypatch):
    import importlib

    from v2x.channels import CHANNELS
    from v2x.sweep import setting_key

    module = tmp_path / "my_channels.py"
    module.write_text(
        "from v2x.channels import CHANNELS\n"
        "from v2x.channels.awgn import AWGNChannel\n"
        "@CHANNELS.register('my_awgn')\n"
        "class MyAWGN(AWGNChannel):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("my_channels")
        cfg = tiny_config(cache_dir, tmp_path, channels=["my_awgn"], fusions=["max"],
                          codecs=["analog"])
        data = {"source": "synthetic", "split": "test", "num_frames": 4, "hash": "h"}
        before = setting_key(plan_sweep(cfg).groups[0], data)
        assert setting_key(plan_sweep(cfg).groups[0], data) == before
        module.write_text(module.read_text().replace("pass", "scale = 2.0"))
        assert setting_key(plan_sweep(cfg).groups[0], data) != before
    finally:
        CHANNELS._factories.pop("my_awgn", None)
        sys.modules.pop("my_channels", None)


def test_adding_an_snr_computes_only_the_new_cells(reference, cache_dir, tmp_path, monkeypatch):
    import shutil

    path, _ = reference
    out = tmp_path / "grown"
    shutil.copytree(path.parent, out)
    counts = _computed(monkeypatch)
    grown = run_sweep(tiny_config(cache_dir, out, snr_db=[0.0, 10.0, 20.0]))
    assert sum(counts) == 4  # 4 groups x the one new SNR; the 8 cells of [0, 10] are reused
    table = read_results([grown])
    assert table.num_rows == 12 and sorted(set(table["snr_db"].to_pylist())) == [0.0, 10.0, 20.0]
    assert read_results([grown], ledger=True).num_rows > read_results([path], ledger=True).num_rows
    # Each cell's numbers do not depend on the cells computed with it: a fresh run agrees.
    counts.clear()
    fresh = run_sweep(tiny_config(cache_dir, tmp_path / "fresh", snr_db=[0.0, 10.0, 20.0]))
    assert sum(counts) == 12
    assert _canonical(read_results([fresh])) == _canonical(table)
    # (the ledger's condition_id is the position of the condition within its run)
    assert _canonical(read_results([fresh], ledger=True).drop_columns(["condition_id"])) == (
        _canonical(read_results([grown], ledger=True).drop_columns(["condition_id"]))
    )
    # and merging the three folders finds no conflict and no duplicate
    assert read_results([path.parent, out, tmp_path / "fresh"]).num_rows == 12


def test_seeds_are_averaged_and_other_settings_kept_apart_in_plots(reference, cache_dir, tmp_path,
                                                                  capsys):
    import shutil

    from v2x.plots import make_plots

    path, _ = reference
    out = tmp_path / "seeds"
    shutil.copytree(path.parent, out)
    run_sweep({**tiny_config(cache_dir, out, fusions=["none", "max"], codecs=["analog"]),
               "seed": 1})
    capsys.readouterr()
    make_plots([out], tmp_path / "fig", formats=["png"], metric="ap_30")
    text = capsys.readouterr().out
    header = text.splitlines()[0]
    assert "num_seeds" in header
    notes = [line for line in text.splitlines() if line.startswith("[lo, hi]: 95 % interval")]
    lines = [line for line in text.splitlines()[2:] if line.strip() and "convention" not in line
             and line not in notes and not line.startswith(("few units: ", "AP columns: "))]  # fmt: skip
    # max+analog and none over 2 seeds; max+identity and late over one: 4 settings x 2 SNRs
    assert len(lines) == 8
    assert notes == [  # the intervals say what they are (one seed, or seeds and towns)
        "[lo, hi]: 95 % interval, bootstrap over whole sequences (2 sequences); over seeds: "
        "Student-t over seeds and bootstrap over sequences in quadrature (2 sequences per seed)"
    ]
    assert sum(line.rstrip().endswith(" 2") for line in lines) == 4


def test_python_api_and_cli_share_one_set_of_defaults(tmp_path):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from v2x.sweep import SweepConfig, default_config

    with initialize_config_module(config_module="v2x.conf", version_base=None):
        cli = OmegaConf.to_container(compose("sweep"), resolve=True)
    cli.pop("hydra", None)
    assert default_config() == cli
    assert SweepConfig.from_any({}).to_dict() == cli
    defaults = SweepConfig()
    for name in ("seed", "device", "checkpoint", "batch_size", "output_dir", "quiet",
                 "allow_corrupt", "feature_cache_gb", "cuda_graph", "table", "plots", "plots_dir"):
        assert getattr(defaults, name) == cli[name], name
    plan = plan_sweep({"output_dir": str(tmp_path)})
    assert plan.snr_db == [float(v) for v in cli["grid"]["snr_db"]]
    assert plan.data["num_frames"] == cli["data"]["num_frames"]
    # speed-only options leave the results key alone
    assert plan_sweep({"output_dir": str(tmp_path), "cuda_graph": True}).config_hash == (
        plan.config_hash
    )


def test_a_sweep_config_built_directly_gets_the_yaml_defaults(tmp_path):
    """``SweepConfig(...)`` (exported by ``v2x.sweep``) plans as the same fields given as a
    mapping: its empty sections take the YAML's (e.g. ``eval.bootstrap`` 1000 and
    ``eval.fold_batchnorm``, not none and off)."""
    from v2x.sweep import SweepConfig

    fields = {"output_dir": str(tmp_path), "grid": {"snr_db": [0, 10]}, "eval": {"sort": "global"}}
    direct = plan_sweep(SweepConfig(**fields))
    mapped = plan_sweep(fields)
    assert direct.config_hash == mapped.config_hash
    assert direct.bootstrap == mapped.bootstrap == 1000 and direct.fold_batchnorm
    assert direct.snr_db == [0.0, 10.0] and direct.config.eval["sort"] == "global"
    assert SweepConfig.from_any(direct.config) is direct.config  # merged once
    unset = plan_sweep({**fields, "eval": None})  # no eval section at all: the YAML's
    assert unset.bootstrap == 1000 and unset.fold_batchnorm and unset.bootstrap_unit == "auto"


def test_the_python_api_runs_the_shipped_codec_unless_untrained_is_named(tmp_path, cache_dir):
    from v2x.provenance import file_digest as _file_digest
    from v2x.semcom.deepjscc_checkpoint import resolve_checkpoint

    cfg = tiny_config(cache_dir, tmp_path, codecs=["deepjscc"], fusions=["max"])
    for channels in (64, 384):  # the packaged codec of the model's feature maps
        wide = {**cfg, "model": {**cfg["model"], "feature_channels": channels}}
        (group,) = plan_sweep(wide).groups
        assert group.codec_kwargs["checkpoint"] == "shipped"
        assert group.codec_sha256 == _file_digest(Path(resolve_checkpoint("shipped", channels)))
    cfg["codec_options"] = {"deepjscc": {"checkpoint": None}}
    with pytest.raises(ValueError, match=r"codec_options.deepjscc.checkpoint.*'untrained'"):
        plan_sweep(cfg)
    cfg["codec_options"] = {"deepjscc": {"checkpoint": "untrained", "hidden": 8}}
    (group,) = plan_sweep(cfg).groups
    assert group.codec_sha256 == "untrained"
    path = run_sweep({**cfg, "grid": {**cfg["grid"], "snr_db": [10.0]}})
    assert read_results([path])["codec_sha256"].to_pylist() == ["untrained"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"grid": {"snr_db": "ten"}}, r"field 'grid.snr_db' must hold numbers, got 'ten'"),
        ({"grid": {"snr_db": [0, "x"]}}, r"field 'grid.snr_db' must hold numbers, got 'x'"),
        ({"grid": {"bandwidth_ratios": ["half"]}}, r"field 'grid.bandwidth_ratios'"),
        ({"data": {"num_frames": "many"}}, r"field 'data.num_frames' must be a whole number"),
        ({"batch_size": 2.5}, r"field 'batch_size' must be a whole number"),
        ({"grid": {"snr_db": [0, 0]}}, r"grid.snr_db' lists a value twice"),
        ({"grid": {"snr_db": [500]}}, r"'grid.snr_db' must be finite and within \[-300, 300\] dB, got 500.0"),
        ({"grid": {"snr_db": [0, -1000]}}, r"'grid.snr_db' must be finite .*300\] dB, got -1000.0"),
        ({"grid": {"snr_db": [float("nan")]}}, r"'grid.snr_db' must be finite .*, got nan"),
        ({"data": {"seed": 1.5}}, r"field 'data.seed' must be a whole number, got 1.5"),
        ({"data": {"seed": float("nan")}}, r"field 'data.seed' must be a whole number, got nan"),
        ({"data": {"seed": -1}}, r"field 'data.seed' must be >= 0, got -1"),
        ({"seed": -1}, r"field 'seed' must be >= 0, got -1"),
        ({"grid": {"pose_noise": [[float("nan"), 0.0]]}}, r"'grid.pose_noise' entries .* got \[nan"),
        ({"grid": {"pose_noise": [[0.0, float("inf")]]}}, r"finite and >= 0, got \[0.0, inf\]"),
        # a field of the wrong kind: one message, not a TypeError from deep in the planning
        ({"grid": 5}, r"^sweep: field 'grid' must be a mapping of fields, e.g. grid\.<field>=.*got 5$"),
        ({"budget": "x"}, r"^sweep: field 'budget' must be a mapping .*'\+budget=\{\.\.\.\}', got 'x'$"),
        ({"device": 5}, r"^sweep: field 'device' must be a device name or a list of them.*got 5$"),
        ({"device": ["cpu", 5]}, r"^sweep: field 'device' must be .*got \['cpu', 5\]$"),
        ({"checkpoint": 5}, r"^sweep: field 'checkpoint' must be text \(a path or a name\) or null, got 5$"),
        ({"plugins": "my_parts"}, r"^sweep: field 'plugins' must be a list of module names.*got 'my_parts'$"),
        ({"model": {"feature_channels": "abc"}}, r"^sweep: field 'model.feature_channels' must be a whole number >= 1, got 'abc'$"),
        ({"grid": {"late_policy": ["foo"]}}, r"^sweep: field 'grid.late_policy' holds 'foo'; valid choices: drop, stale$"),
        # options a part's constructor refuses: the field that holds them and what it takes
        ({"channel_options": {"awgn": {"foo": 1}}, "grid": {"channels": ["awgn"]}},
         r"^sweep: field 'channel_options.awgn': channel 'awgn' rejects its options \(.*'foo'\); "
         r"valid options: .*fused"),
        ({"codec_options": {"analog": {"foo": 1}}, "grid": {"codecs": ["analog"]}},
         r"^sweep: field 'codec_options.analog': codec 'analog' rejects .*; valid options: mtu_bytes"),
        ({"fusion_options": {"max": {"foo": 1}}, "grid": {"fusions": ["max"]}},
         r"^sweep: field 'fusion_options.max': fusion 'max' rejects .*; valid options: none$"),
        # ... given in a grid entry of their own: that entry, by its index (and the options
        # field too where it holds options of the part)
        ({"grid": {"codecs": ["identity", {"name": "analog", "foo": 1}]}},
         r"^sweep: field 'grid.codecs\[1\]': codec 'analog' rejects .*'foo'.*; valid options: mtu_bytes"),
        ({"codec_options": {"analog": {"mtu_bytes": 1500}},
          "grid": {"codecs": [{"name": "analog", "foo": 1}]}},
         r"^sweep: field 'codec_options.analog' and 'grid.codecs\[0\]': codec 'analog' rejects"),
        ({"grid": {"fusions": [{"name": "max", "foo": 1}]}},
         r"^sweep: field 'grid.fusions\[0\]': fusion 'max' rejects .*; valid options: none$"),
        ({"grid": {"codecs": [{"name": "deepjscc", "checkpoint": None}]}},
         r"^sweep: codec 'deepjscc' has no checkpoint \(field 'codec_options.deepjscc.checkpoint' "
         r"and 'grid.codecs\[0\].checkpoint' is None\); valid: a checkpoint path, 'shipped'"),
        (
            {"data": {"source": "synthetic", "path": "/data/v2xsim"}},
            r"field 'data.path' is '/data/v2xsim', but data.source=synthetic ignores it",
        ),
    ],
)
def test_inputs_that_would_be_ignored_or_are_not_numbers_name_the_field(tmp_path, override,
                                                                         message):
    with pytest.raises(ValueError, match=message):
        plan_sweep({**override, "output_dir": str(tmp_path)})


def test_cli_prints_user_errors_as_one_line_and_tracebacks_on_request(tmp_path):
    cmd = [sys.executable, "-m", "v2x.apps.sweep", "grid.snr_db=ten", f"output_dir={tmp_path}"]
    env = {k: v for k, v in os.environ.items() if k != "V2X_TRACEBACK"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "grid.snr_db" in lines[0] and "'ten'" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                          env={**env, "V2X_TRACEBACK": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "grid.snr_db" in proc.stderr


def test_ctrl_c_says_what_was_saved_and_how_to_resume(cache_dir, tmp_path, monkeypatch, capsys):
    import v2x.sweep as sweep
    from v2x.cli import user_errors

    original, calls = sweep._run_group, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) in (2, 4):  # the second group of each run
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep, "_run_group", interrupted)
    cfg = tiny_config(cache_dir, tmp_path)
    with pytest.raises(sweep.SweepInterrupted) as info:
        run_sweep(cfg)
    message = str(info.value)
    assert "2 of the 8 cells to compute were saved" in message
    assert "run the same command again to resume" in message and "sweep-" in message
    with pytest.raises(SystemExit) as exit_info:
        user_errors(lambda: run_sweep(cfg))()
    assert exit_info.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 of the 6 cells to compute were saved" in err[0]


def test_cells_equal_across_groups_are_computed_once_per_sweep(
    reference, cache_dir, tmp_path, monkeypatch
):
    """The tiny sweep's groups share a cell (equal accumulators: ego-only detections): its APs
    and intervals are computed once (``v2x.sweep_rows._MEMO``), no cell twice, the results
    are the reference's, and a second sweep in this process computes its cells again."""
    import collections

    import v2x.sweep_rows as sweep_rows

    asked, computed = [], []
    distinct, compute = sweep_rows._distinct_results, sweep_rows._computed_results

    def asking(accs, *args):
        asked.append(sorted(accs))
        return distinct(accs, *args)

    def computing(accs, *args):
        computed.append(sorted(accs))
        return compute(accs, *args)

    monkeypatch.setattr(sweep_rows, "_distinct_results", asking)
    monkeypatch.setattr(sweep_rows, "_computed_results", computing)
    path = run_sweep(tiny_config(cache_dir, tmp_path / "a"))
    times = collections.Counter(d for group in asked for d in group)
    assert max(times.values()) > 1  # a cell shared by two groups
    done = [d for group in computed for d in group]
    assert sorted(done) == sorted(times)  # each distinct cell computed exactly once
    assert _canonical(read_results([path])) == _canonical(read_results([reference[0]]))
    computed.clear()
    run_sweep(tiny_config(cache_dir, tmp_path / "b"))
    assert sorted(d for group in computed for d in group) == sorted(times)


def test_a_sweep_that_fails_keeps_the_groups_computed_before(cache_dir, tmp_path, monkeypatch):
    """An error other than Ctrl-C or lack of memory in the second group: it is raised, and
    the first group's cells are in the files (were dropped before: only Ctrl-C and the lack
    of memory saved the groups computed before them)."""
    import v2x.sweep as sweep

    original, calls = sweep._run_group, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("a bug in the second group")
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep, "_run_group", failing)
    with pytest.raises(ValueError, match="a bug in the second group"):
        run_sweep(tiny_config(cache_dir, tmp_path))
    assert len(read_results([tmp_path]).to_pylist()) == 2


def test_out_of_memory_says_what_was_saved_and_what_to_lower(
    cache_dir, tmp_path, monkeypatch, capsys
):
    """A device running out of memory mid-sweep (here raised by the second group, as CUDA's
    allocator raises it) keeps the finished groups, and the app prints one line naming the
    device, what was saved, and the settings that hold the memory (batch_size × SNRs,
    feature_cache_gb) with their values; it exits with status 3, and the same command
    resumes."""
    import v2x.sweep as sweep
    from v2x.cli import user_errors

    original, calls = sweep._run_group, []

    def short_of_memory(*args, **kwargs):
        calls.append(1)
        if len(calls) in (2, 4):  # the second group of each run
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 10.50 GiB.")
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep, "_run_group", short_of_memory)
    cfg = tiny_config(cache_dir, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        user_errors(lambda: run_sweep(cfg))()
    assert exit_info.value.code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    assert "out of memory on cpu ×1" in line and "Tried to allocate 10.50 GiB" in line
    assert "2 of the 8 cells to compute were saved" in line and "sweep-" in line
    snrs = len(cfg["grid"]["snr_db"])
    assert f"batch_size={cfg['batch_size']} frames × {snrs} SNRs" in line
    assert "feature_cache_gb=" in line and "run the same command again to resume" in line
    with pytest.raises(sweep.SweepOutOfMemory) as info:  # the API raises it, chained
        run_sweep(cfg)
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    assert "2 of the 6 cells to compute were saved" in str(info.value)
    monkeypatch.setattr(sweep, "_run_group", original)
    path = run_sweep(cfg)  # resumes: the last cells
    assert pq.read_table(path).num_rows == 8


def test_sigterm_saves_the_finished_groups_like_ctrl_c(cache_dir, tmp_path, monkeypatch, capsys):
    """A scheduler's SIGTERM (Slurm's time limit, ``timeout``) unwinds like Ctrl-C: the groups
    already computed are saved, one line says so, and the app exits with status 143."""
    import signal

    import v2x.sweep as sweep
    from v2x.cli import user_errors

    original, calls = sweep._run_group, []

    def terminated(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second group: the first one's rows are still pending
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep, "_run_group", terminated)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info:
        user_errors(lambda: run_sweep(tiny_config(cache_dir, tmp_path)))()
    assert exit_info.value.code == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 of the 8 cells to compute were saved" in err[0], err
    assert signal.getsignal(signal.SIGTERM) is before  # the app's handler is removed again
    assert len(read_results([tmp_path]).to_pylist()) == 2


def test_a_groups_logged_seconds_are_its_own_not_the_next_groups(
    cache_dir, tmp_path, monkeypatch, caplog
):
    """A group's rows finish on a thread while the next group runs; the seconds logged for it
    are its own pipeline time (group n takes 10**n s on a fake clock), not that plus the next
    group's, which it used to report."""
    import logging
    import types
    from concurrent.futures import Future

    import v2x.sweep as sweep

    clock, held = [0.0], []
    monkeypatch.setattr(sweep, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    original = sweep._run_group

    def timed(*args, **kwargs):
        for future, result in held:  # the previous group's rows finish only now
            future.set_result(result)
        held.clear()
        done = original(*args, **kwargs)
        clock[0] += 10.0 ** (len(seconds_of) + 1)
        seconds_of.append(clock[0])
        pending: Future = Future()
        held.append((pending, done.result() if isinstance(done, Future) else done))
        return pending

    def resolved(item):  # the last group's rows finish when the sweep waits for them
        for future, result in held:
            future.set_result(result)
        held.clear()
        return original_resolved(item)

    seconds_of: list[float] = []
    original_resolved = sweep._resolved
    monkeypatch.setattr(sweep, "_run_group", timed)
    monkeypatch.setattr(sweep, "_resolved", resolved)
    cfg = tiny_config(cache_dir, tmp_path, codecs=["identity"], fusions=["none", "max"])
    with caplog.at_level(logging.INFO, logger="v2x.sweep"):
        run_sweep(cfg)
    logged = [r.getMessage() for r in caplog.records if " frame-conditions in " in r.getMessage()]
    assert len(logged) == len(seconds_of) == 2
    for n, message in enumerate(logged, 1):
        assert f"frame-conditions in {10.0**n:.1f} s" in message, message


def test_every_ap_has_a_bootstrap_interval_over_frames(reference, tmp_path, monkeypatch, capsys):
    import matplotlib.axes

    from v2x.plots import make_plots
    from v2x.sweep import results_table_text

    path, _ = reference
    rows = read_results([path]).to_pylist()
    finite = 0
    for r in rows:
        for metric in ("ap_30", "ap_50", "ap_70"):
            lo, hi = r[f"{metric}_lo"], r[f"{metric}_hi"]
            if r["num_gt"] and not math.isnan(lo):
                assert 0.0 <= lo <= hi <= 1.0
                finite += 1
        for metric in ("vehicle_ap_30", "vehicle_ap_50", "vehicle_ap_70"):  # OpenCOOD's three
            lo, hi = r[f"{metric}_lo"], r[f"{metric}_hi"]
            assert math.isnan(r[metric]) or (math.isnan(lo) or lo <= hi), (metric, r)
            assert not (math.isnan(r[metric]) and not math.isnan(lo)), (metric, r)
    assert finite >= len(rows)  # the default config resamples (eval.bootstrap)
    assert any(not math.isnan(r["vehicle_ap_30_lo"]) for r in rows)
    # 2 frames per town: the default unit (auto) resamples whole towns, and says so
    assert {r["bootstrap_unit"] for r in rows} == {"sequence"}
    assert {r["bootstrap_units"] for r in rows} == {2}  # 4 frames, 2 per town
    text = results_table_text(read_results([path]))
    assert text.count("[") >= len(rows)  # "value [lo, hi]"
    # the vehicle APs (the README's headline metric) are columns too, with their intervals
    header = text.splitlines()[0].split()
    assert header.index("vehicle_ap_50") + 1 == header.index("vehicle_ap_70")
    # and says what the intervals resample, from how many towns, and that 2 are too few
    assert text.splitlines()[-2:] == [
        "[lo, hi]: 95 % interval, bootstrap over whole sequences (2 sequences)",
        "few units: an interval drawn from 2 units is coarse and covers less than 95 % (read it "
        "as the spread between them; more towns/scenes or frames narrow it honestly)",
    ]
    bars = []
    original = matplotlib.axes.Axes.errorbar

    def counting(self, *args, **kwargs):
        bars.append(kwargs.get("yerr"))
        return original(self, *args, **kwargs)

    bands = []
    original_band = matplotlib.axes.Axes.axhspan

    def banding(self, lo, hi, *args, **kwargs):
        bands.append((lo, hi))
        return original_band(self, lo, hi, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", counting)
    monkeypatch.setattr(matplotlib.axes.Axes, "axhspan", banding)
    make_plots([path], tmp_path, formats=["png"], metric="ap_30", table=False)
    assert bars  # error bars on the AP figures
    # and the ego-only reference level carries its interval as a band (it had none)
    ego = [r for r in rows if r["fusion"] == "none"]
    lo, hi = (sum(r[f"ap_30_{end}"] for r in ego) / len(ego) for end in ("lo", "hi"))
    assert bands and all(band == pytest.approx((lo, hi)) for band in bands)


def test_no_bootstrap_means_nan_intervals_and_another_key(cache_dir, tmp_path):
    cfg = tiny_config(cache_dir, tmp_path, snr_db=[10.0], codecs=["analog"], fusions=["max"])
    with_ci = read_results([run_sweep(cfg)]).to_pylist()[0]
    without = read_results([run_sweep({**cfg, "eval": {"bootstrap": 0}})]).to_pylist()[0]
    assert math.isnan(without["ap_50_lo"]) and math.isnan(without["ap_50_hi"])
    assert without["ap_50"] == with_ci["ap_50"]  # intervals never change an AP
    assert without["cell_id"] != with_ci["cell_id"]
    assert (with_ci["bootstrap_unit"], without["bootstrap_unit"]) == ("sequence", "")
    frames = read_results([run_sweep({**cfg, "eval": {"bootstrap_unit": "frame"}})]).to_pylist()[0]
    assert frames["bootstrap_unit"] == "frame" and frames["ap_50"] == with_ci["ap_50"]
    assert frames["cell_id"] != with_ci["cell_id"]  # another unit, another interval: another cell


def test_eval_precision_runs_the_detector_under_autocast_and_keys_the_cells(cache_dir, tmp_path):
    from v2x.perception.detector import CoopDetector

    cfg = tiny_config(cache_dir, tmp_path, snr_db=[10.0], codecs=["identity"], fusions=["max"])
    seen = []
    original = CoopDetector.encode

    def spying(self, *args, **kwargs):
        seen.append(self.precision)
        return original(self, *args, **kwargs)

    CoopDetector.encode = spying
    try:
        fp32 = read_results([run_sweep({**cfg, "eval": {"bootstrap": 0}})]).to_pylist()[0]
        bf16 = read_results(
            [run_sweep({**cfg, "eval": {"bootstrap": 0, "precision": "bf16"}})]
        ).to_pylist()[0]
    finally:
        CoopDetector.encode = original
    assert set(seen) == {"fp32", "bf16"}
    assert bf16["cell_id"] != fp32["cell_id"]  # another precision, other numbers: another cell
    assert 0.0 <= bf16["ap_50"] <= 1.0


def test_fold_batchnorm_folds_the_sweep_detector_and_keys_the_cells(cache_dir, tmp_path):
    """``eval.fold_batchnorm`` (the default): the sweep's detector has no batch norm left and
    computes the unfolded detector's outputs up to float32 rounding; folded and unfolded runs
    are different cells, with the same APs here."""
    from v2x.sweep_batches import sweep_detector

    cfg = tiny_config(cache_dir, tmp_path, snr_db=[10.0], codecs=["identity"], fusions=["max"])
    assert plan_sweep(cfg).fold_batchnorm  # conf/sweep.yaml's default
    unfolded_plan = plan_sweep({**cfg, "eval": {"fold_batchnorm": False}})
    folded = sweep_detector(plan_sweep(cfg), torch.device("cpu"))
    plain = sweep_detector(unfolded_plan, torch.device("cpu"))
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    assert not any(isinstance(m, norms) for m in folded.modules())
    assert sum(isinstance(m, norms) for m in plain.modules()) > 0
    features = torch.randn(2, plain.config.feature_channels, 16, 16)
    for a, b in zip(folded.head(features), plain.head(features), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    rows = [
        read_results([run_sweep({**cfg, "eval": {"bootstrap": 0, "fold_batchnorm": fold}})])
        .to_pylist()[0]
        for fold in (True, False)
    ]
    assert rows[0]["cell_id"] != rows[1]["cell_id"]
    assert rows[0]["ap_50"] == pytest.approx(rows[1]["ap_50"], abs=1e-6)


def test_channels_last_runs_and_keys_on_cuda_only(cache_dir, tmp_path, monkeypatch):
    """``eval.channels_last`` (default true) takes effect where the sweep runs on CUDA, and the
    cells record it as it runs: a CPU sweep's cells are the same whatever it says, and its
    detector stays channels-first; on CUDA the setting is on by default and keys the cells."""
    import v2x.loading
    from v2x.sweep_batches import sweep_detector

    cfg = tiny_config(cache_dir, tmp_path, snr_db=[10.0], codecs=["identity"], fusions=["max"])
    on_cpu = [plan_sweep({**cfg, "eval": {"channels_last": v}}) for v in (True, False)]
    assert not on_cpu[0].channels_last and not on_cpu[1].channels_last
    assert on_cpu[0].groups[0].setting == on_cpu[1].groups[0].setting
    detector = sweep_detector(on_cpu[0], torch.device("cpu"))
    assert not detector.pillars.channels_last
    assert all(
        m.weight.is_contiguous() for m in detector.modules() if isinstance(m, torch.nn.Conv2d)
    )
    # as planned for a CUDA device (resolved without one: the plan reads only its type)
    monkeypatch.setattr(v2x.loading, "resolve_devices", lambda value: [torch.device("cuda:0")])
    on_cuda = [plan_sweep({**cfg, "device": "cuda", "eval": e}) for e in ({}, {"channels_last": False})]
    assert on_cuda[0].channels_last and not on_cuda[1].channels_last
    assert on_cuda[0].groups[0].setting["eval"]["channels_last"] is True
    assert on_cuda[0].groups[0].setting != on_cuda[1].groups[0].setting


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bootstrap_unit", "town",
         "'eval.bootstrap_unit' must be one of auto, sequence, frame, got 'town'"),  # fmt: skip
        ("precision", "fp8", "'eval.precision': expected one of fp32, fp16, bf16, got 'fp8'"),
        ("fold_batchnorm", "yes", "'eval.fold_batchnorm' must be true or false, got 'yes'"),
        ("channels_last", 1, "'eval.channels_last' must be true or false, got 1"),
        ("per_class", "maybe", r"'eval.per_class': expected true or false, got 'maybe'"),
        ("eval_range", "abc", r"'eval.eval_range': expected a list of numbers, got 'abc'"),
        ("iou_thresholds", ["x"], r"'eval.iou_thresholds': expected a list of numbers"),
        # a repeated threshold ran and printed its column twice
        ("iou_thresholds", [0.5, 0.5],
         r"'eval.iou_thresholds': expected distinct values in \(0, 1\], got \[0.5, 0.5\]"),  # fmt: skip
        # the field a user types, not the Python class (it read "EvalConfig.sort: ...")
        ("sort", "foo", r"^sweep: field 'eval.sort': expected 'per_frame' or 'global', got 'foo'$"),
        ("iou_mode", "2d", r"^sweep: field 'eval.iou_mode': expected 'bev' or '3d', got '2d'$"),
    ],
)
def test_bad_eval_bootstrap_unit_or_precision_is_refused_by_name(
    cache_dir, tmp_path, field, value, message
):
    from v2x.sweep_plan import plan_sweep

    with pytest.raises(ValueError, match=message):
        plan_sweep({**tiny_config(cache_dir, tmp_path), "eval": {field: value}})


def test_sweep_list_prints_every_axis_vocabulary_one_line_each(tmp_path):
    from v2x.channels import CHANNELS, LINKS
    from v2x.perception.fusion import FUSIONS
    from v2x.scheduling import SCHEDULERS
    from v2x.semcom import CODECS

    proc = subprocess.run([sys.executable, "-m", "v2x.apps.sweep", "list"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split(" (")[0]: line for line in proc.stdout.strip().splitlines()}
    lines = {axis: line.split(": ", 1)[0] + ": " + line.split(": ", 1)[1].strip()
             for axis, line in lines.items()}
    for axis, registry in (("channels", CHANNELS), ("codecs", CODECS), ("fusions", FUSIONS),
                           ("link models", LINKS), ("schedulers", SCHEDULERS)):
        assert lines[axis].split(": ", 1)[1].split(", ") == registry.names(), axis
    assert not list(tmp_path.iterdir())  # no sweep ran


def test_per_class_ap_goes_into_results_and_table(cache_dir, tmp_path):
    from v2x.sweep import results_table_text

    cfg = tiny_config(cache_dir, tmp_path, snr_db=[10.0], codecs=["analog"], fusions=["max"])
    cfg["eval"] = {"per_class": True, "bootstrap": 0}
    table = read_results([run_sweep(cfg)])
    per_class = json.loads(table["per_class_ap"][0].as_py())
    assert "car" in per_class and set(per_class["car"]) == {"0.3", "0.5", "0.7"}
    header = results_table_text(table).splitlines()[0]
    assert "ap_50/car" in header
    default = read_results([run_sweep({**cfg, "eval": {"bootstrap": 0}})])
    assert default["per_class_ap"].to_pylist() == [""]
    assert default["ap_50"].to_pylist() == table["ap_50"].to_pylist()


def test_figures_follow_the_umask(reference, tmp_path):
    import stat

    from v2x.plots import make_plots

    path, _ = reference
    old = os.umask(0o027)
    try:
        files = make_plots([path], tmp_path, formats=["png"], metric="ap_30", table=False)
    finally:
        os.umask(old)
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o640 for f in files)


def test_cells_share_the_digital_source_coding_of_a_map(cache_dir, tmp_path, monkeypatch):
    """Cells run one by one, yet the digital chain source-codes each map once per frame batch
    (as one batched call did), and its numbers are those of a cell run alone."""
    import v2x.semcom.digital_source as digital_source

    calls = []
    original = digital_source._encode_map_parts

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(digital_source, "_encode_map_parts", counting)
    cfg = tiny_config(cache_dir, tmp_path / "one", snr_db=[30.0], codecs=["digital"],
                      fusions=["max"])
    cfg["eval"] = {"bootstrap": 0}
    alone = read_results([run_sweep(cfg)])
    once = len(calls)
    assert once > 0
    calls.clear()
    cfg["output_dir"] = str(tmp_path / "three")
    cfg["grid"]["snr_db"] = [20.0, 25.0, 30.0]
    three = read_results([run_sweep(cfg)])
    assert len(calls) < 2 * once  # not once per cell (3x)
    row = [r for r in three.to_pylist() if r["snr_db"] == 30.0][0]
    assert _canonical(alone.select(["cell_id", "ap_30", "ap_50", "mean_coded_bits_per_frame"])) == (
        _canonical(three.filter(pc.equal(three["snr_db"], 30.0)).select(
            ["cell_id", "ap_30", "ap_50", "mean_coded_bits_per_frame"]))
    )
    assert row["mean_source_bits_per_frame"] > 0


@pytest.mark.slow
def test_cells_with_pose_noise_and_dropped_payloads_do_not_depend_on_their_neighbours(tmp_path):
    """Pose noise and deadline re-runs draw random numbers too: a grid grown one SNR at a time
    gives the rows of a fresh run of the whole grid (shipped detector: an untrained one scores
    AP 0 whatever the draws)."""
    from v2x.perception.checkpoint import shipped_detector_path

    if not shipped_detector_path().is_file():
        pytest.skip("the shipped detector is not in this checkout")

    def cfg(out: Path, snrs: list[float]) -> dict:
        return {
            "data": {"num_frames": 2, "frames_per_sequence": 2, "cache_dir": str(tmp_path / "f")},
            "batch_size": 1,  # two frame batches: draws of one must not shift the next
            "grid": {"snr_db": snrs, "codecs": ["analog"], "fusions": ["late", "max"],
                     "pose_noise": [[1.0, 0.05]]},
            "budget": {"bandwidth_hz": 2e6},  # late fusion at low SNR misses the deadline
            "eval": {"bootstrap": 0},
            "output_dir": str(out),
            "quiet": True,
        }

    grown = tmp_path / "grown"
    run_sweep(cfg(grown, [30.0]))
    path = run_sweep(cfg(grown, [-10.0, 30.0]))
    fresh = run_sweep(cfg(tmp_path / "fresh", [-10.0, 30.0]))
    table = read_results([path])
    assert table.num_rows == 4 and max(table["ap_30"].to_pylist()) > 0
    assert min(table["delivered_fraction"].to_pylist()) < 1.0
    assert _canonical(table) == _canonical(read_results([fresh]))


def test_devices_name_the_field_and_key_cells_by_device_type(tmp_path, monkeypatch):
    from v2x.loading import device_key, resolve_devices

    assert resolve_devices("cpu") == [torch.device("cpu")]
    assert resolve_devices(["cpu", "cpu"]) == [torch.device("cpu")] * 2
    assert device_key("cuda:1") == "cuda:1" and device_key("cpu") == "cpu"  # as before
    assert device_key(["cpu", "cpu"]) == "cpu" and device_key(["cuda:0", "cuda:1"]) == "cuda"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert resolve_devices("all") == [torch.device(f"cuda:{i}") for i in range(3)]
    assert device_key("all") == "cuda"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    cfg = tiny_config(tmp_path / "cache", tmp_path / "out")
    for device, message in [
        ("all", "field 'device' is 'all' but no CUDA device is visible"),
        (["cpu", "cuda:0"], "all of one type"),
        ([], "at least one device"),
        ("gpu", "field 'device' is 'gpu'"),
    ]:
        with pytest.raises(ValueError, match=message):
            plan_sweep({**cfg, "device": device})


@pytest.mark.slow
def test_cells_split_across_two_workers_equal_one_process(reference, cache_dir, tmp_path):
    """device=[cpu,cpu]: two worker processes each compute every group over their shard of
    the frame batches (as device=all on every GPU); the results file holds the one-process rows
    in the same (grid) order, with the same cell ids (cells are keyed by the device type), and
    the same ledger."""
    path, _ = reference
    split = run_sweep({**tiny_config(cache_dir, tmp_path / "split"), "device": ["cpu", "cpu"]})
    assert len(pq.read_table(path)) == 8
    _assert_same_results(path, split)


@pytest.mark.slow
def test_device_workers_are_kept_for_the_next_sweep_of_the_process(reference, cache_dir, tmp_path):
    """A multi-device sweep's worker processes stay for the process's next one on the same
    devices with the same determinism (warm: imports, contexts, kernels), which gives the same
    rows and ledger; a sweep with nothing left to compute lets go of the shards its workers
    loaded while the frames were read; another determinism starts new workers and stops the
    kept ones."""
    import v2x.sweep_workers as sw

    kept = _kept_pids
    cfg = {**tiny_config(cache_dir, tmp_path / "a"), "device": ["cpu", "cpu"]}
    first = run_sweep(cfg)
    workers = kept()
    assert len(workers) == 2 and not sw._LOADED
    assert run_sweep(cfg) == first  # nothing left to compute: the shards loaded, then let go
    assert not sw._LOADED and kept() == workers
    second = run_sweep({**cfg, "output_dir": str(tmp_path / "b")})
    assert kept() == workers
    _assert_same_results(first, reference[0])
    _assert_same_results(second, reference[0])
    run_sweep({**cfg, "output_dir": str(tmp_path / "c"), "deterministic": False})
    assert len(kept()) == 2 and not kept() & workers


@pytest.mark.gpu
def test_device_all_equals_one_gpu(cache_dir, tmp_path):
    """device=all shards the frames over every visible GPU; the rows equal device=cuda's."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    one = run_sweep({**tiny_config(cache_dir, tmp_path / "one"), "device": "cuda"})
    every = run_sweep({**tiny_config(cache_dir, tmp_path / "all"), "device": "all"})
    assert len(pq.read_table(one)) == 8
    _assert_same_results(one, every)


#: Two worker processes on one device: identity, analog, the digital chain's realistic
#: payload (exact, min-sum LDPC, one IR HARQ round: host-bound, what extra workers are for) and
#: the rate-adaptive digital codec (its budget per link from the whole sweep's frames).
_WORKERS_GRID = {
    "codecs": [
        "identity",
        "analog",
        {"name": "digital_payload", "bits": 4, "harq_max_rounds": 1, "harq_combining": "ir"},
        "digital",
    ]
}


def test_device_workers_size_rate_adaptive_payloads_from_every_shards_links(monkeypatch):
    """A rate-adaptive codec's budget per link comes from the most links of any frame batch of
    the sweep: each worker is given the maximum over every worker's shard, not its own."""
    import concurrent.futures as cf
    from types import SimpleNamespace

    import v2x.sweep_order
    import v2x.sweep_workers as sw

    made = iter(range(3))

    class InlinePool:
        def __init__(self, *args, **kwargs) -> None:
            self.links = (3, 7, 5)[next(made)]  # the most links of this worker's frames

        def submit(self, fn, *args):
            future = cf.Future()
            if fn is sw._facts:
                future.set_result((True, (8, 4, 4), self.links if args[0] else None, 1e9, 4))
            else:
                future.set_result(fn(*args))
            return future

        def shutdown(self, wait=True, cancel_futures=False) -> None:
            pass

    given = []

    def compute(indices, snrs, most_links, data_id):
        given.append(most_links)
        return [SimpleNamespace(num_frames=2)], [0.1], 1

    monkeypatch.setattr(sw, "ProcessPoolExecutor", InlinePool)
    monkeypatch.setattr(sw, "_KEPT", {})
    monkeypatch.setattr(sw, "_LOADED", {})
    monkeypatch.setattr(sw, "_load", lambda *args: None)
    monkeypatch.setattr(sw, "_release", lambda: None)
    monkeypatch.setattr(sw, "_compute", compute)
    monkeypatch.setattr(sw, "joined_rows", lambda *args: ([], None))
    monkeypatch.setattr(sw, "needs_most_links", lambda group: group.name == "digital")
    monkeypatch.setattr(v2x.sweep_order, "device_order", lambda todo, silent: list(todo))
    monkeypatch.setattr(v2x.sweep_order, "silent_groups", lambda budget, shape: None)
    groups = [SimpleNamespace(name=n) for n in ("identity", "digital")]
    plan = SimpleNamespace(
        groups=groups, config=SimpleNamespace(to_dict=dict, batch_size=2, deterministic=True),
        budget=None,
    )
    bar = SimpleNamespace(update=lambda n: None)
    todo = [(g, [0.0]) for g in groups]
    list(sw.run_groups_on_devices(plan, todo, ["cpu"] * 3, bar, 6, [], {}))
    assert given == [7] * 6  # 2 groups × 3 workers


def test_the_frame_batches_are_cut_into_consecutive_shards_of_equal_size():
    from v2x.sweep_workers import shards

    assert shards(7, 2) == [(0, 4), (4, 7)]
    assert shards(8, 3) == [(0, 3), (3, 6), (6, 8)]
    assert shards(2, 4) == [(0, 1), (1, 2)]  # one worker per batch at most
    assert shards(1, 2) == [(0, 1)]
    for batches in range(1, 40):
        for workers in range(1, 9):
            cut = shards(batches, workers)
            sizes = [b - a for a, b in cut]
            assert [a for a, _ in cut[1:]] == [b for _, b in cut[:-1]]  # consecutive
            assert cut[0][0] == 0 and cut[-1][1] == batches and min(sizes) >= 1
            assert max(sizes) - min(sizes) <= 1 and len(cut) == min(batches, workers)


@pytest.mark.slow
def test_device_workers_run_waves_in_lockstep_when_the_features_do_not_fit(
    reference, cache_dir, tmp_path, caplog
):
    """``device=[cpu,cpu]`` with no room for features: each worker runs the 4 groups as one
    wave in lockstep over its shard of the 2 frame batches (each batch encoded once, by the
    worker that holds it: 2 passes, where one group at a time makes 8, and dealing the groups
    to the workers made 4); the rows and ledger equal the one-process reference's."""
    import logging

    cfg = {**tiny_config(cache_dir, tmp_path), "device": ["cpu", "cpu"], "feature_cache_gb": 0}
    with caplog.at_level(logging.INFO, logger="v2x.sweep"):
        path = run_sweep(cfg)
    done = [r.getMessage() for r in caplog.records if "encoder passes" in r.getMessage()]
    assert done and done[-1].endswith("(2 encoder passes)"), done
    _assert_same_results(path, reference[0])


@pytest.mark.slow
def test_late_and_early_fusion_with_pose_noise_on_two_workers_equal_one_process(tmp_path):
    """Late and early fusion draw their pose noise once per frame batch for all SNRs (the joint
    seed): each batch's draws come from that batch's seed, so the worker that starts at the
    second batch gives the numbers one process gives there. They came from the pipeline's
    generator as the batches before left it: [cpu,cpu] gave other APs (shipped detector: an
    untrained one scores AP 0 whatever the draws)."""
    from v2x.perception.checkpoint import shipped_detector_path

    if not shipped_detector_path().is_file():
        pytest.skip("the shipped detector is not in this checkout")

    def cfg(out: str) -> dict:
        return {
            "data": {"num_frames": 2, "frames_per_sequence": 2, "cache_dir": str(tmp_path / "f")},
            "batch_size": 1,  # two frame batches, one per worker
            "grid": {"snr_db": [30.0], "codecs": ["analog"], "fusions": ["late", "early"],
                     "pose_noise": [[1.0, 0.05]]},  # fmt: skip
            "eval": {"bootstrap": 0},
            "output_dir": str(tmp_path / out),
            "quiet": True,
        }

    one = run_sweep(cfg("one"))
    two = run_sweep({**cfg("two"), "device": ["cpu", "cpu"]})
    assert min(read_results([one])["ap_30"].to_pylist()) > 0
    _assert_same_results(two, one)


def _kept_pids() -> set[int]:
    """The process ids of the device workers kept for this process's next sweep."""
    import v2x.sweep_workers as sw

    return {pid for pools in sw._KEPT.values() for p in pools for pid in p._processes}


def _assert_same_results(path_a: Path, path_b: Path) -> None:
    """The two results files hold the same rows in the same order (the config hash aside,
    which holds the device list) and the same ledger."""
    a, b = pq.read_table(path_a).to_pylist(), pq.read_table(path_b).to_pylist()
    assert [r["cell_id"] for r in a] == [r["cell_id"] for r in b] and a
    drop = {"config_hash"}
    assert [{k: v for k, v in _canonical_row(r).items() if k not in drop} for r in a] == [
        {k: v for k, v in _canonical_row(r).items() if k not in drop} for r in b
    ]
    assert _canonical(read_results([path_a], ledger=True)) == _canonical(
        read_results([path_b], ledger=True)
    )


@pytest.mark.parametrize(
    "kind",
    [pytest.param("cpu", marks=pytest.mark.slow), pytest.param("cuda", marks=pytest.mark.gpu)],
)
def test_two_workers_on_one_device_equal_one_process(kind, cache_dir, tmp_path):
    """device=[cuda:0,cuda:0]: two worker processes share the one GPU (their host work
    overlaps; [cpu,cpu] on the CPU); the rows and ledger equal one process's, the digital
    chain's cells included."""
    if kind == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    cfg = tiny_config(cache_dir, tmp_path / "one", **_WORKERS_GRID)
    one = run_sweep({**cfg, "device": kind})
    cfg = tiny_config(cache_dir, tmp_path / "two", **_WORKERS_GRID)
    two = run_sweep({**cfg, "device": [f"{kind}:0" if kind == "cuda" else kind] * 2})
    codecs = {r["codec"] for r in pq.read_table(one).to_pylist()}
    assert {"identity", "analog", "digital_payload", "digital"} <= codecs
    _assert_same_results(one, two)


def _canonical_row(row: dict) -> dict:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


PLUGIN = '''
"""A user's channel, registered from outside the package."""
import torch

from v2x.channels import CHANNELS
from v2x.channels.awgn import AWGNChannel


@CHANNELS.register("plugin_quiet_awgn")
class QuietAWGN(AWGNChannel):
    """AWGN 20 dB better than asked."""

    def forward(self, x, snr_db, *args, **kwargs):
        return super().forward(x, torch.as_tensor(snr_db) + 20.0, *args, **kwargs)
'''


def test_plugins_register_a_channel_that_a_sweep_runs(tmp_path, monkeypatch, cache_dir):
    """A module named in ``plugins`` registers a channel; the sweep runs it by name, and the
    results say so. Without the plugin the name is refused with the valid choices."""
    (tmp_path / "my_v2x_parts.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tiny_config(cache_dir, tmp_path / "out", codecs=["analog"], fusions=["max"],
                      snr_db=[0.0])  # fmt: skip
    cfg["grid"]["channels"] = ["plugin_quiet_awgn"]
    from v2x.channels import CHANNELS

    if "plugin_quiet_awgn" not in CHANNELS:
        with pytest.raises(ValueError, match="plugin_quiet_awgn"):
            plan_sweep(cfg)
    with pytest.raises(ValueError, match="plugins: cannot import module 'no_such_v2x_module'"):
        plan_sweep({**cfg, "plugins": ["no_such_v2x_module"]})
    path = run_sweep({**cfg, "plugins": ["my_v2x_parts"]})
    table = read_results([path]).to_pydict()
    assert set(table["channel"]) == {"plugin_quiet_awgn"}
    assert "plugin_quiet_awgn" in CHANNELS


def test_the_model_section_picks_its_preset_as_the_cli_group_does():
    """The default is the standard detector; ``model: <preset>`` (a string) is the CLI's
    ``model=<preset>``; a mapping naming another ``backbone`` starts from that backbone's preset,
    so no field of the default model leaks into it."""
    from omegaconf import OmegaConf

    from v2x.sweep_config import SweepConfig, _conf_dir, model_preset

    small = OmegaConf.to_container(OmegaConf.load(_conf_dir() / "model" / "pillars_center.yaml"))
    assert SweepConfig.from_any({}).model["backbone"] == "pointpillars"
    assert SweepConfig.from_any({"model": "pillars_center"}).model == small
    tiny = SweepConfig.from_any({"model": {"backbone": "small", "feature_channels": 8}}).model
    assert tiny == {**small, "backbone": "small", "feature_channels": 8}
    assert "layer_nums" not in tiny
    with pytest.raises(ValueError, match=r"'model': model 'resnet' names no model preset; valid"):
        SweepConfig.from_any({"model": "resnet"})
    with pytest.raises(ValueError, match=r"model \{'backbone': 'vit'\} names no model preset"):
        model_preset("", {"backbone": "vit"})
    with pytest.raises(ValueError, match="names no model preset"):
        SweepConfig.from_any({"model": {"backbone": "vit"}})


@pytest.mark.parametrize(
    ("metric", "label"),
    [("ap_50", "AP@0.5"), ("ap_70_invisible", "AP@0.7 (ego-invisible)"),
     ("vehicle_ap_70", "vehicle AP@0.7"), ("ap_50/car", "car AP@0.5"), ("latency", "latency")],
)  # fmt: skip
def test_figures_name_metrics_as_the_field_writes_them(metric, label):
    from v2x.plots import metric_label

    assert metric_label(metric) == label


def test_a_checkpoint_file_decides_which_shipped_codec_the_plan_records(tmp_path):
    """A sweep with the small detector's checkpoint file and the default (standard) model
    section runs 64-channel maps: the plan records the small codec's digest, the one the run
    loads (``codec_kwargs_for`` with the loaded detector's channels)."""
    from v2x.perception.checkpoint import shipped_detector_path
    from v2x.provenance import file_digest
    from v2x.semcom.deepjscc_checkpoint import resolve_checkpoint

    small = str(shipped_detector_path("small"))
    cfg = {"checkpoint": small, "grid": {"codecs": ["deepjscc"], "fusions": ["max"]},
           "output_dir": str(tmp_path)}  # fmt: skip
    (group,) = plan_sweep(cfg).groups
    assert group.codec_sha256 == file_digest(Path(resolve_checkpoint("shipped", 64)))
    (group,) = plan_sweep({**cfg, "checkpoint": None}).groups  # the shipped standard detector
    assert group.codec_sha256 == file_digest(Path(resolve_checkpoint("shipped", 384)))


def test_ap_worker_processes_give_the_same_results(reference, cache_dir, tmp_path, monkeypatch):
    """The cells' APs and intervals computed in worker processes (hosts with >= 4 cores) equal
    those computed in this process's threads, row for row, ledger included; the frames were
    read in those processes too."""
    import v2x.sweep_rows as sweep_rows
    from v2x.datasets.store import SplitDataset

    monkeypatch.setattr(sweep_rows, "CELL_PROCESSES", 2)
    monkeypatch.setattr(sweep_rows, "_POOL", [])
    readers = []
    read = SplitDataset.iter_frames

    def recorded(self, indices, threads=None, processes=None):
        readers.append(processes)
        return read(self, indices, threads, processes)

    monkeypatch.setattr(SplitDataset, "iter_frames", recorded)
    try:
        path = run_sweep(tiny_config(cache_dir, tmp_path))
        assert readers and readers[0] is sweep_rows.cell_pool()
        pool = sweep_rows.cell_pool()
        assert pool is not None and pool.submit(os.getpid).result() != os.getpid()
    finally:
        for pool in sweep_rows._POOL:
            pool.shutdown()
    _assert_same_results_and_ledger(path, reference[0])


def test_scoring_in_the_scoring_process_gives_the_same_results(
    reference, cache_dir, tmp_path, monkeypatch
):
    """The frame batches scored in the scoring processes (hosts with >= 4 cores,
    ``v2x.sweep_scoring``; each group's batches over them in turn), with the frame batches' networks built there
    and the rows of up to three groups pending while the device goes on, give the results and
    ledger of doing all that in this process with one group pending, row for row."""
    import v2x.sweep_batches as sweep_batches
    import v2x.sweep_scoring as sweep_scoring

    monkeypatch.setattr(sweep_scoring, "SCORING_PROCESSES", 2)
    monkeypatch.setattr("v2x.sweep.ROW_THREADS", 3)  # as on such a host: 3 groups' rows pending
    monkeypatch.setattr(sweep_scoring, "can_fork_workers", lambda: sys.platform == "linux")
    monkeypatch.setattr(sweep_scoring, "_POOLS", [])
    added = []
    submit = sweep_scoring.GroupScoring.add

    def recorded(self, scored):
        added.append(self._pools[len(self._sent) % len(self._pools)])  # where this batch goes
        return submit(self, scored)

    monkeypatch.setattr(sweep_scoring.GroupScoring, "add", recorded)
    sent = []  # the frame batches' networks, built in those processes too
    send = sweep_batches._networks_sent
    monkeypatch.setattr(
        sweep_batches, "_networks_sent", lambda *a: sent.append(a[-1]) or send(*a)
    )
    try:
        path = run_sweep(tiny_config(cache_dir, tmp_path))
        pools = sweep_scoring.scoring_pools()
        assert len(pools) == 2 and set(map(id, added)) == set(map(id, pools))  # batches in turn
        assert len(sent) == 2 and set(map(id, sent)) == set(map(id, pools))  # batches in turn
        assert all(pool.submit(os.getpid).result() != os.getpid() for pool in pools)
    finally:
        for pool in sweep_scoring._POOLS:
            pool.shutdown()
    _assert_same_results_and_ledger(path, reference[0])


def test_defaults_are_composed_again_when_a_config_file_changes(tmp_path, monkeypatch):
    """``default_config`` is composed once per state of ``conf/`` (the Python API calls it for
    every sweep): an edited file is read again, and callers get their own copy."""
    import shutil

    import v2x.sweep_config as sweep_config

    conf = tmp_path / "conf"
    shutil.copytree(sweep_config._conf_dir(), conf)
    monkeypatch.setattr(sweep_config, "_conf_dir", lambda: conf)
    first = sweep_config.default_config()
    first["grid"]["snr_db"].append(1234.0)  # a caller's edit stays its own
    assert 1234.0 not in sweep_config.default_config()["grid"]["snr_db"]
    text = (conf / "sweep.yaml").read_text()
    assert "seed: 0" in text
    (conf / "sweep.yaml").write_text(text.replace("seed: 0", "seed: 77", 1))
    assert sweep_config.default_config()["seed"] == 77


_TEST_PROCESS = os.getpid()


def _dies_in_a_worker(*args, **kwargs):
    """``compute_ap`` in this process; a worker process that runs it dies at once."""
    if os.getpid() != _TEST_PROCESS:
        os._exit(1)
    return compute_ap(*args, **kwargs)


def test_a_dead_ap_worker_falls_back_to_this_process(reference, cache_dir, tmp_path, monkeypatch):
    """A worker process that dies (e.g. killed for memory) costs a warning, not the sweep: the
    cells' APs are computed in this process, with the same results."""
    import v2x.sweep_rows as sweep_rows

    monkeypatch.setattr(sweep_rows, "compute_ap", _dies_in_a_worker)
    monkeypatch.setattr(sweep_rows, "CELL_PROCESSES", 2)
    monkeypatch.setattr(sweep_rows, "_POOL", [])
    try:
        with pytest.warns(RuntimeWarning, match="AP worker processes stopped"):
            path = run_sweep(tiny_config(cache_dir, tmp_path))
    finally:
        for pool in sweep_rows._POOL:
            pool.shutdown()
    assert _canonical(read_results([path])) == _canonical(read_results([reference[0]]))


def _networks_die_in_a_worker(*args, **kwargs):
    """``frame_networks`` in this process; a worker process that runs it dies at once."""
    from v2x.network import frame_networks

    if os.getpid() != _TEST_PROCESS:
        os._exit(1)
    return frame_networks(*args, **kwargs)


def test_a_dead_scoring_process_falls_back_to_building_networks_here(
    reference, cache_dir, tmp_path, monkeypatch
):
    """A scoring process that dies while building a batch's networks costs the batch nothing:
    its networks are built in this process (and a group that process was to score is scored
    here), with the same results."""
    import warnings

    import v2x.sweep_batches as sweep_batches
    import v2x.sweep_scoring as sweep_scoring

    monkeypatch.setattr(sweep_scoring, "SCORING_PROCESSES", 2)
    monkeypatch.setattr(sweep_scoring, "can_fork_workers", lambda: sys.platform == "linux")
    monkeypatch.setattr(sweep_scoring, "_POOLS", [])
    monkeypatch.setattr(sweep_batches, "frame_networks", _networks_die_in_a_worker)
    built_here = []
    build = sweep_batches.build_network_batch
    monkeypatch.setattr(
        sweep_batches, "build_network_batch", lambda *a, **k: built_here.append(1) or build(*a, **k)
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a group on a dead process
            path = run_sweep(tiny_config(cache_dir, tmp_path))
    finally:
        for pool in sweep_scoring._POOLS:
            if pool is not None:
                pool.shutdown()
    assert len(built_here) == 2  # both batches, after their workers died
    assert _canonical(read_results([path])) == _canonical(read_results([reference[0]]))


def test_frames_digest_is_stable_across_releases():
    """The data hash keys every stored cell: a frame set hashes to the value the code has
    always given (computed with ``tobytes`` before the digest read arrays without a copy), so
    results written earlier are found again."""
    from v2x.datasets.frame import AgentObservation, CoopFrame
    from v2x.sweep import frames_digest

    pose = np.eye(4)
    pose[:3, 3] = [1.0, -2.0, 1.8]
    pts = np.arange(24, dtype=np.float32).reshape(6, 4)
    agents = [
        AgentObservation("veh_0", "vehicle", pose, pts, timestamp=0.1),
        AgentObservation("rsu_1", "rsu", np.eye(4), pts[:2].copy(), timestamp=0.2),
    ]
    boxes = np.array([[4.0, 2.0, 0.8, 4.5, 1.9, 1.6, 0.3]])
    frame = CoopFrame("f0", agents, boxes, np.array([0]), np.array([7]), meta={"town": "t1", "k": 3})
    assert frames_digest([frame]) == (
        "12f534aa0f7b2ed212c13ddfe9d25b881fe5e15449ce630d998a54484e0a3df8"
    )


def test_a_fresh_sweep_starts_on_the_first_frames_while_the_rest_are_read(
    reference, cache_dir, tmp_path, monkeypatch
):
    """With nothing to resume or reuse, the device's first batch runs before the last frames
    are read (``FrameStream``); the rows and ledger are those of the sweep that reads every
    frame first (the path taken when ``output_dir`` holds results files)."""
    import threading

    import v2x.sweep as sweep_module
    from v2x.datasets.store import SplitDataset

    started = threading.Event()
    order: list[str] = []
    read = SplitDataset.iter_frames

    def slow_tail(self, indices, threads=None, processes=None):
        for i, frame in enumerate(read(self, indices, threads, processes)):
            if i == 2:  # the first batch (batch_size 2) is out; the rest wait for the device
                order.append("rest waits")
                assert started.wait(120), "the device did not start before all frames were read"
            order.append(f"frame {i}")
            yield frame

    import v2x.sweep_group as group_module

    evaluate = group_module.evaluate_batch

    def first_batch(*args, **kwargs):
        order.append("device") if not started.is_set() else None
        started.set()
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(SplitDataset, "iter_frames", slow_tail)
    monkeypatch.setattr(group_module, "evaluate_batch", first_batch)
    streamed = run_sweep(tiny_config(cache_dir, tmp_path / "streamed"))
    assert order.index("device") < order.index("frame 2") and order[-1] == "frame 3"
    monkeypatch.setattr(SplitDataset, "iter_frames", read)
    # the path that reads every frame first: output_dir appears to hold results
    monkeypatch.setattr(sweep_module, "results_files", lambda paths: [Path("other.parquet")])
    (tmp_path / "first").mkdir()
    first = run_sweep(tiny_config(cache_dir, tmp_path / "first"))
    assert streamed.name == first.name == reference[0].name
    for a, b in ((streamed, first), (streamed, reference[0])):
        assert _canonical(pq.read_table(a)) == _canonical(pq.read_table(b))
        ledger_a = str(a).replace(".parquet", ".ledger.parquet")
        ledger_b = str(b).replace(".parquet", ".ledger.parquet")
        assert _canonical(pq.read_table(ledger_a)) == _canonical(pq.read_table(ledger_b))


def test_frame_stream_waits_for_what_it_is_asked_and_names_a_bad_frame(cache_dir, tmp_path):
    """``FrameStream``: the frames and hash of ``load_frames`` / ``data_identity``; a frame
    that cannot be read is raised (file and field named) by any wait that needs it, the frames
    before it are served."""
    import shutil

    from v2x.loading import FrameStream, data_identity, load_frames
    from v2x.sweep_config import SweepConfig

    data = SweepConfig.from_any(tiny_config(cache_dir, tmp_path)).data
    data = {**data, "source": "synthetic", "num_frames": 4}
    frames = load_frames(data, quiet=True)
    stream = FrameStream(data, quiet=True)
    assert len(stream) == 4
    assert [f.frame_id for f in stream[1:3]] == [f.frame_id for f in frames[1:3]]
    assert stream[-1].frame_id == frames[-1].frame_id
    assert stream.data_id() == data_identity(data, frames)
    with pytest.raises(IndexError):
        stream[4]
    part = FrameStream(data, quiet=True, part=slice(1, 3))  # a device worker's shard
    assert len(part) == 2
    assert [f.frame_id for f in part.frames()] == [f.frame_id for f in frames[1:3]]
    assert part.data_id() == data_identity(data, frames[1:3])
    # a store whose third frame is truncated
    from v2x.datasets.build import cached_split

    split = cached_split(dict(data["synthetic"]), split=data["split"], num_frames=4,
                         frames_per_sequence=data["frames_per_sequence"], seed=data["seed"],
                         cache_dir=data["cache_dir"], quiet=True)  # fmt: skip
    root = tmp_path / "store"
    shutil.copytree(split.root, root)
    bad = root / split.entries[2]["file"]
    bad.write_bytes(bad.read_bytes()[:100])
    stored = {"source": "store", "path": str(root), "split": split.split, "num_frames": None}
    broken = FrameStream(stored, quiet=True)
    assert [f.frame_id for f in broken[:2]] == [f.frame_id for f in frames[:2]]
    for wait in (lambda: broken[2], broken.frames, broken.data_id):
        with pytest.raises(ValueError, match=str(bad.name)):
            wait()
    after = FrameStream(stored, quiet=True, part=slice(3, None))  # the bad frame not read
    assert [f.frame_id for f in after.frames()] == [frames[3].frame_id]


def test_a_closed_frame_stream_stops_reading_and_lets_go_of_its_frames(monkeypatch):
    """``FrameStream.close`` (a device worker's shard of a sweep that ended early: its reading
    went on in the background): the reading stops once the frame being read arrives, the frames
    read are let go, and a wait for any frame then raises, saying the reading was closed."""
    import time

    from v2x import loading

    read, streams = [], []

    def reader(data, quiet, processes=None, part=slice(None)):
        def frames():
            for i in range(6):
                while i == 1 and not (streams and streams[0]._closed):  # the second frame
                    time.sleep(0.001)  # arrives only after close() was called
                read.append(i)
                yield f"frame {i}"

        return frames, 6

    monkeypatch.setattr(loading, "_frame_reader", reader)
    streams.append(loading.FrameStream({"source": "synthetic"}))
    stream = streams[0]
    assert stream[0] == "frame 0" and len(stream) == 6
    stream.close()  # (it waits for the frame being read)
    assert read == [0, 1]  # the frame being read arrived; none after it was read
    with pytest.raises(RuntimeError, match=r"^frames: 0 of 6 were read \(the reading was closed\)$"):
        stream[0]


def test_one_result_groups_run_last_and_the_order_does_not_change_results(
    reference, cache_dir, tmp_path, monkeypatch
):
    """One device computes the feature groups whose maps go through the channel first (a heavy
    first group hides the batch preparation), then late fusion, then the groups whose cells
    all get one result (ego-only; the identity codec, which does not use the channel): their
    one computation of APs and intervals ends the sweep sooner than a group of distinct cells.
    The same sweep computed in plan order gives the same rows and ledger."""
    import v2x.sweep as sweep

    order: list[tuple[str, str]] = []
    original = sweep._run_group

    def recording(plan, group, *args, **kwargs):
        order.append((group.stage, group.codec))
        return original(plan, group, *args, **kwargs)

    monkeypatch.setattr(sweep, "_run_group", recording)
    planned = [(g.stage, g.codec) for g in plan_sweep(tiny_config(cache_dir, tmp_path / "p")).groups]
    assert planned == [("ego", "n/a"), ("boxes", "n/a"), ("features", "identity"),
                       ("features", "analog")]  # fmt: skip
    device_order = sweep.device_order
    monkeypatch.setattr(sweep, "device_order", lambda todo, silent=None: list(todo))
    in_plan_order = run_sweep(tiny_config(cache_dir, tmp_path / "plan"))
    assert order == planned
    order.clear()
    monkeypatch.setattr(sweep, "device_order", device_order)
    path = run_sweep(tiny_config(cache_dir, tmp_path / "device"))
    assert order == [("features", "analog"), ("boxes", "n/a"), ("ego", "n/a"),
                     ("features", "identity")]  # fmt: skip
    _assert_same_results_and_ledger(path, in_plan_order)


def test_snr_independent_groups_are_ego_only_and_channel_free_codecs_without_pose_noise():
    """``snr_independent`` (the computing order's guess of groups with one result): ego-only,
    and feature fusion with a codec that does not use the channel, unless pose noise (drawn
    per condition) makes the conditions differ; never late fusion or a codec on air."""
    from v2x.sweep_order import snr_independent

    def group(fusion: str, codec: str, noise: float = 0.0):
        cfg = tiny_config(Path("unused"), Path("unused"), codecs=[codec], fusions=[fusion])
        cfg["grid"]["pose_noise"] = [[noise, 0.0]]
        cfg["codec_options"] = {"deepjscc": {"checkpoint": "untrained"}}
        return plan_sweep(cfg).groups[0]

    assert snr_independent(group("none", "identity"))
    assert snr_independent(group("max", "identity"))
    assert not snr_independent(group("max", "identity", noise=0.5))
    assert not snr_independent(group("late", "identity"))
    for codec in ("analog", "deepjscc", "digital"):
        assert not snr_independent(group("max", codec)), codec


_ANALOG_GRID = {
    "codecs": ["identity", "analog", "deepjscc"],
    "fusions": ["none", "late", "max", {"name": "where2comm", "max_fraction": 0.1}],
}  # SNRs x (none, late, 3 codecs x 2 fusions) cells
_DIGITAL_GRID = {
    "codecs": ["digital"], "fusions": ["attention"], "channels": ["rayleigh"],
    "harq_max_rounds": [1], "pose_noise": [[0.5, 0.01]],
}  # fmt: skip
_SEMANTIC_GRID = {"codecs": ["analog"], "fusions": ["semantic_map", "object_features"]}


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device")])],
)  # fmt: skip
@pytest.mark.parametrize(
    ("grid", "cells"),
    [(_ANALOG_GRID, 2 * (2 + 3 * 2)), (_DIGITAL_GRID, 2), (_SEMANTIC_GRID, 2 * 2)],
    ids=["analog", "digital", "semantic"],
)  # fmt: skip
def test_no_memory_is_read_before_it_is_written(
    cache_dir, tmp_path, monkeypatch, device, grid, cells
):
    """The deterministic mode no longer fills every new tensor with NaN
    (``configure_determinism``). A sweep that read memory nothing wrote would change with that
    fill: with it, the same sweep gives the same rows and ledger. Sweeps: feature fusions and
    Where2comm over identity, analog and DeepJSCC, the late fusion and the ego alone; the digital
    chain with a HARQ round over block Rayleigh, attention fusion, pose noise; the semantic map
    and object features over analog."""
    import v2x.sweep as sweep
    from v2x.common import configure_determinism

    def with_fill(enabled: bool) -> None:
        configure_determinism(enabled)
        torch.utils.deterministic.fill_uninitialized_memory = True

    results = []
    for fill in (False, True):
        if fill:
            monkeypatch.setattr(sweep, "configure_determinism", with_fill)
        cfg = {**tiny_config(cache_dir, tmp_path / str(fill), **grid), "device": device}
        cfg["codec_options"] = {"deepjscc": {"checkpoint": "untrained", "hidden": 8}}
        path = run_sweep(cfg)
        assert torch.utils.deterministic.fill_uninitialized_memory is fill
        ledger = pq.read_table(path.with_name(path.name.replace(".parquet", ".ledger.parquet")))
        results.append((_canonical(read_results([path])), _canonical(ledger)))
    assert results[0] == results[1]
    assert len(results[0][0]) == cells


def test_the_groups_run_on_the_threads_the_workers_leave_with_the_same_numbers(
    reference, cache_dir, tmp_path, monkeypatch
):
    """The sweep's process computes its groups with torch's threads set as
    ``sweep_process_threads`` says (forced to one here), gives the count back after, and the
    results and ledger are those of the reference run on torch's own count."""
    import v2x.sweep
    import v2x.sweep_batches

    seen = []
    prepare = v2x.sweep_batches.prepare_device

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return prepare(*args, **kwargs)

    monkeypatch.setattr(v2x.sweep, "sweep_process_threads", lambda device: 1)
    monkeypatch.setattr(v2x.sweep, "prepare_device", recording)
    before = torch.get_num_threads()
    path = run_sweep(tiny_config(cache_dir, tmp_path))
    assert seen == [1]
    assert torch.get_num_threads() == before
    _assert_same_results_and_ledger(path, reference[0])


_CUDA = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


#: Settings the known-drop test also runs under: asynchronous sensing (the ego fuses what was
#: sensed phase + latency before), the importance scheduler (unequal shares), Rayleigh fading
#: with pose noise (drawn per condition).
_ASYNC = {"asynchrony": {"enabled": True}, "phase_s": 0.05}
_IMPORTANCE = {"budget": {"scheduler": "importance", "alpha": 1.0, "beta": 1.0}}
_FADING = {"grid": {"channels": ["rayleigh"], "pose_noise": [[0.5, 0.02]]}}


@pytest.mark.parametrize(
    ("bandwidth_hz", "snr_mode", "device", "extra"),
    [
        (2.0e6, "fixed", "cpu", {}),
        (2.0e6, "geometric", "cpu", {}),
        (1.0e5, "fixed", "cpu", {}),
        (2.0e6, "fixed", "cpu", _ASYNC),
        (2.0e6, "fixed", "cpu", _IMPORTANCE),
        (2.0e6, "geometric", "cpu", _FADING),
        pytest.param(2.0e6, "fixed", "cuda", {}, marks=_CUDA),
        pytest.param(1.0e5, "geometric", "cuda", {}, marks=_CUDA),
    ],
    ids=["fixed", "geometric", "nothing-arrives", "asynchrony", "importance", "fading-pose-noise",
         "cuda-fixed", "cuda-nothing-arrives"],
)
def test_conditions_the_budget_leaves_without_payloads_do_not_run_and_change_no_number(
    cache_dir, tmp_path, monkeypatch, bandwidth_hz, snr_mode, device, extra
):
    """At 2 MHz the identity codec's raw maps miss the 100 ms deadline at −5 and 0 dB (0.26 s
    per collaborator sharing the band) but arrive at 30 dB, and analog's uncoded maps arrive
    (geometric: each link at its link budget's SNR 60 and 40 dB lower, or as it is); at 100 kHz
    nothing arrives. Conditions known before the air to deliver nothing
    (``v2x.known_drops``) must send nothing and give the results and ledger of the sweep that
    sends every payload and drops it at the deadline."""
    import v2x.known_drops as known_drops
    import v2x.pipeline as pipeline

    def sweep(out: Path, known: bool) -> tuple[Path, int]:
        rows: list[int] = []
        original = pipeline.send

        def counting(codec, channel, maps, *args, **kwargs):
            rows.append(maps.shape[0] * (maps.shape[1] if maps.dim() == 5 else 1))
            return original(codec, channel, maps, *args, **kwargs)

        with monkeypatch.context() as m:
            m.setattr(pipeline, "send", counting)
            if not known:
                m.setattr(known_drops, "cost_before_air", lambda *a: None)
            snrs = [-5.0, 0.0, 30.0] if snr_mode == "fixed" else [-60.0, -40.0, 0.0]
            cfg = tiny_config(cache_dir, out, snr_db=snrs, fusions=["max"], snr_mode=snr_mode)
            cfg.update(budget={"bandwidth_hz": bandwidth_hz, **extra.get("budget", {})},
                       device=device)  # fmt: skip
            cfg["grid"].update(extra.get("grid", {}))
            if "asynchrony" in extra:
                cfg["asynchrony"] = extra["asynchrony"]
                cfg["data"]["synthetic"]["sensing_phase_max_s"] = extra["phase_s"]
            return run_sweep(cfg), sum(rows)

    path, sent = sweep(tmp_path / "known", True)
    ref_path, ref_sent = sweep(tmp_path / "sent", False)
    _assert_same_results_and_ledger(path, ref_path)
    ledger = read_results([path], ledger=True).to_pydict()
    on_air = [s for s, u in zip(ledger["sent"], ledger["channel_uses"]) if s and u > 0]
    dropped = [s and not d for s, d in zip(ledger["sent"], ledger["delivered"])]
    assert on_air and any(dropped)  # payloads on air and dropped at the deadline, as before
    assert sent < ref_sent
    if bandwidth_hz < 1e6:
        assert not any(ledger["delivered"]) and sent == 0
    else:
        assert any(ledger["delivered"]) and sent > 0


def test_groups_that_can_never_deliver_a_map_are_ordered_with_the_ego_only_ones(
    cache_dir, tmp_path, caplog
):
    """At 100 kHz neither the identity codec's raw maps nor analog's uncoded ones fit the
    100 ms deadline even alone on the band (``silent_groups``): they are computed after late
    fusion, with the ego-only group, and said so in the log; the ledger shows that nothing of
    theirs arrived. At 20 MHz they may arrive and keep their place."""
    import logging

    from v2x.sweep_order import device_order, silent_groups

    def order(bandwidth_hz: float) -> list[tuple[str, str]]:
        cfg = tiny_config(cache_dir, tmp_path / "plan", snr_db=[-5.0, 30.0])
        cfg["budget"] = {"bandwidth_hz": bandwidth_hz}
        plan = plan_sweep(cfg)
        todo = [(g, list(plan.snr_db)) for g in plan.groups]
        silent = silent_groups(plan.budget, (FEATURES, 64, 64))
        return [(g.fusion, g.codec) for g, _ in device_order(todo, silent)]

    assert order(2.0e7) == [("max", "analog"), ("late", "n/a"), ("none", "n/a"),
                            ("max", "identity")]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="v2x.sweep"):
        assert order(1.0e5) == [("late", "n/a"), ("none", "n/a"), ("max", "identity"),
                                ("max", "analog")]  # fmt: skip
    assert sum("no map can arrive" in r.getMessage() for r in caplog.records) == 2
    cfg = tiny_config(cache_dir, tmp_path / "run", snr_db=[-5.0, 30.0], fusions=["max"])
    cfg["budget"] = {"bandwidth_hz": 1.0e5}
    ledger = read_results([run_sweep(cfg)], ledger=True).to_pydict()
    assert any(ledger["sent"]) and not any(ledger["delivered"])


def test_a_first_sweep_logs_its_plan_before_reading_any_frame(
    cache_dir, tmp_path, monkeypatch, caplog
):
    """Into a new output folder the plan line ("N cells in G groups ... computing ...") came
    only after the first group had finished (the results file is named by the frames' hash,
    known once every frame is read): minutes of silence on a first run. It now comes before any
    frame is read; the file's name follows once it is known. A resumed sweep still logs the
    plan with its file."""
    import logging

    import v2x.sweep as sweep

    seen: list[list[str]] = []
    real_stream = sweep.FrameStream

    def stream(*args, **kwargs):  # the first work: reading (or generating) the frames
        seen.append([r.getMessage() for r in caplog.records])
        return real_stream(*args, **kwargs)

    monkeypatch.setattr(sweep, "FrameStream", stream)
    cfg = tiny_config(cache_dir, tmp_path / "new", codecs=["identity"], fusions=["none", "max"])
    cells = len(cfg["grid"]["snr_db"]) * 2
    plan = (f"sweep: {cells} cells in 2 groups; 0 already done, 0 reused from other results "
            f"files; computing {cells} cells in 2 groups -> {tmp_path / 'new'}")  # fmt: skip
    with caplog.at_level(logging.INFO, logger="v2x.sweep"):
        path = run_sweep(cfg)
    assert plan in seen[0]
    logged = [r.getMessage() for r in caplog.records]
    assert f"sweep {path.stem.removeprefix('sweep-')}: results -> {path}" in logged
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="v2x.sweep"):  # nothing left: the plan says so
        assert run_sweep(cfg) == path
    assert f"computing 0 cells in 0 groups -> {path}" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("source", ["v2xsim", "dair_v2x"])
def test_a_real_data_root_that_is_not_a_folder_names_data_path(tmp_path, source):
    """``data.path=/nonexistent`` read "/nonexistent/v2.0: folder not found (field 'version' =
    'v2.0')" (DAIR: ".../cooperative/data_info.json: file not found"): it blamed a field the
    user never set. A root that is not a folder is now refused naming data.path."""
    from v2x.sweep import load_frames

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for root in (tmp_path / "nonexistent", a_file):
        with pytest.raises(ValueError, match=(
            rf"^sweep: field 'data.path' is '{root}', which is not a folder; expected the "
            rf"{source} dataset root"
        )):  # fmt: skip
            load_frames({"source": source, "path": str(root), "num_frames": 1, "reader": {}})


def test_a_groups_log_label_gives_its_ratio_only_where_the_codec_has_one(tmp_path):
    """The per-group log line read "max/digital/awgn ratio=nan" for every codec without the
    bandwidth-ratio knob, and "ratio=0.015625" for 1/64. The label now gives the ratio as the
    table does (1/64) and leaves it out where there is none."""
    from v2x.sweep import _group_label

    cfg = tiny_config(tmp_path, tmp_path, codecs=["identity", "deepjscc"], fusions=["none", "max"],
                      bandwidth_ratios=[1 / 64, 0.0039])  # fmt: skip
    cfg["codec_options"] = {"deepjscc": {"checkpoint": "untrained"}}
    labels = sorted(_group_label(g) for g in plan_sweep(cfg).groups)
    assert labels == [
        "max/deepjscc/awgn ratio=0.0039",
        "max/deepjscc/awgn ratio=1/64",
        "max/identity/awgn",
        "none/n/a/n/a",
    ]


def test_real_data_read_whole_is_said(tmp_path, caplog):
    """``data.split`` (train in v2x-train, test in v2x-sweep) does not choose real-data scenes:
    without ``data.reader.split`` (or ``scenes``) every scene was read, the val and test scenes
    trained on, without a word."""
    import logging

    from v2x.datasets.export import export_frames
    from v2x.datasets.synthetic import generate_frame
    from v2x.datasets.synthetic_config import SyntheticConfig
    from v2x.sweep import load_frames

    root = tmp_path / "v2xsim"
    export_frames([generate_frame(SyntheticConfig(), seed=3)], root, "v2xsim")
    data = {"source": "v2xsim", "path": str(root), "num_frames": 1, "split": "train"}
    with caplog.at_level(logging.WARNING, logger="v2x.loading"):
        load_frames({**data, "reader": {}})
    said = [r.getMessage() for r in caplog.records if r.name == "v2x.loading"]
    assert len(said) == 1 and "read whole, train, val and test alike" in said[0]
    assert "+data.reader.split=train|val|test" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="v2x.loading"):
        load_frames({**data, "reader": {"scenes": [0]}})
        load_frames({**data, "reader": {"split": "val", "split_scenes": {"val": [0]}}})
    assert not [r for r in caplog.records if r.name == "v2x.loading"]


def test_a_detector_checkpoint_that_is_a_folder_or_not_a_checkpoint_is_named(tmp_path):
    """``checkpoint=<a folder>`` was reported as a path that does not exist; a text file as
    torch's unpickling error alone. Both now name the path and what is expected."""
    from v2x.perception.checkpoint import read_checkpoint

    with pytest.raises(ValueError) as folder:
        plan_sweep({"checkpoint": str(tmp_path), "output_dir": str(tmp_path / "out")})
    message = str(folder.value)
    assert f"field 'checkpoint' names {tmp_path}, a folder; expected a detector" in message
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ValueError) as unreadable:
        read_checkpoint(text)
    message = str(unreadable.value)
    assert message.startswith(f"checkpoint {text}: cannot be read (")
    assert "expected a detector checkpoint saved by torch.save" in message


def test_an_unknown_synthetic_split_is_named_before_any_frame_is_made(tmp_path):
    from v2x.sweep import run_sweep

    cfg = tiny_config(tmp_path / "cache", tmp_path / "out")
    cfg["data"]["split"] = "foo"
    with pytest.raises(ValueError, match=r"^sweep: field 'data.split' is 'foo'; valid choices "
                                         r"for data.source=synthetic: train, val, test$"):
        run_sweep(cfg)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_frame_cache_that_is_a_file_is_named_before_any_frame_is_made(tmp_path):
    from v2x.sweep import run_sweep

    blocker = tmp_path / "cache"
    blocker.write_text("")
    cfg = tiny_config(blocker, tmp_path / "out")
    with pytest.raises(ValueError, match=rf"^sweep: field 'data.cache_dir' is '{blocker}': "
                                         r"cannot make or write a folder there \('.*' is a file"):
        run_sweep(cfg)
