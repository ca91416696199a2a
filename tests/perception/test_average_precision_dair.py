"""DAIR-V2X's official evaluator (``EvalConfig.procedure="dair_v2x"``) against an independent
re-implementation of its published code, hand-computed cases and its bootstrap.

The oracle below is AIR-THU/DAIR-V2X ``v2x/v2x_utils/eval_utils.py`` written out again:
``compute_type`` (matching from the ground-truth side, ``cmp``-sorted predictions,
``iou >= mx``), ``compute_ap`` (global score sort, envelope, sum over recall changes with no
(0, 0) start point) and ``box3d_iou`` (BEV polygon intersection x z-overlap over the union
volume), with shapely polygons for the BEV geometry instead of its Sutherland-Hodgman clipping.
"""

from __future__ import annotations

import math
from functools import cmp_to_key

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from v2x.perception.ap_config import EvalConfig
from v2x.perception.ap_curve import ap_from_flags, dair_ap
from v2x.perception.ap_resample import resampled_aps
from v2x.perception.average_precision import APAccumulator, average_precision, format_results

THRESHOLDS = (0.3, 0.5, 0.7)


# ---------------------------------------------------------------------------------------------
# The oracle: DAIR-V2X eval_utils.py, compute_type + compute_ap (+ box3d_iou), from its code.
# ---------------------------------------------------------------------------------------------


def _footprint(b) -> Polygon:
    x, y, _, length, width, _, yaw = (float(v) for v in b)
    c, s = math.cos(yaw), math.sin(yaw)
    pts = [(sx * length / 2, sy * width / 2) for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
    return Polygon([(x + c * px - s * py, y + s * px + c * py) for px, py in pts])


def _box3d_iou(gt, pred) -> tuple[float, float]:
    """``box3d_iou``: (3D IoU, BEV IoU) of two (x, y, z, l, w, h, yaw) boxes."""
    p, q = _footprint(gt), _footprint(pred)
    inter_area = p.intersection(q).area
    iou_2d = inter_area / (p.area + q.area - inter_area)
    zmax = min(gt[2] + gt[5] / 2, pred[2] + pred[5] / 2)
    zmin = max(gt[2] - gt[5] / 2, pred[2] - pred[5] / 2)
    inter_vol = inter_area * max(0.0, zmax - zmin)
    vol1, vol2 = gt[3] * gt[4] * gt[5], pred[3] * pred[4] * pred[5]
    return inter_vol / (vol1 + vol2 - inter_vol), iou_2d


def _cmp(pred1, pred2) -> int:
    if pred1["score"] > pred2["score"]:
        return -1
    elif pred1["score"] < pred2["score"]:
        return 1
    return 0


def _compute_type(gt_boxes, pred_boxes, pred_scores, iou_threshold, view):
    """``compute_type`` of one frame (class filtering done by the caller)."""
    gt_annos = [{"box": b} for b in gt_boxes]
    pred_annos = [{"box": b, "score": s} for b, s in zip(pred_boxes, pred_scores, strict=True)]
    pred_annos = sorted(pred_annos, key=cmp_to_key(_cmp))
    result_pred_annos = []
    for gt_anno in gt_annos:
        mx = iou_threshold
        mx_pred = None
        for i in range(len(pred_annos)):
            iou, iou_2d = _box3d_iou(gt_anno["box"], pred_annos[i]["box"])
            if view == "bev":
                iou = iou_2d
            if iou >= mx:
                mx = iou
                mx_pred = i
        if mx_pred is not None:
            result_pred_annos.append(pred_annos[mx_pred])
            del pred_annos[mx_pred]
            result_pred_annos[-1]["type"] = "tp"
    for pred_anno in pred_annos:
        pred_anno["type"] = "fp"
        result_pred_annos.append(pred_anno)
    return result_pred_annos, len(gt_annos)


def _compute_ap(pred_annos, num_gt) -> float:
    """``compute_ap``."""
    pred_annos = sorted(pred_annos, key=cmp_to_key(_cmp))
    num_tp = np.zeros(len(pred_annos))
    for i in range(len(pred_annos)):
        num_tp[i] = 0 if i == 0 else num_tp[i - 1]
        if pred_annos[i]["type"] == "tp":
            num_tp[i] += 1
    precision = num_tp / np.arange(1, len(pred_annos) + 1)
    recall = num_tp / num_gt
    for i in range(len(pred_annos) - 1, 0, -1):
        precision[i - 1] = max(precision[i], precision[i - 1])
    index = np.where(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[index + 1] - recall[index]) * precision[index + 1]))


