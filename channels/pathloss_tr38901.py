"""3GPP TR 38.901 terrestrial path loss (UMa, UMi street canyon, RMa: Tables 7.4.1-1 and
7.4.2-1) and the ``umi_street_canyon`` link model (registry ``LINKS``); the TR 36.777 aerial
models (``v2x.channels.pathloss_aerial``) fall back on these formulas.

All distances in m, ``fc`` in GHz inside the formulas, losses in dB, ``log`` is log10.
Constants in ``/shared/reference/channel_formulas.md``.
"""

from __future__ import annotations

import math

import torch

from v2x.channels.budget import SPEED_OF_LIGHT as C
from v2x.channels.link import LINKS, LOS, Geometry, LinkModel
from v2x.channels.pathloss_free import _log
from v2x.channels.radio import RadioParams

# ---------------------------------------------------------------------------------------------
# 3GPP TR 38.901 (Table 7.4.1-1, 7.4.2-1) terrestrial UMa / UMi street canyon / RMa.
# ---------------------------------------------------------------------------------------------


def _bp_prime(h_bs: torch.Tensor, h_ut: torch.Tensor, fc_ghz: float, h_e: float = 1.0):
    return 4 * (h_bs - h_e) * (h_ut - h_e) * fc_ghz * 1e9 / C


def umi_sc_pl(d3d, d2d, h_bs, h_ut, fc_ghz: float, nlos: torch.Tensor) -> torch.Tensor:
    """TR 38.901 UMi street canyon path loss (LOS with breakpoint; NLOS = max(LOS, PL'))."""
    lf = math.log10(fc_ghz)
    bp = _bp_prime(h_bs, h_ut, fc_ghz)
    pl1 = 32.4 + 21 * _log(d3d) + 20 * lf
    pl2 = 32.4 + 40 * _log(d3d) + 20 * lf - 9.5 * _log(bp.square() + (h_bs - h_ut).square())
    los = torch.where(d2d <= bp, pl1, pl2)
    nl = 35.3 * _log(d3d) + 22.4 + 21.3 * lf - 0.3 * (h_ut - 1.5)
    return torch.where(nlos, torch.maximum(los, nl), los)


def uma_pl(d3d, d2d, h_bs, h_ut, fc_ghz: float, nlos: torch.Tensor) -> torch.Tensor:
    """TR 38.901 UMa path loss (``h_E = 1`` m in the breakpoint)."""
    lf = math.log10(fc_ghz)
    bp = _bp_prime(h_bs, h_ut, fc_ghz)
    pl1 = 28.0 + 22 * _log(d3d) + 20 * lf
    pl2 = 28.0 + 40 * _log(d3d) + 20 * lf - 9 * _log(bp.square() + (h_bs - h_ut).square())
    los = torch.where(d2d <= bp, pl1, pl2)
    nl = 13.54 + 39.08 * _log(d3d) + 20 * lf - 0.6 * (h_ut - 1.5)
    return torch.where(nlos, torch.maximum(los, nl), los)


def rma_breakpoint_m(h_bs: torch.Tensor, h_ut: torch.Tensor, fc_ghz: float) -> torch.Tensor:
    """TR 38.901 RMa breakpoint distance ``d_BP = 2π h_BS h_UT f_c / c`` (m, ``f_c`` in Hz)."""
    return 2 * math.pi * h_bs * h_ut * fc_ghz * 1e9 / C


def rma_pl(d3d, d2d, h_bs, h_ut, fc_ghz: float, nlos: torch.Tensor, h=5.0, w=20.0):
    """TR 38.901 RMa path loss (building height ``h`` = 5 m, street width ``W`` = 20 m)."""
    lf = math.log10(fc_ghz)

    def pl1(d):
        return (
            20 * _log(40 * math.pi * d * fc_ghz / 3)
            + min(0.03 * h**1.72, 10) * _log(d)
            - min(0.044 * h**1.72, 14.77)
            + 0.002 * math.log10(h) * d
        )

    bp = rma_breakpoint_m(h_bs, h_ut, fc_ghz)
    los = torch.where(d2d <= bp, pl1(d3d), pl1(bp) + 40 * _log(d3d / bp))
    nl = (
        161.04
        - 7.1 * math.log10(w)
        + 7.5 * math.log10(h)
        - (24.37 - 3.7 * (h / h_bs) ** 2) * _log(h_bs)
        + (43.42 - 3.1 * _log(h_bs)) * (_log(d3d) - 3)
        + 20 * lf
        - (3.2 * _log(11.75 * h_ut) ** 2 - 4.97)
    )
    return torch.where(nlos, torch.maximum(los, nl), los)


