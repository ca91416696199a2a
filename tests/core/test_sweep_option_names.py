"""``channel_options`` / ``codec_options`` under a name that is no registered channel or codec
(a typo) are refused by name: they used to be ignored without a word, so the sweep ran the
part with its defaults (Sionna-user audit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.test_sweep import tiny_config
from v2x.sweep import plan_sweep


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("frames")


@pytest.mark.parametrize(
    ("section", "options", "message"),
    [
        (
            "channel_options",
            {"rayleig": {"block_len": 1}},
            r"^sweep: field 'channel_options' names an unknown channel 'rayleig'; valid choices: "
            r"awgn, .*rayleigh,",
        ),
        (
            "codec_options",
            {"digitl": {"mcs": 3}},
            r"^sweep: field 'codec_options' names an unknown codec 'digitl'; valid choices: "
            r"analog, .*digital,",
        ),
    ],
)
def test_options_under_an_unknown_name_are_refused(cache_dir, tmp_path, section, options, message):
    cfg = tiny_config(cache_dir, tmp_path, channels=["rayleigh"], codecs=["digital"])
    with pytest.raises(ValueError, match=message):
        plan_sweep({**cfg, section: options})


def test_options_of_a_registered_part_off_the_grid_are_accepted(cache_dir, tmp_path):
    # the YAML's defaults hold options of codecs a grid may not run (deepjscc's checkpoint)
    cfg = tiny_config(cache_dir, tmp_path, channels=["awgn"], codecs=["identity"])
    cfg["channel_options"] = {"rayleigh": {"block_len": 1}}
    cfg["codec_options"] = {"digital": {"mcs": 3}}
    plan = plan_sweep(cfg)
    assert {g.channel for g in plan.groups} <= {"awgn", "n/a"}


def test_an_unknown_grid_name_keeps_its_message(cache_dir, tmp_path):
    cfg = tiny_config(cache_dir, tmp_path, channels=["rayleig"])
    with pytest.raises(ValueError, match=r"^sweep: field 'grid.channels': unknown channel"):
        plan_sweep(cfg)


@pytest.mark.parametrize("codec", ["digital", "digital_payload"])
@pytest.mark.parametrize(
    ("codecs", "options", "setters"),
    [
        ([{"name": "C", "bits": 99}], {}, ["grid.codecs[0]"]),  # an inline spec
        (["C"], {"C": {"bits": 99}}, ["codec_options.C"]),
        (  # both set bits: both named (the inline entry's value wins)
            ["identity", {"name": "C", "bits": 99}],
            {"C": {"bits": 6}},
            ["codec_options.C", "grid.codecs[1]"],
        ),
    ],
)
def test_bad_bits_name_the_fields_that_set_them(cache_dir, tmp_path, codec, codecs, options, setters):
    """``digital_payload`` records its bits in the plan (``codec_bits``: the fields that hold
    ``bits``), ``digital`` refuses them when built (the fields that hold its options): either
    way one message naming the config fields, the value and the range."""
    codecs = [{**c, "name": codec} if isinstance(c, dict) else c.replace("C", codec) for c in codecs]
    cfg = tiny_config(cache_dir, tmp_path, channels=["awgn"], codecs=codecs)
    cfg["codec_options"] = {codec: options["C"]} if options else {}
    with pytest.raises(ValueError) as err:
        plan_sweep(cfg)
    message = str(err.value)
    assert message.startswith("sweep: field '") and "must be an int in 1..16, got 99" in message
    named = message.split(": ")[1]  # the fields, before the reason
    for place in setters:
        assert f"'{place.replace('C', codec)}" in named, message
