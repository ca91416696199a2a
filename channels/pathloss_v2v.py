"""3GPP TR 37.885 V2V sidelink path-loss models ``v2v_highway`` and ``v2v_urban`` (registry
``LINKS``): LOS, NLOSv (vehicle blockage) and NLOS (building).

All distances in m, ``fc`` in GHz inside the formulas, losses in dB, ``log`` is log10.
Constants in ``/shared/reference/channel_formulas.md``.
"""

from __future__ import annotations

import math

import torch

from v2x.channels.link import LINKS, NLOS, NLOSV, Geometry, LinkModel
from v2x.channels.pathloss_free import _log
from v2x.channels.radio import check_radio_value

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
