"""DeepJSCC's ``precision`` option: the encoder's and decoder's maps in float16 / bfloat16 in
inference (``v2x.semcom.deepjscc_layers``), complex64 symbols, float32 decoded maps but in CUDA
inference (there the one-pass de-standardisation rounds them once to the codec's dtype, which
the fusion kernels read as they are), float32 training; and the encoder's one-pass
standardisation (``deepjscc_triton.standardize``).

Oracles: torch's float32 operations rounded once to the maps' dtype (the Triton passes in the
interpreter and on CUDA), the float32-output path's maps rounded once (``.to(dtype)``), and the
float32 codec (the reduced one within the dtype's rounding).
"""

from __future__ import annotations

from dataclasses import replace

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
    run as the Triton passes: its symbols equal the torch paths' bit for bit (deterministic
    mode) and its maps, of the codec's dtype there, the torch paths' float32 maps rounded once;
    both stay within the dtype's rounding of the float32 codec's."""
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
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    assert fused[1].dtype == dtype and plain[1].dtype == torch.float32
    assert torch.equal(fused[0], plain[0]) and torch.equal(fused[1], plain[1].to(dtype))
    assert fused[1].stride() == plain[1].stride()
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


_DESTANDARDIZE_REDUCED = r"""
import json, torch
from v2x.semcom.deepjscc_triton import destandardize
torch.manual_seed(0)


def truncated(ref):  # float32 -> bfloat16 by dropping the low 16 bits (the interpreter's cast)
    return (ref.view(torch.int32) & -65536).view(torch.float32).to(torch.bfloat16)


out = {}
for shape in ((3, 5, 6, 7), (2, 128, 4, 4)):
    c = shape[1]
    x = torch.randn(*shape) * 3
    s, m, b = torch.rand(c) + 0.5, torch.randn(c), torch.randn(c)
    for src in (torch.float32, torch.float16):
        for layout in ("nchw", "nhwc"):
            fmt = torch.contiguous_format if layout == "nchw" else torch.channels_last
            xin = x.to(src).contiguous(memory_format=fmt)
            for bias in (None, b):
                y = xin.float() if bias is None else xin.float() + bias[None, :, None, None]
                ref = y * s[None, :, None, None] + m[None, :, None, None]
                for dtype in (torch.float16, torch.bfloat16):
                    got = destandardize(xin, s, m, bias, dtype=dtype)
                    given = torch.empty_like(xin, dtype=dtype)
                    into = destandardize(xin, s, m, bias, out=given, dtype=dtype)
                    rounded = ref.to(dtype)
                    if dtype == torch.float16:
                        same = torch.equal(got, rounded)
                    else:  # on CUDA round to nearest even; Triton's interpreter truncates
                        same = torch.equal(got, rounded) or torch.equal(got, truncated(ref))
                    out[f"{shape}/{src}/{layout}/{bias is not None}/{dtype}"] = [
                        got.dtype == dtype and same,
                        got.stride() == xin.stride() and into is given and torch.equal(given, got),
                        not torch.equal(got.float(), ref),  # rounded: not vacuous
                    ]
x = torch.randn(2, 3, 4, 4)
refusals = []
for kw in ({"out": torch.empty_like(x), "dtype": torch.float16},  # a float32 out for float16
           {"out": torch.empty_like(x, dtype=torch.float16)},  # float16 out, float32 result
           {"dtype": torch.float64}):
    try:
        destandardize(x, torch.ones(3), torch.zeros(3), **kw)
        refusals.append(False)
    except ValueError as err:
        refusals.append("destandardize" in str(err))
