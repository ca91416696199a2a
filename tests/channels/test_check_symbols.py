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
