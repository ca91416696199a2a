"""The warp-and-fusion Triton kernel (``v2x.perception.warp_fusion_triton``) against the torch
path it replaces: ``warp_to_ego`` followed by the ``max`` / ``attention`` fusion (the oracle),
on maps with non-finite values, agents partly off the ego's grid, channels-last and plain
layouts, float32 and bfloat16 maps."""

from __future__ import annotations

import pytest
import torch

#: Run in a subprocess: Triton's CPU interpreter must be on before triton is first imported.
_INTERPRETED = r"""
import json, torch
from v2x.perception.bev import BEVGrid
from v2x.perception.fusion import build_fusion
from v2x.perception.warp import perturb_poses, relative_level_transforms, warp_sampling_grid, warp_to_ego
from v2x.perception.warp_fusion_triton import warp_fuse

grid = BEVGrid(x_range_m=(-6.4, 6.4), y_range_m=(-3.2, 3.2))
b, a, c, h, w = 2, 3, 20, 8, 16
g = torch.Generator().manual_seed(0)
poses = torch.eye(4, dtype=torch.float64).repeat(b, a, 1, 1)
poses[..., 0, 3] = torch.arange(a, dtype=torch.float64) * 4.0  # agents partly off the grid
poses = perturb_poses(poses, 1.0, 0.3, generator=g)
ego_to_agent = relative_level_transforms(poses)
sample_grid, _ = warp_sampling_grid(ego_to_agent, grid, h, w)
out = {}
for layout in ("channels_last", "contiguous"):
    maps = torch.randn(b * a, c, h, w, generator=g)
    maps[1, 3, 2, 5] = float("nan")  # a collaborator's bad cell: dropped
    maps[0, 2, 1, 1] = float("inf")  # the ego's: zeroed
    if layout == "channels_last":
        maps = maps.contiguous(memory_format=torch.channels_last)
    for dtype in (torch.float32, torch.bfloat16):
        feats = maps.to(dtype).view(b, a, c, h, w)
        for mode in ("max", "attention"):
            ref = build_fusion(mode)(*warp_to_ego(feats, ego_to_agent, grid))
            got = warp_fuse(feats, sample_grid, mode, block_cells=4)
            out[f"{layout}/{dtype}/{mode}"] = [
                float((got - ref).abs().max() / ref.abs().max()), bool(torch.isfinite(got).all()),
                bool(got.is_contiguous(memory_format=torch.channels_last)), list(got.shape),
            ]
print(json.dumps(out))
"""


def test_kernel_matches_warp_and_fusion_in_the_interpreter(triton_interpreted) -> None:
    out = triton_interpreted(_INTERPRETED)
    assert len(out) == 8
    for case, (err, finite, nhwc, shape) in out.items():
        assert err < 1e-5, case  # float32 summation order; the maps' dtype is the oracle's too
        assert finite and nhwc and shape == [2, 20, 8, 16], case