out["refused"] = refusals
print(json.dumps(out))
"""


def test_destandardize_rounds_once_to_float16_and_bfloat16_in_the_interpreter(triton_interpreted):
    """``destandardize`` with a float16 / bfloat16 result computes in float32 as torch does and
    rounds once at the store: torch's ``((x.float() + b) · s + m).to(dtype)`` bit for bit, with
    and without a bias, from float32 and float16 maps, either layout, also into a given tensor
    of that dtype; an ``out`` of another dtype and a result dtype outside ``MAP_DTYPES`` are
    refused. (Triton 3's interpreter converts float32 to bfloat16 by truncation, CUDA rounds to
    nearest even: bfloat16 is bit for bit one or the other here, the nearest on CUDA, tested
    there.)"""
    out = triton_interpreted(_DESTANDARDIZE_REDUCED)
    assert out.pop("refused") == [True, True, True]
    assert len(out) == 32 and all(all(v) for v in out.values()), out


def test_decode_target_takes_a_target_of_the_codecs_decoded_dtype_only():
    """``decode_target`` hands back ``meta[DECODE_INTO]`` only when it has the dtype asked for
    (float32 unless the codec says otherwise), shape, device and layout; on the CPU a reduced
    codec decodes to float32 (``decoded_dtype``) and writes into no float16 target."""
    from v2x.semcom.base import DECODE_INTO, Transmission, decode_target

    shape = (2, 3, 4, 5)
    nhwc = torch.channels_last
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        target = torch.empty(shape, dtype=dtype, memory_format=nhwc)
        rx = Transmission(None, None, meta={DECODE_INTO: target})
        for asked in (torch.float32, torch.float16, torch.bfloat16):
            got = decode_target(rx, shape, torch.device("cpu"), nhwc, asked)
            assert (got is target) == (asked == dtype), (dtype, asked)
        assert (decode_target(rx, shape, torch.device("cpu"), nhwc) is target) == (
            dtype == torch.float32
        )  # fmt: skip
        assert decode_target(rx, (2, 3, 5, 4), torch.device("cpu"), nhwc, dtype) is None
    codec, x = _codec("fp16"), _maps()
    with torch.no_grad():
        assert codec.decoded_dtype("cpu") == torch.float32
        link = LinkState.from_snr(torch.tensor([0.0, 5.0, 10.0, 20.0]))
        tx = codec.encode(x, link)
        half = torch.empty_like(x, dtype=torch.float16, memory_format=nhwc)
        maps = codec.decode(replace(tx, meta={**tx.meta, DECODE_INTO: half}), link)
    assert maps.dtype == torch.float32 and maps is not half


_MIXED_FUSION = r"""
import json, torch
from v2x.perception.bev import BEVGrid
from v2x.perception.warp import perturb_poses, relative_level_transforms, warp_sampling_grid
from v2x.perception.warp_fusion_triton import fuse_collaborators, warp_fuse

grid = BEVGrid(x_range_m=(-6.4, 6.4), y_range_m=(-3.2, 3.2))
n, m, c, h, w = 2, 2, 12, 4, 8
g = torch.Generator().manual_seed(0)
poses = torch.eye(4, dtype=torch.float64).repeat(n, m + 1, 1, 1)
poses[..., 0, 3] = torch.arange(m + 1, dtype=torch.float64) * 4.0  # partly off the grid
rel = relative_level_transforms(perturb_poses(poses, 1.0, 0.3, generator=g))
sample_grid, coverage = warp_sampling_grid(rel[:, 1:], grid, h, w)
full_grid, _ = warp_sampling_grid(rel, grid, h, w)
valid = coverage.view(n, m, 1, h, w) & (torch.rand(n, m, 1, h, w, generator=g) < 0.8)
ego = torch.randn(n, 1, c, h, w, generator=g) * 2  # the detector's float32 maps
maps = (torch.randn(n * m, c, h, w, generator=g) * 2).contiguous(memory_format=torch.channels_last)
out = {}
for dtype in (torch.float16, torch.bfloat16):
    collab = maps.to(dtype).view(n, m, c, h, w)  # decoded maps of the codec's dtype
    everyone = torch.cat([ego.to(dtype), collab], dim=1)
    for mode in ("max", "attention"):
        got = fuse_collaborators(ego, collab, sample_grid, valid, mode, block_cells=16)
        want = fuse_collaborators(ego, collab.float(), sample_grid, valid, mode, block_cells=16)
        whole = warp_fuse(everyone, full_grid, mode, block_cells=16)
        whole_want = warp_fuse(everyone.float(), full_grid, mode, block_cells=16)
        out[f"{dtype}/{mode}"] = [got.dtype == torch.float32, torch.equal(got, want),
                                  torch.equal(whole, whole_want), bool(valid.any())]
