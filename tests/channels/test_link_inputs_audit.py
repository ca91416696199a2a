"""Bad link-model settings are refused at construction, naming the model, the field and the
value (NaN passes every plain comparison, so it used to reach the printed SNR or be ignored)."""

from __future__ import annotations

import pytest
import torch

from v2x.channels import build_link, link_conditions, simulate_link


@pytest.mark.parametrize(
    "name, field, value, expected",
    [
        ("v2v_urban", "blocker_height_m", float("nan"), "finite number >= 0"),
        ("v2v_highway", "blocker_height_m", float("inf"), "finite number >= 0"),
        ("v2v_urban", "blocker_height_m", -1.0, "finite number >= 0"),
        ("free_space", "h_tx_m", -1.0, "finite number >= 0"),
        ("al_hourani", "h_rx_m", -1.0, "finite number >= 0"),
        ("v2v_urban", "distance_m", "abc", "finite number >= 0"),
        ("thz", "beamwidth_deg", float("inf"), "finite number > 0"),
        ("thz", "beamwidth_deg", float("nan"), "finite number > 0"),
        ("thz", "misalignment_deg", float("inf"), "finite number"),
        ("thz", "pointing_error_std_deg", float("nan"), "finite number >= 0"),
        ("thz", "pointing_error_std_deg", -1.0, "finite number >= 0"),
        ("thz", "max_misalignment_loss_db", -1.0, "finite number >= 0"),
        ("thz", "blockage_loss_db", float("nan"), "finite number >= 0"),
        ("thz", "absorption_coeff_per_m", float("nan"), "finite number >= 0"),
        ("thz", "temperature_k", float("nan"), "finite number"),
        ("thz", "pressure_hpa", float("inf"), "finite number > 0"),
    ],
)
def test_a_bad_link_field_is_refused_naming_model_field_and_value(name, field, value, expected):
    with pytest.raises(ValueError) as err:
        build_link({"name": name, field: value})
    message = str(err.value)
    assert f"{name}: field '{field}' is {value!r}" in message and expected in message


def test_constant_absorption_with_an_infinite_coefficient_names_it():
    with pytest.raises(ValueError, match=r"thz: field 'absorption_coeff_per_m' is inf"):
        build_link(name="thz", absorption_model="constant", absorption_coeff_per_m=float("inf"))


@pytest.mark.parametrize("seed", [-1, 1.5, float("nan"), float("inf")])
def test_a_link_seed_must_be_a_whole_number(seed):
    with pytest.raises(
        ValueError, match=rf"v2v_urban: field 'seed' must be a whole number >= 0, got {seed!r}"
    ):
        build_link(name="v2v_urban", seed=seed)


def test_shadowing_must_be_true_or_false():
    with pytest.raises(
        ValueError, match="v2v_urban: field 'shadowing' must be true or false, got 'maybe'"
    ):
        build_link(name="v2v_urban", shadowing="maybe")


def test_simulate_link_refuses_a_nan_blocker_instead_of_printing_an_snr():
    with pytest.raises(ValueError, match="blocker_height_m"):
        simulate_link({"name": "awgn"}, {"name": "v2v_urban", "blocker_height_m": float("nan")},
                      1e6, 100, 0)  # fmt: skip


def test_good_link_settings_still_build():
    assert build_link(name="thz", misalignment_deg=-1.0, seed=3).misalignment_rad < 0
    assert build_link(name="free_space", h_tx_m=0, h_rx_m=0).h_tx_m == 0.0
    link = build_link(name="thz", absorption_model="constant", absorption_coeff_per_m=0.1)
    assert link.kappa == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("los_mode", "los", "bad"),
    [("geometric", [3], "[3]"), ("geometric", [0, -1, 3, 2], "[-1, 3]"),
     ("probabilistic", [7], "[7]"), ("geometric", [1.5], "[1.5]")],
)  # fmt: skip
def test_a_condition_code_outside_0_to_2_is_refused(los_mode, los, bad):
    """Code 3 used to be taken as LOS (and reported as not LOS)."""
    model = build_link({"name": "v2v_urban", "los_mode": los_mode})
    with pytest.raises(ValueError) as info:
        model(distance_m=[50.0] * len(los), los=torch.tensor(los))
    assert str(info.value) == (
        f"v2v_urban: field 'los' has condition code(s) {bad}; valid codes: 0 (LOS), 1 (NLOS), "
        "2 (NLOSv), or bool (True: LOS)"
    )


def test_the_scenes_condition_codes_and_bools_are_taken():
    model = build_link({"name": "v2v_urban", "los_mode": "geometric", "shadowing": False})
    vehicle = torch.tensor([[50.0, 0.0, 1.0, 4.0, 2.0, 2.0, 0.0]], dtype=torch.float64)
    house = torch.tensor([[0.0, 50.0, 5.0, 10.0, 10.0, 10.0, 0.0]], dtype=torch.float64)
    p0 = torch.zeros(3, 3, dtype=torch.float64) + torch.tensor([0.0, 0.0, 1.5])
    p1 = torch.tensor([[100.0, 0.0, 1.5], [0.0, 100.0, 1.5], [-100.0, 0.0, 1.5]])
    codes = link_conditions(p0, p1, buildings=house, vehicles=vehicle)
    assert codes.tolist() == [2, 1, 0]
    assert model(tx_pos=p0, rx_pos=p1, los=codes).extra["condition"].tolist() == [2, 1, 0]
    assert model(distance_m=[50.0, 50.0], los=torch.tensor([True, False])).los.tolist() == [
        True,
        False,
    ]
