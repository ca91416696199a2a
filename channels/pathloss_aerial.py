"""Air-to-ground path-loss models (registry ``LINKS``): 3GPP TR 36.777 Annex B aerial UEs
(``uma_av``, ``umi_av``, ``rma_av``, falling back on TR 38.901 below their aerial height) and
Al-Hourani et al. 2014 (``al_hourani``).

All distances in m, ``fc`` in GHz inside the formulas, losses in dB, ``log`` is log10.
Constants in ``/shared/reference/channel_formulas.md``.
"""

from __future__ import annotations

import math

import torch

from v2x.channels.link import LINKS, LOS, Geometry, LinkModel
from v2x.channels.pathloss_free import _log, fspl_db
from v2x.channels.pathloss_tr38901 import (
    TR38901_D2D_RANGE_M,
    _range,
    rma_breakpoint_m,
    rma_p_los,
    rma_pl,
    uma_p_los,
    uma_pl,
    umi_sc_p_los,
    umi_sc_pl,
)
from v2x.channels.radio import RadioParams

# ---------------------------------------------------------------------------------------------
# 3GPP TR 36.777 aerial UEs (Annex B, Tables B-1, B-2, B-3).
# ---------------------------------------------------------------------------------------------


class _Aerial(LinkModel):
    """3GPP TR 36.777 Annex B aerial-UE model; ``tx`` is the base station (``h_tx_m``), ``rx`` the
    UAV (``h_rx_m``). Below ``min_aerial_height_m`` (22.5 m UMa/UMi, 10 m RMa) the terrestrial
    TR 38.901 model of the same scenario is used (the standard's fallback). Heights above 300 m
    raise ``ValueError``; 0.5–100 GHz (inherited from TR 38.901)."""

    freq_range_hz = (0.5e9, 100e9)
    min_aerial_height_m = 22.5
    default_h_rx_m = 100.0
    #: A macro base station (46 dBm, 8 dBi) to a UAV at 2 GHz / 10 MHz.
    default_radio = RadioParams(
        carrier_hz=2.0e9, bandwidth_hz=10e6, tx_power_dbm=46.0, tx_gain_dbi=8.0, rx_gain_dbi=0.0
    )

    def __init__(self, **kw) -> None:
        kw.setdefault("distance_m", 500.0)
        super().__init__(**kw)

    def geometry(self, *args, **kwargs) -> Geometry:
        geo = super().geometry(*args, **kwargs)
        if bool(((geo.h_rx < 1.5) | (geo.h_rx > 300)).any()):
            raise ValueError(
                f"{self.name}: UAV height 'h_rx_m' must be in [1.5, 300] m, got {geo.h_rx.tolist()}"
            )
        return geo

    def aerial(self, geo: Geometry) -> torch.Tensor:
        return geo.h_rx > self.min_aerial_height_m

    #: TR 36.777 Table B-2: the aerial formulas apply for d2D <= 4 km (UMa-AV, UMi-AV), 10 km
    #: (RMa-AV); the TR 38.901 fallback below ``min_aerial_height_m`` keeps its own range.
    aerial_max_d2d_m = 4000.0
    terrestrial_range = "uma"

    def distance_range_m(self, geo: Geometry, condition: torch.Tensor):
        aerial = self.aerial(geo)
        lo, hi, source = _range(geo, *TR38901_D2D_RANGE_M[self.terrestrial_range])
        if self.terrestrial_range == "rma_los":  # (RMa NLOS: 5 km)
            hi = torch.where(condition == LOS, hi, TR38901_D2D_RANGE_M["rma_nlos"][1])
            source = "TR 38.901 Table 7.4.1-1 (RMa)"
        if bool(aerial.any()):
            source = "TR 36.777 Table B-2" + ("" if bool(aerial.all()) else f" / {source}")
        lo = torch.where(aerial, 0.0, lo)
        return lo, torch.where(aerial, self.aerial_max_d2d_m, hi), source

    def los_probability(self, geo: Geometry) -> torch.Tensor:
        return torch.where(self.aerial(geo), self.p_los_av(geo), self.p_los_terrestrial(geo))

    def path_loss_db(self, geo: Geometry, condition: torch.Tensor) -> torch.Tensor:
        nlos = condition != LOS
        return torch.where(self.aerial(geo), self.pl_av(geo, nlos), self.pl_terrestrial(geo, nlos))

    @staticmethod
    def _p_los_form(d2d, d1, p1):
        d = d2d.clamp_min(1e-9)
        p = d1 / d + torch.exp(-d / p1) * (1 - d1 / d)
        return torch.where(d2d <= d1, torch.ones_like(d), p).clamp(0, 1)


