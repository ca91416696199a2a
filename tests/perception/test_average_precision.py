"""The evaluator against hand-computed AP values and an independent shapely reference loop.

Boxes in the hand cases are either identical (IoU 1) or far apart (IoU 0) unless stated, so
every TP/FP decision below can be checked on paper.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from v2x.perception.ap_config import EvalConfig
from v2x.perception.ap_curve import ap_from_flags, voc_ap
from v2x.perception.ap_match import greedy_match
from v2x.perception.average_precision import APAccumulator, average_precision, format_results


def box(x: float, y: float = 0.0, length: float = 4.0, width: float = 2.0, z: float = 0.0,
        h: float = 1.5, yaw: float = 0.0) -> list[float]:  # fmt: skip
    return [x, y, z, length, width, h, yaw]


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 7)


def test_voc_ap_by_hand() -> None:
    # recall .25 .25 .5 .5 .75 .75, precision 1 1/2 2/3 1/2 3/5 1/2 (sequence T F T F T F, 4 GT)
    # interpolated precision at recall steps .25, .5, .75: 1, 2/3, 3/5 -> AP = .25(1+2/3+3/5)
    rec = np.array([0.25, 0.25, 0.5, 0.5, 0.75, 0.75])
    prec = np.array([1, 1 / 2, 2 / 3, 1 / 2, 3 / 5, 1 / 2])
    ap, mrec, mpre = voc_ap(rec, prec)
    assert ap == pytest.approx(17 / 30, abs=1e-12)
    assert mrec[0] == 0.0 and mrec[-1] == 1.0 and mpre[-1] == 0.0
    assert np.all(np.diff(mpre) <= 0)


def _three_frames(acc: APAccumulator) -> None:
    """Frame 1: GT g1; dets .9 on g1 (TP), .3 far (FP).
    Frame 2: GT g2, g3; dets .8 on g2 (TP), .6 far (FP).            (g3 is never detected)
    Frame 3: GT g4; dets .7 on g4 (TP), .5 on g4 again (FP: g4 already matched).
    """
    acc.add_frame(t([box(0), box(80)]), [0.9, 0.3], None, t([box(0)]))
    acc.add_frame(t([box(80), box(10)]), [0.6, 0.8], None, t([box(10), box(-30)]))
    acc.add_frame(t([box(5), box(5)]), [0.5, 0.7], None, t([box(5)]))


def test_per_frame_vs_global_sort_hand_computed() -> None:
    # per_frame: T F | T F | T F  -> tp 1 1 2 2 3 3, fp 0 1 1 2 2 3, 4 GT
    #   recall .25 .25 .5 .5 .75 .75; precision 1 .5 .667 .5 .6 .5
    #   AP = .25*1 + .25*(2/3) + .25*(3/5) + .25*0 = 17/30 = 0.5667
    # global: scores .9T .8T .7T .6F .5F .3F -> recall .25 .5 .75 .75 ..., precision 1 1 1 .75..
    #   AP = .75
    acc = APAccumulator(EvalConfig(iou_thresholds=(0.5,), distance_bins=()))
    _three_frames(acc)
    per_frame = acc.compute()
    glob = acc.compute(sort="global")
    assert per_frame["convention"]["sort"] == "per_frame"
    assert glob["convention"]["sort"] == "global"
    assert per_frame["ap"]["overall"][0.5] == pytest.approx(17 / 30, abs=1e-12)
    assert glob["ap"]["overall"][0.5] == pytest.approx(0.75, abs=1e-12)
    d = per_frame["details"]["overall"][0.5]
    assert (d["num_gt"], d["num_det"], d["num_tp"], d["num_fp"]) == (4, 6, 3, 3)
    np.testing.assert_allclose(d["recall"], [0.25, 0.25, 0.5, 0.5, 0.75, 0.75])
    np.testing.assert_allclose(d["precision"], [1, 1 / 2, 2 / 3, 1 / 2, 3 / 5, 1 / 2])
    # the configured sort is the default of compute(); average_precision agrees
    acc_g = APAccumulator(EvalConfig(iou_thresholds=(0.5,), sort="global", distance_bins=()))
    _three_frames(acc_g)
    assert acc_g.compute()["ap"]["overall"][0.5] == pytest.approx(0.75)
    text = format_results(per_frame)
    assert "sort=per_frame" in text and "AP@0.50" in text and "0.5667" in text


def test_iou_at_threshold_counts_as_tp() -> None:
    # GT 2 x 1 at the origin; detection 1 x 1 inside it: IoU = 1 / 2 exactly.
    gt = t([[0.0, 0, 0, 2, 1, 1, 0]])
    det = t([[0.5, 0, 0, 1, 1, 1, 0]])
    assert average_precision([det], [[0.9]], [gt], iou_threshold=0.5) == 1.0  # >= is a TP
    assert average_precision([det], [[0.9]], [gt], iou_threshold=0.7) == 0.0


def test_iou_exactly_at_0_7_is_a_tp_as_documented() -> None:
    # GT 10 x 1, detection 7 x 1 inside it: IoU = 7 / 10, which float64 division rounds to the
    # literal 0.7. The module docstring's convention: >= in float64, a TP (OpenCOOD under NumPy
    # 1.x stores the IoU as float32(0.7) = 0.69999999 < 0.7 and calls it a FP).
    gt = t([[0.0, 0, 0, 10, 1, 1, 0]])
    det = t([[1.5, 0, 0, 7, 1, 1, 0]])
    assert float(np.float32(7 / 10)) < 0.7  # the float32 rounding the docstring describes
    assert average_precision([det], [[0.9]], [gt], iou_threshold=0.7) == 1.0


def test_matches_gt_with_highest_iou_not_first() -> None:
    # 1 m wide boxes along x.  g0 = [0, 2], g1 = [0.5, 2.5]; det A = [0.3, 2.3] (score .9):
    # IoU(A, g0) = 1.7 / 2.3 = .739, IoU(A, g1) = 1.8 / 2.2 = .818 -> A takes g1 (not g0).
    # det B = g1 (score .8): g1 gone, IoU(B, g0) = 1.5 / 2.5 = .6 < .7 -> FP.
    # flags T F, 2 GT: recall .5 .5, precision 1 .5 -> AP@0.7 = .5
    # (a "first GT above threshold" rule would give A -> g0, B -> g1, AP = 1.)
    gt = t([[1.0, 0, 0, 2, 1, 1, 0], [1.5, 0, 0, 2, 1, 1, 0]])
    det = t([[1.3, 0, 0, 2, 1, 1, 0], [1.5, 0, 0, 2, 1, 1, 0]])
    assert average_precision([det], [[0.9, 0.8]], [gt], iou_threshold=0.7) == pytest.approx(0.5)
    iou = np.array([[0.739, 0.818], [0.6, 1.0]])
    assert greedy_match(iou, np.array([0.7, 0.5])).tolist() == [[1, -1], [1, 0]]


def test_ignored_gt_and_subsets() -> None:
    # GT g1 (visible to the ego) at x=0, g2 (ego-invisible) at x=40.
    # dets: .9 on g1, .8 far away (FP), .7 on g2.
    # overall: T F T, 2 GT -> recall .5 .5 1, precision 1 .5 .667 -> AP = .5 + .5 * 2/3 = 5/6
    # subset ego_invisible (g1 ignored): the .9 detection matched g1 -> dropped; F T, 1 GT ->
    #   recall 0 1, precision 0 .5 -> AP = .5.   (counting it as FP would give 1/3.)
    gt = t([box(0), box(40)])
    det = t([box(0), box(-60), box(40)])
    scores = [0.9, 0.8, 0.7]
    invisible = torch.tensor([False, True])
    acc = APAccumulator(EvalConfig(iou_thresholds=(0.5,), distance_bins=()))
    acc.add_frame(det, scores, None, gt, None, gt_subsets={"ego_invisible": invisible})
    res = acc.compute()
    assert res["ap"]["overall"][0.5] == pytest.approx(5 / 6)
    assert res["ap"]["subset/ego_invisible"][0.5] == pytest.approx(0.5)
    sub = res["details"]["subset/ego_invisible"][0.5]
    assert (sub["num_gt"], sub["num_det"], sub["num_tp"], sub["num_fp"]) == (1, 2, 1, 1)
    # the global ignore mask does the same to every group
    acc2 = APAccumulator(EvalConfig(iou_thresholds=(0.5,), distance_bins=()))
    acc2.add_frame(det, scores, None, gt, None, gt_ignore_mask=~invisible)
    assert acc2.compute()["ap"]["overall"][0.5] == pytest.approx(0.5)
    # subsets must be consistent across frames
    with pytest.raises(ValueError, match="gt_subsets"):
        acc.add_frame(det, scores, None, gt, None)


def test_distance_bins_exclude_outside_boxes() -> None:
    # frame 1: GT at 10 m and 40 m; dets .95 at 45 m (FP), .9 at 40 m, .5 at 10 m.
    # frame 2: GT at 30.1 m; det .6 at 29.9 m (IoU 3.8/4.2 = .905: TP overall, but the det
    #          falls in bin [0, 30) and the GT in [30, 50), so it is an FP there and a miss here).
    # bin [0,30):  per_frame: f1 T(.5), f2 F(.6), 1 GT -> recall 1 1, precision 1 .5 -> AP 1
    #              global: F(.6) T(.5) -> recall 0 1, precision 0 .5 -> AP .5
    # bin [30,50): f1 F(.95) T(.9), 2 GT -> recall 0 .5, precision 0 .5 -> AP .5*.5 = .25
    # bin [50,100): no GT -> nan
    cfg = EvalConfig(iou_thresholds=(0.5,), distance_bins=((0, 30), (30, 50), (50, 100)))
    acc = APAccumulator(cfg)
    acc.add_frame(t([box(45), box(40), box(10)]), [0.95, 0.9, 0.5], None, t([box(10), box(40)]))
    acc.add_frame(t([box(29.9)]), [0.6], None, t([box(30.1)]))
    res = acc.compute()
    assert res["ap"]["distance/0-30"][0.5] == pytest.approx(1.0)
    assert res["ap"]["distance/30-50"][0.5] == pytest.approx(0.25)
    assert math.isnan(res["ap"]["distance/50-100"][0.5])
    assert acc.compute("global")["ap"]["distance/0-30"][0.5] == pytest.approx(0.5)
    # overall: f1 F(.95) T(.9) T(.5), f2 T(.6), 3 GT -> recall 0 1/3 2/3 1,
    #   precision 0 .5 2/3 .75 -> AP = (1/3)(.75 + .75 + .75) = .75
    assert res["ap"]["overall"][0.5] == pytest.approx(0.75)


def test_eval_range_corners_vs_centre() -> None:
    # range |x|, |y| <= 10. GT/det at x = 9 (l = 4, front corners at x = 11) and at the origin.
    # corners mode drops the x = 9 pair; centre mode keeps it.
    gt = t([box(0), box(9)])
    det = t([box(9), box(0)])
    for mode, n_gt in (("corners", 1), ("centre", 2)):
        cfg = EvalConfig(eval_range=(-10, -10, 10, 10), range_mode=mode, distance_bins=())
        acc = APAccumulator(cfg)
        acc.add_frame(det, [0.9, 0.8], None, gt, None)
        res = acc.compute()
        assert res["details"]["overall"][0.5]["num_gt"] == n_gt
        assert res["details"]["overall"][0.5]["num_det"] == n_gt
        assert res["ap"]["overall"][0.5] == 1.0
        assert res["convention"]["range_mode"] == mode
    with pytest.raises(ValueError, match="eval_range"):
        EvalConfig(eval_range=(10, 0, -10, 5)).validate()


def test_per_class_and_class_aware_matching() -> None:
    # GT: car (0) at A = x 0, ped (1) at B = x 40.
    # dets: .9 label ped at A, .8 label car at A, .7 label ped at B.
    # class-agnostic overall: T(.9) F(.8: A taken) T(.7) -> AP 5/6
    # class-aware overall: F(.9: wrong class) T T -> recall 0 .5 1, precision 0 .5 2/3 -> AP 2/3
    # class car: T(.8) -> 1.   class ped: F(.9) T(.7) -> recall 0 1, precision 0 .5 -> .5
    gt, gl = t([box(0), box(40)]), [0, 1]
    det, dl, sc = t([box(0), box(0), box(40)]), [1, 0, 1], [0.9, 0.8, 0.7]
    names = {0: "car", 1: "pedestrian"}
    res = {}
    for aware in (False, True):
        cfg = EvalConfig(iou_thresholds=(0.5,), class_aware=aware, class_names=names,
                         distance_bins=())  # fmt: skip
        acc = APAccumulator(cfg)
        acc.add_frame(det, sc, dl, gt, gl)
        res[aware] = acc.compute()
    assert res[False]["ap"]["overall"][0.5] == pytest.approx(5 / 6)
    assert res[True]["ap"]["overall"][0.5] == pytest.approx(2 / 3)
    for r in res.values():
        assert r["ap"]["class/car"][0.5] == pytest.approx(1.0)
        assert r["ap"]["class/pedestrian"][0.5] == pytest.approx(0.5)
        assert r["mAP"][0.5] == pytest.approx(0.75)


def test_iou_3d_mode() -> None:
    # same footprint, z shifted by h/2: BEV IoU 1, 3D IoU = (h/2) / (3h/2) = 1/3
    gt = t([box(0, h=2.0)])
    det = t([box(0, z=1.0, h=2.0)])
    assert average_precision([det], [[0.5]], [gt], 0.5, iou_mode="bev") == 1.0
    assert average_precision([det], [[0.5]], [gt], 0.5, iou_mode="3d") == 0.0
    assert average_precision([det], [[0.5]], [gt], 0.3, iou_mode="3d") == 1.0


def test_empty_frames() -> None:
    acc = APAccumulator()
    assert math.isnan(acc.compute()["ap"]["overall"][0.5])  # no frames at all
    acc.add_frame(torch.zeros(0, 7), torch.zeros(0), None, torch.zeros(0, 7))
    acc.add_frame(np.zeros((0, 7)), [], None, np.zeros((0, 7)), None)
    res = acc.compute()
    assert res["num_frames"] == 2 and math.isnan(res["ap"]["overall"][0.5])
    acc.add_frame(t([box(0)]), [0.7], None, torch.zeros(0, 7))  # det without GT -> FP
    acc.add_frame(torch.zeros(0, 7), torch.zeros(0), None, t([box(3)]))  # GT without det -> miss
    res = acc.compute()
    assert res["ap"]["overall"][0.5] == 0.0
    d = res["details"]["overall"][0.5]
    assert (d["num_gt"], d["num_det"], d["num_tp"], d["num_fp"]) == (1, 1, 0, 1)
    r = ap_from_flags(np.zeros(0), np.zeros(0), num_gt=3)
    assert r["ap"] == 0.0 and r["num_det"] == 0
    assert not any(k.startswith("class/") for k in res["ap"])  # no labels, no class groups
    # labelled empty frames: class groups exist only for classes that occurred
    lab = APAccumulator(distance_bins=())
    lab.add_frame(np.zeros((0, 7)), [], [], np.zeros((0, 7)), [])
    lab.add_frame(t([box(0)]), [0.9], [2], t([box(0)]), [2])
    assert set(lab.compute()["ap"]) == {"overall", "class/2"}
    with pytest.raises(ValueError, match="labels for every frame"):
        lab.add_frame(t([box(0)]), [0.9], None, t([box(0)]), None)


def test_bad_input_fails_early() -> None:
    acc = APAccumulator()
    with pytest.raises(ValueError, match="det_boxes"):
        acc.add_frame(torch.zeros(3, 6), torch.zeros(3), None, torch.zeros(0, 7))
    with pytest.raises(ValueError, match="det_scores"):
        acc.add_frame(torch.zeros(3, 7), torch.zeros(2), None, torch.zeros(0, 7))
    with pytest.raises(ValueError, match="iou_thresholds"):
        APAccumulator(EvalConfig(iou_thresholds=(0.0,)))
    with pytest.raises(ValueError, match="sort"):
        APAccumulator(sort="by_frame")


# ---------------------------------------------------------------------------------------------
# An independent reference: the procedure written out with shapely polygons and Python lists.
# ---------------------------------------------------------------------------------------------


def _poly(b: np.ndarray) -> Polygon:
    x, y, _, length, width, _, yaw = b
    c, s = math.cos(yaw), math.sin(yaw)
    pts = [(sx * length / 2, sy * width / 2) for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
    return Polygon([(x + c * px - s * py, y + s * px + c * py) for px, py in pts])


def _reference_ap(frames, thr: float, global_sort: bool) -> float:
    flags, all_scores, n_gt = [], [], 0
    for det, scores, gt in frames:
        n_gt += len(gt)
        remaining = [_poly(g) for g in gt]
        for i in sorted(range(len(scores)), key=lambda k: -scores[k]):
            p = _poly(det[i])
            ious = [p.intersection(q).area / p.union(q).area for q in remaining]
            if not ious or max(ious) < thr:
                flags.append(0)
            else:
                flags.append(1)
                remaining.pop(int(np.argmax(ious)))
            all_scores.append(scores[i])
    if global_sort:
        flags = [f for _, f in sorted(zip(all_scores, flags), key=lambda sf: -sf[0])]
    tp = fp = 0
    rec, prec = [], []
    for f in flags:
        tp += f
        fp += 1 - f
        rec.append(tp / n_gt)
        prec.append(tp / (tp + fp))
    rec, prec = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    return sum((rec[i] - rec[i - 1]) * prec[i] for i in range(1, len(rec)) if rec[i] != rec[i - 1])


def test_random_frames_match_reference_loop() -> None:
    rng = np.random.default_rng(2024)
    frames = []
    for _ in range(12):
        g = int(rng.integers(0, 8))
        gt = np.zeros((g, 7))
        gt[:, 0:2] = rng.uniform(-30, 30, (g, 2))
        gt[:, 3], gt[:, 4], gt[:, 5] = rng.uniform(3.5, 5, g), rng.uniform(1.6, 2.1, g), 1.6
        gt[:, 6] = rng.uniform(-math.pi, math.pi, g)
        # noisy copies of some GT plus clutter; distinct random scores (no ties)
        hit = gt[rng.uniform(size=g) < 0.8]
        noisy = hit + np.concatenate(
            [rng.normal(0, 0.5, (len(hit), 2)), np.zeros((len(hit), 4)),
             rng.normal(0, 0.2, (len(hit), 1))], axis=1)  # fmt: skip
        clutter = np.zeros((int(rng.integers(0, 4)), 7))
        clutter[:, 0:2] = rng.uniform(-30, 30, (len(clutter), 2))
        clutter[:, 3:6] = [4.0, 1.8, 1.6]
        det = np.concatenate([noisy, noisy[: len(noisy) // 3] + 0.3, clutter])
        scores = rng.uniform(0, 1, len(det))
        frames.append((det, scores, gt))
    acc = APAccumulator(EvalConfig(distance_bins=(), per_class=False))
    for det, scores, gt in frames:
        acc.add_frame(torch.tensor(det).float(), torch.tensor(scores), None, torch.tensor(gt))
    for sort in ("per_frame", "global"):
        res = acc.compute(sort)
        for thr in (0.3, 0.5, 0.7):
            ref = _reference_ap(frames, thr, sort == "global")
            assert res["ap"]["overall"][thr] == pytest.approx(ref, abs=1e-9), (sort, thr)
    # the two conventions really differ on this data
    assert acc.compute("per_frame")["ap"]["overall"][0.5] != pytest.approx(
        acc.compute("global")["ap"]["overall"][0.5], abs=1e-6
    )


def test_add_frames_batched_equals_sequential() -> None:
    rng = np.random.default_rng(77)
    frames = []
    for f in range(9):
        g = int(rng.integers(0, 10)) if f != 3 else 0
        gt = np.zeros((g, 7))
        gt[:, 0:2] = rng.uniform(-60, 60, (g, 2))
        gt[:, 3:6] = [4.2, 1.9, 1.6]
        gt[:, 6] = rng.uniform(-math.pi, math.pi, g)
        det = gt[rng.uniform(size=g) < 0.7] + rng.normal(0, 0.3, (1, 7)) * [1, 1, 0, 0, 0, 0, 1]
        det = np.concatenate([det, gt[:2] + [0.8, 0, 0, 0, 0, 0, 0]]) if f != 5 else det[:0]
        frames.append(
            {
                "det_boxes": torch.tensor(det),
                "det_scores": torch.tensor(rng.uniform(size=len(det))),
                "det_labels": torch.tensor(rng.integers(0, 2, len(det))),
                "gt_boxes": torch.tensor(gt),
                "gt_labels": torch.tensor(rng.integers(0, 2, g)),
                "gt_ignore_mask": torch.tensor(rng.uniform(size=g) < 0.1),
                "gt_subsets": {"ego_invisible": torch.tensor(rng.uniform(size=g) < 0.5)},
            }
        )
    cfg = EvalConfig(class_aware=True, eval_range=(-50, -40, 50, 40), class_names={1: "ped"})
    seq, bat = APAccumulator(cfg), APAccumulator(cfg)
    for fr in frames:
        seq.add_frame(**fr)
    bat.add_frames(frames, chunk=4)
    a, b = seq.compute(), bat.compute()
    assert a["ap"].keys() == b["ap"].keys()
    assert {"overall", "class/0", "class/ped", "subset/ego_invisible"} <= set(a["ap"])
    for name in a["ap"]:
        for thr in a["ap"][name]:
            da, db = a["details"][name][thr], b["details"][name][thr]
            assert (da["num_gt"], da["num_tp"], da["num_fp"]) == (db["num_gt"], db["num_tp"],
                                                                  db["num_fp"])  # fmt: skip
            np.testing.assert_array_equal(da["precision"], db["precision"])
    assert a["details"]["overall"][0.5]["num_tp"] >= 3  # the data exercise matching


def test_visibility_subsets() -> None:
    from v2x.perception.ap_visibility import visibility_subsets

    # 3 agents (ego = 0, agent 2 is padding), 5 boxes
    vis = np.array(
        [
            [5, 0, 0, -1, 2],  # ego: sees box 0 and 4 (>= 2 points), not 1, 2; box 3 unknown
            [0, 3, 0, 9, 0],  # agent 1 sees box 1 and 3
            [9, 9, 9, 9, 9],  # padding row: must not count
        ]
    )
    sub = visibility_subsets(vis, ego_index=0, min_points=2, agent_mask=[True, True, False])
    assert sub["ego_visible"].tolist() == [True, False, False, False, True]
    assert sub["ego_invisible"].tolist() == [False, True, True, False, False]
    assert sub["ego_invisible_coop_visible"].tolist() == [False, True, False, False, False]
    with pytest.raises(ValueError, match="visibility"):
        visibility_subsets(np.zeros(4))


def _random_labelled_frames(rng: np.random.Generator, n: int, classes: int) -> list[dict]:
    frames = []
    for _ in range(n):
        g = int(rng.integers(0, 8))
        gt = np.zeros((g, 7))
        gt[:, 0:2] = rng.uniform(-45, 45, (g, 2))
        gt[:, 3:6] = [4.2, 1.9, 1.6]
        gt[:, 6] = rng.uniform(-math.pi, math.pi, g)
        det = gt[rng.uniform(size=g) < 0.7] + rng.normal(0, 0.4, (1, 7)) * [1, 1, 0, 0, 0, 0, 1]
        det = np.concatenate([det, gt[:2] + [0.9, 0, 0, 0, 0, 0, 0]])
        frames.append(
            {
                "det_boxes": torch.tensor(det),
                "det_scores": torch.tensor(rng.uniform(size=len(det))),
                "det_labels": torch.tensor(rng.integers(0, classes, len(det))),
                "gt_boxes": torch.tensor(gt),
                "gt_labels": torch.tensor(rng.integers(0, classes, g)),
                "gt_ignore_mask": torch.tensor(rng.uniform(size=g) < 0.15),
                "gt_subsets": {"ego_invisible": torch.tensor(rng.uniform(size=g) < 0.5)},
            }
        )
    return frames


def _same_results(a: dict, b: dict) -> None:
    assert a["num_frames"] == b["num_frames"]
    assert a["ap"].keys() == b["ap"].keys()
    for name in a["ap"]:
        for thr in a["ap"][name]:
            da, db = a["details"][name][thr], b["details"][name][thr]
            for key in ("num_gt", "num_det", "num_tp", "num_fp"):
                assert da[key] == db[key], (name, thr, key)
            np.testing.assert_array_equal(da["precision"], db["precision"])
            np.testing.assert_array_equal(da["recall"], db["recall"])
            assert a["ap"][name][thr] == pytest.approx(b["ap"][name][thr], nan_ok=True, abs=0)


def test_replicas_equal_separate_accumulation_whatever_their_history() -> None:
    """``add_frames(replicas=...)`` (a sweep's conditions with identical detections) must give
    each replica exactly what adding the frames to it alone gives, even when the replicas saw
    different frames before (their class groups differ)."""
    rng = np.random.default_rng(5)
    cfg = EvalConfig(eval_range=(-40, -40, 40, 40), class_names={0: "car"})
    history = [_random_labelled_frames(rng, 4, 6), [], _random_labelled_frames(rng, 4, 2)]
    shared = _random_labelled_frames(rng, 6, 3)
    for frame in history[2]:  # shift this history's labels to classes 3 and 4
        frame["det_labels"] = frame["det_labels"] + 3
        frame["gt_labels"] = frame["gt_labels"] + 3
    alone = [APAccumulator(cfg) for _ in history]
    together = [APAccumulator(cfg) for _ in history]
    for acc_a, acc_t, past in zip(alone, together, history, strict=True):
        acc_a.add_frames(past)
        acc_t.add_frames(past)
        acc_a.add_frames(shared, chunk=4)
    together[0].add_frames(shared, chunk=4, replicas=together[1:])
    for acc_a, acc_t in zip(alone, together, strict=True):
        _same_results(acc_a.compute(), acc_t.compute())
    # the histories give the accumulators different class groups
    keys = [set(acc.compute()["ap"]) for acc in together]
    assert "class/5" in keys[0] and "class/5" not in keys[1] | keys[2]
    assert "class/4" in keys[2] and "class/4" not in keys[1]
    with pytest.raises(ValueError, match="same EvalConfig"):
        together[0].add_frames(shared, replicas=[APAccumulator(EvalConfig(sort="global"))])


def test_class_group_matches_class_agnostically_within_the_group() -> None:
    # GT: car (0) at x 0, truck (1) at x 20, pedestrian (2) at x 40.
    # dets: .9 labelled truck on the car, .8 labelled car on the truck, .7 labelled car on the
    # pedestrian, .6 labelled pedestrian on the pedestrian.
    # vehicle group {0, 1}: dets .9 .8 .7 vs GT car+truck: T T F -> recall .5 1 1,
    # precision 1 1 2/3 -> AP 1; the pedestrian det (.6) is outside the group.
    # per class car: dets .8 (on truck: F), .7 (on ped: F) vs GT car -> AP 0.
    # ego_invisible = {truck}: .9 hits the ignored car -> dropped; .8 T; .7 F -> AP 1.
    gt, gl = t([box(0), box(20), box(40)]), [0, 1, 2]
    det, dl, sc = t([box(0), box(20), box(40), box(40)]), [1, 0, 0, 2], [0.9, 0.8, 0.7, 0.6]
    cfg = EvalConfig(iou_thresholds=(0.5,), class_names={0: "car", 1: "truck", 2: "pedestrian"},
                     class_groups={"vehicle": (0, 1)}, distance_bins=())  # fmt: skip
    acc = APAccumulator(cfg)
    acc.add_frame(det, sc, dl, gt, gl, gt_subsets={"ego_invisible": np.array([False, True, False])})
    res = acc.compute()
    assert res["ap"]["group/vehicle"][0.5] == pytest.approx(1.0)
    assert res["details"]["group/vehicle"][0.5]["num_gt"] == 2
    assert res["details"]["group/vehicle"][0.5]["num_fp"] == 1
    assert res["ap"]["class/car"][0.5] == pytest.approx(0.0)
    assert res["ap"]["group/vehicle/ego_invisible"][0.5] == pytest.approx(1.0)
    assert res["details"]["group/vehicle/ego_invisible"][0.5]["num_gt"] == 1
    assert res["details"]["group/vehicle/ego_invisible"][0.5]["num_det"] == 2
    # the group does not enter mAP (the mean over class/* groups)
    assert res["mAP"][0.5] == pytest.approx(np.mean([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="class_groups"):
        EvalConfig(class_groups={"a/b": (0,)}).validate()


def _random_frames(rng: np.random.Generator, n: int) -> list[dict]:
    frames = []
    for _ in range(n):
        g = int(rng.integers(0, 4))
        gt = [box(float(x), float(y)) for x, y in rng.uniform(-40, 40, (g, 2))]
        det = [list(b) for b in gt if rng.random() < 0.7]
        for b in det:
            b[0] += float(rng.normal(0, 0.8))
        det += [
            box(float(x), float(y)) for x, y in rng.uniform(-40, 40, (int(rng.integers(0, 3)), 2))
        ]
        frames.append({"det_boxes": t(det), "det_scores": rng.random(len(det)), "gt_boxes": t(gt)})
    return frames


@pytest.mark.parametrize("sort", ["per_frame", "global"])
def test_bootstrap_interval_equals_an_independent_resampling_loop(sort: str) -> None:
    rng = np.random.default_rng(3)
    frames = _random_frames(rng, 40)
    acc = APAccumulator(EvalConfig(iou_thresholds=(0.5,), distance_bins=(), per_class=False))
    acc.add_frames(frames)
    res = acc.compute(sort=sort, bootstrap=200, seed=11)
    # oracle: the same resamples (numpy's generator with the same seed, each in dataset order)
    # through average_precision, one frame list per resample
    draws = np.sort(
        np.random.default_rng(11).integers(0, len(frames), size=(200, len(frames))), axis=1
    )
    values = []
    for idx in draws:
        picked = [frames[i] for i in idx]
        if sum(f["gt_boxes"].shape[0] for f in picked) == 0:
            continue
        values.append(average_precision([f["det_boxes"] for f in picked],
                                        [f["det_scores"] for f in picked],
                                        [f["gt_boxes"] for f in picked], 0.5, sort=sort))  # fmt: skip
    lo, hi = np.quantile(values, [0.025, 0.975])
    assert res["ci"]["overall"][0.5] == pytest.approx((lo, hi), abs=1e-12)
    assert lo < res["ap"]["overall"][0.5] < hi
    assert res["bootstrap"] == {
        "resamples": 200, "seed": 11, "confidence": 0.95, "unit": "frame", "units": 40
    }  # fmt: skip
    # same seed, same interval; another seed, another interval
    assert acc.compute(sort=sort, bootstrap=200, seed=11)["ci"] == res["ci"]
    assert acc.compute(sort=sort, bootstrap=200, seed=12)["ci"] != res["ci"]
    assert "ci" not in acc.compute(sort=sort)


def test_sequence_bootstrap_resamples_whole_towns() -> None:
    """Sequences (towns) are resampled whole: the interval equals an independent loop over the
    same cluster draws, and when a town's frames are copies of each other the interval is
    wider than the frame bootstrap's (which would treat the copies as independent)."""
    rng = np.random.default_rng(5)
    towns = [_random_frames(rng, 1) * 5 for _ in range(12)]  # 12 towns x 5 identical frames
    frames = [dict(f, sequence=f"town{t}") for t, town in enumerate(towns) for f in town]
    acc = APAccumulator(EvalConfig(iou_thresholds=(0.5,), distance_bins=(), per_class=False))
    acc.add_frames(frames)
    res = acc.compute(bootstrap=300, seed=2, bootstrap_unit="sequence")
    assert res["bootstrap"]["unit"] == "sequence"
    assert res["bootstrap"]["units"] == 12  # the towns each resample draws from
    assert acc.compute(bootstrap=5, bootstrap_unit="frame")["bootstrap"]["units"] == 60
    # frames come in sequences: the default (auto) is the sequence bootstrap
    assert acc.compute(bootstrap=300, seed=2)["ci"] == res["ci"]
    picks = np.sort(np.random.default_rng(2).integers(0, 12, size=(300, 12)), axis=1)
    values = []
    for row in picks:
        picked = [f for t in row for f in towns[t]]
        if sum(f["gt_boxes"].shape[0] for f in picked) == 0:
            continue
        values.append(average_precision([f["det_boxes"] for f in picked],
                                        [f["det_scores"] for f in picked],
                                        [f["gt_boxes"] for f in picked], 0.5))  # fmt: skip
    lo, hi = np.quantile(values, [0.025, 0.975])
    assert res["ci"]["overall"][0.5] == pytest.approx((lo, hi), abs=1e-12)
    f_lo, f_hi = acc.compute(bootstrap=300, seed=2, bootstrap_unit="frame")["ci"]["overall"][0.5]
    assert hi - lo > 1.3 * (f_hi - f_lo)
    plain = APAccumulator(EvalConfig(iou_thresholds=(0.5,), distance_bins=(), per_class=False))
    plain.add_frames(_random_frames(rng, 3))
    with pytest.raises(
        ValueError, match="bootstrap_unit: 'sequence' needs a sequence for every frame, 3 of 3"
    ):
        plain.compute(bootstrap=10, bootstrap_unit="sequence")
    assert plain.compute(bootstrap=10)["bootstrap"]["unit"] == "frame"  # auto: no sequences
    with pytest.raises(
        ValueError, match="bootstrap_unit: expected one of auto, sequence, frame, got 'town'"
    ):
        plain.compute(bootstrap=10, bootstrap_unit="town")


def test_a_pickled_accumulator_holds_the_same_records_packed() -> None:
    """An accumulator sent between processes (a sweep's scoring process, its AP workers)
    comes back with every record as it was (values, dtypes, lengths, empty records included),
    the same digest and the same results, each threshold's records pickled as one array."""
    import pickle

    rng = np.random.default_rng(4)
    acc = APAccumulator(EvalConfig(class_groups={"vehicle": (0, 1)}))
    for f in range(40):
        g, d = int(rng.integers(1, 8)), int(rng.integers(0, 12))  # frames without detections too
        gt = np.array([box(float(x), float(y)) for x, y in rng.uniform(-40, 40, (g, 2))])
        det = gt[rng.integers(0, g, d)] + rng.normal(0, 0.4, (d, 7)) * [1, 1, 0, 0, 0, 0, 0.1]
        acc.add_frame(
            det.reshape(-1, 7), rng.uniform(0, 1, d), rng.integers(0, 2, d), gt,
            rng.integers(0, 2, g), gt_subsets={"far": rng.uniform(size=g) < 0.3}, sequence=f // 8,
        )  # fmt: skip
    blob = pickle.dumps(acc)
    back = pickle.loads(blob)
    assert set(back._groups) == set(acc._groups)
    for name, store in acc._groups.items():
        got = back._groups[name]
        assert (got.num_gt, got.frame_gt, got.frame_index) == (
            store.num_gt, store.frame_gt, store.frame_index
        )  # fmt: skip
        for mine, theirs in ((store.tp, got.tp), (store.scores, got.scores)):
            assert len(theirs) == len(mine)
            for parts, back_parts in zip(mine, theirs, strict=True):
                assert len(back_parts) == len(parts) > 0
                for a, b in zip(parts, back_parts, strict=True):
                    assert a.dtype == b.dtype and a.shape == b.shape
                    np.testing.assert_array_equal(a, b)
    assert back.state_digest() == acc.state_digest()
    np.testing.assert_equal(back.compute(bootstrap=100, seed=2), acc.compute(bootstrap=100, seed=2))
    assert pickle.loads(pickle.dumps(back)).state_digest() == acc.state_digest()  # again
    # packed: one array per threshold and list, not one per record
    state = acc._groups["overall"].__getstate__()
    assert all(isinstance(p, tuple) and len(p) == 2 for p in state["tp"] + state["scores"])


def test_records_of_mixed_dtypes_pickle_as_they_are() -> None:
    from v2x.perception.ap_records import _packed, _unpacked

    mixed = [np.zeros(2, np.int8), np.ones(3, np.float64)]
    assert _packed(mixed) is mixed and _unpacked(_packed(mixed)) is mixed
    assert _packed([]) == [] and _unpacked([]) == []
    parts = [np.arange(3, dtype=np.float32), np.zeros(0, np.float32), np.ones(1, np.float32)]
    back = _unpacked(_packed(parts))
    assert [b.dtype for b in back] == [np.float32] * 3 and [len(b) for b in back] == [3, 0, 1]
    for a, b in zip(parts, back, strict=True):
        np.testing.assert_array_equal(a, b)


def test_accumulators_of_consecutive_frames_joined_equal_one_that_saw_them_all() -> None:
    """``extend`` (a sweep group's partial accumulators, one per frame batch, joined in batch
    order): the same state digest, groups and results, bootstrap intervals over sequences
    included, as one accumulator given each batch in turn (``add_frames`` per batch, as a sweep
    scores them in one process); classes first seen in a later part or absent from one, and a
    part with no frames; another config, labels or subsets are refused."""
    rng = np.random.default_rng(11)
    cfg = EvalConfig(eval_range=(-40, -40, 40, 40), class_names={0: "car"},
                     class_groups={"vehicle": (0, 1)})  # fmt: skip
    parts = [_random_labelled_frames(rng, n, c) for n, c in ((5, 2), (0, 2), (7, 4), (3, 3))]
    for i, part in enumerate(parts):
        for j, frame in enumerate(part):
            frame["sequence"] = (i + j) // 3
    whole = APAccumulator(cfg)
    for part in parts:
        whole.add_frames(part)
    pieces = [APAccumulator(cfg) for _ in parts]
    for acc, part in zip(pieces, parts, strict=True):
        acc.add_frames(part)
    joined = APAccumulator(cfg)
    for acc in pieces:
        joined.extend(acc)
    assert joined.state_digest() == whole.state_digest()
    assert list(joined._groups) == list(whole._groups)  # groups in order of first appearance
    _same_results(joined.compute(), whole.compute())
    np.testing.assert_equal(
        joined.compute(bootstrap=50, seed=3, bootstrap_unit="sequence"),
        whole.compute(bootstrap=50, seed=3, bootstrap_unit="sequence"),
    )
    first = pieces[0]
    first.extend(pieces[1])  # an empty part changes nothing
    for acc in pieces[2:]:
        first.extend(acc)
    assert first.state_digest() == whole.state_digest()
    with pytest.raises(ValueError, match="same EvalConfig"):
        joined.extend(APAccumulator(EvalConfig(sort="global")))
    unlabelled = APAccumulator(cfg)
    unlabelled.add_frame(np.zeros((0, 7)), np.zeros(0), None, np.zeros((0, 7)), None,
                         gt_subsets={"ego_invisible": np.zeros(0, bool)})  # fmt: skip
    with pytest.raises(ValueError, match="labels for every frame or for none"):
        joined.extend(unlabelled)
    other_subsets = APAccumulator(cfg)
    other_subsets.add_frames(_random_labelled_frames(rng, 1, 2))
    other_subsets._subset_names = ("far",)
    with pytest.raises(ValueError, match="same subsets"):
        APAccumulator(cfg).extend(unlabelled) or joined.extend(other_subsets)
