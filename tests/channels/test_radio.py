"""``RadioParams`` is the one radio-parameter type: its defaults live in one place, configs map
onto it, and a bad field gets one clear error."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import v2x.conf
from v2x.channels import DEFAULT_RADIO, LINKS, RadioParams, build_link
from v2x.channels.radio import RADIO_FIELDS
from v2x.network import RadioConfig

ROOT = Path(__file__).resolve().parents[2]
LINK_FILES = sorted((Path(v2x.conf.__file__).parent / "link").glob("*.yaml"))
#: Names that declare a radio setting (RadioParams' fields and the per-agent antenna gain).
RADIO_NAMES = {*RADIO_FIELDS, "antenna_gain_dbi"}


def test_defaults_and_conversion() -> None:
    r = RadioParams()
    assert (r.carrier_hz, r.bandwidth_hz, r.tx_power_dbm) == (5.9e9, 20e6, 23.0)
    assert (r.tx_gain_dbi, r.rx_gain_dbi, r.noise_figure_db) == (3.0, 3.0, 9.0)
    assert r == DEFAULT_RADIO and RadioParams(tx_power_dbm=30).tx_power_dbm == 30.0
    assert type(RadioParams(tx_power_dbm=30).tx_power_dbm) is float
    with pytest.raises(AttributeError):
        r.carrier_hz = 1.0  # frozen
    # −174 dBm/Hz + 10·log10(20e6) + 9 dB
    assert r.noise_dbm() == pytest.approx(-174 + 73.0103 + 9, abs=1e-4)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("carrier_hz", 0.0, "> 0"),
        ("bandwidth_hz", -1e6, "> 0"),
        ("tx_power_dbm", float("nan"), "finite"),
        ("noise_figure_db", "9", "finite number"),
        ("rx_gain_dbi", True, "finite number"),
    ],
)
def test_a_bad_field_names_the_field_the_value_and_what_is_expected(field, value, expected) -> None:
    with pytest.raises(ValueError, match=f"radio: field '{field}' is .*; expected .*{expected}"):
        RadioParams(**{field: value})
    with pytest.raises(ValueError, match=f"v2v_urban: field '{field}' is"):
        build_link(name="v2v_urban", **{field: value})
    with pytest.raises(ValueError, match=f"v2v_urban: field '{field}' is"):
        build_link(name="v2v_urban", radio={field: value})


def test_unknown_fields_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown radio field\(s\) \['power_dbm'\]"):
        RadioParams.from_mapping({"power_dbm": 20})
    with pytest.raises(ValueError, match=r"v2v_urban: unknown argument\(s\) \['tx_powr_dbm'\]"):
        build_link(name="v2v_urban", tx_powr_dbm=20)


def test_flat_fields_override_the_radio_which_overrides_the_models_default() -> None:
    m = build_link(name="uma_av", radio={"tx_power_dbm": 40.0}, noise_figure_db=5.0)
    assert m.radio == RadioParams(
        carrier_hz=2e9, bandwidth_hz=10e6, tx_power_dbm=40.0, tx_gain_dbi=8.0, rx_gain_dbi=0.0,
        noise_figure_db=5.0,
    )  # fmt: skip
    given = RadioParams(carrier_hz=28e9, bandwidth_hz=400e6)
    assert build_link(name="v2v_urban", radio=given).radio == given


def test_the_link_budget_follows_the_radio() -> None:
    """Free space at 100 m (heights 0): SNR = P + Gt + Gr − FSPL − (−174 + 10 log B + NF)."""
    radio = RadioParams(carrier_hz=28e9, bandwidth_hz=100e6, tx_power_dbm=20.0,
                        tx_gain_dbi=10.0, rx_gain_dbi=6.0, noise_figure_db=7.0)  # fmt: skip
    st = build_link(name="free_space", radio=radio)(distance_m=100.0)
    fspl = 20 * math.log10(4 * math.pi * 100.0 * 28e9 / 299_792_458.0)
    snr = 20 + 10 + 6 - fspl - (-174 + 10 * math.log10(100e6) + 7)
    assert float(st.snr_db[0]) == pytest.approx(snr, abs=1e-4)
    assert st.bandwidth_hz == 100e6 and st.extra["carrier_hz"] == 28e9


@pytest.mark.parametrize("path", LINK_FILES, ids=lambda p: p.stem)
def test_link_yaml_radio_fields_are_the_models_default_radio(path: Path) -> None:
    """The shipped scenarios (``conf/link``) and ``LinkModel.default_radio`` are one set of
    values: the YAML maps field for field onto ``RadioParams``."""
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    model = LINKS.get(cfg["name"])
    assert set(RADIO_FIELDS) <= set(cfg), f"{path.name} lacks radio fields"
    assert RadioParams(**{k: cfg[k] for k in RADIO_FIELDS}) == model.default_radio
    assert build_link(cfg).radio == model.default_radio


def test_agent_radio_defaults_are_the_radio_defaults() -> None:
    agent = RadioConfig()
    assert agent.link_to(agent) == DEFAULT_RADIO  # one antenna: no array gain
    rsu = RadioConfig(tx_power_dbm=30.0, antenna_gain_dbi=8.0, num_antennas=2, carrier_hz=2e9)
    ue = RadioConfig(antenna_gain_dbi=1.0, bandwidth_hz=10e6, noise_figure_db=5.0)
    assert rsu.link_to(ue) == RadioParams(
        carrier_hz=2e9, bandwidth_hz=10e6, tx_power_dbm=30.0,
        tx_gain_dbi=8.0 + 10 * math.log10(2), rx_gain_dbi=1.0, noise_figure_db=5.0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="network radio: field 'bandwidth_hz' is 0; expected"):
        RadioConfig(bandwidth_hz=0)
    with pytest.raises(ValueError, match="network radio: field 'antenna_gain_dbi' is inf"):
        RadioConfig(antenna_gain_dbi=math.inf)


def _numeric(node: ast.AST | None) -> bool:
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, int | float)


def _literal_defaults(path: Path) -> list[str]:
    """Radio settings given a numeric literal default in ``path``: function parameters,
    annotated class fields and ``kw.setdefault("carrier_hz", ...)``. (Scenario values passed
    to ``RadioParams(...)`` / ``RadioConfig(...)`` are not defaults of a module.)"""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            pos = [*args.posonlyargs, *args.args]
            pairs = list(zip(pos[len(pos) - len(args.defaults) :], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            bad += [
                f"{node.name}({a.arg}=...)"
                for a, d in pairs
                if a.arg in RADIO_NAMES and _numeric(d)
            ]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id in RADIO_NAMES and _numeric(node.value):
                bad.append(f"{node.target.id}: ... = literal")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "setdefault"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in RADIO_NAMES
        ):
            bad.append(f"setdefault({node.args[0].value!r}, ...)")
    return [f"{path.relative_to(ROOT)}:{b}" for b in bad]


def test_radio_defaults_are_declared_once() -> None:
    """Only ``channels/radio.py`` declares a radio setting's default; every other module takes
    it from ``DEFAULT_RADIO`` or a model's ``default_radio`` (a ``RadioParams``)."""
    bad = []
    for folder in ("channels", "v2x", "semcom", "perception", "datasets"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path != ROOT / "channels" / "radio.py":
                bad += _literal_defaults(path)
    assert not bad, "radio defaults declared outside channels/radio.py:\n" + "\n".join(bad)
    assert _literal_defaults(ROOT / "channels" / "radio.py")  # the check sees them there


def test_thz_radio_is_its_own() -> None:
    m = build_link(name="thz")
    assert m.radio.carrier_hz == 300e9 and m.radio.tx_gain_dbi == 25.0
    st = m(distance_m=torch.tensor([10.0]))
    assert st.bandwidth_hz == 10e9
