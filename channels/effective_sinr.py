"""What the receiver knows about its SINR, and effective-SINR mappings over a resource grid.

Over a frequency-selective channel with estimated CSI every resource element (RE) has its own
post-equalisation SINR, and the channel-estimation error caps it: an LS estimate interpolated
between pilots is wrong by the noise on the pilots *and* by the channel's change between them
(Doppler, delay spread), so however high the nominal SNR, the usable SINR saturates. Link
adaptation and gates must look at that SINR, not at the nominal Es/N0.

This module holds the pieces shared by the channels (which report the SINR) and the codecs
(which map it to an MCS or a gate decision):

* ``post_equalization_sinr``: the per-RE SINR of one-tap equalisation with an estimated
  channel, ``|a|²|ĥ|² / (no + σε²)`` with ``h = a ĥ + ε`` the regression of the true channel on
  the estimate over a grid (LS noise and interpolation error both included).
* ``receiver_sinr(state)``: the ``[B, n]`` per-symbol SINR a ``ChannelState`` carries, or
  ``None`` for channels without frequency selectivity (the receiver then knows the plain SNR).
* ``eesm_db``: exponential effective SINR mapping through Sionna SYS's ``EESM`` block and its
  shipped β table (38.214 MCS table 1), per code block.
* ``analog_effective_snr_db``: the AWGN-equivalent SNR of unbiased equalised symbols for an analog
  (MSE-driven) receiver, ``1 / mean(1/SINR)``: the noise power the decoder actually sees.

Everything here is torch, works on any device, and imports Sionna lazily.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from v2x.channels.base import ChannelState

#: SINR (linear) floor/ceiling used where a value must be finite and positive (−60…+60 dB).
SINR_MIN = 1e-6
SINR_MAX = 1e6


def post_equalization_sinr(
    h: torch.Tensor,
    h_hat: torch.Tensor,
    no: torch.Tensor,
    mse_dims: tuple[int, ...],
) -> torch.Tensor:
    """Per-RE SINR of one-tap equalisation with an estimated channel, estimation error included.

    The receiver knows ``ĥ`` and its estimator's statistics over a grid (what a receiver can
    calibrate for its pilot design, SNR and mobility), not the per-RE error. Over the REs of
    ``mse_dims`` the true channel is regressed on the estimate, ``h = a ĥ + ε`` with
    ``a = Σ h ĥ* / Σ |ĥ|²`` and ``σε² = mean |h − a ĥ|²`` (``ε`` uncorrelated with ``ĥ``), so
    ``y = a ĥ x + (ε x + n)`` and the equalised symbol has

        ``SINR = |a|² |ĥ|² / (no + σε²)``.

    This covers both kinds of error: LS noise on the pilots (``ĥ = h + w``: ``a = 1/(1 + σw²)``
    shrinks the estimate, ``σε² = σw² / (1 + σw²)``) and interpolation error between pilots
    (``ĥ`` smooth, ``h`` not: ``a ≈ 1``, ``σε² = E|h − ĥ|²``). Perfect CSI gives ``|h|² / no``.

    Args:
        h: true channel, complex, any shape (e.g. ``[G, N_d]`` data REs of ``G`` grids).
        h_hat: the receiver's estimate, same shape.
        no: noise variance per RE, broadcastable to ``h`` (e.g. ``[G, 1]``).
        mse_dims: dimensions over which ``a`` and ``σε²`` are estimated (one grid's REs).

    Returns:
        float32 tensor shaped like ``h``: the linear SINR per RE, in ``[SINR_MIN, SINR_MAX]``.
    """
    h = h.to(torch.complex64)
    h_hat = h_hat.to(torch.complex64)
    gain = h_hat.real.square() + h_hat.imag.square()
    a = (h * h_hat.conj()).sum(dim=mse_dims, keepdim=True) / gain.sum(
        dim=mse_dims, keepdim=True
    ).clamp_min(1e-30)
    resid = h - a * h_hat
    eps = (resid.real.square() + resid.imag.square()).mean(dim=mse_dims, keepdim=True)
    a2 = a.real.square() + a.imag.square()
    return (a2 * gain / (no.to(torch.float32) + eps)).clamp(SINR_MIN, SINR_MAX)


def receiver_sinr(state: ChannelState) -> torch.Tensor | None:
    """``[B, n]`` float32 linear SINR per symbol that the receiver knows, or ``None``.

    ``None`` means the channel reports no per-symbol SINR (AWGN, flat fading, erasure over
    those): the receiver's SNR is the plain ``1 / state.no``. Erased symbols get SINR 0.
    """
    if state.sinr is None:
        return None
    sinr = state.sinr.to(torch.float32)
    if state.erased is not None:
        sinr = torch.where(state.erased, torch.zeros_like(sinr), sinr)
    return sinr


@lru_cache(maxsize=4)
def _eesm(device: str):
    from sionna.sys import EESM

    return EESM(device=device)


def eesm_db(sinr: torch.Tensor, mcs_index: int | torch.Tensor) -> torch.Tensor:
    """Effective SINR (dB) of code blocks by EESM (Sionna SYS ``EESM``, MCS table 1 β values).

    Args:
        sinr: ``[..., S]`` float linear SINR of the ``S`` symbols of each block (> 0; Sionna
            treats 0 as an unused RE, so callers floor erased symbols to ``SINR_MIN``).
        mcs_index: 38.214 table-1 MCS index (int, or ``[...]`` int per block).

    Returns:
        ``[...]`` float32 effective SINR in dB, clipped to Sionna's [−30, 30] dB.
    """
    lead = sinr.shape[:-1]
    flat = sinr.reshape(-1, sinr.shape[-1]).to(torch.float32).clamp_min(SINR_MIN)
    dev = f"cuda:{flat.device.index or 0}" if flat.device.type == "cuda" else "cpu"
    mcs = torch.as_tensor(mcs_index, dtype=torch.int32).to(flat.device)
    mcs = mcs.expand(lead).reshape(-1, 1)  # [N, num_ut = 1]
    # Sionna's layout: [..., num_ofdm_symbols, num_subcarriers, num_ut, num_streams_per_ut].
    eff = _eesm(dev)(flat[:, None, :, None, None], mcs, mcs_table_index=1, per_stream=False)
    return (10.0 * torch.log10(eff.reshape(lead))).to(torch.float32)


def analog_effective_snr_db(sinr: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B]`` float32 AWGN-equivalent SNR (dB) of unbiased equalised symbols.

    An analog decoder fed ``x̂ = x + w`` with per-symbol noise variance ``1 / SINR_i`` sees mean
    noise power ``mean_i(1 / SINR_i)``; the AWGN channel with the same noise power has SNR
    ``1 / mean_i(1 / SINR_i)`` (the harmonic mean of the SINRs: deep fades and bad estimates
    dominate, as they do the decoder's input). Equal to the SNR on AWGN.

    Args:
        sinr: ``[B, n]`` linear SINR per symbol (0 = erased: excluded, the decoder sees zeros
            there, not noise).
        mask: ``[B, n]`` bool symbols that were sent (``None``: all).

    Returns:
        ``[B]`` dB; −inf-free: a row with nothing received gives −60 dB.
    """
    used = sinr > 0
    if mask is not None:
        used = used & mask
    inv = torch.where(used, 1.0 / sinr.clamp_min(SINR_MIN), torch.zeros_like(sinr))
    count = used.sum(dim=1)
    mean_inv = inv.sum(dim=1) / count.clamp_min(1)
    snr = torch.where(count > 0, 1.0 / mean_inv.clamp_min(1.0 / SINR_MAX), SINR_MIN)
    return (10.0 * torch.log10(snr.clamp(SINR_MIN, SINR_MAX))).to(torch.float32)
