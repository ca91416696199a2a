"""DeepJSCC codec (v2x.semcom.deepjscc): power, accounting, ratio checks, learning behaviour."""

from __future__ import annotations

import math
import re

import pytest
import torch
from omegaconf import OmegaConf

from v2x.channels.base import CHANNELS, ChannelState
from v2x.channels.link import LinkState
from v2x.semcom import build_codec
from v2x.semcom.deepjscc import DeepJSCCCodec
from v2x.semcom.deepjscc_training import train_reconstruction

C, H, W = 16, 32, 32
RATIOS = [1 / 64, 1 / 16, 1 / 4]


def synthetic_maps(n: int, seed: int, rank: int = 3) -> torch.Tensor:
    """``[n, C, H, W]`` structured maps: a fixed C×rank mixing of smooth Gaussian-blob bases."""
    mix = torch.randn(C, rank, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    cy = torch.rand(n, rank, 3, 1, 1, generator=g) * H
    cx = torch.rand(n, rank, 3, 1, 1, generator=g) * W
    s = 2 + 4 * torch.rand(n, rank, 3, 1, 1, generator=g)
    basis = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s)).sum(2)
    return torch.einsum("cr,nrhw->nchw", mix, basis)


def tiny_codec(**kwargs) -> DeepJSCCCodec:
    args = dict(in_channels=C, hidden=32, downsample=2, min_ratio=1 / 64, max_ratio=1 / 4)
    args.update(kwargs)
    return DeepJSCCCodec(**args)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained():
    """A tiny codec trained for 150 steps on CPU through AWGN (cached for the module)."""
    torch.manual_seed(0)
    codec = tiny_codec(bandwidth_ratio=1 / 16)
    batches = list(synthetic_maps(64, seed=0).split(8))
    losses = train_reconstruction(
        codec,
        batches,
        snr_range_db=(-5, 25),
        ratio_choices=RATIOS,
        steps=150,
        lr=3e-3,
        erasure_prob_max=0.0,
    )
    return codec, losses


def mean_mse(codec, x, snr_db, ratio, draws=4, seed=7):
    torch.manual_seed(seed)
    with torch.no_grad():
        errs = [
            (codec.forward_train(x, float(snr_db), ratio)[0] - x).square().mean().item()
            for _ in range(draws)
        ]
    return sum(errs) / draws


# ------------------------------------------------------------------ power and accounting


@pytest.mark.parametrize("ratio", [1 / 64, 0.05, 1 / 4])
@pytest.mark.parametrize("granularity", ["symbol", "channel"])
def test_power_constraint_per_transmission(ratio, granularity):
    codec = tiny_codec(granularity=granularity).eval()
    x = torch.randn(3, C, H, W) * torch.tensor([1e-3, 1.0, 1e3]).reshape(-1, 1, 1, 1)
    with torch.no_grad():
        tx = codec.encode(x, LinkState.from_snr(10.0, 3), bandwidth_ratio=ratio)
    assert tx.symbols.dtype == torch.complex64 and tx.mask is None
    energy = tx.symbols.to(torch.complex128).abs().square().mean(dim=1)
    assert torch.allclose(energy, torch.ones(3, dtype=torch.float64), atol=1e-5)


def test_channel_uses_match_hand_computation():
    sym = tiny_codec(min_ratio=1 / 512, granularity="symbol")
    chan = tiny_codec(min_ratio=1 / 512, granularity="channel")
    # C·H·W = 16384 real values; latent 8×8 = 64 symbols per channel; K_max = 0.25·16·16 = 64.
    assert sym.latent_channels == 64
    assert sym.channel_uses_for((C, H, W), 1 / 64) == 256
    assert chan.channel_uses_for((C, H, W), 1 / 64) == 256  # 4 channels × 64
    assert sym.channel_uses_for((C, H, W), 1 / 4) == 4096
    assert chan.channel_uses_for((C, H, W), 1 / 4) == 4096  # all 64 channels
    assert sym.channel_uses_for((C, H, W), 1 / 512) == 32
    assert chan.channel_uses_for((C, H, W), 1 / 512) == 64  # at least one whole channel
    assert sym.channel_uses_for((C, H, W), 0.01) == 164  # round(163.84)
    assert chan.channel_uses_for((C, H, W), 0.01) == 192  # round(2.56) = 3 channels
    # 30×30 is padded to 32×32 inside: latent 8×8.
    assert sym.channel_uses_for((C, 30, 30), 1 / 64) == 225
    assert chan.channel_uses_for((C, 30, 30), 1 / 64) == 256  # round(225 / 64) = 4 channels


