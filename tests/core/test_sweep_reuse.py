"""share_source_coding: a codec that declares ``memoises_source_coding`` gets one shared memo,
and what it encodes with the memo is what it encodes without (the memo only saves work)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

from v2x.channels.link import LinkState
from v2x.semcom import build_codec
from v2x.sweep_reuse import share_source_coding

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _encode(codec, maps: torch.Tensor, snr_db: float):
    torch.manual_seed(1)  # the same draws (e.g. padding bits) for both codecs
    return codec.encode(maps, LinkState.from_snr(snr_db, maps.shape[0]))


def test_the_digital_chain_shares_its_source_coding_across_calls():
    maps = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = build_codec("digital", bits=6)
    shared = build_codec("digital", bits=6)
    memo = share_source_coding(shared)
    assert shared.source_memo is memo and plain.source_memo is None
    for snr in (5.0, 20.0):  # two cells of one group: the same maps at two SNRs
        a, b = _encode(plain, maps, snr), _encode(shared, maps, snr)
        assert torch.equal(a.symbols, b.symbols) and torch.equal(a.mask, b.mask)
        for name in ("source_bits", "coded_bits", "channel_uses", "packets"):
            assert torch.equal(getattr(a.cost, name), getattr(b.cost, name)), name
        if snr == 5.0:
            filled = dict(memo)
            assert filled  # the first cell's source coding is kept ...
    assert memo.keys() == filled.keys()  # ... and the second cell found it there
    for name in ("identity", "analog"):  # nothing to memoise: left as is
        codec = build_codec(name)
        assert share_source_coding(codec) == {} and codec.source_memo is None


def test_worker_processes_code_only_for_groups_on_a_gpu(monkeypatch):
    """The host's worker processes (``cell_pool``) take the digital chain's source coding when
    the group runs on a GPU; on a CPU the cores run torch's threads, so the codec codes in its
    own process."""
    import v2x.sweep_rows as sweep_rows

    pool = object()
    monkeypatch.setattr(sweep_rows, "cell_pool", lambda: pool)
    codec = build_codec("digital", bits=6)
    share_source_coding(codec, "cpu")
    assert codec.source_executor is None
    share_source_coding(codec, torch.device("cuda", 0))  # no GPU needed: only the decision
    assert codec.source_executor is pool
    monkeypatch.setattr(sweep_rows, "cell_pool", lambda: None)  # a host without workers
    share_source_coding(codec, "cuda")
    assert codec.source_executor is None


def _mem_available_bytes() -> float:
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    value, unit = fields["MemAvailable"].split()
    assert unit == "kB"
    return float(value) * 1024


def test_feature_cache_size_is_a_number_of_gb_or_auto(monkeypatch):
    import v2x.sweep_reuse as reuse
    from v2x.sweep_reuse import feature_cache_bytes

    assert feature_cache_bytes(0, "cpu") == 0.0
    assert feature_cache_bytes(2.5, "cpu") == 2.5e9
    assert feature_cache_bytes("3", "cpu") == 3e9
    if sys.platform == "linux":  # auto: a quarter of the host's available memory
        for setting in ("auto", "AUTO"):
            got = feature_cache_bytes(setting, "cpu")
            free = _mem_available_bytes() + reuse._free_heap_bytes()  # (the heap: below)
            assert got == pytest.approx(0.25 * free, rel=0.05)
    # auto on CUDA: half of the device's free memory (mem_get_info), read when the cache is made
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40e9, 141e9))
    assert feature_cache_bytes("auto", "cuda:0") == 20e9


def test_auto_feature_cache_counts_what_the_caching_allocator_holds_unused(monkeypatch):
    """Memory this process's CUDA caching allocator reserved but does not use (an earlier
    sweep's features, freed in the same process) is free to the new cache, though the driver
    (``mem_get_info``) counts it as used: 40 GB free + (30 reserved − 10 allocated) → half of
    60 GB."""
    from v2x.sweep_reuse import feature_cache_bytes

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40e9, 141e9))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 30e9)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 10e9)
    assert feature_cache_bytes("auto", "cuda:0") == 30e9


def test_auto_feature_cache_on_a_cpu_counts_the_heap_this_process_keeps_freed(monkeypatch):
    """On a CPU ``auto`` is a quarter of the host's available memory plus the heap glibc keeps
    freed for this process (the apps keep freed memory, ``v2x.cli.reuse_freed_memory``; the
    host counts it as used): 16 GB available + 8 GB kept → 6 GB."""
    import v2x.sweep_reuse as reuse

    monkeypatch.setattr(reuse, "_available_host_bytes", lambda: 16e9)
    monkeypatch.setattr(reuse, "_free_heap_bytes", lambda: 8e9)
    assert reuse.feature_cache_bytes("auto", "cpu") == 6e9


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
@pytest.mark.parametrize("keep_freed", [True, False])
def test_the_heap_kept_freed_is_what_glibc_holds_after_a_large_array_is_freed(keep_freed):
    """``_free_heap_bytes`` against glibc itself, in fresh processes: after a 256 MiB array is
    freed, the heap holds at least that much free with the apps' malloc settings (kept for this
    process, ``v2x.cli.reuse_freed_memory``) and less without them (glibc unmaps so large a
    block on free, which the host's available memory then counts)."""
    code = textwrap.dedent(
        f"""
        import numpy as np
        from v2x.cli import reuse_freed_memory
        from v2x.sweep_reuse import _free_heap_bytes
        assert reuse_freed_memory() if {keep_freed} else True
        block = np.ones(32 * 2**20)  # 256 MiB of float64
        del block
        print(_free_heap_bytes())
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (float(done.stdout) >= 256 * 2**20) is keep_freed


@pytest.mark.parametrize("bad", [-1, "lots", True, float("inf"), float("nan"), None])
def test_a_bad_feature_cache_size_is_refused_before_any_work(bad, tmp_path):
    from v2x.sweep_plan import plan_sweep

    with pytest.raises(ValueError) as err:
        plan_sweep({"output_dir": str(tmp_path), "feature_cache_gb": bad})
    message = str(err.value)
    assert "feature_cache_gb" in message and repr(bad) in message and "'auto'" in message
    assert not any(tmp_path.iterdir())  # nothing written


def test_the_sweep_caches_features_by_default():
    from v2x.sweep_config import SweepConfig

    assert SweepConfig().feature_cache_gb == "auto"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_feature_cache_takes_half_the_free_device_memory():
    from v2x.sweep_reuse import feature_cache_bytes

    free, _ = torch.cuda.mem_get_info(0)
    free += torch.cuda.memory_reserved(0) - torch.cuda.memory_allocated(0)
    assert feature_cache_bytes("auto", "cuda:0") == pytest.approx(0.5 * free, rel=0.05)


def test_auto_feature_cache_is_split_between_workers_on_one_memory(monkeypatch):
    """``device: [cpu, cpu]`` runs two workers on the host's memory and ``[cuda:0, cuda:0]`` two
    on one GPU's: with ``auto`` each caches its share, not the whole."""
    import v2x.sweep_reuse as reuse

    assert reuse.memory_sharers(["cpu", "cpu", "cpu"]) == {"cpu": 3}
    assert reuse.memory_sharers(["cuda:0", "cuda:1", "cuda:0"]) == {"cuda:0": 2, "cuda:1": 1}
    assert reuse.memory_sharers([torch.device("cpu")]) == {"cpu": 1}
    monkeypatch.setattr(reuse, "_available_host_bytes", lambda: 16e9)
    monkeypatch.setattr(reuse, "_free_heap_bytes", lambda: 0.0)
    assert reuse.feature_cache_bytes("auto", "cpu") == 4e9
    assert reuse.feature_cache_bytes("auto", "cpu", sharers=4) == 1e9
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40e9, 141e9))
    assert reuse.feature_cache_bytes("auto", "cuda:0", sharers=2) == 10e9
    assert reuse.feature_cache_bytes(3, "cpu", sharers=4) == 3e9  # a number is each worker's


