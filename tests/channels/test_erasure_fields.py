"""The erasure channels (named and generic) refuse another loss model's settings, which they
would ignore: ``erasure_iid`` with ``p_gb`` used to lose packets i.i.d. at its default 1 % without
a word (Sionna-user audit)."""

from __future__ import annotations

import pytest

from v2x.channels import build_channel


@pytest.mark.parametrize(
    ("name", "fields"),
    [("erasure_iid", {"p_gb": 0.1}), ("erasure_iid", {"loss_bad": 0.5, "bler_table": None}),
     ("erasure_ge", {"loss_prob": 0.2}), ("erasure_bler", {"loss_prob": 0.2}),
     ("erasure_bler", {"p_bg": 0.5})],
)  # fmt: skip
def test_another_models_setting_is_refused(name, fields):
    with pytest.raises(ValueError) as info:
        build_channel(name, **fields)
    assert str(info.value).startswith(f"{name}: field(s) {sorted(fields)} belong to another")


@pytest.mark.parametrize(
    ("name", "fields"),
    [("erasure_iid", {"loss_prob": 0.2}),
     ("erasure_ge", {"p_gb": 0.1, "p_bg": 0.5, "loss_good": 0.01, "loss_bad": 0.9}),
     ("erasure_bler", {"bler_table": [[0.0, 0.3], [20.0, 0.01]]})],
)  # fmt: skip
def test_a_models_own_settings_are_taken(name, fields):
    ch = build_channel(name, symbols_per_packet=8, **fields)
    for key, value in fields.items():
        assert getattr(ch, key) == value


@pytest.mark.parametrize(
    ("model", "fields"),
    [("iid", {"p_gb": 0.5}), (None, {"loss_bad": 0.5}),
     ("gilbert_elliott", {"loss_prob": 0.2}), ("bler", {"p_bg": 0.5, "loss_prob": 0.1})],
)  # fmt: skip
def test_generic_erasure_refuses_another_models_setting(model, fields):
    """``erasure`` with ``model: iid`` (its default) and ``p_gb`` lost packets i.i.d. at 1 %."""
    model_kw = {} if model is None else {"model": model}
    with pytest.raises(ValueError) as info:
        build_channel("erasure", **model_kw, **fields)
    message = str(info.value)
    assert message.startswith(f"erasure: field(s) {sorted(fields)} belong to another")
    assert f"model {model or 'iid'!r} takes" in message


@pytest.mark.parametrize(
    ("model", "fields"),
    [("iid", {"loss_prob": 0.2}),
     ("gilbert_elliott", {"p_gb": 0.1, "p_bg": 0.5, "loss_good": 0.01, "loss_bad": 0.9}),
     ("bler", {"bler_table": [[0.0, 0.3], [20.0, 0.01]]})],
)  # fmt: skip
def test_generic_erasure_takes_its_models_settings(model, fields):
    ch = build_channel("erasure", model=model, symbols_per_packet=8, **fields)
    assert ch.model == model
    for key, value in fields.items():
        assert getattr(ch, key) == value
