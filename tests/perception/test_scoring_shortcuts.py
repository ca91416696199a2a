"""The evaluator's shortcuts give what the plain computation gives: one ``compute`` for
accumulators with equal state digests, cached resample draws, greedy matching that skips
detections below every threshold. Oracles: the former code, written out here."""

from __future__ import annotations

import numpy as np
import torch

from v2x.perception.ap_config import EvalConfig
from v2x.perception.ap_match import greedy_match
from v2x.perception.average_precision import APAccumulator


def _frames(rng: np.random.Generator, n: int, sequences: int) -> list[dict]:
    frames = []
    for i in range(n):
        g = int(rng.integers(1, 6))
        gt = np.column_stack([rng.uniform(-30, 30, (g, 2)), np.zeros(g), np.tile([4.0, 2.0, 1.5], (g, 1)),
                              rng.uniform(-1, 1, g)])  # fmt: skip
        det = gt[rng.random(g) < 0.7].copy()
        det[:, 0] += rng.normal(0, 0.8, det.shape[0])
        fp = np.column_stack([rng.uniform(-30, 30, (3, 2)), np.zeros(3), np.tile([4.0, 2.0, 1.5], (3, 1)),
                              np.zeros(3)])  # fmt: skip
        det = np.concatenate([det, fp[: int(rng.integers(0, 4))]])
        frames.append({"det_boxes": torch.from_numpy(det), "det_scores": rng.random(det.shape[0]),
                       "det_labels": rng.integers(0, 2, det.shape[0]),
                       "gt_boxes": torch.from_numpy(gt), "gt_labels": rng.integers(0, 2, g),
                       "sequence": f"s{i % sequences}"})  # fmt: skip
    return frames


def _config() -> EvalConfig:
    return EvalConfig(eval_range=(-25.0, -25.0, 25.0, 25.0), class_groups={"vehicle": (0, 1)})


def test_equal_digests_mean_equal_results_and_any_record_changes_the_digest():
    frames = _frames(np.random.default_rng(0), 12, 3)
    first, replica, alone = (
        APAccumulator(_config()),
        APAccumulator(_config()),
        APAccumulator(_config()),
    )
    first.add_frames(frames, replicas=[replica])
    alone.add_frames(frames)
    assert first.state_digest() == replica.state_digest() == alone.state_digest()
    results = [a.compute(bootstrap=50, seed=3) for a in (first, alone)]
    assert repr(results[0]["ap"]) == repr(results[1]["ap"])
    assert repr(results[0]["ci"]) == repr(results[1]["ci"])
    other = APAccumulator(_config())
    changed = [dict(f) for f in frames]
    changed[5]["det_scores"] = np.asarray(changed[5]["det_scores"]) * 0.5 + 0.1
    other.add_frames(changed)
    assert other.state_digest() != first.state_digest()
    renamed = APAccumulator(_config())
    renamed.add_frames([{**f, "sequence": "x"} if i == 0 else f for i, f in enumerate(frames)])
    assert renamed.state_digest() != first.state_digest()


def _former_draws(acc: APAccumulator, name: str, resamples: int, seed: int, unit: str):
    """``APAccumulator._draws`` before its cache."""
    store = acc._store(name)
    rng = np.random.default_rng(seed)
    if unit == "sequence":
        members: dict = {}
        for record, fi in enumerate(store.frame_index):
            members.setdefault(acc._sequences[fi], []).append(record)
        units = [np.asarray(v, dtype=np.int64) for v in members.values()]
    else:
        units = [np.asarray([r], dtype=np.int64) for r in range(len(store.frame_gt))]
    picks = rng.integers(0, len(units), size=(resamples, len(units)))
    picks.sort(axis=1)
    if unit != "sequence":
        return list(picks)
    return [np.concatenate([units[u] for u in row]) for row in picks]


