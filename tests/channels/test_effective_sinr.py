"""What the receiver knows about its SINR (v2x.channels.effective_sinr, ChannelState.sinr,
Channel.sinr_feedback)."""

from __future__ import annotations

import math

import pytest
import torch

from v2x.channels import CHANNELS, build_channel
from v2x.channels.effective_sinr import (
    analog_effective_snr_db,
    eesm_db,
    post_equalization_sinr,
    receiver_sinr,
)

FLAT = ["awgn", "rayleigh", "rician", "rayleigh_fast", "rician_fast", "erasure_iid", "erasure_ge"]


def _symbols(batch: int, n: int) -> torch.Tensor:
    phase = 2 * math.pi * torch.rand(batch, n)
    return torch.polar(torch.ones(batch, n), phase).to(torch.complex64)


@pytest.mark.parametrize("name", FLAT)
def test_channels_without_frequency_selectivity_report_the_plain_snr(name: str) -> None:
    """No per-RE SINR and no feedback: link adaptation and gates keep using ``snr_db``."""
    torch.manual_seed(0)
    ch = build_channel(name)
    _, state = ch(_symbols(3, 40), torch.tensor([0.0, 10.0, 20.0]))
    assert state.sinr is None and receiver_sinr(state) is None
    assert ch.sinr_feedback(torch.tensor([0.0, 10.0])) is None


def test_every_registered_channel_is_covered() -> None:
    assert set(CHANNELS.names()) <= set(FLAT) | {"tdl", "cdl", "erasure", "erasure_bler"}