#: The ego-side fusion (``fuse_collaborators``) against ``fuse_at_ego``'s torch path: warp
#: (``sample_maps``), then the fusion's ``fuse_warped`` with the ego repeated per block.
_INTERPRETED_EGO = r"""
import json, torch
from v2x.perception.bev import BEVGrid
from v2x.perception.fusion import build_fusion
from v2x.perception.warp import perturb_poses, relative_level_transforms, warp_sampling_grid, sample_maps
from v2x.perception.warp_fusion_triton import fuse_collaborators

grid = BEVGrid(x_range_m=(-6.4, 6.4), y_range_m=(-3.2, 3.2))
e, u, m, c, h, w = 2, 2, 3, 20, 8, 16  # 2 frames x 2 condition blocks, 3 collaborators
n = u * e
g = torch.Generator().manual_seed(0)
poses = torch.eye(4, dtype=torch.float64).repeat(n, m + 1, 1, 1)
poses[..., 0, 3] = torch.arange(m + 1, dtype=torch.float64) * 4.0  # partly off the grid
poses = perturb_poses(poses, 1.0, 0.3, generator=g)
sample_grid, coverage = warp_sampling_grid(relative_level_transforms(poses)[:, 1:], grid, h, w)
valid = coverage.view(n, m, 1, h, w) & (torch.rand(n, m, 1, h, w, generator=g) < 0.8)
valid[1, 2] = False  # a collaborator that sent nothing
out = {}
for layout in ("contiguous", "channels_last"):
    maps = torch.randn(n * m, c, h, w, generator=g)
    maps[1, 3, 2, 5] = float("nan")  # a collaborator's bad cell: dropped
    maps[4, 0, 3, 3] = float("-inf")
    own = torch.randn(e, c, h, w, generator=g)
    own[0, 2, 1, 1] = float("inf")  # the ego's: zeroed
    if layout == "channels_last":
        maps = maps.contiguous(memory_format=torch.channels_last)
    for dtype in (torch.float32, torch.bfloat16):
        collab = maps.to(dtype).view(n, m, c, h, w)
        ego = own.to(dtype).view(e, 1, c, h, w)
        warped = sample_maps(collab.reshape(-1, c, h, w), sample_grid).view(n, m, c, h, w)
        for mode in ("max", "attention"):
            ref = build_fusion(mode).fuse_warped(ego.repeat(u, 1, 1, 1, 1), warped.clone(), valid)
            got = fuse_collaborators(ego, collab, sample_grid, valid, mode, block_cells=4)
            out[f"{layout}/{dtype}/{mode}"] = [
                float((got - ref).abs().max() / ref.abs().max()), bool(torch.isfinite(got).all()),
                bool(got.is_contiguous(memory_format=torch.channels_last)), list(got.shape),
            ]
print(json.dumps(out))
"""


def test_ego_side_kernel_matches_fuse_at_ego_in_the_interpreter(triton_interpreted) -> None:
    """``fuse_collaborators`` = warp + ``fuse_warped`` (the oracle, torch): valid masks with
    holes and an absent collaborator, NaN / −inf in collaborators, +inf in the ego, the ego
    repeated over condition blocks, both layouts, float32 and bfloat16, max and attention."""
    out = triton_interpreted(_INTERPRETED_EGO)
    assert len(out) == 8
    for case, (err, finite, contiguous, shape) in out.items():
        limit = 1e-6 if case.endswith("/max") else 1e-5  # max: the bilinear sample's rounding
        assert err <= limit, (case, err)
        assert finite and contiguous and shape == [4, 20, 8, 16], case  # channels-last


_FLOAT16_MAPS = r"""
import json, torch
from v2x.perception.warp_fusion_triton import fuse_collaborators
g = torch.Generator().manual_seed(2)
n, m, c, h, w = 2, 3, 20, 8, 16
grid = torch.rand(n * m, h, w, 2, generator=g) * 2.4 - 1.2
valid = torch.rand(n, m, 1, h, w, generator=g) < 0.8
ego = torch.randn(n, 1, c, h, w, generator=g)
out = {}
for layout in ("contiguous", "channels_last"):
    maps = (torch.randn(n * m, c, h, w, generator=g) * 3).half()
    if layout == "channels_last":
        maps = maps.contiguous(memory_format=torch.channels_last)
    collab = maps.view(n, m, c, h, w)
    for mode in ("max", "attention"):
        half = fuse_collaborators(ego, collab, grid, valid, mode, block_cells=4)
        wide = fuse_collaborators(ego, collab.float(), grid, valid, mode, block_cells=4)
        out[f"{layout}/{mode}"] = torch.equal(half, wide)
print(json.dumps(out))
"""


def test_float16_collaborators_fuse_as_their_float32_values_in_the_interpreter(
    triton_interpreted,
) -> None:
    """Collaborators' float16 maps (identity's payload, DeepJSCC's fp16 maps in CUDA inference)
    give the fused map of the same values in float32, bit for bit: the kernel widens them on
    load, exactly, and computes in float32. Both layouts, max and attention."""
    out = triton_interpreted(_FLOAT16_MAPS)
    assert len(out) == 4 and all(out.values()), out


