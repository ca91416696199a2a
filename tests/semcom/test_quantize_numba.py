"""The quantiser's level counts compiled for the CPU (``v2x.semcom.quantize_numba``) against the
torch path they replace there and against ``quantize`` itself (the oracle: its levels counted by
``np.bincount``), on dense and sparse maps, per channel and per map, exact ties at half steps,
several threads, and values whose quotient is NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from v2x.semcom import quantize
from v2x.semcom.quantize import level_histograms

pytest.importorskip("numba")


def _torch_path(x: torch.Tensor, bits, per_channel: bool, monkeypatch) -> dict:
    with monkeypatch.context() as m:
        m.setattr("v2x.semcom.ldpc_numba.numba_available", lambda: False)
        return level_histograms(x, bits, per_channel)


def _oracle(x: torch.Tensor, b: int, per_channel: bool) -> np.ndarray:
    q = quantize.quantize(x, b, per_channel)
    return np.bincount(q.levels[0][:, q.occupied[0]].reshape(-1).numpy(), minlength=2**b)


def _maps() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    dense = torch.relu(torch.randn(1, 16, 40, 40, generator=g))  # every cell occupied
    dense[0, :, 0, 0] = 0.5  # (a cell with every channel 0 would be empty)
    sparse = torch.randn(1, 8, 33, 17, generator=g) * (torch.rand(1, 1, 33, 17, generator=g) < 0.3)
    sparse[0, 3] = sparse[0, 3].clamp(min=0) * 0 + 1.25 * (sparse[0, 0] != 0)  # a constant channel
    big = torch.relu(torch.randn(1, 3, 200, 150, generator=g)) * 1e4  # > 65,536 values: threads
    return [dense, sparse, big]


@pytest.mark.parametrize("per_channel", [True, False])
def test_compiled_counts_equal_the_torch_path_and_quantize(per_channel, monkeypatch):
    for x in _maps():
        bits = list(range(9, 0, -1))
        compiled = level_histograms(x, bits, per_channel)
        reference = _torch_path(x, bits, per_channel, monkeypatch)
        assert list(compiled) == bits == list(reference)
        for b in bits:
            assert compiled[b].dtype == reference[b].dtype == np.int64
            np.testing.assert_array_equal(compiled[b], reference[b])
            np.testing.assert_array_equal(compiled[b], _oracle(x, b, per_channel))


def test_ties_at_half_steps_round_to_even(monkeypatch):
    """Span 2^b − 1 makes the step exactly 1: values k + 0.5 are exact ties, which torch.round
    (and np.rint) send to the even neighbour."""
    b = 4
    row = torch.arange(0, 15.5, 0.5)  # 0, 0.5, ..., 15: every level and every tie
    x = (row + 1.0).reshape(1, 1, 1, -1).repeat(1, 2, 3, 1)  # offset 1, span 15
    compiled = level_histograms(x, [b], True)[b]
    np.testing.assert_array_equal(compiled, _torch_path(x, [b], True, monkeypatch)[b])
    np.testing.assert_array_equal(compiled, _oracle(x, b, True))
    assert compiled[1] == 6 * 1  # 0.5 → 0 (even), 1.0 → 1, 1.5 → 2: level 1 once per row


def test_thread_count_does_not_change_the_counts():
    x = _maps()[2]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = level_histograms(x, [8, 5, 2], False)
        torch.set_num_threads(max(2, threads))
        several = level_histograms(x, [8, 5, 2], False)
    finally:
        torch.set_num_threads(threads)
    for b in one:
        np.testing.assert_array_equal(one[b], several[b])


def test_a_nan_quotient_is_refused_as_by_the_torch_path(monkeypatch):
    # a huge span overflows (hi − lo = inf): the step is inf, one quotient inf / inf = NaN
    x = torch.tensor([[[[-3e38, 3e38, 1.0]]]])
    with pytest.raises(RuntimeError):
        _torch_path(x, [4], True, monkeypatch)
    with pytest.raises(RuntimeError):  # the compiled pass hands the NaN to the torch path
        level_histograms(x, [4], True)


def test_dense_maps_give_their_values_without_a_copy():
    g = torch.Generator().manual_seed(2)
    dense = torch.rand(4, 5, 6, generator=g) + 0.1
    values, occ, lo, hi = quantize._occupied_values(dense, True)
    assert occ.all() and values.data_ptr() == dense.data_ptr()
    torch.testing.assert_close(values, dense[:, occ], rtol=0, atol=0)
    sparse = dense * (torch.rand(1, 5, 6, generator=g) < 0.5)
    values, occ, lo, hi = quantize._occupied_values(sparse, False)
    torch.testing.assert_close(values, sparse[:, occ], rtol=0, atol=0)
    torch.testing.assert_close(lo, sparse[:, occ].amin().reshape(1), rtol=0, atol=0)
