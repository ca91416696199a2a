"""ARQ over the erasure channels: erased packets are sent again, up to a number of rounds.

``arq_resend`` is called by ``ErasureChannel.forward`` when its ``arq_max_rounds`` is > 0. After
the first pass, every packet of a transmission that the channel lost is resent, then those
still lost, up to ``arq_max_rounds`` rounds. A round is a new call of the inner channel on the
resent packets' symbols (new noise, a new fading block per transmission and round, …) and a
new draw of their losses from the erasure model: independent for ``iid`` (so with loss
probability ``p`` and ``R`` rounds a packet is lost with probability ``p^(R+1)`` and is sent
``(1 − p^(R+1)) / (1 − p)`` times on average), a new Gilbert–Elliott chain over the resent
packets in their order, or the BLER at the round's own SNR for ``bler``. Feedback is
error-free; each retransmission round waits ``arq_feedback_delay_s`` for it (the channel's
setting, default 0: instantaneous), which ``v2x.semcom.harq.transmit`` charges to the payload's
latency (``meta["feedback_s"]``).

The receiver keeps, for each channel use, the copy that arrived: the returned ``y`` is already
equalised (``state.equalized``, the unbiased one-tap MMSE estimate, with ``state.no_eff`` and,
for channels that report one, ``state.sinr`` per channel use), since the copies of different
rounds saw different channels. ``state.erased`` and ``state.extra["packet_lost"]`` are the
packets lost after the last round. ``state.extra["arq"]`` holds ``[B]`` float64
``retransmitted_packets``, ``retransmitted_uses`` (payload channel uses resent) and ``rounds``
(transmission rounds used, 1 when nothing was resent); ``v2x.semcom.harq.transmit`` adds them
to the transmission's cost (the ledger's ``retransmissions``, ``channel_uses`` and latency).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from v2x.channels.base import ChannelState, equalize
from v2x.channels.effective_sinr import receiver_sinr

if TYPE_CHECKING:
    from v2x.channels.erasure import ErasureChannel


def check_arq_rounds(max_rounds: object) -> int:
    """``max_rounds`` as an int ≥ 0, else ``ValueError`` naming the field."""
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 0:
        raise ValueError(f"erasure: 'arq_max_rounds' must be an int >= 0, got {max_rounds!r}")
    return max_rounds


def check_feedback_delay(value: object, field: str) -> float:
    """``value`` as a float ≥ 0 (seconds of ACK/NACK feedback delay per retransmission round),
    else ``ValueError`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field} must be a number of seconds >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{field} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def arq_resend(
    channel: ErasureChannel,
    x: torch.Tensor,
    y: torch.Tensor,
    state: ChannelState,
    snr_db: torch.Tensor,
    index: torch.Tensor,
    lost: torch.Tensor,
    rate: torch.Tensor | None,
    sent: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ChannelState]:
    """Resend ``channel``'s lost packets for up to ``channel.arq_max_rounds`` rounds.

    Args:
        channel: the erasure channel (its ``inner`` channel and loss model).
        x: ``[B, n]`` complex64 symbols sent in the first round.
        y, state: the first round's output (erased uses zeroed, ``state.erased``).
        snr_db: ``[B]`` or scalar Es/N0 (dB).
        index: ``[B, n]`` int64 packet of every channel use.
        lost: ``[B, P]`` bool packets lost in the first round.
        rate: ``[B]`` information bits per channel use (BLER normal approximation), or ``None``.
        sent: ``[B, n]`` bool, the channel uses really sent (the codec's ``mask``; the others are
            padding of the batched tensor, never resent); ``None``: all.

    Returns:
        ``(x_hat [B, n], state)``: equalised symbols and the merged state (module docstring).
    """
    b, n = x.shape
    device = x.device
    p = lost.shape[1]
    x_hat, no_eff = equalize(y, state, "mmse")
    sinr = receiver_sinr(state)
    erased = (
        state.erased.clone()
        if state.erased is not None
        else torch.zeros(b, n, dtype=torch.bool, device=device)
    )
    if sent is None:
        sent = torch.ones(b, n, dtype=torch.bool, device=device)
    sent = sent.to(device)
    counted = torch.zeros(b, p, dtype=torch.int32, device=device)
    counted = counted.scatter_add_(1, index, sent.to(torch.int32)) > 0  # packets with a sent use
    pending = lost & counted
    resent_packets = torch.zeros(b, dtype=torch.float64, device=device)
    resent_uses = torch.zeros(b, dtype=torch.float64, device=device)
    rounds = torch.ones(b, dtype=torch.float64, device=device)
    snr = torch.as_tensor(snr_db, dtype=torch.float32, device=device).reshape(-1).expand(b)
    for _ in range(channel.arq_max_rounds):
        if p == 0 or not bool(pending.any()):
            break
        sel = pending.gather(1, index) & sent  # [B, n] uses of packets to resend
        lengths = sel.sum(1)
        m = int(lengths.max())
        # Positions of the resent uses first, in order (stable sort of ~sel).
        order = torch.argsort((~sel).to(torch.int8), dim=1, stable=True)[:, :m]
        valid = torch.arange(m, device=device).unsqueeze(0) < lengths.unsqueeze(1)
        xs = torch.where(valid, x.gather(1, order), torch.zeros((), dtype=x.dtype, device=device))
        rank = pending.to(torch.int64).cumsum(1) - 1  # [B, P] rank among pending packets
        npend = pending.sum(1, keepdim=True)
        cidx = torch.where(valid, rank.gather(1, index.gather(1, order)), npend.expand(b, m))
        ys, st = channel.inner(xs, snr)
        lost_c = channel.packet_losses(b, m, st, device, cidx, rate)  # [B, Pc]
        er_c = lost_c.gather(1, cidx)
        st = st.with_erasures(er_c)
        xh, ne = equalize(torch.where(er_c, torch.zeros_like(ys), ys), st, "mmse")
        got_c = ~lost_c
        got = pending & got_c.gather(1, rank.clamp(0, got_c.shape[1] - 1))
        # Keep the new copy of every resent use (lost again: still erased).
        tgt_x = torch.where(valid, xh, x_hat.gather(1, order))
        tgt_n = torch.where(valid, ne, no_eff.gather(1, order))
        tgt_e = torch.where(valid, er_c, erased.gather(1, order))
        x_hat = x_hat.scatter(1, order, tgt_x)
        no_eff = no_eff.scatter(1, order, tgt_n)
        erased = erased.scatter(1, order, tgt_e)
        if sinr is not None:
            sc = receiver_sinr(st)
            sc = 1.0 / ne.clamp_min(1e-12) if sc is None else sc
            sinr = sinr.scatter(1, order, torch.where(valid, sc.to(sinr), sinr.gather(1, order)))
        resent_packets += pending.sum(1).double()
        resent_uses += lengths.double()
        rounds += (lengths > 0).double()
        pending = pending & ~got
    residual = pending | (lost & ~counted)
    x_hat = torch.where(erased, torch.zeros_like(x_hat), x_hat)
    merged = replace(
        state,
        h=None,
        h_hat=None,
        err_var=None,
        equalized=True,
        no_eff=no_eff,
        sinr=sinr,
        erased=erased,
        linear_gaussian=False,  # y is now each copy's estimate of x
        extra={
            **state.extra,
            "packet_lost": residual,
            "arq": {
                "retransmitted_packets": resent_packets,
                "retransmitted_uses": resent_uses,
                "rounds": rounds,
            },
        },
    )
    return x_hat, merged
