"""Link adaptation from the SINR the receiver reports over its resource grid (not the nominal SNR).

Over a frequency-selective channel with estimated CSI (``tdl``/``cdl``) the receiver's SINR per
resource element (RE) varies and is capped by the channel-estimation error, so an MCS picked
from the nominal Es/N0 fails. The channel reports, before a transmission, the per-RE SINR of a
few sounded grids (``Channel.sinr_feedback`` → ``LinkState.sinr_feedback``); this module turns
that into an MCS:

1. the sounded REs are cut, in mapping order, into code blocks of the MCS's length
   (``block_code_len``: exactly how the digital codec lays its blocks on the grid);
2. each block's effective SINR is the EESM of its REs (Sionna SYS ``EESM``, β per MCS of 38.214
   table 1: ``v2x.channels.effective_sinr.eesm_db``), minus ``margin_db``;
3. the block's BLER comes from the project's BLER table (the digital chain's own exact-decoder
   AWGN curves, ``semcom/bler_table.json``), averaged over the blocks: the expected BLER at this
   link's SNR;
4. the chosen MCS is the highest whose expected BLER is ≤ ``target_bler`` (MCS 0 if none).

The same EESM and table drive the codec's fast decoder, so a block's failure probability at
decode time is the one link adaptation planned for (up to the channel realisation).

Why not Sionna's ``InnerLoopLinkAdaptation``/``PHYAbstraction`` for step 3–4: they map a
transport block, segmented by Sionna's 38.212 rules into code blocks of Sionna's PDSCH/PUSCH chain
(tables for MCS 3–28 on a 1.8 dB SNR grid) and target the *transport-block* error rate; the
digital codec sends fixed ``block_bits`` code blocks (with repetition below rate 1/5 for MCS 0–2)
and every block is independently useful, so the target is a per-block BLER of this chain. The
two tables agree within the bound pinned in ``tests/semcom/test_link_adaptation.py``
(``docs/digital.md``).
"""

from __future__ import annotations

import torch

from v2x.channels.effective_sinr import eesm_db
from v2x.semcom.bler_table import BlerTable
from v2x.semcom.fec import coded_bits_per_block
from v2x.semcom.mcs import MCS_TABLE


def _blocks_of(sinr: torch.Tensor, mcs_index: int, block_bits: int) -> torch.Tensor:
    """``sinr [L, N]`` → ``[L, N // S, S]`` whole code blocks of MCS ``mcs_index`` (``S``
    symbols each, as the codec maps them); at least one block (the REs repeated cyclically when
    ``N < S``)."""
    m = MCS_TABLE[mcs_index]
    s = coded_bits_per_block(m, block_bits) // m.qm
    n = sinr.shape[1]
    if n < s:
        sinr = sinr[:, torch.arange(s, device=sinr.device) % n]
        n = s
    k = n // s
    return sinr[:, : k * s].reshape(sinr.shape[0], k, s)


def expected_bler(
    sinr: torch.Tensor,
    table: BlerTable,
    block_bits: int,
    margin_db: float = 0.0,
) -> torch.Tensor:
    """``[L, 29]`` float64 mean code-block error rate of every MCS over the reported REs.

    Args:
        sinr: ``[L, N]`` float linear SINR of ``N`` sounded REs per link (mapping order).
        table: the BLER table for ``block_bits``.
        block_bits: LDPC information bits per code block (CRC included).
        margin_db: back-off subtracted from every block's effective SINR.
    """
    out = torch.empty(sinr.shape[0], len(MCS_TABLE), dtype=torch.float64)
    for m in MCS_TABLE:
        blocks = _blocks_of(sinr, m.index, block_bits)  # [L, K, S]
        eff = eesm_db(blocks, m.index).double().cpu() - margin_db  # [L, K]
        mcs = torch.full((eff.numel(),), m.index, dtype=torch.int64)
        out[:, m.index] = table.bler(mcs, eff.reshape(-1)).reshape(eff.shape).mean(dim=1)
    return out


def effective_sinr_db(sinr: torch.Tensor, block_bits: int, margin_db: float = 0.0) -> torch.Tensor:
    """``[L, 29]`` float64 mean (over code blocks) EESM SINR in dB per MCS, minus ``margin_db``:
    what threshold-based link adaptation compares when no BLER table exists for the block size."""
    out = torch.empty(sinr.shape[0], len(MCS_TABLE), dtype=torch.float64)
    for m in MCS_TABLE:
        eff = eesm_db(_blocks_of(sinr, m.index, block_bits), m.index).double().cpu()
        out[:, m.index] = eff.mean(dim=1) - margin_db
    return out


def select_mcs_from_sinr(
    sinr: torch.Tensor,
    block_bits: int,
    target_bler: float,
    table: BlerTable | None = None,
    thresholds_db: torch.Tensor | None = None,
    margin_db: float = 0.0,
) -> torch.Tensor:
    """``[L]`` int64: the highest MCS whose expected BLER over the reported REs is ≤ target.

    Args:
        sinr: ``[L, N]`` float linear per-RE SINR reported per link (``LinkState.sinr_feedback``).
        block_bits: code-block size of the digital chain.
        target_bler: per-block error rate aimed at (e.g. 0.1).
        table: BLER table for ``block_bits``; ``None``: compare the mean EESM SINR per MCS with
            ``thresholds_db`` instead (the Shannon-gap fallback of ``v2x.semcom.mcs``).
        thresholds_db: ``[29]`` SNR thresholds, used only without a table.
        margin_db: SINR back-off.

    Links with identical reports (same nominal SNR) are evaluated once.
    """
    if sinr.dim() != 2 or sinr.shape[1] == 0:
        raise ValueError(
            f"link adaptation: 'sinr_feedback' must be [L, N] with N > 0, got {tuple(sinr.shape)}"
        )
    unique, inverse = torch.unique(sinr.float(), dim=0, return_inverse=True)
    if table is not None:
        ok = expected_bler(unique, table, block_bits, margin_db) <= target_bler
    else:
        if thresholds_db is None:
            raise ValueError("link adaptation: need a BLER 'table' or 'thresholds_db'")
        ok = effective_sinr_db(unique, block_bits, margin_db) >= thresholds_db.double()[None, :]
    index = torch.arange(len(MCS_TABLE), dtype=torch.int64)
    best = torch.where(ok, index[None, :], torch.zeros_like(index)[None, :]).amax(dim=1)
    return best[inverse.cpu()]
