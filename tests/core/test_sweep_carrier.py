"""A sweep warns, at planning, of a channel whose own Doppler carrier is not its links'
(``v2x.sweep_parts.build_channels``, the note of ``v2x.channels.radio.carrier_note``)."""

from __future__ import annotations

import logging

import pytest

from v2x.channels import CHANNELS
from v2x.channels.base import doppler_config
from v2x.network import NetworkConfig, link_carriers
from v2x.sweep_plan import plan_sweep

BASE = {
    "checkpoint": "untrained",
    "model": "pillars_center",
    "grid": {"snr_db": [3.0], "codecs": ["analog"], "fusions": ["max"]},
}


def _notes(caplog, channels, channel_options=None, network=None, **grid) -> list[str]:
    cfg = {
        **BASE,
        "grid": {**BASE["grid"], "channels": channels, **grid},
        "channel_options": channel_options or {},
        "network": network or {},
    }
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="v2x.sweep_parts"):
        plan_sweep(cfg)
    return [r.getMessage() for r in caplog.records if "Doppler" in r.getMessage()]


def test_a_channel_at_the_links_carrier_gets_no_warning(caplog):
    assert _notes(caplog, ["awgn", "rayleigh", "rayleigh_fast"]) == []
    same = {"rayleigh_fast": {"carrier_hz": 5.9e9}}
    assert _notes(caplog, ["rayleigh_fast"], same) == []


def test_a_channel_carrier_other_than_the_radios_is_warned_once_naming_the_fields(caplog):
    notes = _notes(caplog, ["rayleigh_fast", "awgn"], {"rayleigh_fast": {"carrier_hz": 3.5e9}})
    assert len(notes) == 1, notes
    (note,) = notes
    assert note.startswith("sweep: channel 'rayleigh_fast':")
    assert "channel_options.rayleigh_fast.carrier_hz=3.5e+09 Hz" in note
    for kind in ("vehicle", "rsu", "uav"):
        assert f"network.radios.{kind}.carrier_hz" in note
    assert "=5.9e+09 Hz" in note and "set channel_options.rayleigh_fast.carrier_hz=5.9e+09" in note
    # the same (channel, carrier) pair is warned once, however many groups use the channel
    options = {"rayleigh_fast": {"carrier_hz": 3.5e9}}
    many = {"codecs": ["analog", "identity"], "fusions": ["max", "late"], "snr_db": [0.0, 9.0]}
    assert _notes(caplog, ["rayleigh_fast", "rayleigh_fast"], options, **many) == notes


def test_radios_on_several_carriers_get_one_warning_per_differing_carrier(caplog):
    uav_2ghz = {"radios": {"uav": {"carrier_hz": 2e9}}}
    # the channel's default carrier (5.9 GHz) is the vehicles' and RSUs': only the UAVs differ
    (note,) = _notes(caplog, ["rayleigh_fast"], network=uav_2ghz)
    assert "channel_options.rayleigh_fast.carrier_hz=5.9e+09 Hz" in note
    assert "network.radios.uav.carrier_hz=2e+09 Hz" in note
    assert "network.radios.vehicle" not in note
    # at neither carrier: one warning for each
    notes = _notes(caplog, ["rayleigh_fast"], {"rayleigh_fast": {"carrier_hz": 3.5e9}}, uav_2ghz)
    assert len(notes) == 2, notes
    assert any("network.radios.uav.carrier_hz=2e+09 Hz" in n for n in notes)
    assert any("network.radios.rsu.carrier_hz=5.9e+09 Hz" in n for n in notes)


def test_a_wrapper_is_warned_of_its_inner_channels_carrier(caplog):
    inner = {"erasure_iid": {"inner": {"name": "rayleigh_fast", "carrier_hz": 2e9}}}
    (note,) = _notes(caplog, ["erasure_iid"], inner)
    assert "channel_options.erasure_iid.inner.carrier_hz=2e+09 Hz" in note
    assert _notes(caplog, ["erasure_iid"]) == []  # over AWGN: no Doppler


def test_a_link_models_own_carrier_is_named_by_its_link_options():
    thz = NetworkConfig.from_dict({"link_models": {"uav-uav": "thz"}})
    assert link_carriers(thz)[300e9] == ["network.link_options.thz.radio.carrier_hz"]
    own = NetworkConfig.from_dict({"link_options": {"al_hourani": {"carrier_hz": 2.4e9}}})
    assert link_carriers(own)[2.4e9] == ["network.link_options.al_hourani.carrier_hz"]
    assert sorted(link_carriers(own)) == [2.4e9, 5.9e9]  # (uav-uav: free space, the radios')


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("awgn", {}, {}),
        ("rayleigh", {}, {}),  # block fading: no Doppler
        ("rayleigh_fast", {"doppler_hz": 100.0}, {}),  # a Doppler given, not from a carrier
        ("rayleigh_fast", {}, {"carrier_hz": 5.9e9}),  # the default
        ("tdl", {"carrier_hz": 3.5e9}, {"carrier_hz": 3.5e9}),
        ("erasure_ge", {"inner": "rician_fast"}, {"inner": {"carrier_hz": 5.9e9}}),
    ],
)
def test_doppler_config_is_the_carrier_of_the_channels_own_doppler(name, kwargs, expected):
    assert doppler_config(CHANNELS.build(name, **kwargs)) == expected