def test_auto_feature_cache_leaves_room_for_the_other_workers_working_sets(monkeypatch):
    """Two workers on one H200 with ``auto`` ran out of memory (2026-12-05, batches of 32, 7
    SNRs): each cached a quarter of the 137 GB free (34 GB) beside a working set of ≈ 62 GB
    (2.2× its 7 batches' features of 4.03 GB each), 2 × 96 GB > 140 GB. With the reserve each
    worker's cache leaves the other's working set: 0.5 × 137 GB − 2.5 × 7 × 4.03 GB, split in
    two, is < 0, so neither caches, and the two working sets fit. One worker, or a number of GB
    (the user's), keeps the whole share."""
    import v2x.sweep_reuse as reuse

    batch_bytes = 32 * 5 * 384 * 128 * 128 * 4  # one batch's features: 32 five-agent frames
    assert reuse.auto_cache_reserve("auto", 1, 7) == 0.0
    assert reuse.auto_cache_reserve(16, 2, 7) == 0.0
    assert reuse.auto_cache_reserve("auto", 2, 7) == pytest.approx(0.5 * 2.5 * 7)
    assert reuse.auto_cache_reserve("auto", 3, 7) == pytest.approx(2 / 3 * 2.5 * 7)

    class Model:
        feature_map_shape = (384, 128, 128)

    def cache_for(free: float, workers: int, conditions: int, agents: int = 5):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 141e9))
        cache = reuse.EncodeCache(
            Model(),
            reuse.feature_cache_bytes("auto", "cuda:0", sharers=workers),
            reuse.auto_cache_reserve("auto", workers, conditions),
        )
        mask = torch.ones(32, agents, dtype=torch.bool)
        cache.would_hold(SimpleNamespace(agent_mask=mask, batch_size=32), 1)
        return cache.max_bytes

    measured_working_set = 2.2 * 7 * batch_bytes
    assert cache_for(137e9, 2, 7) == 0.0
    assert 2 * (cache_for(137e9, 2, 7) + measured_working_set) < 137e9
    # one worker: half the free memory, as before (its own working set in the other half)
    assert cache_for(137e9, 1, 7) == pytest.approx(0.5 * 137e9)
    assert cache_for(137e9, 1, 7) + measured_working_set < 137e9
    # batches of 8 (a quarter of the features): room for both working sets and some cache
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (137e9, 141e9))
    cache = reuse.EncodeCache(
        Model(), reuse.feature_cache_bytes("auto", "cuda:0", sharers=2),
        reuse.auto_cache_reserve("auto", 2, 7),
    )  # fmt: skip
    mask = torch.ones(8, 5, dtype=torch.bool)
    cache.would_hold(SimpleNamespace(agent_mask=mask, batch_size=8), 1)
    expected = 0.5 * 137e9 / 2 - 0.5 * 2.5 * 7 * batch_bytes / 4
    assert cache.max_bytes == pytest.approx(expected)
    assert 2 * (cache.max_bytes + 2.2 * 7 * batch_bytes / 4) < 137e9