def test_cached_draws_equal_the_former_draws():
    acc = APAccumulator(_config())
    acc.add_frames(_frames(np.random.default_rng(1), 15, 4))
    for unit in ("frame", "sequence"):
        for seed in (0, 7):
            want = _former_draws(acc, "overall", 40, seed, unit)
            for _ in range(2):  # the second call is served from the cache
                got = acc._draws("overall", 40, seed, unit)
                assert len(got) == len(want)
                assert all(g.dtype == w.dtype and np.array_equal(g, w) for g, w in zip(got, want))


def _former_greedy_match(iou, thresholds, det_in, gt_in):
    """``greedy_match`` visiting every detection."""
    d, g = iou.shape
    p = thresholds.size
    avail = np.array(gt_in, dtype=bool)
    matched = np.full((p, d), -1, dtype=np.int64)
    rows = np.arange(p)
    for i in range(d):
        masked = np.where(avail, iou[i][None, :], -1.0)
        best = masked.argmax(axis=1)
        hit = det_in[:, i] & (masked[rows, best] >= thresholds)
        matched[hit, i] = best[hit]
        avail[rows[hit], best[hit]] = False
    return matched


def test_greedy_match_equals_visiting_every_detection():
    rng = np.random.default_rng(2)
    for _ in range(200):
        d, g, p = (int(x) for x in rng.integers(1, 9, 3))
        iou = np.round(rng.random((d, g)) * rng.random((d, 1)), 1)  # ties and rows below all
        thresholds = rng.choice([0.3, 0.5, 0.7], p)
        det_in, gt_in = rng.random((p, d)) < 0.8, rng.random((p, g)) < 0.8
        want = _former_greedy_match(iou, thresholds, det_in, gt_in)
        assert np.array_equal(greedy_match(iou, thresholds, det_in, gt_in), want)


def test_greedy_match_batched_equals_one_frame_at_a_time():
    """Frames of different sizes (empty ones too), problem counts and thresholds, with ties
    and detections below every threshold, matched side by side: each frame's result is the
    former one-frame loop's."""
    from v2x.perception.ap_match import greedy_match_batched

    rng = np.random.default_rng(5)
    for _ in range(40):
        n = int(rng.integers(1, 7))
        args = []
        for _ in range(n):
            d, g, p = (int(x) for x in rng.integers(0, 9, 3))
            iou = np.round(rng.random((d, g)) * rng.random((d, 1)), 1)
            thresholds = rng.choice([0.1, 0.3, 0.5, 0.7], p)
            args.append((iou, thresholds, rng.random((p, d)) < 0.8, rng.random((p, g)) < 0.8))
        got = greedy_match_batched(*zip(*args, strict=True))
        for (iou, thr, det_in, gt_in), m in zip(args, got, strict=True):
            if iou.size:
                want = _former_greedy_match(iou, thr, det_in, gt_in)
            else:  # no detection or no GT: nothing matches
                want = np.full((thr.size, iou.shape[0]), -1, dtype=np.int64)
            assert m.dtype == want.dtype and np.array_equal(m, want)


def test_add_frame_sets_equals_add_frames_one_set_after_another():
    """Several accumulators' frame sets scored with shared IoU calls record exactly what their
    own ``add_frames`` calls record (digests and results), replicas included; a set larger
    than a chunk or an accumulator in two sets runs the calls in turn."""
    from v2x.perception.ap_frames import add_frame_sets

    rng = np.random.default_rng(7)
    sets = [_frames(rng, int(rng.integers(0, 9)), 2) for _ in range(4)]
    configs = [_config(), _config(), EvalConfig(iou_mode="3d"), _config()]
    for chunk in (256, 3):
        alone = [APAccumulator(c) for c in configs]
        replica_alone = APAccumulator(configs[1])
        together = [APAccumulator(c) for c in configs]
        replica_together = APAccumulator(configs[1])
        for accs, replica, batched in (
            (alone, replica_alone, False),
            (together, replica_together, True),
        ):
            for _ in range(2):  # state carried from one batch to the next
                jobs = [(acc, frames, [replica] if i == 1 else []) for i, (acc, frames)
                        in enumerate(zip(accs, sets, strict=True))]  # fmt: skip
                if batched:
                    add_frame_sets(jobs, chunk=chunk)
                else:
                    for acc, frames, replicas in jobs:
                        acc.add_frames(frames, chunk=chunk, replicas=replicas)
        for a, b in zip([*alone, replica_alone], [*together, replica_together], strict=True):
            assert a.state_digest() == b.state_digest()
            ra, rb = a.compute(bootstrap=20, seed=1), b.compute(bootstrap=20, seed=1)
            assert repr(ra["ap"]) == repr(rb["ap"]) and repr(ra["ci"]) == repr(rb["ci"])
    shared = APAccumulator(_config())
    twice = APAccumulator(_config())
    add_frame_sets([(shared, sets[0], []), (shared, sets[1], [])])
    twice.add_frames(sets[0])
    twice.add_frames(sets[1])
    assert shared.state_digest() == twice.state_digest()