def _dair_oracle(frames, thr: float, view: str = "bev", members=None) -> float:
    """``Evaluator.add_frame`` over the frames then ``compute_ap`` (``members``: the labels of
    the super-class evaluated, ``build_label_list``; ``None``: every box)."""
    preds, num_gt = [], 0
    for f in frames:
        det, sc, gt = f["det_boxes"], f["det_scores"], f["gt_boxes"]
        if members is not None:
            keep_d = np.isin(f["det_labels"], members)
            det, sc, gt = det[keep_d], sc[keep_d], gt[np.isin(f["gt_labels"], members)]
        result, n = _compute_type(list(gt), list(det), list(sc), thr, view)
        preds += result
        num_gt += n
    return _compute_ap(preds, num_gt) if num_gt else math.nan


# ---------------------------------------------------------------------------------------------
# Random frame sets
# ---------------------------------------------------------------------------------------------


def _random_frames(rng: np.random.Generator, n: int, ties: bool, classes: int = 0) -> list[dict]:
    """Frames with empty ones, frames without GT or without detections, rotated boxes, noisy and
    duplicated detections (IoU ties) and clutter; ``ties``: scores rounded to 0.1."""
    frames = []
    for _ in range(n):
        kind = rng.random()
        g = 0 if kind < 0.15 else int(rng.integers(1, 7))
        gt = np.zeros((g, 7))
        gt[:, 0:2] = rng.uniform(-25, 25, (g, 2))
        gt[:, 2] = rng.normal(0, 0.2, g)
        gt[:, 3], gt[:, 4], gt[:, 5] = rng.uniform(3.5, 5, g), rng.uniform(1.6, 2.1, g), 1.6
        gt[:, 6] = rng.uniform(-math.pi, math.pi, g)
        hit = gt[rng.random(g) < 0.8]
        noisy = hit.copy()
        noisy[:, 0:2] += rng.normal(0, 0.4, (len(hit), 2))
        noisy[:, 2] += rng.normal(0, 0.3, len(hit))
        noisy[:, 6] += rng.normal(0, 0.15, len(hit))
        dup = noisy[rng.random(len(noisy)) < 0.3]  # exact duplicates: equal IoUs
        near = noisy[: len(noisy) // 2].copy()
        near[:, 0] += rng.normal(0, 1.0, len(near))
        clutter = np.zeros((int(rng.integers(0, 4)), 7))
        clutter[:, 0:2] = rng.uniform(-25, 25, (len(clutter), 2))
        clutter[:, 3:6] = [4.0, 1.8, 1.6]
        clutter[:, 6] = rng.uniform(-math.pi, math.pi, len(clutter))
        det = np.concatenate([noisy, dup, near, clutter])
        if kind > 0.9:
            det = det[:0]  # GT (maybe) but no detection
        det = det[rng.permutation(len(det))]
        scores = rng.random(len(det))
        if ties:
            scores = np.round(scores, 1)
        frame = {"det_boxes": det, "det_scores": scores, "gt_boxes": gt}
        if classes:
            frame["det_labels"] = rng.integers(0, classes, len(det))
            frame["gt_labels"] = rng.integers(0, classes, g)
        frames.append(frame)
    return frames


def _dair_config(**kw) -> EvalConfig:
    fields = {"iou_thresholds": THRESHOLDS, "distance_bins": (), "per_class": False, **kw}
    return EvalConfig(sort="global", procedure="dair_v2x", **fields)


@pytest.mark.parametrize("view", ["bev", "3d"])
def test_random_frame_sets_equal_the_dair_oracle(view: str) -> None:
    """60 random frame sets (3 to 20 frames, half with tied scores) at three thresholds."""
    rng = np.random.default_rng(11 if view == "bev" else 12)
    worst, compared, differs = 0.0, 0, 0
    for trial in range(60):
        frames = _random_frames(rng, int(rng.integers(3, 21)), ties=trial % 2 == 1)
        acc = APAccumulator(_dair_config(iou_mode=view))
        acc.add_frames(frames)
        res = acc.compute()
        opencood = APAccumulator(
            EvalConfig(
                iou_thresholds=THRESHOLDS,
                iou_mode=view,
                sort="global",
                distance_bins=(),
                per_class=False,
            )  # fmt: skip
        )
        opencood.add_frames(frames)
        other = opencood.compute()["ap"]["overall"]
        for thr in THRESHOLDS:
            want = _dair_oracle(frames, thr, view)
            got = res["ap"]["overall"][thr]
            if math.isnan(want):
                assert math.isnan(got)
                continue
            compared += 1
            worst = max(worst, abs(got - want))
            assert got == pytest.approx(want, abs=1e-12), (trial, thr)
            differs += abs(other[thr] - got) > 1e-6
    assert compared > 150 and worst <= 1e-12
    assert differs > compared // 2  # the two procedures really differ on this data


def test_class_groups_give_dair_super_classes() -> None:
    """DAIR's ``car`` super-class (car, van, truck, bus: labels 0-3 here) as a class group
    equals the oracle's ``build_label_list`` filtering."""
    rng = np.random.default_rng(5)
    frames = _random_frames(rng, 15, ties=True, classes=6)
    acc = APAccumulator(_dair_config(class_groups={"car": (0, 1, 2, 3)}))
    acc.add_frames(frames)
    res = acc.compute()
    for thr in THRESHOLDS:
        want = _dair_oracle(frames, thr, "bev", members=(0, 1, 2, 3))
        assert res["ap"]["group/car"][thr] == pytest.approx(want, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Hand cases
# ---------------------------------------------------------------------------------------------


def _box(x: float, y: float = 0.0) -> list[float]:
    return [x, y, 0.0, 4.0, 2.0, 1.5, 0.0]


def _frame(det, scores, gt) -> dict:
    return {
        "det_boxes": np.array(det, dtype=np.float64).reshape(-1, 7),
        "det_scores": np.array(scores, dtype=np.float64),
        "gt_boxes": np.array(gt, dtype=np.float64).reshape(-1, 7),
    }


def _ap(frames, procedure: str, thr: float = 0.5) -> float:
    kw = {"sort": "global", "procedure": procedure}
    return average_precision(
        [f["det_boxes"] for f in frames], [f["det_scores"] for f in frames],
        [f["gt_boxes"] for f in frames], thr, **kw,
    )  # fmt: skip


def test_one_gt_one_perfect_detection_gives_zero() -> None:
    # recall [1]: no recall change after the first detection, nothing summed (VOC: 1)
    frames = [_frame([_box(0)], [0.9], [_box(0)])]
    assert _ap(frames, "dair_v2x") == 0.0
    assert _ap(frames, "opencood") == 1.0
    assert _dair_oracle(frames, 0.5) == 0.0
    # two GT, each found by a detection (scores .9, .8): recall .5, 1 -> (1 - .5) * 1 = .5
    two = [_frame([_box(0), _box(20)], [0.9, 0.8], [_box(0), _box(20)])]
    assert _ap(two, "dair_v2x") == 0.5 and _ap(two, "opencood") == 1.0


def test_two_gt_case_on_paper() -> None:
    """GT g0 (x 0), g1 (x 20). Detections A .9 and B .8 both exactly on g0, C .7 far away, D .6
    on g1 (input order C, A, D, B).

    DAIR: g0 takes the *later* of its equal-IoU detections in score order: B; g1 takes D.
      A and C are FP. Global order A(F) B(T) C(F) D(T): cumTP 0 1 1 2, precision 0 1/2 1/3 1/2,
      envelope 1/2 1/2 1/2 1/2, recall 0 .5 .5 1; changes at 0->.5 and .5->1:
      AP = .5 * 1/2 + .5 * 1/2 = 0.5.
    OpenCOOD: A takes g0 (T), B F, C F, D T: recall .5 .5 .5 1, precision 1 1/2 1/3 1/2,
      VOC AP = .5 * 1 + .5 * 1/2 = 0.75.
    """
    frames = [_frame([_box(60), _box(0), _box(20), _box(0)], [0.7, 0.9, 0.6, 0.8],
                     [_box(0), _box(20)])]  # fmt: skip
    acc = APAccumulator(_dair_config())
    acc.add_frames(frames)
    res = acc.compute()
    assert res["ap"]["overall"][0.5] == 0.5
    d = res["details"]["overall"][0.5]
    assert (d["num_gt"], d["num_det"], d["num_tp"], d["num_fp"]) == (2, 4, 2, 2)
    np.testing.assert_array_equal(d["recall"], [0, 0.5, 0.5, 1])
    assert _ap(frames, "opencood") == 0.75
    assert _dair_oracle(frames, 0.5) == 0.5


def test_equal_scores_list_a_frames_true_positives_first() -> None:
    """Frame 1: GT g0, P .9 on it. Frame 2: GT g1, F .8 far (given first), T .8 on g1.
    DAIR lists frame 2 as T, F (true positives first), its stable global sort keeps that:
    flags T T F, recall .5 1 1 -> AP = .5 * 1 = 0.5 (F before T would give .5 * 2/3)."""
    frames = [
        _frame([_box(0)], [0.9], [_box(0)]),
        _frame([_box(-40), _box(10)], [0.8, 0.8], [_box(10)]),
    ]
    assert _ap(frames, "dair_v2x") == 0.5
    assert _dair_oracle(frames, 0.5) == 0.5


def test_dair_ap_by_hand_and_edge_cases() -> None:
    # T F T F, 2 GT: recall .5 .5 1 1, precision 1 1/2 2/3 1/2 -> envelope 1 2/3 2/3 1/2;
    # one recall change (index 1 -> 2): AP = .5 * 2/3
    ap, env = dair_ap(np.array([0.5, 0.5, 1, 1]), np.array([1, 1 / 2, 2 / 3, 1 / 2]))
    assert ap == pytest.approx(1 / 3, abs=1e-15)
    np.testing.assert_array_equal(env, [1, 2 / 3, 2 / 3, 1 / 2])
    assert dair_ap(np.zeros(0), np.zeros(0))[0] == 0.0
    r = ap_from_flags(np.zeros(0), np.zeros(0), 3, "global", "dair_v2x")
    assert r["ap"] == 0.0  # GT but no detection
    assert math.isnan(ap_from_flags([1], [0.5], 0, "global", "dair_v2x")["ap"])  # no GT
    acc = APAccumulator(_dair_config())
    acc.add_frames([_frame([], [], []), _frame([_box(0)], [0.3], []), _frame([], [], [_box(5)])])
    res = acc.compute()
    assert res["ap"]["overall"][0.5] == 0.0
    d = res["details"]["overall"][0.5]
    assert (d["num_gt"], d["num_det"], d["num_tp"], d["num_fp"]) == (1, 1, 0, 1)


# ---------------------------------------------------------------------------------------------
# Configuration and reporting
# ---------------------------------------------------------------------------------------------


def test_the_procedure_is_a_checked_config_field_reported_with_every_ap() -> None:
    with pytest.raises(
        ValueError,
        match=r"^EvalConfig\.procedure: expected one of opencood, dair_v2x, got 'dair'$",
    ):
        EvalConfig(procedure="dair", sort="global").validate()
    with pytest.raises(ValueError, match=r"EvalConfig\.sort: procedure 'dair_v2x' sorts all "
                       r"detections by score globally .*expected 'global', got 'per_frame'"):  # fmt: skip
        EvalConfig(procedure="dair_v2x").validate()
    acc = APAccumulator(_dair_config())
    acc.add_frames([_frame([_box(0)], [0.9], [_box(0)])])
    with pytest.raises(ValueError, match="sort: procedure 'dair_v2x'"):
        acc.compute(sort="per_frame")
    with pytest.raises(ValueError, match="procedure"):
        ap_from_flags([1], [0.5], 1, "per_frame", "dair_v2x")
    res = acc.compute()
    conv = res["convention"]
    assert conv["procedure"].startswith("dair-v2x (GT-side") and conv["sort"] == "global"
    assert conv["ap"].startswith("dair-v2x") and "no (0, 0) start point" in conv["ap"]
    assert all("procedure=dair-v2x" in line for line in format_results(res).splitlines())
    default = EvalConfig().convention()
    assert default["procedure"].startswith("opencood-greedy") and default["ap"] == "voc-all-point"
    assert EvalConfig().procedure == "opencood"
    # the convention keys results: another procedure, another convention and state digest
    other = APAccumulator(
        EvalConfig(iou_thresholds=THRESHOLDS, sort="global", distance_bins=(), per_class=False)
    )
    other.add_frames([_frame([_box(0)], [0.9], [_box(0)])])
    assert other.compute()["convention"] != conv
    assert other.state_digest() != acc.state_digest()


# ---------------------------------------------------------------------------------------------
# Bootstrap intervals
# ---------------------------------------------------------------------------------------------


def test_dair_bootstrap_interval_equals_an_independent_resampling_loop() -> None:
    rng = np.random.default_rng(21)
    frames = _random_frames(rng, 30, ties=True)
    acc = APAccumulator(_dair_config(iou_thresholds=(0.5,)))
    acc.add_frames(frames)
    res = acc.compute(bootstrap=150, seed=4)
    # oracle: the same resamples (numpy's generator, each in dataset order), each scored by the
    # DAIR re-implementation above
    draws = np.sort(np.random.default_rng(4).integers(0, 30, size=(150, 30)), axis=1)
    values = [_dair_oracle([frames[i] for i in idx], 0.5) for idx in draws]
    values = [v for v in values if not math.isnan(v)]
    lo, hi = np.quantile(values, [0.025, 0.975])
    assert res["ci"]["overall"][0.5] == pytest.approx((lo, hi), abs=1e-12)
    assert lo < res["ap"]["overall"][0.5] < hi
    dist = acc.bootstrap_distribution("overall", 0.5, 150, seed=4)
    np.testing.assert_allclose(dist, values, rtol=0, atol=1e-12)
    # the interval of the OpenCOOD procedure on the same frames is another one
    glob = APAccumulator(
        EvalConfig(iou_thresholds=(0.5,), sort="global", distance_bins=(), per_class=False)
    )
    glob.add_frames(frames)
    assert glob.compute(bootstrap=150, seed=4)["ci"] != res["ci"]


@pytest.mark.parametrize("ragged", [False, True])
def test_dair_resampled_aps_equal_ap_from_flags_per_resample_bitwise(ragged: bool) -> None:
    rng = np.random.default_rng(8)
    lengths = rng.integers(0, 30, 25)
    lengths[rng.random(25) < 0.2] = 0
    frame_gt = rng.integers(0, 8, 25)
    frame_gt[rng.random(25) < 0.3] = 0
    tp = (rng.random(int(lengths.sum())) < 0.6).astype(np.int8)
    scores = np.round(rng.random(tp.size), 1)  # ties
    if ragged:
        draws = [np.sort(rng.integers(0, 25, int(rng.integers(1, 40)))) for _ in range(200)]
    else:
        draws = np.sort(rng.integers(0, 25, size=(200, 25)), axis=1)
    offsets = np.cumsum(lengths) - lengths
    want = []
    for idx in draws:
        if frame_gt[idx].sum() == 0:
            continue
        pos = np.concatenate([np.arange(offsets[i], offsets[i] + lengths[i]) for i in idx])
        pos = pos.astype(np.int64)
        want.append(ap_from_flags(tp[pos], scores[pos], int(frame_gt[idx].sum()), "global",
                                  "dair_v2x")["ap"])  # fmt: skip
    got = resampled_aps(tp, scores, lengths, frame_gt, draws, "global", "dair_v2x")
    assert got.tobytes() == np.asarray(want, dtype=np.float64).tobytes()
    with pytest.raises(ValueError, match="procedure"):
        resampled_aps(tp, scores, lengths, frame_gt, draws, "per_frame", "dair_v2x")


# ---------------------------------------------------------------------------------------------
# The range filter: DAIR-V2X's RectFilter (v2x_utils: range2box, point_in_box, above_plane,
# isInSide), transcribed as plain geometry: a box is kept when any of its 8 corners is in the
# range box, a corner being in when it is above the bottom face's plane and not above the top's.
# ---------------------------------------------------------------------------------------------

EXTENDED_RANGE = (-10.0, -49.68, -3.0, 79.12, 49.68, 1.0)


def _range_box(r) -> np.ndarray:
    """The 8 corners of the range ``[x0, y0, z0, x1, y1, z1]``: bottom face, then top face."""
    x0, y0, z0, x1, y1, z1 = r
    return np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0],
                     [x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]])  # fmt: skip


