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

**How many of the fade's draws a code block sees** (``FadeStatistics.looks``): one per
transmission (``block_len=None``), ``symbols / block_len`` of a block fade, and for fast fading
(``FastFade``: a new gain every symbol, correlated from symbol to symbol by the Doppler) the
*effective* number of independent draws ``L = 1 / Var(mean of |h|² over the window)``: for a
Gaussian process with autocorrelation ``ρ(k)``, ``Cov(|h_i|², |h_j|²) = |ρ(i − j)|²`` and so
``L(S) = S² / Σ_{|k|<S} (S − |k|) |ρ(k)|²`` (``S`` iid draws give ``S``, one draw 1; for Rician
the diffuse part's ``ρ``, the LOS part being fixed: an approximation). At 30 m/s,
5.9 GHz and 10 Msymbol/s (``f_d T_s ≈ 6e-5``) a code block of at most a few thousand symbols
sees ``L ≈ 1``: "fast" fading is then a block fade per code block. ``look_indices`` lays out
code blocks of ``L`` draws for link adaptation to take each block's EESM over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

FADE_POINTS = 256
"""Equal-probability points a fade is held at (``FadeStatistics.gains``)."""

SHARED_LOOKS = 1.05
"""A fast fade covers a run of symbols as one fade (``FadeStatistics.shared_by``) while the run
spans fewer effective draws than this: its mean power varies ≥ 95 % as much as one draw's."""

LOOK_BLOCKS = 4 * FADE_POINTS
"""Equally likely code blocks ``look_indices`` lays out (each point 4 times per column)."""


@dataclass(frozen=True)
class FastFade:
    """How a fast fade's gain moves from symbol to symbol (``FadingChannel(fast=True)``).

    Attributes:
        fd_ts: normalised Doppler ``f_d · T_s`` (cycles per symbol, ≥ 0).
        model: ``"sos"`` (Clarke's sum of ``num_sinusoids`` sinusoids with Gaussian
            amplitudes: ensemble autocorrelation ``J0(2π f_d T_s k)``) or ``"ar1"``
            (Gauss–Markov: ``ρ^k`` with ``ρ = J0(2π f_d T_s)``).
        num_sinusoids: ``M`` of ``"sos"``.
    """

    fd_ts: float
    model: str = "sos"
    num_sinusoids: int = 32

    def looks(self, symbols: int) -> float:
        """Effective independent draws (≥ 1) of the gain over ``symbols`` consecutive symbols.

        ``"ar1"``: ``L(S) = S² / Σ_{|k|<S} (S − |k|) ρ^{2|k|}``, exact for its Gaussian
        process. ``"sos"``: one realisation holds ``M`` fixed amplitudes ``c_m``, so its mean
        power over a long window tends to ``Σ|c_m|² / M``, not to 1 (it is not ergodic):
        ``1 / L = 1 / M + (1 − 1/M) / L_J0(S)`` with ``L_J0`` the formula at ``ρ(k) =
        J0(2π f_d T_s k)`` (the cross terms' variance with independent arrival angles; the
        generator's stratified angles give a slightly larger ``L``, so this errs low). Tested
        against the generators' own draws."""
        return _fast_looks(float(self.fd_ts), self.model, int(self.num_sinusoids), int(symbols))


@lru_cache(maxsize=1024)
def _fast_looks(fd_ts: float, model: str, num_sinusoids: int, symbols: int) -> float:
    """``FastFade.looks`` (cached: the planner asks for the same block lengths every call)."""
    from scipy.special import j0

    if symbols <= 1:
        return 1.0
    lag = np.arange(1, symbols, dtype=np.float64)
    if model == "ar1":
        rho = min(max(float(j0(2.0 * math.pi * fd_ts)), 0.0), 1.0)
        power = rho ** (2.0 * lag)
    elif model == "sos":
        power = j0(2.0 * math.pi * fd_ts * lag) ** 2
    else:
        raise ValueError(f"fade statistics: unknown fast-fading model {model!r}")
    # Σ_{|k|<S} (S − |k|) |ρ(k)|² = S + 2 Σ_{k≥1} (S − k) |ρ(k)|²
    looks = symbols**2 / (symbols + 2.0 * float(np.dot(symbols - lag, power)))
    if model == "sos":
        m = num_sinusoids
        looks = 1.0 / (1.0 / m + (1.0 - 1.0 / m) / looks)
    return max(1.0, looks)


@lru_cache(maxsize=64)
def look_indices(looks: int, points: int = FADE_POINTS) -> torch.Tensor:
    """``[LOOK_BLOCKS, looks]`` int64 indices into a fade's ``points`` equal-probability points:
    ``LOOK_BLOCKS`` equally likely code blocks, each spanning ``looks`` independent draws of the
    fade. A Latin hypercube: every column holds each point ``LOOK_BLOCKS / points`` times in an
    order of its own (a seeded generator: the same layout every call, torch's global generator
    untouched), so any function of one draw averages over the blocks exactly as over the
    points, and a block's draws are independent up to the columns' shared counts. Read-only
    (cached)."""
    if looks < 1 or LOOK_BLOCKS % points:
        raise ValueError(f"look_indices: need looks >= 1 and {LOOK_BLOCKS} % points == 0")
    gen = torch.Generator().manual_seed(7919 + looks)
    column = torch.arange(points, dtype=torch.int64).repeat(LOOK_BLOCKS // points)
    orders = torch.argsort(torch.rand(looks, LOOK_BLOCKS, generator=gen), dim=1)
    return column[orders].T.contiguous()


@dataclass(frozen=True)
class FadeStatistics:
    """The distribution of a flat fade the transmitter cannot see (``Channel.fade_statistics``).

    Attributes:
        gains: ``[G]`` float64 power gain ``|ĥ|²`` of the receiver's channel estimate at the
            ``(i + ½) / G`` quantiles of its distribution, ascending.
        error_var: ``σe²``, the estimate's error variance (treated as noise by the receiver).
        block_len: symbols per independent fade of a block fade; ``None``: one fade per
            transmission (or a fast fade).
        fast: ``None`` for a block fade (one gain per ``block_len`` symbols or per
            transmission); for a fast fade (a new gain every symbol) how the gain moves
            (``FastFade``). The points are the gain's distribution at any one symbol either way.
    """

    gains: torch.Tensor
    error_var: float = 0.0
    block_len: int | None = None
    fast: FastFade | None = None

    def sinr_db(self, snr_db: torch.Tensor) -> torch.Tensor:
        """``[B, G]`` float64 post-equalisation SINR (dB) at each of the fade's points for the
        average Es/N0 ``snr_db [B]`` (dB): ``|ĥ|² · s / (1 + σe² · s)`` with ``s = 10^(snr/10)``."""
        snr = torch.as_tensor(snr_db, dtype=torch.float64).reshape(-1, 1).cpu()
        gain_db = 10.0 * torch.log10(self.gains.clamp_min(1e-300))[None, :]
        loss_db = 10.0 * torch.log10(1.0 + self.error_var * torch.pow(10.0, snr / 10.0))
        return snr + gain_db - loss_db

    def looks(self, symbols: int) -> float:
        """Effective number (≥ 1) of independent draws of the fade that ``symbols`` consecutive
        symbols (a code block, a transmission) see: 1 for one fade per transmission,
        ``symbols / block_len`` (at least 1) for a block fade, ``FastFade.looks`` for a fast
        one."""
        if self.fast is not None:
            return self.fast.looks(symbols)
        return 1.0 if self.block_len is None else max(1.0, symbols / self.block_len)

    def shared_by(self, symbols: int) -> bool:
        """Whether every one of a transmission's ``symbols`` sees the same fade (a fast fade:
        whether they span fewer than ``SHARED_LOOKS`` effective draws)."""
        if self.fast is not None:
            return self.looks(symbols) < SHARED_LOOKS
        return self.block_len is None or self.block_len >= symbols


def flat_fade_statistics(
    los_power: float,
    diffuse_var: float,
    error_var: float = 0.0,
    block_len: int | None = None,
    points: int = FADE_POINTS,
    fast: FastFade | None = None,
) -> FadeStatistics | None:
    """The ``FadeStatistics`` of a flat fade ``h = m + d`` with ``|m|² = los_power`` and
    ``d ~ CN(0, diffuse_var)`` seen through an LMMSE estimate of error variance ``error_var``,
    drawn per ``block_len`` symbols or per transmission, or every symbol (``fast``); ``None``
    where there is no diffuse part (nothing unknown: a fixed gain)."""
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
    block = None if block_len is None or fast is not None else int(block_len)
    return FadeStatistics(torch.from_numpy(gains), float(error_var), block, fast)
