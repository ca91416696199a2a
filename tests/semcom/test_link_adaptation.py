"""Link adaptation and the analog gate on the SINR the receiver really has (issue 13):
v2x.semcom.link_adaptation, the digital codec over TDL with LS estimation, DeepJSCC's gate over
OFDM, and the project's BLER table against Sionna SYS's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.channels import build_channel
from v2x.channels.link import LinkState
from v2x.semcom import build_codec
from v2x.semcom.bler_table import load_bler_table
from v2x.semcom.link_adaptation import expected_bler, select_mcs_from_sinr
from v2x.semcom.mcs import MCS_TABLE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _digital_over_tdl(
    decoder: str, snr_db: float, feedback: bool, shape=(2, 8, 24, 24), target_unit="block"
):
    """Send random maps through the digital codec over TDL-A (LS estimation, 30 m/s); link
    adaptation bounds the code-block error rate unless ``target_unit`` says otherwise."""
    from sionna.phy import config

    torch.manual_seed(0)
    config.seed = 0
    ch = build_channel("tdl")
    codec = build_codec("digital", decoder=decoder, entropy_coder="zlib", target_unit=target_unit)
    x = torch.randn(*shape)
    snr = torch.full((shape[0],), snr_db)
    link = LinkState(snr_db=snr, sinr_feedback=ch.sinr_feedback(snr) if feedback else None)
    tx = codec.encode(x, link)
    y, state = ch(tx.symbols, snr)
    rx = tx.received(y, state)
    ok = torch.cat([b[0] for b in codec.decode_blocks(rx)])
    return codec, link, tx, rx, ok


@pytest.mark.parametrize("snr_db", [20.0, 30.0])
def test_tdl_link_adaptation_picks_a_decodable_mcs_and_the_exact_decoder_delivers(snr_db):
    """The oracle is Sionna's LDPC decoder on the real symbols: with the reported SINR, the
    chosen MCS has expected BLER ≤ 10 % at the EESM effective SINR and ≥ 80 % of blocks pass
    their CRC (10 % expected; ~80 blocks); the nominal-SNR rule picks an MCS that fails."""
    codec, link, tx, rx, ok = _digital_over_tdl("exact", snr_db, feedback=True)
    mcs = tx.meta["mcs"]
    assert (mcs == mcs[0]).all()
    bler = expected_bler(link.sinr_feedback[:1], codec.table, codec.block_bits)[0]
    assert bler[int(mcs[0])] <= 0.1
    if int(mcs[0]) < len(MCS_TABLE) - 1:
        assert bler[int(mcs[0]) + 1 :].min() > 0.1  # the highest such MCS
    assert ok.numel() >= 40 and ok.float().mean() >= 0.8, (int(mcs[0]), ok.float().mean())
    out = codec.decode(rx, link)
    assert out.abs().sum() > 0
    # ... whereas the MCS chosen from the nominal SNR has a high BLER at the receiver's SINR
    nominal = int(codec.select_mcs(link.snr_db[:1], 1)[0])
    assert nominal > int(mcs[0]) and bler[nominal] > 0.3
    # and delivers next to nothing: cells arrive with the reported SINR and not without it.
    # (A segment of cells needs every one of its code blocks, so the delivered fraction is
    # below the block pass rate: 0.46 cells for 0.89 blocks at 20 dB with this draw.)
    _, nlink, _, nrx, _ = _digital_over_tdl("exact", snr_db, feedback=False)
    codec.decode(nrx, nlink)
    adaptive, fixed = (float(r.meta["delivered"].float().mean()) for r in (rx, nrx))
    assert adaptive >= 0.3 and adaptive >= fixed + 0.3, (adaptive, fixed)


@pytest.mark.parametrize("snr_db", [10.0, 20.0, 30.0])
def test_fast_decoder_fails_as_often_as_link_adaptation_planned(snr_db):
    codec, link, tx, _, ok = _digital_over_tdl("fast", snr_db, feedback=True, shape=(4, 8, 32, 32))
    assert ok.float().mean() >= 0.8
    _, _, _, _, ok_nominal = _digital_over_tdl("fast", snr_db, False, shape=(4, 8, 32, 32))
    assert ok_nominal.float().mean() < 0.6  # the problem the report fixes


def test_flat_feedback_gives_the_threshold_rule():
    """On a flat channel every RE has SINR = SNR: EESM is the SNR, and the BLER rule picks the
    threshold rule's MCS (up to one step where the two interpolations differ)."""
    table = load_bler_table(1024)
    codec = build_codec("digital", entropy_coder="zlib")
    snr = torch.arange(-5.75, 26.0, 0.5)  # off the table's 0.25 dB grid
    flat = torch.pow(10.0, snr / 10)[:, None].expand(-1, 2000)
    by_bler = select_mcs_from_sinr(flat, 1024, 0.1, table=table)
    by_threshold = codec.select_mcs(snr, snr.numel())
    assert (by_bler - by_threshold).abs().max() <= 1
    assert (by_bler == by_threshold).float().mean() >= 0.8
    assert torch.equal(by_bler, torch.cummax(by_bler, 0).values)  # monotone in the SNR
    # The path for block sizes without a table (mean EESM against thresholds): with the codec's
    # own thresholds it is the threshold rule exactly.
    by_eesm = select_mcs_from_sinr(
        flat, 1024, 0.1, thresholds_db=codec.link_adaptation.thresholds_db
    )
    assert torch.equal(by_eesm, by_threshold)
    no_table = build_codec(
        "digital", decoder="exact", block_bits=512, entropy_coder="zlib", target_unit="block"
    )
    assert no_table.table is None  # Shannon-gap thresholds
    assert torch.equal(no_table.select_mcs(snr, snr.numel(), flat), no_table.select_mcs(snr, 64))
    with pytest.raises(ValueError, match="sinr_feedback"):
        select_mcs_from_sinr(torch.ones(3), 1024, 0.1, table=table)
    with pytest.raises(ValueError, match=r"\[2, N\]"):
        codec.select_mcs(snr[:2], 2, torch.ones(3, 10))


