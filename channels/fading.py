"""Flat Rayleigh / Rician fading: block (per transmission or per block) and fast (Clarke/Jakes).

``y = h ⊙ x + n`` with ``E|h|² = 1``, ``n ~ CN(0, no)`` and ``no = 10^(−snr_db/10)`` (unit-energy
symbols, so ``snr_db`` is the average Es/N0). Rician: ``h = √(K/(K+1))·e^{jθ} + √(1/(K+1))·g``
with ``g ~ CN(0, 1)`` (3GPP TR 38.901 §7.5 uses the same K-factor convention).

Fast fading follows Clarke's isotropic-scattering model (Jakes spectrum): the diffuse part is a
sum of ``M`` sinusoids ``g(t) = Σ_m c_m exp(j 2π f_d t cos α_m)`` with stratified random arrival
angles ``α_m`` and i.i.d. complex Gaussian amplitudes ``c_m ~ CN(0, 1/M)``. At every instant ``g(t)``
is a sum of independent ``CN(0, 1/M)`` terms, so it is *exactly* ``CN(0, 1)`` (Rayleigh envelope,
``E|g|⁴ = 2``) for any ``M``, and its ensemble autocorrelation is exactly
``E[g(t+τ) g*(t)] = J0(2π f_d τ)`` (Clarke 1968; Patzold, *Mobile Fading Channels*, ch. 4). The
classic equal-amplitude form ``M^{-1/2} Σ_m exp(j(… + φ_m))`` has the same autocorrelation but is
only Gaussian as ``M → ∞`` (``E|g|⁴ = 2 − 1/M``; with ``M = 32`` its BPSK BER sits 0.6–1.5 %
below the Rayleigh closed form at 0–20 dB). The Doppler frequency is ``f_d = v·f_c/c`` from the
relative speed and the carrier.

Imperfect CSI (knob ``csi_error_var = σe²``): the receiver holds the LMMSE estimate ``ĥ`` of ``h``
from a noisy pilot observation, so that ``h = ĥ + e`` with ``e ~ CN(0, σe²)`` uncorrelated with
``ĥ`` (Yoo & Goldsmith, IEEE T-IT 2006); ``equalize`` then treats ``e·x`` as extra noise.
"""

from __future__ import annotations

import math
import numbers

import torch

from v2x.channels.awgn_triton import awgn_fused, fused_seed, use_fused
from v2x.channels.base import (
    CHANNELS,
    Channel,
    ChannelState,
    check_symbols,
    snr_db_to_noise_variance,
)
from v2x.channels.budget import SPEED_OF_LIGHT
from v2x.channels.fade_statistics import FadeStatistics, FastFade, flat_fade_statistics
from v2x.channels.radio import DEFAULT_RADIO, check_radio_value
from v2x.common import check_whole


def doppler_hz(speed_mps: float | torch.Tensor, carrier_hz: float) -> float | torch.Tensor:
    """Maximum Doppler shift ``f_d = v·f_c/c`` in Hz for relative speed ``speed_mps``."""
    if carrier_hz <= 0:
        raise ValueError(f"fading: 'carrier_hz' must be > 0, got {carrier_hz}")
    return speed_mps * carrier_hz / SPEED_OF_LIGHT


def _decibels_or_infinite(value: object) -> bool:
    """Whether ``value`` is a real number other than NaN (a K-factor in dB; ``±inf`` allowed)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)


def _k_linear(k_factor_db: float) -> float:
    """``10^(K/10)``; ``inf`` where it overflows a float (K > 3082 dB): the diffuse power
    ``1/(K+1)`` is then below any float's resolution, the gain the LOS part alone, as at ``inf``."""
    try:
        return 10.0 ** (k_factor_db / 10.0)
    except OverflowError:
        return math.inf


def _bessel_j0(x: torch.Tensor) -> torch.Tensor:
    return torch.special.bessel_j0(x)


