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