# ---------------------------------------------------------------------------------------------
# The project's BLER table against Sionna SYS's (PHYAbstraction, shipped with sionna-no-rt)
# ---------------------------------------------------------------------------------------------

#: Largest |SNR at BLER 10 %, ours − Sionna's| over MCS 3–28, PDSCH MCS table 1, 1024-bit code
#: blocks: 0.75 dB (MCS 7) when measured; mean +0.31 dB (ours needs slightly more SNR).
MAX_DIFF_DB = 1.0
MEAN_DIFF_DB = (0.0, 0.6)


def _sionna_thresholds_db(category: int, cb_size: int) -> dict[int, float]:
    from sionna.sys import PHYAbstraction

    phy = PHYAbstraction(device="cpu")
    snr = torch.arange(-10.0, 30.0, 0.01, dtype=torch.float64)
    out = {}
    for m in MCS_TABLE:
        bler = phy.get_bler(m.index, 1, category, cb_size, torch.pow(10.0, snr / 10)).numpy()
        if np.isinf(bler).any():  # no table for this MCS (PDSCH table 1 starts at MCS 3)
            continue
        bad = np.nonzero(bler > 0.1)[0]
        out[m.index] = float(snr[bad[-1] + 1]) if bad.size else float(snr[0])
    return out


def test_bler_table_agrees_with_sionna_phy_abstraction():
    """Per MCS, the SNR at BLER 10 % in ``semcom/bler_table.json`` (1024-bit blocks, exact BP,
    AWGN) and in Sionna SYS's PDSCH MCS-table-1 curves (interpolated by ``PHYAbstraction`` to a
    1024-bit code block) differ by at most ``MAX_DIFF_DB``.

    Tolerance: Sionna's curves are sampled every 1.79 dB and spline-interpolated, and the two
    chains differ in rate matching (ours rate-matches each block to ``ceil(K/R/Qm)·Qm`` bits and
    repeats below rate 1/5; Sionna's follows the 38.212 transport-block rules), which moves a
    waterfall by a few tenths of a dB. 1 dB still catches every gross error (an Eb/N0-vs-Es/N0
    slip is ``10 log10(Qm R)`` = 2–7 dB, a one-row MCS shift 0.5–1.3 dB on average and always
    ≥ 1 dB for several MCS)."""
    ours = load_bler_table(1024).thresholds_db(0.1)
    theirs = _sionna_thresholds_db(category=1, cb_size=1024)
    assert sorted(theirs) == list(range(3, 29))
    diff = np.array([ours[m].item() - s for m, s in theirs.items()])
    assert np.abs(diff).max() <= MAX_DIFF_DB, dict(zip(theirs, diff.round(2)))
    assert MEAN_DIFF_DB[0] <= diff.mean() <= MEAN_DIFF_DB[1]
    # The check has teeth: the table read one MCS row off fails it.
    shifted = np.array([ours[m - 1].item() - s for m, s in theirs.items()])
    assert np.abs(shifted).max() > MAX_DIFF_DB


# ---------------------------------------------------------------------------------------------
# DeepJSCC's gate over OFDM
# ---------------------------------------------------------------------------------------------


