"""One code block of the digital chain: CRC24A → 5G LDPC → QAM, and back (Sionna).

A code block carries ``block_bits − 24`` payload bits; the 24-bit CRC (``CRC24A``, 38.212) makes
the block's ``block_bits`` LDPC information bits. The LDPC codeword is rate-matched to
``n = ceil(block_bits / R / Qm) · Qm`` coded bits (the MCS's target rate ``R``, rounded up to
whole QAM symbols), i.e. ``n / Qm`` complex channel uses with unit average energy. As in
38.211 § 7.3.1.1 the coded bits are scrambled with the length-31 Gold sequence (fixed
``c_init = SCRAMBLING_C_INIT``) before Gray QAM mapping, so structured payloads (zero padding)
still give unit average symbol energy; the receiver flips the LLR signs back. The base graph,
lifting size, rate matching (MCS 3–28), scrambling and QAM are 38.212/38.211's bit for bit; the
block's CRC24A, its ``n`` and the repetition below the mother code's rate are this chain's own
(docs/digital.md, "Where the chain departs from 3GPP"; tests/semcom/test_nr_standard.py).

The LDPC decoder is Sionna's belief-propagation ``LDPC5GDecoder`` (``ldpc_decoder="sionna"``,
the reference) or the project's batched layered normalised min-sum decoder of the same code
(``"minsum"``, ``v2x.semcom.ldpc_minsum``: same input and output, HARQ redundancy versions
included, many times faster; at 20 iterations it needs 0.1–0.2 dB less SNR than 20 flooding BP
iterations, see docs/digital.md); ``"minsum-fp16"`` is the same decoder storing LLRs and
messages in float16 (opt-in: about half the GPU memory traffic, BLER in docs/digital.md).

The receiver's exact LLRs come from ``v2x.semcom.demap.SeparableQamDemapper`` (Sionna's
``"app"`` demapper computed one dimension at a time; tested equal to it).

Sionna's blocks are imported lazily (they are heavy) and cached per (MCS, block size, decoder,
device).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from v2x.common import triton_available
from v2x.semcom.demap import SeparableQamDemapper
from v2x.semcom.ldpc_numba import compiled_on_host
from v2x.semcom.mcs import Mcs, get_mcs

CRC_BITS = 24
CRC_POLY = "CRC24A"
LDPC_DECODERS = ("sionna", "minsum", "minsum-fp16")
#: Storage precision of each min-sum decoder name (``LDPC5GMinSumDecoder(precision=...)``).
MINSUM_PRECISION = {"minsum": "fp32", "minsum-fp16": "fp16"}
SCRAMBLING_C_INIT = 0x5A5A5  # any 31-bit value; both ends know it
#: LLR magnitude used where the equaliser reports an erased symbol (``no_eff = inf``).
_NO_ERASED = 1e6
_NO_MIN = 1e-9  # the smallest noise variance the LLRs use


def coded_bits_per_block(mcs: Mcs, block_bits: int) -> int:
    """Coded bits ``n`` of one LDPC block of ``block_bits`` information bits (CRC included)."""
    return math.ceil(block_bits * 1024 / mcs.rate_x1024 / mcs.qm) * mcs.qm


#: Largest LDPC information block ``K_cb`` of each base graph (38.212 § 5.2.2).
K_CB = {"bg1": 8448, "bg2": 3840}
#: 1 / the lowest code rate of each base graph's mother code (``N / (K_b Z)``: 66/22, 50/10);
#: below that rate this chain repeats the rate-matched codeword (``BlockCode.ldpc_bits``).
MOTHER_RATE_INV = {"bg1": 3, "bg2": 5}


def base_graph(payload_bits: int, rate: float) -> str:
    """LDPC base graph, ``"bg1"`` or ``"bg2"``, of 38.212 § 7.2.2 (DL-SCH; § 6.2.2, UL-SCH, is
    the same rule) for a block of ``A = payload_bits`` bits before its CRC at target code rate
    ``R = rate`` (the MCS's ``R × 1024 / 1024``): base graph 2 if ``A ≤ 292``, or ``A ≤ 3824``
    and ``R ≤ 0.67``, or ``R ≤ 0.25``; base graph 1 otherwise.

    (Sionna's ``LDPC5GEncoder`` applies the rule to its ``k`` (CRC included) and ``k / n``, which
    differs for 293–316-bit blocks at MCS 23–28 and 3825–3848-bit blocks: ``BlockCode`` passes
    this choice to it.)
    """
    if payload_bits <= 292 or (payload_bits <= 3824 and rate <= 0.67) or rate <= 0.25:
        return "bg2"
    return "bg1"


def check_block_code(mcs_index: int, block_bits: int) -> None:
    """``ValueError`` unless one 5G LDPC code block of ``block_bits`` information bits (CRC
    included) exists at MCS ``mcs_index``: its base graph (``base_graph``) must take
    ``block_bits ≤ K_cb`` (8448 for base graph 1, 3840 for base graph 2). A longer block would be
    segmented into several code blocks (38.212 § 5.2.2), which this chain does not model."""
    check_block_bits(block_bits)
    mcs = get_mcs(mcs_index)
    bg = base_graph(block_bits - CRC_BITS, mcs.rate)
    if block_bits > K_CB[bg]:
        raise ValueError(
            f"digital codec 'block_bits' = {block_bits} at MCS {mcs_index} (rate "
            f"{mcs.rate_x1024}/1024) takes LDPC base graph {bg[-1]} (38.212 § 7.2.2), whose code "
            f"blocks hold at most {K_CB[bg]} bits (§ 5.2.2: a longer block is segmented, which "
            f"this chain does not model): use block_bits ≤ {K_CB[bg]} or another MCS"
        )


#: Check-node updates of Sionna's ``LDPC5GDecoder`` (``cn_update``), by name.
CN_UPDATES = ("boxplus-phi", "boxplus", "minsum", "offset-minsum", "identity")


def check_ldpc_decoder(
    ldpc_decoder: str, num_iter: int = 20, cn_update: str = "boxplus-phi"
) -> None:
    """``ValueError`` unless the LDPC decoder settings are valid: one of ``LDPC_DECODERS``,
    ``num_iter`` an int ≥ 0 (0: the channel's hard decision) and ``cn_update`` one of Sionna's ``CN_UPDATES`` (Sionna checks the
    last two only when its decoder is built, i.e. at the first transmission of that MCS)."""
    if ldpc_decoder not in LDPC_DECODERS:
        raise ValueError(
            f"digital codec 'ldpc_decoder' must be one of {LDPC_DECODERS}, got {ldpc_decoder!r}"
        )
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 0:
        raise ValueError(f"digital codec 'num_iter' must be an int >= 0, got {num_iter!r}")
    if cn_update not in CN_UPDATES:
        raise ValueError(
            f"digital codec 'cn_update' must be one of {CN_UPDATES}, got {cn_update!r}"
        )


def check_block_bits(block_bits: int) -> None:
    if not isinstance(block_bits, int) or not CRC_BITS + 8 <= block_bits <= 8448:
        raise ValueError(
            f"digital codec 'block_bits' (LDPC information bits incl. the 24-bit CRC) must be an "
            f"int in {CRC_BITS + 8}..8448, got {block_bits!r}"
        )


class BlockCode:
    """CRC + LDPC + QAM for one MCS and block size.

    Args:
        mcs_index: 38.214 table-1 MCS index.
        block_bits: LDPC information bits per block including the CRC (≤ 8448).
        num_iter: belief-propagation iterations of the LDPC decoder.
        cn_update: Sionna check-node update (``"boxplus-phi"`` exact BP, ``"minsum"``, …).
        device: torch device string.
        ldpc_decoder: ``"sionna"`` (Sionna's BP decoder with ``cn_update``) or ``"minsum"``
            (``v2x.semcom.ldpc_minsum.LDPC5GMinSumDecoder``, ``num_iter`` layered iterations with
            early termination; ``cn_update`` does not apply) or ``"minsum-fp16"`` (the same,
            float16 storage).

    Attributes:
        payload_bits: bits carried per block (``block_bits − 24``).
        coded_bits: ``n`` coded bits per block; ``num_symbols = coded_bits / Qm``.
    """

    def __init__(
        self,
        mcs_index: int,
        block_bits: int,
        num_iter: int = 20,
        cn_update: str = "boxplus-phi",
        device: str = "cpu",
        ldpc_decoder: str = "sionna",
    ) -> None:
        from sionna.phy.fec.crc import CRCDecoder, CRCEncoder
        from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
        from sionna.phy.mapping import Mapper

        check_block_code(mcs_index, block_bits)
        check_ldpc_decoder(ldpc_decoder, num_iter, cn_update)
        self.mcs = get_mcs(mcs_index)
        self.block_bits = block_bits
        self.payload_bits = block_bits - CRC_BITS
        self.coded_bits = coded_bits_per_block(self.mcs, block_bits)
        self.num_symbols = self.coded_bits // self.mcs.qm
        qm = self.mcs.qm
        #: 38.212 § 7.2.2 base graph (``base_graph``), given to Sionna's encoder.
        self.base_graph = base_graph(self.payload_bits, self.mcs.rate)
        # Sionna's 5G LDPC stops at the mother code's rate (1/5 for base graph 2: MCS 0-2 are
        # lower; 1/3 for base graph 1: MCS 4 and 10 with blocks > 3848 bits): send a codeword
        # at that rate and repeat it cyclically up to n coded bits; the receiver adds the LLRs of
        # the repeats (chase combining). Not bit for bit 38.212's circular buffer (docs/digital.md,
        # "Where the chain departs from 3GPP").
        max_bits = block_bits * MOTHER_RATE_INV[self.base_graph]
        self.ldpc_bits = min(self.coded_bits, (max_bits // qm) * qm)
        self._repeat_index = torch.arange(self.coded_bits) % self.ldpc_bits
        from sionna.phy.nr.utils import generate_prng_seq

        scramble = generate_prng_seq(self.coded_bits, SCRAMBLING_C_INIT)
        self._scramble = torch.as_tensor(scramble, dtype=torch.float32, device=device)
        self._crc_enc = CRCEncoder(CRC_POLY, device=device)
        self._crc_dec = CRCDecoder(self._crc_enc, device=device)
        self._ldpc_enc = LDPC5GEncoder(
            block_bits, self.ldpc_bits, num_bits_per_symbol=qm, bg=self.base_graph, device=device
        )
        if ldpc_decoder in MINSUM_PRECISION:
            from v2x.semcom.ldpc_minsum import LDPC5GMinSumDecoder

            self._ldpc_dec = LDPC5GMinSumDecoder(
                self._ldpc_enc, num_iter=num_iter, precision=MINSUM_PRECISION[ldpc_decoder]
            )
        else:
            self._ldpc_dec = LDPC5GDecoder(
                self._ldpc_enc, num_iter=num_iter, cn_update=cn_update, hard_out=True, device=device
            )
        self._num_iter, self._cn_update, self._device = num_iter, cn_update, device
        self.ldpc_decoder = ldpc_decoder
        self._fork_devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
        self._ldpc_dec_harq = None  # built on first use (incremental redundancy)
        self._mapper = Mapper("qam", qm, device=device)
        # exact app LLRs, as Sionna's Demapper("app", "qam", qm), one dimension at a time
        self._demapper = SeparableQamDemapper(self._mapper.constellation(), qm)
        self._qam_tables_on: dict = {}  # qam_triton's tables per device (and per end)

    @property
    def ldpc_encoder(self):
        """Sionna's ``LDPC5GEncoder`` of this block code (``k = block_bits``, ``n = ldpc_bits``)."""
        return self._ldpc_enc

    def encode(self, bits: torch.Tensor, rv: int = 0) -> torch.Tensor:
        """``bits [N, payload_bits]`` (0/1, any real dtype) → ``[N, num_symbols]`` complex64.

        ``rv``: redundancy version 0..3 (38.212 table 5.4.2.1-2, Sionna's rate matching): where
        the ``ldpc_bits`` read from the circular buffer start; 0 is the first transmission,
        others are incremental-redundancy retransmissions (``v2x.semcom.harq``).
        """
        if bits.shape[0] == 0:
            return torch.zeros(0, self.num_symbols, dtype=torch.complex64, device=bits.device)
        info = self._crc_enc(bits.to(torch.float32))
        if self._encodes_in_one_pass(info):
            from v2x.semcom.ldpc_encode_triton import codewords
            from v2x.semcom.qam_triton import coded_symbols

            tables, positions, scramble, points = self._encode_tables(info.device, rv)
            c = codewords(info, tables)
            return coded_symbols(c, scramble, points, self.mcs.qm, self.coded_bits, positions)
        if compiled_on_host(info):
            from v2x.semcom import block_code_numba

            tables, positions, scramble, points = self._encode_tables(info.device, rv)
            return block_code_numba.coded_symbols(info, tables, positions, scramble, points,
                                                  self.mcs.qm)  # fmt: skip
        c = self._ldpc_enc(info) if rv == 0 else self._ldpc_enc(info, rv=[int(rv)])[:, 0]
        if self.ldpc_bits < self.coded_bits:
            c = c[:, self._repeat_index.to(c.device)]
        c = (c + self._scramble.to(c.device)) % 2.0
        return self._mapper(c).to(torch.complex64)

    @staticmethod
    def _encodes_in_one_pass(info: torch.Tensor) -> bool:
        """LDPC encoding, rate matching, repeat, scrambling and mapping in Triton
        (``ldpc_encode_triton.codewords``, then ``qam_triton.coded_symbols``: the same symbols):
        CUDA, ``[N, k]`` information bits, no gradient."""
        if not (info.is_cuda and info.dim() == 2):
            return False
        return not info.requires_grad and triton_available()

    def _encode_tables(self, device: torch.device, rv: int) -> tuple:
        """``(EncoderTables, output positions [ldpc_bits], scramble [coded_bits], points [2^Qm])``
        on ``device``, built once per device and redundancy version."""
        from v2x.semcom.ldpc_encode_triton import EncoderTables, output_positions

        key = ("encode", str(device), int(rv))
        if key not in self._qam_tables_on:
            on = ("encoder", str(device))
            if on not in self._qam_tables_on:
                points = self._mapper.constellation().to(device=device, dtype=torch.complex64)
                tables = EncoderTables(self._ldpc_enc, device)
                self._qam_tables_on[on] = (tables, self._scramble.to(device), points)
            tables, scramble, points = self._qam_tables_on[on]
            positions = output_positions(self._ldpc_enc, int(rv)).to(device)
            self._qam_tables_on[key] = (tables, positions, scramble, points)
        return self._qam_tables_on[key]

    def surrogate_symbols(self, num_blocks: int, device: torch.device) -> torch.Tensor:
        """``[num_blocks, num_symbols]`` i.i.d. uniform points of this MCS's QAM constellation.

        What scrambled coded bits look like on air; used by the fast (table) receiver, which
        never reads symbol values, to skip LDPC encoding.
        """
        points = self._mapper.constellation().to(device=device, dtype=torch.complex64)
        idx = torch.randint(0, points.numel(), (num_blocks, self.num_symbols), device=device)
        return points[idx]

    def decode(self, x_hat: torch.Tensor, no: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Demap, LDPC-decode and CRC-check equalised blocks.

        Args:
            x_hat: ``[N, num_symbols]`` complex64 equalised symbols.
            no: ``[N, num_symbols]`` (or broadcastable) float32 effective noise variance; ``inf``
                marks an erased symbol (it then contributes a zero LLR).

        Returns:
            bits: ``[N, payload_bits]`` uint8 hard decisions.
            ok: ``[N]`` bool, True where the CRC holds.
        """
        if x_hat.shape[0] == 0:
            return self.decode_llr(torch.zeros(0, self.ldpc_bits, device=x_hat.device))
        return self.decode_llr(self.llr(x_hat, no))

    def llr(self, x_hat: torch.Tensor, no: torch.Tensor) -> torch.Tensor:
        """``[N, ldpc_bits]`` float32 LLRs of the LDPC codeword bits (descrambled; the cyclic
        repeats of MCS 0–2 added), from equalised symbols as in ``decode``."""
        if self._llrs_in_one_pass(x_hat):
            from v2x.semcom.qam_triton import codeword_llrs

            llr = codeword_llrs(x_hat, no, self._llr_tables(x_hat.device), _NO_ERASED, _NO_MIN)
        elif compiled_on_host(x_hat) and x_hat.dtype == torch.complex64 and x_hat.dim() == 2:
            from v2x.semcom import block_code_numba

            return block_code_numba.codeword_llrs(
                x_hat, no, self._llr_tables(x_hat.device), self.ldpc_bits, _NO_ERASED, _NO_MIN
            )  # the repeats added there
        else:
            no = torch.as_tensor(no, dtype=torch.float32, device=x_hat.device)
            no = no.expand(x_hat.shape)
            no = torch.nan_to_num(no, nan=_NO_ERASED, posinf=_NO_ERASED).clamp(_NO_MIN, _NO_ERASED)
            llr = self._demapper(x_hat, no) * (1.0 - 2.0 * self._scramble.to(x_hat.device))
        if self.ldpc_bits < self.coded_bits:
            llr = add_cyclic_repeats(llr, self.ldpc_bits)
        return llr

    @staticmethod
    def _llrs_in_one_pass(x_hat: torch.Tensor) -> bool:
        """The noise clean-up, demapper and descrambling as one Triton pass
        (``v2x.semcom.qam_triton``): CUDA, ``[N, n]`` complex64 symbols that need no
        gradient (the LDPC decoder after it has none)."""
        if not (x_hat.is_cuda and x_hat.dtype == torch.complex64 and x_hat.dim() == 2):
            return False
        return not x_hat.requires_grad and triton_available()

    def _llr_tables(self, device: torch.device):  # noqa: ANN202
        """``qam_triton.LlrTables`` of this code on ``device`` (built once per device)."""
        from v2x.semcom.qam_triton import LlrTables

        key = str(device)
        if key not in self._qam_tables_on:
            dims, levels, labels = self._demapper.bit_tables()
            sign = 1.0 - 2.0 * self._scramble
            self._qam_tables_on[key] = LlrTables(
                dims.to(device), levels.to(device), labels.to(device), sign.to(device)
            )
        return self._qam_tables_on[key]

    def decode_llr(
        self, llr: torch.Tensor, rv: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """LDPC-decode and CRC-check codeword LLRs.

        Args:
            llr: ``[N, ldpc_bits]`` (one redundancy version, or chase-combined copies of it), or
                ``[N, R, ldpc_bits]`` with ``rv`` (``R`` received redundancy versions,
                incremental redundancy: Sionna's HARQ-mode decoder adds them in the circular
                buffer).
            rv: the redundancy version of each of the ``R`` rows; ``None``: RV 0 only.

        Returns:
            bits ``[N, payload_bits]`` uint8 and ok ``[N]`` bool, as ``decode``.
        """
        n = llr.shape[0]
        if n == 0:
            empty = torch.zeros(0, self.payload_bits, dtype=torch.uint8, device=llr.device)
            return empty, torch.zeros(0, dtype=torch.bool, device=llr.device)
        u = self._ldpc_dec(llr) if rv is None else self._harq_decoder()(llr, rv=list(rv))
        payload, ok = self._crc_dec(u)
        return payload.round().to(torch.uint8), ok.reshape(n).to(torch.bool)

    def _harq_decoder(self):
        """The LDPC decoder in HARQ mode (no pruning of punctured nodes), built once: Sionna's,
        or the min-sum decoder with ``ldpc_decoder="minsum"``."""
        if self._ldpc_dec_harq is not None:
            return self._ldpc_dec_harq
        if self.ldpc_decoder in MINSUM_PRECISION:
            from v2x.semcom.ldpc_minsum import LDPC5GMinSumDecoder

            self._ldpc_dec_harq = LDPC5GMinSumDecoder(
                self._ldpc_enc,
                num_iter=self._num_iter,
                harq_mode=True,
                precision=MINSUM_PRECISION[self.ldpc_decoder],
            )
        else:
            from sionna.phy.fec.ldpc import LDPC5GDecoder

            with torch.random.fork_rng(devices=self._fork_devices):
                self._ldpc_dec_harq = LDPC5GDecoder(
                    self._ldpc_enc,
                    num_iter=self._num_iter,
                    cn_update=self._cn_update,
                    hard_out=True,
                    harq_mode=True,
                    device=self._device,
                )
        return self._ldpc_dec_harq


def add_cyclic_repeats(llr: torch.Tensor, ldpc_bits: int) -> torch.Tensor:
    """``llr [N, coded_bits]`` → ``[N, ldpc_bits]``: each codeword bit's LLR plus those of its
    cyclic repeats (coded bit ``j`` repeats codeword bit ``j mod ldpc_bits``), added in the
    order sent, from 0 — what ``scatter_add_`` over ``arange(coded_bits) % ldpc_bits`` gives,
    bit for bit, without it: CUDA's deterministic mode runs that scatter as a sort (3 ms per
    frame-condition of the digital chain at MCS 0–2, fifty-ninth session)."""
    out = torch.zeros(llr.shape[0], ldpc_bits, dtype=llr.dtype, device=llr.device)
    for start in range(0, llr.shape[1], ldpc_bits):
        part = llr[:, start : start + ldpc_bits]
        out[:, : part.shape[1]] += part
    return out


@lru_cache(maxsize=128)
def block_code(
    mcs_index: int,
    block_bits: int,
    num_iter: int = 20,
    cn_update: str = "boxplus-phi",
    device: str = "cpu",
    ldpc_decoder: str = "sionna",
) -> BlockCode:
    """Cached ``BlockCode`` (building Sionna's LDPC graphs takes a moment).

    Building Sionna's blocks draws from (and may reseed) torch's global generator; the build runs
    inside ``fork_rng`` so that whether a code was already cached never changes the random
    numbers a seeded caller sees (sweeps are reproducible from their seed).
    """
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        return BlockCode(
            mcs_index,
            block_bits,
            num_iter=num_iter,
            cn_update=cn_update,
            device=device,
            ldpc_decoder=ldpc_decoder,
        )


def device_string(device: torch.device) -> str:
    """Sionna wants ``"cuda:0"`` strings, not ``torch.device`` objects."""
    if device.type == "cuda":
        return f"cuda:{device.index or 0}"
    return str(device.type)
