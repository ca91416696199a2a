"""Agents' radios and the network's configuration: which link model each pair of agent kinds
uses, with which radios, LOS mode and options (``NetworkConfig``, Hydra group ``network``), and
the ``v2x.channels`` link model that a pair's radios make (``_link_model``, ``link_carriers``).
The per-frame network built from it is ``v2x.network``'s (which re-exports these names).

Link models are chosen by the unordered pair of the two agents' kinds (``vehicle-vehicle`` → V2V
sidelink, ``vehicle-rsu`` → 38.901 UMi, ``*-uav`` → air-to-ground, optionally THz): the channels
package's link models (``v2x.channels.LINKS``: ``v2v_urban``, ``v2v_highway``,
``umi_street_canyon``, ``al_hourani``, ``uma_av``/``umi_av``/``rma_av``, ``free_space``,
``thz``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from v2x.channels.radio import (
    DEFAULT_RADIO,
    POSITIVE_FIELDS,
    RadioParams,
    check_radio_field,
    check_radio_value,
)
from v2x.common import check_switch, check_whole, dataclass_from
from v2x.datasets.frame import AGENT_KINDS

LOS_MODES = ("geometric", "probabilistic", "expected", "los", "nlos")


# --------------------------------------------------------------------------- radios
@dataclass
class RadioConfig:
    """One agent kind's radio (Hydra: ``network.radios.<kind>``); defaults from
    ``v2x.channels.radio.DEFAULT_RADIO``, values checked by its rules.

    Attributes:
        tx_power_dbm: transmit power.
        antenna_gain_dbi: gain of each antenna element (tx and rx).
        num_antennas: elements; ideal beamforming/combining adds ``10·log10(num_antennas)`` dB
            on each side.
        carrier_hz: carrier frequency.
        bandwidth_hz: channel bandwidth (one complex channel use per Hz per second).
        noise_figure_db: receiver noise figure.
    """

    tx_power_dbm: float = DEFAULT_RADIO.tx_power_dbm
    antenna_gain_dbi: float = DEFAULT_RADIO.tx_gain_dbi
    num_antennas: int = 1
    carrier_hz: float = DEFAULT_RADIO.carrier_hz
    bandwidth_hz: float = DEFAULT_RADIO.bandwidth_hz
    noise_figure_db: float = DEFAULT_RADIO.noise_figure_db

    def __post_init__(self) -> None:
        for name in ("tx_power_dbm", "antenna_gain_dbi", *POSITIVE_FIELDS, "noise_figure_db"):
            check_radio_field("network radio", name, getattr(self, name))
        check_whole("network radio: field 'num_antennas'", self.num_antennas, 1)

    @property
    def array_gain_db(self) -> float:
        return 10.0 * math.log10(int(self.num_antennas))

    def link_to(self, rx: RadioConfig) -> RadioParams:
        """The ``RadioParams`` of a link from this radio to ``rx``: this carrier, power and
        antenna + array gain; the receiver's bandwidth, antenna + array gain and noise figure."""
        return RadioParams(
            carrier_hz=self.carrier_hz,
            bandwidth_hz=rx.bandwidth_hz,
            tx_power_dbm=self.tx_power_dbm,
            tx_gain_dbi=self.antenna_gain_dbi + self.array_gain_db,
            rx_gain_dbi=rx.antenna_gain_dbi + rx.array_gain_db,
            noise_figure_db=rx.noise_figure_db,
        )


def default_radios() -> dict[str, RadioConfig]:
    """C-V2X-like defaults at 5.9 GHz / 20 MHz: RSUs transmit louder with higher-gain antennas."""
    return {
        "vehicle": RadioConfig(),
        "rsu": RadioConfig(
            tx_power_dbm=30.0, antenna_gain_dbi=8.0, num_antennas=2, noise_figure_db=5.0
        ),
        "uav": RadioConfig(antenna_gain_dbi=2.0),
    }


def default_link_models() -> dict[str, str]:
    """Link model per kind pair (keys ``kindA-kindB`` in ``AGENT_KINDS`` order)."""
    return {
        "vehicle-vehicle": "v2v_urban",
        "vehicle-rsu": "umi_street_canyon",
        "rsu-rsu": "umi_street_canyon",
        "vehicle-uav": "al_hourani",
        "rsu-uav": "al_hourani",
        "uav-uav": "free_space",
    }


def kind_pair(kind_a: str, kind_b: str) -> str:
    """Canonical unordered key ``"vehicle-rsu"`` (kinds sorted by ``AGENT_KINDS`` order)."""
    for kind in (kind_a, kind_b):
        if kind not in AGENT_KINDS:
            raise ValueError(
                f"network: unknown agent kind {kind!r}; valid: {', '.join(AGENT_KINDS)}"
            )
    first, second = sorted((kind_a, kind_b), key=AGENT_KINDS.index)
    return f"{first}-{second}"


