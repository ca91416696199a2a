"""Retransmissions between codec and channel: HARQ for the digital chain, ARQ for erasures.

``transmit(codec, channel, tx, snr_db, link)`` is what the pipeline calls to put a codec's
``Transmission`` on air and decode it. It sends ``tx`` through the channel once, then:

* **HARQ** (``DigitalCodec`` with ``harq_max_rounds = R > 0``): every code block whose CRC
  failed is sent again, up to ``R`` more rounds, only the blocks still failing in each round.
  The receiver keeps the soft information of every copy:

  - ``harq_combining="chase"`` (chase combining): the same coded bits are resent and the LLRs
    of the copies are added (exact decoder); the fast decoder adds the per-symbol SINRs of the
    copies (maximum-ratio combining of identical symbols) and reads the BLER table at the
    combined EESM SNR.
  - ``harq_combining="ir"`` (incremental redundancy, exact decoder only): round ``r`` sends
    redundancy version ``RV_SEQUENCE[r mod 4]`` = 0, 2, 3, 1 (the usual 38.214 order) of 5G
    rate matching (Sionna ``LDPC5GEncoder(..., rv=...)``); Sionna's HARQ-mode
    ``LDPC5GDecoder`` (or, with ``ldpc_decoder="minsum"``, the min-sum decoder's ``harq_mode``)
    adds the LLRs of every received version in the circular buffer, so each round adds new
    parity bits as well as energy.

  Fast decoder: one uniform number ``u`` per block is drawn in the first round; the block has
  failed after round ``r`` iff ``u < BLER(combined SNR after r rounds)``. The combined SNR only
  grows, so failures are nested and the residual failure probability after ``r`` rounds is
  exactly the table's BLER at the combined SNR (the usual PHY abstraction of chase combining).

* **ARQ** (a packet-aware erasure channel with ``arq_max_rounds > 0``, any codec): the channel
  itself resends erased packets (``v2x.channels.arq``); ``transmit`` charges what it reports.

With HARQ, a packet erased by an erasure channel loses its blocks (zero LLRs), which then fail
their CRC and are resent like any other failed block: HARQ over an erasure channel that also
runs ARQ is refused (one of the two must do it).

**Channel per round.** Each round is a new call of the channel on the resent symbols, so the
channel is drawn anew according to its own model: AWGN draws new noise; block fading
(``rayleigh``, ``rician``) a new fading block per round and transmission (the round is a later
slot, further apart than the coherence time); fast fading new gains per symbol; TDL/CDL a new
channel realisation; erasure channels new packet losses (i.i.d., or a new Gilbert–Elliott chain
over the resent packets, or the BLER at the round's SNR). Feedback (ACK/NACK) is error-free.

**Feedback delay.** Before each retransmission round the transmitter waits for the receiver's
NACK: ``feedback_delay_s`` (the digital codec's ``harq_feedback_delay_s``, the erasure channel's
``arq_feedback_delay_s``). A payload whose blocks (HARQ) or packets (ARQ) needed ``k``
transmissions in all (``k − 1`` retransmission rounds) is therefore late by::

    latency_s = processing + airtime of every round + (k − 1) · feedback_delay_s

(``v2x.scheduling.schedule`` adds ``meta["feedback_s"]`` = ``(k − 1) · feedback_delay_s``; the
airtime of the rounds is in ``Cost.channel_uses``). The default 0 s keeps every latency of the
instantaneous-feedback model bit for bit. A 5G-like value: NR's HARQ round trip is a few slots
(TS 38.213 ``K1`` ≥ 1 slot and the UE's PDSCH processing time, TS 38.214 §5.3, plus the
retransmission's scheduling), about 1–2 ms at 30 kHz subcarrier spacing (0.5 ms slots); NR
sidelink feedback (PSFCH, every 1, 2 or 4 slots, at least 2–3 slots after the PSSCH) is of the
same order. ARQ above the MAC (RLC status reports) is slower, ~10 ms and more.

**Accounting.** The resent blocks travel in packets of the codec's layout (``blocks_per_packet``
blocks each); every round adds its channel uses and coded bits to ``Cost.channel_uses`` and
``Cost.coded_bits`` — so the budget's latency (``v2x.scheduling.schedule``: processing + channel
uses / (share · bandwidth)) grows by exactly the airtime of what was resent — and its packets to
``meta["retransmissions"]`` (``Reception.retransmissions``, the ledger's ``retransmissions``).
``Cost.packets`` and ``source_bits`` stay those of the payload; ``meta["retransmission_rounds"]``
holds the rounds each payload needed (``k − 1``) and ``meta["feedback_s"]`` their feedback
delay. A payload whose latency, rounds and feedback included, misses the deadline follows the
budget's ``late_policy``. After HARQ, ``meta["corrupt"]``
marks the blocks still failing after the last round and ``state.erased`` only erased symbols of
those blocks, so the packets the ledger counts as lost are the residual losses.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from v2x.channels.arq import check_feedback_delay  # noqa: F401 - also the codec's check
from v2x.channels.base import Channel, ChannelState
from v2x.channels.link import LinkState
from v2x.common import to_device_async
from v2x.semcom.base import Codec, Transmission
from v2x.semcom.fec import CRC_BITS, coded_bits_per_block, device_string
from v2x.semcom.mcs import get_mcs
from v2x.semcom.undecodable import bound_applies, decodable, decode_decodable, information_bits

if TYPE_CHECKING:
    from v2x.semcom.digital import DigitalCodec

COMBINING = ("chase", "ir")
#: Redundancy version of round r (r = 0 is the first transmission): 0, 2, 3, 1, 0, …
RV_SEQUENCE = (0, 2, 3, 1)

Blocks = list[tuple[torch.Tensor, torch.Tensor | None]]


def check_harq(max_rounds: object, combining: object, decoder: str = "exact") -> None:
    """Raise ``ValueError`` unless ``max_rounds`` is an int ≥ 0 and ``combining`` a valid
    choice (``"ir"`` needs the exact decoder)."""
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 0:
        raise ValueError(f"digital codec 'harq_max_rounds' must be an int >= 0, got {max_rounds!r}")
    if combining not in COMBINING:
        raise ValueError(
            f"digital codec 'harq_combining' is {combining!r}; valid choices: "
            f"{', '.join(COMBINING)}"
        )
    if max_rounds > 0 and decoder not in ("exact", "fast"):
        raise ValueError(
            f"digital codec 'harq_max_rounds' > 0 supports decoder 'exact' (Sionna BP on combined "
            f"LLRs) or 'fast' (BLER table at the combined SNR), got decoder={decoder!r}"
        )
    if combining == "ir" and decoder != "exact":
        raise ValueError(
            "digital codec 'harq_combining'='ir' needs decoder='exact' (the fast decoder's "
            f"BLER table describes one redundancy version only), got decoder={decoder!r}"
        )


def _resend_fn(channel: Channel, snr_db: torch.Tensor, **options: bool):
    """``(x [B, n], spp [B] | None, mask [B, n] | None) -> (y, state)``: a pass through
    ``channel`` (a packet-aware channel gets the layout; one running ARQ also the mask) with
    ``options`` (``defer_noise``)."""

    def resend(
        x: torch.Tensor, spp: torch.Tensor | None, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ChannelState]:
        if channel.packet_aware and spp is not None:
            if channel.arq_max_rounds > 0:
                return channel(x, snr_db, symbols_per_packet=spp, mask=mask, **options)
            return channel(x, snr_db, symbols_per_packet=spp, **options)
        return channel(x, snr_db, **options)

    return resend


def transmit(
    codec: Codec, channel: Channel, tx: Transmission, snr_db: torch.Tensor, link: LinkState
) -> tuple[torch.Tensor, Transmission]:
    """Send ``tx`` through ``channel`` (with the codec's HARQ rounds) and decode it.

    Args:
        codec: the codec that made ``tx``.
        channel: the channel (a packet-aware one gets the codec's packet layout).
        tx: ``codec.encode``'s ``Transmission`` (``B`` rows).
        snr_db: ``[B]`` float32 Es/N0 of each row's link (dB).
        link: the ``LinkState`` given to ``encode``.

    Returns:
        ``(features [B, C, H, W], received)``: the decoded maps and the received
        ``Transmission``, whose ``cost`` includes every retransmission and whose ``meta``
        holds ``[B]`` float64 ``"retransmissions"`` (packets sent again),
        ``"retransmission_rounds"`` (rounds after the first transmission) and ``"feedback_s"``
        (those rounds × the feedback delay, s).
    """
    sent = tx
    tx = on_air(codec, channel, tx, snr_db)
    if codec.harq_max_rounds > 0 and tx.symbols is not None and codec.uses_channel:
        blocks, extra_uses, extra_bits, extra_packets = harq_decode_blocks(
            codec,  # type: ignore[arg-type]
            tx,
            sent.symbols,
            _resend_fn(channel, snr_db),
        )
        decoded = codec.reconstruct(tx, blocks)  # type: ignore[attr-defined]
        _residual_erasures(codec, tx, blocks)  # type: ignore[arg-type]
        extra_rounds = tx.meta["retransmission_rounds"]
        _charge(tx, extra_uses, extra_bits, extra_packets, extra_rounds,
                float(codec.harq_feedback_delay_s))  # fmt: skip
        return decoded, tx
    decoded = codec.decode(tx, link)
    charge_arq(tx, channel)
    return decoded, tx


def on_air(codec: Codec, channel: Channel, tx: Transmission, snr_db: torch.Tensor) -> Transmission:
    """``tx`` after its first pass through ``channel`` (``transmit``'s first step; a codec
    that does not use the channel, or sends no symbols, is returned as it is). Refuses HARQ
    over a channel that runs ARQ."""
    if codec.harq_max_rounds > 0 and channel.arq_max_rounds > 0:
        raise ValueError(
            "HARQ: the digital codec's harq_max_rounds and the channel's arq_max_rounds are both "
            "> 0; HARQ already resends the blocks of erased packets: set one of them to 0"
        )
    if tx.symbols is None or not codec.uses_channel:
        return tx
    # the noise left to a receiver that adds it as it reads the symbols (Channel.defers_noise)
    defer = {"defer_noise": True} if codec.adds_pending_noise and channel.defers_noise else {}
    y, state = _resend_fn(channel, snr_db, **defer)(tx.symbols, tx.symbols_per_packet, tx.mask)
    return tx.received(y, state)


def charge_arq(received: Transmission, channel: Channel) -> None:
    """``transmit``'s accounting without HARQ: the packets the channel's ARQ resent
    (``state.extra["arq"]``; none without it) charged to ``received``'s cost and ``meta``. A
    resent channel use adds the coded bits it carries (``Transmission.coded_bits_per_use``:
    none for analog values), not the payload's mean per use, which counts side information
    and control uses that are never resent."""
    cost = received.cost
    zeros = torch.zeros_like(cost.channel_uses, dtype=torch.float64)
    arq = received.state.extra.get("arq") if received.state is not None else None
    if arq is None:
        _charge(received, zeros, zeros, zeros, zeros, 0.0)
        return
    extra_uses = arq["retransmitted_uses"].to(zeros)
    carried = received.coded_bits_per_use
    per_use = zeros if carried is None else carried.to(zeros)
    _charge(received, extra_uses, extra_uses * per_use, arq["retransmitted_packets"].to(zeros),
            (arq["rounds"].to(zeros) - 1.0).clamp_min(0.0),
            float(channel.arq_feedback_delay_s))  # fmt: skip


def _charge(
    received: Transmission,
    extra_uses: torch.Tensor,
    extra_bits: torch.Tensor,
    extra_packets: torch.Tensor,
    extra_rounds: torch.Tensor,
    delay_s: float,
) -> None:
    """Retransmissions (``[B]`` each) added to ``received``'s cost, and recorded in ``meta``."""
    cost = received.cost
    device = cost.channel_uses.device
    # the host's tallies in one page-locked copy (a copy from ordinary host memory would wait
    # for the device's queued work)
    parts = [t.to(torch.float64) for t in (extra_uses, extra_bits, extra_packets, extra_rounds)]
    on_host = [i for i, t in enumerate(parts) if t.device != device]
    if on_host:
        copied = to_device_async(torch.stack([parts[i].cpu() for i in on_host]), device)
        for i, t in zip(on_host, copied):
            parts[i] = t
    extra_uses, extra_bits, extra_packets, extra_rounds = parts
    uses, bits = cost.channel_uses + extra_uses, cost.coded_bits + extra_bits
    received.cost = replace(cost, channel_uses=uses, coded_bits=bits)
    received.meta["retransmissions"] = extra_packets
    received.meta["retransmission_rounds"] = extra_rounds
    received.meta["feedback_s"] = extra_rounds * delay_s


def _residual_erasures(codec: DigitalCodec, received: Transmission, blocks: Blocks) -> None:
    """After HARQ, keep ``state.erased`` only on symbols of blocks that still failed (a
    recovered block is not lost, however its first copy fared)."""
    state = received.state
    if state is None or state.erased is None:
        return
    from v2x.semcom.digital_blocks import failed_block_symbols

    erased = state.erased
    failed = failed_block_symbols(
        blocks, received.meta["mcs"], codec.block_bits, erased.shape[1], erased.device
    )
    received.state = replace(state, erased=erased & failed)


def _llr_chunked(codec: DigitalCodec, code, xs: torch.Tensor, ns: torch.Tensor) -> torch.Tensor:
    """``code.llr(xs, ns)`` in calls of at most the decoder chunk of blocks: the demapper's
    per-constellation-point temporaries (``[N, symbols, 2^Qm]``) of a whole map's blocks do not
    fit in memory at 64-QAM. LLRs are per symbol, so the values are those of one call."""
    from v2x.semcom.digital_blocks import decode_chunk

    chunk = decode_chunk(codec.ldpc_decoder, xs.device)
    if xs.shape[0] <= chunk:
        return code.llr(xs, ns)
    return torch.cat(
        [code.llr(xs[j : j + chunk], ns[j : j + chunk]) for j in range(0, xs.shape[0], chunk)]
    )


def _decode_chunked(
    codec: DigitalCodec, code, llr: torch.Tensor, rv: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``code.decode_llr(llr, rv)`` in calls of at most the codec's decoder chunk of blocks
    (``v2x.semcom.digital_blocks.decode_chunk``), as the first round's decoder does: a whole map's
    thousands of blocks at once would hold every block's messages in memory. A block's result
    does not depend on the other blocks of its call, so the numbers are those of one call."""
    from v2x.semcom.digital_blocks import decode_chunk

    chunk = decode_chunk(codec.ldpc_decoder, llr.device)
    if llr.shape[0] <= chunk:
        return code.decode_llr(llr) if rv is None else code.decode_llr(llr, rv=rv)
    parts = [
        code.decode_llr(llr[j : j + chunk])
        if rv is None
        else code.decode_llr(llr[j : j + chunk], rv=rv)
        for j in range(0, llr.shape[0], chunk)
    ]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _decode_kept(
    codec: DigitalCodec,
    code,
    g: dict,
    where: tuple[torch.Tensor, torch.Tensor] | None,
    llr: torch.Tensor,
    rv: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``_decode_chunked`` of MCS group ``g``'s blocks ``where`` (``(host, device)`` indices
    into the group; ``None``: all) with LLRs ``llr``, skipping those whose received information
    density ``g["info"]`` shows no decoder could decode them (``v2x.semcom.undecodable``; they
    fail, counted in ``g["skipped"]``)."""
    if g["info"] is None:
        return _decode_chunked(codec, code, llr, rv)
    info = g["info"] if where is None else g["info"][where[1]]
    keep = decodable(info, codec.block_bits).cpu()  # one read: the skipped and the kept
    skipped = (~keep).double()
    if where is None:
        g["skipped"] += skipped
    else:
        g["skipped"][where[0]] += skipped
    decode = lambda x: _decode_chunked(codec, code, x, rv)  # noqa: E731
    return decode_decodable(decode, keep, llr, payload_bits=code.payload_bits)


def _retransmitted_symbols(
    codec: DigitalCodec,
    groups: list[dict],
    pending: list[tuple[dict, int, np.ndarray]],
    nblocks: list[int],
    streams: list,
    sent_symbols: torch.Tensor,
    r: int,
    device: torch.device,
) -> dict[int, tuple[list[int], torch.Tensor]]:
    """Round ``r``'s symbols per MCS group with pending blocks: ``{group index: (its pending
    rows, [failed blocks, S] complex64, row after row)}``, the failed blocks' redundancy
    version ``RV_SEQUENCE[r % 4]`` (incremental redundancy: encoded again, one encoder call per
    MCS group — a block's codeword does not depend on the other blocks of its call) or their
    first-round symbols (chase combining, or RV 0), gathered in one pass."""
    from v2x.semcom.digital_blocks import _rows_bits, take_blocks

    rv = RV_SEQUENCE[r % 4]
    payload_bits = codec.block_bits - CRC_BITS
    out: dict[int, tuple[list[int], torch.Tensor]] = {}
    for gi, g in enumerate(groups):
        mine = [(i, idx) for gg, i, idx in pending if gg is g]
        if not mine:
            continue
        rows = [i for i, _ in mine]
        first = dict(zip(g["rows"], np.cumsum([0] + [nblocks[i] for i in g["rows"]])))
        if codec.harq_combining == "ir" and rv != 0:
            # the pending rows' bits in one pass, then their failed blocks in one gather
            start = np.cumsum([0] + [nblocks[i] for i in rows])
            pick = np.concatenate([idx - first[i] + start[k] for k, (i, idx) in enumerate(mine)])
            bits = _rows_bits(streams, rows, nblocks, payload_bits, device)
            bits = bits[to_device_async(torch.from_numpy(pick), device)]
            out[gi] = rows, g["code"].encode(bits, rv=rv)
        else:  # the failed blocks' first-round symbols: (row, block in the row) of each
            row = np.concatenate([np.full(len(idx), i, dtype=np.int64) for i, idx in mine])
            block = np.concatenate([idx - first[i] for i, idx in mine]).astype(np.int64)
            out[gi] = rows, take_blocks(sent_symbols, g["s"], row, block)
    return out


def harq_decode_blocks(
    codec: DigitalCodec,
    received: Transmission,
    sent_symbols: torch.Tensor,
    resend,
) -> tuple[Blocks, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode ``received`` with up to ``codec.harq_max_rounds`` retransmission rounds.

    Args:
        codec: the digital codec (its ``harq_max_rounds``, ``harq_combining``, decoder).
        received: the first round's received ``Transmission`` (``B`` rows).
        sent_symbols: ``[B, n]`` complex64 symbols of the first round (chase combining and the
            fast decoder resend these).
        resend: ``(x [B, m], symbols_per_packet [B]) -> (y, state)``, a new channel pass.

    Returns:
        ``blocks`` (as ``DigitalCodec.decode_blocks``), and ``[B]`` float64 channel uses,
        coded bits and packets sent in the retransmission rounds. The rounds in which each row
        resent something (``[B]`` float64) go to ``received.meta["retransmission_rounds"]``.
    """
    from v2x.semcom.digital_blocks import (
        block_code_len,
        effective_snr_db,
        mcs_groups,
        rows_blocks,
        write_rows_blocks,
    )

    meta = received.meta
    nblocks: list[int] = meta["num_blocks"]
    mcs: torch.Tensor = meta["mcs"]
    b = len(nblocks)
    device = received.symbols.device
    dev = device_string(device)
    exact = codec.decoder != "fast"  # check_harq: "exact" or "fast"
    ir = codec.harq_combining == "ir"
    x_hat, no_eff = codec.equalized(received.symbols, received.state)
    # Per MCS group: its rows, block ranges, soft information and outcome.
    groups = []
    for m, rows in mcs_groups([int(m) for m in mcs.tolist()], nblocks):
        s = block_code_len(m, codec.block_bits)
        xs, ns = rows_blocks(x_hat, rows, nblocks, s), rows_blocks(no_eff, rows, nblocks, s)
        g = {"m": m, "rows": rows, "s": s}
        if exact:
            code = codec.block_code_for(m, dev)
            g["code"] = code
            llr = _llr_chunked(codec, code, xs, ns) if xs.shape[0] else xs.real
            g["llr"] = [llr]  # one entry per round (ir) or the running sum (chase)
            # received information density per block; None: no skipping (v2x.semcom.undecodable)
            g["info"] = codec.received_information(received, rows, s, xs, ns, code.mcs.qm)
            g["skipped"] = torch.zeros(xs.shape[0], dtype=torch.float64)
            u, ok = _decode_kept(codec, code, g, None, llr)
            g["u"], g["ok"] = u, ok.cpu()  # bits stay on the device (packed there)
        else:
            assert codec.table is not None
            snr_eff = effective_snr_db(ns, m)
            p_fail = codec.table.bler(torch.full(snr_eff.shape, m, dtype=torch.int64), snr_eff)
            g["draw"] = torch.rand(p_fail.shape, dtype=torch.float64)
            g["ok"] = (g["draw"] >= p_fail).cpu()
            g["no"] = ns
        groups.append(g)
    # per-row tallies on the host (numpy: no tensor op per row), returned as tensors
    extra_uses, extra_bits, extra_packets, rounds_used = np.zeros((4, b), dtype=np.float64)
    bpp = codec.blocks_per_packet
    for r in range(1, codec.harq_max_rounds + 1):
        # Blocks still failing, per row (global block index inside the group).
        pending = []  # (group, row, int64 array of its failed blocks' indices in the group)
        for g in groups:
            failed = np.flatnonzero(~g["ok"].numpy())  # one scan of the group's blocks
            ends = np.cumsum([nblocks[i] for i in g["rows"]])
            cut = np.searchsorted(failed, ends)  # failed[cut[k - 1] : cut[k]] are row k's
            for k, i in enumerate(g["rows"]):
                idx = failed[(cut[k - 1] if k else 0) : cut[k]]
                if idx.size:
                    pending.append((g, i, idx))
        if not pending:
            break
        resent_blocks = [0] * b  # blocks each row resends this round (one MCS group a row)
        spp = np.ones(b, dtype=np.float64)  # symbols per packet, filled on the host, one copy
        for g, i, idx in pending:
            s, n = g["s"], len(idx)
            resent_blocks[i] = n
            spp[i] = bpp * s
            rounds_used[i] += 1.0
            extra_uses[i] += n * s
            extra_bits[i] += n * coded_bits_per_block(get_mcs(g["m"]), codec.block_bits)
            extra_packets[i] += math.ceil(n / bpp)
        width = max(len(idx) * g["s"] for g, _, idx in pending)
        x = torch.zeros(b, width, dtype=torch.complex64, device=device)
        resent = _retransmitted_symbols(
            codec, groups, pending, nblocks, meta["streams"], sent_symbols, r, device
        )
        for g, (rows, blocks) in resent.items():
            write_rows_blocks(x, rows, resent_blocks, groups[g]["s"], blocks)
        y, state = resend(x, to_device_async(torch.from_numpy(spp), device))
        xr, nr = codec.equalized(y, state)
        for gi, (rows, sent) in resent.items():
            g = groups[gi]
            s = g["s"]
            sel = torch.from_numpy(np.concatenate([idx for gg, _, idx in pending if gg is g]))
            xs = rows_blocks(xr, rows, resent_blocks, s)
            ns = rows_blocks(nr, rows, resent_blocks, s)
            if exact:
                code = g["code"]
                llr = _llr_chunked(codec, code, xs, ns)
                at = to_device_async(sel, llr.device)
                if g["info"] is not None and bound_applies(state, code.mcs.qm):
                    g["info"][at] += information_bits(xs, ns, sent)  # every copy's terms
                else:
                    g["info"] = None
                if ir:
                    g["llr"].append(torch.zeros_like(g["llr"][0]))
                    g["llr"][-1][at] = llr
                    stack = torch.stack([h[at] for h in g["llr"]], dim=1)
                    rv = [RV_SEQUENCE[t % 4] for t in range(r + 1)]
                    u, ok = _decode_kept(codec, code, g, (sel, at), stack, rv)
                else:
                    g["llr"][0][at] += llr
                    u, ok = _decode_kept(codec, code, g, (sel, at), g["llr"][0][at])
                g["u"][at.to(u.device)] = u
                g["ok"][sel] = ok.cpu()
            else:
                prev = g["no"][sel.to(g["no"].device)]
                comb = 1.0 / (1.0 / prev + 1.0 / ns.to(prev))  # SINRs of identical symbols add
                g["no"][sel.to(g["no"].device)] = comb
                snr_eff = effective_snr_db(comb, g["m"])
                p_fail = codec.table.bler(
                    torch.full(snr_eff.shape, g["m"], dtype=torch.int64), snr_eff
                )
                g["ok"][sel] = (g["draw"][sel] >= p_fail).cpu()
    meta["retransmission_rounds"] = torch.from_numpy(rounds_used)
    skipped = np.zeros(b, dtype=np.float64)
    results: Blocks = [(torch.zeros(0, dtype=torch.bool), None) for _ in range(b)]
    for g in groups:
        counts = [nblocks[i] for i in g["rows"]]
        u = g.get("u")
        oks = g["ok"].split(counts)
        us = [None] * len(counts) if u is None else u.split(counts)
        for i, ok, ui in zip(g["rows"], oks, us):
            results[i] = (ok, ui)
        if "skipped" in g:  # each row's blocks summed in order, as one sum per row
            starts = np.cumsum(counts) - counts
            skipped[g["rows"]] = np.add.reduceat(g["skipped"].numpy(), starts)
    meta["undecodable_blocks"] = torch.from_numpy(skipped)
    as_tensors = (torch.from_numpy(a) for a in (extra_uses, extra_bits, extra_packets))
    return results, *as_tensors
