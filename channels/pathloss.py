"""Terrestrial and air-to-ground path-loss models (registry ``LINKS``).

All distances in m, ``fc`` in GHz inside the formulas (``carrier_hz`` in the configs), losses in
dB, ``log`` is log10. Sources per class; constants in ``/shared/reference/channel_formulas.md``.
"""

from __future__ import annotations

import math

import torch

from v2x.channels.budget import SPEED_OF_LIGHT as C
from v2x.channels.link import LINKS, LOS, NLOS, NLOSV, Geometry, LinkModel
from v2x.channels.radio import RadioParams, check_radio_value


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log10(x)


def fspl_db(d3d: torch.Tensor, fc_ghz: float) -> torch.Tensor:
    """Free-space path loss ``20·log10(4π d f / c)`` = 32.45 + 20 log f_GHz + 20 log d_m."""
    return 20 * _log(4 * math.pi * d3d * fc_ghz * 1e9 / C)


@LINKS.register("free_space")
class FreeSpace(LinkModel):
    """Friis free-space path loss (always LOS, no shadowing)."""

    name = "free_space"
    default_h_tx_m = 0.0
    default_h_rx_m = 0.0

    def __init__(self, **kw) -> None:
        kw.setdefault("shadowing", False)
        kw.setdefault("los_mode", "los")
        super().__init__(**kw)

    def path_loss_db(self, geo: Geometry, condition: torch.Tensor) -> torch.Tensor:
        return fspl_db(geo.d3d, self.fc_ghz)


# ---------------------------------------------------------------------------------------------
# 3GPP TR 37.885 V2V sidelink (Tables 6.2.1-1, 6.2-1, 6.2.3-1; ns-3 ThreeGppV2v*).
# ---------------------------------------------------------------------------------------------


