"""The block code's QAM ends compiled by numba (``v2x.semcom.block_code_numba``, what
``BlockCode`` runs on CPU tensors) against the torch path: Sionna's ``LDPC5GEncoder`` and
``Mapper`` (the symbols bit for bit, every redundancy version) and the separable exact demapper
(itself tested against Sionna's ``Demapper("app")``; the LLRs to float32 rounding)."""

from __future__ import annotations

import pytest
import torch

import v2x.semcom.fec as fec
from v2x.semcom.fec import BlockCode
from v2x.semcom.ldpc_numba import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="needs numba")


def _torch_path(monkeypatch: pytest.MonkeyPatch, fn, *args, **kwargs):  # noqa: ANN001, ANN202
    """``fn(*args, **kwargs)`` with ``BlockCode`` on its torch path (Sionna's blocks)."""
    with monkeypatch.context() as m:
        m.setattr(fec, "compiled_on_host", lambda t: False)
        return fn(*args, **kwargs)


@pytest.mark.parametrize("mcs", [0, 2, 5, 9, 17, 27])  # QPSK with repeats, 16-, 64-, 256-QAM
def test_compiled_symbols_are_sionnas_bit_for_bit(mcs, monkeypatch):
    """Every redundancy version's symbols equal the torch path's (Sionna's encoder, rate
    matching and mapper, the repeats of MCS 0–2, the scrambling) exactly."""
    g = torch.Generator().manual_seed(mcs)
    code = BlockCode(mcs, 1024)
    bits = torch.randint(0, 2, (37, code.payload_bits), generator=g).float()
    bits[0] = 0  # the all-zero block: its symbols are the scrambling sequence's
    for rv in (0, 2, 3, 1):
        got = code.encode(bits, rv=rv)
        want = _torch_path(monkeypatch, code.encode, bits, rv=rv)
        assert got.dtype == want.dtype == torch.complex64
        assert torch.equal(got, want), (mcs, rv)


@pytest.mark.parametrize("mcs", [0, 9, 17, 27])
def test_compiled_llrs_equal_the_torch_paths_to_float32_rounding(mcs, monkeypatch):
    """The LLRs equal ``BlockCode.llr``'s torch path (separable demapper, descrambling, the
    repeats of MCS 0 added) to float32 rounding for per-row and per-symbol noise, with erased
    (inf), NaN and zero noise variances; their signs (the hard decisions) agree wherever the
    LLR is not near zero, and QPSK's (no exponential there) are the same floats."""
    g = torch.Generator().manual_seed(10 + mcs)
    code = BlockCode(mcs, 1024)
    bits = torch.randint(0, 2, (24, code.payload_bits), generator=g).float()
    x = code.encode(bits)
    per_row = torch.rand(24, 1, generator=g) * 0.5 + 0.01
    noise = torch.complex(torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g))
    y = x + noise * (per_row / 2) ** 0.5
    per_symbol = torch.rand(x.shape, generator=g) * 2 + 1e-3
    per_symbol[0, :7] = float("inf")
    per_symbol[1, :3] = float("nan")
    per_symbol[2, :2] = 0.0
    for no in (per_row, per_symbol):
        got = code.llr(y, no)
        want = _torch_path(monkeypatch, code.llr, y, no)
        assert got.shape == want.shape == (24, code.ldpc_bits)
        scale = 1e-5 * want.abs().max() + 1e-5 * want.abs()
        assert float(((got - want).abs() / scale).max()) <= 1.0
        clear = want.abs() > 1e-3 * want.abs().max()
        assert torch.equal(got[clear] > 0, want[clear] > 0)
        if code.mcs.qm == 2:
            assert torch.equal(got, want)


def test_compiled_ends_decode_what_was_sent_and_do_not_depend_on_the_threads():
    """Encoded, sent at a clear SNR and decoded through the compiled ends, every block's CRC
    holds and its bits are the sent ones; one thread and two give the same symbols and LLRs."""
    g = torch.Generator().manual_seed(7)
    code = BlockCode(14, 1024, ldpc_decoder="minsum")
    bits = torch.randint(0, 2, (300, code.payload_bits), generator=g).float()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = code.encode(bits)
        torch.set_num_threads(2)
        two = code.encode(bits)
        assert torch.equal(one, two)
        no = torch.full((300, 1), 0.05)
        y = two + torch.complex(torch.randn(two.shape, generator=g),
                                torch.randn(two.shape, generator=g)) * (no / 2) ** 0.5  # fmt: skip
        llr_two = code.llr(y, no)
        torch.set_num_threads(1)
        assert torch.equal(code.llr(y, no), llr_two)
    finally:
        torch.set_num_threads(threads)
    decoded, ok = code.decode(y, no)
    assert bool(ok.all())
    assert torch.equal(decoded, bits.to(torch.uint8))


def test_compiled_ends_refuse_wrong_shapes_by_name():
    """A block of the wrong length is refused naming what was expected."""
    from v2x.semcom import block_code_numba

    code = BlockCode(9, 1024)
    tables, positions, scramble, points = code._encode_tables(torch.device("cpu"), 0)
    with pytest.raises(ValueError, match=r"expected \[N, 1024\] bits"):
        block_code_numba.coded_symbols(torch.zeros(2, 1000), tables, positions, scramble,
                                       points, code.mcs.qm)  # fmt: skip
    with pytest.raises(ValueError, match="scramble signs"):
        block_code_numba.codeword_llrs(torch.zeros(2, 3, dtype=torch.complex64), torch.ones(1),
                                       code._llr_tables("cpu"), code.ldpc_bits, 1e6, 1e-9)  # fmt: skip


def test_a_tensor_that_needs_its_gradient_keeps_the_torch_path():
    """The compiled ends take no gradient: symbols that require one go through torch."""
    x = torch.zeros(2, 3, dtype=torch.complex64, requires_grad=True)
    assert not fec.compiled_on_host(x)
    assert fec.compiled_on_host(x.detach())