@LINKS.register("uma_av")
class UMaAV(_Aerial):
    """TR 36.777 UMa-AV (h_BS 25 m). P_LOS (22.5 < h ≤ 100): ``d1 = max(460 log h − 700, 18)``,
    ``p1 = 4300 log h − 3800``, ``d1/d + e^{−d/p1}(1 − d1/d)``; h > 100 m: 1. PL LOS
    ``28 + 22 log d3D + 20 log fc`` (σ ``4.64 e^{−0.0066 h}``); NLOS
    ``−17.5 + (46 − 7 log h) log d3D + 20 log(40π fc/3)`` (σ 6). Fallback: TR 38.901 UMa."""

    name = "uma_av"
    default_h_tx_m = 25.0

    def p_los_av(self, geo):
        h = geo.h_rx
        d1 = (460 * _log(h) - 700).clamp_min(18)
        p1 = 4300 * _log(h) - 3800
        return torch.where(h > 100, torch.ones_like(h), self._p_los_form(geo.d2d, d1, p1))

    def p_los_terrestrial(self, geo):
        return uma_p_los(geo.d2d, geo.h_rx)

    def pl_av(self, geo, nlos):
        lf = math.log10(self.fc_ghz)
        los = 28.0 + 22 * _log(geo.d3d) + 20 * lf
        nl = (
            -17.5
            + (46 - 7 * _log(geo.h_rx)) * _log(geo.d3d)
            + 20 * math.log10(40 * math.pi * self.fc_ghz / 3)
        )
        return torch.where(nlos, nl, los)

    def pl_terrestrial(self, geo, nlos):
        return uma_pl(geo.d3d, geo.d2d, geo.h_tx, geo.h_rx, self.fc_ghz, nlos)

    def shadow_std_db(self, geo, condition):
        los = condition == LOS
        av = torch.where(los, 4.64 * torch.exp(-0.0066 * geo.h_rx), torch.full_like(geo.d3d, 6.0))
        ter = torch.where(los, 4.0, 6.0).to(geo.d3d.dtype)
        return torch.where(self.aerial(geo), av, ter)


@LINKS.register("umi_av")
class UMiAV(_Aerial):
    """TR 36.777 UMi-AV (h_BS 10 m). P_LOS: ``d1 = max(294.05 log h − 432.94, 18)``,
    ``p1 = 233.98 log h − 0.95``. PL LOS ``max(FSPL, 30.9 + (22.25 − 0.5 log h) log d3D +
    20 log fc)`` (σ ``max(5 e^{−0.01 h}, 2)``); NLOS ``max(PL_LOS, 32.4 + (43.2 − 7.6 log h)
    log d3D + 20 log fc)`` (σ 8). Fallback: TR 38.901 UMi street canyon."""

    name = "umi_av"
    default_h_tx_m = 10.0
    terrestrial_range = "umi"

    def p_los_av(self, geo):
        h = geo.h_rx
        d1 = (294.05 * _log(h) - 432.94).clamp_min(18)
        p1 = 233.98 * _log(h) - 0.95
        return self._p_los_form(geo.d2d, d1, p1)

    def p_los_terrestrial(self, geo):
        return umi_sc_p_los(geo.d2d)

    def pl_av(self, geo, nlos):
        lf, h = math.log10(self.fc_ghz), geo.h_rx
        los = torch.maximum(
            fspl_db(geo.d3d, self.fc_ghz), 30.9 + (22.25 - 0.5 * _log(h)) * _log(geo.d3d) + 20 * lf
        )
        nl = torch.maximum(los, 32.4 + (43.2 - 7.6 * _log(h)) * _log(geo.d3d) + 20 * lf)
        return torch.where(nlos, nl, los)

    def pl_terrestrial(self, geo, nlos):
        return umi_sc_pl(geo.d3d, geo.d2d.clamp_min(10), geo.h_tx, geo.h_rx, self.fc_ghz, nlos)

    def shadow_std_db(self, geo, condition):
        los = condition == LOS
        av = torch.where(
            los, (5 * torch.exp(-0.01 * geo.h_rx)).clamp_min(2), torch.full_like(geo.d3d, 8.0)
        )
        ter = torch.where(los, 4.0, 7.82).to(geo.d3d.dtype)
        return torch.where(self.aerial(geo), av, ter)