class _V2V(LinkModel):
    """3GPP TR 37.885 V2V (sidelink) path loss with LOS / NLOSv / NLOS.

    * LOS: highway ``32.4 + 20 log d3D + 20 log fc``; urban ``38.77 + 16.7 log d3D + 18.2 log fc``.
    * NLOS (building): ``36.85 + 30 log d3D + 18.9 log fc`` (both scenarios).
    * NLOSv (vehicle, TR 37.885 §6.2.1): LOS + an additional blockage loss
      ``A = max(0 dB, X)``, ``X`` "a log-normal random variable" with mean ``μ_a`` dB and standard
      deviation ``σ_a`` dB, i.e. ``X ~ N(μ_a, σ_a²)`` in dB (log-normal in linear scale, 3GPP's
      sense of the word, as for the shadow fading; the ``max(0 dB, ·)`` clip only means
      something for that reading). No loss if both antennas are above the blocker (case 1);
      ``μ_a = 9 + max(0, 15 log d3D − 41)``, ``σ_a = 4.5`` if both are below it (case 2); else
      ``μ_a = 5 + max(0, 15 log d3D − 41)``, ``σ_a = 4`` (case 3). Without shadowing: ``μ_a``,
      which is the median of ``A`` (``μ_a ≥ 5 > 0``: the clip moves less than half the mass);
      ``E[A] = μ_a Φ(μ_a/σ_a) + σ_a φ(μ_a/σ_a)`` is slightly above it (9.04 dB for 9/4.5).
      (ns-3 reads ``X`` as a log-normal *in dB* with mean ``μ_a`` and std ``σ_a``; its median
      ``μ_a²/√(μ_a² + σ_a²)`` is 8.05 dB for case 2, and its clip never acts.)
    * σ_SF: LOS/NLOSv 3 dB, NLOS 4 dB. Valid 0.5–100 GHz.
    * P_LOS (LOS vs NLOSv; NLOS only from the scene geometry): urban
      ``min(1, 1.05·exp(−0.0114 d))``; highway ``min(1, 2.1013e-6 d² − 0.002 d + 1.0193)`` for
      ``d ≤ 475`` m, else ``max(0, 0.54 − 0.001 (d − 475))``.
    * ``los_mode``: ``nlos`` forces NLOSv (``nlos_condition``), not NLOS; ``probabilistic`` and
      ``expected`` choose between LOS and NLOSv; NLOS only with ``geometric`` (a building in the
      scene, ``link_conditions``).

    Args (besides ``LinkModel``'s): ``blocker_height_m`` (1.6 cars, 3 trucks).
    """

    freq_range_hz = (0.5e9, 100e9)
    default_h_tx_m = 1.6  # TR 37.885 Table 6.1.2-1 (vehicle antenna height)
    default_h_rx_m = 1.6
    los_const, los_slope, los_freq = 0.0, 0.0, 0.0

    def __init__(self, blocker_height_m: float = 1.6, **kw) -> None:
        super().__init__(**kw)
        self.blocker_height_m = check_radio_value(
            self.name, "blocker_height_m", blocker_height_m, least=0
        )

    def nlos_condition(self) -> int:
        return NLOSV

    def los_pl(self, geo: Geometry) -> torch.Tensor:
        return (
            self.los_const
            + self.los_slope * _log(geo.d3d)
            + self.los_freq * math.log10(self.fc_ghz)
        )

    def path_loss_db(self, geo: Geometry, condition: torch.Tensor) -> torch.Tensor:
        nlos = 36.85 + 30 * _log(geo.d3d) + 18.9 * math.log10(self.fc_ghz)
        los = self.los_pl(geo)
        return torch.where(condition == NLOS, nlos, los)

    def blockage_params(self, geo: Geometry) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(μ_a, σ_a, applies) of the NLOSv vehicle blockage loss, ``[L]``."""
        lo = torch.minimum(geo.h_tx, geo.h_rx)
        hi = torch.maximum(geo.h_tx, geo.h_rx)
        excess = (15 * _log(geo.d3d) - 41).clamp_min(0)
        both_below = hi < self.blocker_height_m
        mu = torch.where(both_below, 9 + excess, 5 + excess)
        sigma = torch.where(both_below, torch.full_like(mu, 4.5), torch.full_like(mu, 4.0))
        applies = ~(lo > self.blocker_height_m)
        return mu, sigma, applies

    def extra_loss_db(self, geo: Geometry, condition: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"blockage_db": [L]}``: the NLOSv blockage loss (dB), 0 for other conditions.

        With shadowing, ``max(0, N(μ_a, σ_a²))`` dB (one draw per link); without, its median
        ``μ_a``.
        """
        mu, sigma, applies = self.blockage_params(geo)
        if self.shadowing:
            z = torch.randn(mu.shape, generator=self.generator, dtype=torch.float64)
            loss = mu + sigma * z
        else:
            loss = mu  # the median of max(0, N(μ_a, σ_a²)), as μ_a > 0
        loss = torch.where((condition == NLOSV) & applies, loss.clamp_min(0), torch.zeros_like(mu))
        return {"blockage_db": loss}

    def shadow_std_db(self, geo: Geometry, condition: torch.Tensor) -> torch.Tensor:
        return torch.where(condition == NLOS, 4.0, 3.0).to(geo.d3d.dtype).expand_as(geo.d3d)


@LINKS.register("v2v_highway")
class V2VHighway(_V2V):
    __doc__ = _V2V.__doc__
    name = "v2v_highway"
    los_const, los_slope, los_freq = 32.4, 20.0, 20.0

    def los_probability(self, geo: Geometry) -> torch.Tensor:
        d = geo.d2d
        near = (2.1013e-6 * d.square() - 0.002 * d + 1.0193).clamp(max=1.0)
        far = (0.54 - 0.001 * (d - 475)).clamp(min=0.0)
        return torch.where(d <= 475, near, far).clamp(0, 1)


@LINKS.register("v2v_urban")
class V2VUrban(_V2V):
    __doc__ = _V2V.__doc__
    name = "v2v_urban"
    los_const, los_slope, los_freq = 38.77, 16.7, 18.2

    def los_probability(self, geo: Geometry) -> torch.Tensor:
        return (1.05 * torch.exp(-0.0114 * geo.d2d)).clamp(max=1.0)


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


__all__ = [
    "AL_HOURANI_ENVIRONMENTS",
    "AlHourani",
    "FreeSpace",
    "NLOS",
    "NLOSV",
    "RMaAV",
    "UMaAV",
    "UMiAV",
    "UMiStreetCanyon",
    "V2VHighway",
    "V2VUrban",
    "fspl_db",
]
