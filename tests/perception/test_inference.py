"""Fast-inference options (v2x.perception.inference, CoopDetector.configure_inference): the fp32
computation is unchanged, reduced precision and compiled graphs stay within stated tolerances.

Oracles: the masked (training-path) pillar scatter for the fixed-shape eval path; the plain
fp32 eager model for channels-last, autocast and compiled runs.
"""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

from tests.benchmark_scripts import load_benchmark
from v2x.perception.bev import BEVGrid
from v2x.perception.detector import CoopDetector, DetectorConfig
from v2x.perception.fusion import build_fusion
from v2x.perception.inference import (
    ConvReLU,
    GraphCache,
    ShuffleUpsampleReLU,
    autocast,
    capture_graph,
    capture_hazards,
    cast_weights,
    check_precision,
    compile_function,
    fold_batchnorm,
    fuse_conv_relu,
    pixel_shuffle_channels_last,
)
from v2x.perception.pillars import PillarEncoder
from v2x.perception.warp import (
    perturb_poses,
    relative_level_transforms,
    warp_sampling_grid,
    warp_to_ego,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 9.6 m x 6.4 m at 0.4 m: 24 x 16 cells (a multiple of 8 for the three-stage backbone)
GRID = BEVGrid(x_range_m=(-4.8, 4.8), y_range_m=(-3.2, 3.2), z_range_m=(-1.0, 3.0))

#: Reduced-precision tolerance: max |out - fp32| / max |fp32| over the head's outputs, for a
#: randomly initialised detector whose batch-norm statistics are set to non-trivial values.
#: bf16 keeps 8 significant bits (relative rounding 2^-9 per operation), fp16 11 bits.
TOLERANCE = {"bf16": 0.02, "fp16": 0.005}


def _detector(backbone: str = "pointpillars") -> CoopDetector:
    torch.manual_seed(0)
    kwargs = dict(layer_nums=(1, 1, 1), layer_filters=(8, 16, 16), upsample_filters=(8, 8, 8),
                  feature_channels=24) if backbone == "pointpillars" else {}  # fmt: skip
    config = DetectorConfig(grid=GRID, pillar_channels=8, backbone=backbone, head_channels=8,
                            **kwargs)  # fmt: skip
    model = CoopDetector(config)
    with torch.no_grad():  # eval-mode batch norms that are not the identity
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _inputs(b: int = 2, a: int = 3, n: int = 300, seed: int = 1):
    """Points partly outside the grid (x, y and z), 20 % masked, agents 1 m apart."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(b, a, n, 3, generator=g) * torch.tensor([11.0, 8.0, 5.0]) - torch.tensor(
        [5.5, 4.0, 1.5]
    )
    pts = torch.cat([xyz, torch.rand(b, a, n, 1, generator=g)], dim=-1)
    mask = torch.rand(b, a, n, generator=g) > 0.2
    poses = torch.eye(4, dtype=torch.float64).repeat(b, a, 1, 1)
    poses[..., 0, 3] = torch.arange(a, dtype=torch.float64)
    poses[..., 2, 3] = 1.5
    return pts, mask, poses


def _network(model: CoopDetector):
    fusion = build_fusion("attention")

    def network(pts, mask, poses):
        feats = model.encode(pts, mask, poses)
        warped, cov = warp_to_ego(feats, relative_level_transforms(poses), model.grid)
        return model.head(fusion(warped, cov))

    return network


def test_fixed_shape_pillar_path_equals_the_masked_path_exactly() -> None:
    torch.manual_seed(0)
    enc = PillarEncoder(GRID, out_channels=6).eval()
    with torch.no_grad():
        enc.norm.running_mean.uniform_(-0.5, 0.5)
        enc.norm.bias.uniform_(-0.3, 0.3)
    pts, mask, _ = _inputs(b=1, a=4)
    pts, mask = pts[0], mask[0]
    pts[0, :5] = float("nan")  # dropped points may hold anything
    mask[0, :5] = False
    with torch.no_grad():
        static = enc(pts, mask)  # eval mode: the fixed-shape path
        masked = enc._forward_masked(pts, mask)
    assert static.shape == (4, 6, GRID.height, GRID.width)
    assert torch.equal(static, masked)
    assert static.abs().sum() > 0


def test_channels_last_pseudo_image_has_nhwc_strides_and_the_same_values() -> None:
    model = _detector()
    pts, mask, _ = _inputs(b=1)
    with torch.no_grad():
        plain = model.pillars(pts[0], mask[0])
        model.configure_inference(channels_last=True)
        nhwc = model.pillars(pts[0], mask[0])
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    assert plain.is_contiguous() and torch.equal(plain, nhwc)


@pytest.mark.parametrize("backbone", ["small", "pointpillars"])
def test_channels_last_leaves_fp32_outputs_unchanged(backbone: str) -> None:
    """Same weights, NHWC layout: the convolutions may pick other kernels (summation order),
    so equal within float32 rounding (1e-5 relative)."""
    model = _detector(backbone)
    net, inputs = _network(model), _inputs()
    with torch.no_grad():
        ref = net(*inputs)
        model.configure_inference("fp32", channels_last=True)
        out = net(*inputs)
        model.configure_inference("fp32", channels_last=False)
        back = net(*inputs)
    for r, o, bk in zip(ref, out, back, strict=True):
        assert o.dtype == torch.float32
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5 * r.abs().max().item())
        assert torch.equal(bk, r)  # switching back restores the exact computation


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_matches_fp32_within_tolerance(precision: str) -> None:
    model = _detector()
    net, inputs = _network(model), _inputs()
    with torch.no_grad():
        ref = net(*inputs)
        model.configure_inference(precision)
        try:
            out = net(*inputs)
        except RuntimeError as err:  # fp16 kernels missing on this CPU build
            pytest.skip(f"{precision} autocast unsupported here: {err}")
        feats = model.encode(*inputs)
    assert feats.dtype == torch.float32  # outputs are float32 whatever the precision
    for r, o in zip(ref, out, strict=True):
        assert o.dtype == torch.float32
        err = (o - r).abs().max().item() / r.abs().max().item()
        assert err <= TOLERANCE[precision], f"{precision}: relative error {err:.4f}"
        assert not torch.equal(o, r)  # autocast did run in reduced precision


def test_reduced_precision_map_reaches_the_warp_in_its_dtype_with_the_same_result() -> None:
    """``float_output=False``: the bf16 map is handed on as it is and the warp casts it, the
    same float32 values as casting in the encoder."""
    model = _detector().configure_inference("bf16")
    pts, mask, poses = _inputs()
    ego_to_agent = relative_level_transforms(poses)
    with torch.no_grad():
        feats = model.encode(pts, mask, poses, float_output=False)
        floats = model.encode(pts, mask, poses)
        assert feats.dtype == torch.bfloat16 and floats.dtype == torch.float32
        assert torch.equal(feats.float(), floats)
        warped, _ = warp_to_ego(feats, ego_to_agent, model.grid)
        assert torch.equal(warped, warp_to_ego(floats, ego_to_agent, model.grid)[0])
        assert model.encode(pts, mask, poses, float_output=False).dtype == torch.bfloat16
        model.configure_inference("fp32")
        assert model.encode(pts, mask, poses, float_output=False).dtype == torch.float32


@pytest.mark.parametrize("backbone", ["small", "pointpillars"])
def test_folded_batchnorm_copy_matches_within_float32_rounding(backbone: str) -> None:
    model = _detector(backbone)
    folded = fold_batchnorm(model)
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    assert not any(isinstance(m, norms) for m in folded.modules())
    counted = sum(isinstance(m, norms) for m in model.modules())
    assert counted > 3  # the original keeps its batch norms
    inputs = _inputs()
    with torch.no_grad():
        ref = _network(model)(*inputs)
        out = _network(folded.configure_inference(channels_last=True))(*inputs)
    for r, o in zip(ref, out, strict=True):
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5 * r.abs().max().item())
        assert not torch.equal(o, r)  # rounded differently: it is another computation
    # in place (the sweep's freshly loaded detector): that model itself, the copy's very values
    same = fold_batchnorm(model, inplace=True)
    assert same is model and not any(isinstance(m, norms) for m in model.modules())
    with torch.no_grad():
        again = _network(model.configure_inference(channels_last=True))(*inputs)
    for o, a in zip(out, again, strict=True):
        assert torch.equal(a, o)


def test_weights_stored_in_the_autocast_dtype_give_autocast_s_values() -> None:
    """Oracle: autocast over float32 weights (which casts each weight per call)."""
    model = fold_batchnorm(_detector()).configure_inference("bf16", channels_last=True)
    cast = cast_weights(model, "bf16")
    assert {p.dtype for p in cast.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # the original stays
    conv = next(m for m in cast.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    inputs = _inputs()
    with torch.no_grad():
        for r, o in zip(_network(model)(*inputs), _network(cast)(*inputs), strict=True):
            assert o.dtype == torch.float32 and torch.equal(o, r)
    assert {p.dtype for p in cast_weights(model, "fp32").parameters()} == {torch.float32}


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_pixel_shuffle_channels_last_is_pixel_shuffle(layout: torch.memory_format) -> None:
    y = torch.randn(2, 3 * 16, 5, 7).contiguous(memory_format=layout)
    out = pixel_shuffle_channels_last(y, 4)
    assert torch.equal(out, torch.nn.functional.pixel_shuffle(y, 4))
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_shuffle_upsample_is_the_transposed_convolution(k: int) -> None:
    """Oracle: ``relu(ConvTranspose2d(x))`` with kernel = stride = k (the backbone's upsamplers)."""
    torch.manual_seed(k)
    deconv = torch.nn.ConvTranspose2d(24, 12, k, stride=k, bias=True)
    x = torch.randn(2, 24, 5, 7)
    with torch.no_grad():
        ref, out = torch.relu(deconv(x)), ShuffleUpsampleReLU(deconv)(x)
    assert out.shape == ref.shape == (2, 12, 5 * k, 7 * k)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    nhwc = ShuffleUpsampleReLU(deconv.to(memory_format=torch.channels_last))
    with torch.no_grad():
        out = nhwc(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)  # the backbone's layout kept
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backbone", ["small", "pointpillars"])
def test_fused_conv_relu_copy_computes_the_same_network(backbone: str) -> None:
    """Every convolution + (folded batch norm) + ReLU is one module, no ReLU is left, and the
    network's outputs are unchanged (the CPU path: relu(conv), the upsamplers reshuffled)."""
    model = fold_batchnorm(_detector(backbone)).configure_inference("fp32", channels_last=True)
    fused = fuse_conv_relu(model)
    assert not any(isinstance(m, torch.nn.ReLU) for m in fused.modules())
    upsamplers = sum(isinstance(m, ShuffleUpsampleReLU) for m in fused.modules())
    assert upsamplers == (3 if backbone == "pointpillars" else 1)
    assert sum(isinstance(m, ConvReLU) for m in fused.modules()) > 3
    assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())  # the original stays
    inputs = _inputs()
    with torch.no_grad():
        for r, o in zip(_network(model)(*inputs), _network(fused)(*inputs), strict=True):
            torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5 * r.abs().max().item())


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_fused_conv_relu_on_cuda_matches_the_unfused_network(precision: str) -> None:
    """cuDNN's fused convolution + bias + ReLU (weights in the precision's dtype)."""
    device = torch.device("cuda")
    folded = fold_batchnorm(_detector().to(device)).configure_inference(precision,
                                                                        channels_last=True)  # fmt: skip
    fused = cast_weights(fuse_conv_relu(folded), precision)
    inputs = [t.to(device) for t in _inputs()]
    with torch.no_grad():
        for r, o in zip(_network(folded)(*inputs), _network(fused)(*inputs), strict=True):
            err = (o - r).abs().max().item() / r.abs().max().item()
            assert err <= GPU_TOLERANCE[precision], f"{precision}: relative error {err:.4f}"