def _on_or_above_face(p: np.ndarray, face: np.ndarray) -> bool:
    """``p`` on or above the plane of a horizontal face, inside its quadrilateral in x-y."""
    normal = np.cross(face[1] - face[0], face[2] - face[0])
    z_on_plane = (normal @ face[0] - normal[0] * p[0] - normal[1] * p[1]) / normal[2]

    def cross(a, b):  # z of (b - a) x (p - a)
        return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])

    q = face
    inside = (
        cross(q[0], q[1]) * cross(q[2], q[3]) >= 0 and cross(q[1], q[2]) * cross(q[3], q[0]) >= 0
    )
    return bool(z_on_plane <= p[2] and inside)


def _dair_keeps(box, r) -> bool:
    x, y, z, length, w, h, yaw = box
    c, s = math.cos(yaw), math.sin(yaw)
    faces = _range_box(r)
    for dx, dy in ((1, 1), (1, -1), (-1, -1), (-1, 1)):
        cx = x + c * dx * length / 2 - s * dy * w / 2
        cy = y + s * dx * length / 2 + c * dy * w / 2
        for cz in (z - h / 2, z + h / 2):
            p = np.array([cx, cy, cz])
            if _on_or_above_face(p, faces[:4]) + _on_or_above_face(p, faces[4:]) == 1:
                return True
    return False


