"""The OFDM channel's effective noise variance against the one-tap closed forms, −300…+300 dB.

After one-tap equalisation of resource element ``k`` with ``y = h x + n``, ``n ~ CN(0, N0)``
and the receiver's estimate ``ĥ`` (error variance ``σe²``, ``s = N0 + σe²``):

* the unbiased estimate ``x̂ = y / ĥ`` (ZF, and the unbiased LMMSE of one stream on one antenna)
  has noise variance ``s / |ĥ|²``;
* the biased MMSE estimate ``ĥ* y / (|ĥ|² + s)`` has mean-squared error ``s / (|ĥ|² + s)``.

The oracles are evaluated here in float64 from the per-RE ``h`` / ``ĥ`` / ``σe²`` the channel
reports; the channel itself runs in float32 (complex64). Sionna's ``LMMSEEqualizer`` computes
the first as ``1/d − 1`` with ``d = |ĥ|²/(|ĥ|² + s)``, which cancels: 59 % off at 60 dB and
negative from about 80 dB (perfect CSI, TDL-A) before ``OFDMChannel`` took the closed form.
"""

from __future__ import annotations

import pytest
import torch

from v2x.channels import build_channel, equalize
from v2x.channels.radio import SNR_LIMIT_DB

SNRS_DB = [-SNR_LIMIT_DB, -200.0, -100.0, -30.0, 0.0, 30.0, 60.0, 80.0, 100.0, 150.0, 200.0,
           250.0, SNR_LIMIT_DB]  # fmt: skip
F32_EPS = float(torch.finfo(torch.float32).eps)


def _run(family: str, estimator: str, snr_db: float):
    torch.manual_seed(3)
    channel = build_channel(family, model="A", estimator=estimator, speed_mps=30.0)
    x = torch.view_as_complex(torch.randn(3, 900, 2) * 0.5**0.5)  # two grids per row
    return channel(x, torch.full((3,), snr_db))


@pytest.mark.parametrize("estimator", ["perfect", "ls"])
@pytest.mark.parametrize("family", ["tdl", "cdl"])
def test_no_eff_is_the_one_tap_closed_form_over_the_whole_snr_range(family, estimator):
    for snr_db in SNRS_DB:
        y, st = _run(family, estimator, snr_db)
        assert st.equalized and st.no_eff.dtype == torch.float32
        n0 = 10.0 ** (-snr_db / 10.0)  # Es = 1
        h_hat = (st.h if estimator == "perfect" else st.h_hat).to(torch.complex128)
        s = n0 + (0.0 if estimator == "perfect" else st.err_var.double())
        gain = h_hat.abs().square()
        ok = gain > 1e-6  # (a deep fade's s/|ĥ|² may exceed float32's range at −300 dB)
        assert float(ok.double().mean()) > 0.99
        zf = s / gain
        got = st.no_eff.double()
        assert bool((st.no_eff[ok] > 0).all()), snr_db
        assert bool(torch.isfinite(st.no_eff[ok]).all()), snr_db
        rel = ((got - zf).abs() / zf)[ok]
        assert float(rel.max()) < 8 * F32_EPS, (snr_db, float(rel.max()))
        # The biased MMSE error s / (|ĥ|² + s), through equalize's scalar shrink.
        _, mmse = equalize(y, st, "mmse_biased")
        rel = ((mmse.double() - s / (gain + s)).abs() / (s / (gain + s)))[ok]
        assert float(rel.max()) < 16 * F32_EPS, (snr_db, float(rel.max()))


def test_no_eff_matches_the_measured_error_at_high_snr():
    """At 100 dB with perfect CSI the equalised symbols' error is the noise alone:
    its mean power is E[N0/|h|²] over the REs (the closed form, not a clamp's floor)."""
    y, st = _run("tdl", "perfect", 100.0)
    torch.manual_seed(3)
    x = torch.view_as_complex(torch.randn(3, 900, 2) * 0.5**0.5)
    err = (y - x).abs().square().double()
    keep = st.no_eff < 10 * float(st.no_eff.median())  # drop deep fades (heavy-tailed ratio)
    ratio = float((err[keep] / st.no_eff.double()[keep]).mean())
    assert ratio == pytest.approx(1.0, abs=0.1)
