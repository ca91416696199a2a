"""Reference codecs: identity (ideal digital float16) and analog (uncoded linear, OPTA at 1/2)."""

from __future__ import annotations

import math

import pytest
import torch

from v2x.channels import build_channel
from v2x.channels.link import LinkState
from v2x.semcom import build_codec
from v2x.semcom.base import reception
from v2x.semcom.harq import transmit
from v2x.semcom.identity import SCALE_SIDE_INFO_BITS, AnalogCodec, IdentityCodec


def test_identity_cost_is_float16_bits_at_shannon_rate():
    feats = torch.randn(3, 4, 5, 7)
    snr_db = torch.tensor([0.0, 10.0, 23.5])
    tx = IdentityCodec().encode(feats, LinkState(snr_db=snr_db))
    bits = 4 * 5 * 7 * 16
    assert tx.symbols is None
    assert tx.cost.source_bits.tolist() == [bits] * 3
    assert tx.cost.coded_bits.tolist() == [bits] * 3
    assert tx.cost.raw_bits.tolist() == [bits * 2] * 3
    for i, s in enumerate(snr_db.tolist()):
        assert float(tx.cost.channel_uses[i]) == math.ceil(bits / math.log2(1 + 10 ** (s / 10)))
    # 2240 bits fit in one 1460-byte payload; 100 x 100 x 16 channels do not.
    assert tx.cost.packets.tolist() == [1.0] * 3
    big = IdentityCodec(mtu_bytes=1500, header_bytes=40).encode(
        torch.zeros(1, 16, 100, 100), LinkState.from_snr(10.0)
    )
    assert float(big.cost.packets[0]) == math.ceil(16 * 100 * 100 * 16 / (1460 * 8))
    small_mtu = IdentityCodec(mtu_bytes=140, header_bytes=40).encode(
        feats[:1], LinkState.from_snr(10.0)
    )
    assert float(small_mtu.cost.packets[0]) == math.ceil(bits / 800)
    assert tx.cost.source_bits.dtype == torch.float64


def test_identity_decode_returns_float16_values():
    feats = torch.randn(2, 3, 4, 4) * 100 + 1e-3
    codec = build_codec("identity")
    link = LinkState.from_snr(5.0, batch=2)
    out = codec.decode(codec.encode(feats, link), link)
    assert out.dtype == torch.float32 and out.shape == feats.shape
    torch.testing.assert_close(out, feats.half().float(), atol=0, rtol=0)
    assert not torch.equal(out, feats)  # float16 rounding is real
    assert codec.uses_channel is False


def test_identity_empty_batch_and_zero_maps():
    codec = IdentityCodec()
    empty = torch.zeros(0, 4, 3, 3)
    tx = codec.encode(empty, LinkState(snr_db=torch.zeros(0)))
    assert tx.cost.source_bits.shape == (0,) and tx.cost.channel_uses.shape == (0,)
    assert codec.decode(tx, LinkState(snr_db=torch.zeros(0))).shape == (0, 4, 3, 3)
    zeros = torch.zeros(2, 4, 3, 3)
    link = LinkState.from_snr(0.0, batch=2)
    tx = codec.encode(zeros, link)
    assert tx.cost.source_bits.tolist() == [4 * 9 * 16] * 2  # raw float16: zeros cost the same
    assert tx.cost.channel_uses.tolist() == [4 * 9 * 16] * 2  # log2(1 + 1) = 1 bit per use
    assert (codec.decode(tx, link) == 0).all()


