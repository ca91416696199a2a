"""Fixed-order sums over runs of equal keys (v2x.perception.segments) against plain per-key sums,
and the pillar encoder's sorted path against its index_add_ path."""

from __future__ import annotations

import pytest
import torch

from v2x.perception.segments import segment_sums, sums_by_key


def test_segment_sums_adds_each_run_of_equal_keys_whatever_its_length():
    g = torch.Generator().manual_seed(2)
    lengths = [1, 2, 3, 1, 7, 16, 1, 33, 5]  # runs up to 33 rows: six doubling passes
    keys = torch.repeat_interleave(torch.arange(len(lengths)) * 3, torch.tensor(lengths))
    values = torch.randn(keys.numel(), 4, generator=g, dtype=torch.float64)
    for longest in (None, 33, 40):
        sums = segment_sums(keys, values, longest)
        start = 0
        for n in lengths:
            torch.testing.assert_close(sums[start], values[start : start + n].sum(0))
            start += n
    assert segment_sums(keys[:0], values[:0]).shape == (0, 4)


def test_sums_by_key_gives_every_row_its_keys_sum_and_count():
    g = torch.Generator().manual_seed(4)
    keys = torch.randint(0, 9, (200,), generator=g)
    values = torch.randn(200, 3, generator=g, dtype=torch.float64)
    sums, counts = sums_by_key(keys, values)
    for key in keys.unique():
        rows = keys == key
        assert (counts[rows] == int(rows.sum())).all()
        torch.testing.assert_close(sums[rows], values[rows].sum(0).expand(int(rows.sum()), 3))


def test_the_pillar_encoders_sorted_sums_match_its_index_add_path(monkeypatch):
    import v2x.perception.pillars as pillars
    from v2x.perception.bev import BEVGrid

    grid = BEVGrid(x_range_m=(-6.4, 6.4), y_range_m=(-6.4, 6.4), z_range_m=(-1.0, 3.0),
                   resolution_m=0.8)  # fmt: skip
    torch.manual_seed(0)
    encoder = pillars.PillarEncoder(grid, 8).eval()
    points = torch.rand(2, 300, 4) * torch.tensor([16.0, 16.0, 3.0, 1.0]) - torch.tensor(
        [8.0, 8.0, 0.5, 0.0])  # fmt: skip  (some outside the grid)
    points[:, :100, :2] *= 0.1  # crowded pillars near the origin: long runs
    mask = torch.rand(2, 300) > 0.2
    plain = encoder(points, mask)
    monkeypatch.setattr(pillars, "sorted_pillar_sums", lambda _points: True)
    sorted_ = encoder(points, mask)
    torch.testing.assert_close(sorted_, plain, rtol=1e-5, atol=1e-5)
    assert sorted_.abs().sum() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_the_gpu_in_deterministic_mode_the_pillar_image_is_the_same_bits_and_close_to_atomics():
    """The sorted path against torch's atomic index_add_ on the same GPU (the CPU may put a point
    on a pillar border into the other pillar: its cell index is computed with other rounding)."""
    import v2x.perception.pillars as pillars
    from v2x.perception.bev import BEVGrid

    grid = BEVGrid(x_range_m=(-51.2, 51.2), y_range_m=(-51.2, 51.2), z_range_m=(-1.0, 5.0),
                   resolution_m=0.4)  # fmt: skip
    torch.manual_seed(0)
    encoder = pillars.PillarEncoder(grid, 64).eval().cuda()
    points = (torch.randn(5, 60_000, 4) * torch.tensor([20.0, 20.0, 1.0, 0.3])).cuda()
    mask = (torch.rand(5, 60_000) > 0.3).cuda()  # padding: the dump row collects ~90,000 points
    state = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        assert not pillars.sorted_pillar_sums(points)
        atomics = encoder(points, mask)
        torch.use_deterministic_algorithms(True, warn_only=True)
        assert pillars.sorted_pillar_sums(points)
        first = encoder(points, mask)
        for _ in range(3):
            assert torch.equal(encoder(points, mask), first)
    finally:
        torch.use_deterministic_algorithms(state, warn_only=True)
    torch.testing.assert_close(first, atomics, rtol=1e-4, atol=1e-4)
