"""Sweeps with the semantic-payload fusions: they run over codecs and channels like dense
features, and their ledger rows charge what was sent."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from tests.core.test_sweep import tiny_model
from v2x.results import read_results
from v2x.sweep import run_sweep

FEATURES, CLASSES, SIDE = 8, 4, 64  # the tiny model's map is [8, 64, 64] (±25.6 m, 0.4 m, /2)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tmp_path) -> dict:
    lidar = {"columns": 128, "max_range_m": 40.0}
    return {
        "checkpoint": "untrained",
        "model": tiny_model(FEATURES),
        "data": {
            "num_frames": 2, "frames_per_sequence": 2, "seed": 7,
            "cache_dir": str(tmp_path / "frames"),
            "synthetic": {
                "vehicle_lidar": {"preset": "vlp16", **lidar},
                "rsu_lidar": {"preset": "rsu32", **lidar},
                "uav_lidar": {"preset": "uav_down", "beams": 8, **lidar},
            },
        },
        "batch_size": 2,
        "grid": {
            "snr_db": [10.0],
            "codecs": ["identity", "analog"],
            "fusions": ["semantic_map", "object_features"],
        },
        "fusion_options": {"object_features": {"score_threshold": 0.05}},
        "output_dir": str(tmp_path / "out"),
        "quiet": True, "table": False, "plots": False,
    }  # fmt: skip


def test_sweep_runs_each_payload_over_each_codec_and_charges_what_was_sent(tmp_path):
    path = run_sweep(_config(tmp_path))
    rows = pq.read_table(path).to_pylist()
    assert {(r["fusion"], r["codec"]) for r in rows} == {
        (f, c) for f in ("semantic_map", "object_features") for c in ("identity", "analog")
    }
    assert all(math.isfinite(r["ap_50"]) for r in rows)
    ledger = read_results([path], ledger=True).to_pylist()
    links = [r for r in ledger if r["sent"]]
    assert links
    assert any(r["fusion"] == "object_features" and r["cells_sent"] > 0 for r in links)
    index_bits = math.ceil(math.log2(SIDE * SIDE))
    for r in links:
        if r["codec"] != "identity":
            continue
        if r["fusion"] == "semantic_map":  # (K + 8) channels x every cell x float16
            assert r["source_bits"] == (CLASSES + 8) * SIDE * SIDE * 16
        else:  # objects x (K + 8 + C) values x float16 + their cell indices
            n = r["cells_sent"]
            control = min(SIDE * SIDE, n * index_bits)
            assert r["source_bits"] == n * (CLASSES + 8 + FEATURES) * 16 + control


def test_a_collaborator_with_no_object_to_send_is_not_on_the_air(tmp_path):
    """object_features with a score threshold no untrained detection reaches: every
    collaborator selects no cell, so no link is on the air: the ledger says not sent, with no
    bit, channel use or packet (and the scheduler gives it no share of the band)."""
    cfg = _config(tmp_path)
    cfg["grid"].update(codecs=["identity"], fusions=["object_features"])
    cfg["fusion_options"] = {"object_features": {"score_threshold": 0.999999}}
    path = run_sweep(cfg)
    ledger = read_results([path], ledger=True).to_pylist()
    assert ledger
    for r in ledger:
        assert r["cells_sent"] == 0 and not r["sent"], r
        assert r["source_bits"] == r["coded_bits"] == r["channel_uses"] == r["packets_sent"] == 0
        assert r["share"] == 0, r