def test_perfect_csi_sinr_is_sionnas_lmmse_snr() -> None:
    """With perfect CSI the reported SINR is ``|h|²/no``, which Sionna's LMMSE equaliser also
    reports (as ``1 / no_eff``): an independent computation of the same quantity."""
    torch.manual_seed(1)
    ch = build_channel("tdl", estimator="perfect")
    y, st = ch(_symbols(4, 1000), torch.tensor([0.0, 5.0, 10.0, 20.0]))
    torch.testing.assert_close(st.sinr, 1.0 / st.no_eff, rtol=2e-3, atol=1e-6)
    torch.testing.assert_close(st.sinr, st.h.abs().square() / st.no[:, None], rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("model", ["A", "C"])
def test_ls_sinr_includes_the_interpolation_error_that_sionna_leaves_out(model: str) -> None:
    """At high SNR the equalised symbols' error, normalised by the reported noise ``1/SINR``,
    has unit power for ``state.sinr``; with Sionna's ``no_eff`` (noise on the pilots only) it is
    several times larger: the SINR it implies is too high (what made link adaptation pick MCSs
    that could not decode)."""
    torch.manual_seed(2)
    ch = build_channel("tdl", model=model)
    x = _symbols(64, 864)
    for snr_db, sionna_min in ((20.0, 1.15), (30.0, 2.5)):
        y, st = ch(x, torch.full((64,), snr_db))
        err = (y - x).abs().square()  # y: Sionna's unbiased LMMSE estimate of x
        assert float((err * st.sinr).mean()) == pytest.approx(1.0, abs=0.15)
        assert float((err / st.no_eff).mean()) > sionna_min


def test_regression_model_by_hand() -> None:
    """``h = a ĥ + ε``: an LS estimate ``ĥ = h + w`` is shrunk by ``a = 1/(1+σw²)``."""
    torch.manual_seed(3)
    n, sw2, no = 200_000, 0.5, 0.1
    h = torch.view_as_complex(torch.randn(1, n, 2) * math.sqrt(0.5))
    h_hat = h + torch.view_as_complex(torch.randn(1, n, 2) * math.sqrt(sw2 / 2))
    sinr = post_equalization_sinr(h, h_hat, torch.tensor([[no]]), mse_dims=(1,))
    a = 1 / (1 + sw2)
    expected = a**2 * h_hat.abs().square() / (no + sw2 / (1 + sw2))
    torch.testing.assert_close(sinr, expected, rtol=0.02, atol=0)
    # Perfect CSI: |h|²/no.
    exact = post_equalization_sinr(h, h, torch.tensor([[no]]), mse_dims=(1,))
    torch.testing.assert_close(exact, (h.abs().square() / no).clamp(1e-6, 1e6), rtol=1e-5, atol=0)


def test_feedback_is_seeded_cached_and_leaves_the_transmissions_random_stream_alone() -> None:
    from sionna.phy import config

    ch = build_channel("tdl")
    ch.data_per_grid()  # build Sionna's blocks first: building draws random numbers
    x = _symbols(2, 500)
    torch.manual_seed(7)  # the OFDM channel draws from torch's generator and Sionna's
    config.seed = 7
    y_ref, _ = ch(x, torch.tensor([20.0, 20.0]))
    torch.manual_seed(7)
    config.seed = 7
    fb = ch.sinr_feedback(torch.tensor([20.0, 3.0, 20.04]))
    y, _ = ch(x, torch.tensor([20.0, 20.0]))
    assert torch.equal(y, y_ref)
    assert fb.shape == (3, ch.FEEDBACK_GRIDS * ch.data_per_grid())
    assert torch.equal(fb[0], fb[2])  # same 0.1 dB CQI step

    # Another channel with the same pilots (drawn when Sionna's blocks are built), asked in
    # another order, one SNR at a time: the same reports.
    def twin():
        torch.manual_seed(11)
        config.seed = 11
        c = build_channel("tdl")
        c.data_per_grid()
        return c

    first, second = twin(), twin()
    both = first.sinr_feedback(torch.tensor([20.0, 3.0]))
    assert torch.equal(second.sinr_feedback(torch.tensor([3.0]))[0], both[1])
    assert torch.equal(second.sinr_feedback(torch.tensor([20.0]))[0], both[0])
    assert not torch.equal(both[0], both[1])
    # The reported SINR has the statistics of the transmissions' own state.sinr.
    _, st = ch(_symbols(16, 864), torch.full((16,), 20.0))
    assert float(eesm_db(fb[:1], 14).mean()) == pytest.approx(
        float(eesm_db(st.sinr, 14).mean()), abs=1.5
    )
    wrapped = build_channel("erasure_iid", inner=first)
    assert torch.equal(wrapped.sinr_feedback(torch.tensor([3.0])), both[1:])


def test_eesm_is_sionnas_and_reduces_to_the_snr_on_a_flat_channel() -> None:
    from v2x.semcom.digital_blocks import effective_snr_db

    flat = torch.full((2, 100), 10**0.7)
    assert eesm_db(flat, 10).tolist() == pytest.approx([7.0, 7.0], abs=1e-4)
    torch.manual_seed(4)
    sinr = torch.distributions.Exponential(0.1).sample((5, 300))
    for m in (0, 10, 28):
        # The codec's fast decoder (hand-written, float64) and link adaptation (Sionna's block)
        # must agree, or the decoder would not fail as often as link adaptation planned.
        torch.testing.assert_close(
            eesm_db(sinr, m).double(), effective_snr_db(1 / sinr, m), rtol=0, atol=1e-3
        )


def test_analog_effective_snr_is_the_snr_on_awgn_and_the_harmonic_mean_otherwise() -> None:
    assert analog_effective_snr_db(torch.full((1, 50), 100.0)).item() == pytest.approx(20.0)
    sinr = torch.tensor([[1.0, 100.0, 0.0], [4.0, 4.0, 4.0]])  # 0: erased, not counted
    mask = torch.tensor([[True, True, True], [True, True, False]])
    got = analog_effective_snr_db(sinr, mask)
    assert got.tolist() == pytest.approx([10 * math.log10(2 / 1.01), 10 * math.log10(4.0)])
    assert analog_effective_snr_db(torch.zeros(1, 3)).item() == pytest.approx(-60.0)
