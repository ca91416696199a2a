"""Where2comm's threshold mode (published ``thre``): the cells each collaborator sends are those
whose (Gaussian-smoothed) confidence is above the threshold, against hand computation and
``scipy.ndimage``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from v2x.perception.fusion import build_fusion
from v2x.perception.fusion_where2comm import Where2commFusion


def _logits(seed: int = 0, s: int = 3, k: int = 2, h: int = 9, w: int = 11) -> torch.Tensor:
    """Class logits ``[S, K, h, w]``: background well below 0, a few objects well above."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(s, k, h, w, generator=g) - 4.0
    logits[0, :, 2:4, 3:6] += 6.0
    logits[1, 1, 6, 8] += 8.0
    return logits  # agent 2: background only


def _confidence_by_hand(logits: torch.Tensor) -> np.ndarray:
    """``[S, h, w]`` float64: the sigmoid of each cell's largest class logit, cell by cell."""
    s, k, h, w = logits.shape
    out = np.zeros((s, h, w))
    for i in range(s):
        for y in range(h):
            for x in range(w):
                top = max(float(logits[i, c, y, x]) for c in range(k))
                out[i, y, x] = 1.0 / (1.0 + math.exp(-top))
    return out


def _kernel_by_hand(k_size: int, sigma: float) -> np.ndarray:
    """The published kernel ``exp(-(x² + y²) / (2σ²)) / (2πσ)``, entry by entry."""
    c = k_size // 2
    return np.array(
        [
            [math.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sigma**2)) / (2 * math.pi * sigma)
             for x in range(k_size)]
            for y in range(k_size)
        ]
    )  # fmt: skip


def test_raw_threshold_is_the_hand_computed_mask():
    """No smoothing (``selection="window", window_cells=1``): a cell is sent iff its confidence
    is strictly above the threshold; the count differs per agent."""
    logits = _logits()
    conf = _confidence_by_hand(logits)
    thre = 0.5
    fusion = build_fusion("where2comm", threshold=thre, selection="window", window_cells=1)
    mask = fusion.selection_mask(fusion.selection_score(logits))
    assert mask.dtype == torch.bool and mask.shape == (3, 1, 9, 11)
    np.testing.assert_array_equal(mask[:, 0].numpy(), conf > thre)
    counts = mask.flatten(1).sum(1).tolist()
    assert counts == [int((conf[i] > thre).sum()) for i in range(3)]
    assert counts[0] > counts[1] > counts[2] == 0  # variable, and nothing for agent 2


@pytest.mark.parametrize(("thre", "k_size", "sigma"), [(0.01, 5, 1.0), (0.05, 3, 0.7), (0.2, 7, 2.0)])
def test_smoothed_threshold_equals_scipy_convolution_of_the_hand_kernel(thre, k_size, sigma):
    """Published smoothing (the default in threshold mode): the confidence convolved with the
    hand-written kernel by ``scipy.ndimage.convolve`` (zero padding), ``> thre``."""
    logits = _logits(seed=1, h=12, w=15)
    conf = _confidence_by_hand(logits)
    kernel = _kernel_by_hand(k_size, sigma)
    fusion = build_fusion("where2comm", threshold=thre, k_size=k_size, c_sigma=sigma)
    assert fusion.selection == "gaussian" and fusion.max_fraction is None
    score = fusion.selection_score(logits)
    for i in range(3):
        want = ndimage.convolve(conf[i], kernel, mode="constant", cval=0.0)
        np.testing.assert_allclose(score[i, 0].numpy(), want, rtol=1e-5, atol=1e-7)
        margin = np.abs(want - thre).min()
        assert margin > 1e-5  # no cell within float32 rounding of the threshold
        mask = fusion.selection_mask(score)[i, 0].numpy()
        np.testing.assert_array_equal(mask, want > thre)


def test_threshold_zero_sends_every_cell_and_one_above_every_score_none():
    logits = _logits(seed=2)
    logits[2] = -200.0  # a sigmoid that underflows to 0: still sent at threshold 0
    for selection in ("gaussian", "window"):
        every = build_fusion("where2comm", threshold=0.0, selection=selection)
        assert every.selection_mask(every.selection_score(logits)).all()
        none = build_fusion("where2comm", threshold=1.5, selection=selection)
        assert not none.selection_mask(none.selection_score(logits)).any()


def test_window_threshold_is_the_neighbourhood_maximum_without_tie_break():
    """``selection="window"`` with a threshold: a cell is sent iff the largest confidence of its
    3 x 3 neighbourhood is above it (no tie-break term added to the score)."""
    logits = _logits(seed=3)
    conf = _confidence_by_hand(logits)
    fusion = build_fusion("where2comm", threshold=0.6, selection="window", window_cells=3)
    mask = fusion.selection_mask(fusion.selection_score(logits))[:, 0].numpy()
    want = ndimage.maximum_filter(conf, size=(1, 3, 3), mode="constant", cval=0.0) > 0.6
    np.testing.assert_array_equal(mask, want)


def test_threshold_matches_the_published_communication_for_collaborators():
    """Where2comm's ``Communication.forward`` (re-implemented in ``test_fusion.py``): for agent
    1 of 2 (their DAIR setting) the mask is ours; the ego's row is forced to ones there, and
    the ego is never selected here (its map is fused whole)."""
    from tests.perception.test_fusion import _where2comm_communication

    g = torch.Generator().manual_seed(5)
    rm = torch.randn(2, 2, 24, 40, generator=g) - 6.0
    rm[:, :, 5:9, 4:12] += 7.0
    rm[1, :, 15:18, 25:33] += 5.0
    reference, _ = _where2comm_communication(rm, 0.01, 5, 1.0)
    fusion = build_fusion("where2comm", threshold=0.01)
    ours = fusion.selection_mask(fusion.selection_score(rm[1:2]))
    assert torch.equal(ours, reference[1:2].bool())


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf"), True, "0.01", [0.1]])
def test_bad_threshold_names_the_field_the_value_and_the_range(bad):
    with pytest.raises(ValueError) as err:
        build_fusion("where2comm", threshold=bad)
    msg = str(err.value)
    assert "where2comm" in msg and "'threshold'" in msg and repr(bad) in msg
    assert ">= 0" in msg


def test_threshold_and_max_fraction_are_mutually_exclusive():
    with pytest.raises(ValueError, match="mutually exclusive") as err:
        build_fusion("where2comm", threshold=0.01, max_fraction=0.1)
    assert "'threshold'" in str(err.value) and "'max_fraction'" in str(err.value)
    budget = build_fusion("where2comm")
    assert budget.max_fraction == 0.1 and budget.threshold is None
    assert budget.selection == "window"
    published = build_fusion("where2comm", threshold=0.01)
    assert (published.threshold, published.max_fraction) == (0.01, None)
    assert (published.selection, published.k_size, published.c_sigma) == ("gaussian", 5, 1.0)
    assert isinstance(published, Where2commFusion) and published.selects_cells
