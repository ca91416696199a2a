"""The ``digital`` codec: separate source and channel coding, the classical baseline.

Encoder, per feature map ``[C, H, W]`` (one batch row)::

    quantise (uniform, ``bits``) → entropy-code per segment (``rows_per_segment`` BEV rows,
    or ``cells_per_segment`` cells in raster order)
    → byte stream [header | segment 0 | segment 1 | …] → bits → code blocks of
    ``block_bits − 24`` bits (zero-padded) → CRC24A → 5G LDPC (MCS rate) → QAM (MCS order)

The header is all the side information: ``bits``, flags, the occupancy bitmap of non-empty cells
(deflate-compressed when smaller), per-channel (or per-map) float32 offset and step, the entropy
model (``ans``: the symbol histogram), and the byte length of every segment (LEB128 varints).
``C, H, W`` and the codec's configuration are known to both ends and not sent; the MCS index is
assumed signalled on a control channel (as 5G's DCI/SCI) and not charged.

Decoder: equalise (``v2x.channels.base.equalize``) → demap LLRs → LDPC decode → CRC. A block whose
CRC fails is **lost**: its bytes are unknown. A segment with a lost byte is dropped and its BEV
rows decode to exactly 0 (what fusion treats as missing); a lost header byte loses the whole map
(all zeros). Entropy coding per segment keeps every other segment decodable.

Modes:

* ``mcs: "auto"`` picks, per transmission, the highest MCS of 3GPP TS 38.214 table 1 whose BLER
  at ``link.snr_db`` is ≤ ``target_bler`` (thresholds from ``semcom/bler_table.json``) —
  link adaptation; an int fixes the MCS (no adaptation: shows the cliff effect). When the link
  carries the receiver's per-RE SINR report (``link.sinr_feedback``: OFDM channels, estimation
  error included), the BLER is the mean over code blocks at their EESM effective SINR instead
  (``v2x.semcom.link_adaptation``); the decoders then also use the channel's per-RE SINR
  (``ChannelState.sinr``) instead of ``1 / no_eff``. With ``target_unit: segment`` (the default)
  the target bounds what the receiver loses, not the block error rate: from that MCS the codec
  steps down until the expected fraction of the map's sent segments lost (a segment with one
  failed block is dropped, a lost header loses the map) is ≤ ``target_bler``, refitting the
  stream to the budget at each step (``v2x.semcom.link_adaptation``).
* ``decoder: "exact"`` runs Sionna's LDPC BP decoder on every block; ``"fast"`` skips bit-level
  coding: each block fails with probability BLER(MCS, effective SNR) from the exact-decoder
  table, and passes its bits unchanged otherwise. The fast transmitter skips LDPC encoding too
  and sends i.i.d. uniform points of the MCS's QAM constellation (the distribution of scrambled
  coded bits; same symbol count, energy and mask), since the fast receiver only reads the
  channel state. Exact and fast transmissions are therefore not interchangeable. The effective SNR of a block is the EESM
  (exponential effective SINR mapping, Sionna SYS's β per MCS) of its symbols' ``1 / no_eff``
  (equal to the SNR on AWGN and block fading).
* ``ldpc_decoder`` picks the exact decoder's LDPC decoder: ``"sionna"`` (Sionna's BP, the
  reference, default) or ``"minsum"`` (``v2x.semcom.ldpc_minsum``: batched layered normalised
  offset min-sum with early termination, many times faster; at 20 iterations it needs 0.1–0.2
  dB less SNR than Sionna's 20 flooding BP iterations; docs/digital.md) or ``"minsum-fp16"``
  (the same decoder with float16 storage, opt-in). HARQ rounds use the same decoder.

Channel-use budget (``max_channel_uses``): when a map's coded payload would need more channel uses
than the budget, the quantiser's ``bits`` is lowered one at a time down to ``min_bits`` (a depth
whose information content alone exceeds the budget is skipped uncoded: docs/digital.md); if it
still does not fit, whole segments are dropped, keeping those with the largest L1 feature energy
per byte first (a dropped segment is sent with length 0 and decodes to zeros); if not even the
header fits, or no segment fits beside it, nothing is sent and the map decodes to zeros.

Cost per row: ``source_bits`` = stream bytes × 8 (entropy-coded payload + side information);
``coded_bits`` = blocks × LDPC codeword bits; ``channel_uses`` = coded_bits / Qm;
``packets = ceil(blocks / blocks_per_packet)``: a packet carries whole code blocks, as many as
fit in the payload of the project's packet (``v2x.channels.packets``: 1500-byte MTU, 40-byte
header → 1460 bytes → 11 blocks of 1000 information bits); ``raw_bits = raw_feature_bits``.
The packet layout (``Transmission.symbols_per_packet`` = blocks_per_packet × block symbols) is
what an erasure channel erases; after ``decode``, ``meta["corrupt"]`` marks the channel uses of
code blocks whose CRC failed and ``meta["delivered"]`` the cells that arrived
(``v2x.semcom.base.reception`` turns both into packets erased / failed CRC for the ledger).

The chain is built from one part per job; this module holds the codec (its configuration, link
adaptation and transmitter) and re-exports the parts' names:

* ``digital_stream``: one map's byte stream, its layout, coding and decoding (``MapStream``);
* ``digital_source``: the budget rule, the source-coding memo and the worker processes
  (``DigitalSourceCoding``, ``map_digest``);
* ``digital_blocks``: code blocks between a stream and the LDPC/QAM layer, the decoder's chunk
  and the fast decoder's EESM SNR;
* ``digital_receiver``: equalisation, LDPC decoding and the maps rebuilt (``DigitalReceiver``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from v2x.channels.fade_statistics import FadeStatistics
from v2x.channels.link import LinkState
from v2x.channels.packets import HEADER_BYTES, MTU_BYTES, PacketFormat
from v2x.common import check_switch, check_whole, to_device_async
from v2x.semcom import entropy
from v2x.semcom.base import (
    CODECS,
    Codec,
    Cost,
    Transmission,
    check_features,
    raw_feature_bits,
)
from v2x.semcom.bler_table import BlerTable, codec_bler_table
from v2x.semcom.digital_blocks import (
    _DECODE_CHUNK,  # noqa: F401 (the old import path)
    _effective_snr_db,  # noqa: F401 (the old import path)
    _rows_bits,
    _stream_bits,  # noqa: F401 (the old import path)
    block_code_len,
    decode_chunk,
    effective_snr_db,
    failed_block_symbols,
    lost_bytes,
    mcs_groups,
    pack_bits,
    received_streams,
    write_row_heads,
    write_rows_blocks,
)
from v2x.semcom.digital_receiver import DigitalReceiver
from v2x.semcom.digital_source import DigitalSourceCoding, map_digest, map_digests
from v2x.semcom.digital_stream import (
    MapStream,
    _encode_map_parts,  # noqa: F401 (the old import path; patch it in digital_source)
    code_map,
    decode_map_stream,
    decode_whole,
)
from v2x.semcom.fec import (
    CRC_BITS,
    block_code,
    check_block_bits,
    check_block_code,
    check_ldpc_decoder,
    coded_bits_per_block,
    device_string,
)
from v2x.semcom.link_adaptation import select_mcs_from_sinr, select_mcs_over_fade
from v2x.semcom.mcs import MCS_TABLE, LinkAdaptation, get_mcs, shannon_gap_thresholds_db
from v2x.semcom.quantize import check_bits
from v2x.semcom.segment_plan import lower_for_segment_loss, most_expected_cells

__all__ = [
    "DigitalCodec",
    "FixedMCSDigitalCodec",
    "MapStream",
    "block_code_len",
    "code_map",
    "decode_chunk",
    "decode_map_stream",
    "decode_whole",
    "effective_snr_db",
    "failed_block_symbols",
    "lost_bytes",
    "map_digest",
    "pack_bits",
    "received_streams",
    "write_row_heads",
]


@CODECS.register("digital")
class DigitalCodec(DigitalSourceCoding, DigitalReceiver, Codec):
    """Quantise → entropy code → CRC → 5G LDPC → QAM, and back (see the module docstring).

    Args:
        bits: quantiser bits per value (1…16).
        per_channel: one (offset, step) per channel (True) or per map.
        rows_per_segment: BEV rows per independently decodable entropy-coded segment.
        cells_per_segment: if set, segments are runs of this many cells in raster order instead
            (for maps with few rows, e.g. the ``1 × k`` cell lists of the selective codec).
        entropy_coder: ``"ans"`` (constriction), ``"zlib"``, ``"lzma"`` or ``"bz2"`` (measured
            bytes), or ``"ans_estimate"`` (``"ans"``'s size estimated without coding: faster,
            its ``source_bits`` flagged as estimated; ``v2x.semcom.entropy``).
        mcs: ``"auto"`` (link adaptation from ``link.snr_db``) or a fixed 38.214 table-1 index.
        target_bler: error rate link adaptation aims at (of ``target_unit``).
        target_unit: what ``target_bler`` bounds (``mcs: auto``): ``"segment"`` (default) the
            expected fraction of the sent segments lost, a lost header losing all of them
            (``v2x.semcom.link_adaptation.expected_segment_loss``: needs the BLER table);
            ``"block"`` the code-block error rate (where HARQ resends failed blocks);
            ``"cells"`` no bound: the MCS whose fitted stream delivers the most cells in
            expectation (``v2x.semcom.segment_plan``; ``target_bler`` unused there).
        margin_db: SNR back-off of link adaptation.
        fade_aware: over block or fast fading (``LinkState.fade``: a fade the transmitter cannot
            see), plan on error rates averaged over the fade (the ε-outage rule, or a block's
            EESM over its draws: ``v2x.semcom.link_adaptation``; it bounds the loss, costs airtime);
            ``False`` (default): at the average SNR, as over AWGN (docs/digital.md).
        decoder: ``"exact"`` (Sionna LDPC BP) or ``"fast"`` (BLER-table block failures).
        num_iter: LDPC BP iterations (exact decoder; the table records its own).
        cn_update: Sionna check-node update of the exact decoder.
        ldpc_decoder: the exact decoder's LDPC decoder, ``"sionna"`` (BP, reference) or
            ``"minsum"`` (``v2x.semcom.ldpc_minsum``, layered normalised min-sum) or
            ``"minsum-fp16"`` (the same, float16 storage).
        block_bits: LDPC information bits per code block incl. the 24-bit CRC (≤ 8448; ≤ 3840
            where an MCS the codec may use takes base graph 2: ``fec.check_block_code``).
        max_channel_uses: channel-use budget per transmission, or ``None``.
        min_bits: lowest ``bits`` the budget rule may go down to.
        equalizer: ``"mmse"`` or ``"zf"`` (``v2x.channels.base.equalize``).
        bler_table: path of a BLER table JSON (``None``: the one shipped with the package).
        mtu_bytes, packet_header_bytes: packetisation of the source bits.
        harq_max_rounds: HARQ retransmission rounds of code blocks that failed their CRC (0: no
            retransmission); run by ``v2x.semcom.harq.transmit``, which the pipeline calls.
        harq_combining: ``"chase"`` (resend the same coded bits, add LLRs) or ``"ir"``
            (incremental redundancy: redundancy versions 0, 2, 3, 1 of 5G rate matching;
            ``decoder="exact"`` only).
        harq_feedback_delay_s: seconds each HARQ retransmission round waits for the receiver's
            NACK (added to the payload's latency, ``v2x.semcom.harq``; 0: instantaneous, the
            default; ~1-2 ms is 5G NR-like).
        skip_undecodable: exact decoder: declare failed, without decoding, the QPSK blocks whose
            received information density shows no decoder could decode them (the meta-converse
            bound, ``v2x.semcom.undecodable``: wrong with probability ≤ 2^−40 per block; over
            AWGN and flat fading with perfect CSI); ``False``: decode every block.
    """

    uses_channel = True
    sweep_arguments = frozenset({"max_channel_uses", "harq_max_rounds"})
    memoises_source_coding = True  # per map content and bits, in source_memo when set

    def __init__(
        self,
        bits: int = 8,
        per_channel: bool = True,
        rows_per_segment: int = 1,
        cells_per_segment: int | None = None,
        entropy_coder: str = "ans",
        mcs: str | int = "auto",
        target_bler: float = 0.1,
        target_unit: str = "segment",
        margin_db: float = 0.0,
        fade_aware: bool = False,
        decoder: str = "fast",
        num_iter: int = 20,
        cn_update: str = "boxplus-phi",
        ldpc_decoder: str = "sionna",
        block_bits: int = 1024,
        max_channel_uses: int | None = None,
        min_bits: int = 2,
        equalizer: str = "mmse",
        bler_table: str | None = None,
        mtu_bytes: int = MTU_BYTES,
        packet_header_bytes: int = HEADER_BYTES,
        harq_max_rounds: int = 0,
        harq_combining: str = "chase",
        harq_feedback_delay_s: float = 0.0,
        skip_undecodable: bool = True,
    ) -> None:
        super().__init__()
        from v2x.semcom.harq import check_feedback_delay, check_harq

        check_harq(harq_max_rounds, harq_combining, decoder)
        self.harq_feedback_delay_s = check_feedback_delay(
            harq_feedback_delay_s, "digital codec 'harq_feedback_delay_s'"
        )
        check_bits(bits)
        check_bits(min_bits, "min_bits")
        check_block_bits(block_bits)
        check_ldpc_decoder(ldpc_decoder, num_iter, cn_update)
        entropy.check_backend(entropy_coder)
        rows_per_segment = check_whole("digital codec 'rows_per_segment'", rows_per_segment, 1)
        if cells_per_segment is not None:
            cells_per_segment = check_whole(
                "digital codec 'cells_per_segment' (or None)", cells_per_segment, 1
            )
        if decoder not in ("exact", "fast"):
            raise ValueError(f"digital codec 'decoder' must be 'exact' or 'fast', got {decoder!r}")
        if mcs != "auto":
            get_mcs(mcs)
        for m in range(len(MCS_TABLE)) if mcs == "auto" else (mcs,):
            check_block_code(m, block_bits)  # every MCS the codec may send has its code block
        if not 0.0 < target_bler < 1.0:
            raise ValueError(f"digital codec 'target_bler' must be in (0, 1), got {target_bler!r}")
        if max_channel_uses is not None:
            max_channel_uses = check_whole(
                "digital codec 'max_channel_uses' (or None)", max_channel_uses, 0
            )
        if equalizer not in ("mmse", "zf"):
            raise ValueError(f"digital codec 'equalizer' must be 'mmse' or 'zf', got {equalizer!r}")
        self.bits = bits
        self.per_channel = check_switch("digital codec 'per_channel'", per_channel)
        self.rows_per_segment = rows_per_segment
        self.cells_per_segment = cells_per_segment
        self.entropy_coder = entropy_coder
        #: ``entropy_coder="ans_estimate"``: segment sizes are estimates (``Codec.bits_estimated``)
        self.bits_estimated = entropy_coder in entropy.ESTIMATED
        self.mcs = mcs
        self.target_bler = target_bler
        self.target_unit = target_unit
        self.margin_db = margin_db
        self.fade_aware = check_switch("digital codec 'fade_aware'", fade_aware)
        self.skip_undecodable = check_switch("digital codec 'skip_undecodable'", skip_undecodable)
        self.decoder = decoder
        self.num_iter = num_iter
        self.cn_update = cn_update
        self.ldpc_decoder = ldpc_decoder
        self.block_bits = block_bits
        self.max_channel_uses = max_channel_uses
        self.harq_max_rounds = int(harq_max_rounds)
        self.harq_combining = harq_combining
        self.min_bits = min(min_bits, bits)
        self.equalizer = equalizer
        self.mtu_bytes = mtu_bytes
        self.packet_header_bytes = packet_header_bytes
        self.table: BlerTable | None = codec_bler_table(
            block_bits, bler_table, decoder, num_iter, cn_update, target_unit, mcs
        )
        thresholds = (
            self.table.thresholds_db(target_bler)
            if self.table is not None
            else shannon_gap_thresholds_db()
        )
        self.link_adaptation = LinkAdaptation(thresholds, margin_db)

    # -- encoder ------------------------------------------------------------------------------

    def select_mcs(
        self,
        snr_db: torch.Tensor,
        batch: int,
        sinr_feedback: torch.Tensor | None = None,
        fade: FadeStatistics | None = None,
    ) -> torch.Tensor:
        """``[B]`` int64 MCS index per transmission.

        With ``sinr_feedback`` (``[B, N]`` linear per-RE SINR the receiver reported, see
        ``LinkState.sinr_feedback``) the MCS is the highest whose expected block error rate at
        the EESM effective SINR of those REs is ≤ ``target_bler``
        (``v2x.semcom.link_adaptation``); else, with ``fade`` (``LinkState.fade``: block or fast
        fading; when ``fade_aware``), the highest whose block error rate averaged over the fade
        is ≤ ``target_bler`` (ε-outage, or EESM over a block's draws); else the threshold rule on
        ``snr_db``.
        """
        if self.mcs != "auto":
            return torch.full((batch,), int(self.mcs), dtype=torch.int64)
        if sinr_feedback is not None:
            if sinr_feedback.dim() != 2 or sinr_feedback.shape[0] != batch:
                raise ValueError(
                    f"digital codec: link.sinr_feedback must be [{batch}, N], got "
                    f"{tuple(sinr_feedback.shape)}"
                )
            return select_mcs_from_sinr(
                sinr_feedback,
                self.block_bits,
                self.target_bler,
                table=self.table,
                thresholds_db=self.link_adaptation.thresholds_db,
                margin_db=self.margin_db,
            )
        snr = torch.as_tensor(snr_db, dtype=torch.float64).reshape(-1)
        if snr.numel() == 1 and batch != 1:
            snr = snr.expand(batch)
        if snr.numel() != batch:
            raise ValueError(
                f"digital codec: link.snr_db has {snr.numel()} entries for a batch of {batch}"
            )
        if fade is not None and self.fade_aware:
            return select_mcs_over_fade(snr, fade, self.target_bler, self.table,
                self.link_adaptation.thresholds_db, self.margin_db, self.block_bits)  # fmt: skip
        return self.link_adaptation(snr)

    @property
    def blocks_per_packet(self) -> int:
        """Code blocks per packet: as many whole blocks' payloads (``block_bits − 24`` bits) as
        fit in a packet's payload (``PacketFormat.payload_bits``), at least one. A packet
        carries whole code blocks, so a lost packet loses its own blocks and no others."""
        packet_bits = PacketFormat(self.mtu_bytes, self.packet_header_bytes).payload_bits
        return max(1, packet_bits // (self.block_bits - CRC_BITS))

    def block_code_for(self, mcs_index: int, device: str):
        """The cached ``BlockCode`` of one MCS with this codec's decoder settings."""
        return block_code(
            mcs_index, self.block_bits, self.num_iter, self.cn_update, device, self.ldpc_decoder
        )

    def _cells_per_segment(self, width: int) -> int:
        return self.cells_per_segment or self.rows_per_segment * max(width, 1)

    def encode(self, features: torch.Tensor, link: LinkState) -> Transmission:
        """``features [B, C, H, W]`` → ``Transmission`` with ``symbols [B, n]`` complex64 + mask."""
        check_features(features)
        b = features.shape[0]
        device = features.device
        cache: dict = self.source_memo if self.source_memo is not None else {}
        map_digests(features, cache)  # every row's memo key at once (one host copy)
        if self.mcs == "auto" and self.target_unit == "cells":  # fits every MCS itself
            mcs, streams = most_expected_cells(self, features, link, cache)
        else:
            mcs = self.select_mcs(link.snr_db, b, link.sinr_feedback, link.fade)
            if self.source_executor is not None and b > 1:
                self._source_code_in_workers(features, mcs, cache)
            row_mcs = [int(m) for m in mcs.tolist()]
            streams = [self._fit_stream(features, i, row_mcs[i], cache) for i in range(b)]
            if self.mcs == "auto" and self.target_unit == "segment":
                mcs = lower_for_segment_loss(self, features, link, mcs, streams, cache)
        row_mcs = [int(m) for m in mcs.tolist()]  # one host read, not one per row
        self._decode_ahead(streams, tuple(features.shape[1:]))
        payload_bits = self.block_bits - CRC_BITS
        nblocks = [math.ceil(len(s.data) * 8 / payload_bits) for s in streams]
        nsym = [nblocks[i] * block_code_len(row_mcs[i], self.block_bits) for i in range(b)]
        n_max = max(nsym, default=0)
        symbols = torch.zeros(b, n_max, dtype=torch.complex64, device=device)
        dev = device_string(device)
        for m, rows in mcs_groups(row_mcs, nblocks):
            code = self.block_code_for(m, dev)
            if self.decoder == "fast":  # the fast receiver never reads symbol values
                x = code.surrogate_symbols(sum(nblocks[i] for i in rows), device)
            else:
                x = code.encode(_rows_bits(streams, rows, nblocks, payload_bits, device))
            # row i's blocks, one after the other, at the start of its symbol row
            write_rows_blocks(symbols, rows, nblocks, code.num_symbols, x)
        # the rows' counts in one host tensor and one non-blocking copy (a copy from pageable
        # memory would wait for the encoder's queued work)
        counts = to_device_async(
            torch.tensor(
                [
                    nsym,
                    [nblocks[i] * coded_bits_per_block(get_mcs(row_mcs[i]), self.block_bits)
                     for i in range(b)],
                    [len(s.data) * 8.0 for s in streams],
                    [math.ceil(n / self.blocks_per_packet) for n in nblocks],
                    [self.blocks_per_packet * block_code_len(m, self.block_bits) for m in row_mcs],
                    [get_mcs(m).qm for m in row_mcs],
                ],
                dtype=torch.float64,
            ),  # [6, B]
            device,
        )  # fmt: skip
        mask = torch.arange(n_max, device=device)[None, :] < counts[0][:, None]
        cost = Cost(
            source_bits=counts[2],
            coded_bits=counts[1],
            channel_uses=counts[0],
            packets=counts[3],
            raw_bits=raw_feature_bits(features),
        )
        _, _, h, w = features.shape
        cps = self._cells_per_segment(w)
        sent = np.stack([s.sent_cells(h, w, cps) for s in streams]) if b else np.zeros((0, h, w))
        meta = {
            "sent": to_device_async(torch.from_numpy(sent[:, None].astype(bool)), device),
            "shape": tuple(features.shape[1:]),
            "mcs": mcs,
            "num_blocks": nblocks,
            "streams": streams,
            "bits": [s.bits for s in streams],
        }
        return Transmission(
            symbols=symbols,
            cost=cost,
            mask=mask,
            meta=meta,
            symbols_per_packet=counts[4],
            coded_bits_per_use=counts[5],
        )


@CODECS.register("digital_fixed")
class FixedMCSDigitalCodec(DigitalCodec):
    """The digital chain without link adaptation: one MCS (default 14, 16-QAM, ≈ 7 dB AWGN
    threshold) whatever the SNR, so decoding is near perfect above the threshold and collapses
    below it (the cliff effect). A registry name of its own so that a sweep can show it beside
    ``digital`` (link adaptation) in one grid; every other argument is ``DigitalCodec``'s."""

    def __init__(self, mcs: int = 14, **kwargs) -> None:
        if mcs == "auto":
            raise ValueError("digital_fixed: 'mcs' must be a fixed index 0..28, not 'auto'")
        super().__init__(mcs=mcs, **kwargs)