print(json.dumps(out))
"""


def test_the_fusion_kernels_read_reduced_decoded_maps_as_their_float32_values_interpreted(
    triton_interpreted,
):
    """The sweep's fusion kernels take a reduced codec's decoded maps as they are: float16 /
    bfloat16 collaborators beside the float32 ego (``fuse_collaborators``) or every agent's map
    of that dtype (``warp_fuse``) give the fused maps of the same values in float32, bit for
    bit in the interpreter (each value widened exactly on its load; on CUDA within float32
    rounding, tested there)."""
    out = triton_interpreted(_MIXED_FUSION)
    assert len(out) == 4 and all(all(v) for v in out.values()), out


def _blocks(codec: DeepJSCCCodec, x: torch.Tensor) -> tuple[list, list[LinkState]]:
    """``x`` as 3 condition blocks (0 dB: the gate closes; 5–20 dB; 20 dB) through
    ``encode_blocks`` with deterministic noise: the received blocks and their links."""
    snrs = ([0.0] * 4, [5.0, 10.0, 15.0, 20.0], [20.0] * 4)
    links = [LinkState.from_snr(torch.tensor(s, device=x.device)) for s in snrs]
    rows = x.unsqueeze(0).expand(len(links), *x.shape)
    g = torch.Generator(device=x.device).manual_seed(4)
    received = []
    for tx in codec.encode_blocks(rows, links):
        noise = torch.randn(tx.symbols.shape, generator=g, device=x.device, dtype=torch.complex64)
        received.append(tx.received(tx.symbols + 0.1 * noise, None))
    return received, links


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("activation", ["none", "relu"])
def test_on_cuda_a_reduced_codec_decodes_to_its_dtype_rounded_once(
    monkeypatch, precision, activation
):
    """In CUDA inference a reduced codec's ``decode_blocks`` returns channels-last maps of its
    dtype equal, bit for bit, to the float32-output path's maps (the de-standardisation writing
    float32, the pass before) rounded once (``.to(dtype)``), the ReLU clamp and the closed gate's
    zeros included; ``decode`` too, written into a ``DECODE_INTO`` target of that dtype (a
    float32 one is not written into). The fp32 codec's maps stay float32."""
    from v2x.common import triton_available
    from v2x.semcom.base import DECODE_INTO

    if not triton_available():
        pytest.skip("triton not installed")
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    x = _maps("cuda")
    codec = _codec(precision, "cuda")
    codec.output_activation = activation
    codec.set_gate({float(r): 2.5 for r in codec.gate_ratios})  # 0 dB: closed
    nhwc = torch.channels_last
    with torch.no_grad():
        assert codec.decoded_dtype("cuda") == dtype and codec.decoded_dtype("cpu") == torch.float32
        received, links = _blocks(codec, x)
        got = codec.decode_blocks(received, links)
        singles = []
        for rx, link in zip(received, links):
            target = torch.empty(x.shape, dtype=dtype, device="cuda", memory_format=nhwc)
            wide = torch.empty(x.shape, device="cuda", memory_format=nhwc)
            one = codec.decode(rx, link)
            into = codec.decode(replace(rx, meta={**rx.meta, DECODE_INTO: target}), link)
            not_into = codec.decode(replace(rx, meta={**rx.meta, DECODE_INTO: wide}), link)
            assert into is target and not_into is not wide and not_into.dtype == dtype
            assert torch.equal(into, one) and torch.equal(not_into, one)
            singles.append(one)
        # the float32-output path: the pass writing float32, as before
        monkeypatch.setattr(codec, "decoded_dtype", lambda device: torch.float32)
        want = codec.decode_blocks(received, links)
        wants = [codec.decode(rx, link) for rx, link in zip(received, links)]
    assert got.dtype == dtype and want.dtype == torch.float32
    assert got.is_contiguous(memory_format=nhwc) and got.stride() == want.stride()
    assert torch.equal(got, want.to(dtype)) and not torch.equal(got.float(), want)
    assert torch.equal(got[:4], torch.zeros_like(got[:4]))  # the closed gate
    assert bool((got[4:] != 0).any()) and (activation == "none" or bool((got >= 0).all()))
    for one, wide in zip(singles, wants):
        assert one.dtype == dtype and wide.dtype == torch.float32
        assert torch.equal(one, wide.to(dtype))
    full = _codec("fp32", "cuda")
    with torch.no_grad():
        assert full.decoded_dtype("cuda") == torch.float32
        received, links = _blocks(full, x)
        assert full.decode_blocks(received, links).dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_on_cuda_the_fusion_of_reduced_decoded_maps_equals_that_of_their_float32_values(
    precision,
):
    """The sweep's fusion of a reduced codec's decoded maps (their dtype, channels-last) beside
    the detector's float32 ego maps: ``fuse_at_ego`` (the one-kernel ``fuse_collaborators``)
    and ``warp_fuse`` give the fused maps of the same maps ``.float()`` within float32 rounding
    (max: exactly), and so does a fusion without a kernel (its torch path converts them)."""
    from v2x.common import triton_available
    from v2x.perception.bev import BEVGrid
    from v2x.perception.ego_fusion import _kernel_mode, fuse_at_ego
    from v2x.perception.fusion import build_fusion
    from v2x.perception.warp import perturb_poses, relative_level_transforms, warp_sampling_grid
    from v2x.perception.warp_fusion_triton import warp_fuse

    if not triton_available():
        pytest.skip("triton not installed")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    codec = _codec(precision, "cuda")
    x = _maps("cuda")  # [4, 12, 16, 20]
    with torch.no_grad():
        received, links = _blocks(codec, x)
        decoded = codec.decode_blocks(received, links)[4:]  # 8 maps that arrived
    assert decoded.dtype == dtype and decoded.is_contiguous(memory_format=torch.channels_last)
    n, m, (c, h, w) = 4, 2, decoded.shape[1:]
    collab = decoded.view(n, m, c, h, w)
    g = torch.Generator().manual_seed(5)
    poses = torch.eye(4, dtype=torch.float64).repeat(n, m + 1, 1, 1)
    poses[..., 0, 3] = torch.arange(m + 1, dtype=torch.float64) * 3.0  # partly off the grid
    poses = perturb_poses(poses, 1.0, 0.3, generator=g)
    grid = BEVGrid(x_range_m=(-8.0, 8.0), y_range_m=(-6.4, 6.4))
    rel = relative_level_transforms(poses).to("cuda")
    sample_grid, coverage = warp_sampling_grid(rel[:, 1:], grid, h, w)
    valid = coverage.view(n, m, 1, h, w) & (torch.rand(n, m, 1, h, w, generator=g) < 0.8).cuda()
    ego = (torch.randn(n, 1, c, h, w, generator=g) * 2).cuda()  # the detector's float32 maps
    head = torch.nn.Module()
    head.head = lambda f: (f[:, :1], f[:, 1:2])
    with torch.no_grad():
        for mode in ("max", "attention", "mean"):
            fusion = build_fusion(mode)
            assert (_kernel_mode(fusion, ego, collab) is None) == (mode == "mean")
            got = fuse_at_ego(head, fusion, ego, collab, sample_grid, valid)[0]
            want = fuse_at_ego(head, fusion, ego, collab.float(), sample_grid, valid)[0]
            assert got.dtype == torch.float32
            if mode == "attention":
                torch.testing.assert_close(got, want)
            else:
                assert torch.equal(got, want), mode
        everyone = torch.cat([ego.to(dtype), collab], dim=1)  # [N, 1 + M, C, h, w] of dtype
        full_grid, _ = warp_sampling_grid(rel, grid, h, w)
        for mode in ("max", "attention"):
            got = warp_fuse(everyone, full_grid, mode, block_cells=4)
            want = warp_fuse(everyone.float(), full_grid, mode, block_cells=4)
            if mode == "attention":
                torch.testing.assert_close(got, want)
            else:
                assert torch.equal(got, want), mode
