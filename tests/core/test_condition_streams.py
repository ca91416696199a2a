"""Seeded conditions in one pipeline call give each condition the numbers of its own call.

The oracle is the per-condition loop ``run_conditions`` used before (one ``pipe.run`` per
condition after ``seed_run(pipe, seeds[k])``): detections and every cost field bitwise equal.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.channels import build_channel
from v2x.condition_streams import send
from v2x.conditions import concat_runs
from v2x.datasets.frame import AgentObservation, CoopFrame, collate_frames
from v2x.execution import run_conditions, seed_run
from v2x.perception.bev import BEVGrid
from v2x.perception.detector import CoopDetector, DetectorConfig
from v2x.perception.fusion import build_fusion
from v2x.pipeline import CooperativePipeline
from v2x.semcom import build_codec

GRID = BEVGrid(x_range_m=(-12.8, 12.8), y_range_m=(-12.8, 12.8), resolution_m=0.4)
C = 8

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frame(seed: int, placements: list[tuple[float, float, float]]) -> CoopFrame:
    rng = np.random.default_rng(seed)
    agents = []
    for i, (x, y, yaw) in enumerate(placements):
        pose = np.eye(4)
        pose[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
        pose[:3, 3] = [x, y, 1.8]
        n = int(rng.integers(150, 400))
        pts = np.stack([rng.uniform(-11, 11, n), rng.uniform(-11, 11, n),
                        rng.uniform(-1.7, 0.3, n), rng.uniform(0, 1, n)], axis=1)  # fmt: skip
        agents.append(AgentObservation(f"veh_{i}", "vehicle", pose, pts))
    boxes = np.array([[4.0, 2.0, 0.8, 4.5, 1.9, 1.6, 0.3], [-5.0, -3.0, 0.8, 4.0, 1.8, 1.5, 1.2]])
    return CoopFrame(f"f{seed}", agents, boxes, np.array([0, 0]), np.array([1, 2]))


@pytest.fixture(scope="module")
def model() -> CoopDetector:
    torch.manual_seed(0)
    cfg = DetectorConfig(grid=GRID, pillar_channels=8, backbone_channels=(8, 16),
                         backbone_layers=1, feature_channels=C, score_threshold=0.0,
                         max_detections=20)  # fmt: skip
    det = CoopDetector(cfg)
    with torch.no_grad():
        for mod in det.modules():
            if isinstance(mod, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return det.eval()


@pytest.fixture(scope="module")
def batch():
    f0 = _frame(1, [(0.0, 0.0, 0.0), (5.0, -3.0, 0.7), (-4.0, 6.0, -2.0)])
    f1 = _frame(2, [(10.0, 5.0, 1.0), (13.0, 2.0, 2.5)])
    return collate_frames([f0, f1])


def _loop(pipe, batch, snr, seeds):
    """The oracle: one call per condition after seeding it."""
    runs = []
    for ki, seed in enumerate(seeds):
        seed_run(pipe, seed)
        runs.append(pipe.run(batch, snr[ki : ki + 1]))
    return concat_runs(runs)


def _assert_same(a, b, atol: float = 0.0) -> None:
    """Detections and the ledger's costs equal; with ``atol`` the float detections (boxes,
    scores) only to that rounding, everything counted and every flag still exactly."""
    for name in ("boxes", "scores", "labels", "valid"):
        x, y = getattr(a.detections, name), getattr(b.detections, name)
        assert x.shape == y.shape, name
        if atol and x.is_floating_point():
            torch.testing.assert_close(x, y, atol=atol, rtol=0.0, msg=lambda m, n=name: f"{n}: {m}")
        else:
            assert torch.equal(x, y), name
    for name in ("source_bits", "coded_bits", "channel_uses", "packets", "packets_erased",
                 "packets_crc_failed", "retransmissions", "cells_sent", "cells_used", "sent"):  # fmt: skip
        x, y = getattr(a.cost, name), getattr(b.cost, name)
        assert torch.equal(x, y), name
    # the MCS each link went on air with: NaN where no digital chain sent it
    torch.testing.assert_close(a.cost.mcs, b.cost.mcs, rtol=0, atol=0, equal_nan=True)


DIGITAL = {"max_channel_uses": 512, "decoder": "fast"}
CASES = [
    ("max", "analog", {}, "awgn", {}, (0.0, 0.0)),
    ("max", "analog", {}, "rayleigh", {}, (0.3, 0.02)),  # pose noise from each seed too
    ("max", "identity", {}, "awgn", {}, (0.0, 0.0)),
    ("max", "deepjscc", {"in_channels": C, "hidden": 8}, "awgn", {}, (0.0, 0.0)),
    ("attention", "deepjscc", {"in_channels": C, "hidden": 8}, "rician", {}, (0.0, 0.0)),
    ("where2comm", "analog", {}, "awgn", {}, (0.0, 0.0)),
    ("where2comm", "identity", {}, "awgn", {}, (0.0, 0.0)),  # identity's maps under a wrapper
    ("max", "analog", {}, "erasure", {"loss_prob": 0.3}, (0.0, 0.0)),
    ("max", "analog", {}, "erasure", {"loss_prob": 0.3, "arq_max_rounds": 1}, (0.0, 0.0)),
    ("max", "digital", DIGITAL, "awgn", {}, (0.0, 0.0)),  # the fast decoder's draws
    ("max", "digital", {**DIGITAL, "harq_max_rounds": 1}, "awgn", {}, (0.0, 0.0)),
]


@pytest.mark.parametrize(("fusion", "codec", "codec_kw", "channel", "channel_kw", "noise"), CASES)
def test_seeded_conditions_in_one_call_equal_one_call_each(
    model, batch, fusion, codec, codec_kw, channel, channel_kw, noise
):
    torch.manual_seed(3)
    pipe = CooperativePipeline(
        model, build_fusion(fusion), build_codec(codec, **codec_kw),
        build_channel(channel, **channel_kw), pose_noise_m=noise[0], pose_noise_yaw_rad=noise[1],
    ).eval()  # fmt: skip
    assert pipe.runs_seeded_conditions()
    snr = torch.tensor([-5.0, 3.0, 3.0, 20.0])  # a repeated SNR: its own seed, its own noise
    seeds = [11, 12, 13, 14]
    want = _loop(pipe, batch, snr, seeds)
    got = run_conditions(pipe, batch, snr, seeds)
    _assert_same(got, want)
    # per-link SNRs [K, B, A] too
    per_link = snr.view(4, 1, 1) + torch.linspace(-3, 3, 6).view(1, 2, 3)
    _assert_same(run_conditions(pipe, batch, per_link, seeds), _loop(pipe, batch, per_link, seeds))
    # not vacuous: other seeds give other numbers where noise reaches the detections
    if codec in ("analog", "deepjscc"):
        other = run_conditions(pipe, batch, snr, [21, 22, 23, 24])
        assert not torch.equal(other.detections.scores, got.detections.scores)


def test_send_blocks_equal_one_call_per_block():
    codec, channel = build_codec("analog"), build_channel("rayleigh")
    rows = torch.randn(6, 4, 8, 8)
    snr = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    both = send(codec, channel, rows, snr, seeds=[5, 6])
    for ki, seed in enumerate([5, 6]):
        torch.manual_seed(seed)
        one = send(codec, channel, rows[3 * ki : 3 * ki + 3], snr[3 * ki : 3 * ki + 3])
        assert torch.equal(both.decoded[3 * ki : 3 * ki + 3], one.decoded)
        assert torch.equal(both.cost.channel_uses[3 * ki : 3 * ki + 3], one.cost.channel_uses)
    with pytest.raises(ValueError, match="equal size"):
        send(codec, channel, rows[:5], snr[:5], seeds=[5, 6])


@pytest.mark.parametrize("codec_name", ["analog", "deepjscc"])
def test_send_joins_the_blocks_as_torch_cat_does(codec_name):
    """``send`` copies each block's decoded maps into one tensor as the block is decoded (not
    all K blocks held, then ``torch.cat``): the values and the memory layout ``torch.cat``
    gives (channels-last for DeepJSCC's maps, channels-first for the analog codec's on the
    CPU), and each block's maps are freed once copied."""
    import gc
    import weakref

    import v2x.condition_streams as condition_streams

    kw = {"in_channels": 4, "hidden": 8} if codec_name == "deepjscc" else {}
    torch.manual_seed(0)
    codec, channel = build_codec(codec_name, **kw).eval(), build_channel("awgn")
    maps = torch.randn(2, 4, 8, 8)
    rows = maps.unsqueeze(0).expand(3, *maps.shape)
    snr = torch.tensor([0.0, 0.0, 5.0, 5.0, 20.0, 20.0])
    alive, original = [], condition_streams._send_block

    def watched(*args):
        sent = original(*args)
        alive.append(weakref.ref(sent.decoded))
        return sent

    with torch.no_grad():
        condition_streams._send_block = watched
        try:
            both = send(codec, channel, rows, snr, seeds=[5, 6, 7])
        finally:
            condition_streams._send_block = original
        gc.collect()
        assert len(alive) == 3 and all(ref() is None for ref in alive)
        parts = []
        for ki, seed in enumerate([5, 6, 7]):
            torch.manual_seed(seed)
            parts.append(send(codec, channel, maps, snr[2 * ki : 2 * ki + 2]).decoded)
    joined = torch.cat(parts)
    assert torch.equal(both.decoded, joined) and both.decoded.stride() == joined.stride()
    assert parts[0].is_contiguous() != (codec_name == "deepjscc")


