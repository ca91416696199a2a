"""DeepJSCC's ``precision`` option: the encoder's and decoder's maps in float16 / bfloat16 in
inference (``v2x.semcom.deepjscc_layers``), float32 symbols and decoded maps, float32 training;
and the encoder's one-pass standardisation (``deepjscc_triton.standardize``).

Oracles: torch's float32 operations rounded once to the maps' dtype (the Triton passes in the
interpreter and on CUDA), and the float32 codec (the reduced one within the dtype's rounding).
"""

from __future__ import annotations

import pytest
import torch

from v2x.channels.link import LinkState
from v2x.semcom import build_codec
from v2x.semcom.deepjscc import DeepJSCCCodec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: the largest relative error (L2) of a reduced codec's symbols and maps against float32's
TOLERANCE = {"fp16": 5e-3, "bf16": 4e-2}


def _codec(precision: str, device: str = "cpu") -> DeepJSCCCodec:
    """A small codec with random weights and statistics, the same for every precision."""
    torch.manual_seed(3)
    codec = DeepJSCCCodec(in_channels=12, hidden=16, downsample=1, min_ratio=1 / 64,
                          max_ratio=1 / 4, bandwidth_ratio=1 / 16, precision=precision)  # fmt: skip
    with torch.no_grad():
        codec.feat_mean.normal_()
        codec.feat_std.uniform_(0.5, 2.0)
        codec.decoder.out.bias.normal_()
    return codec.to(device).eval()


