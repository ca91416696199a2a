"""Realistic digital payloads in sweeps: the ``bits_per_value`` column (``digital_payload`` at
several bit depths as separate rows), ``bits_estimated``, the table's per-link columns."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.compute as pc
import pytest

from v2x.ledger import LEDGER_SUMS
from v2x.plots import _series_label as _label
from v2x.results import cell_id, read_results, rows_to_table
from v2x.results_table import results_table_text
from v2x.semcom.digital_blocks import block_code_len
from v2x.sweep_plan import plan_sweep

BASE = {
    "checkpoint": "untrained",
    "grid": {"snr_db": [10.0], "fusions": ["none", "max"]},
}


def _plan(codecs):
    return plan_sweep({**BASE, "grid": {**BASE["grid"], "codecs": codecs}})


def test_bits_per_value_comes_from_each_codec_entry_and_keeps_other_cell_ids():
    plan = _plan(["digital", {"name": "digital_payload", "bits": 4}, "digital_payload"])
    got = [(g.codec, g.bits_per_value) for g in plan.groups]
    assert got == [("n/a", 0), ("digital", 0), ("digital_payload", 4), ("digital_payload", 8)]
    assert len({g.key for g in plan.groups}) == 4
    conds = [g.condition(10.0, plan.budget) for g in plan.groups]
    assert [c["bits_per_value"] for c in conds] == [0, 0, 4, 8]
    # codecs without a bit depth: the cell ids of results from before the column existed
    old = {k: v for k, v in conds[1].items() if k != "bits_per_value"}
    assert cell_id(conds[1], "s", 0) == cell_id(old, "s", 0)
    assert cell_id(conds[2], "s", 0) != cell_id({**conds[2], "bits_per_value": 8}, "s", 0)
    assert (
        plan_sweep({**BASE, "grid": {**BASE["grid"], "codecs": ["digital"]}}).groups[1].key
        == plan.groups[1].key
    )


@pytest.mark.parametrize("bits", [0, 17, 4.5, "8"])
def test_a_bad_bit_depth_is_refused_naming_the_field(bits):
    # the grid entry that set the bits is the field named (not codec_options, which did not)
    with pytest.raises(ValueError, match=r"field 'grid.codecs\[0\].bits' must be an int in 1..16"):
        _plan([{"name": "digital_payload", "bits": bits}])


def _row(bits: int, estimated: bool, **sums) -> dict:
    cond = {
        "channel": "awgn",
        "snr_mode": "fixed",
        "snr_db": 10.0,
        "codec": "digital_payload" if bits else "deepjscc",
        "bandwidth_ratio": math.nan,
        "fusion": "max",
        "pose_noise_m": 0.0,
        "pose_noise_yaw_rad": 0.0,
        "scheduler": "equal",
        "deadline_s": 0.1,
        "bandwidth_hz": 1e9,
        "bits_per_value": bits,
    }
    row = {
        "cell_id": cell_id(cond),
        **cond,
        "dataset": "synthetic",
        "split": "test",
        "num_frames": 2,
        **{m: 0.5 for m in ("ap_30", "ap_50", "ap_70", "ap_70_invisible")},
        "num_gt": 3,
        "num_gt_invisible": 0,
        "eval_convention": "{}",
        "realised_ratio": 0.1,
        "bits_estimated": estimated,
        "config_hash": "c",
        "v2x_version": "0",
    }
    row.update({name: 1.0 for name in LEDGER_SUMS})
    row.update(sums)
    return row


def test_table_gives_bits_and_channel_uses_per_link_and_flags_estimates():
    rows = [
        _row(0, False),
        _row(
            8,
            False,
            mean_source_bits_per_frame=3.0e7,
            mean_channel_uses_per_frame=6.0e6,
            mean_links_per_frame=4.0,
        ),
    ]
    lines = results_table_text(rows_to_table(rows)).splitlines()
    header = lines[0].split()
    assert "bits_per_value" in header and "bits_estimated" not in header
    line = next(r for r in lines[2:] if "digital_payload" in r).split()
    cell = dict(zip(header, line))  # no AP intervals in these rows: one token per column
    assert cell["bits_per_value"] == "8"
    assert cell["source_bits_per_link"] == "7.5e+06"  # 3e7 bits per frame over 4 links
    assert cell["channel_uses_per_link"] == "1.5e+06"
    rows[1]["bits_estimated"] = True
    header = results_table_text(rows_to_table(rows)).splitlines()[0].split()
    assert header[-1] == "bits_estimated"
    # tables without a bit depth keep their columns
    plain = results_table_text(rows_to_table([_row(0, False)])).splitlines()[0].split()
    assert "bits_per_value" not in plain and "source_bits_per_link" not in plain


def test_digital_payload_sweep_charges_every_code_block_of_the_whole_map(tmp_path):
    from tests.core.test_sweep import tiny_config
    from v2x.sweep import run_sweep

    cfg = tiny_config(
        tmp_path / "frames",
        tmp_path / "out",
        snr_db=[30.0],
        codecs=[
            {"name": "digital_payload", "bits": 2},
            # estimated sizes (no coding) and the BLER-table decoder: labelled as estimated
            {"name": "digital_payload", "bits": 3, "entropy_coder": "ans_estimate",
             "decoder": "fast"},
        ],
        fusions=["max"],
    )  # fmt: skip
    cfg["data"]["num_frames"] = 2
    cfg["budget"] = {"bandwidth_hz": 1e9}
    path = run_sweep(cfg)
    rows = sorted(read_results([path]).to_pylist(), key=lambda r: r["bits_per_value"])
    got = [(r["codec"], r["bits_per_value"], r["bits_estimated"]) for r in rows]
    assert got == [("digital_payload", 2, False), ("digital_payload", 3, True)]
    assert "[bits estimated]" in _label(rows[1]) and "(3 bit/value)" in _label(rows[1])
    ledger = read_results([path], ledger=True)
    sent = ledger.filter(pc.field("sent") & pc.equal(pc.field("cell_id"), rows[0]["cell_id"]))
    bits = np.asarray(sent.column("source_bits").to_pylist())
    uses = np.asarray(sent.column("channel_uses").to_pylist())
    assert len(bits) >= 2 and (bits > 0).all() and (bits % 8 == 0).all()
    # 30 dB: MCS 28 for every link; each 1000-bit piece of the stream is one code block
    blocks = np.ceil(bits / (1024 - 24))
    assert np.array_equal(uses, blocks * block_code_len(28, 1024))
    # every value of the [8, 64, 64] map is sent (2 bits before entropy coding)
    assert (bits <= 2 * 8 * 64 * 64 + 8 * 4096).all() and (bits > 0.1 * 8 * 64 * 64).all()


def test_the_shipped_payload_config_plans_the_main_result_grid_at_4_and_8_bits():
    from v2x.common import to_plain
    from v2x.sweep_plan import _compose_defaults

    shipped = to_plain(_compose_defaults("sweep_digital_payload"))
    main = to_plain(_compose_defaults("sweep"))
    assert shipped["device"] == "cuda" and shipped["budget"]["bandwidth_hz"] == 1e9
    assert shipped["data"] == main["data"]  # the main result's frames
    assert shipped["grid"]["snr_db"] == main["grid"]["snr_db"]
    plan = plan_sweep({**shipped, "device": "cpu"})
    got = sorted(
        (g.channel, g.codec, g.bits_per_value, g.harq_max_rounds, g.fusion) for g in plan.groups
    )
    assert got == [
        (ch, "digital_payload", b, 1, "max") for ch in ("awgn", "rayleigh") for b in (4, 8)
    ]
    assert plan.num_cells == 4 * 7