def test_any_corner_range_is_dairs_rect_filter() -> None:
    """Random boxes about the range's faces and boxes whose corners lie exactly on them (the
    top face excludes: z_max exactly is out; every other face includes)."""
    from v2x.perception.ap_range import range_mask

    rng = np.random.default_rng(5)
    x0, y0, z0, x1, y1, z1 = EXTENDED_RANGE
    n = 3000
    centres = np.stack([rng.uniform(x0 - 6, x1 + 6, n), rng.uniform(y0 - 6, y1 + 6, n),
                        rng.uniform(z0 - 3, z1 + 3, n)], 1)  # fmt: skip
    sizes = rng.uniform([0.5, 0.5, 0.5], [12.0, 3.0, 4.0], (n, 3))
    boxes = np.concatenate([centres, sizes, rng.uniform(-math.pi, math.pi, (n, 1))], 1)
    exact = [[x1 + 2.0, 0.0, 0.0, 4.0, 2.0, 1.0, 0.0],   # its back corners at x = x_max: in
             [0.0, y0 - 1.0, 0.0, 4.0, 2.0, 1.0, 0.0],   # its near side at y = y_min: in
             [0.0, 0.0, z1 + 0.5, 4.0, 2.0, 1.0, 0.0],   # its bottom at z = z_max: out
             [0.0, 0.0, z0 - 0.5, 4.0, 2.0, 1.0, 0.0],   # its top at z = z_min: in
             [0.0, 0.0, z1 + 0.25, 4.0, 2.0, 1.5, 0.0]]  # straddles z_max: in  # fmt: skip
    boxes = np.concatenate([boxes, np.array(exact)])
    ours = range_mask(torch.from_numpy(boxes), EXTENDED_RANGE, "any_corner").numpy()
    oracle = np.array([_dair_keeps(b, EXTENDED_RANGE) for b in boxes])
    assert (ours == oracle).all(), np.flatnonzero(ours != oracle)
    assert list(ours[-5:]) == [True, True, False, True, True]
    assert 0.2 < ours[:n].mean() < 0.98  # both outcomes drawn often