#: Ground distances (m) the TR 38.901 path-loss formulas are specified for (Table 7.4.1-1, its
#: "applicability range"): UMi street canyon and UMa 10 m <= d2D <= 5 km; RMa LOS 10 m <= d2D
#: <= 10 km, NLOS 10 m <= d2D <= 5 km. (The TR 36.777 aerial ranges: ``_Aerial.aerial_max_d2d_m``.)
TR38901_D2D_RANGE_M = {
    "umi": (10.0, 5000.0, "TR 38.901 Table 7.4.1-1 (UMi street canyon)"),
    "uma": (10.0, 5000.0, "TR 38.901 Table 7.4.1-1 (UMa)"),
    "rma_los": (10.0, 10000.0, "TR 38.901 Table 7.4.1-1 (RMa)"),
    "rma_nlos": (10.0, 5000.0, "TR 38.901 Table 7.4.1-1 (RMa NLOS)"),
}


def _range(geo: Geometry, lo: float, hi: float, source: str):
    """``LinkModel.distance_range_m``'s answer for one range of every link."""
    return torch.full_like(geo.d2d, lo), torch.full_like(geo.d2d, hi), source


def umi_sc_p_los(d2d: torch.Tensor) -> torch.Tensor:
    """TR 38.901 Table 7.4.2-1 UMi street canyon: 1 (d ≤ 18) else 18/d + e^{−d/36}(1 − 18/d)."""
    d = d2d.clamp_min(1e-9)
    return torch.where(d2d <= 18, torch.ones_like(d), 18 / d + torch.exp(-d / 36) * (1 - 18 / d))


def uma_p_los(d2d: torch.Tensor, h_ut: torch.Tensor) -> torch.Tensor:
    """TR 38.901 Table 7.4.2-1 UMa (with the ``C'(h_UT)`` term for ``h_UT > 13`` m)."""
    d = d2d.clamp_min(1e-9)
    c = torch.where(h_ut <= 13, torch.zeros_like(h_ut), ((h_ut - 13) / 10).clamp_min(0) ** 1.5)
    base = 18 / d + torch.exp(-d / 63) * (1 - 18 / d)
    p = base * (1 + c * 5 / 4 * (d / 100) ** 3 * torch.exp(-d / 150))
    return torch.where(d2d <= 18, torch.ones_like(d), p).clamp(0, 1)


def rma_p_los(d2d: torch.Tensor) -> torch.Tensor:
    """TR 38.901 Table 7.4.2-1 RMa: 1 (d ≤ 10) else exp(−(d − 10)/1000)."""
    return torch.where(d2d <= 10, torch.ones_like(d2d), torch.exp(-(d2d - 10) / 1000))


@LINKS.register("umi_street_canyon")
class UMiStreetCanyon(LinkModel):
    """3GPP TR 38.901 UMi street canyon (RSU ↔ vehicle links), Table 7.4.1-1.

    ``d'_BP = 4 h'_BS h'_UT f_c / c`` (``h' = h − 1`` m); LOS: ``32.4 + 21 log d3D + 20 log fc``
    below the breakpoint, ``32.4 + 40 log d3D + 20 log fc − 9.5 log(d'_BP² + (h_BS − h_UT)²)``
    above; NLOS: ``max(PL_LOS, 35.3 log d3D + 22.4 + 21.3 log fc − 0.3 (h_UT − 1.5))``; σ_SF 4 /
    7.82 dB; P_LOS from Table 7.4.2-1. Validity: 0.5–100 GHz, 1.5 m ≤ h_UT ≤ 22.5 m (else
    ``ValueError``); ``d2D < 10`` m is clamped to 10 m (documented clamp). The transmitter is the
    base station / RSU (``h_tx_m``, default 10 m).
    """

    name = "umi_street_canyon"
    freq_range_hz = (0.5e9, 100e9)
    default_h_tx_m = 10.0
    default_h_rx_m = 1.5
    #: An RSU (30 dBm, 8 dBi) to a vehicle at 5.9 GHz / 20 MHz.
    default_radio = RadioParams(tx_power_dbm=30.0, tx_gain_dbi=8.0)

    def geometry(self, *args, **kwargs) -> Geometry:
        geo = super().geometry(*args, **kwargs)
        if bool(((geo.h_rx < 1.5) | (geo.h_rx > 22.5)).any()):
            raise ValueError(
                f"{self.name}: UE height 'h_rx_m' must be in [1.5, 22.5] m, got {geo.h_rx.tolist()}"
            )
        d2d = geo.d2d.clamp_min(10.0)
        d3d = torch.sqrt(d2d.square() + (geo.h_tx - geo.h_rx).square())
        return Geometry(d3d=d3d, d2d=d2d, h_tx=geo.h_tx, h_rx=geo.h_rx, d2d_given=geo.d2d)

    def distance_range_m(self, geo: Geometry, condition: torch.Tensor):
        return _range(geo, *TR38901_D2D_RANGE_M["umi"])

    def los_probability(self, geo: Geometry) -> torch.Tensor:
        return umi_sc_p_los(geo.d2d)

    def path_loss_db(self, geo: Geometry, condition: torch.Tensor) -> torch.Tensor:
        return umi_sc_pl(geo.d3d, geo.d2d, geo.h_tx, geo.h_rx, self.fc_ghz, condition != LOS)

    def shadow_std_db(self, geo: Geometry, condition: torch.Tensor) -> torch.Tensor:
        return torch.where(condition == LOS, 4.0, 7.82).to(geo.d3d.dtype).expand_as(geo.d3d)
