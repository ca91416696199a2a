"""benchmarks/sweep_overlap.py: what each variant takes away from a sweep, on a tiny CPU sweep
(a patch that missed its target would time the sweep as it is under another name)."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

import v2x.gil_switch as gil_switch
import v2x.sweep as sweep
import v2x.sweep_group as sweep_group
from tests.benchmark_scripts import load_benchmark
from tests.core.test_sweep import _assert_same_results_and_ledger, tiny_config
from v2x.results import read_results
from v2x.sweep import run_sweep

PATCHED = ((sweep, "_run_group"), (sweep, "_run_lockstep"), (sweep, "_ready"),
           (sweep, "_resolved"), (sweep, "ROW_THREADS"), (sweep, "ThreadPoolExecutor"),
           (sweep_group, "book_batch"), (sweep_group.GroupRun, "finish"))  # fmt: skip
ORIGINAL = {(owner, name): getattr(owner, name) for owner, name in PATCHED}


def _script():
    return load_benchmark("sweep_overlap")


@pytest.fixture
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("frames")


def _sweep(monkeypatch, cache_dir: Path, out: Path, variant: str | None):
    """One tiny sweep (4 frames in 2 batches; identity / analog × none / late / max) with
    ``variant`` installed; the group spans it recorded. Every patched name is restored after."""
    spans: list = []
    with monkeypatch.context() as m:
        for owner, name in PATCHED:
            m.setattr(owner, name, getattr(owner, name))
        if variant is not None:
            _script().install(variant, spans)
        path = run_sweep(tiny_config(cache_dir, out, snr_db=[0.0]))
    ledger = pq.read_table(path.with_name(path.name.replace(".parquet", ".ledger.parquet")))
    return path, read_results([path]), ledger, spans


def test_rowsafter_gives_the_same_rows_and_nobook_books_one_batch_per_group(
    monkeypatch, cache_dir, tmp_path
):
    ref, rows, ledger, spans = _sweep(monkeypatch, cache_dir, tmp_path / "ref", None)
    groups = len(set(rows.column("cell_id").to_pylist()))  # one SNR: a cell per group
    assert not spans and groups > 1
    after, _, _, spans = _sweep(monkeypatch, cache_dir, tmp_path / "after", "rowsafter")
    assert len(spans) == groups  # every group timed on the device's thread
    _assert_same_results_and_ledger(after, ref)  # the same rows, computed later
    _, _, one_batch, spans = _sweep(monkeypatch, cache_dir, tmp_path / "nobook", "nobook")
    assert len(spans) == groups
    frames = set(one_batch.column("frame_id").to_pylist())
    assert 0 < len(frames) < len(set(ledger.column("frame_id").to_pylist()))  # the first batch's
    assert all(getattr(owner, name) is ORIGINAL[owner, name] for owner, name in PATCHED)


def test_inline_books_on_the_callers_thread_with_the_same_rows(monkeypatch, cache_dir, tmp_path):
    ref, _, _, _ = _sweep(monkeypatch, cache_dir, tmp_path / "ref", None)
    threads: list[str] = []
    book_batch = sweep_group.book_batch

    def booked(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return book_batch(*args, **kwargs)

    monkeypatch.setattr(sweep_group, "book_batch", booked)
    inline, _, _, spans = _sweep(monkeypatch, cache_dir, tmp_path / "inline", "inline")
    assert threads and not any(name.startswith("v2x-score") for name in threads)
    _assert_same_results_and_ledger(inline, ref)
    assert spans  # every group timed


@pytest.mark.parametrize(("variant", "seconds"), [("pyswitch", 0.005), ("fastswitch", 0.0001)])
def test_switch_variants_set_the_sweeps_interval(monkeypatch, variant, seconds):
    for owner, name in PATCHED:
        monkeypatch.setattr(owner, name, getattr(owner, name))
    monkeypatch.setattr(gil_switch, "SWEEP_SWITCH_INTERVAL_S", gil_switch.SWEEP_SWITCH_INTERVAL_S)
    _script().install(variant, [])
    assert gil_switch.sweep_switch_interval(torch.device("cuda")) == seconds
