"""The paired AP difference against an independent resampling loop, and why it is needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from v2x.perception.ap_config import EvalConfig
from v2x.perception.ap_paired import paired_difference
from v2x.perception.average_precision import APAccumulator, average_precision


def _box(x: float, y: float) -> list[float]:
    return [x, y, 0.0, 4.0, 2.0, 1.5, 0.0]


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 7)


def _two_methods(rng: np.random.Generator, n: int) -> tuple[list[dict], list[dict]]:
    """``n`` frames scored by two methods that share each frame's difficulty: in a hard frame
    (many GT) both find few objects; method B finds each found object with 0.1 more chance."""
    a, b = [], []
    for _ in range(n):
        g = int(rng.integers(0, 8))
        gt = [_box(float(x), float(y)) for x, y in rng.uniform(-40, 40, (g, 2))]
        base = 0.9 - 0.08 * g  # hard frames: both methods miss more
        u = rng.random(g)  # one draw per object for both methods: paired outcomes
        found_a = [list(bx) for bx, v in zip(gt, u) if v < base]
        found_b = [list(bx) for bx, v in zip(gt, u) if v < base + 0.1]
        clutter = [_box(float(x), float(y)) for x, y in rng.uniform(-40, 40, (2, 2))]
        for frames, found in ((a, found_a), (b, found_b)):
            det = found + clutter
            scores = np.concatenate([0.5 + 0.5 * rng.random(len(found)), 0.5 * rng.random(2)])
            frames.append({"det_boxes": _t(det), "det_scores": scores, "gt_boxes": _t(gt)})
    return a, b


def _accumulator(frames: list[dict], towns: int | None = None) -> APAccumulator:
    acc = APAccumulator(EvalConfig(iou_thresholds=(0.5,), distance_bins=(), per_class=False))
    if towns is not None:
        frames = [dict(f, sequence=f"town{i % towns}") for i, f in enumerate(frames)]
        frames.sort(key=lambda f: f["sequence"])
    acc.add_frames(frames)
    return acc


def test_paired_interval_equals_an_independent_resampling_loop() -> None:
    rng = np.random.default_rng(4)
    a, b = _two_methods(rng, 40)
    diff, lo, hi = paired_difference(_accumulator(b), _accumulator(a), "overall", 0.5, 150, 7)
    # oracle: the same resamples (numpy's generator, each in dataset order) through
    # average_precision for both methods, the difference per resample
    ap = lambda frames: average_precision(  # noqa: E731
        [f["det_boxes"] for f in frames], [f["det_scores"] for f in frames],
        [f["gt_boxes"] for f in frames], 0.5,
    )  # fmt: skip
    assert diff == pytest.approx(ap(b) - ap(a), abs=1e-12)
    picks = np.sort(np.random.default_rng(7).integers(0, 40, size=(150, 40)), axis=1)
    values = []
    for row in picks:
        if sum(a[i]["gt_boxes"].shape[0] for i in row) == 0:
            continue
        values.append(ap([b[i] for i in row]) - ap([a[i] for i in row]))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(values, [0.025, 0.975])), abs=1e-12)
    # the point of pairing: the difference's interval is narrower than either AP's, and it
    # excludes 0 although the two marginal intervals overlap
    ci_a = _accumulator(a).compute(bootstrap=150, seed=7)["ci"]["overall"][0.5]
    ci_b = _accumulator(b).compute(bootstrap=150, seed=7)["ci"]["overall"][0.5]
    assert ci_b[0] < ci_a[1]  # the marginal intervals overlap
    assert 0.0 < lo < diff < hi  # the paired one says B is better
    assert hi - lo < min(ci_a[1] - ci_a[0], ci_b[1] - ci_b[0])


def test_paired_interval_resamples_whole_sequences_and_refuses_other_frames() -> None:
    rng = np.random.default_rng(5)
    a, b = _two_methods(rng, 48)
    acc_a, acc_b = _accumulator(a, towns=12), _accumulator(b, towns=12)
    diff, lo, hi = paired_difference(acc_b, acc_a, "overall", 0.5, 100, 3)
    by_frame = paired_difference(acc_b, acc_a, "overall", 0.5, 100, 3, bootstrap_unit="frame")
    assert by_frame[0] == diff and (lo, hi) != by_frame[1:]  # auto: whole towns
    # oracle over towns: 12 towns drawn with replacement, each bringing its 4 frames in order
    towns = [[f for f in range(48) if acc_a._sequences[f] == s]
             for s in dict.fromkeys(acc_a._sequences)]  # fmt: skip
    sorted_a = sorted((dict(f, sequence=f"town{i % 12}") for i, f in enumerate(a)),
                      key=lambda f: f["sequence"])  # fmt: skip
    sorted_b = sorted((dict(f, sequence=f"town{i % 12}") for i, f in enumerate(b)),
                      key=lambda f: f["sequence"])  # fmt: skip
    picks = np.sort(np.random.default_rng(3).integers(0, 12, size=(100, 12)), axis=1)
    values = []
    for row in picks:
        idx = [f for u in row for f in towns[u]]
        if sum(sorted_a[i]["gt_boxes"].shape[0] for i in idx) == 0:
            continue
        values.append(
            average_precision([sorted_b[i]["det_boxes"] for i in idx],
                              [sorted_b[i]["det_scores"] for i in idx],
                              [sorted_b[i]["gt_boxes"] for i in idx], 0.5)
            - average_precision([sorted_a[i]["det_boxes"] for i in idx],
                                [sorted_a[i]["det_scores"] for i in idx],
                                [sorted_a[i]["gt_boxes"] for i in idx], 0.5)
        )  # fmt: skip
    assert (lo, hi) == pytest.approx(tuple(np.quantile(values, [0.025, 0.975])), abs=1e-12)
    with pytest.raises(ValueError, match="the accumulators hold different frames"):
        paired_difference(acc_b, _accumulator(a[:47]), "overall", 0.5, 10)
    with pytest.raises(ValueError, match="group 'class/car' is not in the first accumulator"):
        paired_difference(acc_b, acc_a, "class/car", 0.5, 10)
    with pytest.raises(ValueError, match="expected resamples > 0"):
        paired_difference(acc_b, acc_a, "overall", 0.5, 0)


@pytest.mark.parametrize("unit", ["frame", "sequence"])
def test_paired_interval_is_the_percentiles_of_the_differenced_distributions(unit) -> None:
    """The paired interval (from bounds and a few exact APs, ``ap_quantiles``) is
    ``np.quantile`` of the difference of the two ``bootstrap_distribution``s, bit for bit, at
    both thresholds and for the same method against itself (every difference 0)."""
    rng = np.random.default_rng(11)
    a, b = _two_methods(rng, 64)
    cfg = EvalConfig(iou_thresholds=(0.3, 0.5), distance_bins=(), per_class=False)
    accs = []
    for frames in (a, b):
        acc = APAccumulator(cfg)
        acc.add_frames([dict(f, sequence=f"town{i // 4}") for i, f in enumerate(frames)])
        accs.append(acc)
    for first, second in ((accs[1], accs[0]), (accs[0], accs[0])):
        for thr in (0.3, 0.5):
            _, lo, hi = paired_difference(first, second, "overall", thr, 400, 9, unit)
            on = [x.bootstrap_distribution("overall", thr, 400, 9, unit) for x in (first, second)]
            want = np.quantile(on[0] - on[1], [(1.0 - 0.95) / 2.0, (1.0 + 0.95) / 2.0])
            assert np.array([lo, hi]).tobytes() == want.tobytes(), (thr, unit)
