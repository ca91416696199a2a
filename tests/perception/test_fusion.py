"""Fusion registry: masking, NaN/Inf handling, max / mean / attention against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from v2x.perception.fusion import FUSIONS, build_fusion
from v2x.perception.fusion_base import clean_mask
from v2x.perception.fusion_where2comm import Where2commFusion

FEATURE_STRATEGIES = ("max", "mean", "attention", "where2comm")
ALL = ("none", "early", "late", *FEATURE_STRATEGIES)


def _features(b=2, a=3, c=4, h=3, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, a, c, h, w, generator=g)


def test_registry_holds_every_strategy_with_its_stage():
    assert set(ALL) <= set(FUSIONS.names())
    stages = {name: build_fusion(name).stage for name in ALL}
    assert stages == {
        "none": "ego",
        "early": "points",
        "late": "boxes",
        "max": "features",
        "mean": "features",
        "attention": "features",
        "where2comm": "features",
    }


def test_unknown_fusion_lists_valid_choices():
    with pytest.raises(ValueError) as err:
        build_fusion("maximum")
    msg = str(err.value)
    assert "'maximum'" in msg and "valid choices" in msg
    for name in ALL:
        assert name in msg


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_where2comm_max_fraction_validation(bad):
    with pytest.raises(ValueError, match="max_fraction"):
        build_fusion("where2comm", max_fraction=bad)
    assert build_fusion("where2comm", max_fraction=1.0).max_fraction == 1.0


@pytest.mark.parametrize("name", ALL)
def test_all_collaborators_masked_gives_ego_features(name):
    feats = _features()
    valid = torch.zeros(2, 3, 1, 3, 5, dtype=torch.bool)  # even the ego's row marked invalid
    out = build_fusion(name)(feats, valid)
    torch.testing.assert_close(out, feats[:, 0], atol=0, rtol=0)


@pytest.mark.parametrize("name", FEATURE_STRATEGIES)
def test_non_finite_collaborator_cells_are_masked(name):
    feats = _features()
    valid = torch.ones(2, 3, 1, 3, 5, dtype=torch.bool)
    # Agent 1 is NaN/Inf everywhere, agent 2 is masked: the result must be the ego's.
    feats[:, 1] = float("nan")
    feats[0, 1, 2] = float("inf")
    feats[1, 1, 0] = float("-inf")
    valid[:, 2] = False
    out = build_fusion(name)(feats, valid)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, feats[:, 0], atol=0, rtol=0)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)  # (signed zeros compared too)


@pytest.mark.parametrize("name", sorted(FUSIONS.names()))
def test_a_fusion_declaring_its_own_map_alone_returns_it_exactly(name):
    """``returns_own_map_alone`` (one ego-alone detection pass for all such fusions): with the
    ego's map alone valid, ``forward`` returns the ego's map with NaN and ±inf zeroed, bit for
    bit (signed zeros, huge values), with or without masked collaborator rows; every fusion
    not declaring it defines a forward of its own or inherits an undeclared one."""
    from v2x.perception.fusion import fusion_class

    cls = fusion_class(name)
    if not cls.returns_own_map_alone:
        return
    feats = _features(a=3) * 1e30
    feats[0, 0, 1, 2] = float("nan")
    feats[1, 0, 0, 0] = float("inf")
    feats[1, 0, 3, 1] = float("-inf")
    feats[0, 0, 2, 2, 2] = -0.0
    feats[0, 0, 2, 2, 3] = torch.finfo(torch.float32).min
    want = feats[:, 0].clone()
    want[~torch.isfinite(want)] = 0.0  # the oracle: finite values kept, others zeroed
    fusion = build_fusion(name)
    for a in (1, 3):
        valid = torch.zeros(2, a, 1, 3, 5, dtype=torch.bool)
        valid[:, 0] = True
        out = fusion(feats[:, :a], valid)
        assert torch.equal(_bits(out), _bits(want)), a


def test_the_fusions_whose_ego_alone_map_is_their_own():
    declared = {n for n in FUSIONS.names() if FUSIONS.get(n).returns_own_map_alone}
    assert {"none", "max", "max_extrapolated"} <= declared
    assert not declared & {"mean", "attention", "where2comm"}


def test_single_bad_channel_masks_the_whole_cell():
    feats = _features(b=1, a=2, c=3, h=1, w=2)
    feats[0, 1, 1, 0, 0] = float("nan")  # one channel of one cell
    valid = torch.ones(1, 2, 1, 1, 2, dtype=torch.bool)
    clean, ok = clean_mask(feats, valid)
    assert ok[0, 1, 0, 0].tolist() == [False, True] and ok[0, 0].all()
    assert (clean[0, 1, :, 0, 0] == 0).all()
    out = build_fusion("mean")(feats, valid)
    torch.testing.assert_close(out[0, :, 0, 0], feats[0, 0, :, 0, 0])
    torch.testing.assert_close(out[0, :, 0, 1], feats[0, :, :, 0, 1].mean(0))


def test_max_and_mean_against_manual_computation():
    feats = _features(b=1, a=3, c=2, h=2, w=2, seed=3)
    valid = torch.ones(1, 3, 1, 2, 2, dtype=torch.bool)
    valid[0, 1, 0, 0, 1] = False
    valid[0, 2, 0, 1, :] = False
    out_max = build_fusion("max")(feats, valid)
    out_mean = build_fusion("mean")(feats, valid)
    for iy in range(2):
        for ix in range(2):
            agents = [a for a in range(3) if valid[0, a, 0, iy, ix]]
            vals = [[float(feats[0, a, ch, iy, ix]) for a in agents] for ch in range(2)]
            for ch in range(2):
                assert float(out_max[0, ch, iy, ix]) == max(vals[ch])
                assert float(out_mean[0, ch, iy, ix]) == pytest.approx(sum(vals[ch]) / len(agents))


def test_max_of_negative_ego_is_not_lifted_by_masked_zeros():
    feats = -torch.ones(1, 2, 2, 1, 1)
    feats[0, 1] = 0.0  # a masked collaborator that would win a plain max
    valid = torch.tensor([True, False]).view(1, 2, 1, 1, 1)
    torch.testing.assert_close(build_fusion("max")(feats, valid), -torch.ones(1, 2, 1, 1))


@pytest.mark.parametrize("name", ("attention", "where2comm"))
def test_attention_two_agents_one_cell_by_hand(name):
    ego = [1.0, 2.0, -1.0, 0.5]
    other = [0.5, -1.0, 3.0, 2.0]
    feats = torch.tensor([ego, other]).view(1, 2, 4, 1, 1)
    valid = torch.ones(1, 2, 1, 1, 1, dtype=torch.bool)
    out = build_fusion(name)(feats, valid)
    s_ego = sum(e * e for e in ego) / math.sqrt(4)
    s_oth = sum(e * o for e, o in zip(ego, other)) / math.sqrt(4)
    w_ego = math.exp(s_ego) / (math.exp(s_ego) + math.exp(s_oth))
    want = [w_ego * e + (1 - w_ego) * o for e, o in zip(ego, other)]
    torch.testing.assert_close(out.view(4), torch.tensor(want), atol=1e-6, rtol=1e-6)
    # Masking the collaborator gives the ego exactly.
    out = build_fusion(name)(feats, torch.tensor([True, False]).view(1, 2, 1, 1, 1))
    torch.testing.assert_close(out.view(4), torch.tensor(ego), atol=0, rtol=0)


def test_attention_is_permutation_invariant_in_collaborators():
    feats = _features(b=1, a=4, seed=7)
    valid = torch.rand(1, 4, 1, 3, 5, generator=torch.Generator().manual_seed(1)) > 0.3
    fusion = build_fusion("attention")
    perm = [0, 3, 1, 2]
    torch.testing.assert_close(fusion(feats, valid), fusion(feats[:, perm], valid[:, perm]))


def test_where2comm_confidence_is_max_class_sigmoid():
    logits = torch.tensor([[[[0.0, -3.0]], [[1.0, -5.0]]]])  # [1, 2 classes, 1, 2]
    conf = Where2commFusion.confidence(logits)
    assert conf.shape == (1, 1, 1, 2)
    torch.testing.assert_close(conf.view(2), torch.sigmoid(torch.tensor([1.0, -3.0])))


def test_gradients_do_not_become_nan_with_masked_cells():
    feats = _features(b=1, a=3, c=4, h=2, w=2).requires_grad_(True)
    valid = torch.zeros(1, 3, 1, 2, 2, dtype=torch.bool)
    valid[0, 1, 0, 0, 0] = True
    for name in FEATURE_STRATEGIES:
        feats.grad = None
        build_fusion(name)(feats, valid).sum().backward()
        assert torch.isfinite(feats.grad).all(), name


def test_where2comm_selection_mask_keeps_the_most_confident_cells():
    conf = torch.rand(3, 1, 8, 10, generator=torch.Generator().manual_seed(0))
    mask = Where2commFusion(max_fraction=0.1).selection_mask(conf)
    assert mask.shape == conf.shape and mask.dtype == torch.bool
    assert (mask.sum(dim=(1, 2, 3)) == 8).all()  # round(0.1 * 80)
    for s in range(3):
        kept, dropped = conf[s][mask[s]], conf[s][~mask[s]]
        assert kept.min() > dropped.max()
    assert Where2commFusion(max_fraction=1.0).selection_mask(conf).all()
    assert Where2commFusion(max_fraction=0.001).selection_mask(conf).sum(dim=(1, 2, 3)).eq(1).all()


@pytest.mark.parametrize("bad", [0, -1, 2, 4, 2.5, True])
def test_where2comm_window_cells_validation(bad):
    with pytest.raises(ValueError, match="window_cells"):
        build_fusion("where2comm", window_cells=bad)
    assert build_fusion("where2comm", window_cells=3).window_cells == 3


def test_where2comm_selection_score_is_the_neighbourhood_maximum_by_hand():
    logits = torch.randn(2, 3, 6, 7, generator=torch.Generator().manual_seed(4))
    conf = torch.sigmoid(logits).amax(dim=1)  # [2, 6, 7]
    score = Where2commFusion(window_cells=3).selection_score(logits)
    assert score.shape == (2, 1, 6, 7)
    for s in range(2):
        for y in range(6):
            for x in range(7):
                near = conf[s, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].max()
                want = near + Where2commFusion.TIE_BREAK * conf[s, y, x]
                torch.testing.assert_close(score[s, 0, y, x], want)
    raw = Where2commFusion(window_cells=1).selection_score(logits)
    torch.testing.assert_close(raw, Where2commFusion.confidence(logits), atol=0, rtol=0)


def _where2comm_communication(rm: torch.Tensor, thre: float, k_size: int, c_sigma: float):
    """Where2comm's ``Communication.forward`` for one sample (MediaBrain-SJTU/Where2comm,
    ``opencood/models/comm_modules/where2comm.py``), written out with numpy's kernel:
    ``rm [L, anchors, H, W]`` class logits → ``(mask [L, 1, H, W] float, comm_rate)``: the
    sigmoid's maximum over anchors, smoothed by the ``k_size`` Gaussian of ``c_sigma``
    (``1 / (2πσ) · exp(-(x² + y²) / (2σ²))``, zero padding), ``> thre``; the rate is agent 0's
    selected fraction; then every even-indexed agent's mask is set to ones (``[::2]``)."""
    centre = k_size // 2
    x, y = np.mgrid[0 - centre : k_size - centre, 0 - centre : k_size - centre]
    g = 1 / (2 * np.pi * c_sigma) * np.exp(-(np.square(x) + np.square(y)) / (2 * c_sigma**2))
    weight = torch.Tensor(g).unsqueeze(0).unsqueeze(0)
    conf = rm.sigmoid().max(dim=1)[0].unsqueeze(1)
    smoothed = torch.nn.functional.conv2d(conf, weight, padding=(k_size - 1) // 2)
    mask = torch.where(smoothed > thre, torch.ones_like(smoothed), torch.zeros_like(smoothed))
    h, w = rm.shape[-2:]
    rate = float(mask[0].sum() / (h * w))
    mask[::2] = 1.0
    return mask, rate


@pytest.mark.parametrize(("thre", "k_size", "c_sigma"), [(0.01, 5, 1.0), (0.05, 3, 0.7)])
def test_where2comm_gaussian_selection_sends_the_reference_mask(thre, k_size, c_sigma):
    """``selection="gaussian"`` at ``max_fraction`` = the reference's selected fraction of a
    collaborator's map keeps exactly the reference's cells (Where2comm's ``Communication``
    re-implemented above, 2 agents: their DAIR setting, where only the ego keeps all)."""
    g = torch.Generator().manual_seed(3)
    rm = torch.randn(2, 2, 24, 40, generator=g) - 6.0  # two anchors, background well below
    rm[:, :, 5:9, 4:12] += 7.0 + torch.rand(2, 2, 4, 8, generator=g)  # an object in each
    rm[1, :, 15:18, 25:33] += 5.0  # one more for the collaborator
    reference, _ = _where2comm_communication(rm, thre, k_size, c_sigma)
    assert reference[0].all()  # the ego's row: every cell
    collaborator = reference[1:2].bool()
    fraction = float(collaborator.float().mean())
    assert 0.02 < fraction < 0.9  # a selection, not all or nothing
    fusion = Where2commFusion(
        max_fraction=fraction, selection="gaussian", k_size=k_size, c_sigma=c_sigma
    )
    ours = fusion.selection_mask(fusion.selection_score(rm[1:2]))
    assert torch.equal(ours, collaborator)
    # the default ranking (7 x 7 neighbourhood maximum) keeps other cells at that budget
    window = Where2commFusion(max_fraction=fraction)
    assert not torch.equal(window.selection_mask(window.selection_score(rm[1:2])), collaborator)


def test_where2comm_reference_forces_every_even_agent_not_only_the_ego():
    """What the re-implemented reference does with 3 agents (documented in
    ``docs/fusion_references.md``): agent 2 sends its whole map, and the reported rate is the
    ego's own selected fraction, not a collaborator's; ours keeps the budget for every
    collaborator."""
    rm = torch.full((3, 2, 20, 30), -8.0)
    rm[:, :, 5:9, 5:12] = 2.0
    rm[0, :, 12:16, 20:28] = 2.0  # the ego sees more than its collaborators
    mask, rate = _where2comm_communication(rm, 0.01, 5, 1.0)
    fractions = mask.mean(dim=(1, 2, 3)).tolist()
    assert fractions[0] == fractions[2] == 1.0 and fractions[1] < 0.3
    assert rate > fractions[1]


@pytest.mark.parametrize("bad", [{"selection": "threshold"}, {"k_size": 4}, {"c_sigma": 0.0},
                                 {"c_sigma": float("nan")}, {"k_size": True}])  # fmt: skip
def test_where2comm_gaussian_options_validation(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        build_fusion("where2comm", **bad)


def test_where2comm_gaussian_kernel_by_hand():
    """The kernel's centre and a corner of the 5 x 5 one of sigma 1: 1 / (2π) and
    exp(-4) / (2π)."""
    kernel = Where2commFusion(selection="gaussian").gaussian_kernel()
    assert kernel.shape == (1, 1, 5, 5)
    torch.testing.assert_close(kernel[0, 0, 2, 2], torch.tensor(1 / (2 * math.pi)))
    torch.testing.assert_close(kernel[0, 0, 0, 0], torch.tensor(math.exp(-4) / (2 * math.pi)))


def _opencood_att_fusion(xx: torch.Tensor) -> torch.Tensor:
    """OpenCOOD's ``AttFusion.forward`` on one sample (DerrickXuNu/OpenCOOD,
    ``opencood/models/fuse_modules/self_attn.py``): ``xx [cav, C, H, W]`` → ``[C, H, W]``, the
    ego's row of the per-cell self-attention across agents, scores scaled by ``sqrt(C)``."""
    cav, c, h, w = xx.shape
    x = xx.view(cav, c, -1).permute(2, 0, 1)
    score = torch.bmm(x, x.transpose(1, 2)) / np.sqrt(c)
    out = torch.bmm(torch.nn.functional.softmax(score, -1), x)
    return out.permute(1, 2, 0).view(cav, c, h, w)[0]


def test_attention_equals_opencood_att_fusion_on_random_maps():
    """Every agent valid: ``attention`` is OpenCOOD's ``AttFusion``; a masked cell (out of
    view, unsent, lost) is left out here, where OpenCOOD fuses the zeros it warps in
    (deliberate: ``docs/fusion_references.md``)."""
    feats = _features(b=2, a=4, c=16, h=5, w=7, seed=11)
    want = torch.stack([_opencood_att_fusion(f) for f in feats])
    every = torch.ones(2, 4, 1, 5, 7, dtype=torch.bool)
    torch.testing.assert_close(build_fusion("attention")(feats, every), want)
    valid = every.clone()
    valid[:, 2, :, :2] = False
    out = build_fusion("attention")(feats, valid)
    keep = torch.ones(4, dtype=torch.bool)
    keep[2] = False
    at_masked = torch.stack([_opencood_att_fusion(f[keep]) for f in feats])[..., :2, :]
    torch.testing.assert_close(out[..., :2, :], at_masked)  # the other agents' attention
    zeros = torch.stack([_opencood_att_fusion(f) for f in feats * valid])[..., :2, :]
    assert (out[..., :2, :] - zeros).abs().max() > 1e-2  # OpenCOOD's, with the zeros: another


def _footprint_cells(box, grid, stride):
    """``[h, w]`` bool: cells of the stride-``stride`` map whose centre lies inside ``box``
    (x, y, z, l, w, h, yaw), by hand: the centre in the box's own axes."""
    h, w = grid.height // stride, grid.width // stride
    cell = grid.resolution_m * stride
    out = torch.zeros(h, w, dtype=torch.bool)
    cx, cy, _, length, width, _, yaw = box
    for iy in range(h):
        for ix in range(w):
            dx = grid.x_range_m[0] + (ix + 0.5) * cell - cx
            dy = grid.y_range_m[0] + (iy + 0.5) * cell - cy
            u = math.cos(yaw) * dx + math.sin(yaw) * dy
            v = -math.sin(yaw) * dx + math.cos(yaw) * dy
            out[iy, ix] = abs(u) <= length / 2 and abs(v) <= width / 2
    return out


def test_where2comm_selection_covers_the_footprints_of_hand_placed_boxes():
    """A collaborator's confidence as its centre head gives it (a Gaussian peak of about one
    cell at each object's centre, ``build_targets``' shape; a strong and a weak car) over
    background noise: at a 10 % budget the selection keeps every cell of both cars'
    footprints; ranking the raw confidence (``window_cells = 1``) keeps the centres and then
    noise, and misses most of the footprints."""
    from v2x.perception.bev import BEVGrid
    from v2x.perception.head import build_targets

    grid, stride = BEVGrid(x_range_m=(-12.8, 12.8), y_range_m=(-12.8, 12.8)), 2
    boxes = torch.tensor(
        [[-5.75, 4.3, 0.8, 4.5, 1.9, 1.6, 0.0], [5.1, -4.7, 0.8, 4.2, 1.8, 1.5, math.pi / 2]],
        dtype=torch.float64,
    )
    peaks = torch.tensor([0.9, 0.5])
    heat, *_ = build_targets(
        boxes[None], torch.tensor([[0, 1]]), torch.tensor([[True, True]]), grid, stride, 2
    )  # [1, 2, 32, 32]: one class per car, peak 1 at its centre cell
    conf = (heat[0] * peaks[:, None, None]).amax(dim=0)
    noise = 0.15 * torch.rand(conf.shape, generator=torch.Generator().manual_seed(0))
    conf = torch.maximum(conf, noise).clamp(1e-4, 1 - 1e-4)
    logits = torch.log(conf / (1 - conf))[None, None]  # [1, 1, 32, 32]
    cars = _footprint_cells(boxes[0].tolist(), grid, stride) | _footprint_cells(
        boxes[1].tolist(), grid, stride
    )
    assert cars.sum() >= 20  # the two footprints, 5-7 by 2-3 cells each
    fusion = Where2commFusion(max_fraction=0.1)
    kept = fusion.selection_mask(fusion.selection_score(logits))[0, 0]
    assert kept.sum() == round(0.1 * 32 * 32)
    assert kept[cars].all()
    raw = Where2commFusion(max_fraction=0.1, window_cells=1)
    kept_raw = raw.selection_mask(raw.selection_score(logits))[0, 0]
    assert kept_raw[cars].float().mean() < 0.6


@pytest.mark.parametrize("name", [*FEATURE_STRATEGIES, "max_extrapolated"])
@pytest.mark.parametrize("ego_dtype", [torch.float32, torch.float16])
def test_fuse_warped_equals_forward_on_the_stacked_maps(name, ego_dtype):
    """What the pipeline runs (``fuse_warped``: ego and warped collaborators apart, inference)
    gives ``forward``'s values on the stacked maps exactly: NaN / ±inf cells in the ego and the
    collaborators, invalid cells, a collaborator with nothing valid, negative maxima."""
    fusion = build_fusion(name).eval()
    feats = _features(b=3, a=4, c=6, h=4, w=5, seed=3) - 1.5
    feats[0, 0, 2, 1, 1] = float("nan")  # the ego's own bad values are zeroed
    feats[1, 0, :, 2, 3] = float("inf")
    feats[0, 1, 3, 0, 0] = float("nan")  # a collaborator's bad cells are dropped
    feats[2, 2, 0, 3, 4] = -float("inf")
    feats[1, 3, 1, 2, 2] = float("inf")
    g = torch.Generator().manual_seed(4)
    valid = torch.rand(3, 3, 1, 4, 5, generator=g) > 0.3
    valid[2, 1] = False
    ego = feats[:, :1].to(ego_dtype)
    with torch.no_grad():
        stacked = torch.cat([ego.float(), feats[:, 1:]], dim=1)
        ones = torch.ones(3, 1, 1, 4, 5, dtype=torch.bool)
        expected = fusion(stacked, torch.cat([ones, valid], dim=1))
        got = fusion.fuse_warped(ego, feats[:, 1:].clone(), valid)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert torch.equal(got, expected)
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("name", [*FEATURE_STRATEGIES, "max_extrapolated"])
def test_fuse_warped_takes_one_ego_map_per_frame_for_blocks_of_conditions(name):
    """``fuse_warped`` with ``E`` ego maps for ``N = K·E`` fused maps (fused map ``n`` uses row
    ``n % E``: one map per frame, ``K`` condition blocks) gives what the ego's rows repeated
    ``K`` times give, bit for bit, NaN in an ego map included; ``E`` not dividing ``N`` is
    refused with the counts."""
    fusion = build_fusion(name).eval()
    e, k = 2, 3
    ego = _features(b=e, a=1, c=5, h=4, w=3, seed=6) - 1.0
    ego[1, 0, 2, 1, 1] = float("nan")
    warped = _features(b=e * k, a=3, c=5, h=4, w=3, seed=7) - 1.0
    g = torch.Generator().manual_seed(8)
    valid = torch.rand(e * k, 3, 1, 4, 3, generator=g) > 0.4
    with torch.no_grad():
        expected = fusion.fuse_warped(ego.repeat(k, 1, 1, 1, 1), warped.clone(), valid)
        got = fusion.fuse_warped(ego, warped.clone(), valid)
        assert torch.equal(got, expected)
        with pytest.raises(ValueError, match="4 ego maps do not divide 6 fused maps"):
            fusion.fuse_warped(ego.repeat(2, 1, 1, 1, 1), warped.clone(), valid)


def test_fuse_warped_keeps_forward_and_its_gradient_in_training():
    """With a gradient, ``fuse_warped`` is ``forward`` itself (a tie's gradient is not split
    differently from what training always did)."""
    fusion = build_fusion("max")
    feats = _features(b=2, a=3, c=4, h=3, w=3, seed=5)
    feats[:, 2] = feats[:, 1]  # ties between two collaborators
    valid = torch.ones(2, 2, 1, 3, 3, dtype=torch.bool)
    a = feats.clone().requires_grad_(True)
    b = feats.clone().requires_grad_(True)
    fusion(a, torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)).sum().backward()
    fusion.fuse_warped(b[:, :1], b[:, 1:], valid).sum().backward()
    assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("channels_last", [False, True])
def test_collaborator_rows_are_the_reshape_in_the_maps_own_layout(channels_last):
    """The collaborators' maps as ``reshape`` gives them (the same values, frame by frame), in
    the features' own per-map layout: channels-last maps stay channels-last (``reshape`` would
    copy them channels-first), channels-first ones get ``reshape``'s strides."""
    from v2x.perception.fusion_base import collaborator_rows

    b, a, c, h, w = 3, 4, 5, 6, 7
    maps = torch.randn(b * a, c, h, w)
    if channels_last:
        maps = maps.contiguous(memory_format=torch.channels_last)
    features = maps.view(b, a, c, h, w)
    rows = collaborator_rows(features)
    expected = features[:, 1:].reshape(b * (a - 1), c, h, w)
    assert torch.equal(rows, expected)
    assert rows.data_ptr() != features.data_ptr()  # a copy, not a view of the features
    if channels_last:
        assert rows.is_contiguous(memory_format=torch.channels_last) and not rows.is_contiguous()
    else:
        assert rows.stride() == expected.stride()
