"""Same config and seed, same numbers in any process: ``configure_determinism`` sets torch's
switches, every app calls it first (before any CUDA work) with its ``deterministic`` key, the key
keys the sweep's cells, and (on a GPU) two processes running one sweep write the same numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from hydra import compose, initialize_config_module

import v2x.common
from v2x.common import CUBLAS_WORKSPACE_CONFIG, configure_determinism


@pytest.fixture
def torch_switches(monkeypatch):
    """The cuBLAS variable unset for the test and restored after it (torch's determinism
    switches are set back after every test: ``tests/conftest.py``)."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)


def test_enabled_sets_every_switch_and_disabled_restores_torchs_defaults(torch_switches):
    torch.backends.cudnn.benchmark = True
    configure_determinism(True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()  # an op without one warns
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE_CONFIG == ":4096:8"
    # no NaN pass over every new tensor (test_sweep: no memory is read before it is written)
    assert not torch.utils.deterministic.fill_uninitialized_memory

    configure_determinism(False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic


def test_a_users_cublas_setting_is_kept_and_a_non_bool_is_refused(torch_switches, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    configure_determinism(True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    with pytest.raises(ValueError, match="deterministic"):
        configure_determinism("false")  # type: ignore[arg-type]


class _Called(Exception):
    """Raised by the stand-in: the app called ``configure_determinism`` (before any work)."""


def _recorder(monkeypatch, module) -> list:
    calls: list = []

    def record(enabled):
        calls.append(enabled)
        raise _Called

    monkeypatch.setattr(module, "configure_determinism", record)
    return calls


def _compose(name: str, overrides: list[str] | None = None):
    with initialize_config_module(config_module="v2x.conf", version_base=None):
        return compose(config_name=name, overrides=overrides or [])


@pytest.mark.parametrize("name", ["sweep", "eval", "sweep_payload_latency", "train",
                                  "train_pointpillars", "train_pointpillars_finetune", "train_codec"])  # fmt: skip
def test_every_app_config_defaults_to_deterministic(name):
    assert _compose(name).deterministic is True


def test_the_sweep_calls_it_first_with_its_key(monkeypatch, tmp_path):
    import v2x.sweep

    calls = _recorder(monkeypatch, v2x.sweep)
    cfg = _compose("sweep", ["deterministic=false", f"output_dir={tmp_path}"])
    with pytest.raises(_Called):
        v2x.sweep.run_sweep(cfg)
    assert calls == [False] and not list(tmp_path.iterdir())  # before any work


def test_the_training_apps_call_it_first_with_their_key(monkeypatch):
    import v2x.apps.train
    import v2x.apps.train_codec

    calls = _recorder(monkeypatch, v2x.apps.train)
    with pytest.raises(_Called):
        v2x.apps.train.run_training(_compose("train", ["deterministic=false"]))
    calls_codec = _recorder(monkeypatch, v2x.apps.train_codec)
    with pytest.raises(_Called):
        v2x.apps.train_codec.run_codec_training(_compose("train_codec"))
    assert calls == [False] and calls_codec == [True]


def test_a_sweep_worker_process_calls_it_before_loading_anything(monkeypatch):
    from v2x.sweep_workers import _start

    calls = _recorder(monkeypatch, v2x.common)  # imported inside the spawned worker
    with pytest.raises(_Called):
        _start(False, None)
    assert calls == [False]


def test_the_key_keys_the_cells():
    from v2x.sweep import plan_sweep

    small = ["checkpoint=untrained", "grid.snr_db=[0]", "grid.codecs=[identity]",
             "grid.fusions=[none]"]  # fmt: skip
    on, off = (
        plan_sweep(_compose("sweep", [*small, f"deterministic={v}"])) for v in ("true", "false")
    )
    assert on.groups[0].setting["deterministic"] is True
    assert off.groups[0].setting["deterministic"] is False
    assert on.config_hash != off.config_hash


# ---------------------------------------------------------------- GPU: two processes, one sweep

#: AP columns (with their bootstrap intervals) and the ledger sums of a results row.
_NOT_COMPARED = ("config_hash", "v2x_version", "data_path")


def _sweep_in_a_new_process(
    tmp: Path, name: str, device: str = "cuda"
) -> tuple[list[dict], list[dict]]:
    """A tiny sweep (2 frames, Where2comm with asynchrony, frames ray-cast on ``device`` into
    this run's own cache) in a fresh interpreter; its results rows and ledger rows."""
    out, cache = tmp / name, tmp / f"{name}-frames"
    args = [
        "--config-name", "sweep_payload_latency", f"device={device}", f"data.synthetic.device={device}",
        "data.num_frames=2", "data.frames_per_sequence=2", "batch_size=2", f"data.cache_dir={cache}",
        "grid.fusions=[none,max,{name:where2comm,max_fraction:0.01}]", "eval.bootstrap=50",
        f"output_dir={out}", "quiet=true", "plots=false", "table=false",
        f"hydra.run.dir={out}/hydra",
    ]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "v2x.apps.sweep", *args], capture_output=True,
                          text=True, cwd=tmp)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (results,) = out.glob("sweep-*[!r].parquet")
    (ledger,) = out.glob("sweep-*.ledger.parquet")
    rows = sorted(pq.read_table(results).to_pylist(), key=lambda r: r["cell_id"])
    led = pq.read_table(ledger).to_pylist()
    led.sort(key=lambda r: (r["cell_id"], r["frame_id"], r["tx_agent"], r["rx_agent"]))
    return [{k: v for k, v in r.items() if k not in _NOT_COMPARED} for r in rows], led


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_two_processes_running_one_gpu_sweep_write_the_same_numbers(tmp_path):
    rows_a, ledger_a = _sweep_in_a_new_process(tmp_path, "a")
    rows_b, ledger_b = _sweep_in_a_new_process(tmp_path, "b")
    assert len(rows_a) == 3 and len(ledger_a) > 0
    assert [r["data_hash"] for r in rows_a] == [r["data_hash"] for r in rows_b]  # the frames
    _assert_same(rows_a, rows_b)
    _assert_same(ledger_a, ledger_b)


def _assert_same(rows_a: list[dict], rows_b: list[dict]) -> None:
    """Equal rows, column by column; NaN (no interval, no bandwidth ratio, ...) equals NaN."""
    assert len(rows_a) == len(rows_b)
    for a, b in zip(rows_a, rows_b, strict=True):
        for key in a:
            same = a[key] == b[key] or (a[key] != a[key] and b[key] != b[key])
            assert same, (a.get("fusion"), key, a[key], b[key])


def _generator_states() -> list[torch.Tensor]:
    states = [torch.get_rng_state()]
    if torch.cuda.is_available():
        states += [torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count())]
    return states


@pytest.mark.parametrize("seed", [0, 7, 2**40 + 3, -5])
def test_seed_torch_leaves_the_generators_torch_manual_seed_leaves(seed):
    """``seed_torch`` (what a sweep calls per condition block) against ``torch.manual_seed``:
    the same CPU generator state and, where there is CUDA, every device's, and the same draws."""
    from v2x.common import seed_torch

    saved = _generator_states()
    try:
        torch.rand(3)  # states moved on first: both calls must reset them
        torch.manual_seed(seed)
        want = _generator_states()
        want_draw = torch.rand(5)
        torch.rand(7)
        seed_torch(seed)
        got = _generator_states()
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)
        assert torch.equal(torch.rand(5), want_draw)
    finally:
        torch.set_rng_state(saved[0])
        for i, state in enumerate(saved[1:]):
            torch.cuda.set_rng_state(state, i)
