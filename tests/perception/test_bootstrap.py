"""Bootstrap intervals of APAccumulator over frames and over sequences, against independent
oracles: the frame bootstrap's own draws, de-duplicated data, and the closed-form variance of
the bootstrap of a mean.

The "mean" construction: every frame holds one GT box, and either a detection on it (IoU 1) or
none. Every detection is then a true positive, precision is 1 everywhere and the VOC AP is the
final recall: the fraction of frames with a hit, a sample mean of 0/1 values, whatever the
sort convention and the order of the frames.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from v2x.perception.ap_config import EvalConfig
from v2x.perception.average_precision import APAccumulator


def _acc() -> APAccumulator:
    return APAccumulator(EvalConfig(iou_thresholds=(0.5,), distance_bins=(), per_class=False))


def _hit_frame(hit: bool, score: float, sequence: object = None) -> dict:
    gt = torch.tensor([[5.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.3]], dtype=torch.float64)
    det = gt if hit else gt[:0]
    frame = {"det_boxes": det, "det_scores": torch.full((det.shape[0],), score), "gt_boxes": gt}
    return frame if sequence is None else {**frame, "sequence": sequence}


def _random_frames(rng: np.random.Generator, n: int) -> list[dict]:
    """Frames with a few GT, noisy detections and false positives (AP is not a mean here)."""
    frames = []
    for _ in range(n):
        g = int(rng.integers(1, 5))
        gt = np.column_stack([rng.uniform(-30, 30, (g, 2)), np.zeros(g), np.tile([4.0, 2.0, 1.5], (g, 1)),
                              rng.uniform(-1, 1, g)])  # fmt: skip
        det = gt[rng.random(g) < 0.7].copy()
        det[:, 0] += rng.normal(0, 0.6, det.shape[0])
        fp = np.column_stack([rng.uniform(-30, 30, (2, 2)), np.zeros(2), np.tile([4.0, 2.0, 1.5], (2, 1)),
                              np.zeros(2)])  # fmt: skip
        det = np.concatenate([det, fp[: int(rng.integers(0, 3))]])
        frames.append({"det_boxes": torch.from_numpy(det), "det_scores": rng.random(det.shape[0]),
                       "gt_boxes": torch.from_numpy(gt)})  # fmt: skip
    return frames


def test_the_mean_construction_gives_the_hit_fraction() -> None:
    hits = [True, False, True, True, False]
    acc = _acc()
    acc.add_frames([_hit_frame(h, 0.1 + 0.1 * i) for i, h in enumerate(hits)])
    assert acc.compute()["ap"]["overall"][0.5] == pytest.approx(3 / 5, abs=1e-15)


@pytest.mark.parametrize("sort", ["per_frame", "global"])
def test_one_frame_per_sequence_makes_the_frame_bootstraps_draws(sort: str) -> None:
    frames = _random_frames(np.random.default_rng(1), 30)
    acc = _acc()
    acc.add_frames([dict(f, sequence=f"town{i}/000000") for i, f in enumerate(frames)])
    by_seq = acc.compute(sort=sort, bootstrap=300, seed=4, bootstrap_unit="sequence")
    by_frame = acc.compute(sort=sort, bootstrap=300, seed=4, bootstrap_unit="frame")
    assert by_seq["ci"] == by_frame["ci"]  # exactly: the same draws
    assert (by_seq["bootstrap"]["unit"], by_frame["bootstrap"]["unit"]) == ("sequence", "frame")
    np.testing.assert_array_equal(
        acc.bootstrap_distribution("overall", 0.5, 300, 4, "sequence", sort),
        acc.bootstrap_distribution("overall", 0.5, 300, 4, "frame", sort),
    )
    # auto: no sequence holds two frames, so it is the frame bootstrap (and reported as such)
    assert acc.compute(sort=sort, bootstrap=300, seed=4)["bootstrap"]["unit"] == "frame"


def test_copied_frames_resampled_by_sequence_equal_the_deduplicated_frame_bootstrap() -> None:
    """15 towns, each 4 copies of one frame: drawing towns is drawing the distinct frames (same
    RNG draws), and the AP of 4 copies of each drawn frame is that of one copy (a mean). The
    frame bootstrap, treating the 60 copies as independent, is about √4 = 2x narrower."""
    rng = np.random.default_rng(8)
    hits = rng.random(15) < 0.6
    scores = rng.random(15)
    distinct, copied = _acc(), _acc()
    distinct.add_frames([_hit_frame(h, s) for h, s in zip(hits, scores, strict=True)])
    copied.add_frames([_hit_frame(h, s, f"town{t}") for t, (h, s) in enumerate(zip(hits, scores, strict=True))
                       for _ in range(4)])  # fmt: skip
    oracle = distinct.bootstrap_distribution("overall", 0.5, 2000, seed=3, bootstrap_unit="frame")
    towns = copied.bootstrap_distribution("overall", 0.5, 2000, seed=3)  # auto: sequence
    np.testing.assert_allclose(towns, oracle, rtol=0, atol=1e-12)
    seq = copied.compute(bootstrap=2000, seed=3)
    assert seq["bootstrap"]["unit"] == "sequence"
    assert seq["ci"]["overall"][0.5] == pytest.approx(
        distinct.compute(bootstrap=2000, seed=3)["ci"]["overall"][0.5], abs=1e-12
    )
    (lo, hi), (f_lo, f_hi) = (
        r["ci"]["overall"][0.5]
        for r in (seq, copied.compute(bootstrap=2000, seed=3, bootstrap_unit="frame"))
    )
    assert 1.6 < (hi - lo) / (f_hi - f_lo) < 2.5


def test_frame_bootstrap_of_a_mean_has_the_closed_form_variance() -> None:
    """Resampling n values with replacement: the resampled mean has expectation x̄ and variance
    σ̂²/n (σ̂² the plug-in variance, 1/n). With R resamples the empirical variance has a relative
    standard error of about √(2/R) = 2.2 % at R = 4000; the tolerance is 4.5 of those."""
    rng = np.random.default_rng(0)
    hits = rng.random(40) < 0.35
    acc = _acc()
    acc.add_frames([_hit_frame(h, s) for h, s in zip(hits, rng.random(40), strict=True)])
    values = acc.bootstrap_distribution("overall", 0.5, 4000, seed=5)
    p, n = hits.mean(), hits.size
    var = p * (1 - p) / n
    assert values.size == 4000
    assert values.var() == pytest.approx(var, rel=0.10)
    assert abs(values.mean() - p) < 4 * np.sqrt(var / 4000)


def test_sequence_bootstrap_of_a_mean_has_the_closed_form_variance() -> None:
    """m towns of L frames each: the resampled mean is the mean of m town means drawn with
    replacement, variance (1/m)·(1/m)·Σ(ȳ_j − ȳ)²; the frame bootstrap would give σ̂²/(mL),
    here about 3x smaller (the towns' frames are strongly correlated)."""
    rng = np.random.default_rng(2)
    m, length = 24, 5
    rates = rng.choice([0.1, 0.5, 0.9], m)  # hit rate per town: correlated frames
    hits = rng.random((m, length)) < rates[:, None]
    acc = _acc()
    acc.add_frames([_hit_frame(bool(hits[j, i]), float(rng.random()), f"town{j}")
                    for j in range(m) for i in range(length)])  # fmt: skip
    values = acc.bootstrap_distribution("overall", 0.5, 4000, seed=9)
    town_means = hits.mean(axis=1)
    var = np.mean((town_means - town_means.mean()) ** 2) / m
    assert values.var() == pytest.approx(var, rel=0.10)
    assert abs(values.mean() - hits.mean()) < 4 * np.sqrt(var / 4000)
    frame_var = hits.mean() * (1 - hits.mean()) / hits.size
    assert var > 2 * frame_var  # the oracle itself: the towns matter here


def test_auto_unit_and_its_errors() -> None:
    acc = _acc()
    acc.add_frames([_hit_frame(True, 0.5, "a"), _hit_frame(False, 0.4, "a"), _hit_frame(True, 0.3)])
    assert acc.bootstrap_unit("auto") == "frame"  # one frame has no sequence
    with pytest.raises(ValueError, match="'sequence' needs a sequence for every frame, 1 of 3"):
        acc.compute(bootstrap=5, bootstrap_unit="sequence")
    with pytest.raises(ValueError, match="threshold: expected one of \\[0.5\\], got 0.7"):
        acc.bootstrap_distribution("overall", 0.7, 5)
    with pytest.raises(ValueError, match="name: expected one of"):
        acc.bootstrap_distribution("class/car", 0.5, 5)
    grouped = _acc()
    grouped.add_frames([_hit_frame(True, 0.5, "a"), _hit_frame(False, 0.4, "a"), _hit_frame(True, 0.3, "b")])
    assert grouped.bootstrap_unit() == "sequence"
    # one sequence: every resample would be the whole set (a zero-width interval)
    single = _acc()
    single.add_frames([_hit_frame(True, 0.5, "a"), _hit_frame(False, 0.4, "a")])
    assert single.bootstrap_unit() == "frame"
    with pytest.raises(ValueError, match="at least two sequences to resample, all 2 frames are of 'a'"):
        single.compute(bootstrap=5, bootstrap_unit="sequence")


_SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_bootstrap import _acc, _random_frames
frames = _random_frames(np.random.default_rng(6), 24)
acc = _acc()
acc.add_frames([dict(f, sequence=("town", i // 3)) for i, f in enumerate(frames)])
res = acc.compute(bootstrap=200, seed=13)
print(json.dumps([res["bootstrap"]["unit"], res["ci"]["overall"][0.5]]))
"""


def test_same_seed_same_interval_in_another_process() -> None:
    """Sequence ids of any hashable type, another hash seed: the same interval to the bit."""
    frames = _random_frames(np.random.default_rng(6), 24)
    acc = _acc()
    acc.add_frames([dict(f, sequence=("town", i // 3)) for i, f in enumerate(frames)])
    here = acc.compute(bootstrap=200, seed=13)
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", _SCRIPT.format(tests=tests)], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    unit, ci = json.loads(out.stdout.strip().splitlines()[-1])
    assert unit == here["bootstrap"]["unit"] == "sequence"
    assert tuple(ci) == here["ci"]["overall"][0.5]
    assert acc.compute(bootstrap=200, seed=14)["ci"] != here["ci"]
