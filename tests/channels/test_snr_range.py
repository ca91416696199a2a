"""The SNR range (``v2x.channels.radio.SNR_LIMIT_DB``): SNRs and dB fields beyond ±300 dB are
refused with one message naming the field, the value and the range; at the range's ends every
channel (and the analog, DeepJSCC and digital codecs through it) still gives finite numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.channels import build_channel, simulate_link
from v2x.channels.base import deferred_checks, equalize
from v2x.channels.link import LinkState
from v2x.channels.radio import SNR_LIMIT_DB, RadioParams, check_snr_db

CHANNELS = [
    "awgn",
    "rayleigh",
    "rician",
    "rayleigh_fast",
    {"name": "rician", "block_len": 1},
    {"name": "erasure_iid", "inner": {"name": "awgn"}, "loss_prob": 0.1},
    "tdl",
    {"name": "tdl", "estimator": "perfect"},
    "cdl",
]
RANGE = r"must be finite and within \[-300, 300\] dB, got "


def test_the_limit_is_inside_float32s_range_with_a_margin():
    """The failures the limit was measured from: float32's ``10^(−snr/10)`` overflows below
    −385.3 dB and turns subnormal above +379.3 dB; ±300 dB is well inside both."""
    assert SNR_LIMIT_DB == 300.0
    tiny, big = np.finfo(np.float32).tiny, np.finfo(np.float32).max
    assert 10 * math.log10(big) == pytest.approx(385.3, abs=0.05)
    assert -10 * math.log10(tiny) == pytest.approx(379.3, abs=0.05)
    assert torch.isinf(torch.pow(10.0, torch.tensor(386.0) / 10.0))
    no = torch.pow(10.0, torch.tensor([-SNR_LIMIT_DB, SNR_LIMIT_DB]) / 10.0)
    assert bool(torch.isfinite(no).all()) and float(no.min()) >= 1e-30


@pytest.mark.parametrize("snr", [300.001, -300.5, 500.0, -1000.0, float("nan"), float("inf")])
def test_a_channel_refuses_an_snr_beyond_the_range_naming_it(snr):
    x = torch.ones(2, 8, dtype=torch.complex64)
    with pytest.raises(ValueError, match=r"channel: field 'snr_db' " + RANGE) as err:
        build_channel("awgn")(x, torch.tensor([0.0, snr]))
    assert repr(snr) in str(err.value)
    with pytest.raises(ValueError, match=RANGE + repr(snr)), deferred_checks():  # queued too
        build_channel("rayleigh")(x, torch.tensor([snr, 1.0]))


@pytest.mark.parametrize("field", ["tx_power_dbm", "tx_gain_dbi", "rx_gain_dbi", "noise_figure_db"])
@pytest.mark.parametrize("value", [400.0, -1e6])
def test_radio_db_fields_beyond_the_range_are_refused(field, value):
    if field == "noise_figure_db" and value < 0:
        value = 1e6  # (below 0 it is refused as a noise figure already)
    with pytest.raises(ValueError, match=f"radio: field '{field}' " + RANGE + repr(value)):
        RadioParams(**{field: value})
    assert getattr(RadioParams(**{field: 300.0}), field) == 300.0


def test_v2x_link_refuses_a_power_beyond_the_range_naming_the_link_field():
    link = {"name": "free_space", "distance_m": 100.0, "tx_power_dbm": 500.0}
    with pytest.raises(ValueError, match=r"free_space: field 'tx_power_dbm' " + RANGE + "500"):
        simulate_link({"name": "awgn"}, link, num_symbols=10)


def test_check_snr_db_takes_the_ends_and_refuses_non_numbers():
    assert check_snr_db("w", "f", -300) == -300.0 and check_snr_db("w", "f", 300.0) == 300.0
    for bad in (True, "10", None):
        with pytest.raises(ValueError, match=r"w: field 'f' " + RANGE):
            check_snr_db("w", "f", bad)


@pytest.mark.parametrize("channel", CHANNELS, ids=str)
@pytest.mark.parametrize("snr", [-SNR_LIMIT_DB, SNR_LIMIT_DB])
def test_every_channel_gives_finite_numbers_at_the_ends_of_the_range(channel, snr):
    torch.manual_seed(0)
    x = torch.randn(4, 4096, dtype=torch.complex64)
    x = x / x.abs().square().mean().sqrt()
    y, state = build_channel(channel)(x, torch.full((4,), snr))
    assert bool(torch.isfinite(torch.view_as_real(y)).all())
    for method in ("mmse", "mmse_biased"):
        x_hat, no_eff = equalize(y, state, method)
        assert bool(torch.isfinite(torch.view_as_real(x_hat)).all()), method
        kept = no_eff if state.erased is None else no_eff[~state.erased]  # (erased: inf)
        assert kept.numel() and bool(torch.isfinite(kept).all()), method


@pytest.mark.parametrize("codec_name", ["analog", "deepjscc", "digital"])
@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_codecs_decode_finite_maps_at_the_ends_of_the_range(codec_name, channel):
    from v2x.semcom import build_codec

    kwargs = {
        "analog": {},
        "deepjscc": dict(in_channels=4, hidden=8, downsample=2, min_ratio=1 / 64, max_ratio=1 / 4),
        "digital": dict(bits=6, decoder="fast", rows_per_segment=4),
    }[codec_name]
    codec = build_codec(codec_name, **kwargs).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(2, 4, 16, 16, generator=g))
    link = LinkState.from_snr(torch.tensor([-SNR_LIMIT_DB, SNR_LIMIT_DB]))
    torch.manual_seed(0)
    with torch.no_grad():
        tx = codec.encode(x, link)
        y, state = build_channel(channel)(tx.symbols, link.snr_db)
        out = codec.decode(tx.received(y, state), link)
    assert bool(torch.isfinite(out).all())
    if codec_name != "deepjscc":  # (an untrained DeepJSCC decoder is finite but no oracle)
        assert float((out[1] - x[1]).abs().max()) < 0.05  # +300 dB: the map comes back


def test_a_huge_rician_k_factor_is_the_los_gain_alone_not_an_overflow():
    for k in (4000.0, 1e300):
        channel = build_channel({"name": "rician", "k_factor_db": k, "los_phase": "zero"})
        y, state = channel(torch.ones(1, 4, dtype=torch.complex64), torch.tensor([20.0]))
        assert channel.diffuse_var == 0.0 and torch.allclose(state.h, torch.ones_like(state.h))
