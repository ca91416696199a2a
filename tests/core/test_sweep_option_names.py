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