def test_numpy_frames_record_what_tensor_frames_record():
    """Frames given as numpy arrays (scored in numpy, no torch call) and the same frames as
    tensors (float32 detections, float64 GT, empty frames, no labels) give equal digests,
    results and error messages."""
    rng = np.random.default_rng(11)
    frames = _frames(rng, 10, 3)
    frames[3] = {**frames[3], "det_boxes": torch.zeros(0, 7), "det_scores": np.zeros(0),
                 "det_labels": np.zeros(0, dtype=np.int64)}  # fmt: skip
    frames[5] = {**frames[5], "gt_boxes": torch.zeros(0, 7), "gt_labels": np.zeros(0, np.int64)}
    for f in frames:
        g = f["gt_boxes"].shape[0]
        f["gt_ignore_mask"] = rng.random(g) < 0.2
        f["gt_subsets"] = {"ego_invisible": rng.random(g) < 0.5}
    as_tensors = [
        {**f, "det_boxes": torch.as_tensor(f["det_boxes"]).float(),
         "det_scores": torch.as_tensor(f["det_scores"]).float(),
         "det_labels": torch.as_tensor(f["det_labels"]),
         "gt_boxes": torch.as_tensor(f["gt_boxes"]).double(),
         "gt_ignore_mask": torch.as_tensor(f["gt_ignore_mask"]),
         "gt_subsets": {"ego_invisible": torch.as_tensor(f["gt_subsets"]["ego_invisible"])}}
        for f in frames
    ]  # fmt: skip
    as_arrays = [
        {**f, "det_boxes": f["det_boxes"].numpy(), "det_scores": f["det_scores"].numpy(),
         "det_labels": f["det_labels"].numpy(), "gt_boxes": f["gt_boxes"].numpy(),
         "gt_ignore_mask": f["gt_ignore_mask"].numpy(),
         "gt_subsets": {"ego_invisible": f["gt_subsets"]["ego_invisible"].numpy()}}
        for f in as_tensors
    ]  # fmt: skip
    for config in (_config(), EvalConfig(), EvalConfig(sort="global", eval_range=(-9, -9, 9, 9))):
        one, two, three = APAccumulator(config), APAccumulator(config), APAccumulator(config)
        one.add_frames(as_tensors)
        two.add_frames(as_arrays)
        for f in as_arrays:  # one frame at a time: the range mask computed in _prepare
            three.add_frame(**f)
        assert one.state_digest() == two.state_digest() == three.state_digest()
        assert repr(one.compute(bootstrap=10)["ci"]) == repr(two.compute(bootstrap=10)["ci"])
    for bad in ({"det_boxes": np.zeros((2, 6))}, {"det_scores": np.zeros(5)},
                {"det_boxes": np.full((1, 7), np.nan), "det_scores": np.zeros(1)}):  # fmt: skip
        messages = []
        for kind in (np.asarray, torch.as_tensor):
            item = {**as_arrays[0], **{k: kind(v) for k, v in bad.items()}}
            try:
                APAccumulator(_config()).add_frames([item])
            except ValueError as exc:
                messages.append(str(exc))
        assert len(messages) == 2 and messages[0] == messages[1]