def test_send_shares_one_map_among_blocks_that_decode_to_it(monkeypatch):
    """A codec whose decoded maps do not depend on the condition (``identity``: the same tensor
    for every block) has them shared by the K blocks: ``[K, N / K, ...]`` expanded from that
    one tensor (no copy), the values of one call per block; the pipeline's grouping of equal
    conditions takes them as equal without reading them. A codec with maps of its own per
    block still gets them joined as ``torch.cat`` would (``[N, ...]``)."""
    from v2x.conditions import distinct_conditions

    codec, channel = build_codec("identity"), build_channel("awgn")
    maps = torch.randn(2, 4, 8, 8)
    rows = maps.unsqueeze(0).expand(3, *maps.shape)
    snr = torch.tensor([0.0, 0.0, 5.0, 5.0, 20.0, 20.0])
    both = send(codec, channel, rows, snr, seeds=[5, 6, 7])
    assert both.decoded.shape == (3, 2, 4, 8, 8) and both.decoded.stride(0) == 0
    for ki, seed in enumerate([5, 6, 7]):
        torch.manual_seed(seed)
        one = send(build_codec("identity"), channel, maps.clone(), snr[2 * ki : 2 * ki + 2])
        assert torch.equal(both.decoded[ki], one.decoded)
        assert torch.equal(both.cost.channel_uses[2 * ki : 2 * ki + 2], one.cost.channel_uses)
    reads, original = [], torch.equal
    monkeypatch.setattr(torch, "equal", lambda *a: reads.append(1) or original(*a))
    reps, inverse = distinct_conditions(both.decoded)
    assert reps == [0] and inverse.tolist() == [0, 0, 0] and not reads
    # equal values in separate tensors: still confirmed by reading them
    copies = both.decoded.clone()
    assert distinct_conditions(copies)[0] == [0] and len(reads) == 2
    copies[2, 0, 0, 0, 0] += 1.0
    assert distinct_conditions(copies)[0] == [0, 2]
    analog = send(build_codec("analog"), channel, rows, snr, seeds=[5, 6, 7])
    assert analog.decoded.shape == (6, 4, 8, 8)


