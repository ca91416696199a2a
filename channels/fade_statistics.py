"""What a transmitter can plan on over a flat fade it does not see before sending.

Block fading (``rayleigh``, ``rician``: one gain per transmission or per ``block_len`` symbols)
draws its gain when the transmission goes on air, so the transmitter knows only the fade's
*distribution*; the receiver sees the realised gain (its CSI ``ĥ``) and decodes at the
post-equalisation SINR ``|ĥ|² / (no + σe²)`` (``v2x.channels.base.equalize``, ``σe²`` the
estimation error). At vehicular speeds this is the realistic case: at 30 m/s and 5.9 GHz the
coherence time (≈ 0.42 / f_d) is ≈ 0.7 ms, shorter than a report's round trip.

Link adaptation then plans on the error rate *averaged over the fade* (the ε-outage rule: the
highest rate whose outage probability is ≤ the target; Tse & Viswanath, *Fundamentals of
Wireless Communication*, § 5.4.1), which is also where 5G's outer-loop link adaptation settles
when the acknowledgements carry no information about the next fade. Planning at the average
SNR instead loses most of what is sent: over Rayleigh a transmission planned 1 dB below the
average SNR fails with probability ``1 − exp(−10^(−0.1)) ≈ 0.55``.

``FadeStatistics`` holds the fade as ``G`` equal-probability points: ``|ĥ|²`` at the quantile
midpoints ``(i + ½) / G`` of its distribution, so that the mean of any function of the SINR
over the points approximates its expectation over the fade (a probability to within
``1 / (2G)``). ``|ĥ|² = |m + d|²`` with the LOS mean ``|m|² = K / (K + 1)`` and the estimate's
diffuse part ``d ~ CN(0, 1/(K + 1) − σe²)`` (the LMMSE estimate's variance): a scaled
non-central χ² with 2 degrees of freedom (an exponential for Rayleigh).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

FADE_POINTS = 256
"""Equal-probability points a fade is held at (``FadeStatistics.gains``)."""


@dataclass(frozen=True)
class FadeStatistics:
    """The distribution of a flat fade the transmitter cannot see (``Channel.fade_statistics``).

    Attributes:
        gains: ``[G]`` float64 power gain ``|ĥ|²`` of the receiver's channel estimate at the
            ``(i + ½) / G`` quantiles of its distribution, ascending.
        error_var: ``σe²``, the estimate's error variance (treated as noise by the receiver).
        block_len: symbols per independent fade; ``None``: one fade per transmission.
    """

    gains: torch.Tensor
    error_var: float = 0.0
    block_len: int | None = None

    def sinr_db(self, snr_db: torch.Tensor) -> torch.Tensor:
        """``[B, G]`` float64 post-equalisation SINR (dB) at each of the fade's points for the
        average Es/N0 ``snr_db [B]`` (dB): ``|ĥ|² · s / (1 + σe² · s)`` with ``s = 10^(snr/10)``."""
        snr = torch.as_tensor(snr_db, dtype=torch.float64).reshape(-1, 1).cpu()
        gain_db = 10.0 * torch.log10(self.gains.clamp_min(1e-300))[None, :]
        loss_db = 10.0 * torch.log10(1.0 + self.error_var * torch.pow(10.0, snr / 10.0))
        return snr + gain_db - loss_db

    def shared_by(self, symbols: int) -> bool:
        """Whether every one of a transmission's ``symbols`` sees the same fade."""
        return self.block_len is None or self.block_len >= symbols


def flat_fade_statistics(
    los_power: float,
    diffuse_var: float,
    error_var: float = 0.0,
    block_len: int | None = None,
    points: int = FADE_POINTS,
) -> FadeStatistics | None:
    """The ``FadeStatistics`` of a flat fade ``h = m + d`` with ``|m|² = los_power`` and
    ``d ~ CN(0, diffuse_var)`` seen through an LMMSE estimate of error variance ``error_var``;
    ``None`` where there is no diffuse part (nothing unknown: a fixed gain)."""
    spread = diffuse_var - error_var  # the estimate's diffuse variance
    if diffuse_var <= 0.0 or spread <= 0.0:
        return None
    u = (np.arange(points, dtype=np.float64) + 0.5) / points
    if los_power == 0.0:
        gains = -spread * np.log1p(-u)  # Exp(mean spread): the exponential's quantiles
    else:
        from scipy.stats import ncx2

        # |m + d|² = (spread / 2) · χ'²(2, 2|m|² / spread)
        gains = 0.5 * spread * ncx2.ppf(u, 2, 2.0 * los_power / spread)
    if not np.all(np.isfinite(gains)):
        raise ValueError(
            f"fade statistics: non-finite quantiles for los_power={los_power}, "
            f"diffuse_var={diffuse_var}, error_var={error_var}"
        )
    return FadeStatistics(
        torch.from_numpy(gains), float(error_var), None if block_len is None else int(block_len)
    )

