"""The block code's QAM ends in Triton (``v2x.semcom.qam_triton``) against the torch path of
``BlockCode`` (itself tested against Sionna's mapper and demapper): the transmitter's symbols bit
for bit, the receiver's LLRs to float32 rounding; in Triton's CPU interpreter and on CUDA."""

from __future__ import annotations

import pytest
import torch

_ONE_PASS = r"""
import json
import torch
from v2x.semcom.qam_triton import codeword_llrs
from v2x.semcom.fec import _NO_ERASED, _NO_MIN, BlockCode

out = {}
g = torch.Generator().manual_seed(3)
for mcs in (0, 9, 17, 27):  # QPSK with repeats, 16-, 64- and 256-QAM
    code = BlockCode(mcs, 1024)
    bits = torch.randint(0, 2, (3, code.payload_bits), generator=g).float()
    x = code.encode(bits)
    worst = 0.0
    for no in (torch.full((3, 1), 0.02), torch.rand(3, x.shape[1], generator=g) * 2 + 1e-3):
        noise = torch.complex(torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g))
        y = x + noise * (no / 2) ** 0.5
        no = no.expand(x.shape).clone() if no.shape[1] > 1 else no
        if no.shape[1] > 1:
            no[0, :7] = float("inf")  # erased
            no[1, :3] = float("nan")
            no[2, :2] = 0.0  # below the floor
        want = code.llr(y, no)  # the torch path (CPU)
        got = codeword_llrs(y, no, code._llr_tables(y.device), _NO_ERASED, _NO_MIN)
        if code.ldpc_bits < code.coded_bits:  # the repeats, added as BlockCode.llr adds them
            idx = code._repeat_index.expand(3, -1)
            got = torch.zeros(3, code.ldpc_bits).scatter_add_(1, idx, got)
        err = ((got - want).abs() / (1e-5 * want.abs().max() + 1e-5 * want.abs())).max()
        worst = max(worst, float(err))
    out[str(mcs)] = [worst, list(got.shape) == list(want.shape)]
try:
    codeword_llrs(torch.zeros(2, 3, dtype=torch.complex64), torch.ones(1), code._llr_tables("cpu"),
                  _NO_ERASED, _NO_MIN)
    out["refused"] = False
except ValueError as err:
    out["refused"] = "scramble signs" in str(err)
print(json.dumps(out))
"""


def test_one_pass_llr_kernel_gives_the_torch_paths_llrs_in_the_interpreter(triton_interpreted):
    """``qam_triton.codeword_llrs`` (noise clean-up, exact demapper and descrambling in one
    Triton pass) gives ``BlockCode.llr``'s torch LLRs to float32 rounding for QPSK (with the
    repeats of MCS 0), 16-, 64- and 256-QAM, per-row and per-symbol noise, erased (inf), NaN
    and zero noise variances; a block of the wrong length is refused by name."""
    out = triton_interpreted(_ONE_PASS)
    assert out.pop("refused") is True
    assert len(out) == 4
    for mcs, (worst, same_shape) in out.items():
        assert same_shape and worst <= 1.0, (mcs, worst)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mcs", [0, 17, 27])
def test_on_cuda_block_llrs_in_one_pass_equal_the_torch_paths(mcs, monkeypatch):
    """On CUDA ``BlockCode.llr`` takes the one-pass Triton kernel, with the torch path's LLRs to
    float32 rounding and the same hard decisions wherever the LLR is not near zero."""
    import v2x.semcom.fec as fec
    from v2x.common import triton_available

    if not triton_available():
        pytest.skip("triton not installed")
    g = torch.Generator().manual_seed(mcs)
    code = fec.BlockCode(mcs, 1024, device="cuda:0")
    bits = torch.randint(0, 2, (64, code.payload_bits), generator=g).float().cuda()
    x = code.encode(bits)
    no = (torch.rand(64, 1, generator=g) * 0.3 + 0.01).cuda()
    noise = torch.complex(torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g))
    y = x + noise.cuda() * (no / 2) ** 0.5
    with torch.no_grad():
        fast = code.llr(y, no)
        monkeypatch.setattr(fec, "triton_available", lambda: False)
        plain = code.llr(y, no)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5 * plain.abs().max().item())
    sure = plain.abs() > 1e-3 * plain.abs().max()
    assert torch.equal((fast > 0)[sure], (plain > 0)[sure])


_MAP = r"""
import json
import torch
from v2x.semcom.fec import BlockCode
from v2x.semcom.ldpc_encode_triton import codewords
from v2x.semcom.qam_triton import coded_symbols

out = {}
g = torch.Generator().manual_seed(5)
for mcs in (0, 2, 9, 17, 27):  # QPSK with and without repeats, 16-, 64- and 256-QAM; BG 1 and 2
    code = BlockCode(mcs, 1024)
    bits = torch.randint(0, 2, (3, code.payload_bits), generator=g).float()
    info = code._crc_enc(bits)
    same = []
    for rv in (0, 1, 2, 3):
        tables, positions, scramble, points = code._encode_tables(info.device, rv)
        c = codewords(info, tables)
        got = coded_symbols(c, scramble, points, code.mcs.qm, code.coded_bits, positions)
        same.append(torch.equal(got, code.encode(bits, rv=rv)))  # Sionna's encoder + mapper
    out[str(mcs)] = same
try:
    coded_symbols(c.float(), scramble, points, code.mcs.qm, code.coded_bits, positions)
    out["refused"] = False
except ValueError as err:
    out["refused"] = "uint8" in str(err)
print(json.dumps(out))
"""


def test_triton_encoder_and_mapper_give_sionnas_symbols_in_the_interpreter(
    triton_interpreted,
):
    """``ldpc_encode_triton.codewords`` then ``qam_triton.coded_symbols`` (LDPC encoding, rate
    matching, repeat, scrambling and mapping in Triton) give ``BlockCode.encode``'s symbols
    (Sionna's ``LDPC5GEncoder`` and ``Mapper``) bit for bit: QPSK with the repeats of MCS 0 and
    without, 16-, 64- and 256-QAM, base graphs 1 and 2, redundancy versions 0–3; float
    codewords are refused by name."""
    out = triton_interpreted(_MAP)
    assert out.pop("refused") is True
    assert out == {m: [True] * 4 for m in ("0", "2", "9", "17", "27")}, out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mcs", [0, 17, 27])
def test_on_cuda_block_symbols_in_one_pass_equal_the_torch_paths(mcs, monkeypatch):
    """On CUDA ``BlockCode.encode`` takes the Triton encoder and mapper, with the symbols of
    Sionna's encoder and mapper bit for bit (first transmission and an incremental-redundancy
    version)."""
    import v2x.semcom.fec as fec
    from v2x.common import triton_available

    if not triton_available():
        pytest.skip("triton not installed")
    g = torch.Generator().manual_seed(mcs)
    code = fec.BlockCode(mcs, 1024, device="cuda:0")
    bits = torch.randint(0, 2, (256, code.payload_bits), generator=g).float().cuda()
    with torch.no_grad():
        fast = [code.encode(bits), code.encode(bits, rv=3)]
        monkeypatch.setattr(fec, "triton_available", lambda: False)
        plain = [code.encode(bits), code.encode(bits, rv=3)]
    assert all(torch.equal(a, b) for a, b in zip(fast, plain))
