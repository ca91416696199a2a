"""Code blocks that no decoder could decode, known from what arrived: the meta-converse bound.

Below a code's cliff (the −10 dB condition of a sweep, a deep fade) every block of the exact
digital chain runs all of the LDPC decoder's iterations and fails. Whether a block *can* be
decoded is known before decoding it, up to a probability that can be made negligible:

**The bound.** A code of ``M`` equiprobable codewords ``x_m`` is used once over a channel
``P(y|x)``; ``D_m`` are the (disjoint) decoding regions of any decoder. For any probability
distribution ``Q`` of the output and ``t = log2 M − γ``, on ``{i ≤ t}`` with the information
density ``i(x; y) = log2 P(y|x) / Q(y)`` one has ``P(y|x_m) ≤ 2^t Q(y)``, so

    P[decoded correctly, i(x; y) ≤ log2 M − γ]
        = Σ_m (1/M) ∫_{D_m ∩ {i ≤ t}} P(y|x_m) dy ≤ (2^t / M) Σ_m Q(D_m) ≤ 2^−γ

(the meta-converse's one-line core: Polyanskiy, Poor & Verdú, "Channel coding rate in the
finite blocklength regime", IEEE Trans. IT 56(5), 2010; Verdú & Han, IEEE Trans. IT 40(4), 1994,
with ``Q`` the code's own output distribution). A block whose received information density is
at most ``log2 M − γ`` bits is declared failed without decoding: the decoder would have decoded
it with probability at most ``2^−γ`` (``MARGIN_BITS`` = 40: ≤ 9.1·10⁻¹³ per block).

**Where it holds here.** ``M = 2^block_bits``: the LDPC code's information bits, the CRC
included (the decoder decodes the whole code). The chain's decoders (Sionna's belief
propagation, the min-sum decoder in float32 or float16) are symmetric and the code is linear,
and with QPSK (Gray labels, ±1/√2 per real dimension) each coded bit sees a binary-input
output-symmetric channel: the probability of the event above is the same for every sent
codeword, so the bound holds for the codeword actually sent, not only on average. The
likelihoods must be exact: ``y = h·x + n``, ``n ~ CN(0, no)``, with ``h`` known to the receiver
(``ChannelState.linear_gaussian``, no CSI error, not equalised by the channel). Anything else
(16-QAM and above, OFDM's reported SINRs, imperfect CSI, ARQ's merged copies) is decoded as
before. ``Q`` is the product, over the block's received real dimensions, of the output
distribution for equiprobable ``±a``; then ``i`` is a sum of one term per received dimension,
``1 − log2(1 + exp(−4·x_d·x̂_d / no_eff))`` (``x̂ = y / h`` with noise variance ``no_eff``;
an erased symbol carries no information and adds 0; a block resent by HARQ adds the terms of
every copy the decoder combines). Validity does not need ``Q`` to be tight, only the decoder's
symmetry and exact likelihoods; repeated coded bits (MCS 0–2) make the bound looser, never
wrong.

**What changes.** Only how the simulator learns a block failed: the decoder returns the same
verdict with probability ≥ 1 − 2^−40, or reports an undetected error (a wrong word that passes
CRC24A), which a skipped block turns into a detected failure. The decoded bits of a failed
block are never read (its bytes are lost). ``meta["undecodable_blocks"]`` counts the blocks so
declared per row.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from v2x.channels.base import ChannelState
from v2x.common import to_device_async

#: ``γ`` in bits: a skipped block would have decoded with probability ≤ 2^−40 ≈ 9.1·10⁻¹³.
MARGIN_BITS = 40.0


def bound_applies(state: ChannelState | None, qm: int) -> bool:
    """Whether the bound holds for blocks of modulation order ``qm`` received through a
    channel that left ``state``: QPSK, ``y = h·x + n`` exactly with ``h`` known (perfect CSI)
    and not equalised by the channel (see the module docstring)."""
    if qm != 2 or state is None or not state.linear_gaussian:
        return False
    perfect = state.h_hat is None and not _any(state.err_var)
    return perfect and not state.equalized and state.sinr is None


def _any(err_var: torch.Tensor | float | None) -> bool:
    if err_var is None:
        return False
    if isinstance(err_var, torch.Tensor):
        return bool((err_var != 0).any())
    return err_var != 0


def information_bits(
    x_hat: torch.Tensor, no_eff: torch.Tensor, sent: torch.Tensor, rows_per_call: int = 8192
) -> torch.Tensor:
    """Each QPSK block's received information density, in bits.

    Args:
        x_hat: ``[N, S]`` complex64 equalised symbols (``y / h``; 0 where erased).
        no_eff: ``[N, S]`` float32 noise variance of ``x_hat`` (``inf`` where erased).
        sent: ``[N, S]`` complex64 the symbols sent (±1/√2 per real dimension).
        rows_per_call: blocks per pass (bounds the ``[rows, S]`` float32 temporaries).

    Returns:
        ``[N]`` float64 ``Σ_d 1 − log2(1 + exp(−4·x_d·x̂_d / no_eff))`` over the ``2S`` real
        dimensions (the module docstring's ``i``), on ``x_hat``'s device.
    """
    out = torch.empty(x_hat.shape[0], dtype=torch.float64, device=x_hat.device)
    for j in range(0, x_hat.shape[0], rows_per_call):
        part = slice(j, j + rows_per_call)
        scale = -4.0 / no_eff[part].to(torch.float32)  # 0 where erased (no_eff = inf)
        x, sx = x_hat[part], sent[part]
        lost = F.softplus(sx.real * x.real * scale) + F.softplus(sx.imag * x.imag * scale)
        out[part] = (2.0 - lost / math.log(2.0)).sum(dim=1, dtype=torch.float64)
    return out


def decodable(info_bits: torch.Tensor, block_bits: int) -> torch.Tensor:
    """``[N]`` bool: blocks whose information density ``info_bits`` exceeds
    ``block_bits − MARGIN_BITS`` (the others no decoder could decode)."""
    return info_bits > block_bits - MARGIN_BITS


def decode_decodable(
    decode, keep: torch.Tensor, *inputs: torch.Tensor, payload_bits: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``decode(*inputs)`` on the rows where ``keep`` holds; the others failed.

    Args:
        decode: ``(*inputs) -> (bits [n, payload_bits] uint8, ok [n] bool)``, row by row.
        keep: ``[N]`` bool, the rows to decode (on the host or any device: read on the
            host once, its rows copied to the inputs' device without waiting for its queue).
        inputs: tensors with ``N`` leading rows.
        payload_bits: bits per row of the result.

    Returns:
        ``bits [N, payload_bits]`` uint8 (0 on rows not decoded) and ``ok [N]`` bool (False
        there), on ``inputs[0]``'s device.
    """
    rows_host = torch.nonzero(keep.cpu()).reshape(-1)
    n = keep.shape[0]
    if rows_host.numel() == n:
        return decode(*inputs)
    device = inputs[0].device
    rows = to_device_async(rows_host, device)
    bits = torch.zeros(n, payload_bits, dtype=torch.uint8, device=device)
    ok = torch.zeros(n, dtype=torch.bool, device=device)
    if rows.numel():
        u, passed = decode(*(x[rows] for x in inputs))
        bits[rows] = u
        ok[rows] = passed
    return bits, ok