def test_precision_is_checked_by_name() -> None:
    message = "model.precision: expected one of fp32, fp16, bf16, got 'fp8'"
    with pytest.raises(ValueError, match=message):
        _detector("small").configure_inference("fp8")
    with pytest.raises(ValueError, match="precision"):
        check_precision("half")
    with pytest.raises(ValueError, match="compile mode"):
        compile_function(lambda x: x, "fast")


def test_fp32_autocast_is_a_no_op_context() -> None:
    with autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu")


def test_whole_network_traces_as_one_graph() -> None:
    """``fullgraph=True`` fails on any graph break (data-dependent shape, host sync): the eval
    network is capturable whole, the precondition of CUDA graphs and reduce-overhead mode. The
    ``aot_eager`` backend replays the traced ATen graph, so the outputs equal eager's."""
    model = _detector()
    net, inputs = _network(model), _inputs()
    torch._dynamo.reset()
    traced = torch.compile(net, backend="aot_eager", fullgraph=True, dynamic=False)
    with torch.no_grad():
        ref, out = net(*inputs), traced(*inputs)
    for r, o in zip(ref, out, strict=True):
        torch.testing.assert_close(o, r, rtol=1e-6, atol=1e-6 * r.abs().max().item())


def _host_traffic(x: torch.Tensor) -> torch.Tensor:
    """One of each capture hazard, on the lines the comments name (offsets from ``def``)."""
    y = torch.zeros(3, 3, device=x.device)
    y[0, 0] = 2.0  # +3: one element from a Python number
    y[1] = 3.0  # a row is filled on the device: no hazard
    z = x + torch.tensor([1.0, 2.0, 3.0]).to(x.device)  # +5: host tensor copied over
    return z * z.sum().item()  # +6: a host read (which raises on 'meta': the last one)