def test_box_and_point_fusion_refuse_seeds(model, batch):
    late = CooperativePipeline(model, build_fusion("late"), build_codec("analog"),
                               build_channel("awgn"))  # fmt: skip
    assert not late.runs_seeded_conditions()
    with pytest.raises(ValueError, match="seeds"):
        late.run(batch, torch.tensor([0.0, 1.0]), seeds=[1, 2])
    pipe = CooperativePipeline(model, build_fusion("max"), build_codec("analog"),
                               build_channel("awgn"))  # fmt: skip
    with pytest.raises(ValueError, match="one seed per condition"):
        pipe.run(batch, torch.tensor([0.0, 1.0]), seeds=[1])


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("fusion", "codec", "codec_kw", "channel", "channel_kw", "noise"), CASES[:5]
)
def test_on_cuda_seeded_conditions_in_one_call_equal_one_call_each(
    model, batch, fusion, codec, codec_kw, channel, channel_kw, noise
):
    """The same oracle on a GPU. Batched decoder and head see ``K·B`` maps instead of ``B``,
    and cuDNN picks its convolution algorithm by shape: on the H200 (2026-12-01) the boxes of
    the batched call differed from one call each in the fourth decimal (analog and DeepJSCC;
    identity, whose conditions share one map, was bitwise equal). So on CUDA a cell's boxes and
    scores equal its own call's to float32 rounding (``atol`` 2e-3), and everything counted
    (labels, validity, bits, channel uses, packets, CRC failures) exactly; on the CPU (above)
    all of it is bitwise."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    device = torch.device("cuda")
    torch.manual_seed(3)
    pipe = CooperativePipeline(
        model.to(device), build_fusion(fusion), build_codec(codec, **codec_kw).to(device),
        build_channel(channel, **channel_kw), pose_noise_m=noise[0], pose_noise_yaw_rad=noise[1],
    ).eval()  # fmt: skip
    on_device = batch.to(device)
    snr = torch.tensor([-5.0, 3.0, 3.0, 20.0])
    seeds = [11, 12, 13, 14]
    try:
        _assert_same(
            run_conditions(pipe, on_device, snr, seeds),
            _loop(pipe, on_device, snr, seeds),
            atol=2e-3,
        )
    finally:
        model.to("cpu")


@pytest.mark.parametrize("fusion", ["max", "mean", "attention", "where2comm", "max_extrapolated"])
@pytest.mark.parametrize(("codec", "channel"), [("analog", "rayleigh"), ("deepjscc", "awgn")])
def test_ego_detections_equal_a_run_with_every_collaborator_masked(
    model, batch, fusion, codec, channel
):
    """``remove_late_payloads`` takes ``ego_detections`` for a condition with nothing left on
    air: the same detections as the full pipeline run on that batch (every row sent through
    the codec and channel, then dropped by fusion), pose noise included."""
    import dataclasses

    kwargs = {"in_channels": C} if codec == "deepjscc" else {}
    torch.manual_seed(3)
    pipe = CooperativePipeline(
        model, build_fusion(fusion), build_codec(codec, **kwargs), build_channel(channel),
        pose_noise_m=0.3, pose_noise_yaw_rad=0.02,
    ).eval()  # fmt: skip
    mask = batch.agent_mask.clone()
    mask[:, 1:] = False
    alone = dataclasses.replace(batch, agent_mask=mask)
    seed_run(pipe, 11)
    full = pipe.run(alone, torch.tensor([5.0])).detections
    short = pipe.ego_detections(alone)
    for name in ("boxes", "scores", "labels", "valid"):
        assert torch.equal(getattr(short, name), getattr(full, name)), name
    assert bool(short.valid.any())  # the untrained detector keeps some boxes: not vacuous


def test_fusions_share_an_ego_alone_key_only_when_their_maps_agree():
    from v2x.perception.fusion_base import OWN_MAP_KEY
    from v2x.perception.fusion_basic import MaxFusion, MeanFusion

    assert build_fusion("max").ego_alone_key() == build_fusion("max").ego_alone_key()
    # fusions whose ego-alone map is the ego's own (none, max, max_extrapolated at any
    # margin: its forward is max's) share one key; mean and attention each their own
    own = [build_fusion("none"), build_fusion("max")]
    own += [build_fusion("max_extrapolated", margin_m=m) for m in (0.5, 1.0)]
    assert {f.ego_alone_key() for f in own} == {OWN_MAP_KEY}
    keys = [build_fusion(n).ego_alone_key() for n in ("mean", "attention")]
    assert None not in keys and len(set(keys)) == 2 and OWN_MAP_KEY not in keys

    class Tempered(MeanFusion):  # a plain setting is part of an undeclared fusion's key
        def __init__(self, t: float) -> None:
            super().__init__()
            self.t = t

    assert Tempered(1.0).ego_alone_key() != Tempered(2.0).ego_alone_key()

    class Scaled(MeanFusion):  # state the key cannot see: never shared
        def __init__(self) -> None:
            super().__init__()
            self.gain = torch.nn.Parameter(torch.ones(1))

    class Tabled(MeanFusion):
        def __init__(self) -> None:
            super().__init__()
            self.table = [1.0, 2.0]

    assert Scaled().ego_alone_key() is None and Tabled().ego_alone_key() is None

    class Doubled(MaxFusion):  # a forward of its own: max's declaration is not inherited
        def forward(self, features, valid):
            return 2 * super().forward(features, valid)

    assert not Doubled.returns_own_map_alone and Doubled().ego_alone_key() != OWN_MAP_KEY

    class Gained(MaxFusion):  # max's forward, which reads no state: still the own map
        def __init__(self) -> None:
            super().__init__()
            self.gain = torch.nn.Parameter(torch.ones(1))

    assert Gained().ego_alone_key() == OWN_MAP_KEY


def test_a_sweeps_detector_computes_ego_alone_detections_once_per_batch(model, batch):
    """The ego-only group and the deadline's ego-alone re-runs of two feature groups take the
    ego-alone detections from the sweep's ``EncodeCache``: computed once per batch and fusion
    key, bitwise what each pipeline computes on its own, and recomputed for re-sensed scans."""
    import dataclasses

    from v2x.sweep_reuse import EncodeCache

    cache = EncodeCache(model, 1e9)
    heads = []
    head = model.head

    def counted_head(x):
        heads.append(x.shape[0])
        return head(x)

    cache.head = counted_head  # the pipelines reach the head through the cache
    mask = batch.agent_mask.clone()
    mask[:, 1:] = False
    alone = dataclasses.replace(batch, agent_mask=mask)
    pipes = {}
    for name, codec in (("max", "analog"), ("max", "identity"), ("mean", "analog")):
        plain = CooperativePipeline(model, build_fusion(name), build_codec(codec),
                                    build_channel("awgn")).eval()  # fmt: skip
        shared = CooperativePipeline(cache, build_fusion(name), build_codec(codec),
                                     build_channel("awgn")).eval()  # fmt: skip
        pipes[(name, codec)] = (plain, shared)
    cache.batch_index = 0
    for (name, codec), (plain, shared) in pipes.items():
        want = plain.ego_detections(alone)
        got = shared.ego_detections(alone)
        for field in ("boxes", "scores", "labels", "valid"):
            assert torch.equal(getattr(got, field), getattr(want, field)), (name, codec, field)
    assert len(heads) == 2  # max (both codecs) once, mean once
    # the ego-only group: the ego's own map like max, served from the cache
    none_plain = CooperativePipeline(model, build_fusion("none"), build_codec("analog"),
                                     build_channel("awgn")).eval()  # fmt: skip
    none_shared = CooperativePipeline(cache, build_fusion("none"), build_codec("analog"),
                                      build_channel("awgn")).eval()  # fmt: skip
    snr = torch.tensor([0.0, 10.0])
    for _ in range(2):
        got = none_shared.run(batch, snr).detections
        assert torch.equal(got.scores, none_plain.run(batch, snr).detections.scores)
    assert len(heads) == 2
    # re-sensed scans (other points) and another batch are computed afresh
    resensed = dataclasses.replace(alone, points=alone.points.clone())
    pipes[("max", "analog")][1].ego_detections(resensed)
    cache.batch_index = 1
    pipes[("max", "analog")][1].ego_detections(alone)
    assert len(heads) == 4


def test_send_reads_the_channel_checks_once_and_still_refuses_bad_input(monkeypatch):
    """With seeds, ``send`` runs its ``K`` blocks inside ``deferred_checks``: a non-finite SNR of
    one condition is still refused with the channel's message, after the blocks ran."""
    import v2x.channels.base as base

    codec, channel = build_codec("analog"), build_channel("awgn", validate=True)
    rows = torch.randn(6, 4, 8, 8)
    snr = torch.tensor([0.0, 1.0, 2.0, float("nan"), 4.0, 5.0])
    with pytest.raises(ValueError, match="'snr_db' must be finite"):
        send(codec, channel, rows, snr, seeds=[5, 6])
    reads = []
    real = base._raise_first_failed
    monkeypatch.setattr(
        base, "_raise_first_failed", lambda q, cause=None: (reads.append(len(q)), real(q, cause))
    )
    send(codec, channel, rows, snr.nan_to_num(3.0), seeds=[5, 6])
    assert reads == [4]  # 2 blocks x (finite SNRs, finite symbols), read once


