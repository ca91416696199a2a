"""OFDM channel settings that Sionna would accept silently or refuse only at the first call are
refused when the channel is built, naming the field (Sionna-user audit)."""

from __future__ import annotations

import pytest

from v2x.channels import build_channel


@pytest.mark.parametrize(
    ("family", "spread_s", "spacing_hz"),
    [("tdl", 100.0, 30e3), ("cdl", 300e-6, 30e3), ("tdl", 1 / 15e3, 15e3)],
)
def test_a_delay_spread_of_an_ofdm_symbol_or_more_is_refused(family, spread_s, spacing_hz):
    # `delay_spread_s: 100` meant as 100 ns used to build a 100-second TDL without a word
    with pytest.raises(ValueError, match=r"'delay_spread_s' is .* it is in seconds"):
        build_channel(family, delay_spread_s=spread_s, subcarrier_spacing_hz=spacing_hz)


@pytest.mark.parametrize("spread_s", [10e-9, 100e-9, 300e-9, 1000e-9])
def test_the_standard_delay_spreads_are_taken(spread_s):
    # TR 38.901 Table 7.7.3-1: very short 10 ns, nominal 100 ns, long 300 ns, very long 1000 ns
    assert build_channel("tdl", delay_spread_s=spread_s).delay_spread_s == spread_s


@pytest.mark.parametrize(
    ("field", "value"), [("interpolation", "cubic"), ("direction", "sideways")]
)
def test_a_bad_choice_is_refused_when_built(field, value):
    # Sionna refused these only at the first forward (its blocks are built lazily), i.e. in the
    # middle of a sweep, and `direction` with "Invalid direction"
    with pytest.raises(ValueError, match=rf"^ofdm: '{field}' must be .*got '{value}'$"):
        build_channel("cdl", **{field: value})
