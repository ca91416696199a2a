"""Accounting matches what happened on the air, for every channel × codec of the registries.

The oracle is independent of the ledger: the cells the fusion module was actually handed (a
recording fusion, with collaborators at the ego's pose so that warping moves nothing) and, for
packet-erasure channels, the packets the channel itself reports lost.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import v2x.conf
from tests.core.test_sweep import tiny_model
from v2x.channels import CHANNELS, build_channel
from v2x.channels.erasure import ErasureChannel, Packetizer
from v2x.channels.link import LinkState
from v2x.channels.packets import HEADER_BYTES, MTU_BYTES, PACKET_FORMAT, packets_hit
from v2x.datasets.frame import AgentObservation, CoopFrame, collate_frames
from v2x.ledger import ledger_table, summarize
from v2x.network import NetworkConfig, build_network_batch
from v2x.perception.bev import BEVGrid
from v2x.perception.detector import CoopDetector, DetectorConfig
from v2x.perception.fusion_basic import MaxFusion
from v2x.perception.fusion_where2comm import Where2commFusion
from v2x.pipeline import CooperativePipeline
from v2x.scheduling import BudgetConfig, schedule
from v2x.semcom import CODECS, _load_all
from v2x.semcom.base import packets_for_bits, reception

_load_all()

GRID = BEVGrid(x_range_m=(-12.8, 12.8), y_range_m=(-12.8, 12.8), resolution_m=0.4)
C = 8
HW = 32  # stride-2 map of the 64 x 64 grid
#: Settings that lose data, applied where a channel or codec has the knob.
LOSSY_CHANNEL = {"loss_prob": 0.3, "p_gb": 0.5}
LOW_SNR_DB, HIGH_SNR_DB = -5.0, 30.0

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class RecordingMax(MaxFusion):
    """Max fusion that keeps the validity mask it was given (``[N, A, 1, H, W]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.masks: list[torch.Tensor] = []

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        self.masks.append(valid.detach().clone())
        return super().forward(features, valid)


@pytest.fixture(scope="module")
def model() -> CoopDetector:
    torch.manual_seed(0)
    cfg = DetectorConfig(
        grid=GRID,
        pillar_channels=8,
        backbone_channels=(8, 16),
        backbone_layers=1,
        feature_channels=C,
        score_threshold=0.0,
        max_detections=20,
    )
    return CoopDetector(cfg).eval()


def _frame(seed: int, agents: int) -> CoopFrame:
    """``agents`` vehicles at one pose (the ego's), each with its own random points."""
    rng = np.random.default_rng(seed)
    obs = []
    for i in range(agents):
        n = int(rng.integers(200, 400))
        pts = np.stack(
            [
                rng.uniform(-11, 11, n),
                rng.uniform(-11, 11, n),
                rng.uniform(-1.7, 0.3, n),
                rng.uniform(0, 1, n),
            ],
            axis=1,
        ).astype(np.float32)
        pose = np.eye(4)
        pose[2, 3] = 1.8
        obs.append(AgentObservation(f"veh_{i}", "vehicle", pose, pts))
    boxes = np.array([[4.0, 2.0, 0.8, 4.5, 1.9, 1.6, 0.3]])
    return CoopFrame(f"f{seed}", obs, boxes, np.array([0]), np.array([1]))


@pytest.fixture(scope="module")
def frames() -> list[CoopFrame]:
    return [_frame(1, 3), _frame(2, 2)]  # 2 + 1 collaborators; slot 2 of frame 1 is padding


def _accepts(factory, name: str) -> bool:
    target = factory.__init__ if inspect.isclass(factory) else factory
    params = inspect.signature(target).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _codec(name: str):
    """A registered codec for ``C``-channel maps, with a DeepJSCC SNR gate that closes at the
    low SNR (so that analog codecs also have something to lose)."""
    factory = CODECS.get(name)
    kwargs: dict = {}
    params = inspect.signature(factory.__init__).parameters
    if "in_channels" in params:
        kwargs.update(in_channels=C, hidden=16)
    if "inner_kwargs" in params:
        kwargs["inner_kwargs"] = {"in_channels": C, "hidden": 16}
    codec = CODECS.build(name, **kwargs)
    for part in (codec, getattr(codec, "inner", None)):
        if hasattr(part, "set_gate"):
            part.set_gate({float(r): 0.0 for r in part.gate_ratios})
    return codec


def _channel(name: str):
    factory = CHANNELS.get(name)
    params = inspect.signature(factory).parameters
    return build_channel(name, **{k: v for k, v in LOSSY_CHANNEL.items() if k in params})


def _spread(frames: list[CoopFrame]) -> list[CoopFrame]:
    """The frames with agent ``i`` moved ``10·i`` m along x (the ledger's geometry columns need
    distinct antennas; the pipeline runs on the co-located originals)."""
    out = []
    for f in frames:
        agents = []
        for i, o in enumerate(f.agents):
            pose = o.pose.copy()
            pose[0, 3] += 10.0 * i
            agents.append(dataclasses.replace(o, pose=pose))
        out.append(dataclasses.replace(f, agents=agents))
    return out


def _run(model, frames, codec, channel, snr_db: float):
    """One condition end to end → (ledger rows, cell masks the fusion got, batch)."""
    batch = collate_frames(frames)
    fusion = RecordingMax()
    pipe = CooperativePipeline(model, fusion, codec, channel).eval()
    torch.manual_seed(7)
    out = pipe.run(batch, torch.tensor([snr_db]))
    cost = out.cost
    budget = BudgetConfig(bandwidth_hz=1e15, deadline_s=1.0)  # everything is on time
    delivery = schedule(budget, cost.sent, cost.channel_uses, cost.packets, cost.snr_db)
    net = build_network_batch(_spread(frames), NetworkConfig(los_mode="los"))
    table = ledger_table(["c"], cost, delivery, net, batch.agent_mask, "ch", "co", "max", 1.0)
    assert len(fusion.masks) == 1  # one condition: one fusion call of all B frames
    return table, fusion.masks[0], batch


@pytest.mark.parametrize(
    ("channel", "codec"), list(itertools.product(CHANNELS.names(), CODECS.names()))
)
def test_delivered_fraction_is_what_the_fusion_got(model, frames, channel, codec):
    """For every channel × codec, at a low and a high SNR: the ledger's ``cells_used`` per link
    and the results' ``delivered_fraction`` equal the collaborator cells the fusion was handed;
    packet counts are consistent (lost = erased + failed CRC ≤ sent; no erasure without an
    erasing channel)."""
    co, ch = _codec(codec), _channel(channel)
    for snr in (LOW_SNR_DB, HIGH_SNR_DB):
        table, valid, batch = _run(model, frames, co, ch, snr)
        rows = table.to_pylist()
        present = batch.agent_mask.clone()
        present[:, 0] = False
        # the oracle: cells fusion got from each present collaborator (the warp is the identity)
        fused = valid[:, :, 0].flatten(2).sum(-1).double()  # [B, A]
        assert len(rows) == int(present.sum())
        for r in rows:
            bi = [f.frame_id for f in frames].index(r["frame_id"])
            ai = [o.agent_id for o in frames[bi].agents].index(r["tx_agent"])
            assert r["cells_sent"] == HW * HW, (channel, codec, snr)  # whole maps, no selection
            assert r["cells_used"] == fused[bi, ai].item(), (channel, codec, snr, r["tx_agent"])
            assert r["delivered"] == (r["cells_used"] > 0)
            assert r["packets_erased"] >= 0 and r["packets_crc_failed"] >= 0
            assert r["packets_lost"] == r["packets_erased"] + r["packets_crc_failed"]
            assert r["packets_lost"] <= r["packets_sent"]
            assert r["retransmissions"] == 0
            if not channel.startswith("erasure") or not co.uses_channel:
                assert r["packets_erased"] == 0, (channel, codec, snr)
        sums = summarize(table, num_frames=len(frames))
        expected = float(fused[present].sum()) / (HW * HW * int(present.sum()))
        assert sums["delivered_fraction"] == pytest.approx(expected, abs=1e-12)
        lost = sum(r["packets_lost"] for r in rows)
        sent = sum(r["packets_sent"] for r in rows)
        if sent:
            assert sums["packet_loss_rate"] == pytest.approx(lost / sent)
        else:  # no packet: no loss rate
            assert math.isnan(sums["packet_loss_rate"])


@pytest.mark.parametrize(
    ("channel", "codec", "snr_db"),
    [
        ("erasure_iid", "digital", HIGH_SNR_DB),  # packets lost on the air
        ("tdl", "digital", 20.0),  # link adaptation on the nominal SNR: code blocks fail their CRC
        ("tdl", "digital_fixed", 10.0),  # MCS 14 over TDL-A with LS estimation: below the cliff
        ("awgn", "deepjscc", LOW_SNR_DB),  # the SNR gate discards the payload
    ],
)
def test_lossy_settings_show_in_the_results(model, frames, channel, codec, snr_db):
    """The settings the registry test relies on for losses do lose data, and the results say
    so (before the ledger carried outcomes they read ``packet_loss_rate 0, delivered 1``)."""
    table, valid, batch = _run(model, frames, _codec(codec), _channel(channel), snr_db)
    sums = summarize(table, num_frames=len(frames))
    assert sums["delivered_fraction"] < 1.0
    if codec.startswith("digital"):
        assert sums["packet_loss_rate"] > 0.0
    present = batch.agent_mask.clone()
    present[:, 0] = False
    assert float(valid[:, :, 0].flatten(2).sum(-1)[present].sum()) < HW * HW * int(present.sum())


@pytest.mark.parametrize("snr_db", [LOW_SNR_DB, 8.0, HIGH_SNR_DB])
def test_the_ledger_records_the_mcs_each_link_was_sent_with(model, frames, snr_db):
    """The ledger's ``mcs`` column: the MCS a digital transmission went on air with (the fixed
    index; through the selective codec, its inner chain's), NaN for codecs without one."""
    fixed = _run(model, frames, CODECS.build("digital_fixed", mcs=9), _channel("awgn"), snr_db)[0]
    assert {r["mcs"] for r in fixed.to_pylist() if r["sent"]} == {9.0}
    assert all(math.isnan(r["mcs"]) for r in fixed.to_pylist() if not r["sent"])
    selective = CODECS.build("selective", inner="digital_fixed", inner_kwargs={"mcs": 5})
    rows = _run(model, frames, selective, _channel("awgn"), snr_db)[0].to_pylist()
    assert {r["mcs"] for r in rows if r["sent"]} == {5.0}
    rows = _run(model, frames, _codec("deepjscc"), _channel("awgn"), snr_db)[0].to_pylist()
    assert rows and all(math.isnan(r["mcs"]) for r in rows)


def test_reception_reports_the_transmissions_mcs():
    """``reception``'s ``mcs`` is the codec's ``meta["mcs"]`` per row (link adaptation's choice,
    the segment target's steps included), NaN where a codec has none."""
    codec = CODECS.build("digital", entropy_coder="zlib")
    x = torch.relu(torch.randn(3, 8, 16, 16, generator=torch.Generator().manual_seed(0)))
    link = LinkState.from_snr(torch.tensor([0.0, 10.0, 25.0]))
    torch.manual_seed(0)
    tx = codec.encode(x, link)
    y, state = build_channel("awgn")(tx.symbols, link.snr_db)
    rx = tx.received(y, state)
    codec.decode(rx, link)
    assert torch.equal(reception(rx).mcs, tx.meta["mcs"].double())
    analog = CODECS.build("analog")
    tx = analog.encode(x, link)
    y, state = build_channel("awgn")(tx.symbols, link.snr_db)
    rx = tx.received(y, state)
    analog.decode(rx, link)
    assert bool(reception(rx).mcs.isnan().all())


class RecordingWhere2comm(Where2commFusion):
    """Where2comm fusion that keeps the validity mask it was given."""

    def __init__(self, max_fraction: float) -> None:
        super().__init__(max_fraction)
        self.masks: list[torch.Tensor] = []

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        self.masks.append(valid.detach().clone())
        return super().forward(features, valid)


@pytest.mark.parametrize("codec", ["digital", "deepjscc", "identity"])
def test_where2comm_counts_only_the_selected_cells(model, frames, codec):
    """With Where2comm-style selection a link sends ``kept`` cells; what the fusion got of them
    is the ledger's ``cells_used`` (lost on the air, or discarded by the gate at the low SNR)."""
    fraction = 0.25
    kept = math.floor(fraction * HW * HW + 0.5)
    batch = collate_frames(frames)
    net = build_network_batch(_spread(frames), NetworkConfig(los_mode="los"))
    for snr in (LOW_SNR_DB, HIGH_SNR_DB):
        fusion = RecordingWhere2comm(fraction)
        pipe = CooperativePipeline(model, fusion, _codec(codec), _channel("erasure_iid")).eval()
        torch.manual_seed(11)
        cost = pipe.run(batch, torch.tensor([snr])).cost
        delivery = schedule(
            BudgetConfig(bandwidth_hz=1e15), cost.sent, cost.channel_uses, cost.packets, cost.snr_db
        )
        table = ledger_table(["c"], cost, delivery, net, batch.agent_mask, "e", codec, "w", 1.0)
        fused = fusion.masks[0][:, :, 0].flatten(2).sum(-1)
        for r in table.to_pylist():
            bi = [f.frame_id for f in frames].index(r["frame_id"])
            ai = [o.agent_id for o in frames[bi].agents].index(r["tx_agent"])
            assert r["cells_sent"] == kept
            assert r["cells_used"] == fused[bi, ai].item(), (codec, snr)
            if codec == "identity":  # an ideal link: nothing is lost
                assert r["cells_used"] == kept and r["packets_lost"] == 0
        if codec == "deepjscc" and snr == LOW_SNR_DB:  # gate closed: nothing fused
            assert summarize(table, len(frames))["delivered_fraction"] == 0.0


def test_cells_a_budget_leaves_unsent_are_not_lost(model, frames):
    """The digital chain under a channel-use budget sends only some rows of a map: those are
    ``cells_sent``; over a clean link all of them arrive (delivered fraction 1), and the fusion
    got exactly them."""
    codec = CODECS.build("digital", max_channel_uses=1500)
    table, valid, batch = _run(model, frames, codec, build_channel("awgn"), HIGH_SNR_DB)
    present = batch.agent_mask.clone()
    present[:, 0] = False
    fused = valid[:, :, 0].flatten(2).sum(-1)[present]
    rows = table.to_pylist()
    assert all(0 < r["cells_sent"] < HW * HW for r in rows)
    assert sorted(r["cells_used"] for r in rows) == sorted(fused.tolist())
    assert all(r["cells_used"] == r["cells_sent"] and r["packets_lost"] == 0 for r in rows)
    assert summarize(table, len(frames))["delivered_fraction"] == 1.0


# ------------------------------------------------------------------ one packet model


def test_one_header_model_for_codecs_and_erasure_channels():
    """Codecs and erasure channels count the same 40-byte header in the same 1500-byte MTU."""
    assert (
        (MTU_BYTES, HEADER_BYTES)
        == (1500, 40)
        == (PACKET_FORMAT.mtu_bytes, PACKET_FORMAT.header_bytes)
    )
    assert (Packetizer().mtu_bytes, Packetizer().header_bytes) == (MTU_BYTES, HEADER_BYTES)
    for name in ("erasure", "erasure_iid", "erasure_ge", "erasure_bler"):
        p = build_channel(name).packetizer
        assert (p.mtu_bytes, p.header_bytes) == (MTU_BYTES, HEADER_BYTES), name
    for name in CODECS.names():
        params = inspect.signature(CODECS.get(name).__init__).parameters
        for key in ("header_bytes", "packet_header_bytes"):
            if key in params:
                assert params[key].default == HEADER_BYTES, (name, key)
        if "mtu_bytes" in params:
            assert params["mtu_bytes"].default == MTU_BYTES, name
    conf = Path(v2x.conf.__file__).parent
    for path in sorted((conf / "channel").glob("*.yaml")) + sorted((conf / "codec").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        for key in ("header_bytes", "packet_header_bytes"):
            assert cfg.get(key, HEADER_BYTES) == HEADER_BYTES, (path.name, key)
        assert cfg.get("mtu_bytes", MTU_BYTES) == MTU_BYTES, path.name
    bits = torch.tensor([0.0, 1.0, 1460 * 8.0, 1460 * 8.0 + 1])
    assert packets_for_bits(bits).tolist() == [0.0, 1.0, 1.0, 2.0]


@pytest.mark.parametrize("codec", CODECS.names())
@pytest.mark.parametrize("loss_prob", [0.0, 0.4, 1.0])
def test_erasure_channel_loses_the_codecs_packets(codec, loss_prob):
    """Through an erasure channel, the receiver's count of erased packets equals the packets
    the channel reports lost among those the codec counted; with every packet lost it is the
    codec's packet count (the selective codec's control packets travel error-free)."""
    co = _codec(codec)
    x = torch.randn(3, C, 16, 16)
    snr = torch.full((3,), 20.0)
    link = LinkState.from_snr(snr)
    torch.manual_seed(3)
    tx = co.encode(x, link)
    if tx.symbols is None or not co.uses_channel:  # an ideal link: nothing to erase
        assert reception(tx).packets_erased.tolist() == [0.0] * 3
        return
    ch = ErasureChannel(inner="awgn", model="iid", loss_prob=loss_prob)
    y, state = ch(tx.symbols, snr, symbols_per_packet=tx.symbols_per_packet)
    rx = tx.received(y, state)
    co.decode(rx, link)
    got = reception(rx)
    inner = tx.meta["inner"].cost.packets if "inner" in tx.meta else tx.cost.packets
    lost = state.extra["packet_lost"]
    truth = [float(lost[i, : int(inner[i])].sum()) for i in range(3)]
    assert got.packets_erased.tolist() == truth
    if loss_prob == 1.0:
        assert got.packets_erased.tolist() == inner.tolist()
    if loss_prob == 0.0:
        assert got.packets_erased.sum() == 0
    # the channel cut exactly the codec's packets: the last symbol sent is in the last packet
    if tx.mask is not None:
        used = tx.mask.sum(1)
    else:
        used = tx.meta.get("uses", torch.full((3,), tx.symbols.shape[1])).to(torch.float64)
    last = torch.floor((used.double() - 1) / tx.symbols_per_packet) + 1
    assert last.tolist() == inner.tolist()


def test_packets_hit_counts_only_the_codecs_packets():
    """``packets_hit``: packets holding a masked use, by the ``symbols_per_packet`` layout."""
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, [0, 1, 7]] = True  # packets 0 and 2 of 4-use packets
    mask[1, 9] = True  # use 9 of row 1 is padding beyond its 2 packets of 2.5 uses
    got = packets_hit(mask, torch.tensor([4.0, 2.5]), torch.tensor([3.0, 2.0]))
    assert got.tolist() == [2.0, 0.0]
    assert math.isclose(float(packets_hit(None, None, torch.tensor([3.0]))), 0.0)


def test_packets_hit_matches_a_per_use_count_over_random_layouts():
    """``packets_hit`` against a loop over every use of every row: use ``j`` travels in packet
    ``floor(j / symbols_per_packet)`` (the module's layout); a packet ``< packets`` that holds a
    masked use counts once. Fractional and whole packet sizes, sparse and dense masks, rows whose
    uses run past their packets and rows with nothing masked."""
    g = torch.Generator().manual_seed(3)
    for trial in range(30):
        b, n = 1 + trial % 5, int(torch.randint(1, 400, (1,), generator=g))
        spp = torch.rand(b, generator=g, dtype=torch.float64) * 40 + 0.5
        if trial % 3 == 0:
            spp = spp.floor().clamp_min(1.0)
        density = [0.0, 0.002, 0.05, 0.5, 1.0][trial % 5]
        mask = torch.rand(b, n, generator=g) < density
        packets = torch.randint(0, 20, (b,), generator=g).double()
        want = []
        for r in range(b):
            hit = {math.floor(j / float(spp[r])) for j in range(n) if mask[r, j]}
            want.append(float(sum(1 for p in hit if p < packets[r])))
        assert packets_hit(mask, spp, packets).tolist() == want, trial


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_packets_hit_on_cuda_in_deterministic_mode_counts_as_on_the_cpu():
    """``packets_hit`` on CUDA with the sweep's deterministic algorithms on (its scan and
    gathers have deterministic kernels): the CPU's counts, for rows of 2 M uses."""
    g = torch.Generator().manual_seed(9)
    mask = torch.rand(6, 2_000_000, generator=g) < 0.001
    mask[2, 5000:900_000] = True
    spp = torch.tensor([4380.0, 1460.5, 11680 / 6, 0.75, 3e6, 97.3], dtype=torch.float64)
    packets = torch.tensor([1e9, 10.0, 400.0, 1e9, 1.0, 0.0], dtype=torch.float64)
    want = packets_hit(mask, spp, packets)
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        got = packets_hit(mask.cuda(), spp.cuda(), packets.cuda())
    finally:
        torch.use_deterministic_algorithms(was)
    assert got.cpu().tolist() == want.tolist()


def test_packet_starts_are_where_packet_index_steps():
    """``packet_starts``: each packet's first use, found per packet from ``ceil(p · spp)``, is
    the first use ``packet_index`` puts in that packet or a later one (its own float64
    division), for sizes that round: thirds, payload bits over bits per symbol, near-integers,
    sizes below one use, rows up to 300,000 uses."""
    from v2x.channels.packets import packet_index, packet_starts

    g = torch.Generator().manual_seed(5)
    sizes = [
        torch.tensor([1 / 3, 2 / 3, 0.1], dtype=torch.float64) * 997,
        11680.0 / torch.arange(1, 61, dtype=torch.float64),
        torch.tensor([4380.000000001, 4379.999999999, 0.07], dtype=torch.float64),
        torch.rand(8, generator=g, dtype=torch.float64) * 5000 + 0.01,
    ]
    for spp in sizes:
        for n in (1, 7, 4381, 300_000):
            idx = packet_index(n, spp)
            num = int(idx.max()) + 1
            p = torch.arange(num + 1).expand(spp.numel(), -1).contiguous()
            want = torch.searchsorted(idx, p, side="left")  # first use with index >= p
            assert torch.equal(packet_starts(n, spp), want), (n, spp.tolist())


def test_sweep_results_loss_and_delivery_come_from_the_ledger_rows(tmp_path):
    """The issue's reproduction at sweep level: a digital payload over an i.i.d. erasure channel
    with loss 0.3 used to read ``packet_loss_rate 0, delivered_fraction 1``. Now the results'
    columns are the sums of the cell's ledger rows, and they show the loss."""
    from v2x.results import read_results
    from v2x.sweep import run_sweep

    lidar = {"columns": 128, "max_range_m": 40.0}
    cfg = {
        "checkpoint": "untrained",
        "model": tiny_model(C),
        "data": {
            "num_frames": 2,
            "frames_per_sequence": 2,
            "seed": 7,
            "cache_dir": str(tmp_path / "frames"),
            "synthetic": {
                "vehicle_lidar": {"preset": "vlp16", **lidar},
                "rsu_lidar": {"preset": "rsu32", **lidar},
                "uav_lidar": {"preset": "uav_down", "beams": 8, **lidar},
            },
        },
        "batch_size": 2,
        "grid": {
            "channels": ["erasure_iid"],
            "snr_db": [20.0],
            "codecs": ["digital"],
            "fusions": ["max"],
        },
        "channel_options": {"erasure_iid": {"loss_prob": 0.3}},
        "output_dir": str(tmp_path / "out"),
        "quiet": True,
        "table": False,
        "plots": False,
    }
    path = run_sweep(cfg)
    results = read_results([path]).to_pylist()
    ledger = read_results([path], ledger=True).to_pylist()
    assert len(results) == 1
    cell = results[0]
    rows = [r for r in ledger if r["cell_id"] == cell["cell_id"] and r["sent"]]
    assert rows
    erased = sum(r["packets_erased"] for r in rows)
    sent = sum(r["packets_sent"] for r in rows)
    assert erased > 0 and all(r["packets_lost"] >= r["packets_erased"] for r in rows)
    assert cell["packet_loss_rate"] == pytest.approx(sum(r["packets_lost"] for r in rows) / sent)
    assert cell["packet_loss_rate"] > 0
    used, cells = sum(r["cells_used"] for r in rows), sum(r["cells_sent"] for r in rows)
    assert cell["delivered_fraction"] == pytest.approx(used / cells)
    assert cell["delivered_fraction"] < 1.0