def test_a_3d_range_keeps_boxes_with_all_eight_corners_inside() -> None:
    """OpenCOOD's ``mask_boxes_outside_range_numpy`` with 8 corners: every corner in
    ``[min, max]`` on all three axes (bounds inclusive)."""
    from v2x.perception.ap_range import range_mask
    from v2x.perception.boxes import boxes_to_corners_bev

    rng = np.random.default_rng(6)
    r = (-20.0, -10.0, -3.0, 20.0, 10.0, 1.0)
    n = 2000
    boxes = np.concatenate([rng.uniform([-24, -14, -4], [24, 14, 2], (n, 3)),
                            rng.uniform([1, 1, 0.5], [5, 2.5, 2.5], (n, 3)),
                            rng.uniform(-math.pi, math.pi, (n, 1))], 1)  # fmt: skip
    t = torch.from_numpy(boxes)
    bev = boxes_to_corners_bev(t).numpy()
    z_lo, z_hi = boxes[:, 2] - boxes[:, 5] / 2, boxes[:, 2] + boxes[:, 5] / 2
    oracle = ((bev[..., 0] >= r[0]) & (bev[..., 0] <= r[3]) & (bev[..., 1] >= r[1])
              & (bev[..., 1] <= r[4])).all(1) & (z_lo >= r[2]) & (z_hi <= r[5])  # fmt: skip
    assert (range_mask(t, r, "corners").numpy() == oracle).all()
    bev_only = range_mask(t, (r[0], r[1], r[3], r[4]), "corners").numpy()
    assert (bev_only >= oracle).all() and (bev_only > oracle).any()  # z bounds drop boxes


