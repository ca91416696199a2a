"""Each link model's distance range from its standard (TR 38.901 Table 7.4.1-1, TR 36.777
Table B-2): links outside it are named in ``extra['outside_range']``, logged once per model (a
sweep's log) and noted by ``link_summary`` (``v2x-link``) without a log warning."""

from __future__ import annotations

import logging

import pytest
import torch

import v2x.channels.link as link_module
from v2x.channels import build_link, link_summary

# (model, fields, the standard's d2D range in m)
RANGES = [
    ("umi_street_canyon", {}, 10.0, 5000.0),  # TR 38.901 Table 7.4.1-1
    ("uma_av", {"h_rx_m": 10.0}, 10.0, 5000.0),  # terrestrial UE: TR 38.901 UMa
    ("umi_av", {"h_rx_m": 10.0}, 10.0, 5000.0),  # terrestrial UE: TR 38.901 UMi
    ("rma_av", {"h_rx_m": 5.0, "los_mode": "los"}, 10.0, 10000.0),  # TR 38.901 RMa LOS
    ("rma_av", {"h_rx_m": 5.0, "los_mode": "nlos"}, 10.0, 5000.0),  # TR 38.901 RMa NLOS
    ("uma_av", {"h_rx_m": 100.0}, 0.0, 4000.0),  # aerial UE: TR 36.777 Table B-2
    ("umi_av", {"h_rx_m": 100.0}, 0.0, 4000.0),
    ("rma_av", {"h_rx_m": 100.0}, 0.0, 10000.0),
]


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(link_module, "_WARNED_OUTSIDE", set())


def _note(name: str, fields: dict, d2d: float) -> str | None:
    model = build_link({"name": name, "shadowing": False, **fields})
    model.warn_outside_range = False
    return model(distance_m=torch.tensor([d2d])).extra.get("outside_range")


@pytest.mark.parametrize(("name", "fields", "lo", "hi"), RANGES)
def test_the_standards_range_ends_are_inside_and_beyond_them_is_noted(name, fields, lo, hi):
    assert _note(name, fields, hi) is None and _note(name, fields, max(lo, 1.0)) is None
    note = _note(name, fields, hi * 1.001)
    assert note is not None and note.startswith(f"{name}: 1 of 1 link(s) outside")
    assert f"<= d2D <= {hi:g} m" in note and f"d2D = {hi * 1.001:g} m" in note
    assert ("TR 36.777 Table B-2" if lo == 0 else "TR 38.901 Table 7.4.1-1") in note
    if lo > 0:  # (umi_street_canyon clamps d2D to 10 m: the distance asked for is named)
        assert f"d2D = {lo / 2:g} m" in _note(name, fields, lo / 2)


@pytest.mark.parametrize("name", ["v2v_urban", "v2v_highway", "free_space", "al_hourani", "thz"])
def test_models_that_state_no_distance_range_note_nothing(name):
    assert _note(name, {}, 1e6) is None


def test_a_sweeps_links_outside_the_range_are_logged_once_per_model(caplog):
    umi = build_link({"name": "umi_street_canyon"})
    with caplog.at_level(logging.WARNING, logger="v2x.channels.link"):
        for _ in range(3):  # (a sweep's frames)
            umi(distance_m=torch.tensor([100.0, 6000.0, 7000.0]))
        build_link({"name": "umi_street_canyon"})(distance_m=torch.tensor([9000.0]))
        build_link({"name": "uma_av"})(distance_m=torch.tensor([5000.0]))
        umi(distance_m=torch.tensor([100.0]))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("umi_street_canyon: 2 of 3 link(s) outside")
    assert "(logged once per link model)" in messages[0]
    assert messages[1].startswith("uma_av: 1 of 1 link(s) outside")


def test_link_summary_returns_the_note_and_logs_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="v2x.channels.link"):
        far = link_summary({"name": "umi_street_canyon", "distance_m": 1e9})
        near = link_summary({"name": "umi_street_canyon", "distance_m": 100.0})
    assert not caplog.records
    assert "10 m <= d2D <= 5000 m" in far["outside_range"] and near["outside_range"] == ""