#: ``fuse_collaborators`` writing the fused map in float16: the float32 map rounded once.
_INTERPRETED_EGO_DTYPE = r"""
import json, torch
from v2x.perception.warp_fusion_triton import fuse_collaborators

n, m, c, h, w = 2, 2, 8, 4, 8
g = torch.Generator().manual_seed(3)
sample_grid = torch.rand(n * m, h, w, 2, generator=g) * 2.4 - 1.2  # some cells off the map
valid = torch.rand(n, m, 1, h, w, generator=g) < 0.8
collab = (torch.randn(n, m, c, h, w, generator=g) * 3).half()
ego = torch.randn(1, 1, c, h, w, generator=g) * 3
out = {}
for mode in ("max", "attention"):
    f32 = fuse_collaborators(ego, collab, sample_grid, valid, mode, block_cells=4)
    f16 = fuse_collaborators(ego, collab, sample_grid, valid, mode, block_cells=4,
                             dtype=torch.float16)
    out[mode] = [str(f16.dtype), torch.equal(f16, f32.half()),
                 bool(f16.is_contiguous(memory_format=torch.channels_last))]
print(json.dumps(out))
"""


def test_fused_map_in_float16_is_the_float32_map_rounded_in_the_interpreter(
    triton_interpreted,
) -> None:
    """The ego-side kernel's fused map written in float16 (``dtype``): the float32 map
    ``.half()`` bit for bit (one rounding to nearest even on the store), channels-last."""
    out = triton_interpreted(_INTERPRETED_EGO_DTYPE)
    assert out == {mode: ["torch.float16", True, True] for mode in ("max", "attention")}


def test_fused_map_dtype_is_checked() -> None:
    pytest.importorskip("triton")
    from v2x.perception.warp_fusion_triton import fuse_collaborators

    with pytest.raises(ValueError, match="dtype must be one of"):
        fuse_collaborators(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 2, 2, 2),
                           torch.zeros(1, 2, 2, 2), torch.ones(1, 1, 1, 2, 2, dtype=torch.bool),
                           "max", dtype=torch.float64)  # fmt: skip


def test_fused_map_dtype_follows_the_head() -> None:
    from v2x.perception.detector import CoopDetector, DetectorConfig
    from v2x.perception.ego_fusion import _head_input_dtype

    model = CoopDetector(DetectorConfig())
    assert _head_input_dtype(model) == torch.float32
    for precision, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        model.configure_inference(precision)
        assert _head_input_dtype(model) == dtype
    model.configure_inference("fp32")
    assert _head_input_dtype(model) == torch.float32
    assert _head_input_dtype(torch.nn.Module()) == torch.float32  # no head: float32


def test_mode_and_shapes_are_checked() -> None:
    pytest.importorskip("triton")
    from v2x.perception.warp_fusion_triton import warp_fuse

    feats = torch.zeros(1, 2, 3, 4, 4)
    with pytest.raises(ValueError, match="mode"):
        warp_fuse(feats, torch.zeros(2, 4, 4, 2), "mean")
    with pytest.raises(ValueError, match="sample_grid"):
        warp_fuse(feats, torch.zeros(3, 4, 4, 2), "max")


def _agents_in_a_row(frames: int, agents: int, g: torch.Generator) -> torch.Tensor:
    """``[frames, agents, 4, 4]`` ego-to-agent transforms: agents 6 m apart along x, poses
    perturbed (1 m, 0.3 rad), so that each agent's map covers part of the ego's grid."""
    from v2x.perception.warp import perturb_poses, relative_level_transforms

    poses = torch.eye(4, dtype=torch.float64).repeat(frames, agents, 1, 1)
    poses[..., 0, 3] = torch.arange(agents, dtype=torch.float64) * 6.0
    return relative_level_transforms(perturb_poses(poses, 1.0, 0.3, generator=g))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("mode", ["max", "attention"])