def test_default_model_covers_1_512_to_1_4_on_bev_features():
    codec = DeepJSCCCodec()  # C = 64, 128×128 → latent 32×32, K_max = 256 channels
    assert codec.latent_channels == 256
    assert codec.channel_uses_for((64, 128, 128), 1 / 512) == 2048
    assert codec.channel_uses_for((64, 128, 128), 1 / 4) == 262144 == 256 * 32 * 32


def test_cost_fields_match_hand_computation():
    codec = tiny_codec().eval()
    x = torch.randn(2, C, H, W)
    with torch.no_grad():
        tx = codec.encode(x, LinkState.from_snr(5.0, 2), bandwidth_ratio=1 / 4)
    cost = tx.cost
    assert tx.symbols.shape == (2, 4096)
    assert cost.channel_uses.tolist() == [4096.0, 4096.0]
    assert cost.source_bits.tolist() == [0.0, 0.0] and cost.coded_bits.tolist() == [0.0, 0.0]
    assert cost.raw_bits.tolist() == [16384 * 32.0] * 2
    # 32 bits per complex symbol on air, (1500 − 40)·8 = 11680 payload bits per packet.
    assert cost.packets.tolist() == [math.ceil(4096 * 32 / 11680)] * 2 == [12.0, 12.0]
    assert cost.bandwidth_ratio.tolist() == pytest.approx([0.25, 0.25])
    assert all(t.dtype == torch.float64 for t in vars(cost).values())


@pytest.mark.parametrize("bad", [0.0, -0.1, 2.0, float("nan"), 1 / 1024, 0.5])
def test_invalid_ratio_raises_with_valid_range(bad):
    with pytest.raises(ValueError, match="valid range"):
        tiny_codec(bandwidth_ratio=bad)
    codec = tiny_codec()
    with pytest.raises(ValueError, match="valid range"):
        codec.encode(torch.zeros(1, C, H, W), LinkState.from_snr(0.0, 1), bandwidth_ratio=bad)
    with pytest.raises(ValueError, match=r"\[0.0156"):
        codec.check_ratio(bad)


def test_bad_inputs_raise():
    codec = tiny_codec()
    with pytest.raises(ValueError, match="16 channels"):
        codec.encode(torch.zeros(1, 3, H, W), LinkState.from_snr(0.0, 1))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        codec.encode(torch.zeros(C, H, W), LinkState.from_snr(0.0, 1))
    with pytest.raises(ValueError, match="snr_db"):
        codec.encode(torch.zeros(2, C, H, W), LinkState.from_snr(torch.zeros(3)))


# ------------------------------------------------------------------ robustness and plumbing


def test_empty_map_and_empty_batch():
    codec = tiny_codec().eval()
    link = LinkState.from_snr(10.0, 2)
    with torch.no_grad():
        tx = codec.encode(torch.zeros(2, C, H, W), link)
        y, state = CHANNELS.build("awgn")(tx.symbols, link.snr_db)
        out = codec.decode(tx.received(y, state), link)
    assert out.shape == (2, C, H, W) and torch.isfinite(out).all()
    assert torch.isfinite(torch.view_as_real(tx.symbols)).all()
    with torch.no_grad():
        tx0 = codec.encode(torch.zeros(0, C, H, W), LinkState.from_snr(torch.zeros(0)))
        out0 = codec.decode(tx0, LinkState.from_snr(torch.zeros(0)))
    assert tx0.symbols.shape == (0, 256) and out0.shape == (0, C, H, W)
    assert tx0.cost.channel_uses.shape == (0,) and tx0.cost.packets.shape == (0,)


def test_fading_erasures_and_equalisation_path():
    codec = tiny_codec().eval()
    x = torch.randn(2, C, H, W)
    link = LinkState.from_snr(torch.tensor([0.0, 20.0]))
    with torch.no_grad():
        tx = codec.encode(x, link)
        y, state = CHANNELS.build("rayleigh")(tx.symbols, link.snr_db)
        assert state.h is not None
        out = codec.decode(tx.received(y, state), link)
        assert out.shape == x.shape and torch.isfinite(out).all()
        # Every symbol erased == every symbol zero: the decoder sees only zeros.
        erased = state.with_erasures(torch.ones_like(tx.symbols, dtype=torch.bool))
        out_erased = codec.decode(tx.received(y, erased), link)
        zeros = ChannelState(no=state.no)
        out_zero = codec.decode(tx.received(torch.zeros_like(y), zeros), link)
    assert torch.allclose(out_erased, out_zero)