def test_identity_rejects_wrong_rank():
    with pytest.raises(ValueError, match="features"):
        IdentityCodec().encode(torch.zeros(4, 3, 3), LinkState.from_snr(0.0))


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 20.0])
def test_analog_attains_opta_at_half_rate(snr_db):
    """OPTA, ρ = 1/2 (reference/channel_formulas.md): uncoded linear + LMMSE, unit-variance
    i.i.d. Gaussian source over complex AWGN → MSE = σ²/(1 + SNR)."""
    torch.manual_seed(int(snr_db) + 100)
    codec = AnalogCodec()
    channel = build_channel("awgn")
    feats = torch.randn(4, 8, 64, 64)  # 131 072 samples per map
    link = LinkState.from_snr(snr_db, batch=4)
    tx = codec.encode(feats, link)
    assert tx.symbols.dtype == torch.complex64 and tx.symbols.shape == (4, 8 * 64 * 64 // 2)
    energy = tx.symbols.abs().square().mean(dim=1)
    torch.testing.assert_close(energy, torch.ones(4), atol=1e-5, rtol=0)  # unit power per map
    y, state = channel(tx.symbols, link.snr_db)
    decoded = codec.decode(tx.received(y, state), link)
    mse = float((decoded - feats).square().mean())
    snr = 10 ** (snr_db / 10)
    sigma2 = float(feats.square().mean())  # the sample variance the codec normalised by
    assert mse == pytest.approx(sigma2 / (1 + snr), rel=0.03)
    # Cost: half a complex use per real value, only the scale as side-information bits.
    assert tx.cost.channel_uses.tolist() == [8 * 64 * 64 / 2] * 4
    assert tx.cost.source_bits.tolist() == [SCALE_SIDE_INFO_BITS] * 4
    ratio = tx.cost.bandwidth_ratio
    torch.testing.assert_close(ratio, torch.full((4,), 0.5, dtype=torch.float64))


def test_analog_without_channel_is_lossless_and_handles_odd_sizes():
    codec = AnalogCodec()
    feats = torch.randn(2, 3, 5, 3)  # 45 values: padded to an even count
    link = LinkState.from_snr(10.0, batch=2)
    tx = codec.encode(feats, link)
    assert tx.symbols.shape == (2, 23)
    out = codec.decode(tx, link)
    torch.testing.assert_close(out, feats, atol=1e-5, rtol=1e-5)


def test_analog_zero_maps_and_empty_batch():
    codec = AnalogCodec()
    channel = build_channel("awgn")
    link = LinkState.from_snr(10.0, batch=2)
    tx = codec.encode(torch.zeros(2, 2, 4, 4), link)
    assert torch.isfinite(torch.view_as_real(tx.symbols)).all()
    y, state = channel(tx.symbols, link.snr_db)
    out = codec.decode(tx.received(y, state), link)
    assert torch.isfinite(out).all() and out.abs().max() < 1e-9
    empty_link = LinkState(snr_db=torch.zeros(0))
    tx = codec.encode(torch.zeros(0, 2, 4, 4), empty_link)
    assert tx.symbols.shape[0] == 0 and tx.cost.channel_uses.shape == (0,)
    assert codec.decode(tx, empty_link).shape == (0, 2, 4, 4)


def test_identity_channel_uses_exact_over_an_snr_sweep():
    """ceil(bits / log2(1 + snr)) with no float32 rounding slips (checked against Python)."""
    snr_db = torch.arange(-100, 400, dtype=torch.float32) / 10
    feats = torch.zeros(len(snr_db), 8, 32, 32)
    tx = IdentityCodec().encode(feats, LinkState(snr_db=snr_db))
    bits = 8 * 32 * 32 * 16
    want = [math.ceil(bits / math.log2(1 + 10 ** (float(s) / 10))) for s in snr_db]
    assert tx.cost.channel_uses.tolist() == want


_RECEIVE = r"""
import json, torch
from v2x.semcom.analog_triton import receive
torch.manual_seed(0)
out = {}
for shape in ((3, 5, 6, 7), (2, 40, 9, 9), (1, 3, 5, 3), (2, 33, 64, 66)):
    b, c, h, w = shape
    n = (c * h * w + 1) // 2
    y = torch.randn(b, n, dtype=torch.complex64) * 3
    shrink, scale = torch.rand(b, 1) + 0.01, torch.rand(b, 1) * 5
    real = torch.view_as_real(y * shrink).reshape(b, 2 * n) * scale
    want = real[:, : c * h * w].reshape(shape)
    got = receive(y, shrink, scale, torch.Size(shape))
    # into a slice of a larger channels-last tensor (a condition block of joined maps)
    joined = torch.full((2 * b, c, h, w), 7.0).contiguous(memory_format=torch.channels_last)
    into = receive(y, shrink, scale, torch.Size(shape), out=joined[b:])
    out[str(shape)] = [torch.equal(got, want) and torch.equal(joined[b:], want)
                       and into.data_ptr() == joined[b:].data_ptr()
                       and bool((joined[:b] == 7.0).all()),
                       got.is_contiguous(memory_format=torch.channels_last)]
try:
    receive(torch.zeros(1, 8, dtype=torch.complex64), torch.ones(1, 1), torch.ones(1, 1),
            torch.Size((1, 1, 4, 4)), out=torch.zeros(1, 1, 4, 4)[:, :, :, :2])
    out["refused_out"] = False
except ValueError as err:
    out["refused_out"] = "channels-last" in str(err)
try:
    receive(torch.zeros(2, 3, dtype=torch.complex64), torch.ones(2, 1), torch.ones(2, 1),
            torch.Size((2, 1, 3, 3)))
    out["refused"] = False
except ValueError as err:
    out["refused"] = "complex64" in str(err)
print(json.dumps(out))
"""


def test_analog_receive_kernel_gives_torchs_values_channels_last_in_the_interpreter(
    triton_interpreted,
):
    """``analog_triton.receive`` (one Triton pass) gives torch's shrink-then-rescale bit for
    bit, padding dropped, maps channels-last, also written into a given slice of a larger
    tensor (and nothing else of it); too few symbols and an ``out`` of another layout are
    refused by name."""
    out = triton_interpreted(_RECEIVE)
    assert out.pop("refused") is True and out.pop("refused_out") is True
    assert len(out) == 4 and all(equal and layout for equal, layout in out.values()), out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_analog_receiver_in_one_pass_gives_the_torch_paths_values(monkeypatch):
    """On CUDA the analog codec decodes an AWGN reception in one pass (channels-last maps) with
    the values of torch's two passes; a faded reception takes the torch path."""
    import v2x.semcom.identity as identity
    from v2x.common import triton_available

    if not triton_available():
        pytest.skip("triton not installed")
    device = torch.device("cuda")
    torch.manual_seed(0)
    codec = AnalogCodec()
    feats = torch.randn(6, 384, 32, 40, device=device)
    link = LinkState.from_snr(torch.tensor([-10.0, -5, 0, 5, 10, 20], device=device))
    with torch.no_grad():
        tx = codec.encode(feats, link)
        y, state = build_channel("awgn")(tx.symbols, link.snr_db)
        fast = codec.decode(tx.received(y, state), link)
        monkeypatch.setattr(identity, "triton_available", lambda: False)
        plain = codec.decode(tx.received(y, state), link)
    assert fast.is_contiguous(memory_format=torch.channels_last) and plain.is_contiguous()
    assert torch.equal(fast, plain)
    monkeypatch.setattr(identity, "triton_available", lambda: True)
    with torch.no_grad():
        y, state = build_channel("rayleigh")(tx.symbols, link.snr_db)
        faded = codec.decode(tx.received(y, state), link)
    assert faded.is_contiguous()  # a shrink per symbol: torch's passes


def test_identity_payload_is_made_once_for_the_same_maps_and_again_after_a_write():
    """A sweep's K condition blocks are views of one tensor: the float16 payload is converted
    once (``TensorMemo``); maps written in place get a fresh payload with their new values."""
    codec = IdentityCodec()
    maps = torch.randn(2, 3, 4, 4)
    rows = maps.unsqueeze(0).expand(3, *maps.shape)
    link = LinkState.from_snr(torch.tensor([0.0, 10.0]))
    first, second = (codec.encode(rows[k], link).meta["payload"] for k in (0, 1))
    assert first is second and torch.equal(first, maps.to(torch.float16))
    maps.mul_(2.0)
    third = codec.encode(rows[2], link).meta["payload"]
    assert third is not first and torch.equal(third, maps.to(torch.float16))
    other = codec.encode(maps.clone(), link).meta["payload"]
    assert other is not third and torch.equal(other, third)


def test_identity_maps_are_decoded_once_per_payload_and_again_after_a_write():
    """The float32 maps depend on the payload alone: the K blocks of a send get the same tensor
    (``TensorMemo``), equal to the payload's values; after an in-place write to the maps the
    next decode is a fresh tensor with the payload's values again."""
    codec = IdentityCodec()
    maps = torch.randn(2, 3, 4, 4)
    rows = maps.unsqueeze(0).expand(2, *maps.shape)
    link = LinkState.from_snr(torch.tensor([0.0, 10.0]))
    first, second = (codec.decode(codec.encode(rows[k], link), link) for k in (0, 1))
    assert first is second and torch.equal(first, maps.to(torch.float16).float())
    first.zero_()  # a caller writing into what it got
    again = codec.decode(codec.encode(rows[0], link), link)
    assert again is not first and torch.equal(again, maps.to(torch.float16).float())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_identity_decodes_channels_last_maps_with_the_payloads_values():
    """On CUDA identity's float32 maps are channels-last (what the ego's warp + fusion kernel
    reads fastest), with the float16 payload's values; in inference they are the float16
    payload itself, channels-last; on the CPU float32 in its layout."""
    codec = IdentityCodec()
    feats = torch.randn(4, 384, 32, 40)
    link = LinkState.from_snr(torch.tensor([0.0, 5.0, 10.0, 20.0]))
    on_cpu = codec.decode(codec.encode(feats, link), link)
    gpu_link = LinkState.from_snr(link.snr_db.cuda())
    on_cuda = codec.decode(codec.encode(feats.cuda(), gpu_link), gpu_link)
    assert on_cpu.is_contiguous() and on_cuda.is_contiguous(memory_format=torch.channels_last)
    assert not on_cuda.is_contiguous() and on_cuda.dtype == torch.float32
    assert torch.equal(on_cuda.cpu(), on_cpu) and torch.equal(on_cpu, feats.half().float())
    with torch.no_grad():
        tx = codec.encode(feats.cuda(), gpu_link)
        half = codec.decode(tx, gpu_link)
        assert codec.decode(tx, gpu_link) is half  # the K blocks of a send: one tensor
    assert half.dtype == torch.float16 and half.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(half.float().cpu(), on_cpu)


@pytest.mark.parametrize("codec", [IdentityCodec(), AnalogCodec()], ids=["identity", "analog"])
@pytest.mark.parametrize("shape", [(3, 4, 5, 7), (2, 8, 16, 16), (0, 4, 5, 7)])
def test_the_cost_known_before_the_air_is_what_encode_charges_whatever_the_values(codec, shape):
    """``cost_before_air`` (what ``v2x.known_drops`` schedules with) against ``encode`` on two
    different sets of maps of ``shape`` at several SNRs, odd value counts included."""
    snr_db = torch.linspace(-10.0, 30.0, shape[0]) if shape[0] else torch.zeros(0)
    before = codec.cost_before_air(shape, snr_db)
    for scale in (1.0, 50.0):
        link = LinkState(snr_db=snr_db)
        tx = codec.encode(scale * torch.randn(shape), link)
        for name in ("source_bits", "coded_bits", "channel_uses", "packets", "raw_bits"):
            got, want = getattr(before, name), getattr(tx.cost, name)
            assert got.dtype == want.dtype == torch.float64
            assert torch.equal(got, want), name
        # what the contract also promises: whole maps, every cell delivered, nothing lost
        _, received = transmit(codec, build_channel("awgn"), tx, snr_db, link)
        assert received.meta.get("sent") is None and received.meta.get("delivered") is None
        assert not reception(received).packets_lost.any()


def test_codecs_whose_cost_depends_on_the_maps_or_the_air_do_not_claim_to_know_it():
    from v2x.semcom.base import Codec, Cost

    digital = build_codec("digital", bits=4)
    assert digital.cost_before_air((1, 4, 8, 8), torch.zeros(1)) is None
    with pytest.raises(TypeError, match="cost_before_air"):

        class Resized(AnalogCodec):  # a new encode under the inherited cost
            def encode(self, features, link):
                return super().encode(features[:, :1], link)

    class Declared(AnalogCodec):  # says its own cost: allowed
        def encode(self, features, link):
            return super().encode(features[:, :1], link)

        def cost_before_air(self, shape, snr_db) -> Cost | None:
            return None

    class Plain(Codec):  # the base's answer: not known
        def encode(self, features, link):
            raise NotImplementedError

    assert Declared().cost_before_air((1, 2, 2, 2), torch.zeros(1)) is None
    assert Plain().cost_before_air((1, 2, 2, 2), torch.zeros(1)) is None