@dataclass
class NetworkConfig:
    """The per-frame network (Hydra group ``network``).

    Attributes:
        comm_range_m: collaborators farther than this from the ego (3D) are not connected.
        los_mode: ``"geometric"`` (scene boxes block the segment), ``"probabilistic"`` (the
            model's P_LOS, seeded), ``"expected"`` (path loss averaged over P_LOS), ``"los"`` or
            ``"nlos"`` (forced).
        link_models: link-model name per kind pair (``"vehicle-rsu": "umi_street_canyon"``, …).
        radios: ``RadioConfig`` per agent kind.
        link_options: extra constructor kwargs per link model (e.g.
            ``{"al_hourani": {"environment": "dense_urban"}, "thz": {"beamwidth_deg": 3}}``).
        shadowing: draw log-normal shadowing / random blockage (seeded per frame); ``False``
            uses the models' median losses.
        seed: seeds probabilistic LOS and shadowing draws (with the frame id).
    """

    comm_range_m: float = 300.0
    los_mode: str = "geometric"
    link_models: dict[str, str] = field(default_factory=default_link_models)
    radios: dict[str, RadioConfig] = field(default_factory=default_radios)
    link_options: dict[str, dict] = field(default_factory=dict)
    shadowing: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.los_mode not in LOS_MODES:
            raise ValueError(
                f"network: field 'los_mode' is {self.los_mode!r}; valid choices: {', '.join(LOS_MODES)}"
            )
        check_radio_value("network", "comm_range_m", self.comm_range_m, positive=True)
        check_switch("network: field 'shadowing'", self.shadowing)
        check_whole("network: field 'seed'", self.seed, 0)
        links = default_link_models()
        for key, name in dict(self.link_models).items():
            a, _, b = str(key).partition("-")
            canonical = kind_pair(a, b)
            if name not in link_model_names():
                raise ValueError(
                    f"network: field 'link_models.{key}' is {name!r}; valid choices: "
                    f"{', '.join(link_model_names())}"
                )
            links[canonical] = str(name)
        self.link_models = links
        radios = default_radios()
        for kind, radio in dict(self.radios).items():
            if kind not in AGENT_KINDS:
                raise ValueError(
                    f"network: field 'radios.{kind}' is not an agent kind; valid: {AGENT_KINDS}"
                )
            radios[kind] = radio if isinstance(radio, RadioConfig) else _radio_from(radio, kind)
        self.radios = radios
        self._check_link_options()

    def _check_link_options(self) -> None:
        """Build each link model with its ``link_options`` once, so a bad option (NaN, an
        unknown field) is refused at planning, not at the first frame."""
        from v2x.channels import LINKS

        for model, options in dict(self.link_options).items():
            if model not in link_model_names():
                raise ValueError(
                    f"network: field 'link_options.{model}' names no link model; valid "
                    f"choices: {', '.join(link_model_names())}"
                )
            if not isinstance(options, Mapping):
                raise ValueError(
                    f"network: field 'link_options.{model}' must be a mapping of the model's "
                    f"options, got {options!r}"
                )
            try:
                _link_model(self, model, LINKS.get(model).default_radio, self.seed)
            except (TypeError, ValueError) as exc:  # (TypeError: an option it does not take)
                raise ValueError(f"network: field 'link_options.{model}': {exc}") from None

    @classmethod
    def from_dict(cls, data: Mapping | NetworkConfig | None) -> NetworkConfig:
        return dataclass_from(cls, data, "network")


def _radio_from(data: Mapping, kind: str) -> RadioConfig:
    return dataclass_from(
        RadioConfig, dict(data), f"network: 'radios.{kind}'", **default_radios()[kind].__dict__
    )


# --------------------------------------------------------------------------- link models
def link_model_names() -> list[str]:
    """Names of the channels package's link models (``v2x.channels.LINKS``)."""
    from v2x.channels import LINKS

    return LINKS.names()


def _link_model(cfg: NetworkConfig, model: str, radio: RadioParams, seed: int):
    """The ``v2x.channels`` link model ``model`` between radios ``radio`` (``RadioConfig.link_to``)
    with the network's LOS mode and shadowing and its ``link_options`` for ``model``."""
    from v2x.channels import LINKS, build_link

    options = dict(cfg.link_options.get(model, {}) or {})
    if model == "thz":  # THz radios are their own (300 GHz, 10 GHz, high-gain antennas)
        radio = dataclasses.replace(
            LINKS.get(model).default_radio,
            tx_power_dbm=radio.tx_power_dbm,
            noise_figure_db=radio.noise_figure_db,
        )
    if "radio" in options:  # a mapping of RadioParams fields replacing those of the radios
        radio = RadioParams.from_mapping(
            options.pop("radio"), radio, f"network: 'link_options.{model}.radio'"
        )
    params = {
        "name": model,
        "radio": radio,
        "los_mode": cfg.los_mode,
        "shadowing": cfg.shadowing,
        "seed": seed,
    }
    params.update(options)
    return build_link(params)


def link_carriers(cfg: NetworkConfig) -> dict[float, list[str]]:
    """The carriers (Hz) of the links of every kind pair, either side sending (a frame's kinds
    are not known before it is read), each with the fields that set it: the sender's radio or
    the model's ``link_options`` (THz: its own radio). Pairs the model refuses are left out."""
    out: dict[float, list[str]] = {}
    for pair, model in cfg.link_models.items():
        a, _, b = pair.partition("-")
        own = cfg.link_options.get(model) or {}
        for tx, rx in sorted({(a, b), (b, a)}):
            try:
                hz = _link_model(cfg, model, cfg.radios[tx].link_to(cfg.radios[rx]), 0).carrier_hz
            except ValueError:  # (the frame that has this pair raises)
                continue
            where = "" if "carrier_hz" in own else ".radio"
            if "carrier_hz" in own or model == "thz" or "carrier_hz" in (own.get("radio") or {}):
                field = f"network.link_options.{model}{where}.carrier_hz"
            else:
                field = f"network.radios.{tx}.carrier_hz"
            out.setdefault(float(hz), []).append(field)
    return {hz: list(dict.fromkeys(fields)) for hz, fields in out.items()}
