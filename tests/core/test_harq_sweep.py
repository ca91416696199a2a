"""The retransmission axis of sweeps (``grid.harq_max_rounds``) and its cell ids."""

from __future__ import annotations

import pytest

from v2x.results import cell_id
from v2x.sweep_plan import plan_sweep

BASE = {
    "checkpoint": "untrained",
    "codec_options": {"deepjscc": {"checkpoint": "untrained"}},
    "grid": {
        "snr_db": [3.0],
        "codecs": ["digital", "deepjscc"],
        "channels": ["awgn", "erasure_iid"],
        "fusions": ["none", "max"],
    },
}


def _plan(**grid):
    return plan_sweep({**BASE, "grid": {**BASE["grid"], **grid}})


def test_rounds_go_to_harq_of_the_codec_else_arq_of_an_erasure_channel():
    plan = _plan(harq_max_rounds=[0, 2])
    got = sorted(
        (
            g.codec,
            g.channel,
            g.harq_max_rounds,
            g.codec_kwargs.get("harq_max_rounds"),
            g.channel_kwargs({}).get("arq_max_rounds"),
        )
        for g in plan.groups
        if g.codec != "n/a"
    )
    assert got == [
        ("deepjscc", "awgn", 0, None, None),  # nothing to retransmit: 0 only
        ("deepjscc", "erasure_iid", 0, None, None),
        ("deepjscc", "erasure_iid", 2, None, 2),  # ARQ of the channel
        ("digital", "awgn", 0, None, None),
        ("digital", "awgn", 2, 2, None),  # HARQ of the codec
        ("digital", "erasure_iid", 0, None, None),
        ("digital", "erasure_iid", 2, 2, None),  # HARQ resends erased blocks itself
    ]
    assert [g.harq_max_rounds for g in plan.groups if g.codec == "n/a"] == [0]


def test_no_retransmission_keeps_the_cell_ids_of_results_from_before_the_axis():
    plan0, plan = _plan(), _plan(harq_max_rounds=[0, 1])
    keys0 = {g.key for g in plan0.groups}
    assert keys0 == {g.key for g in plan.groups if g.harq_max_rounds == 0}
    assert not keys0 & {g.key for g in plan.groups if g.harq_max_rounds == 1}
    cond = plan.groups[0].condition(3.0, plan.budget)
    old = {k: v for k, v in cond.items() if k != "harq_max_rounds"}
    assert cell_id({**cond, "harq_max_rounds": 0}, "s", 0) == cell_id(old, "s", 0)
    assert cell_id({**cond, "harq_max_rounds": 1}, "s", 0) != cell_id(old, "s", 0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"harq_max_rounds": [-1]}, "grid.harq_max_rounds' must be >= 0"),
        ({"harq_max_rounds": [1.5]}, "grid.harq_max_rounds' must be a whole number"),
        ({"harq_max_rounds": [1, 1]}, "grid.harq_max_rounds' lists a value twice"),
    ],
)
def test_bad_rounds_axis(override, message):
    with pytest.raises(ValueError, match=message):
        _plan(**override)


def test_rounds_in_codec_options_and_on_the_axis_conflict():
    cfg = {**BASE, "codec_options": {**BASE["codec_options"], "digital": {"harq_max_rounds": 1}}}
    plan = plan_sweep(cfg)  # the option alone stands and shows in the column
    assert {g.harq_max_rounds for g in plan.groups if g.codec == "digital"} == {1}
    with pytest.raises(ValueError, match="both set the HARQ rounds"):
        plan_sweep({**cfg, "grid": {**BASE["grid"], "harq_max_rounds": [0, 2]}})


def test_a_fusion_that_sends_selected_cells_takes_no_harq_rounds_of_its_codec():
    """``where2comm`` (and the semantic payloads) wrap the codec in the ``selective`` codec,
    which has no HARQ: a grid with HARQ rounds for them passed planning and failed when its
    group started, minutes into the sweep, and again on every resume. Now only 0 applies to
    them, and a grid that leaves them no 0 is refused before any work."""
    plan = _plan(harq_max_rounds=[0, 2], fusions=["max", "where2comm"], codecs=["digital"])
    got = sorted((g.fusion, g.channel, g.harq_max_rounds) for g in plan.groups)
    assert got == [
        ("max", "awgn", 0), ("max", "awgn", 2), ("max", "erasure_iid", 0),
        ("max", "erasure_iid", 2),
        ("where2comm", "awgn", 0), ("where2comm", "erasure_iid", 0),
    ]  # fmt: skip
    assert all(
        "harq_max_rounds" not in g.codec_kwargs for g in plan.groups if g.fusion == "where2comm"
    )
    for fusion in ("where2comm", "semantic_map"):
        with pytest.raises(ValueError, match=rf"fusion '{fusion}' sends selected cells .*\[2\]"):
            _plan(harq_max_rounds=[2], fusions=[fusion], codecs=["digital"])
    fixed = {**BASE, "codec_options": {"digital": {"harq_max_rounds": 1}}}
    fixed["grid"] = {**BASE["grid"], "fusions": ["where2comm"], "codecs": ["digital"]}
    with pytest.raises(ValueError, match=r"codec 'digital' are \[1\]"):
        plan_sweep(fixed)