def test_gradients_flow_from_output_to_encoder_through_channel():
    codec = tiny_codec().train()
    x = torch.randn(2, C, H, W)
    for name in ("awgn", "rayleigh"):
        codec.zero_grad()
        out, uses = codec.forward_train(
            x,
            torch.tensor([0.0, 10.0]),
            torch.tensor([1 / 64, 1 / 4]),
            channel=CHANNELS.build(name),
            erasure_prob=0.1,
        )
        assert uses.tolist() == [256.0, 4096.0]
        out.square().mean().backward()
        first = codec.encoder.stages[0].conv.weight.grad
        assert first is not None and torch.isfinite(first).all() and first.abs().sum() > 0


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(1)
    a = tiny_codec().eval()
    a.update_feature_stats(torch.randn(4, C, H, W) * 3 + 1)
    path = str(tmp_path / "jscc.pt")
    a.save_checkpoint(path)
    b = tiny_codec(checkpoint=path).eval()
    x = torch.randn(1, C, H, W)
    link = LinkState.from_snr(10.0, 1)
    with torch.no_grad():
        assert torch.equal(a.decode(a.encode(x, link), link), b.decode(b.encode(x, link), link))
    with pytest.raises(ValueError, match="checkpoint"):
        tiny_codec(hidden=16, checkpoint=path)


def test_a_checkpoint_builds_its_layers_uninitialised_and_a_broken_one_fails_by_name(tmp_path):
    """Built from a checkpoint, the layers are never initialised (the global RNG is left as it
    was) and hold the file's values, none left on the meta device; a file whose tensors do not
    fit still fails naming the key, as the copying load did."""
    torch.manual_seed(2)
    a = tiny_codec().eval()
    path = str(tmp_path / "jscc.pt")
    a.save_checkpoint(path)
    rng = torch.get_rng_state()
    b = tiny_codec(checkpoint=path)
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in a.state_dict().items():
        assert not b.state_dict()[key].is_meta and torch.equal(b.state_dict()[key], value), key
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in b.parameters())
    blob = torch.load(path, weights_only=True)
    key = next(k for k in blob["state_dict"] if k.startswith("decoder."))
    for broken in ({k: v for k, v in blob["state_dict"].items() if k != key},
                   {**blob["state_dict"], key: torch.zeros(1)}):  # fmt: skip
        torch.save({**blob, "state_dict": broken}, path)
        with pytest.raises(RuntimeError, match=re.escape(key)):
            tiny_codec(checkpoint=path)


def test_registry_and_config_build():
    cfg = OmegaConf.to_container(OmegaConf.load("conf/codec/deepjscc.yaml"))
    assert cfg.pop("name") == "deepjscc"
    codec = build_codec("deepjscc", **cfg)
    assert isinstance(codec, DeepJSCCCodec)
    assert codec.bandwidth_ratio == 1 / 64 and codec.min_ratio == 1 / 512


# ------------------------------------------------------------------ learning behaviour


def test_training_reduces_loss(trained):
    _, losses = trained
    assert len(losses) == 150
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:5]) / 5


def test_quality_monotone_in_snr(trained):
    codec, _ = trained
    x = synthetic_maps(8, seed=99)  # unseen maps
    for ratio in (1 / 64, 1 / 16):
        mse = [mean_mse(codec, x, snr, ratio) for snr in (0, 10, 20)]
        assert mse[0] > mse[1] > mse[2], (ratio, mse)
    # Far better than the trivial estimate (per-channel mean) at high SNR.
    trivial = (x - x.mean(dim=(0, 2, 3), keepdim=True)).square().mean().item()
    assert mean_mse(codec, x, 20, 1 / 16) < 0.3 * trivial


def test_higher_ratio_lower_mse(trained):
    codec, _ = trained
    x = synthetic_maps(8, seed=99)
    for snr in (10, 20):
        assert mean_mse(codec, x, snr, 1 / 4) < mean_mse(codec, x, snr, 1 / 64)


def test_encode_decode_over_awgn_matches_training_path(trained):
    codec, _ = trained
    x = synthetic_maps(4, seed=5)
    link = LinkState.from_snr(20.0, 4)
    torch.manual_seed(3)
    with torch.no_grad():
        tx = codec.encode(x, link)
        y, state = CHANNELS.build("awgn")(tx.symbols, link.snr_db)
        out = codec.decode(tx.received(y, state), link)
    assert (out - x).square().mean().item() < 0.3 * x.var().item()