def test_the_any_corner_filter_is_a_checked_field_that_changes_which_gt_count() -> None:
    with pytest.raises(ValueError, match="'any_corner' tests the 8 box corners in 3D"):
        _dair_config(range_mode="any_corner", eval_range=(-10, -10, 10, 10)).validate()
    with pytest.raises(ValueError, match=r"eval_range: expected .* z_max\) with each minimum"):
        _dair_config(eval_range=(-10, -10, 1, 10, 10, 1)).validate()
    with pytest.raises(ValueError, match="range_mode: expected one of corners, centre, any_corner"):
        _dair_config(range_mode="inside").validate()
    # A GT box across x_max, undetected, beside two found: in the range by one corner only.
    frames = [_frame([_box(0), _box(20)], [0.9, 0.8], [_box(0), _box(20), _box(79.12 + 1.0)])]
    kept = {}
    for mode in ("corners", "any_corner"):
        cfg = _dair_config(range_mode=mode, eval_range=EXTENDED_RANGE).validate()
        acc = APAccumulator(cfg)
        acc.add_frames(frames)
        kept[mode] = acc.compute()["ap"]["overall"][0.5]
    assert kept["corners"] == 0.5  # two GT: recall .5 -> 1 at precision 1
    assert kept["any_corner"] == pytest.approx(1 / 3)  # three GT: recall 1/3 -> 2/3
