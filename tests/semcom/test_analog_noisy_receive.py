"""The analog receiver that adds the AWGN channel's deferred noise in its own pass
(``analog_triton.receive_noisy``) gives what the channel kernel followed by the one-pass
receiver gives: bit for bit in the interpreter (the kernel alone; the codec through
``transmit`` with the channel asked to defer, the CUDA-only gates opened), and on CUDA to
float32 rounding (the compiled kernels may contract the noise's multiply-add differently)."""

from __future__ import annotations

import pytest
import torch

from v2x.channels import build_channel
from v2x.channels.link import LinkState
from v2x.semcom.harq import transmit
from v2x.semcom.identity import AnalogCodec

_KERNEL = r"""
import json, torch
from v2x.channels.awgn_triton import PendingNoise
from v2x.semcom.analog_triton import receive, receive_noisy, takes_noise
torch.manual_seed(0)
out = {}
for shape in ((2, 3, 32, 64), (1, 40, 64, 64), (3, 33, 16, 128)):
    b, c, h, w = shape
    x = torch.randn(b, c * h * w // 2, dtype=torch.complex64)
    noise = PendingNoise(torch.rand(b) * 2 + 0.01, 4242 + b)
    shrink, scale = torch.rand(b, 1) + 0.01, torch.rand(b, 1) * 5
    want = receive(noise.added_to(x), shrink, scale, torch.Size(shape))
    got = receive_noisy(x, noise, shrink, scale, torch.Size(shape))
    joined = torch.full((2 * b, c, h, w), 7.0).contiguous(memory_format=torch.channels_last)
    into = receive_noisy(x, noise, shrink, scale, torch.Size(shape), out=joined[b:])
    noisy = bool((got != receive(x, shrink, scale, torch.Size(shape))).float().mean() > 0.99)
    out[str(shape)] = [torch.equal(got, want), torch.equal(joined[b:], want),
                       into.data_ptr() == joined[b:].data_ptr(),
                       bool((joined[:b] == 7.0).all()), takes_noise(torch.Size(shape)), noisy]
out["takes_odd"] = takes_noise(torch.Size((1, 4, 30, 40)))
try:
    receive_noisy(torch.zeros(1, 2400, dtype=torch.complex64), PendingNoise(torch.ones(1), 1),
                  torch.ones(1, 1), torch.ones(1, 1), torch.Size((1, 4, 30, 40)))
    out["refused"] = False
except ValueError as err:
    out["refused"] = "multiple of 2048" in str(err) and "(1, 4, 30, 40)" in str(err)
print(json.dumps(out))
"""


def test_the_noisy_receiver_gives_the_channel_kernel_then_the_receiver_bit_for_bit(
    triton_interpreted,
):
    """Maps of 32x64, 64x64 and 16x128 cells (channels not a multiple of the kernel's block
    included): the same bits as ``receive(PendingNoise.added_to(x))``, into a slice of a larger
    tensor too (and nothing else of it), and noisy; maps whose cells are not whole channel-kernel
    blocks are not taken, and refused by name."""
    out = triton_interpreted(_KERNEL)
    assert out.pop("takes_odd") is False and out.pop("refused") is True
    assert len(out) == 3 and all(all(checks) for checks in out.values()), out


_TRANSMIT = r"""
import json, torch
import v2x.channels.awgn as awgn
from v2x.channels import build_channel
from v2x.channels.link import LinkState
from v2x.semcom.harq import transmit
from v2x.semcom.identity import AnalogCodec
# the CUDA-only gates opened: the fused channel and the one-pass receiver run interpreted
awgn.use_fused = lambda x: True
AnalogCodec._receives_in_one_pass = staticmethod(lambda y, shrink, shape: True)
feats = torch.randn(4, 6, 32, 64)
link = LinkState.from_snr(torch.tensor([-10.0, 0.0, 10.0, 30.0]))
channel = build_channel("awgn")
runs = {}
for name, defers in (("deferred", True), ("added", False)):
    codec = AnalogCodec()
    codec.adds_pending_noise = defers
    torch.manual_seed(7)
    tx = codec.encode(feats, link)
    maps, rx = transmit(codec, channel, tx, link.snr_db, link)
    runs[name] = (maps, rx, torch.randint(0, 2**31, (1,)).item())
(d, rd, after_d), (a, ra, after_a) = runs["deferred"], runs["added"]
print(json.dumps({
    "equal": torch.equal(d, a), "rng_after": after_d == after_a,
    "pending": rd.state.pending_noise is not None and ra.state.pending_noise is None,
    "sent_as_received": rd.symbols is rd.sent_symbols,
    "cost": torch.equal(rd.cost.channel_uses, ra.cost.channel_uses),
    "error": float((d - feats).square().mean()),
}))
"""


def test_the_codec_through_transmit_decodes_the_deferred_noise_as_the_channel_adds_it(
    triton_interpreted,
):
    """``transmit`` asks the AWGN channel to defer its noise for the analog codec: the decoded
    maps equal those of the channel adding it (the same key, the same draws after), the cost
    is unchanged, and the received transmission says the noise is pending on the symbols sent."""
    out = triton_interpreted(_TRANSMIT)
    assert out.pop("error") > 1e-3, "no noise was added"
    assert all(out.values()), out


def test_without_the_fused_path_the_channel_adds_its_noise_whatever_is_asked():
    """On the CPU (no fused kernel) a deferral asked for is not taken: ``y`` is noisy and no
    noise is pending; the analog codec decodes it as before."""
    x = torch.randn(2, 64, dtype=torch.complex64)
    y, state = build_channel("awgn")(x, torch.tensor([0.0, 10.0]), defer_noise=True)
    assert state.pending_noise is None and not torch.equal(y, x)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_analog_codec_decodes_the_deferred_noise_as_the_channel_adds_it():
    """On CUDA the analog codec through ``transmit`` (noise deferred to its one-pass receiver)
    gives the maps of the channel kernel then the receiver at the sweep's map size to float32
    rounding (the same normals: a wrong draw would differ by the noise itself), and bit for
    bit at a shape whose cells are not whole blocks (the two-pass path either way)."""
    from v2x.common import triton_available

    if not triton_available():
        pytest.skip("triton not installed")
    device = torch.device("cuda")
    link = LinkState.from_snr(torch.tensor([-10.0, 0.0, 10.0, 30.0], device=device))
    channel = build_channel("awgn")
    for shape in ((4, 384, 128, 128), (4, 40, 30, 40)):
        feats = torch.randn(*shape, device=device)
        maps = {}
        for defers in (True, False):
            codec = AnalogCodec()
            codec.adds_pending_noise = defers
            torch.manual_seed(11)
            with torch.no_grad():
                tx = codec.encode(feats, link)
                decoded, rx = transmit(codec, channel, tx, link.snr_db, link)
            maps[defers] = decoded
            assert (rx.state.pending_noise is not None) == defers  # decode adds it either way
        if shape[2] == 128:  # one ulp of y = x + n, rounded once or twice
            peak = float(maps[False].abs().max())
            torch.testing.assert_close(maps[True], maps[False], rtol=1e-6, atol=1e-6 * peak)
        else:
            assert torch.equal(maps[True], maps[False])
        assert maps[True].is_contiguous(memory_format=torch.channels_last)
