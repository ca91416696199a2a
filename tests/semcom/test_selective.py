"""Selective cell transmission (v2x.semcom.selective): exact top-k, charged selection map."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from v2x.channels.base import CHANNELS
from v2x.channels.link import LinkState
from v2x.semcom import build_codec
from v2x.semcom.base import Codec, Cost, Transmission, packets_for_bits, raw_feature_bits
from v2x.semcom.deepjscc import DeepJSCCCodec
from v2x.semcom.selective import SelectiveCodec, selection_map_bits


class Passthrough(Codec):
    """Test double: lossless inner codec with a fixed, shape-only cost of C·h·w / 2 uses."""

    uses_channel = False
    shape_only_cost = True

    def channel_uses_for(self, shape, ratio=None) -> int:
        c, h, w = shape
        return math.ceil(c * h * w / 2)

    def encode(self, features, link):
        b, c, h, w = features.shape
        uses = torch.full((b,), float(self.channel_uses_for((c, h, w))), dtype=torch.float64)
        bits = torch.full_like(uses, 7.0)  # arbitrary, to check it is carried through
        cost = Cost(bits, bits * 2, uses, torch.ones_like(uses), raw_feature_bits(features))
        return Transmission(symbols=None, cost=cost, meta={"payload": features.clone()})

    def decode(self, received, link):
        return received.meta["payload"]


def numpy_topk_sets(importance: np.ndarray, k: int) -> list[set[int]]:
    flat = importance.reshape(importance.shape[0], -1)
    return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in flat]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_keeps_exact_top_k_cells_of_given_importance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 16, 16, generator=g)
    importance = torch.randperm(3 * 256, generator=g).reshape(3, 1, 16, 16).float()  # distinct
    codec = SelectiveCodec(inner=Passthrough(), keep_fraction=0.1)  # round(25.6) = 26 cells
    link = LinkState.from_snr(10.0, 3)
    tx = codec.encode(x, link, importance=importance)
    out = codec.decode(tx, link)
    assert tx.meta["kept"] == 26
    for b, expected in enumerate(numpy_topk_sets(importance.numpy(), 26)):
        sent = (out[b].abs().sum(dim=0) > 0).flatten().nonzero().flatten().tolist()
        assert set(sent) == expected
        mask = torch.zeros(256, dtype=torch.bool)
        mask[list(expected)] = True
        mask = mask.reshape(16, 16)
        assert torch.equal(out[b][:, mask], x[b][:, mask])  # kept cells exact
        assert torch.all(out[b][:, ~mask] == 0)  # everything else zero


def test_default_importance_is_feature_norm():
    x = torch.zeros(1, 3, 4, 4)
    x[0, :, 1, 2] = torch.tensor([3.0, 0.0, 4.0])  # norm 5
    x[0, 1, 3, 3] = -4.5  # norm 4.5
    x[0, 2, 0, 0] = 1.0  # norm 1
    codec = SelectiveCodec(inner=Passthrough(), keep_fraction=2 / 16)
    link = LinkState.from_snr(0.0, 1)
    out = codec.decode(codec.encode(x, link), link)
    expected = x.clone()
    expected[0, 2, 0, 0] = 0.0
    assert torch.equal(out, expected)


def test_selection_map_charged_bitmap_or_indices():
    # 1024 cells → 10 bits per index; bitmap 1024 bits.
    assert selection_map_bits(32, 32, 10) == 100
    assert selection_map_bits(32, 32, 102) == 1020
    assert selection_map_bits(32, 32, 103) == 1024  # 1030 > bitmap
    assert selection_map_bits(32, 32, 256) == 1024
    assert selection_map_bits(1, 1, 1) == 0


@pytest.mark.parametrize(("fraction", "kept", "ctrl_bits"), [(0.01, 10, 100), (0.25, 256, 1024)])
def test_costs_add_up(fraction, kept, ctrl_bits):
    x = torch.randn(2, 6, 32, 32)
    codec = SelectiveCodec(inner=Passthrough(), keep_fraction=fraction)
    tx = codec.encode(x, LinkState.from_snr(10.0, 2))
    ctrl_coded = 2 * ctrl_bits  # rate 1/2
    ctrl_uses = ctrl_coded // 2  # QPSK: 2 coded bits per complex use
    payload_uses = 6 * kept / 2  # passthrough charges C·k/2 on a 1×k grid
    assert tx.meta["kept"] == kept
    cost = tx.cost
    assert cost.channel_uses.tolist() == [payload_uses + ctrl_uses] * 2
    assert cost.source_bits.tolist() == [7.0 + ctrl_bits] * 2
    assert cost.coded_bits.tolist() == [14.0 + ctrl_coded] * 2
    assert cost.packets.tolist() == [1.0 + math.ceil(ctrl_coded / 11680)] * 2
    assert cost.raw_bits.tolist() == [6 * 1024 * 32.0] * 2


@pytest.mark.parametrize(("budget", "kept"), [(100, 10), (99, 9), (400, 72), (10, 1)])
def test_channel_use_budget_picks_largest_k(budget, kept):
    # C = 4, 16×16 = 256 cells (8 index bits): total(k) = 2k + min(256, 8k) uses.
    codec = SelectiveCodec(inner=Passthrough(), budget_channel_uses=budget)
    x = torch.randn(1, 4, 16, 16)
    tx = codec.encode(x, LinkState.from_snr(10.0, 1))
    assert tx.meta["kept"] == kept
    assert tx.cost.channel_uses.item() <= budget
    with pytest.raises(ValueError, match="cannot carry"):
        SelectiveCodec(inner=Passthrough(), budget_channel_uses=9).encode(
            x, LinkState.from_snr(10.0, 1)
        )


def test_analog_inner_through_registry_is_exact_without_noise():
    x = torch.randn(2, 4, 8, 8)
    codec = SelectiveCodec(inner="analog", keep_fraction=0.5)
    link = LinkState.from_snr(10.0, 2)
    tx = codec.encode(x, link)
    out = codec.decode(tx, link)  # not sent through a channel: noiseless
    kept = out.abs().sum(dim=1) > 0
    assert int(kept[0].sum()) == 32
    assert torch.allclose(out[:, :, kept[0]][0], x[0][:, kept[0]], atol=1e-5)
    # analog sends C·k/2 = 64 symbols; 64 cells → 6-bit indices: min(64, 32·6) = 64 map bits.
    assert tx.symbols.shape == (2, 64)
    assert tx.cost.channel_uses.tolist() == [64.0 + 64.0] * 2


def test_deepjscc_inner_on_packed_grid_and_fading_channel():
    inner = DeepJSCCCodec(
        in_channels=4,
        hidden=16,
        downsample=1,
        min_ratio=1 / 64,
        max_ratio=1 / 4,
        bandwidth_ratio=1 / 8,
    ).eval()
    codec = SelectiveCodec(inner=inner, keep_fraction=0.2)  # 32×32 → 205 cells
    assert codec.grid_shape(205) == (16, 14)  # side 15 → 16 rows, ceil(205/16)=13 → 14 cols
    x = torch.randn(2, 4, 32, 32)
    link = LinkState.from_snr(torch.tensor([0.0, 20.0]))
    with torch.no_grad():
        tx = codec.encode(x, link)
        y, state = CHANNELS.build("rayleigh")(tx.symbols, link.snr_db)
        out = codec.decode(tx.received(y, state), link)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert int((out.abs().sum(dim=1) > 0).sum(dim=(1, 2)).max()) <= 205
    payload = round(4 * 16 * 14 / 8)  # ratio of the packed grid
    ctrl = min(1024, 205 * 10)
    assert tx.cost.channel_uses.tolist() == [float(payload + ctrl)] * 2
    # Budget mode with the same inner codec honours the budget.
    budgeted = SelectiveCodec(inner=inner, budget_channel_uses=600)
    with torch.no_grad():
        tb = budgeted.encode(x, link)
    assert tb.cost.channel_uses.max().item() <= 600
    # Differentiable training path.
    inner.train()
    rec, uses = codec.forward_train(x, 10.0)
    rec.square().mean().backward()
    assert inner.encoder.stages[0].conv.weight.grad.abs().sum() > 0
    assert uses.tolist() == [float(payload + ctrl)] * 2


def test_empty_map_and_empty_batch():
    codec = SelectiveCodec(inner="analog", keep_fraction=0.25)
    link = LinkState.from_snr(10.0, 2)
    out = codec.decode(codec.encode(torch.zeros(2, 4, 8, 8), link), link)
    assert out.shape == (2, 4, 8, 8) and torch.isfinite(out).all() and torch.all(out == 0)
    empty = LinkState.from_snr(torch.zeros(0))
    inner = DeepJSCCCodec(in_channels=4, hidden=8, downsample=1, min_ratio=1 / 64, max_ratio=1 / 4)
    for inner_codec in (Passthrough(), inner.eval()):
        codec = SelectiveCodec(inner=inner_codec, keep_fraction=0.25)
        with torch.no_grad():
            tx0 = codec.encode(torch.zeros(0, 4, 8, 8), empty)
            assert tx0.cost.channel_uses.shape == (0,) and tx0.cost.packets.shape == (0,)
            assert codec.decode(tx0, empty).shape == (0, 4, 8, 8)


def test_bad_arguments():
    with pytest.raises(ValueError, match="keep_fraction"):
        SelectiveCodec(inner=Passthrough(), keep_fraction=0.0)
    with pytest.raises(ValueError, match="importance"):
        SelectiveCodec(inner=Passthrough()).encode(
            torch.zeros(1, 2, 4, 4), LinkState.from_snr(0.0, 1), importance=torch.zeros(1, 2, 4, 4)
        )
    with pytest.raises(ValueError, match="shape-only cost"):
        SelectiveCodec(inner="analog", budget_channel_uses=100)
    with pytest.raises(ValueError, match="unknown codec"):
        SelectiveCodec(inner="nope")


def test_config_builds():
    cfg = OmegaConf.to_container(OmegaConf.load("conf/codec/selective.yaml"))
    assert cfg.pop("name") == "selective"
    codec = build_codec("selective", **cfg)
    assert isinstance(codec, SelectiveCodec) and isinstance(codec.inner, DeepJSCCCodec)
    assert packets_for_bits(torch.tensor([0.0])).item() == 0.0
