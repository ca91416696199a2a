"""``check_symbols`` refuses exactly the inputs numpy's ``isfinite`` calls non-finite."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from v2x.channels.base import check_symbols


@pytest.mark.parametrize("part", [0, 1])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_any_non_finite_part_is_refused(part: int, bad: float) -> None:
    x = torch.randn(3, 257, dtype=torch.complex64)
    torch.view_as_real(x)[1, 100, part] = bad
    assert not np.isfinite(torch.view_as_real(x).numpy()).all()  # the oracle agrees
    with pytest.raises(ValueError, match="channel input 'x' contains NaN or Inf"):
        check_symbols(x)


def test_finite_inputs_pass_even_at_the_float32_extremes() -> None:
    big = torch.finfo(torch.float32).max
    x = torch.tensor([[complex(big, -big), complex(-big, big)], [0j, complex(1e-45, 0)]])
    assert np.isfinite(torch.view_as_real(x).numpy()).all()
    check_symbols(x)
    check_symbols(torch.zeros(0, 5, dtype=torch.complex64))  # nothing to send


def test_wrong_dtype_and_shape_are_named() -> None:
    with pytest.raises(ValueError, match="must be complex, got dtype torch.float32"):
        check_symbols(torch.zeros(2, 3), "tx")
    with pytest.raises(ValueError, match=r"must have shape \[B, n\], got \(6,\)"):
        check_symbols(torch.zeros(6, dtype=torch.complex64), "tx")


def test_deferred_checks_raise_when_the_block_ends() -> None:
    """Inside ``deferred_checks`` a bad input is reported when the block ends (one host read
    for every check), with the same message; outside it, at once."""
    from v2x.channels import build_channel
    from v2x.channels.base import deferred_checks

    awgn = build_channel("awgn", validate=True)
    good = torch.randn(2, 16, dtype=torch.complex64)
    bad = good.clone()
    torch.view_as_real(bad)[0, 3, 0] = float("nan")
    reached = []
    with pytest.raises(ValueError, match="contains NaN or Inf") as err, deferred_checks():
        awgn(good, 10.0)
        awgn(bad, 10.0)  # queued, not raised here
        reached.append(True)
        awgn(good, torch.tensor([5.0, float("nan")]))  # a second failure: the first is named
    assert reached and err.value.__cause__ is None
    with pytest.raises(ValueError, match="'snr_db' must be finite"):
        awgn(good, torch.tensor([5.0, float("inf")]))  # no block: at once
    with deferred_checks():  # all good: nothing raised
        awgn(good, 3.0)


def test_a_failed_deferred_check_names_itself_when_the_block_fails_too() -> None:
    from v2x.channels.base import deferred_checks, require

    with pytest.raises(ValueError, match="first check") as err, deferred_checks():
        require(torch.tensor(False), "first check")
        raise RuntimeError("what the bad value caused")
    assert isinstance(err.value.__cause__, RuntimeError)
    # no check failed: the block's error itself
    with pytest.raises(RuntimeError, match="unrelated"), deferred_checks():
        require(torch.tensor(True), "fine")
        raise RuntimeError("unrelated")
    # nested blocks: the outermost one reads
    reached = []
    with pytest.raises(ValueError, match="inner"), deferred_checks():
        with deferred_checks():
            require(torch.tensor(False), "inner")
        reached.append("after the inner block")
    assert reached[-1] == "after the inner block"


def test_an_interrupt_inside_deferred_checks_goes_through() -> None:
    from v2x.channels.base import _DEFERRED, deferred_checks, require

    with pytest.raises(KeyboardInterrupt), deferred_checks():
        require(torch.tensor(False), "a failed check does not replace Ctrl-C")
        raise KeyboardInterrupt
    assert getattr(_DEFERRED, "queue", None) is None  # checks are read at once again
    with pytest.raises(ValueError, match="at once"):
        require(torch.tensor(False), "at once")


def test_the_same_unwritten_symbols_are_read_once_and_a_write_is_seen(monkeypatch) -> None:
    """A sweep sends one tensor of symbols at its K SNRs: the finiteness check reads it once
    (``aminmax`` counted), a fresh tensor or an in-place write is read again, and a NaN written
    after a passed check is still refused."""
    calls = []
    real = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda t: calls.append(1) or real(t))
    x = torch.randn(3, 257, dtype=torch.complex64)
    for _ in range(3):
        check_symbols(x)
    assert len(calls) == 1  # read once, kept
    check_symbols(x[:2])  # a view of part of it: another input, read
    assert len(calls) == 2
    torch.view_as_real(x)[0, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        check_symbols(x)  # written since: read again
    assert len(calls) == 3
    fresh = torch.randn(3, 257, dtype=torch.complex64)
    check_symbols(fresh)
    check_symbols(fresh)
    assert len(calls) == 4
