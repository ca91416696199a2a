"""The separable QAM demapper against Sionna's ``Demapper("app", "qam", Qm)`` (the oracle: the
same exact LLRs computed over all 2^Qm points), for every modulation of the MCS table."""

from __future__ import annotations

import pytest
import torch

from v2x.semcom.demap import SeparableQamDemapper

sionna_mapping = pytest.importorskip("sionna.phy.mapping")


@pytest.mark.parametrize("qm", [2, 4, 6, 8])
def test_llrs_equal_sionnas_app_demapper(qm):
    g = torch.Generator().manual_seed(qm)
    mapper = sionna_mapping.Mapper("qam", qm)
    reference = sionna_mapping.Demapper("app", "qam", qm)
    ours = SeparableQamDemapper(mapper.constellation(), qm)
    bits = torch.randint(0, 2, (6, 200 * qm), generator=g).float()
    x = mapper(bits).to(torch.complex64)
    for no_value in (1e-3, 0.1, 1.0, 10.0):
        noise = torch.complex(torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g))
        y = x + noise * (no_value / 2) ** 0.5
        no = torch.full(y.shape, no_value)
        no[0, :5] = 1e12  # erased symbols (the chain's marker): LLRs ~ 0
        expected, got = reference(y, no), ours(y, no)
        assert got.shape == expected.shape == (6, 200 * qm) and got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max())
        assert got[0, : 5 * qm].abs().max() < 1e-6
    # the LLR's sign is the logit convention: positive means bit 1 more likely
    clean = ours(x, torch.full(x.shape, 1e-2))
    assert torch.equal(clean > 0, bits.bool())


def test_broadcast_noise_and_batch_shape():
    mapper = sionna_mapping.Mapper("qam", 4)
    ours = SeparableQamDemapper(mapper.constellation(), 4)
    y = mapper(torch.randint(0, 2, (2, 3, 40)).float()).to(torch.complex64)  # [2, 3, 10]
    assert ours(y, torch.tensor(0.5)).shape == (2, 3, 40)


def test_a_non_separable_labelling_is_refused():
    points = torch.tensor([1 + 1j, -1 + 1j, -1 - 1j, 1 - 1j], dtype=torch.complex64)  # circular
    with pytest.raises(ValueError, match="both the real and the imaginary part"):
        SeparableQamDemapper(points / 2**0.5, 2)
    with pytest.raises(ValueError, match="3 points for 2 bits"):
        SeparableQamDemapper(points[:3], 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("qm", [2, 8])
def test_llrs_on_cuda_equal_the_cpu_ones(qm):
    mapper = sionna_mapping.Mapper("qam", qm)
    ours = SeparableQamDemapper(mapper.constellation(), qm)
    g = torch.Generator().manual_seed(1)
    bits = torch.randint(0, 2, (4, 100 * qm), generator=g).float()
    x = mapper(bits).to("cpu", torch.complex64)  # (Sionna maps on its default device, a GPU)
    y = x + 0.2 * torch.complex(torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g))
    no = torch.full(y.shape, 0.08)
    expected = ours(y, no)
    got = ours(y.cuda(), no.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max())
    torch.testing.assert_close(ours(y, no), expected, rtol=0, atol=0)  # back on the CPU


_ONE_PASS = r"""
import json
import torch
from v2x.semcom.demap_triton import codeword_llrs
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
    """``demap_triton.codeword_llrs`` (noise clean-up, exact demapper and descrambling in one
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
