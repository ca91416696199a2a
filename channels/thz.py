"""Sub-THz / THz line-of-sight link (0.1–1 THz): free space + molecular absorption + beams.

``PL = FSPL(d, f) + 10·log10(e)·κ(f)·d + L_mis,tx + L_mis,rx`` (Beer–Lambert absorption,
Jornet & Akyildiz, IEEE TWC 2011). ``κ(f)`` [1/m] from the closed-form water-vapour models of
Kokkoniemi, Lehtomäki, Juntti:

* ``"kokkoniemi2020"`` — "A line-of-sight channel model for the 100–450 gigahertz frequency band",
  EURASIP JWCN 2021 (arXiv:2002.04918): six lines at 3.96 (O₂-like, 118.75 GHz), 6.11 (183 GHz),
  10.84 (325 GHz), 12.68 (380 GHz), 14.65, 14.94 cm⁻¹ plus a continuum
  ``μ/0.0157·(2e-4 + 0.915e-112 f^9.42)``; valid 100–450 GHz.
* ``"kokkoniemi2018"`` — "Simplified molecular absorption loss model for 275–400 GHz", EuCAP 2018:
  two lines (10.835, 12.664 cm⁻¹) plus a cubic ``g(f)``; valid 275–400 GHz.
* ``"constant"`` — a user-given ``absorption_coeff_per_m`` (e.g. from HITRAN/ITU-R P.676), the
  way to use 450 GHz–1 THz, where no closed form is implemented (``ValueError`` otherwise).

The water-vapour volume mixing ratio is ``μ = (RH/100)·p_w/p`` with Buck's saturation pressure
``p_w = 6.1121(1.0007 + 3.46e-6 p)·exp(17.502 (T − 273.15)/(T − 32.18))`` (p in hPa).

Beam misalignment: Gaussian main lobe (the 3GPP TR 38.901 Table 7.3-1 element pattern)
``L(θ) = min(12 (θ/θ_3dB)², A_max)`` dB per end, with a fixed and/or random pointing error.
"""

from __future__ import annotations

import math

import torch

from v2x.channels.budget import SPEED_OF_LIGHT as C
from v2x.channels.link import LINKS, LOS, Geometry, LinkModel
from v2x.channels.pathloss import fspl_db
from v2x.channels.radio import RadioParams, check_radio_value

TEN_LOG10_E = 10 * math.log10(math.e)  # 4.343 dB per neper
MODEL_RANGES_HZ = {
    "kokkoniemi2020": (100e9, 450e9),
    "kokkoniemi2018": (275e9, 400e9),
    "constant": (100e9, 1e12),
}


def water_vapor_vmr(temperature_k: float, pressure_hpa: float, relative_humidity: float) -> float:
    """Volume mixing ratio of water vapour (Buck's equation for the saturation pressure)."""
    if not 0 <= relative_humidity <= 100:
        raise ValueError(f"thz: 'relative_humidity' must be in [0, 100] %, got {relative_humidity}")
    # (Buck's equation divides by T − 32.18 K; NaN and infinities fail check_radio_value)
    check_radio_value("thz", "temperature_k", temperature_k, least=33.0)
    check_radio_value("thz", "pressure_hpa", pressure_hpa, positive=True)
    p_w = (
        6.1121
        * (1.0007 + 3.46e-6 * pressure_hpa)
        * math.exp(17.502 * (temperature_k - 273.15) / (temperature_k - 32.18))
    )
    return relative_humidity / 100 * p_w / pressure_hpa


def _lorentz(nu: torch.Tensor, num: float, den: float, center: float) -> torch.Tensor:
    return num / (den + (nu - center) ** 2)


def absorption_coefficient(
    freq_hz,
    model: str = "kokkoniemi2020",
    temperature_k: float = 296.0,
    pressure_hpa: float = 1013.25,
    relative_humidity: float = 50.0,
    coeff_per_m: float | None = None,
) -> torch.Tensor:
    """Molecular absorption coefficient ``κ(f)`` in 1/m (float64, shape of ``freq_hz``)."""
    if model not in MODEL_RANGES_HZ:
        raise ValueError(f"thz: unknown absorption model {model!r}; valid: {list(MODEL_RANGES_HZ)}")
    f = torch.as_tensor(freq_hz, dtype=torch.float64)
    lo, hi = MODEL_RANGES_HZ[model]
    if bool(((f < lo * (1 - 1e-9)) | (f > hi * (1 + 1e-9))).any()):
        raise ValueError(
            f"thz: 'carrier_hz' outside the {model} model's range [{lo:g}, {hi:g}] Hz; "
            "use model='constant' with 'absorption_coeff_per_m' elsewhere in 0.1–1 THz"
        )
    if coeff_per_m is not None:  # given but unused elsewhere: still a number, never NaN
        check_radio_value("thz", "absorption_coeff_per_m", coeff_per_m, least=0)
    if model == "constant":
        if coeff_per_m is None:
            raise ValueError("thz: model='constant' needs 'absorption_coeff_per_m' >= 0")
        return torch.full_like(f, float(coeff_per_m))
    mu = water_vapor_vmr(temperature_k, pressure_hpa, relative_humidity)
    nu = f / (100 * C)  # wavenumber in 1/cm
    if model == "kokkoniemi2018":
        a = 0.2205 * mu * (0.1303 * mu + 0.0294)
        b = (0.4093 * mu + 0.0925) ** 2
        c = 2.014 * mu * (0.1702 * mu + 0.0303)
        d = (0.537 * mu + 0.0956) ** 2
        g = 5.54e-37 * f**3 - 3.94e-25 * f**2 + 9.06e-14 * f - 6.36e-3
        return _lorentz(nu, a, b, 10.835) + _lorentz(nu, c, d, 12.664) + g
    lines = (
        (
            5.159e-5 * (1 - mu) * (-6.65e-5 * (1 - mu) + 0.0159),
            (-2.09e-4 * (1 - mu) + 0.05) ** 2,
            3.96,
        ),
        (0.1925 * mu * (0.135 * mu + 0.0318), (0.4241 * mu + 0.0998) ** 2, 6.11),
        (0.2251 * mu * (0.1314 * mu + 0.0297), (0.4127 * mu + 0.0932) ** 2, 10.84),
        (2.053 * mu * (0.1717 * mu + 0.0306), (0.5394 * mu + 0.0961) ** 2, 12.68),
        (0.177 * mu * (0.0832 * mu + 0.0213), (0.2615 * mu + 0.0668) ** 2, 14.65),
        (2.146 * mu * (0.1206 * mu + 0.0277), (0.3789 * mu + 0.0871) ** 2, 14.94),
    )
    kappa = sum(_lorentz(nu, num, den, ctr) for num, den, ctr in lines)
    return kappa + mu / 0.0157 * (2e-4 + 0.915e-112 * f**9.42)


