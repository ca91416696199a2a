"""The digital chain's receiver (``v2x.semcom.digital``): equalise → demap LLRs → LDPC decode
(exact) or BLER-table block failures (fast) → CRC per code block, then each row's received
stream entropy-decoded back into its map (lost bytes lose their segments; ``meta["delivered"]``
the cells that arrived, ``meta["corrupt"]`` the channel uses of blocks whose CRC failed).

``DigitalReceiver`` is a part of ``DigitalCodec``; shapes and units as there.
"""

from __future__ import annotations

import numpy as np
import torch

from v2x.channels.base import ChannelState, equalize
from v2x.channels.effective_sinr import receiver_sinr
from v2x.channels.link import LinkState
from v2x.common import to_device_async
from v2x.semcom import entropy
from v2x.semcom.base import Transmission
from v2x.semcom.digital_blocks import (
    block_code_len,
    decode_chunk,
    effective_snr_db,
    failed_block_symbols,
    lost_bytes,
    mcs_groups,
    received_streams,
    rows_blocks,
)
from v2x.semcom.digital_stream import MapStream, decode_map_stream
from v2x.semcom.fec import CRC_BITS, device_string
from v2x.semcom.undecodable import bound_applies, decodable, decode_decodable, information_bits


class DigitalReceiver:
    """The receiver of ``DigitalCodec`` (its ``decode``, ``decode_blocks``, ``equalized``,
    ``reconstruct``)."""

    def decode_blocks(
        self, received: Transmission
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per batch row: ``(ok [num_blocks] bool on the host, bits [num_blocks, block_bits − 24]
        uint8 on the symbols' device)``.

        ``bits`` is ``None`` in fast mode (a block that passed carries the sent bits unchanged).
        """
        meta = received.meta
        nblocks: list[int] = meta["num_blocks"]
        mcs: torch.Tensor = meta["mcs"]
        b = len(nblocks)
        results: list[tuple[torch.Tensor, torch.Tensor | None]] = [
            (torch.zeros(0, dtype=torch.bool), None) for _ in range(b)
        ]
        y = received.symbols
        if b == 0 or y is None or y.shape[1] == 0:
            return results
        device = y.device
        x_hat, no_eff = self.equalized(y, received.state)
        dev = device_string(device)
        skipped = torch.zeros(b, dtype=torch.float64)
        for m, rows in mcs_groups([int(m) for m in mcs.tolist()], nblocks):
            s = block_code_len(m, self.block_bits)
            xs, ns = rows_blocks(x_hat, rows, nblocks, s), rows_blocks(no_eff, rows, nblocks, s)
            if self.decoder == "exact":
                code = self.block_code_for(m, dev)
                info = self.received_information(received, rows, s, xs, ns, code.mcs.qm)
                keep = None if info is None else decodable(info, self.block_bits)
                chunk = decode_chunk(self.ldpc_decoder, device)
                parts = [
                    code.decode(xs[j : j + chunk], ns[j : j + chunk])
                    if keep is None
                    else decode_decodable(
                        code.decode, keep[j : j + chunk], xs[j : j + chunk], ns[j : j + chunk],
                        payload_bits=code.payload_bits,
                    )  # fmt: skip
                    for j in range(0, xs.shape[0], chunk)
                ]
                u = torch.cat([p[0] for p in parts])  # stays on the device: packed there
                ok = torch.cat([p[1] for p in parts])
                if keep is not None:
                    per_row = (~keep).cpu().split([nblocks[i] for i in rows])
                    skipped[rows] = torch.stack([r.sum() for r in per_row]).double()
            else:
                assert self.table is not None
                snr_eff = effective_snr_db(ns, m)
                p_fail = self.table.bler(torch.full(snr_eff.shape, m, dtype=torch.int64), snr_eff)
                ok = torch.rand(p_fail.shape, dtype=torch.float64) >= p_fail
                u = None
            counts = [nblocks[i] for i in rows]
            oks = ok.cpu().split(counts)
            us = [None] * len(rows) if u is None else u.split(counts)
            for i, ok_i, u_i in zip(rows, oks, us):
                results[i] = (ok_i, u_i)
        meta["undecodable_blocks"] = skipped
        return results

    def received_information(
        self,
        received: Transmission,
        rows: list[int],
        s: int,
        xs: torch.Tensor,
        ns: torch.Tensor,
        qm: int,
    ) -> torch.Tensor | None:
        """``[N]`` float64 received information density (bits) of the blocks of ``rows``
        (``s`` symbols each, equalised ``xs`` and noise ``ns [N, s]`` in row order), what
        ``v2x.semcom.undecodable.decodable`` reads; ``None`` where ``skip_undecodable`` is off
        or the bound does not apply."""
        sent = received.sent_symbols
        if not (self.skip_undecodable and sent is not None and bound_applies(received.state, qm)):
            return None
        sent = rows_blocks(sent, rows, received.meta["num_blocks"], s)
        return information_bits(xs, ns, sent)

    def equalized(
        self, y: torch.Tensor, state: ChannelState | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``y [B, n]`` → equalised symbols and their effective noise variance, both ``[B, n]``
        (the channel's per-RE SINR where it reports one; ``state=None``: noiseless)."""
        if state is None:  # never went through a channel: noiseless
            state = ChannelState(no=torch.zeros(y.shape[0], device=y.device))
        x_hat, no_eff = equalize(y, state, self.equalizer)
        sinr = receiver_sinr(state)
        if sinr is not None:  # frequency-selective: the SINR with the estimation error
            no_eff = torch.where(sinr > 0, 1.0 / sinr.clamp_min(1e-12), float("inf"))
        return x_hat, no_eff

    def decode(self, received: Transmission, link: LinkState) -> torch.Tensor:
        """Received ``Transmission`` → ``[B, C, H, W]`` float32 (lost rows/maps are 0)."""
        return self.reconstruct(received, self.decode_blocks(received))

    def reconstruct(
        self, received: Transmission, blocks: list[tuple[torch.Tensor, torch.Tensor | None]]
    ) -> torch.Tensor:
        """Feature maps ``[B, C, H, W]`` from ``decode_blocks``' per-row block outcomes."""
        meta = received.meta
        shape = meta["shape"]
        streams: list[MapStream] = meta["streams"]
        device = received.symbols.device if received.symbols is not None else torch.device("cpu")
        if not streams:
            meta["delivered"] = torch.zeros(0, 1, *shape[1:], dtype=torch.bool, device=device)
            return torch.zeros(0, *shape, dtype=torch.float32, device=device)
        payload_bits = self.block_bits - CRC_BITS
        maps = []
        delivered = np.zeros((len(streams), *shape[1:]), dtype=bool)
        received_bytes = received_streams(streams, blocks)
        rows: list[tuple[np.ndarray, bytes, bool] | None] = []  # (lost, data, whole); None: empty
        for i, (st, (ok, bits)) in enumerate(zip(streams, blocks)):
            if len(st.data) == 0 or ok.numel() == 0:
                rows.append(None)
                continue
            lost = lost_bytes(ok.numpy(), len(st.data), payload_bits)
            # fast mode (no bits): the bits of a block that passed are the sent ones
            data = st.data if bits is None else received_bytes[i]
            rows.append((lost, data, not lost.any() and data == st.data))
        if self.source_executor is not None and self.entropy_coder not in entropy.ESTIMATED:
            whole_streams = [st for st, row in zip(streams, rows) if row is not None and row[2]]
            self._decode_whole_in_workers(whole_streams, shape)
        whole_new: list[tuple[int, MapStream, bytes, tuple]] = []  # kept on the device below
        for i, (st, row) in enumerate(zip(streams, rows)):
            if row is None:
                maps.append(np.zeros(shape, dtype=np.float32))
                continue
            lost, data, whole = row
            memo = st.decoded.get(("whole", device)) if whole else None
            if memo is not None and memo[0] == data:  # this map received whole before
                delivered[i] = memo[2]
                maps.append(memo[1])
                continue
            out = decode_map_stream(
                data,
                lost,
                shape,
                self._cells_per_segment(shape[2]),
                self.entropy_coder,
                delivered[i],
                sent=st,
            )
            if whole:  # kept on the device: the K - 1 repeats are not copied there again
                host = st.decoded["whole"]  # decode_map_stream's memo of this reception
                whole_new.append((i, st, data, host))
                maps.append(None)  # its tensor on the device, below
            else:
                maps.append(out)
        # the maps decoded here copied to the device together, the new whole ones apart (they
        # stay there, memoised for the K - 1 repeats; no copy on a CPU)
        kept = _maps_on(device, [host[1] for *_, host in whole_new])
        for (i, st, data, host), on_device in zip(whole_new, kept):
            st.decoded[("whole", device)] = (data, on_device, host[2])
            maps[i] = on_device
        rest = [i for i, m in enumerate(maps) if isinstance(m, np.ndarray)]
        for i, on_device in zip(rest, _maps_on(device, [maps[i] for i in rest])):
            maps[i] = on_device
        # Which cells arrived ([B, 1, H, W] bool): read by the pipeline to mask the rest.
        meta["delivered"] = to_device_async(torch.from_numpy(delivered[:, None]), device)
        meta["corrupt"] = self._corrupt_symbols(received, blocks)
        return torch.stack(maps)

    def _corrupt_symbols(
        self, received: Transmission, blocks: list[tuple[torch.Tensor, torch.Tensor | None]]
    ) -> torch.Tensor:
        """``[B, n]`` bool: the channel uses of code blocks whose CRC failed (``v2x.semcom.base.reception``
        turns them into failed packets)."""
        n = received.symbols.shape[1] if received.symbols is not None else 0
        device = received.symbols.device if received.symbols is not None else "cpu"
        return failed_block_symbols(blocks, received.meta["mcs"], self.block_bits, n, device)


def _maps_on(
    device: torch.device, arrays: list[np.ndarray], together: bool | None = None
) -> list[torch.Tensor]:
    """``arrays`` (``[C, H, W]`` float32 host maps) as tensors on ``device``: on a CPU the arrays
    themselves, elsewhere (or with ``together``) in one copy (one wait for the device's queue,
    not one per map)."""
    together = device.type != "cpu" if together is None else together
    if not together or not arrays:
        return [torch.from_numpy(a) for a in arrays]
    return list(torch.from_numpy(np.stack(arrays)).to(device).unbind(0))