def test_kernel_matches_warp_and_fusion_on_cuda(mode: str, dtype: torch.dtype) -> None:
    """The benchmark's shape class (384 channels, 5 agents, channels-last) on the GPU."""
    from v2x.perception.bev import BEVGrid
    from v2x.perception.fusion import build_fusion
    from v2x.perception.warp import warp_sampling_grid, warp_to_ego
    from v2x.perception.warp_fusion_triton import warp_fuse

    device = torch.device("cuda")
    grid = BEVGrid(x_range_m=(-28.8, 28.8), y_range_m=(-12.8, 12.8))
    b, a, c = 2, 5, 384
    h, w = grid.height // 2, grid.width // 2
    g = torch.Generator().manual_seed(1)
    ego_to_agent = _agents_in_a_row(b, a, g)
    maps = torch.randn(b * a, c, h, w, generator=g)
    maps[3, 7, 5, 9] = float("nan")
    feats = maps.to(device, dtype).contiguous(memory_format=torch.channels_last)
    feats = feats.view(b, a, c, h, w)
    ego_to_agent = ego_to_agent.to(device)
    sample_grid, _ = warp_sampling_grid(ego_to_agent, grid, h, w)
    ref = build_fusion(mode)(*warp_to_ego(feats, ego_to_agent, grid))
    got = warp_fuse(feats, sample_grid, mode)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