@LINKS.register("rma_av")
class RMaAV(_Aerial):
    """TR 36.777 RMa-AV (h_BS 35 m), aerial for h > 10 m. P_LOS (10 < h ≤ 40):
    ``d1 = max(1350.8 log h − 1602, 18)``, ``p1 = max(15021 log h − 16053, 1000)``; h > 40 m: 1.
    PL LOS ``max(23.9 − 1.8 log h, 20) log d3D + 20 log(40π fc/3)`` (σ ``4.2 e^{−0.0046 h}``);
    NLOS ``max(PL_LOS, −12 + (35 − 5.3 log h) log d3D + 20 log(40π fc/3))`` (σ 6).
    Fallback (h ≤ 10 m): TR 38.901 RMa (σ_SF LOS 4 dB before the breakpoint, 6 dB after; NLOS
    8 dB)."""

    name = "rma_av"
    default_h_tx_m = 35.0
    min_aerial_height_m = 10.0
    aerial_max_d2d_m = 10000.0
    terrestrial_range = "rma_los"

    def p_los_av(self, geo):
        h = geo.h_rx
        d1 = (1350.8 * _log(h) - 1602).clamp_min(18)
        p1 = (15021 * _log(h) - 16053).clamp_min(1000)
        return torch.where(h > 40, torch.ones_like(h), self._p_los_form(geo.d2d, d1, p1))

    def p_los_terrestrial(self, geo):
        return rma_p_los(geo.d2d)

    def pl_av(self, geo, nlos):
        h, lf = geo.h_rx, math.log10(40 * math.pi * self.fc_ghz / 3)
        los = (23.9 - 1.8 * _log(h)).clamp_min(20) * _log(geo.d3d) + 20 * lf
        nl = torch.maximum(los, -12 + (35 - 5.3 * _log(h)) * _log(geo.d3d) + 20 * lf)
        return torch.where(nlos, nl, los)

    def pl_terrestrial(self, geo, nlos):
        return rma_pl(geo.d3d, geo.d2d, geo.h_tx, geo.h_rx, self.fc_ghz, nlos)

    def shadow_std_db(self, geo, condition):
        los = condition == LOS
        av = torch.where(los, 4.2 * torch.exp(-0.0046 * geo.h_rx), torch.full_like(geo.d3d, 6.0))
        # TR 38.901 RMa LOS: σ_SF 4 dB up to the breakpoint (PL1), 6 dB beyond it (PL2); NLOS 8
        beyond = geo.d2d > rma_breakpoint_m(geo.h_tx, geo.h_rx, self.fc_ghz)
        ter = torch.where(los, torch.where(beyond, 6.0, 4.0), 8.0).to(geo.d3d.dtype)
        return torch.where(self.aerial(geo), av, ter)


# ---------------------------------------------------------------------------------------------
# Al-Hourani, Kandeepan, Lardner, "Optimal LAP altitude for maximum coverage", IEEE WCL 2014.
# ---------------------------------------------------------------------------------------------

AL_HOURANI_ENVIRONMENTS = {
    # (a, b, η_LOS dB, η_NLOS dB)
    "suburban": (4.88, 0.43, 0.1, 21.0),
    "urban": (9.61, 0.16, 1.0, 20.0),
    "dense_urban": (12.08, 0.11, 1.6, 23.0),
    "highrise_urban": (27.23, 0.08, 2.3, 34.0),
}


@LINKS.register("al_hourani")
class AlHourani(LinkModel):
    """Air-to-ground: ``P_LOS(θ) = 1 / (1 + a·exp(−b(θ − a)))`` with the elevation ``θ`` in
    degrees, ``PL = FSPL(d3D) + η_LOS|NLOS``. ``los_mode="expected"`` gives the paper's mean
    path loss ``FSPL + P_LOS η_LOS + (1 − P_LOS) η_NLOS``. Environments (a, b, η_LOS, η_NLOS):
    suburban (4.88, 0.43, 0.1, 21), urban (9.61, 0.16, 1, 20), dense urban (12.08, 0.11, 1.6, 23),
    high-rise urban (27.23, 0.08, 2.3, 34). ``tx`` is the UAV (``h_tx_m``), ``rx`` the ground
    node. No shadowing (the η are mean excess losses)."""

    name = "al_hourani"
    freq_range_hz = (0.1e9, 100e9)
    default_h_tx_m = 100.0
    default_h_rx_m = 1.5
    default_radio = RadioParams(carrier_hz=2.0e9, bandwidth_hz=10e6)

    def __init__(self, environment: str = "urban", **kw) -> None:
        if environment not in AL_HOURANI_ENVIRONMENTS:
            raise ValueError(
                f"al_hourani: unknown 'environment' {environment!r}; valid choices: "
                f"{', '.join(AL_HOURANI_ENVIRONMENTS)}"
            )
        kw.setdefault("shadowing", False)
        kw.setdefault("distance_m", 300.0)
        super().__init__(**kw)
        self.environment = environment
        self.a, self.b, self.eta_los, self.eta_nlos = AL_HOURANI_ENVIRONMENTS[environment]

    def elevation_deg(self, geo: Geometry) -> torch.Tensor:
        return torch.rad2deg(torch.atan2((geo.h_tx - geo.h_rx).abs(), geo.d2d))

    def los_probability(self, geo: Geometry) -> torch.Tensor:
        theta = self.elevation_deg(geo)
        return 1.0 / (1.0 + self.a * torch.exp(-self.b * (theta - self.a)))

    def path_loss_db(self, geo: Geometry, condition: torch.Tensor) -> torch.Tensor:
        eta = torch.where(condition == LOS, self.eta_los, self.eta_nlos).to(geo.d3d.dtype)
        return fspl_db(geo.d3d, self.fc_ghz) + eta
