"""Invalid MCS settings are refused, not silently turned into another MCS (Sionna-user audit)."""

from __future__ import annotations

import math

import pytest
import torch

from v2x.semcom.digital import DigitalCodec
from v2x.semcom.mcs import LinkAdaptation, get_mcs, shannon_gap_thresholds_db


@pytest.mark.parametrize("flag", [True, False])
def test_a_bool_is_not_an_mcs_index(flag: bool) -> None:
    # YAML `mcs: true` is a bool, which Python counts as the int 1: it used to pick MCS 1
    with pytest.raises(ValueError, match="mcs index"):
        get_mcs(flag)
    with pytest.raises(ValueError, match="mcs index"):
        DigitalCodec(mcs=flag)


@pytest.mark.parametrize("margin", [math.nan, math.inf, -math.inf, "3", True])
def test_margin_db_must_be_a_finite_number(margin) -> None:
    # a NaN margin qualified no MCS, so every transmission silently took MCS 0
    with pytest.raises(ValueError, match="margin_db"):
        LinkAdaptation(shannon_gap_thresholds_db(), margin)
    with pytest.raises(ValueError, match="margin_db"):
        DigitalCodec(margin_db=margin)


def test_a_finite_margin_backs_off_the_choice() -> None:
    # an int from YAML (`margin_db: 10`) is a margin: at 20 dB it picks what 10 dB picks without
    la = LinkAdaptation(shannon_gap_thresholds_db(), 10)
    plain = LinkAdaptation(shannon_gap_thresholds_db(), 0)
    assert int(la(torch.tensor([20.0]))[0]) == int(plain(torch.tensor([10.0]))[0])
    assert int(la(torch.tensor([20.0]))[0]) < int(plain(torch.tensor([20.0]))[0])


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_channel_uses", True), ("rows_per_segment", True), ("cells_per_segment", False),
     ("per_channel", "no"), ("per_channel", 1)],
)  # fmt: skip
def test_booleans_for_counts_and_strings_for_switches_are_refused(field, value):
    """``max_channel_uses=True`` gave a budget of 1 channel use (a bool is an int) and
    ``per_channel="no"`` read as true: each is refused naming the field and the value."""
    from v2x.semcom import build_codec

    with pytest.raises(ValueError, match=rf"digital codec '{field}'.* must be .*got {value!r}"):
        build_codec("digital", **{field: value})