def test_lost_symbols_degrade_gracefully(trained):
    codec, _ = trained
    x = synthetic_maps(8, seed=99)
    trivial = (x - x.mean(dim=(0, 2, 3), keepdim=True)).square().mean().item()
    mse = []
    for p in (0.0, 0.3, 1.0):
        torch.manual_seed(11)
        with torch.no_grad():
            out, _ = codec.forward_train(x, 20.0, 1 / 16, erasure_prob=p, erasure_block=16)
        assert torch.isfinite(out).all()
        mse.append((out - x).square().mean().item())
    assert mse[0] < mse[1] < mse[2]
    # Nothing arrives: the decoder falls back to roughly the mean map, not to garbage.
    assert mse[2] < 2.0 * trivial


def test_effective_snr_conditioning_matches_closed_form():
    torch.manual_seed(2)
    link_codec = tiny_codec().eval()
    eff_codec = tiny_codec(decoder_snr="effective").eval()
    eff_codec.load_state_dict(link_codec.state_dict())
    x = torch.randn(2, C, H, W)
    link = LinkState.from_snr(torch.tensor([10.0, 10.0]))
    gains = torch.tensor([0.5 + 0.5j, 2.0 + 0.0j], dtype=torch.complex64)  # |h|² = 0.5, 4
    with torch.no_grad():
        tx = link_codec.encode(x, link)
        no = torch.full((2,), 0.1)
        state = ChannelState(no=no, h=gains.reshape(2, 1).expand_as(tx.symbols).clone())
        y = tx.symbols * state.h
        out_eff = eff_codec.decode(tx.received(y, state), link)
        # Oracle: post-MMSE SNR of block fading is |h|²/no → 10·log10(|h|²/no) dB.
        eff_db = 10 * torch.log10(gains.abs().square() / no)
        out_link = link_codec.decode(tx.received(y, state), LinkState.from_snr(eff_db))
    assert torch.allclose(out_eff, out_link, atol=1e-5)
    with pytest.raises(ValueError, match="decoder_snr"):
        tiny_codec(decoder_snr="nope")