@pytest.mark.parametrize("kernel_name", ["_warp_fuse_kernel", "_fuse_at_ego_kernel"])
@pytest.mark.parametrize(
    ("dtype", "mode", "out_dtype"),
    [("fp16", "attention", "fp32"), ("fp32", "max", "fp32"), ("fp16", "max", "fp16"),
     ("fp32", "attention", "bf16")],
)  # fmt: skip
def test_kernel_compiles_for_hopper_without_a_gpu(
    dtype: str, mode: str, out_dtype: str, kernel_name: str
) -> None:
    """Triton's compiler down to an sm_90 cubin (its bundled ptxas; no GPU needed): catches what
    the interpreter lets through (types, layouts, unsupported operations), for both kernels and
    fused maps written in float32, float16 and bfloat16."""
    triton = pytest.importorskip("triton")
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError:
        pytest.skip("this triton has no ASTSource/GPUTarget")
    from v2x.perception import warp_fusion_triton

    kernel = getattr(warp_fusion_triton, kernel_name)
    signature = {"f_ptr": f"*{dtype}", "g_ptr": "*fp32", "out_ptr": f"*{out_dtype}", "sqrt_c": "fp32"}
    signature.update({"e_ptr": f"*{dtype}", "v_ptr": "*u8"})
    consts = {"ATTENTION": mode == "attention", "BLOCK_P": 4, "BLOCK_C": 512}
    if kernel_name == "_warp_fuse_kernel":  # channels-last maps and output
        consts.update(s_c=1, o_c=1)
    else:  # channels-first maps and output
        consts.update(e_x=1, s_x=1, o_x=1)
    ints = [n for n in kernel.arg_names if n not in signature and n not in consts]
    signature.update({n: "i32" for n in ints})
    signature.update({n: "constexpr" for n in consts})
    signature = {n: signature[n] for n in kernel.arg_names}
    constexprs = {(kernel.arg_names.index(n),): v for n, v in consts.items()}
    try:
        src = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
        out = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    except (RuntimeError, FileNotFoundError) as err:  # no NVIDIA backend / ptxas in this wheel
        if "ptxas" in str(err).lower() or "backend" in str(err).lower():
            pytest.skip(f"no CUDA toolchain in this triton: {err}")
        raise
    assert "cubin" in out.asm and out.asm["ptx"].count("st.global") > 0


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["max", "attention"])
def test_ego_side_kernel_matches_fuse_at_ego_on_cuda(mode: str) -> None:
    """The sweep's shape class on the GPU: 384 channels-first channels, 4 collaborators, 3
    condition blocks sharing the ego's maps, holes in ``valid``; and ``fuse_at_ego`` takes the
    kernel there (its fused map equals ``fuse_collaborators``')."""
    from v2x.perception.bev import BEVGrid
    from v2x.perception.ego_fusion import _kernel_mode, fuse_at_ego
    from v2x.perception.fusion import build_fusion
    from v2x.perception.warp import sample_maps, warp_sampling_grid
    from v2x.perception.warp_fusion_triton import fuse_collaborators

    device = torch.device("cuda")
    grid = BEVGrid(x_range_m=(-28.8, 28.8), y_range_m=(-12.8, 12.8))
    e, u, m, c = 2, 3, 4, 384
    n = e * u
    h, w = grid.height // 2, grid.width // 2
    g = torch.Generator().manual_seed(1)
    rel = _agents_in_a_row(n, m + 1, g)[:, 1:]
    sample_grid, coverage = warp_sampling_grid(rel.to(device), grid, h, w)
    holes = torch.rand(n, m, 1, h, w, generator=g) < 0.9
    valid = coverage.view(n, m, 1, h, w) & holes.to(device)
    maps = torch.randn(n, m, c, h, w, generator=g)
    maps[3, 1, 7, 5, 9] = float("nan")
    collab, ego = maps.to(device), torch.randn(e, 1, c, h, w, generator=g).to(device)
    fusion = build_fusion(mode)
    warped = sample_maps(collab.reshape(-1, c, h, w), sample_grid).view(n, m, c, h, w)
    ref = fusion.fuse_warped(ego.repeat(u, 1, 1, 1, 1), warped, valid)
    got = fuse_collaborators(ego, collab, sample_grid, valid, mode)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    with torch.no_grad():
        assert _kernel_mode(fusion, ego, collab) == mode
        head = torch.nn.Module()
        head.head = lambda x: (x[:, :1], x[:, 1:2])
        fused, heat, reg = fuse_at_ego(head, fusion, ego, collab, sample_grid, valid)
    assert torch.equal(fused, got)
    # the fused map is channels-last; what the head gives the decoder is contiguous
    assert fused.is_contiguous(memory_format=torch.channels_last)
    assert heat.is_contiguous() and reg.is_contiguous() and torch.equal(heat, got[:, :1])


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_head_at_reduced_precision_reads_the_fused_map_in_its_dtype_with_the_same_bits(
    precision: str,
) -> None:
    """With the head at fp16 / bf16, ``fuse_at_ego``'s kernel writes the fused map in that dtype:
    the float32 map ``.to(dtype)`` bit for bit, and the head's outputs equal those of the float32
    map under the head's autocast (its first convolution's cast gave the same bits)."""
    from unittest import mock

    from v2x.perception import ego_fusion
    from v2x.perception.bev import BEVGrid
    from v2x.perception.fusion import build_fusion
    from v2x.perception.head import CenterHead
    from v2x.perception.warp import warp_sampling_grid

    device = torch.device("cuda")
    grid = BEVGrid(x_range_m=(-28.8, 28.8), y_range_m=(-12.8, 12.8))
    e, u, m, c = 2, 2, 3, 64
    n = e * u
    h, w = grid.height // 2, grid.width // 2
    g = torch.Generator().manual_seed(5)
    sample_grid, coverage = warp_sampling_grid(_agents_in_a_row(n, m + 1, g)[:, 1:].to(device),
                                               grid, h, w)  # fmt: skip
    valid = coverage.view(n, m, 1, h, w)
    collab = torch.randn(n, m, c, h, w, generator=g).to(device).half()
    ego = torch.randn(e, 1, c, h, w, generator=g).to(device)
    model = torch.nn.Module()
    model.head = CenterHead(c, 4, 32).to(device).eval()
    model.head.precision = precision
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    for mode in ("max", "attention"):
        fusion = build_fusion(mode)
        with torch.no_grad():
            fused, heat, reg = ego_fusion.fuse_at_ego(model, fusion, ego, collab, sample_grid, valid)
            with mock.patch.object(ego_fusion, "_head_input_dtype", lambda _: torch.float32):
                fused32, heat32, reg32 = ego_fusion.fuse_at_ego(
                    model, fusion, ego, collab, sample_grid, valid
                )
        assert fused.dtype == dtype and fused32.dtype == torch.float32
        assert torch.equal(fused, fused32.to(dtype)), mode
        assert torch.equal(heat, heat32) and torch.equal(reg, reg32), mode
