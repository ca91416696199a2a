"""Modulation and coding schemes (MCS) and link adaptation for the digital chain.

The MCS list is 3GPP TS 38.214 Table 5.1.3.1-1 ("MCS index table 1 for PDSCH", QPSK…64-QAM),
indices 0…28: modulation order ``Qm`` (bits per QAM symbol) and target code rate ``R × 1024``.
(``tests/semcom/test_digital.py`` checks every entry against ``sionna.phy.nr.utils
.decode_mcs_index``.)

Link adaptation picks, for each transmission, the highest MCS whose block error rate (BLER) at the
link's SNR is at most ``target_bler`` (10 % by default, the usual CQI target). The SNR thresholds
come from the BLER table shipped with the package (``semcom/bler_table.json``, built by
``python -m v2x.semcom.bler_table`` with the exact Sionna LDPC decoder on AWGN for the code-block
size used, see that module). For a block size the table lacks, thresholds fall back to the
Shannon-gap rule ``snr = 10 log10(2^SE − 1) + gap_db`` with ``SE = Qm·R`` (documented, approximate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Mcs:
    """One modulation and coding scheme.

    Attributes:
        index: MCS index in 38.214 Table 5.1.3.1-1.
        qm: modulation order (bits per complex symbol: 2 QPSK, 4 16-QAM, 6 64-QAM).
        rate_x1024: target code rate × 1024 as printed in the standard.
    """

    index: int
    qm: int
    rate_x1024: int

    @property
    def rate(self) -> float:
        return self.rate_x1024 / 1024.0

    @property
    def spectral_efficiency(self) -> float:
        """Information bits per complex channel use, ``Qm · R``."""
        return self.qm * self.rate


# 3GPP TS 38.214 V17, Table 5.1.3.1-1: (Qm, R x 1024) for I_MCS = 0..28.
_TABLE_1 = (
    (2, 120), (2, 157), (2, 193), (2, 251), (2, 308), (2, 379), (2, 449), (2, 526), (2, 602),
    (2, 679), (4, 340), (4, 378), (4, 434), (4, 490), (4, 553), (4, 616), (4, 658), (6, 438),
    (6, 466), (6, 517), (6, 567), (6, 616), (6, 666), (6, 719), (6, 772), (6, 822), (6, 873),
    (6, 910), (6, 948),
)  # fmt: skip

MCS_TABLE: tuple[Mcs, ...] = tuple(Mcs(i, qm, r) for i, (qm, r) in enumerate(_TABLE_1))


def get_mcs(index: int) -> Mcs:
    """The MCS with 38.214 table-1 ``index`` (0…28); ``ValueError`` otherwise (a bool too:
    ``mcs: true`` in a config is not index 1)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(MCS_TABLE):
        raise ValueError(f"mcs index must be an int in 0..{len(MCS_TABLE) - 1}, got {index!r}")
    return MCS_TABLE[index]


def shannon_gap_thresholds_db(gap_db: float = 2.0) -> torch.Tensor:
    """``[29]`` float64 approximate SNR thresholds: ``10 log10(2^(Qm R) − 1) + gap_db``."""
    return torch.tensor(
        [10 * math.log10(2.0**m.spectral_efficiency - 1.0) + gap_db for m in MCS_TABLE],
        dtype=torch.float64,
    )


def check_margin_db(margin_db: float) -> float:
    """``margin_db`` as a float; ``ValueError`` unless it is a finite number of dB."""
    if isinstance(margin_db, bool) or not isinstance(margin_db, int | float):
        raise ValueError(f"link adaptation 'margin_db' must be a number of dB, got {margin_db!r}")
    if not math.isfinite(margin_db):
        raise ValueError(f"link adaptation 'margin_db' must be finite (dB), got {margin_db!r}")
    return float(margin_db)


class LinkAdaptation:
    """Chooses an MCS index per transmission from its SNR.

    Args:
        thresholds_db: ``[29]`` SNR (Es/N0, dB) at which each MCS reaches the target BLER.
        margin_db: back-off added to every threshold (robustness to SNR estimation error), a
            finite number of dB (NaN would qualify no MCS, so every transmission would silently
            take MCS 0).

    ``__call__(snr_db [B]) -> [B] int64``: the highest MCS whose threshold + margin ≤ snr_db; MCS 0
    when none qualifies (the transmission then probably fails: that is the cliff).
    """

    def __init__(self, thresholds_db: torch.Tensor, margin_db: float = 0.0) -> None:
        thresholds = torch.as_tensor(thresholds_db, dtype=torch.float64)
        if thresholds.shape != (len(MCS_TABLE),) or not bool(torch.isfinite(thresholds).all()):
            raise ValueError(
                f"link adaptation 'thresholds_db' must be {len(MCS_TABLE)} finite values, "
                f"got shape {tuple(thresholds.shape)}"
            )
        # A higher MCS must never be chosen at a lower SNR than a lower one: enforce monotonicity.
        self.thresholds_db = torch.cummax(thresholds, dim=0).values
        self.margin_db = check_margin_db(margin_db)

    def __call__(self, snr_db: torch.Tensor) -> torch.Tensor:
        snr = torch.as_tensor(snr_db, dtype=torch.float64).reshape(-1).cpu()
        ok = snr[:, None] >= (self.thresholds_db + self.margin_db)[None, :]
        count = ok.sum(dim=1)  # thresholds are sorted, so the qualifying MCS form a prefix
        return (count - 1).clamp_min(0).to(torch.int64)