def test_semantic_bev_maps_with_few_channels():
    # C = 4 semantic classes at 128×128: n = 65536 values, latent 32×32, K_max = 0.25·4·16 = 16.
    codec = DeepJSCCCodec(in_channels=4, hidden=8, min_ratio=1 / 512).eval()
    assert codec.latent_channels == 16
    x = (torch.rand(2, 4, 128, 128) > 0.9).float()
    link = LinkState.from_snr(5.0, 2)
    with torch.no_grad():
        for ratio, uses in ((1 / 512, 128), (1 / 4, 16384)):
            tx = codec.encode(x, link, bandwidth_ratio=ratio)
            assert tx.symbols.shape == (2, uses)
            assert tx.cost.channel_uses.tolist() == [float(uses)] * 2
            out = codec.decode(tx, link)
            assert out.shape == x.shape and torch.isfinite(out).all()
    # Whole-channel masking cannot go below one 32×32 latent channel = 1024 uses = 1/64.
    chan = DeepJSCCCodec(in_channels=4, hidden=8, min_ratio=1 / 512, granularity="channel")
    assert chan.channel_uses_for((4, 128, 128), 1 / 512) == 1024


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_with_power_constraint():
    device = torch.device("cuda")
    codec = tiny_codec().to(device)
    x = torch.randn(3, C, H, W, device=device)
    link = LinkState.from_snr(torch.tensor([0.0, 10.0, 20.0], device=device))
    with torch.no_grad():
        tx = codec.eval().encode(x, link)
        assert tx.symbols.device.type == "cuda"
        energy = tx.symbols.abs().square().mean(dim=1).double().cpu()
        assert torch.allclose(energy, torch.ones(3, dtype=torch.float64), atol=1e-5)
        y, state = CHANNELS.build("rayleigh")(tx.symbols, link.snr_db)
        out = codec.decode(tx.received(y, state), link)
    assert out.device.type == "cuda" and out.shape == x.shape
    out, _ = codec.train().forward_train(x, link.snr_db, 1 / 16)
    out.square().mean().backward()
    assert codec.encoder.stages[0].conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "device_name",
    ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs CUDA")])],
)  # fmt: skip
def test_the_decoder_runs_channels_last_with_the_channels_first_values(device_name):
    """The decoder's input is made channels-last (cuDNN's and oneDNN's layout): the maps come
    out channels-last, and hold what the same decoder gives from a channels-first input."""
    device = torch.device(device_name)
    torch.manual_seed(0)
    codec = tiny_codec().to(device).eval()
    x = synthetic_maps(4, seed=5).to(device)
    link = LinkState.from_snr(torch.tensor([0.0, 5.0, 10.0, 20.0], device=device))
    with torch.no_grad():
        tx = codec.encode(x, link)
        out = codec.decode(tx.received(tx.symbols, None), link)
        assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
        hp, wp = codec.latent_hw(H, W)
        k = codec.latent_channels
        z = torch.zeros(4, k * hp * wp, dtype=torch.complex64, device=device)
        z[:, : tx.symbols.shape[1]] = tx.symbols
        from v2x.semcom.power import complex_to_real

        latent = complex_to_real(z).reshape(4, k, hp, wp, 2).permute(0, 1, 4, 2, 3)
        latent = latent.reshape(4, 2 * k, hp, wp).contiguous()
        context = codec._context(link.snr_db, tx.meta["ratio"])
        want = codec._destandardize(codec.decoder(latent, context)[:, :, :H, :W])
    assert torch.allclose(out, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


@pytest.mark.parametrize("ratio", [1 / 64, 1 / 20, 1 / 4])
def test_only_the_sent_latent_channels_are_computed_with_the_full_latents_values(ratio):
    """``encode`` computes only the latent channels that hold the symbols it sends (the head's
    first output channels) and ``decode`` reads only the received ones (the stem's first input
    channels): the symbols and maps equal, to float rounding, those of the full ``2K``-channel
    latent with the unsent slots zeroed; the convolutions' arithmetic shrinks with them."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    codec = tiny_codec(bandwidth_ratio=ratio).eval()
    x = synthetic_maps(3, seed=4)
    link = LinkState.from_snr(torch.tensor([0.0, 8.0, 20.0]))
    hp, wp = codec.latent_hw(H, W)
    k_all = codec.latent_channels
    with torch.no_grad():
        codec._encoder_first(x)  # its memo: both paths below reuse the first stage
        counter = FlopCounterMode(display=False)
        with counter:
            tx = codec.encode(x, link)
            out = codec.decode(tx.received(tx.symbols, None), link)
        sliced_flops = counter.get_total_flops()
        n = tx.symbols.shape[1]
        uses = tx.meta["uses"]
        # the full latent: every channel computed, the unsent slots zeroed
        with FlopCounterMode(display=False) as full_counter:
            z_full, _, ratio_full = codec._encode_symbols(x, link.snr_db, uses)
            z_rx = torch.where(torch.arange(k_all * hp * wp) < n, z_full, 0.0)
            want = codec._decode_symbols(z_rx, link.snr_db, ratio_full, (C, H, W))
        full_flops = full_counter.get_total_flops()
    torch.testing.assert_close(tx.symbols, z_full[:, :n], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    k_sent = -(-n // (hp * wp))
    assert k_sent < k_all or ratio == 1 / 4
    # only the encoder's head and the decoder's stem shrink, each by k_sent / K
    head = 2 * 3 * (2 * k_all) * codec.hidden * 9 * hp * wp  # multiply-adds × 2 of each conv
    assert full_flops - sliced_flops == 2 * head * (k_all - k_sent) // k_all


_DESTANDARDIZE = r"""
import json, torch
from v2x.semcom.deepjscc_triton import destandardize
torch.manual_seed(0)
out = {}
for shape in ((3, 5, 6, 7), (1, 384, 4, 4), (2, 1, 3, 3)):
    x = torch.randn(*shape) * 3
    c = shape[1]
    s, m, b = torch.rand(c) + 0.5, torch.randn(c), torch.randn(c)
    ref = x * s[None, :, None, None] + m[None, :, None, None]
    ref_b = (x + b[None, :, None, None]) * s[None, :, None, None] + m[None, :, None, None]
    for layout in ("nchw", "nhwc"):
        xin = x if layout == "nchw" else x.contiguous(memory_format=torch.channels_last)
        got, got_b = destandardize(xin, s, m), destandardize(xin, s, m, b)
        given = torch.empty_like(xin)
        into = destandardize(xin, s, m, b, out=given)
        out[f"{shape}/{layout}"] = [torch.equal(got, ref) and torch.equal(got_b, ref_b)
                                    and into is given and torch.equal(given, ref_b),
                                    got.stride() == got_b.stride() == xin.stride()]
try:
    destandardize(torch.randn(2, 3, 4, 6)[..., ::2], torch.ones(3), torch.zeros(3))
    out["refused"] = False
except ValueError as err:
    out["refused"] = "dense" in str(err)
try:
    x = torch.randn(2, 3, 4, 4)
    destandardize(x, torch.ones(3), torch.zeros(3), out=torch.empty_like(x).transpose(2, 3))
    out["refused_out"] = False
except ValueError as err:
    out["refused_out"] = "strides" in str(err)
print(json.dumps(out))
"""


def test_destandardize_kernel_rounds_as_torch_in_the_interpreter(triton_interpreted):
    """``destandardize`` (one Triton pass, no FMA contraction) gives torch's ``x · s + m``
    and, with a bias, ``(x + b) · s + m``, op by op, bit for bit, in either layout, also into
    a given tensor of ``x``'s layout (another layout is refused)."""
    out = triton_interpreted(_DESTANDARDIZE)
    assert out.pop("refused") is True and out.pop("refused_out") is True
    assert len(out) == 6 and all(equal and layout for equal, layout in out.values()), out


_LAYER_PASSES = r"""
import json, torch
from v2x.semcom.deepjscc_triton import bias_prelu_, scale_add
torch.manual_seed(0)
out = {}
for shape in ((3, 5, 6, 7), (2, 128, 4, 4), (1, 1, 3, 3)):
    b, c = shape[:2]
    x = torch.randn(*shape) * 3
    bias, slope, gains = torch.randn(c), torch.rand(c) * 0.5, torch.rand(b, c) * 2
    r = torch.randn(*shape)
    for layout in ("nchw", "nhwc"):
        fmt = torch.contiguous_format if layout == "nchw" else torch.channels_last
        xin, rin = x.contiguous(memory_format=fmt), r.contiguous(memory_format=fmt)
        want = torch.prelu(xin + bias[None, :, None, None], slope)
        got = bias_prelu_(xin.clone(), bias, slope)
        one = torch.prelu(xin + bias[None, :, None, None], slope[:1])
        got_one = bias_prelu_(xin.clone(), bias, slope[:1])
        scaled = xin * gains[:, :, None, None]
        out[f"{shape}/{layout}"] = [
            torch.equal(got, want), torch.equal(got_one, one),
            torch.equal(scale_add(xin, gains), scaled),
            torch.equal(scale_add(xin, gains, rin), rin + scaled),
            got.stride() == xin.stride() and scale_add(xin, gains, rin).stride() == xin.stride(),
        ]
x = torch.randn(2, 3, 4, 4)
for name, call in (("strided", lambda: bias_prelu_(x.transpose(2, 3), torch.ones(3), torch.ones(3))),
                   ("residual", lambda: scale_add(x, torch.ones(2, 3), x.transpose(2, 3)))):
    try:
        call()
        out[name] = False
    except ValueError as err:
        out[name] = "strides" in str(err)
print(json.dumps(out))
"""


def test_the_layer_passes_round_as_torch_in_the_interpreter(triton_interpreted):
    """``bias_prelu_`` gives torch's bias add then PReLU (per-channel and single slopes) in
    place, and ``scale_add`` torch's ``x · g`` and ``r + x · g``, bit for bit, in either
    layout; other strides are refused by name."""
    out = triton_interpreted(_LAYER_PASSES)
    assert out.pop("strided") is True and out.pop("residual") is True
    assert len(out) == 6 and all(all(v) for v in out.values()), out


def _deterministic_cuda(monkeypatch) -> torch.device:  # noqa: ANN001
    """CUDA with Triton (the test skips otherwise), cuDNN in its deterministic mode (outside it
    two calls need not agree in the last bits), torch seeded."""
    from v2x.common import triton_available

    if not triton_available():
        pytest.skip("triton not installed")
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    torch.manual_seed(0)
    return torch.device("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_fused_layer_passes_give_the_torch_paths_bits(monkeypatch):
    """In CUDA inference DeepJSCC's convolution biases with their PReLU, and its AF gains with
    the residual sums, run as one Triton pass each: the symbols and maps equal torch's path
    bit for bit (deterministic mode; channels-first and channels-last maps), and the passes
    ran."""
    import v2x.semcom.deepjscc as deepjscc
    import v2x.semcom.deepjscc_layers as layers
    import v2x.semcom.deepjscc_triton as kernels

    device = _deterministic_cuda(monkeypatch)
    codec = tiny_codec(downsample=1, bandwidth_ratio=1 / 16).to(device).eval()
    link = LinkState.from_snr(torch.tensor([0.0, 5.0, 10.0, 20.0], device=device))
    calls = []
    for name in ("bias_prelu_", "scale_add"):
        real = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _r=real, _n=name, **k: calls.append(_n)
                            or _r(*a, **k))  # fmt: skip
    for layout in (torch.contiguous_format, torch.channels_last):
        x = synthetic_maps(4, seed=5).to(device).contiguous(memory_format=layout)
        got = []
        for fused in (True, False):
            monkeypatch.setattr(layers, "_fused_layers", lambda t, _f=fused: _f and t.is_cuda)
            codec._first_memo = deepjscc.TensorMemo()  # the encoder's first stage afresh
            with torch.no_grad():
                tx = codec.encode(x, link)
                got.append((tx.symbols, codec.decode(tx.received(tx.symbols, None), link)))
        assert torch.equal(got[0][0], got[1][0]) and torch.equal(got[0][1], got[1][1])
    assert {"bias_prelu_", "scale_add"} <= set(calls)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_one_pass_destandardisation_gives_the_torch_paths_bits(monkeypatch):
    """On CUDA the decoder's output convolution runs without its bias and one kernel adds the
    bias and de-standardises: the maps equal torch's path (the convolution with its bias, then
    two per-channel passes) bit for bit, layout included, in the deterministic mode (outside
    it two cuDNN calls need not agree in the last bits); and the kernel gives torch's
    ``(x + b) · s + m`` on random maps in either layout."""
    import v2x.semcom.deepjscc_layers as layers
    import v2x.semcom.deepjscc_receiver as receiver
    from v2x.semcom.deepjscc_triton import destandardize

    device = _deterministic_cuda(monkeypatch)
    codec = tiny_codec(downsample=1).to(device).eval()
    with torch.no_grad():
        codec.feat_mean.normal_()
        codec.feat_std.uniform_(0.5, 2.0)
        codec.decoder.out.bias.normal_()
    x = synthetic_maps(4, seed=6).to(device)
    link = LinkState.from_snr(torch.tensor([0.0, 5.0, 10.0, 20.0], device=device))
    with torch.no_grad():
        tx = codec.encode(x, link)
        fused = codec.decode(tx.received(tx.symbols, None), link)
        for module in (layers, receiver):  # the layers' passes and the de-standardisation
            monkeypatch.setattr(module, "triton_available", lambda: False)
        plain = codec.decode(tx.received(tx.symbols, None), link)
    assert fused.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fused, plain) and fused.stride() == plain.stride()
    g = torch.Generator(device=device).manual_seed(1)
    for shape in ((3, 5, 6, 7), (2, 384, 64, 64)):
        maps = torch.randn(*shape, device=device, generator=g) * 3
        s, m, bias = (torch.randn(shape[1], device=device, generator=g) for _ in range(3))
        for layout in (torch.contiguous_format, torch.channels_last):
            xin = maps.contiguous(memory_format=layout)
            for b in (None, bias):
                got = destandardize(xin, s, m, b)
                shifted = xin if b is None else xin + b[None, :, None, None]
                want = shifted * s[None, :, None, None] + m[None, :, None, None]
                assert torch.equal(got, want) and got.stride() == xin.stride(), (shape, layout)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_on_cuda_under_autocast_the_codec_runs_torch_passes_on_the_autocast_maps(
    monkeypatch, dtype
):
    """Under ``torch.autocast`` the convolutions return the autocast dtype: CUDA inference then
    keeps torch's pointwise passes (the float32 Triton passes are not offered those maps) and
    gives exactly what the codec gives with the Triton passes switched off."""
    import v2x.semcom.deepjscc as deepjscc
    import v2x.semcom.deepjscc_layers as layers
    import v2x.semcom.deepjscc_receiver as receiver

    device = _deterministic_cuda(monkeypatch)
    codec = tiny_codec(downsample=1, bandwidth_ratio=1 / 16).to(device).eval()
    x = synthetic_maps(4, seed=7).to(device)
    link = LinkState.from_snr(torch.tensor([0.0, 5.0, 10.0, 20.0], device=device))
    got = []
    for triton in (True, False):
        for module in (layers, receiver):  # the layers' passes and the de-standardisation
            monkeypatch.setattr(module, "triton_available", lambda _t=triton: _t)
        codec._first_memo = deepjscc.TensorMemo()
        with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
            tx = codec.encode(x, link)
            got.append((tx.symbols, codec.decode(tx.received(tx.symbols, None), link)))
    assert torch.equal(got[0][0], got[1][0]) and torch.equal(got[0][1], got[1][1])
    assert got[0][1].dtype == torch.float32 and torch.isfinite(got[0][1]).all()