def _plan(precision: str, codecs: list, fusions=("none", "late", "max"), deepjscc=None):
    from v2x.sweep_plan import plan_sweep

    cfg = {"checkpoint": "untrained", "eval": {"precision": precision},
           "grid": {"snr_db": [0.0, 10.0], "codecs": codecs, "fusions": list(fusions)}}  # fmt: skip
    if deepjscc is not None:
        cfg["codec_options"] = {"deepjscc": {"precision": deepjscc}}
    return plan_sweep(cfg)


def test_a_reduced_precision_sweeps_own_working_set_is_the_one_measured_so():
    """``working_set_batches``: the reduced factor only on CUDA where the detector and DeepJSCC
    run at a reduced precision and every map-sending codec was measured so; fp32 anywhere (the
    detector, DeepJSCC's default), another codec, early fusion or the CPU: the float32 factor."""
    import v2x.sweep_reuse as reuse

    reduced, full = reuse.REDUCED_WORKING_SET_BATCHES_PER_CONDITION, 2.5
    issue16 = ["identity", "analog", "deepjscc"]
    assert reuse.working_set_batches(_plan("fp16", issue16, deepjscc="fp16"), "cuda") == reduced
    assert reuse.working_set_batches(_plan("bf16", ["identity", "analog"]), "cuda") == reduced
    assert reuse.working_set_batches(_plan("fp32", issue16, deepjscc="fp16"), "cuda") == full
    assert reuse.working_set_batches(_plan("fp16", issue16), "cuda") == full  # DeepJSCC at fp32
    assert reuse.working_set_batches(_plan("fp16", ["identity", "digital"]), "cuda") == full
    assert reuse.working_set_batches(_plan("fp16", ["identity"], ("max", "early")), "cuda") == full
    assert reuse.working_set_batches(_plan("fp16", ["identity"], ("none", "late")), "cuda") == reduced
    # measured on CUDA only (the CPU's torch fusion path holds warped copies besides)
    assert reuse.working_set_batches(_plan("bf16", ["identity"]), "cpu") == full


def test_the_issue16_sweeps_512_float16_frames_fit_an_80_gb_gpu_beside_its_working_set(
    monkeypatch,
):
    """At fp16 / fp16, batches of 32 x 7 SNRs on a GPU with 83 GB free (an 80 GB H100 with
    the detector loaded): ``auto`` holds all 512 frames' float16 features (32.2 GB, the groups
    then run one after another) and leaves free more than the working set measured beside
    them (peak 66.5 GB allocated with 32.2 GB cached: 34.3 GB); at fp32 (float32 features,
    the float32 factor) not even 256 frames, as before."""
    import v2x.sweep_reuse as reuse

    class Model:
        feature_map_shape = (384, 128, 128)

        def __init__(self, dtype):
            self.encoded_dtype = dtype

    free, conditions = 83e9, 7
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 85e9))
    batch = SimpleNamespace(agent_mask=torch.ones(32, 5, dtype=torch.bool), batch_size=32)
    for precision, dtype, frames, fits in [
        ("fp16", torch.float16, 512, True), ("fp32", torch.float32, 256, False),
    ]:  # fmt: skip
        plan = _plan(precision, ["identity", "analog", "deepjscc"], deepjscc=precision)
        per_condition = reuse.working_set_batches(plan, "cuda:0")
        room = reuse.auto_cache_room("auto", free, 1, conditions, per_condition)
        cache = reuse.EncodeCache(Model(dtype), reuse.feature_cache_bytes("auto", "cuda:0"),
                                  0.0, room)  # fmt: skip
        assert cache.would_hold(batch, frames) == fits, precision
        if fits:
            assert free - cache.max_bytes > 34.3e9