def test_capture_hazards_names_each_host_copy_and_synchronisation() -> None:
    first = inspect.getsourcelines(_host_traffic)[1]
    found = capture_hazards(_host_traffic, [torch.zeros(3, device="meta")])
    lines = [int(h.split(":")[1]) - first for h in found]
    assert lines[0] == 3 and "one element" in found[0]
    assert 5 in lines and any("_to_copy" in h for h in found)
    read = [h for h, line in zip(found, lines, strict=True) if line == 6]
    assert "item()" in read[0] and "_local_scalar_dense" in read[1] and "raised" in read[-1]
    assert lines == sorted(lines)  # in the order met
    boolean_index = capture_hazards(lambda x: x[x > 0], [torch.zeros(3, device="meta")])
    assert len(boolean_index) == 1 and "raised" in boolean_index[0]  # a data-dependent shape
    assert all(h.startswith("test_inference.py:") for h in found)
    assert capture_hazards(lambda x: (x * 2 + 1).amax(0), [torch.zeros(3, 4, device="meta")]) == []
    with pytest.raises(ValueError, match="meta"):
        capture_hazards(lambda x: x, [torch.zeros(3)])


@pytest.mark.parametrize("fusion", ["attention", "max"])
@pytest.mark.parametrize("backbone", ["small", "pointpillars"])
def test_inference_network_has_no_capture_hazards(backbone: str, fusion: str) -> None:
    """The benchmark's network (encode, warp, fuse, head; folded, channels-last) makes no host
    tensor, copy or synchronisation: what CUDA graph capture needs (its failure on the H200 was
    the warp's constant matrices, filled element by element from Python numbers)."""
    model = fold_batchnorm(_detector(backbone)).configure_inference("fp32", channels_last=True)
    model = copy.deepcopy(model).to("meta")
    fuse = build_fusion(fusion)
    pts, mask, poses = _inputs()
    inputs = [t.to("meta") for t in (pts, mask, poses, relative_level_transforms(poses))]

    def network(pts, mask, poses, ego_to_agent):
        warped, cov = warp_to_ego(model.encode(pts, mask, poses), ego_to_agent, model.grid)
        return model.head(fuse(warped, cov))

    with torch.no_grad():
        assert capture_hazards(network, inputs) == []