def _maps(device: str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    return (torch.randn(4, 12, 16, 20, generator=g) * 2 + 0.5).to(device)


def _code(codec: DeepJSCCCodec, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(symbols, decoded maps)`` of ``x`` sent without noise at 4 SNRs."""
    link = LinkState.from_snr(torch.tensor([0.0, 5.0, 10.0, 20.0], device=x.device))
    tx = codec.encode(x, link)
    return tx.symbols, codec.decode(tx.received(tx.symbols, None), link)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().norm() / b.abs().norm())


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_reduced_codec_keeps_float32_outputs_within_its_rounding(precision):
    """Inference in float16 / bfloat16: complex64 symbols and float32 maps within the dtype's
    rounding of the float32 codec's (and not equal to them: the dtype was used); with autograd
    (training) the codec computes exactly the float32 codec's values."""
    x = _maps()
    full, reduced = _codec("fp32"), _codec(precision)
    with torch.no_grad():
        assert reduced.map_dtype() == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        want, got = _code(full, x), _code(reduced, x)
    assert got[0].dtype == torch.complex64 and got[1].dtype == torch.float32
    for g, w in zip(got, want):
        assert 0 < _relative(g, w) < TOLERANCE[precision], (precision, _relative(g, w))
    with torch.enable_grad():
        assert reduced.map_dtype() == torch.float32
        trained = _code(reduced, x)
        reference = _code(full, x)
    assert torch.equal(trained[0], reference[0]) and torch.equal(trained[1], reference[1])


def test_a_bad_precision_is_refused_by_name():
    with pytest.raises(ValueError, match=r"deepjscc: 'precision': expected one of fp32, fp16, "
                                         r"bf16, got 'half'"):  # fmt: skip
        DeepJSCCCodec(in_channels=4, hidden=8, min_ratio=1 / 64, precision="half")
    codec = build_codec("deepjscc", in_channels=4, hidden=8, min_ratio=1 / 64, precision="fp16")
    assert codec.precision == "fp16"
    with pytest.raises(AttributeError):  # fixed at construction (the first stage's memo)
        codec.precision = "fp32"


_REDUCED_PASSES = r"""
import json, torch
import torch.nn.functional as F
from v2x.semcom.deepjscc_triton import bias_prelu_, destandardize, scale_add
torch.manual_seed(0)
out = {}
for shape in ((3, 5, 6, 7), (2, 128, 4, 4)):
    b, c = shape[:2]
    x = (torch.randn(*shape) * 3).half()
    r = torch.randn(*shape).half()
    bias, slope, gains = torch.randn(c), torch.rand(c) * 0.5, torch.rand(b, c) * 2
    s, m = torch.rand(c) + 0.5, torch.randn(c)
    for layout in ("nchw", "nhwc"):
        fmt = torch.contiguous_format if layout == "nchw" else torch.channels_last
        xin, rin = x.contiguous(memory_format=fmt), r.contiguous(memory_format=fmt)
        got = bias_prelu_(xin.clone(), bias, slope)
        want = F.prelu(xin.float() + bias[None, :, None, None], slope).half()
        scaled = xin.float() * gains[:, :, None, None]
        plain, summed = scale_add(xin, gains), scale_add(xin, gains, rin)
        maps = destandardize(xin, s, m, bias)
        ref = (xin.float() + bias[None, :, None, None]) * s[None, :, None, None] + m[None, :, None, None]
        out[f"{shape}/{layout}"] = [
            got.dtype == torch.float16 and torch.equal(got, want),
            torch.equal(plain, scaled.half()) and torch.equal(summed, (rin.float() + scaled).half()),
            summed.dtype == torch.float16 and summed.stride() == xin.stride(),
            maps.dtype == torch.float32 and torch.equal(maps, ref) and maps.stride() == xin.stride(),
        ]
print(json.dumps(out))
"""


def test_the_passes_on_float16_maps_round_once_as_torch_in_the_interpreter(triton_interpreted):
    """On float16 maps ``bias_prelu_`` and ``scale_add`` compute in float32 and round once to
    float16 (torch's float32 operations then ``.half()``, bit for bit), ``destandardize``
    writes float32 maps; either layout."""
    out = triton_interpreted(_REDUCED_PASSES)
    assert len(out) == 4 and all(all(v) for v in out.values()), out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_on_cuda_a_reduced_codec_runs_the_triton_passes_with_the_torch_paths_bits(
    monkeypatch, precision
):
    """On CUDA a reduced codec's standardisation, bias + PReLU, AF gains and de-standardisation
    run as the Triton passes: its symbols and maps equal the torch paths' bit for bit (deterministic
    mode), and stay within the dtype's rounding of the float32 codec's."""
    import v2x.semcom.deepjscc as deepjscc
    import v2x.semcom.deepjscc_layers as layers
    import v2x.semcom.deepjscc_receiver as receiver
    import v2x.semcom.deepjscc_triton as kernels
    from v2x.common import triton_available

    if not triton_available():
        pytest.skip("triton not installed")
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    x = _maps("cuda")
    calls = []
    for name in ("bias_prelu_", "scale_add", "destandardize", "standardize"):
        real = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _r=real, _n=name, **k: calls.append(_n)
                            or _r(*a, **k))  # fmt: skip
    with torch.no_grad():
        want = _code(_codec("fp32", "cuda"), x)
        fused = _code(_codec(precision, "cuda"), x)
        assert {"bias_prelu_", "scale_add", "destandardize", "standardize"} <= set(calls)
        for module in (deepjscc, layers, receiver):
            monkeypatch.setattr(module, "triton_available", lambda: False)
        plain = _code(_codec(precision, "cuda"), x)
    assert torch.equal(fused[0], plain[0]) and torch.equal(fused[1], plain[1])
    assert fused[1].dtype == torch.float32 and fused[1].stride() == plain[1].stride()
    for g, w in zip(fused, want):
        assert 0 < _relative(g, w) < TOLERANCE[precision], (precision, _relative(g, w))


def test_a_sweep_passes_the_precision_to_its_codec_and_keys_its_cells_by_it():
    """``codec_options.deepjscc.precision`` reaches the sweep's codec arguments, and the cells
    of an fp16 codec have another setting key than the fp32 codec's (never reused for them);
    a bad value is refused when the sweep is planned."""
    from v2x.sweep_group import setting_key
    from v2x.sweep_plan import plan_sweep

    data = {"source": "synthetic", "split": "test", "num_frames": 1, "hash": "0"}
    keys = {}
    for precision in ("fp32", "fp16"):
        plan = plan_sweep({
            "grid": {"codecs": ["deepjscc"], "fusions": ["max"], "snr_db": [0.0]},
            "codec_options": {"deepjscc": {"precision": precision}}, "quiet": True,
        })  # fmt: skip
        (group,) = [g for g in plan.groups if g.codec == "deepjscc"]
        assert group.codec_kwargs["precision"] == precision
        keys[precision] = setting_key(group, data)
    assert keys["fp32"] != keys["fp16"]
    with pytest.raises(ValueError, match="deepjscc: 'precision'.*got 'half'"):
        plan_sweep({"grid": {"codecs": ["deepjscc"], "fusions": ["max"], "snr_db": [0.0]},
                    "codec_options": {"deepjscc": {"precision": "half"}}, "quiet": True})  # fmt: skip


_STANDARDIZE = r"""
import json, torch
from v2x.semcom.deepjscc_triton import standardize
torch.manual_seed(0)
out = {}
for shape in ((3, 5, 6, 7), (2, 128, 4, 4), (1, 1, 3, 3)):
    c = shape[1]
    x = torch.randn(*shape) * 3 + 1
    m, s = torch.randn(c), torch.rand(c) * 2 + 0.25
    inputs = {"nchw": x, "nhwc": x.contiguous(memory_format=torch.channels_last),
              "strided": torch.randn(shape[0], c, shape[2], 2 * shape[3])[..., ::2]}
    for layout, xin in inputs.items():
        want = (xin - m[None, :, None, None]) / s[None, :, None, None]
        for dtype in (torch.float32, torch.float16):
            got = standardize(xin, m, s, dtype)
            out[f"{shape}/{layout}/{dtype}"] = [
                got.dtype == dtype and torch.equal(got, want.to(dtype)),
                got.is_contiguous(memory_format=torch.channels_last),
            ]
try:
    standardize(torch.randn(2, 3, 4, 4).half(), torch.zeros(3), torch.ones(3))
    out["refused"] = False
except ValueError as err:
    out["refused"] = "float32 x" in str(err)
print(json.dumps(out))
"""


def test_standardize_rounds_as_torch_in_the_interpreter(triton_interpreted):
    """``standardize`` (one Triton pass) gives torch's ``(x − m) / s`` bit for bit (IEEE
    division), rounded once to float16 where asked, channels-last, from channels-first,
    channels-last and strided inputs; a non-float32 input is refused."""
    out = triton_interpreted(_STANDARDIZE)
    assert out.pop("refused") is True
    assert len(out) == 18 and all(all(v) for v in out.values()), out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_standardize_gives_torchs_bits_and_the_float32_codec_its_symbols(monkeypatch):
    """On CUDA ``standardize`` equals torch's ``((x − m) / s).to(dtype)`` bit for bit, from
    either layout; the float32 codec's symbols and maps are the same with it as with torch's
    passes."""
    import v2x.semcom.deepjscc as deepjscc
    from v2x.common import triton_available
    from v2x.semcom.deepjscc_triton import standardize

    if not triton_available():
        pytest.skip("triton not installed")
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    g = torch.Generator(device="cuda").manual_seed(2)
    for shape in ((3, 5, 6, 7), (4, 384, 64, 96)):
        x = torch.randn(*shape, device="cuda", generator=g) * 3 + 1
        m = torch.randn(shape[1], device="cuda", generator=g)
        s = torch.rand(shape[1], device="cuda", generator=g) + 0.25
        want = (x - m[None, :, None, None]) / s[None, :, None, None]
        for layout in (torch.contiguous_format, torch.channels_last):
            for dtype in (torch.float32, torch.float16, torch.bfloat16):
                got = standardize(x.contiguous(memory_format=layout), m, s, dtype)
                assert torch.equal(got, want.to(dtype)), (shape, layout, dtype)
    x = _maps("cuda")
    with torch.no_grad():
        fused = _code(_codec("fp32", "cuda"), x)
        monkeypatch.setattr(deepjscc, "triton_available", lambda: False)
        plain = _code(_codec("fp32", "cuda"), x)
    assert torch.equal(fused[0], plain[0]) and torch.equal(fused[1], plain[1])