def misalignment_loss_db(angle_rad, beamwidth_rad: float, max_loss_db: float = 30.0):
    """Gaussian-beam pointing loss ``min(12 (θ/θ_3dB)², A_max)`` dB."""
    a = torch.as_tensor(angle_rad, dtype=torch.float64)
    return (12 * (a / beamwidth_rad) ** 2).clamp(max=max_loss_db)


@LINKS.register("thz")
class THzLink(LinkModel):
    """THz LOS link with molecular absorption, high-gain antennas and beam misalignment.

    Args (besides ``LinkModel``'s; ``default_radio``: 300 GHz, 10 GHz bandwidth, 10 dBm,
    25 dBi per end, 10 dB noise figure):
        absorption_model: ``kokkoniemi2020`` | ``kokkoniemi2018`` | ``constant``.
        absorption_coeff_per_m: κ for ``constant``.
        temperature_k, pressure_hpa, relative_humidity: atmosphere.
        beamwidth_deg: 3 dB beamwidth of both beams.
        misalignment_deg: fixed pointing error per end.
        pointing_error_std_deg: std of a random Gaussian pointing error per end (drawn when
            ``shadowing`` is on).
        max_misalignment_loss_db: ``A_max`` of the beam pattern.
        blockage_loss_db: added when the scene says NLOS (``los_mode="geometric"``).
    """

    name = "thz"
    freq_range_hz = (100e9, 1e12)
    default_h_tx_m = 1.5
    default_h_rx_m = 1.5
    default_radio = RadioParams(
        carrier_hz=300e9,
        bandwidth_hz=10e9,
        tx_power_dbm=10.0,
        tx_gain_dbi=25.0,
        rx_gain_dbi=25.0,
        noise_figure_db=10.0,
    )

    def __init__(
        self,
        absorption_model: str = "kokkoniemi2020",
        absorption_coeff_per_m: float | None = None,
        temperature_k: float = 296.0,
        pressure_hpa: float = 1013.25,
        relative_humidity: float = 50.0,
        beamwidth_deg: float = 5.0,
        misalignment_deg: float = 0.0,
        pointing_error_std_deg: float = 0.0,
        max_misalignment_loss_db: float = 30.0,
        blockage_loss_db: float = 40.0,
        **kw,
    ) -> None:
        kw.setdefault("distance_m", 20.0)
        kw.setdefault("los_mode", "los")
        kw.setdefault("shadowing", False)
        super().__init__(**kw)
        check_radio_value("thz", "beamwidth_deg", beamwidth_deg, positive=True)
        check_radio_value("thz", "misalignment_deg", misalignment_deg)
        for name, value in (
            ("pointing_error_std_deg", pointing_error_std_deg),
            ("max_misalignment_loss_db", max_misalignment_loss_db),
            ("blockage_loss_db", blockage_loss_db),
        ):
            check_radio_value("thz", name, value, least=0)
        water_vapor_vmr(temperature_k, pressure_hpa, relative_humidity)  # checked for every model
        self.absorption_model = absorption_model
        self.kappa = float(
            absorption_coefficient(
                self.carrier_hz,
                absorption_model,
                temperature_k,
                pressure_hpa,
                relative_humidity,
                absorption_coeff_per_m,
            )
        )
        self.beamwidth_rad = math.radians(beamwidth_deg)
        self.misalignment_rad = math.radians(misalignment_deg)
        self.pointing_std_rad = math.radians(pointing_error_std_deg)
        self.max_mis_db = float(max_misalignment_loss_db)
        self.blockage_loss_db = float(blockage_loss_db)

    def path_loss_db(self, geo: Geometry, condition: torch.Tensor) -> torch.Tensor:
        return fspl_db(geo.d3d, self.fc_ghz)

    def extra_loss_db(self, geo: Geometry, condition: torch.Tensor) -> dict[str, torch.Tensor]:
        absorption = TEN_LOG10_E * self.kappa * geo.d3d
        angles = torch.full((2, geo.d3d.shape[0]), self.misalignment_rad, dtype=torch.float64)
        if self.shadowing and self.pointing_std_rad > 0:
            angles = angles + self.pointing_std_rad * torch.randn(
                angles.shape, generator=self.generator, dtype=torch.float64
            )
        mis = misalignment_loss_db(angles, self.beamwidth_rad, self.max_mis_db).sum(0)
        block = torch.where(condition == LOS, 0.0, self.blockage_loss_db).to(torch.float64)
        return {"absorption_db": absorption, "misalignment_db": mis, "blockage_db": block}