def test_warp_sampling_grid_samples_each_ego_cell_centre_in_the_agent_frame() -> None:
    """Oracle: each ego cell centre (metres) moved by the ego-to-agent transform in float64 and
    normalised to [-1, 1] over the agent's grid, an off-centre grid and noisy poses."""
    grid = BEVGrid(x_range_m=(-10.0, 30.0), y_range_m=(-3.2, 6.4))
    g = torch.Generator().manual_seed(3)
    poses = torch.eye(4, dtype=torch.float64).repeat(2, 3, 1, 1)
    poses[..., :3, 3] = torch.randn(2, 3, 3, generator=g, dtype=torch.float64) * 5
    poses = perturb_poses(poses, 1.0, 0.4, generator=g)
    ego_to_agent = relative_level_transforms(poses)
    stride = 2
    h, w = grid.height // stride, grid.width // stride
    sample_grid, coverage = warp_sampling_grid(ego_to_agent, grid, h, w)
    centres = grid.cell_centers(stride).double()  # [h, w, 2] (x, y) metres
    xyz1 = torch.cat([centres, torch.zeros(h, w, 1, dtype=torch.float64),
                      torch.ones(h, w, 1, dtype=torch.float64)], dim=-1)  # fmt: skip
    moved = torch.einsum("naij,hwj->nahwi", ego_to_agent, xyz1)[..., :2]
    lo = torch.tensor([grid.x_range_m[0], grid.y_range_m[0]], dtype=torch.float64)
    hi = torch.tensor([grid.x_range_m[1], grid.y_range_m[1]], dtype=torch.float64)
    expected = (2 * (moved - lo) / (hi - lo) - 1).reshape(6, h, w, 2)
    torch.testing.assert_close(sample_grid.double(), expected, rtol=0, atol=1e-5)
    inside = (expected.abs() <= 1 - 1e-4).all(-1).view(2, 3, 1, h, w)
    assert coverage[inside].all() and inside[:, 0].all()  # the ego covers its own grid