@pytest.mark.parametrize("codec_name", ["analog", "deepjscc"])
def test_a_codec_computes_the_maps_snr_independent_part_once_per_send(monkeypatch, codec_name):
    """``send``'s K condition blocks are views of one tensor: the analog symbols and DeepJSCC's
    first convolution (``TensorMemo``) are computed once, the same numbers as a fresh codec per
    block (the oracle: ``test_send_blocks_equal_one_call_per_block``'s loop); after an in-place
    weight update the next call computes afresh."""
    from v2x.semcom.deepjscc_layers import JSCCEncoder
    from v2x.semcom.identity import AnalogCodec

    kw = {"in_channels": 4, "hidden": 8} if codec_name == "deepjscc" else {}
    torch.manual_seed(0)
    codec, channel = build_codec(codec_name, **kw).eval(), build_channel("awgn")
    fresh = {k: v.clone() for k, v in codec.state_dict().items()}
    counted = JSCCEncoder if codec_name == "deepjscc" else AnalogCodec
    name = "context_free" if codec_name == "deepjscc" else "_scaled_pairs"
    original, calls = getattr(counted, name), []

    def counting(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(
        counted, name, counting if codec_name == "deepjscc" else staticmethod(counting)
    )
    maps = torch.randn(2, 4, 8, 8)
    rows = maps.unsqueeze(0).expand(3, *maps.shape)
    snr = torch.tensor([0.0, 0.0, 5.0, 5.0, 20.0, 20.0])
    with torch.no_grad():
        both = send(codec, channel, rows, snr, seeds=[5, 6, 7])
        assert len(calls) == 1
        for ki, seed in enumerate([5, 6, 7]):
            alone = build_codec(codec_name, **kw).eval()
            alone.load_state_dict(fresh)
            torch.manual_seed(seed)
            one = send(alone, channel, maps.clone(), snr[2 * ki : 2 * ki + 2])
            assert torch.equal(both.decoded[2 * ki : 2 * ki + 2], one.decoded)
        if codec_name == "deepjscc":  # weights written in place: not the kept value
            codec.encoder.stages[0].conv.weight.mul_(0.5)
            again = send(codec, channel, rows, snr, seeds=[5, 6, 7])
            changed = build_codec(codec_name, **kw).eval()
            changed.load_state_dict(codec.state_dict())
            torch.manual_seed(5)
            one = send(changed, channel, maps.clone(), snr[:2])
            assert torch.equal(again.decoded[:2], one.decoded)
            assert not torch.equal(again.decoded[:2], both.decoded[:2])


def test_a_codec_that_decodes_into_the_joined_maps_is_offered_each_later_blocks_slice():
    """``send`` offers a codec with ``decodes_into`` each block's slice of the joined maps once
    it has them (``DECODE_INTO``; the first block's maps set their layout): a codec that writes
    there is not copied after, one that returns maps of its own is copied as before; the values
    are the plain codec's either way."""
    from v2x.semcom.base import decode_target
    from v2x.semcom.identity import AnalogCodec

    class IntoAnalog(AnalogCodec):
        decodes_into = True

        def __init__(self, write: bool) -> None:
            super().__init__()
            self.write, self.offered = write, []

        def decode(self, received, link):
            maps = super().decode(received, link)
            into = decode_target(received, tuple(maps.shape), maps.device, torch.contiguous_format)
            self.offered.append(None if into is None else into.data_ptr())
            if into is None or not self.write:
                return maps
            return into.copy_(maps)

    channel = build_channel("rayleigh")
    maps = torch.randn(2, 4, 8, 8)
    rows = maps.unsqueeze(0).expand(3, *maps.shape)
    snr = torch.tensor([0.0, 0.0, 5.0, 5.0, 20.0, 20.0])
    plain = send(AnalogCodec(), channel, rows, snr, seeds=[5, 6, 7])
    for write in (True, False):
        codec = IntoAnalog(write)
        sent = send(codec, channel, rows, snr, seeds=[5, 6, 7])
        assert torch.equal(sent.decoded, plain.decoded)
        row_bytes = sent.decoded[0].numel() * 4
        base = sent.decoded.data_ptr()
        assert codec.offered == [None, base + 2 * row_bytes, base + 4 * row_bytes]

    class KnownLayout(IntoAnalog):
        def decoded_layout(self, rows):
            return torch.float32, torch.contiguous_format

    # a codec that knows its maps' layout before the air is offered the first block's slice too
    for write in (True, False):
        codec = KnownLayout(write)
        sent = send(codec, channel, rows, snr, seeds=[5, 6, 7])
        assert torch.equal(sent.decoded, plain.decoded) and sent.decoded.is_contiguous()
        base = sent.decoded.data_ptr()
        assert codec.offered == [base, base + 2 * row_bytes, base + 4 * row_bytes]


@pytest.mark.gpu
@pytest.mark.parametrize("codec_name", ["analog", "deepjscc"])
def test_on_cuda_the_codecs_decode_into_the_joined_maps_with_the_same_bits(codec_name, monkeypatch):
    """On CUDA the analog receiver's and DeepJSCC's last pass write each later block's maps
    straight into its slice of the joined maps (no copy after): every block but the first is
    decoded into the slice it was offered (the analog codec's first too: it knows its maps'
    layout before the air, ``decoded_layout``), and the joined maps equal, bit for bit, those of
    the same send with the offer switched off (each block decoded apart, then copied), in the
    deterministic mode (outside it two cuDNN calls need not agree in the last bits). (The
    per-block path: on CUDA DeepJSCC's blocks are otherwise coded together, tested below.)"""
    import v2x.condition_streams as condition_streams
    from v2x.common import triton_available
    from v2x.semcom.base import DECODE_INTO

    if not torch.cuda.is_available() or not triton_available():
        pytest.skip("needs CUDA and triton")
    monkeypatch.setattr(condition_streams, "_jointly", lambda *args: False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    device = torch.device("cuda")
    kw = {"in_channels": 16, "hidden": 16, "downsample": 1} if codec_name == "deepjscc" else {}
    torch.manual_seed(0)
    codec = build_codec(codec_name, **kw).to(device).eval()
    channel = build_channel("awgn")
    maps = torch.randn(3, 16, 32, 32, device=device)
    rows = maps.unsqueeze(0).expand(4, *maps.shape)
    snr = torch.tensor([-5.0, 3.0, 10.0, 25.0], device=device).repeat_interleave(3)
    written, decode = [], type(codec).decode

    def watched(self, received, link):
        out = decode(self, received, link)
        written.append(out is received.meta.get(DECODE_INTO) and out is not None)
        return out

    monkeypatch.setattr(type(codec), "decode", watched)
    with torch.no_grad():
        into = send(codec, channel, rows, snr, seeds=[5, 6, 7, 8]).decoded
        assert written == [codec_name == "analog", True, True, True]
        monkeypatch.setattr(type(codec), "decodes_into", False)
        apart = send(codec, channel, rows, snr, seeds=[5, 6, 7, 8]).decoded
    assert torch.equal(into, apart) and into.stride() == apart.stride()


def _assert_exactly(got: torch.Tensor, expected: torch.Tensor, what: object) -> None:
    """Bit-for-bit equal (dtype, shape, values), NaN where the other is NaN."""
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True, msg=str(what))


@pytest.mark.parametrize(
    ("channel_name", "channel_kw"),
    [("awgn", {}), ("rayleigh", {}), ("erasure", {"loss_prob": 0.4, "arq_max_rounds": 1}),
     ("erasure_ge", {}), ("tdl", {})],  # (TDL: OFDM, per-RE SINR feedback and the gate's SINR)
)  # fmt: skip
def test_deepjscc_blocks_coded_together_equal_one_call_per_block(channel_name, channel_kw):
    """``_send_jointly`` (on CUDA, ``send``'s path for a codec with ``codes_blocks_jointly``):
    DeepJSCC's encoder and decoder run once over the ``K`` blocks, each block on air from its own
    seed. Against one ``send`` call per block: the symbols each block's channel drew, costs
    (ARQ's retransmissions included), receptions and delivered cells exactly, maps to float32
    rounding (a larger batch may sum the AF modules' pooling in another order), the gate's closed
    blocks exactly zero."""
    from v2x.condition_streams import _jointly, _send_jointly

    torch.manual_seed(0)
    codec = build_codec("deepjscc", in_channels=4, hidden=8, bandwidth_ratio=1 / 8).eval()
    codec.set_gate({r: 0.0 for r in codec.ratio_grid()})  # closed below 0 dB
    channel = build_channel(channel_name, **channel_kw)
    maps = torch.rand(3, 4, 16, 16)
    seeds = [5, 6, 7, 8]
    rows = maps.unsqueeze(0).expand(len(seeds), *maps.shape)
    snr = torch.tensor([-5.0, 2.0, 10.0, 20.0]).repeat_interleave(3)
    assert not _jointly(codec, rows, {})  # on the CPU: one call per block, bit for bit
    with torch.no_grad():
        joint = _send_jointly(codec, channel, rows, snr, seeds)
        ones = []
        for ki, seed in enumerate(seeds):
            torch.manual_seed(seed)
            ones.append(send(codec, channel, maps, snr[3 * ki : 3 * ki + 3]))
    closed = joint.cells.delivered.view(12, -1)[:, 0] == 0
    # the gate closed the -5 dB block (and, over TDL, whose SINR is below the nominal SNR, the
    # 2 dB one), never the 20 dB block; the closed maps are exactly zero
    assert bool(closed[:3].all()) and not bool(closed[-3:].any())
    assert torch.equal(joint.decoded[closed], torch.zeros_like(joint.decoded[closed]))
    torch.testing.assert_close(joint.decoded, torch.cat([o.decoded for o in ones]),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert bool(joint.decoded[3:].abs().sum() > 0)
    for kind in ("cost", "outcome", "cells"):
        for name, value in vars(getattr(joint, kind)).items():
            parts = [getattr(getattr(o, kind), name) for o in ones]
            if value is None:
                assert all(p is None for p in parts), (kind, name)
            else:  # exactly equal, NaN where NaN (the outcome's mcs without a digital chain)
                _assert_exactly(value, torch.cat(parts), (kind, name))
    if channel_kw.get("arq_max_rounds"):
        assert float(joint.outcome.retransmissions.sum()) > 0  # ARQ resent something


def test_deepjscc_blocks_coded_together_record_no_cells_when_the_gate_keeps_every_map():
    """When the gate keeps every map of every block, ``_send_jointly`` reports no delivered
    cells (``CellReport``'s convention: all of them), where one ``send`` per block marks every
    cell delivered; everything else as one call per block (costs and receptions exactly, maps
    to float32 rounding). One closed map and every block records its cells again."""
    from v2x.condition_streams import _send_jointly

    torch.manual_seed(0)
    codec = build_codec("deepjscc", in_channels=4, hidden=8, bandwidth_ratio=1 / 8).eval()
    codec.set_gate({r: 0.0 for r in codec.ratio_grid()})  # closed below 0 dB
    channel = build_channel("awgn")
    maps = torch.rand(3, 4, 16, 16)
    seeds = [5, 6, 7]
    rows = maps.unsqueeze(0).expand(len(seeds), *maps.shape)
    with torch.no_grad():
        for snrs, every in (([1.0, 10.0, 20.0], True), ([-1.0, 10.0, 20.0], False)):
            snr = torch.tensor(snrs).repeat_interleave(3)
            joint = _send_jointly(codec, channel, rows, snr, seeds)
            ones = []
            for ki, seed in enumerate(seeds):
                torch.manual_seed(seed)
                ones.append(send(codec, channel, maps, snr[3 * ki : 3 * ki + 3]))
            kept = torch.cat([o.cells.delivered for o in ones]).view(9, -1).all(1)
            assert bool(kept.all()) == every
            if every:
                assert joint.cells.delivered is None
            else:
                assert torch.equal(
                    joint.cells.delivered, torch.cat([o.cells.delivered for o in ones])
                )
            torch.testing.assert_close(joint.decoded, torch.cat([o.decoded for o in ones]),
                                       rtol=1e-5, atol=1e-6)  # fmt: skip
            for kind in ("cost", "outcome"):
                for name, value in vars(getattr(joint, kind)).items():
                    parts = [getattr(getattr(o, kind), name) for o in ones]
                    _assert_exactly(value, torch.cat(parts), (kind, name))


@pytest.fixture
def looked(monkeypatch) -> list:
    """One entry per call of the pipeline's look for conditions that could share their fusion
    (``_distinct_conditions``, which reads the decoded maps)."""
    import v2x.pipeline as pipeline_module

    calls: list = []
    distinct = pipeline_module._distinct_conditions

    def counting(*tensors):
        calls.append(1)
        return distinct(*tensors)

    monkeypatch.setattr(pipeline_module, "_distinct_conditions", counting)
    return calls


def _runs_declared_and_not(pipe, codec_class, batch, snr, looked, monkeypatch) -> dict:
    """``pipe``'s run of ``snr`` with ``codec_class.maps_differ_per_condition`` True (no look)
    and False (one look), checked to be the same; the runs by that flag."""
    runs = {}
    for differ in (True, False):
        monkeypatch.setattr(codec_class, "maps_differ_per_condition", differ)
        looked.clear()
        runs[differ] = pipe.run(batch, snr, seeds=[3, 4, 5])
        assert len(looked) == (0 if differ else 1)
    _assert_same(runs[True], runs[False])
    return runs


def test_the_pipeline_looks_for_shared_conditions_only_where_maps_may_be_equal(
    model, batch, monkeypatch, looked
):
    """A codec whose maps follow the channel's noise (``maps_differ_per_condition``: DeepJSCC),
    every map delivered: the pipeline does not read the decoded maps to find conditions that
    could share their fusion, and its detections and cost are those of the run that looked
    (and found every condition distinct). With a closed gate it looks again."""
    import v2x.condition_streams as condition_streams
    from v2x.semcom.deepjscc import DeepJSCCCodec

    monkeypatch.setattr(condition_streams, "_jointly", lambda *args: True)  # the CUDA path
    torch.manual_seed(0)
    codec = build_codec("deepjscc", in_channels=C, hidden=8, bandwidth_ratio=1 / 8)
    codec.set_gate({r: -20.0 for r in codec.ratio_grid()})
    pipe = CooperativePipeline(model, build_fusion("max"), codec, build_channel("awgn")).eval()
    snr = torch.tensor([0.0, 10.0, 20.0])
    _runs_declared_and_not(pipe, DeepJSCCCodec, batch, snr, looked, monkeypatch)
    monkeypatch.setattr(DeepJSCCCodec, "maps_differ_per_condition", True)
    looked.clear()
    pipe.run(batch, torch.tensor([-30.0, 10.0, 20.0]), seeds=[3, 4, 5])  # -30 dB: gate closed
    assert len(looked) == 1


@pytest.mark.parametrize(
    "channel", [("awgn", {}), ("erasure", {"loss_prob": 0.3}), ("erasure", {"loss_prob": 1.0})]
)
def test_analog_maps_are_not_read_for_shared_conditions(model, batch, monkeypatch, looked, channel):
    """The analog codec receives every value with the condition's own noise
    (``maps_differ_per_condition``): the pipeline does not read its decoded maps for conditions
    to share, and gives the detections and cost of the run that looked (every condition
    distinct) — over AWGN, and over a channel that erases packets, every one of them included
    (where the conditions' maps are all equal and the run that looks shares them)."""
    from v2x.semcom.identity import AnalogCodec

    assert AnalogCodec.maps_differ_per_condition
    name, options = channel
    pipe = CooperativePipeline(
        model, build_fusion("max"), build_codec("analog"), build_channel(name, **options)
    ).eval()
    snr = torch.tensor([0.0, 10.0, 20.0])
    _runs_declared_and_not(pipe, AnalogCodec, batch, snr, looked, monkeypatch)


def test_send_codes_deepjscc_blocks_together_only_on_cuda_without_harq_or_extra_rows():
    """``_jointly``: the codec must declare it, the blocks must be one expanded map set on CUDA
    and no per-row codec argument (Where2comm's importance) may be given; a codec that declares
    ``codes_blocks_jointly`` must define ``encode_blocks`` and ``decode_blocks``."""
    from v2x.condition_streams import _jointly
    from v2x.semcom.base import Codec

    deepjscc = build_codec("deepjscc", in_channels=4, hidden=8)
    maps = torch.rand(3, 4, 16, 16)
    rows = maps.unsqueeze(0).expand(2, *maps.shape)
    assert deepjscc.codes_blocks_jointly and not build_codec("analog").codes_blocks_jointly
    assert not _jointly(deepjscc, rows, {})  # CPU
    assert not _jointly(deepjscc, rows.contiguous(), {})
    with pytest.raises(TypeError, match="codes_blocks_jointly.*encode_blocks, decode_blocks"):

        class Claims(Codec):
            codes_blocks_jointly = True

    from v2x.semcom.deepjscc import DeepJSCCCodec

    with pytest.raises(TypeError, match="overrides decode but inherits codes_blocks_jointly"):

        class Quieter(DeepJSCCCodec):  # its decode would be skipped by decode_blocks
            def decode(self, received, link):
                return super().decode(received, link) * 0.5

    class Apart(DeepJSCCCodec):  # declared: one call per block again
        codes_blocks_jointly = False

        def decode(self, received, link):
            return super().decode(received, link)

    assert not Apart.codes_blocks_jointly


@pytest.mark.gpu
@pytest.mark.parametrize("channel_name", ["awgn", "rayleigh"])
def test_on_cuda_send_codes_deepjscc_blocks_together(channel_name, monkeypatch):
    """On CUDA ``send`` codes DeepJSCC's condition blocks together (one ``encode_blocks`` and
    one ``decode_blocks`` call per send): against the same send one call per block, costs,
    receptions and delivered cells exactly, maps to float32 rounding (the batched layers'
    cuDNN algorithms), in the deterministic mode."""
    import v2x.condition_streams as condition_streams

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    device = torch.device("cuda")
    torch.manual_seed(0)
    codec = build_codec("deepjscc", in_channels=16, hidden=16).to(device).eval()
    codec.set_gate({r: 0.0 for r in codec.ratio_grid()})
    channel = build_channel(channel_name)
    maps = torch.rand(3, 16, 32, 32, device=device)
    rows = maps.unsqueeze(0).expand(4, *maps.shape)
    snr = torch.tensor([-5.0, 3.0, 10.0, 25.0], device=device).repeat_interleave(3)
    calls = []
    encode_blocks = type(codec).encode_blocks
    monkeypatch.setattr(type(codec), "encode_blocks",
                        lambda self, *a: calls.append(1) or encode_blocks(self, *a))  # fmt: skip
    with torch.no_grad():
        joint = send(codec, channel, rows, snr, seeds=[5, 6, 7, 8])
        monkeypatch.setattr(condition_streams, "_jointly", lambda *args: False)
        apart = send(codec, channel, rows, snr, seeds=[5, 6, 7, 8])
    assert calls == [1]
    torch.testing.assert_close(joint.decoded, apart.decoded, rtol=1e-4, atol=1e-4)
    assert torch.equal(joint.decoded[:3], torch.zeros_like(joint.decoded[:3]))  # gate closed
    for kind in ("cost", "outcome", "cells"):
        for name, value in vars(getattr(joint, kind)).items():
            other = getattr(getattr(apart, kind), name)
            if value is None or other is None:
                assert value is None and other is None, (kind, name)
            else:
                _assert_exactly(value, other, (kind, name))


@pytest.mark.parametrize(
    ("fusion", "codec", "channel", "channel_kw"),
    [
        ("max", "analog", "rayleigh", {}),
        ("attention", "digital", "rayleigh", {}),
        ("max", "analog", "erasure_iid", {"loss_prob": 0.3, "arq_max_rounds": 2}),
        ("max", "digital_harq", "rayleigh", {}),
        ("late", "identity", "awgn", {}),
        ("early", "identity", "awgn", {}),
        ("semantic_map", "analog", "rayleigh", {}),
        ("object_features", "analog", "erasure_iid", {"loss_prob": 0.3}),
    ],
)
def test_a_rerun_without_late_payloads_fuses_what_the_ledger_records(
    model, batch, monkeypatch, fusion, codec, channel, channel_kw
):
    """A condition that lost a payload is re-run without it from the seed of its first run:
    the payloads left go through the very channel and pose-noise draws the ledger records.

    Oracles: a frame that lost nothing keeps, bit for bit, the detections of the run in which
    everything arrived (its re-run is the same computation); and on the frame that lost a
    payload, the links left are decoded to the same maps with the same erasures, CRC failures
    and retransmissions as in the first transmission, which the ledger keeps."""
    import v2x.pipeline as pipeline_module
    from v2x.execution import Arrival, evaluate_batch

    sent = []

    def recording_send(*args, **kwargs):
        out = send(*args, **kwargs)
        sent.append(out)
        return out

    monkeypatch.setattr(pipeline_module, "send", recording_send)
    coder = build_codec("digital", harq_max_rounds=2) if codec == "digital_harq" else None
    pipe = CooperativePipeline(
        model, build_fusion(fusion), coder or build_codec(codec), build_channel(channel, **channel_kw),
        pose_noise_m=0.3, pose_noise_yaw_rad=0.02,
    ).eval()  # fmt: skip
    snr = torch.tensor([0.0, 4.0])
    seeds = [21, 22]
    # late and early fusion: one joint call for all conditions (as the sweep runs them)
    joint = 5 if fusion in ("late", "early") else None
    kw = {"seeds": seeds, "joint_seed": joint, "score": False}
    full = evaluate_batch(pipe, batch, snr, None, (), **kw)
    lost = torch.zeros(2, *batch.agent_mask.shape, dtype=torch.bool)
    lost[:, 0, 1] = True  # frame 0's first collaborator misses the deadline in both conditions

    def deliver(cost):
        return Arrival(delivered=~lost.to(cost.sent.device))

    sent.clear()
    out = evaluate_batch(pipe, batch, snr, None, (), deliver=deliver, **kw)
    b = batch.batch_size
    for ki in range(2):
        rows = slice(ki * b + 1, ki * b + 2)  # frame 1: nothing lost
        for name in ("boxes", "scores", "labels", "valid"):
            assert torch.equal(
                getattr(out.detections, name)[rows], getattr(full.detections, name)[rows]
            ), (ki, name)
    assert torch.equal(out.cost.sent, full.cost.sent)
    if not sent:  # late and early fusion send no feature map
        return
    first, reruns = sent[0], sent[1:]
    assert len(reruns) == 2  # one per condition
    kept = batch.agent_mask[:, 1:].clone()
    kept[0, 0] = False  # the links left: frame 0's second collaborator, frame 1's collaborator
    kept = kept.reshape(-1)
    links = kept.numel()
    for ki, rerun in enumerate(reruns):
        mine = slice(ki * links, (ki + 1) * links)
        maps = [x.decoded.reshape(-1, *x.decoded.shape[-3:]) for x in (rerun, first)]
        assert torch.equal(maps[0][kept], maps[1][mine][kept]), ki
        for name in ("packets_erased", "packets_crc_failed", "retransmissions"):
            got = getattr(rerun.outcome, name).reshape(-1)[kept]
            assert torch.equal(got, getattr(first.outcome, name).reshape(-1)[mine][kept]), name
    if channel_kw or codec == "digital_harq":  # not vacuous: packets lost and resent
        assert float(first.outcome.retransmissions.sum()) > 0