def _complex_normal(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``CN(0, 1)`` samples of ``shape`` (complex64) from one real ``randn``."""
    return torch.view_as_complex(torch.randn(*shape, 2, device=device) * math.sqrt(0.5))


def sum_of_sinusoids(
    batch: int,
    n: int,
    fd_ts: torch.Tensor | float,
    num_sinusoids: int = 32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``[batch, n]`` complex64 unit-power Clarke-model fading process sampled every ``T_s``.

    ``g[b, k] = Σ_m c[b, m] · exp(j 2π f_d T_s k cos α[b, m])`` with ``c ~ CN(0, 1/M)`` i.i.d. and
    ``α[b, m]`` uniform in the ``m``-th of ``M`` equal arcs of the circle (stratified).

    Args:
        batch: independent processes ``B``.
        n: samples per process.
        fd_ts: normalised Doppler ``f_d·T_s`` (scalar or ``[batch]``).
        num_sinusoids: ``M``. Each sample is exactly ``CN(0, 1)`` for any ``M`` (a sum of
            independent complex Gaussians); the autocorrelation is ``J0(2π f_d T_s k)`` for any
            ``M`` in expectation over the random angles and amplitudes.
        device: where to draw (torch's default generator of that device).

    Returns:
        ``[batch, n]`` complex64.
    """
    fd = torch.as_tensor(fd_ts, dtype=torch.float32, device=device).reshape(-1, 1, 1)
    m = torch.arange(num_sinusoids, device=device, dtype=torch.float32)
    alpha = 2 * math.pi * (m + torch.rand(batch, num_sinusoids, device=device)) / num_sinusoids
    amp = _complex_normal((batch, num_sinusoids, 1), torch.device(device))
    t = torch.arange(n, device=device, dtype=torch.float32)
    phase = (2 * math.pi) * fd * torch.cos(alpha).unsqueeze(-1) * t  # [B, M, n]
    g = (amp * torch.polar(torch.ones_like(phase), phase)).sum(dim=1)
    return g / math.sqrt(num_sinusoids)


def ar1_process(
    batch: int, n: int, rho: torch.Tensor | float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``[batch, n]`` complex64 unit-power Gauss–Markov fading ``h_t = ρ h_{t−1} + √(1−ρ²) w_t``.

    With ``ρ = J0(2π f_d T_s)`` (Baddour & Beaulieu, IEEE TWC 2005, first-order fit) the lag-1
    correlation matches Clarke's model; longer lags decay as ``ρ^k`` instead of ``J0``. Computed
    in float64 chunks as ``ρ^k (h + √(1−ρ²) Σ_j ρ^{−j} w_j)`` (a cumulative sum, no Python loop
    per symbol); chunks keep ``ρ^{−L} ≤ 1e6`` so the rescaling stays exact to ~1e-10.

    Args:
        rho: scalar or ``[batch]`` correlation per symbol, in ``[0, 1]``.
    """
    r = torch.as_tensor(rho, dtype=torch.float64, device=device).reshape(-1, 1).expand(batch, 1)
    if bool(((r < 0) | (r > 1)).any()):
        raise ValueError("fading: AR(1) correlation 'rho' must be in [0, 1]")
    w = torch.view_as_complex(torch.randn(batch, n, 2, device=device, dtype=torch.float64))
    w = w * math.sqrt(0.5)
    r_min = float(r.min())
    chunk = (
        n if r_min >= 1.0 else max(1, min(n, int(math.log(1e6) / -math.log(max(r_min, 1e-300)))))
    )
    innov = torch.sqrt(1 - r.square())
    out = torch.empty(batch, n, dtype=torch.complex128, device=device)
    prev = None
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        k = torch.arange(stop - start, device=device, dtype=torch.float64)
        pw = r.pow(k)  # [B, L]
        ww = w[:, start:stop].clone()
        if prev is None:  # stationary start: h_0 = w_0
            ww[:, 1:] = ww[:, 1:] * innov
            acc = torch.cumsum(ww / torch.where(pw > 0, pw, 1.0), dim=1)
            seg = torch.where(pw > 0, pw * acc, ww)
        else:
            ww = ww * innov
            acc = torch.cumsum(ww / torch.where(pw > 0, pw, 1.0), dim=1)
            seg = torch.where(pw > 0, pw * (r * prev + acc), ww)
        out[:, start:stop] = seg
        prev = seg[:, -1:]
    return out.to(torch.complex64)


def doppler_from_velocities(v_tx, v_rx, carrier_hz: float) -> torch.Tensor:
    """``[L]`` maximum Doppler (Hz) from the relative speed ``|v_tx − v_rx|`` (``[L, 3]`` m/s)."""
    dv = torch.as_tensor(v_tx, dtype=torch.float64) - torch.as_tensor(v_rx, dtype=torch.float64)
    return doppler_hz(torch.linalg.norm(dv.reshape(-1, dv.shape[-1]), dim=-1), carrier_hz)


def _fading_real(xr: torch.Tensor, hr: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``h·x + scale·N(0, 1)`` in real arithmetic on ``[B, n, 2]`` views (what ``compile`` fuses)."""
    xre, xim = xr[..., 0], xr[..., 1]
    hre, him = hr[..., 0], hr[..., 1]
    y = torch.stack([hre * xre - him * xim, hre * xim + him * xre], dim=-1)
    return y + scale * torch.randn_like(xr)


_COMPILED: dict[str, object] = {}


def _compiled_fading_real():
    if "fn" not in _COMPILED:
        _COMPILED["fn"] = torch.compile(_fading_real, dynamic=True)
    return _COMPILED["fn"]


class FadingChannel(Channel):
    """Flat fading ``y = h x + n`` with receiver CSI ``ĥ``.

    Args:
        k_factor_db: Rician K in dB (``None``: Rayleigh; ``inf``: no diffuse part → AWGN with a
            phase rotation).
        block_len: symbols per fading block for block fading; ``None``: one gain per
            transmission (the whole ``[n]`` row, e.g. one packet/frame).
        fast: per-symbol time-correlated fading (Clarke/Jakes, sum of sinusoids with Gaussian
            amplitudes: exactly Rayleigh per symbol); overrides ``block_len``.
        doppler_hz: maximum Doppler shift; ``None``: from ``speed_mps`` and ``carrier_hz``.
        speed_mps: relative speed between the agents (m/s).
        carrier_hz: carrier frequency (Hz).
        symbol_rate_hz: complex symbols per second (``T_s = 1/symbol_rate_hz``).
        num_sinusoids: sinusoids of the fast-fading generator.
        fast_model: ``"sos"`` (sum of sinusoids, exact CN(0, 1) marginal and J0 autocorrelation)
            or ``"ar1"``
            (Gauss–Markov with ``ρ = J0(2π f_d T_s)``).
        csi_error_var: ``σe²`` of the receiver's channel estimate, ``0 ≤ σe² < 1/(K+1)``.
        los_phase: ``"random"`` (uniform per transmission) or ``"zero"`` LOS phase (Rician).
        validate: check inputs for NaN/Inf (a device sync; turn off in hot loops).
        compile: on CUDA, ``torch.compile`` the ``h·x + n`` kernel (real arithmetic, noise
            generated in the kernel); ignored on CPU.
        fused: on CUDA, when Triton is available and no gradient is needed, ``h·x + n`` in one
            kernel (``v2x.channels.awgn_triton``: 16 B of traffic per symbol with one gain per
            row, 24 with one per symbol). Seeded from torch's CPU generator, so
            ``torch.manual_seed`` makes it reproducible (the gains come from the device's).

    Forward:
        x: ``[B, n]`` complex64, snr_db ``[B]`` or scalar; optional ``doppler_hz`` ``[B]``
        overrides the configured one for fast fading.

    Returns ``y [B, n]`` and a state with ``h``/``h_hat`` of shape ``[B, 1]`` (one gain per
    transmission) or ``[B, n]``, ``err_var`` = ``σe²``.
    """

    erases = False  # fading and noise only: every channel use arrives

    def __init__(
        self,
        k_factor_db: float | None = None,
        block_len: int | None = None,
        fast: bool = False,
        doppler_hz: float | None = None,
        speed_mps: float = 30.0,
        carrier_hz: float = DEFAULT_RADIO.carrier_hz,
        symbol_rate_hz: float = 10e6,
        num_sinusoids: int = 32,
        fast_model: str = "sos",
        csi_error_var: float = 0.0,
        los_phase: str = "random",
        validate: bool = True,
        compile: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if block_len is not None and int(block_len) < 1:
            raise ValueError(f"fading: 'block_len' must be >= 1 or None, got {block_len}")
        # (NaN and infinities would pass a comparison and give NaN gains or plain AWGN)
        if k_factor_db is not None and not _decibels_or_infinite(k_factor_db):
            raise ValueError(
                f"fading: field 'k_factor_db' is {k_factor_db!r}; expected a number of dB "
                "(inf: no diffuse part; -inf or None: Rayleigh)"
            )
        speed_mps = check_radio_value("fading", "speed_mps", speed_mps, least=0.0)
        carrier_hz = check_radio_value("fading", "carrier_hz", carrier_hz, positive=True)
        symbol_rate_hz = check_radio_value("fading", "symbol_rate_hz", symbol_rate_hz, True)
        if doppler_hz is not None:
            doppler_hz = check_radio_value("fading", "doppler_hz", doppler_hz, least=0.0)
        num_sinusoids = check_whole("fading: field 'num_sinusoids'", num_sinusoids, 1)
        if fast_model not in ("sos", "ar1"):
            raise ValueError(f"fading: 'fast_model' must be 'sos' or 'ar1', got {fast_model!r}")
        if los_phase not in ("random", "zero"):
            raise ValueError(f"fading: 'los_phase' must be 'random' or 'zero', got {los_phase!r}")
        k_lin = 0.0 if k_factor_db is None else _k_linear(float(k_factor_db))
        self.k_factor = k_lin
        self.los_amp = math.sqrt(k_lin / (k_lin + 1.0)) if math.isfinite(k_lin) else 1.0
        self.diffuse_var = 1.0 / (k_lin + 1.0) if math.isfinite(k_lin) else 0.0
        if not 0.0 <= csi_error_var < max(self.diffuse_var, 1e-30) and csi_error_var != 0.0:
            raise ValueError(
                f"fading: 'csi_error_var' must be in [0, {self.diffuse_var:.4g}) "
                f"(the diffuse power 1/(K+1)), got {csi_error_var}"
            )
        self.block_len = None if block_len is None else int(block_len)
        self.fast = bool(fast)
        self.doppler = (
            float(doppler_hz) if doppler_hz is not None else doppler_hz_fn(speed_mps, carrier_hz)
        )
        self.doppler_carrier_hz = float(carrier_hz) if self.fast and doppler_hz is None else None
        self.symbol_rate_hz = float(symbol_rate_hz)
        self.num_sinusoids = int(num_sinusoids)
        self.fast_model = fast_model
        self.compile = bool(compile)
        self.fused = bool(fused)
        self.csi_error_var = float(csi_error_var)
        self.los_phase = los_phase
        self.validate = validate

    def sample_gains(
        self, batch: int, n: int, device: torch.device, doppler: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """True gains ``h`` (``[B, 1]`` or ``[B, n]`` complex64, ``E|h|² = 1``) and the LOS mean
        ``[B, 1]`` (``None`` for Rayleigh)."""
        if self.diffuse_var > 0:
            if self.fast:
                fd = self.doppler if doppler is None else doppler.to(device=device)
                fd_ts = (
                    torch.as_tensor(fd, dtype=torch.float64, device=device) / self.symbol_rate_hz
                )
                if self.fast_model == "sos":
                    g = sum_of_sinusoids(batch, n, fd_ts, self.num_sinusoids, device)
                else:
                    rho = _bessel_j0(2 * math.pi * fd_ts).clamp(0.0, 1.0)
                    g = ar1_process(batch, n, rho, device)
            elif self.block_len is None or self.block_len >= n:
                g = _complex_normal((batch, 1), device)
            else:
                nb = -(-n // self.block_len)
                g = _complex_normal((batch, nb), device)
                g = g.repeat_interleave(self.block_len, dim=1)[:, :n]
            h = g * math.sqrt(self.diffuse_var)
        else:
            h = torch.zeros(batch, 1, dtype=torch.complex64, device=device)
        if self.los_amp == 0:
            return h, None
        if self.los_phase == "zero":
            los = torch.full((batch, 1), self.los_amp, dtype=torch.complex64, device=device)
        else:
            theta = 2 * math.pi * torch.rand(batch, 1, device=device)
            los = torch.polar(torch.full_like(theta, self.los_amp), theta)
        return h + los, los

    def fade_statistics(self) -> FadeStatistics | None:
        """The distribution of the receiver's ``|ĥ|²`` (``v2x.channels.fade_statistics``),
        drawn per transmission or per ``block_len`` symbols, or, for fast fading, every symbol
        with the configured Doppler (``FastFade``: ``f_d T_s``, the generator; a Doppler passed
        to ``forward`` is not seen here); ``None`` without a diffuse part."""
        if not hasattr(self, "_fade"):  # (the quantiles once per channel)
            fast = None
            if self.fast:
                fd_ts = self.doppler / self.symbol_rate_hz
                fast = FastFade(fd_ts, self.fast_model, self.num_sinusoids)
            self._fade = flat_fade_statistics(
                self.los_amp**2, self.diffuse_var, self.csi_error_var, self.block_len, fast=fast
            )
        return self._fade

    def estimate(self, h: torch.Tensor, los: torch.Tensor | None) -> torch.Tensor:
        """LMMSE estimate ``ĥ`` with error variance ``csi_error_var`` (``h`` itself if 0).

        The receiver observes ``z = h + w`` (pilots, ``w ~ CN(0, σw²)``) and knows the LOS mean;
        ``σw² = σe²·Ωd/(Ωd − σe²)`` makes the LMMSE error variance equal ``σe²``.
        """
        ev = self.csi_error_var
        if ev == 0.0:
            return h
        od = self.diffuse_var
        obs_var = ev * od / (od - ev)
        mean = torch.zeros_like(h[:, :1]) if los is None else los
        z = h + _complex_normal(tuple(h.shape), h.device) * math.sqrt(obs_var)
        return mean + (od / (od + obs_var)) * (z - mean)

    def forward(
        self, x: torch.Tensor, snr_db: torch.Tensor, doppler_hz: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ChannelState]:
        if self.validate:
            check_symbols(x)
        batch, n = x.shape
        no = snr_db_to_noise_variance(snr_db, batch, x.device)
        h, los = self.sample_gains(batch, n, x.device, doppler_hz)
        if self.fused and use_fused(x):
            y = awgn_fused(x, no, fused_seed(), gain=h)
        else:
            scale = torch.sqrt(no * 0.5).reshape(-1, 1, 1)
            if self.compile and x.is_cuda:
                hr = torch.view_as_real(h.to(x.dtype))
                xr = torch.view_as_real(x)
                y = torch.view_as_complex(_compiled_fading_real()(xr, hr, scale))
            else:
                # y = h·x + n: one complex multiply, one randn, one fused addcmul on the real view
                hx = torch.view_as_real(h.to(x.dtype) * x)
                noise = torch.randn_like(hx)
                y = torch.view_as_complex(torch.addcmul(hx, noise, scale.to(hx.dtype)))
        imperfect = self.csi_error_var > 0
        extra = (
            {"doppler_hz": self.doppler if doppler_hz is None else doppler_hz} if self.fast else {}
        )
        return y, ChannelState(
            no=no,
            h=h,
            h_hat=self.estimate(h, los) if imperfect else None,
            err_var=self.csi_error_var if imperfect else None,
            extra=extra,
            linear_gaussian=True,
        )


doppler_hz_fn = doppler_hz


@CHANNELS.register("rayleigh", builds=FadingChannel)
def rayleigh(block_len: int | None = None, csi_error_var: float = 0.0, **kw) -> FadingChannel:
    """Block Rayleigh fading (one gain per transmission, or per ``block_len`` symbols)."""
    return FadingChannel(k_factor_db=None, block_len=block_len, csi_error_var=csi_error_var, **kw)


@CHANNELS.register("rician", builds=FadingChannel)
def rician(
    k_factor_db: float = 6.0, block_len: int | None = None, csi_error_var: float = 0.0, **kw
) -> FadingChannel:
    """Block Rician fading with K-factor ``k_factor_db``."""
    return FadingChannel(
        k_factor_db=k_factor_db, block_len=block_len, csi_error_var=csi_error_var, **kw
    )


@CHANNELS.register("rayleigh_fast", builds=FadingChannel)
def rayleigh_fast(**kw) -> FadingChannel:
    """Per-symbol Rayleigh fading with Clarke/Jakes Doppler from ``speed_mps`` and
    ``carrier_hz`` (``FadingChannel``'s arguments and defaults, ``fast=True``)."""
    return FadingChannel(fast=True, **kw)


@CHANNELS.register("rician_fast", builds=FadingChannel)
def rician_fast(k_factor_db: float = 6.0, **kw) -> FadingChannel:
    """Per-symbol Rician fading: fixed LOS component plus a Clarke/Jakes diffuse part."""
    return FadingChannel(k_factor_db=k_factor_db, fast=True, **kw)