def test_each_packaged_checkpoint_name_loads_its_architecture_and_a_mismatch_names_the_file():
    """``shipped`` picks the packaged codec by ``in_channels`` (the detector's feature
    channels); architecture arguments left out are the checkpoint's, given ones must match."""
    from v2x.semcom.deepjscc_checkpoint import (
        SHIPPED_BY_CHANNELS,
        SHIPPED_CHECKPOINTS,
        read_codec_checkpoint,
    )

    assert set(SHIPPED_BY_CHANNELS) == {64, 384}  # the small and the standard detector's maps
    assert {"shipped_pointpillars": SHIPPED_BY_CHANNELS[384]} == SHIPPED_CHECKPOINTS
    for channels, file in SHIPPED_BY_CHANNELS.items():
        for name in ["shipped"] + [n for n, f in SHIPPED_CHECKPOINTS.items() if f == file]:
            path, blob = read_codec_checkpoint(name, channels)
            assert path.endswith(file) and blob["config"]["in_channels"] == channels
            codec = build_codec("deepjscc", in_channels=channels, checkpoint=name)
            assert codec.config() == {"output_activation": "none", **blob["config"]}
            assert torch.equal(codec.gate_snr_db, blob["state_dict"]["gate_snr_db"])
            explicit = build_codec("deepjscc", **blob["config"], checkpoint=name)
            assert explicit.config() == codec.config()
    assert build_codec("deepjscc", in_channels=384, checkpoint="shipped").max_ratio == 0.0625
    with pytest.raises(ValueError, match="deepjscc_pointpillars.pt.*saved with config"):
        build_codec("deepjscc", in_channels=384, hidden=64, checkpoint="shipped")
    with pytest.raises(ValueError, match="'shipped' has no packaged codec for in_channels=12"):
        build_codec("deepjscc", in_channels=12, checkpoint="shipped")
    # a codec of the small detector's 64-channel maps under the standard detector says why
    with pytest.raises(ValueError, match=r"codes 64-channel .* have 384: .*model=pillars_center"):
        build_codec("deepjscc", in_channels=384, checkpoint=read_codec_checkpoint("shipped", 64)[0])
    fresh = build_codec("deepjscc")  # no checkpoint: the built-in architecture
    assert (fresh.hidden, fresh.downsample, fresh.max_ratio) == (128, 2, 0.25)