@pytest.mark.slow
def test_inductor_compiled_network_matches_eager() -> None:
    """Inductor's generated kernels (fused elementwise, other reduction order): 1e-4 relative."""
    model = _detector().configure_inference("fp32", channels_last=True)
    net, inputs = _network(model), _inputs()
    torch._dynamo.reset()
    compiled = compile_function(net, "default")
    with torch.no_grad():
        ref, out = net(*inputs), compiled(*inputs)
    for r, o in zip(ref, out, strict=True):
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_graph_replays_the_eager_network(precision: str) -> None:
    device = torch.device("cuda")
    model = _detector().to(device).configure_inference(precision, channels_last=True)
    net = _network(model)
    inputs = [t.to(device) for t in _inputs()]
    other = [t.to(device) for t in _inputs(seed=2)]
    with torch.no_grad():
        graph = capture_graph(net, inputs)
        for batch in (other, inputs):
            ref = net(*batch)
            out = [o.clone() for o in graph(*batch)]
            for r, o in zip(ref, out, strict=True):
                torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5 * r.abs().max().item())


def test_cuda_graph_option_runs_eagerly_off_cuda_and_survives_copies() -> None:
    """Off CUDA (and in training) ``encode`` runs as before; the option is kept or dropped as
    asked, and a copy of the model (``fold_batchnorm``) gets graphs of its own weights."""
    model = _detector()
    pts, mask, poses = _inputs()
    with torch.no_grad():
        ref = model.encode(pts, mask, poses)
        model.configure_inference(cuda_graph=True)
        assert torch.equal(model.encode(pts, mask, poses), ref)
        assert all(not g.graphs for g in model.encode_graphs.values())  # nothing captured
        model.configure_inference("fp32")  # cuda_graph=None: kept
        assert model.encode_graphs is not None
        folded = fold_batchnorm(model)
        assert all(g.fn.func.__self__ is folded for g in folded.encode_graphs.values())
        model.configure_inference(cuda_graph=False)
        assert model.encode_graphs is None
    cache = GraphCache(lambda x: x * 2)
    x = torch.ones(3)
    assert torch.equal(cache(x), x * 2) and not cache.graphs
    with pytest.raises(ValueError, match="max_graphs"):
        GraphCache(lambda x: x, max_graphs=0)