def _gated_codec(threshold_db: float, in_channels: int = 8):
    from v2x.semcom.deepjscc import DeepJSCCCodec

    torch.manual_seed(0)
    codec = DeepJSCCCodec(
        in_channels=in_channels, hidden=16, downsample=2, min_ratio=1 / 64, max_ratio=1 / 4
    ).eval()
    codec.set_gate({float(r): threshold_db for r in codec.gate_ratios})
    codec.bandwidth_ratio = 1 / 4
    return codec


def test_gate_closes_over_tdl_at_0_db_and_is_unchanged_on_flat_channels():
    codec = _gated_codec(0.0)  # open on AWGN from 0 dB
    torch.manual_seed(1)
    x = torch.randn(6, 8, 32, 32)
    link = LinkState(snr_db=torch.zeros(6))
    for name, expect_open in (("awgn", True), ("rayleigh", True), ("tdl", False), ("cdl", False)):
        ch = build_channel(name)
        tx = codec.encode(x, link)
        y, state = ch(tx.symbols, link.snr_db)
        rx = tx.received(y, state)
        out = codec.decode(rx, link)
        delivered = rx.meta["delivered"].flatten(1).all(dim=1)
        assert bool((delivered == expect_open).all()), name
        if not expect_open:
            assert out.abs().max() == 0
            assert (codec.gate_snr_db_of(state, tx.meta["uses"]) < 0.0).all()
        else:  # flat channels: the gate reads the link SNR, exactly as before
            assert codec.gate_snr_db_of(state, tx.meta["uses"]) is None
    # Over TDL at 30 dB the gate stays open.
    ch = build_channel("tdl")
    link30 = LinkState(snr_db=torch.full((6,), 30.0))
    tx = codec.encode(x, link30)
    rx = tx.received(*ch(tx.symbols, link30.snr_db))
    codec.decode(rx, link30)
    assert rx.meta["delivered"].all()


def _pipeline_model():
    from v2x.perception.bev import BEVGrid
    from v2x.perception.detector import CoopDetector, DetectorConfig

    torch.manual_seed(0)
    grid = BEVGrid(x_range_m=(-12.8, 12.8), y_range_m=(-12.8, 12.8), resolution_m=0.4)
    cfg = DetectorConfig(
        grid=grid,
        pillar_channels=8,
        backbone_channels=(8, 16),
        backbone_layers=1,
        feature_channels=8,
        score_threshold=0.0,
        max_detections=20,
    )
    return CoopDetector(cfg).eval()


def _frames():
    from v2x.datasets.frame import AgentObservation, CoopFrame, collate_frames

    rng = np.random.default_rng(3)
    frames = []
    for f, placements in enumerate([[(0.0, 0.0), (5.0, -3.0), (-4.0, 6.0)], [(1.0, 2.0), (6, 1)]]):
        agents = []
        for i, (x, y) in enumerate(placements):
            n = int(rng.integers(200, 400))
            pts = np.stack(
                [
                    rng.uniform(-11, 11, n),
                    rng.uniform(-11, 11, n),
                    rng.uniform(-1.7, 0.3, n),
                    rng.uniform(0, 1, n),
                ],
                axis=1,
            )
            pose = np.eye(4)
            pose[:3, 3] = [x, y, 1.8]
            agents.append(AgentObservation(f"veh_{i}", "vehicle", pose, pts))
        boxes = np.array([[4.0, 2.0, 0.8, 4.5, 1.9, 1.6, 0.3]])
        frames.append(CoopFrame(f"f{f}", agents, boxes, np.array([0]), np.array([1])))
    return collate_frames(frames)


def test_deepjscc_over_tdl_at_0_db_fuses_exactly_the_ego_only_result():
    from v2x.perception.fusion import build_fusion
    from v2x.pipeline import CooperativePipeline

    model, batch = _pipeline_model(), _frames()
    codec = _gated_codec(0.0)
    snr = torch.tensor([0.0])
    ego = CooperativePipeline(model, build_fusion("none"), codec, build_channel("awgn")).run(
        batch, snr
    )
    torch.manual_seed(2)
    tdl = CooperativePipeline(model, build_fusion("max"), codec, build_channel("tdl")).run(
        batch, snr
    )
    awgn = CooperativePipeline(model, build_fusion("max"), codec, build_channel("awgn")).run(
        batch, snr
    )
    for name in ("valid", "boxes", "scores", "labels"):
        assert torch.equal(getattr(tdl.detections, name), getattr(ego.detections, name)), name
    # On AWGN at the same nominal SNR the gate is open and fusion changes the result.
    assert not torch.equal(awgn.detections.scores, ego.detections.scores)
    assert math.isfinite(float(tdl.cost.channel_uses.sum()))