def test_destandardize_in_place_without_autograd_and_a_new_tensor_with_it():
    """The decoder's last pass (``x · std + mean`` per channel) writes into the output layer's
    fresh maps when autograd does not need them: the same bits as the two operations; with a
    tensor that needs gradients it leaves ``x`` alone and gradients flow."""
    codec = DeepJSCCCodec(in_channels=4, hidden=8, min_ratio=1 / 512).eval()
    codec.feat_std.copy_(torch.tensor([0.5, 2.0, 3.0, 0.25]))
    codec.feat_mean.copy_(torch.tensor([1.0, -2.0, 0.125, 7.0]))
    x = torch.randn(3, 4, 6, 5).contiguous(memory_format=torch.channels_last)[:, :, :5, :4]
    want = x * codec.feat_std[None, :, None, None] + codec.feat_mean[None, :, None, None]
    y = x.clone()
    with torch.no_grad():
        got = codec._destandardize(y)
    assert torch.equal(got, want) and got.data_ptr() == y.data_ptr()
    leaf = x.clone().requires_grad_(True)
    out = codec._destandardize(leaf)
    assert torch.equal(out, want) and torch.equal(leaf.detach(), x)
    out.sum().backward()
    assert torch.equal(leaf.grad, codec.feat_std[None, :, None, None].expand_as(x))
    for dtype in (torch.bfloat16, torch.float16):  # autocast's maps: a float32 result, as before
        narrow = x.to(dtype)
        with torch.no_grad():
            got = codec._destandardize(narrow.clone())
        want = narrow * codec.feat_std[None, :, None, None] + codec.feat_mean[None, :, None, None]
        assert got.dtype == torch.float32 and torch.equal(got, want), dtype


def test_decode_under_cpu_autocast_gives_float32_maps():
    """Under ``torch.autocast`` (bfloat16 on the CPU) the output convolution returns bfloat16
    maps; the decoded maps are float32 all the same (the statistics promote them), as on CUDA
    (``test_on_cuda_under_autocast_the_codec_runs_torch_passes_on_the_autocast_maps``)."""
    codec = tiny_codec(downsample=1, bandwidth_ratio=1 / 16).eval()
    x = synthetic_maps(2, seed=7)
    link = LinkState.from_snr(torch.tensor([0.0, 10.0]))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        tx = codec.encode(x, link)
        out = codec.decode(tx.received(tx.symbols, None), link)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