def test_graph_cache_runs_eagerly_once_a_capture_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A signature whose capture fails (an operator that synchronises, say) runs eagerly from
    then on, with one warning, and is not captured again."""
    import warnings

    import v2x.perception.inference as inference

    attempts = []

    def failing_capture(fn, inputs, warmup=3):  # noqa: ANN001, ANN202 - capture_graph's
        attempts.append(1)
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(inference, "capture_graph", failing_capture)
    cache = GraphCache(lambda x: x * 2)
    monkeypatch.setattr(cache, "capturable", lambda inputs: True)  # as if on CUDA
    x = torch.ones(3)
    with pytest.warns(RuntimeWarning, match="capture failed, running eagerly"):
        assert torch.equal(cache(x), x * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(cache(x), x * 2)
    assert len(attempts) == 1 and not cache.graphs
    assert list(cache.failed.values()) == ["RuntimeError: operation not permitted when stream "
                                           "is capturing"]  # fmt: skip
    cache.clear()
    assert not cache.failed


@pytest.mark.gpu
def test_graph_cache_captures_per_shape_and_returns_fresh_outputs() -> None:
    device = torch.device("cuda")
    model = _detector().to(device).configure_inference("fp32", cuda_graph=True)
    shapes = [_inputs(b=1), _inputs(b=2), _inputs(b=2, seed=5), _inputs(b=3), _inputs(b=4)]
    shapes = [[t.to(device) for t in s] for s in shapes]
    with torch.no_grad():
        outs = [model.encode(*s) for s in shapes]  # b=1, 2 (twice), 3, 4
        graphs = model.encode_graphs[True].graphs
        assert len(graphs) == 4  # one per shape, b=4 the fifth input, the fourth shape
        model.configure_inference("fp32", cuda_graph=False)
        for s, out in zip(shapes, outs, strict=True):  # earlier outputs were not overwritten
            ref = model.encode(*s)
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    cache = GraphCache(lambda x: x * 2, max_graphs=1)
    x = torch.ones(3, device=device, requires_grad=True)
    assert cache(x).requires_grad and not cache.graphs  # autograd recording: eager
    with torch.no_grad():
        assert torch.equal(cache(x), x * 2) and len(cache.graphs) == 1
        twice = torch.full((4,), 2.0, device=device)
        assert torch.equal(cache(torch.ones(4, device=device)), twice)
        assert len(cache.graphs) == 1  # over max_graphs: eager


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_on_cuda_within_tolerance(precision: str) -> None:
    device = torch.device("cuda")
    model = _detector().to(device)
    net, inputs = _network(model), [t.to(device) for t in _inputs()]
    with torch.no_grad():
        ref = net(*inputs)
        model.configure_inference(precision, channels_last=True)
        out = net(*inputs)
    for r, o in zip(ref, out, strict=True):
        err = (o - r).abs().max().item() / r.abs().max().item()
        assert err <= GPU_TOLERANCE[precision], f"{precision}: relative error {err:.4f}"


def _bench():
    return load_benchmark("bench_detector")


#: GPU checks of the benchmark's configurations against the plain fp32 model: cuDNN runs fp32
#: convolutions in TF32 (10-bit mantissa) by default, differently per algorithm and layout, and
#: the standard model is deep; these catch wrong results (stale graph inputs, layout bugs give
#: errors of order 1), not rounding.
GPU_TOLERANCE = {"fp32": 1e-2, "fp16": 2e-2, "bf16": 1e-1}


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["small", "pointpillars"])
def test_benchmark_on_cuda_every_mode_runs_and_matches_the_plain_model(model: str) -> None:
    """The H200 benchmark's code paths on a small grid: a CUDA graph, inductor with CUDA graphs
    (reduce-overhead), the hybrid (inductor's warp and fusion inside one CUDA graph) and the
    Triton warp-and-fusion kernel inside one CUDA graph capture the whole network, and every configuration's outputs match the plain fp32 model within
    ``GPU_TOLERANCE``."""
    rows = _bench().main(["--device", "cuda", "--model", model, "--grid", "64", "32",
                          "--points", "2000", "--batch", "2", "--iters", "2", "--precision",
                          "fp32", "fp16", "bf16", "--modes", "eager", "graph", "compile",
                          "hybrid", "triton", "--compile-mode", "reduce-overhead"])  # fmt: skip
    assert len(rows) == 1 + 3 * 5  # no configuration failed or was skipped
    for r in rows:
        assert r["max_rel_error"] <= GPU_TOLERANCE[r["precision"]], r


def test_benchmark_runs_every_mode_on_cpu() -> None:
    """bench_detector's CPU smoke run: a row per batch x precision x mode, ratios consistent."""
    bench = _bench()
    rows = bench.main(["--device", "cpu", "--model", "small", "--grid", "16", "16", "--agents",
                       "2", "--points", "100", "--batch", "1", "--iters", "1", "--precision",
                       "fp32", "bf16", "--modes", "eager", "graph"])  # fmt: skip
    # 'graph' needs CUDA and is left out on the CPU; the plain fp32 model comes first
    assert [(r["precision"], r["mode"]) for r in rows] == [
        ("fp32", "plain"), ("fp32", "eager"), ("bf16", "eager")
    ]
    assert rows[0]["vs_plain_fp32"] == 1.0 and not rows[0]["channels_last"]
    assert rows[1]["channels_last"]
    assert rows[1]["vs_reference"] == pytest.approx(rows[1]["fps"] / 124.5)
    assert rows[2]["vs_reference"] == pytest.approx(rows[2]["fps"] / 176.7)
    assert rows[2]["vs_plain_fp32"] == pytest.approx(rows[2]["fps"] / rows[0]["fps"])
    assert rows[0]["max_rel_error"] == 0.0  # the reference against itself
    assert 0.0 < rows[1]["max_rel_error"] < 1e-5  # folded batch norms: float32 rounding
    assert rows[1]["max_rel_error"] < rows[2]["max_rel_error"] < TOLERANCE["bf16"]


def test_benchmark_network_with_a_traced_middle_equals_eager() -> None:
    """The 'hybrid' wiring: the warp and fusion traced whole (``fullgraph``: no graph break, so
    inductor can fuse them) and put back between encoder and head give eager's outputs."""
    bench = _bench()
    model = _detector().configure_inference("fp32", channels_last=True)
    fusion = build_fusion("attention")
    pts, mask, poses = _inputs()
    inputs = (pts, mask, poses, relative_level_transforms(poses))
    torch._dynamo.reset()
    middle = torch.compile(bench.warp_fuse_fn(model, fusion), backend="aot_eager", fullgraph=True)
    traced = bench.network_fn(model, fusion, middle)
    with torch.no_grad():
        ref, out = bench.network_fn(model, fusion)(*inputs), traced(*inputs)
        assert bench.hazards_line(model, fusion, inputs) == "none found on meta tensors"
    for r, o in zip(ref, out, strict=True):
        torch.testing.assert_close(o, r, rtol=1e-6, atol=1e-6 * r.abs().max().item())


@pytest.mark.parametrize("backbone", ["small", "pointpillars"])
def test_the_feature_map_shape_is_that_of_the_encoders_maps(backbone: str) -> None:
    """``feature_map_shape`` sizes maps before any is computed (the feature cache's budget,
    payloads known before the air); it must be what ``encode`` returns per agent."""
    model = _detector(backbone)
    pts, mask, poses = _inputs()
    with torch.no_grad():
        maps = model.encode(pts, mask, poses)
    assert tuple(maps.shape[2:]) == model.feature_map_shape
