"""benchmarks/bench_sweep.py's codec specs (names or YAML flow mappings, as ``grid.codecs``) and
its ledger summary (what the air carried in a timed ``run_sweep``), on a tiny CPU sweep."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.benchmark_scripts import load_benchmark
from tests.core.test_sweep import tiny_config
from v2x.sweep import run_sweep


def _script():
    return load_benchmark("bench_sweep")


def test_codec_spec_takes_names_and_flow_mappings():
    bench = _script()
    assert bench.codec_spec("analog") == "analog"
    spec = "{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir}"
    assert bench.codec_spec(spec) == {
        "name": "digital_payload",
        "bits": 4,
        "harq_max_rounds": 1,
        "harq_combining": "ir",
    }
    with pytest.raises(SystemExit, match=r"'\{bits: 4\}' is not a mapping with a 'name'"):
        bench.codec_spec("{bits: 4}")


def test_ledger_summary_counts_what_the_ledger_says_was_sent(tmp_path):
    """Per codec: links sent, mean source Mbit and channel uses per sent link, share delivered
    — checked row by row against the ledger file the sweep wrote (late fusion's boxes and the
    digital maps)."""
    bench = _script()
    out = tmp_path / "out"
    cfg = tiny_config(tmp_path / "frames", out, codecs=["digital"], fusions=["late", "max"])
    cfg["grid"]["snr_db"] = [-5.0, 20.0]
    run_sweep(cfg)
    summary = bench.ledger_summary(str(out))
    (ledger,) = out.rglob("sweep-*.ledger.parquet")
    rows = [r for r in pq.read_table(ledger).to_pylist() if r["sent"]]
    assert set(summary) == {r["codec"] for r in rows}
    for codec, (links, mbit, uses, delivered, late, slowest) in summary.items():
        mine = [r for r in rows if r["codec"] == codec]
        assert links == len(mine) > 0
        assert mbit == pytest.approx(sum(r["source_bits"] for r in mine) / len(mine) / 1e6)
        assert uses == pytest.approx(sum(r["channel_uses"] for r in mine) / len(mine))
        assert delivered == pytest.approx(sum(r["delivered"] for r in mine) / len(mine))
        assert late == pytest.approx(sum(r["latency_s"] > 0.1 for r in mine) / len(mine))
        assert slowest == max(r["latency_s"] for r in mine)
    # late fusion's boxes (codec n/a) are far smaller than the digital chain's feature maps
    assert summary["digital"][1] > 10 * summary["n/a"][1] > 0
    assert summary["digital"][2] > 0  # the maps went on air
    # a second sweep's ledger in the same folder adds its links (another SNR: another file)
    cfg["grid"]["snr_db"] = [10.0]
    run_sweep(cfg)
    again = bench.ledger_summary(str(out))
    assert again["digital"][0] == summary["digital"][0] * 3 // 2


def test_a_sweep_whose_payloads_miss_the_deadline_is_flagged_against_the_loop(tmp_path):
    """At a bandwidth where the identity maps miss the deadline the summary counts them late and
    ``unlike_loop`` warns (the loop would fuse them), naming a bandwidth that puts them on time;
    a sweep at that bandwidth delivers every map and draws no warning."""
    bench = _script()
    out = tmp_path / "slow"
    cfg = tiny_config(tmp_path / "frames", out, codecs=["identity"], fusions=["max"])
    cfg["budget"] = {"bandwidth_hz": 1e5}
    run_sweep(cfg)
    summary = bench.ledger_summary(str(out), deadline_s=0.1)
    assert summary["identity"].late == 1.0 and summary["identity"].delivered == 0.0
    warning = bench.unlike_loop(summary, 1e5, 0.1)
    assert "identity 100%" in warning
    hz = float(warning.rsplit("--bandwidth-hz ", 1)[1].split()[0])
    assert hz > 1e5
    cfg["output_dir"] = str(tmp_path / "fast")
    cfg["budget"] = {"bandwidth_hz": hz}
    run_sweep(cfg)
    summary = bench.ledger_summary(cfg["output_dir"], deadline_s=0.1)
    assert summary["identity"].late == 0.0 and summary["identity"].delivered == 1.0
    assert bench.unlike_loop(summary, hz, 0.1) == ""


@pytest.mark.parametrize("fusions", [["none", "late", "max"], ["max", "attention", "early"]])
def test_the_loop_times_the_settings_of_run_sweeps_cells(tmp_path, fusions):
    """``--loop-cells sweep``: the batched pipeline and the loop run one setting per
    ``run_sweep`` group (a feature fusion per codec; ego-only, late and early once, with the
    identity codec run_sweep builds for them), so that their rate is of the sweep's own cells;
    ``max``: max fusion per codec only."""
    from v2x.sweep_plan import FEATURE_STAGE, plan_sweep

    bench = _script()
    codecs = ["identity", "analog", "digital"]
    plan = plan_sweep(tiny_config(tmp_path, tmp_path / "out", codecs=codecs, fusions=fusions))
    groups = [
        (g.fusion, g.codec if g.stage == FEATURE_STAGE else "identity") for g in plan.groups
    ]
    settings = bench.loop_settings(fusions, codecs)
    assert sorted(settings) == sorted(groups)
    assert bench.loop_settings(fusions, codecs, "max") == [("max", c) for c in codecs]
