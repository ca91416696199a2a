"""A channel's numeric settings that are NaN, infinite or out of range are refused when it is
built, naming the field and the value: NaN passes every comparison, so ``speed_mps=nan`` or
``k_factor_db=nan`` used to build a channel that drew NaN gains or plain AWGN."""

from __future__ import annotations

import math

import pytest
import torch

from v2x.channels import build_channel
from v2x.channels.erasure import Packetizer
from v2x.channels.packets import PacketFormat

NAN, INF = float("nan"), float("inf")

REFUSED = [
    ("rician", "k_factor_db", NAN),
    ("rician_fast", "k_factor_db", NAN),
    ("rayleigh", "speed_mps", NAN),
    ("rayleigh", "speed_mps", INF),
    ("rayleigh", "speed_mps", -1.0),
    ("rayleigh_fast", "carrier_hz", NAN),
    ("rayleigh_fast", "carrier_hz", 0.0),
    ("rician", "symbol_rate_hz", INF),
    ("rician", "doppler_hz", NAN),
    ("rician_fast", "doppler_hz", -5.0),
    ("rayleigh_fast", "num_sinusoids", 0),
    ("rayleigh_fast", "num_sinusoids", 8.5),
    ("tdl", "delay_spread_s", NAN),
    ("cdl", "delay_spread_s", INF),
    ("tdl", "carrier_hz", NAN),
    ("tdl", "speed_mps", NAN),
    ("tdl", "subcarrier_spacing_hz", -30e3),
    ("tdl", "subcarrier_spacing_hz", NAN),
    ("tdl", "fft_size", 0),
    ("tdl", "cyclic_prefix_length", -1),
    ("tdl", "pilot_seed", -1),
    ("erasure", "mtu_bytes", NAN),
    ("erasure", "header_bytes", 1.5),
    ("erasure", "bits_per_symbol", NAN),
    ("erasure", "bits_per_symbol", INF),
    ("erasure", "symbols_per_packet", 0),
]


@pytest.mark.parametrize(("name", "field", "value"), REFUSED)
def test_a_bad_number_is_refused_naming_the_field_and_the_value(name, field, value):
    with pytest.raises(ValueError) as info:
        build_channel(name, **{field: value})
    message = str(info.value)
    assert f"'{field}'" in message and repr(value) in message, message
    assert "\n" not in message


@pytest.mark.parametrize("k_db", [INF, -INF, -3.0, 0.0, 12.0])
def test_every_k_factor_in_db_is_still_taken(k_db):
    """``inf`` dB is a line of sight alone (unit gains), ``-inf`` dB no line of sight (Rayleigh):
    E|h|^2 = 1 either way, and K = 10^(dB/10) in between."""
    ch = build_channel("rician", k_factor_db=k_db)
    k = 10.0 ** (k_db / 10.0)
    assert ch.k_factor == k or (math.isinf(k) and math.isinf(ch.k_factor))
    h, _ = ch.sample_gains(20_000, 1, torch.device("cpu"))
    assert abs(float(h.abs().pow(2).mean()) - 1.0) < 0.05
    if math.isinf(k_db) and k_db > 0:
        assert torch.allclose(h.abs(), torch.ones_like(h.abs()))


def test_packet_sizes_are_whole_bytes():
    assert PacketFormat(1500, 40).payload_bits == 1460 * 8
    for mtu, header, field in [(NAN, 40, "mtu_bytes"), (1500.5, 40, "mtu_bytes"),
                               (1500, -1, "header_bytes"), (1500, True, "header_bytes")]:  # fmt: skip
        with pytest.raises(ValueError, match=f"field '{field}' must be a whole number"):
            PacketFormat(mtu, header)
    with pytest.raises(ValueError, match="'bits_per_symbol' is nan; expected a finite number > 0"):
        Packetizer(bits_per_symbol=NAN)


def test_a_receiver_adds_noise_its_noise_figure_is_at_least_0_db():
    from v2x.channels.radio import RadioParams
    from v2x.network import RadioConfig

    assert RadioParams(noise_figure_db=0.0).noise_figure_db == 0.0
    with pytest.raises(ValueError, match=r"radio: field 'noise_figure_db' is -1.0; expected a "
                                         r"finite number >= 0"):  # fmt: skip
        RadioParams(noise_figure_db=-1.0)
    with pytest.raises(ValueError, match=r"network radio: field 'noise_figure_db' is -0.5"):
        RadioConfig(noise_figure_db=-0.5)
