"""Link budget, achievable rates, time on air, latency and age of information.

Thermal noise: ``N = −174 dBm/Hz + 10·log10(B) + NF`` (kT at 290 K). Shannon rate
``R = B·log2(1 + SNR)``. Finite blocklength (Polyanskiy, Poor, Verdú, IEEE T-IT 56(5), 2010, the
normal approximation over complex AWGN): ``log2 M*(n, ε) ≈ n·C − √(n·V)·Q⁻¹(ε) + ½·log2 n`` with
``C = log2(1+P)`` and ``V = P(P+2)/(P+1)²·log2²e`` bits per complex channel use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

THERMAL_NOISE_DBM_PER_HZ = -174.0
SPEED_OF_LIGHT = 299_792_458.0
LOG2E = math.log2(math.e)


def _t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def thermal_noise_dbm(bandwidth_hz: float, noise_figure_db: float) -> float:
    """Noise power in dBm over ``bandwidth_hz`` with receiver noise figure ``noise_figure_db``."""
    if bandwidth_hz <= 0:
        raise ValueError(f"budget: 'bandwidth_hz' must be > 0, got {bandwidth_hz}")
    return THERMAL_NOISE_DBM_PER_HZ + 10 * math.log10(bandwidth_hz) + noise_figure_db


def received_power_dbm(
    tx_power_dbm: float, tx_gain_dbi: float, rx_gain_dbi: float, path_loss_db
) -> torch.Tensor:
    """``P_rx = P_tx + G_tx + G_rx − PL`` (dBm), ``[L]`` float64."""
    return tx_power_dbm + tx_gain_dbi + rx_gain_dbi - _t(path_loss_db)


def capacity_lin(snr_lin: torch.Tensor) -> torch.Tensor:
    """Shannon capacity ``log2(1 + P)`` of a linear SNR ``P`` in bits per complex channel use
    (in ``snr_lin``'s dtype and device). The project's one Shannon-rate formula, as
    ``log1p(P) / ln 2``: ``1 + P`` rounds ``P`` away below the dtype's epsilon (float32: 0 bits
    per use from about −72 dB, 6 % off at −60 dB; float64: 0 from −160 dB), ``log1p`` keeps
    its relative precision at every SNR."""
    return torch.log1p(snr_lin) / math.log(2.0)


def dispersion_lin(snr_lin: torch.Tensor) -> torch.Tensor:
    """Channel dispersion ``V = P(P+2)/(P+1)²·log2²e`` of complex AWGN at linear SNR ``P``
    (bits² per use)."""
    p = snr_lin
    return p * (p + 2) / (p + 1) ** 2 * LOG2E**2


def normal_approx_error_prob(
    snr_lin: torch.Tensor, n: float | torch.Tensor, k: float | torch.Tensor
) -> torch.Tensor:
    """Block error probability of the best ``(n, k)`` code over complex AWGN at linear SNR
    ``P`` (normal approximation): ``Q((n·C − k + ½·log2 n) / √(n·V))``, float64
    (Polyanskiy, Poor, Verdú, IEEE T-IT 2010, eq. (296) with the complex-AWGN dispersion)."""
    p = snr_lin.to(torch.float64)
    n = torch.as_tensor(n, dtype=torch.float64, device=p.device)
    k = torch.as_tensor(k, dtype=torch.float64, device=p.device)
    arg = (n * capacity_lin(p) - k + 0.5 * torch.log2(n)) / torch.sqrt(
        n * dispersion_lin(p)
    ).clamp_min(1e-30)
    return 0.5 * torch.erfc(arg / math.sqrt(2))


def shannon_capacity(snr_db: torch.Tensor) -> torch.Tensor:
    """Shannon capacity ``log2(1 + 10^(snr_db/10))`` in bits per complex channel use, computed
    in ``snr_db``'s own dtype and device (pass float64 where a ``ceil`` of a bit count over it
    must not move by one use): ``capacity_lin`` of the linear SNR."""
    return capacity_lin(torch.pow(10.0, snr_db / 10.0))


def capacity_bits_per_use(snr_db_) -> torch.Tensor:
    """``shannon_capacity`` of any number or array, in float64."""
    return shannon_capacity(_t(snr_db_))


def shannon_rate_bps(snr_db_, bandwidth_hz: float) -> torch.Tensor:
    """``B·log2(1 + snr)`` in bit/s."""
    return bandwidth_hz * capacity_bits_per_use(snr_db_)


def dispersion_bits2(snr_db_) -> torch.Tensor:
    """Channel dispersion ``V = P(P+2)/(P+1)²·log2²e`` of complex AWGN (bits² per use)."""
    return dispersion_lin(torch.pow(10.0, _t(snr_db_) / 10))


def _qinv(eps) -> torch.Tensor:
    return math.sqrt(2) * torch.special.erfinv(1 - 2 * _t(eps))


def fbl_rate_bits_per_use(snr_db_, blocklength: int, error_prob: float) -> torch.Tensor:
    """Max coding rate (bits per complex use) at blocklength ``n`` and block error ``ε``
    (normal approximation): ``C − √(V/n)·Q⁻¹(ε) + log2(n)/(2n)``, floored at 0."""
    if blocklength < 1:
        raise ValueError(f"budget: 'blocklength' must be >= 1, got {blocklength}")
    if not 0 < error_prob < 1:
        raise ValueError(f"budget: 'error_prob' must be in (0, 1), got {error_prob}")
    n = float(blocklength)
    c, v = capacity_bits_per_use(snr_db_), dispersion_bits2(snr_db_)
    r = c - torch.sqrt(v / n) * _qinv(error_prob) + math.log2(n) / (2 * n)
    return r.clamp_min(0.0)


def fbl_error_prob(snr_db_, blocklength: int, info_bits: float) -> torch.Tensor:
    """Block error probability of the best code with ``info_bits`` in ``blocklength`` uses
    (``normal_approx_error_prob`` at ``snr_db``)."""
    return normal_approx_error_prob(torch.pow(10.0, _t(snr_db_) / 10), blocklength, info_bits)


def channel_uses(payload_bits: float, bits_per_use) -> torch.Tensor:
    """Complex channel uses needed for ``payload_bits`` at ``bits_per_use`` (ceil)."""
    if payload_bits < 0:
        raise ValueError(f"budget: 'payload_bits' must be >= 0, got {payload_bits}")
    r = _t(bits_per_use)
    return torch.where(r > 0, torch.ceil(payload_bits / r.clamp_min(1e-300)), math.inf)


def time_on_air_s(payload_bits: float, bits_per_use, bandwidth_hz: float) -> torch.Tensor:
    """Seconds on air: channel uses / symbol rate (one complex use per second per Hz)."""
    return channel_uses(payload_bits, bits_per_use) / bandwidth_hz


def age_of_information_s(latency_s, update_interval_s: float, loss_prob=0.0) -> torch.Tensor:
    """Average age of information of periodic updates (every ``Δ`` s), each delivered after
    ``latency_s`` or lost independently with ``loss_prob``:
    ``L + Δ/2 + Δ·p/(1−p)`` (= ``L + E[X²]/(2E[X])`` with inter-delivery ``X = Δ·Geom(1−p)``)."""
    p = _t(loss_prob)
    if bool((p < 0).any()) or bool((p >= 1).any()):
        raise ValueError(f"budget: 'loss_prob' must be in [0, 1), got {loss_prob}")
    if update_interval_s <= 0:
        raise ValueError(f"budget: 'update_interval_s' must be > 0, got {update_interval_s}")
    d = update_interval_s
    return _t(latency_s) + d / 2 + d * p / (1 - p)


@dataclass
class LinkReport:
    """What it costs to send one payload over a link (``[L]`` float64 tensors)."""

    snr_db: torch.Tensor
    capacity_bps: torch.Tensor
    rate_bps: torch.Tensor
    channel_uses: torch.Tensor
    time_on_air_s: torch.Tensor
    latency_s: torch.Tensor
    aoi_s: torch.Tensor
    error_prob: float


def link_report(
    link,
    payload_bits: float,
    blocklength: int | None = None,
    error_prob: float = 1e-5,
    header_bits: float = 0.0,
    processing_s: float = 0.0,
    update_interval_s: float = 0.1,
) -> LinkReport:
    """Rate, time on air, latency and AoI for ``payload_bits`` over each link of ``LinkState``.

    Args:
        link: ``LinkState`` (uses ``snr_db``, ``bandwidth_hz``, ``distance_m``).
        blocklength: channel uses per codeword for the finite-blocklength rate; ``None``: Shannon.
        error_prob: target block error (finite blocklength), also the loss in the AoI.
        header_bits: per-payload header overhead.
        processing_s: fixed encode/decode time added to the latency.
        update_interval_s: period of the updates for the age of information.

    Latency = time on air + propagation (distance / c) + processing.
    """
    snr = _t(link.snr_db)
    cap = capacity_bits_per_use(snr)
    if blocklength is None:
        per_use, eps = cap, 0.0
    else:
        per_use, eps = fbl_rate_bits_per_use(snr, blocklength, error_prob), error_prob
    bits = payload_bits + header_bits
    uses = channel_uses(bits, per_use)
    toa = uses / link.bandwidth_hz
    prop = _t(link.distance_m) / SPEED_OF_LIGHT if link.distance_m is not None else 0.0
    latency = toa + prop + processing_s
    return LinkReport(
        snr_db=snr,
        capacity_bps=cap * link.bandwidth_hz,
        rate_bps=per_use * link.bandwidth_hz,
        channel_uses=uses,
        time_on_air_s=toa,
        latency_s=latency,
        aoi_s=age_of_information_s(latency, update_interval_s, eps),
        error_prob=eps,
    )
