"""The analog transmitter's one read of its maps for their scale
(``analog_triton.sum_of_squares``): each map's sum of squares in float64, against the sum of the
float64 squares computed apart (an independent oracle: every square of a float32 or float16
value is exact in float64, so the two differ only by the order of float64 additions)."""

from __future__ import annotations

import pytest
import torch

_SCRIPT = r"""
import json, torch
from v2x.semcom.analog_triton import sum_of_squares, takes_squares
from v2x.semcom.identity import AnalogCodec
torch.manual_seed(0)
out = {}
for shape in ((3, 5, 17, 13), (2, 64, 32, 64), (1, 4097), (0, 3, 4, 4)):
    for dtype in (torch.float32, torch.float16):
        x = (torch.randn(*shape) * 3).to(dtype)
        want = x.double().square().sum(dim=tuple(range(1, x.dim())))
        layouts = [x] + ([x.contiguous(memory_format=torch.channels_last)] if x.dim() == 4 else [])
        for i, maps in enumerate(layouts):
            got = sum_of_squares(maps)
            out[f"{shape} {dtype} {i}"] = (
                got.dtype == torch.float64 and got.shape == want.shape
                and torch.allclose(got, want, rtol=1e-14, atol=0)
            )
out["strided_not_taken"] = not takes_squares(torch.zeros(4, 6)[:, ::2])
try:
    sum_of_squares(torch.zeros(4, 6)[:, ::2])
    out["refused"] = False
except ValueError as err:
    out["refused"] = "dense" in str(err) and "(4, 3)" in str(err)
# the codec's scale and symbols through the kernel (its CUDA gate opened) and through torch
feats = torch.randn(4, 6, 32, 64) * 2
ref = AnalogCodec._scaled_pairs(feats)
AnalogCodec._sums_in_one_pass = staticmethod(lambda f: True)
got = AnalogCodec._scaled_pairs(feats)
out["codec"] = torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
print(json.dumps(out))
"""


def test_sum_of_squares_equals_the_float64_sum_of_the_squares(triton_interpreted):
    """Channels-first and channels-last maps of float32 and float16 (blocks cut short, one map
    longer than a block, no maps): the float64 sums of squares to float64 rounding; a strided
    map is not taken and refused by name; the analog codec's scale and symbols through the
    kernel equal torch's ``vector_norm`` path at this size."""
    out = triton_interpreted(_SCRIPT)
    assert out.pop("strided_not_taken") and out.pop("refused")
    assert out.pop("codec"), "the codec's scale or symbols moved"
    assert len(out) == 14 and all(out.values()), out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_analog_scale_is_read_in_one_pass():
    """On CUDA the kernel runs for the codec's encoder: each map's float64 sum of squares to
    float64 rounding, in both layouts and for float16 maps, and the codec's scale and symbols
    equal to float32 rounding to those of the CPU path on the same maps."""
    from v2x.common import triton_available
    from v2x.semcom.analog_triton import sum_of_squares
    from v2x.semcom.identity import AnalogCodec

    if not triton_available():
        pytest.skip("triton not installed")
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(8, 384, 128, 128, generator=g) * 2
    want = feats.double().square().sum(dim=(1, 2, 3))
    for maps in (feats, feats.contiguous(memory_format=torch.channels_last)):
        got = sum_of_squares(maps.cuda()).cpu()
        torch.testing.assert_close(got, want, rtol=1e-13, atol=0)
    half = feats.half()
    torch.testing.assert_close(
        sum_of_squares(half.cuda()).cpu(), half.double().square().sum(dim=(1, 2, 3)),
        rtol=1e-13, atol=0,
    )  # fmt: skip
    with torch.no_grad():
        assert AnalogCodec._sums_in_one_pass(feats.cuda())
        scale, symbols = AnalogCodec._scaled_pairs(feats.cuda())
        ref_scale, ref_symbols = AnalogCodec._scaled_pairs(feats)
    torch.testing.assert_close(scale.cpu(), ref_scale, rtol=1.2e-7, atol=0)
    torch.testing.assert_close(symbols.cpu(), ref_symbols, rtol=2.5e-7, atol=1e-30)