def test_a_codec_sized_for_feature_maps_under_a_payload_fusion_is_refused_before_any_work():
    """``grid.fusions=[semantic_map]`` with the default codecs (deepjscc among them) passed
    planning and stopped when the deepjscc group started: its 384-channel codec got the
    12-channel payload map."""
    with pytest.raises(ValueError, match=r"fusion 'semantic_map' sends a payload .*'deepjscc'"):
        _plan(fusions=["semantic_map"], codecs=["identity", "deepjscc"])
    with pytest.raises(ValueError, match=r"fusion 'object_features' sends a payload"):
        _plan(fusions=["object_features"], codecs=["deepjscc"])
    plan = _plan(fusions=["semantic_map", "where2comm"], codecs=["identity", "digital"])
    assert {g.fusion for g in plan.groups} == {"semantic_map", "where2comm"}
    assert _plan(fusions=["where2comm"], codecs=["deepjscc"]).groups  # features: fine


def test_the_table_shows_an_axis_where_its_rows_differ():
    """Rows that differed only in ``harq_max_rounds`` (or pose noise, the budget) printed as
    repeats of one another: the table showed only the asynchrony and bit-depth axes."""
    from v2x.results import RESULTS_SCHEMA, rows_to_table
    from v2x.results_table import results_table_text

    base = {f.name: None for f in RESULTS_SCHEMA}
    base.update(fusion="max", codec="digital", channel="awgn", snr_db=3.0, bandwidth_ratio=0.5,
                ap_30=0.4, ap_50=0.3, ap_70=0.2, num_gt=5, pose_noise_m=0.0, deadline_s=0.1)
    rows = [{**base, "harq_max_rounds": r, "cell_id": str(r)} for r in (0, 1, 2)]
    header = results_table_text(rows_to_table(rows)).splitlines()[0].split()
    assert "harq_max_rounds" in header and "pose_noise_m" not in header
    noisy = [{**rows[0], "pose_noise_m": m, "cell_id": str(m)} for m in (0.0, 0.5)]
    header = results_table_text(rows_to_table(noisy)).splitlines()[0].split()
    assert "pose_noise_m" in header and "harq_max_rounds" not in header


def test_arq_rounds_set_in_channel_options_are_the_rounds_column():
    """``channel_options.<erasure>.arq_max_rounds`` alone makes the channel resend: the cells'
    ``harq_max_rounds`` (the retransmission rounds the ledger's ``retransmission_rounds`` can
    reach) is the rounds of the channel each group really builds, as for rounds set in
    ``codec_options`` — until 2026-12 it read 0 while the ledger held rows of 2 rounds. Set on
    the axis too, or beside HARQ rounds of the codec (refused on air), it is an error."""
    from v2x.channels import build_channel

    options = {"erasure_iid": {"arq_max_rounds": 2}}
    cfg = {**BASE, "channel_options": options}
    cfg["grid"] = {**BASE["grid"], "fusions": ["none", "max", "where2comm"]}
    plan = plan_sweep(cfg)
    for g in plan.groups:
        if g.codec == "n/a":
            continue
        channel = build_channel(g.channel, **g.channel_kwargs(options))
        harq = int(g.codec_kwargs.get("harq_max_rounds", 0))
        assert g.harq_max_rounds == max(harq, getattr(channel, "arq_max_rounds", 0)), g
    rounds = {(g.codec, g.harq_max_rounds) for g in plan.groups if g.channel == "erasure_iid"}
    assert rounds == {("deepjscc", 2), ("digital", 2)}
    with pytest.raises(ValueError, match="arq_max_rounds"):
        plan_sweep({**cfg, "grid": {**cfg["grid"], "harq_max_rounds": [0, 1]}})
    digital = {**BASE["codec_options"], "digital": {"harq_max_rounds": 1}}
    with pytest.raises(ValueError, match="arq_max_rounds"):
        plan_sweep({**cfg, "codec_options": digital})
