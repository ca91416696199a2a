"""One Triton kernel for the warp and the fusion of a frame's maps (inference, CUDA).

``warp_fuse(features, sample_grid, mode)`` computes what ``warp_to_ego`` followed by the
``max`` or ``attention`` fusion (``v2x.perception.fusion``) computes, in one pass: each program
takes a block of ego cells of one frame, and for every agent gathers the four bilinear corners
of each cell from the agent's map (all channels: with a channels-last map each corner is one
contiguous row), masks the cell as ``clean_mask`` does (outside the agent's grid or not finite:
dropped; the ego's own values with non-finite entries zeroed) and folds it into the running
result (the maximum, or the attention's softmax-weighted sum kept online: running maximum logit,
normaliser and accumulator, as in flash attention). The warped maps are never written: about
one read of the maps and one write of the fused map instead of a dozen passes over
``[B, A, C, h, w]``. Same values as the torch path up to float32 summation order (the maximum
exactly).

Imported with ``TRITON_INTERPRET=1`` the kernel runs on CPU tensors (tests).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from v2x.common import on_device_of

MODES = ("max", "attention")


@triton.jit
def _corner(base, cx, cy, wk, pm, coff, cm, H, W, s_y, s_x):
    """One bilinear corner: ``wk ·`` the map's row at ``(cy, cx)`` ``[BLOCK_P, BLOCK_C]`` float32,
    0 where the corner is outside the map (``grid_sample``'s zeros padding adds nothing)."""
    inb = pm & (cx >= 0) & (cx < W) & (cy >= 0) & (cy < H)
    off = cy.to(tl.int64) * s_y + cx.to(tl.int64) * s_x
    v = tl.load(base + off[:, None] + coff, mask=inb[:, None] & cm[None, :], other=0.0)
    return tl.where(inb[:, None], v.to(tl.float32) * wk[:, None], 0.0)


@triton.jit
def _sample(f_ptr, g_ptr, b, a, A, p, pm, coff, cm, H, W, h, w, s_b, s_a, s_y, s_x):
    """Agent ``a``'s map of frame ``b`` at the ego cells ``p``: ``grid_sample`` (bilinear, zeros
    padding, ``align_corners=False``; corners summed in its order) ``[BLOCK_P, BLOCK_C]`` and
    whether each cell lies inside the agent's grid ``[BLOCK_P]``."""
    goff = ((b * A + a).to(tl.int64) * h * w + p) * 2
    gx = tl.load(g_ptr + goff, mask=pm, other=0.0)
    gy = tl.load(g_ptr + goff + 1, mask=pm, other=0.0)
    covered = (tl.abs(gx) <= 1.0) & (tl.abs(gy) <= 1.0)
    ix = ((gx + 1.0) * W - 1.0) / 2.0
    iy = ((gy + 1.0) * H - 1.0) / 2.0
    # far outside the map every corner is anyway: clamped, the integer corners stay in range
    # (identical inside [-2, size + 1])
    ix = tl.minimum(tl.maximum(ix, -2.0), W + 1.0)
    iy = tl.minimum(tl.maximum(iy, -2.0), H + 1.0)
    x0f = tl.floor(ix)
    y0f = tl.floor(iy)
    x1f = x0f + 1.0
    y1f = y0f + 1.0
    x0 = x0f.to(tl.int32)
    y0 = y0f.to(tl.int32)
    base = f_ptr + (b.to(tl.int64) * s_b + a * s_a)  # a · s_a: one map, < 2^31
    val = _corner(base, x0, y0, (x1f - ix) * (y1f - iy), pm, coff, cm, H, W, s_y, s_x)
    val += _corner(base, x0 + 1, y0, (ix - x0f) * (y1f - iy), pm, coff, cm, H, W, s_y, s_x)
    val += _corner(base, x0, y0 + 1, (x1f - ix) * (iy - y0f), pm, coff, cm, H, W, s_y, s_x)
    val += _corner(base, x0 + 1, y0 + 1, (ix - x0f) * (iy - y0f), pm, coff, cm, H, W, s_y, s_x)
    return val, covered


@triton.jit
def _program_cells(h, w, C, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's ego cells ``p`` (block ``program_id(0)``, mask ``pm``, row ``y``, column
    ``x``) ``[BLOCK_P]`` and the channels ``c`` (mask ``cm``) ``[BLOCK_C]``."""
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    y = p // w
    c = tl.arange(0, BLOCK_C)
    return p, p < h * w, y, p - y * w, c, c < C


@triton.jit
def _fold(acc, m_run, l_run, q, val, usable, cm, sqrt_c, ATTENTION: tl.constexpr):
    """Fold one agent's sampled map ``val [BLOCK_P, BLOCK_C]`` into the running result ``acc``
    where ``usable [BLOCK_P]`` and every channel of the cell is finite: the maximum
    (finfo(float32).min elsewhere), or the attention's softmax-weighted sum kept online against
    the ego's query ``q`` (running maximum logit ``m_run`` and normaliser ``l_run``)."""
    finite = tl.where(cm[None, :], tl.abs(val) < float("inf"), True)
    valid = usable & (tl.min(finite.to(tl.int32), axis=1) > 0)
    f = tl.where(valid[:, None], val, 0.0)
    if ATTENTION:
        logit = tl.where(valid, tl.sum(q * f, axis=1) / sqrt_c, float("-inf"))
        m_new = tl.maximum(m_run, logit)
        scale = tl.exp(m_run - m_new)
        pw = tl.exp(logit - m_new)
        l_run = l_run * scale + pw
        acc = acc * scale[:, None] + pw[:, None] * f
        m_run = m_new
    else:
        acc = tl.maximum(acc, tl.where(valid[:, None], f, -3.4028234663852886e38))
    return acc, m_run, l_run


#: (ego cells per program, warps) tried by the autotuner on first use of a shape: none spills
#: registers on sm_90 with 384 channels (16 cells on 8 warps, or 8 on 16, would)
TUNED = [(2, 2), (2, 4), (4, 4), (4, 8), (8, 8)]


@triton.jit
def _warp_fuse_kernel(
    f_ptr, g_ptr, out_ptr,
    A, C, H, W, h, w,
    s_b, s_a, s_c, s_y, s_x,
    o_b, o_c, o_y, o_x,
    sqrt_c,
    ATTENTION: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    # features [B, A, C, H, W] (strides s_*), sample grid [B·A, h, w, 2] contiguous float32,
    # out [B, C, h, w] float32 (strides o_*); program (cell block, frame)
    b = tl.program_id(1)
    p, pm, y, x, c, cm = _program_cells(h, w, C, BLOCK_P, BLOCK_C)
    coff = c.to(tl.int64)[None, :] * s_c
    # the ego: always used, its non-finite entries zeroed (clean_mask)
    val, _ = _sample(f_ptr, g_ptr, b, 0, A, p, pm, coff, cm, H, W, h, w, s_b, s_a, s_y, s_x)
    q = tl.where(tl.abs(val) < float("inf"), val, 0.0)  # False for inf and nan
    acc = q
    m_run = tl.sum(q * q, axis=1) / sqrt_c  # attention: running max logit, normaliser
    l_run = tl.full([BLOCK_P], 1.0, dtype=tl.float32)
    for a in range(1, A):
        val, covered = _sample(
            f_ptr, g_ptr, b, a, A, p, pm, coff, cm, H, W, h, w, s_b, s_a, s_y, s_x
        )
        acc, m_run, l_run = _fold(acc, m_run, l_run, q, val, covered, cm, sqrt_c, ATTENTION)
    if ATTENTION:
        acc = acc / l_run[:, None]
    ooff = b.to(tl.int64) * o_b + (y.to(tl.int64) * o_y + x.to(tl.int64) * o_x)[:, None]
    tl.store(out_ptr + ooff + c.to(tl.int64)[None, :] * o_c, acc, mask=pm[:, None] & cm[None, :])


@triton.jit
def _fuse_at_ego_kernel(
    e_ptr, f_ptr, g_ptr, v_ptr, out_ptr,
    M, C, H, W, h, w, E,
    e_n, e_c, e_y, e_x,
    s_n, s_m, s_c, s_y, s_x,
    o_n, o_c, o_y, o_x,
    sqrt_c,
    ATTENTION: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    # ego [E, C, h, w] (strides e_*; row n % E of fused map n, read in place: already on the
    # ego's grid), collaborators [N, M, C, H, W] (strides s_*), sample grid [N·M, h, w, 2] and
    # valid [N·M, h·w] uint8 contiguous, out [N, C, h, w] float32, float16 or bfloat16 (strides
    # o_*; the store rounds to nearest even); program (cell block, fused map)
    n = tl.program_id(1)
    p, pm, y, x, c, cm = _program_cells(h, w, C, BLOCK_P, BLOCK_C)
    cell = (y.to(tl.int64) * e_y + x.to(tl.int64) * e_x)[:, None]
    own = e_ptr + (n % E).to(tl.int64) * e_n + cell + c.to(tl.int64)[None, :] * e_c
    val = tl.load(own, mask=pm[:, None] & cm[None, :], other=0.0).to(tl.float32)
    q = tl.where(tl.abs(val) < float("inf"), val, 0.0)  # nan_to_num: False for inf and nan
    acc = q
    m_run = tl.sum(q * q, axis=1) / sqrt_c  # attention: running max logit, normaliser
    l_run = tl.full([BLOCK_P], 1.0, dtype=tl.float32)
    coff = c.to(tl.int64)[None, :] * s_c
    for a in range(0, M):
        val, _ = _sample(f_ptr, g_ptr, n, a, M, p, pm, coff, cm, H, W, h, w, s_n, s_m, s_y, s_x)
        sent = tl.load(v_ptr + (n * M + a).to(tl.int64) * h * w + p, mask=pm, other=0) != 0
        acc, m_run, l_run = _fold(acc, m_run, l_run, q, val, sent, cm, sqrt_c, ATTENTION)
    if ATTENTION:
        acc = acc / l_run[:, None]
    ooff = n.to(tl.int64) * o_n + (y.to(tl.int64) * o_y + x.to(tl.int64) * o_x)[:, None]
    tl.store(out_ptr + ooff + c.to(tl.int64)[None, :] * o_c, acc, mask=pm[:, None] & cm[None, :])


_tuned_kernel = triton.autotune(
    configs=[triton.Config({"BLOCK_P": p}, num_warps=nw) for p, nw in TUNED],
    key=["A", "C", "h", "w"],
)(_warp_fuse_kernel)


def warp_fuse(
    features: torch.Tensor, sample_grid: torch.Tensor, mode: str, block_cells: int | None = None
) -> torch.Tensor:
    """Warp every agent's map to the ego's grid and fuse them in one kernel.

    Args:
        features: ``[B, A, C, H, W]`` maps (any float dtype, any strides; channels-last maps
            make each corner read contiguous), ego at index 0.
        sample_grid: ``[B·A, h, w, 2]`` float32 from ``warp_sampling_grid`` (its coverage is
            recomputed here: ``|grid| <= 1``).
        mode: ``"max"`` or ``"attention"`` (the fusions of those names).
        block_cells: ego cells per program (4 warps); ``None``: on CUDA the fastest of
            ``TUNED``, timed by Triton's autotuner on the first call of each shape (outside any
            CUDA graph capture: warm up first, as ``capture_graph`` does), else 4.

    Returns: ``[B, C, h, w]`` float32 with channels-last strides.
    """
    if mode not in MODES:
        raise ValueError(f"warp_fuse: mode must be one of {', '.join(MODES)}, got {mode!r}")
    b, a, c, hh, ww = features.shape
    if sample_grid.shape[0] != b * a or sample_grid.shape[-1] != 2:
        raise ValueError(
            f"warp_fuse: sample_grid {tuple(sample_grid.shape)} does not match {b}x{a} maps"
        )
    h, w = sample_grid.shape[1:3]
    grid = sample_grid.float().contiguous()
    out = torch.empty(b, c, h, w, device=features.device, dtype=torch.float32,
                      memory_format=torch.channels_last)  # fmt: skip
    args = (features, grid, out, a, c, hh, ww, h, w, *features.stride(), *out.stride(),
            math.sqrt(c))  # fmt: skip
    consts = {"ATTENTION": mode == "attention", "BLOCK_C": triton.next_power_of_2(c)}
    with on_device_of(features):
        if block_cells is None and features.is_cuda:
            _tuned_kernel[lambda meta: (triton.cdiv(h * w, meta["BLOCK_P"]), b)](*args, **consts)
        else:  # (the interpreter, on CPU tensors, has no timer to autotune with)
            block = block_cells or 4
            launch = (triton.cdiv(h * w, block), b)
            _warp_fuse_kernel[launch](*args, **consts, BLOCK_P=block, num_warps=4)
    return out


#: (ego cells per program, warps) of ``_fuse_at_ego_kernel`` on CUDA by the collaborators'
#: layout (channels-last: each bilinear corner one contiguous row), the fastest timed on an
#: H200 for 384 channels, writing the channels-last fused map
#: (``docs/results/h200_2026-12-02e/``, ``bench_ego_fusion.py``): channels-last 1 cell on 1 warp,
#: 124 µs per fused 128 x 128 map of 4 collaborators against 137 for 2 on 2 and 158 for 16 on 8
#: (154 µs per map in the sweep writing channels-first, the layout before, 86 after);
#: dtypes ``fuse_collaborators`` may write the fused map in
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: channels-first 16 on 8 (1.26x warp + fusion in torch; 1-4 cells: 0.6x; tiles transposed to
#: put cells on consecutive threads: 0.09-0.67x).
EGO_LAUNCH = {True: (1, 1), False: (16, 8)}


def fuse_collaborators(
    ego: torch.Tensor,
    collaborators: torch.Tensor,
    sample_grid: torch.Tensor,
    valid: torch.Tensor,
    mode: str,
    block_cells: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """What ``v2x.perception.ego_fusion.fuse_at_ego`` fuses before the head, in one kernel:
    the collaborators' maps warped to the ego's grid (``sample_maps``), their invalid or
    non-finite cells dropped, fused with the ego's own map (read in place, its non-finite
    entries zeroed) by the ``max`` or ``attention`` fusion (``fuse_warped``'s values; the
    maximum exactly, up to the float32 rounding of the bilinear sample).

    Args:
        ego: ``[E, 1, C, h, w]`` the ego's maps (any float dtype and strides); fused map ``n``
            uses ego row ``n % E`` (``E`` divides ``N``: one ego map per frame, repeated for
            each block of conditions).
        collaborators: ``[N, M, C, H, W]`` what arrived of each collaborator's map (any float
            dtype and strides).
        sample_grid: ``[N·M, h, w, 2]`` where each ego cell samples each collaborator's map.
        valid: ``[N, M, 1, h, w]`` bool, the ego cells each collaborator may fuse into.
        mode: ``"max"`` or ``"attention"``.
        block_cells: ego cells per program (default ``EGO_LAUNCH``'s).
        dtype: of the fused map: float32, or float16 / bfloat16 (computed in float32 and
            rounded once to nearest even on the store: the bits of the float32 map
            ``.to(dtype)``, which a head under that dtype's autocast would read).

    Returns: ``[N, C, h, w]`` of ``dtype`` with channels-last strides (each cell's channels
    written as one row; the head's convolutions take that layout without a transpose).
    """
    if mode not in MODES:
        raise ValueError(
            f"fuse_collaborators: mode must be one of {', '.join(MODES)}, got {mode!r}"
        )
    if dtype not in FUSED_DTYPES:
        raise ValueError(
            f"fuse_collaborators: dtype must be one of {', '.join(map(str, FUSED_DTYPES))}, "
            f"got {dtype}"
        )
    n, m, c, hh, ww = collaborators.shape
    e = ego.shape[0]
    h, w = sample_grid.shape[1:3]
    if ego.shape[1:] != (1, c, h, w) or e == 0 or n % e:
        raise ValueError(
            f"fuse_collaborators: ego {tuple(ego.shape)} does not match {n} maps of {c}x{h}x{w}"
        )
    if sample_grid.shape != (n * m, h, w, 2) or valid.shape != (n, m, 1, h, w):
        raise ValueError(
            f"fuse_collaborators: sample_grid {tuple(sample_grid.shape)} / valid "
            f"{tuple(valid.shape)} do not match {n}x{m} maps on a {h}x{w} grid"
        )
    grid = sample_grid.float().contiguous()
    sent = valid.reshape(n * m, h * w).to(torch.uint8).contiguous()
    out = torch.empty(n, c, h, w, device=collaborators.device, dtype=dtype,
                      memory_format=torch.channels_last)  # fmt: skip
    block, warps = EGO_LAUNCH[collaborators.stride(2) == 1]
    block = block_cells or block
    own = ego[:, 0]
    with on_device_of(collaborators):
        _fuse_at_ego_kernel[(triton.cdiv(h * w, block), n)](
            own, collaborators, grid, sent, out, m, c, hh, ww, h, w, e,
            *own.stride(), *collaborators.stride(), *out.stride(), math.sqrt(c),
            ATTENTION=mode == "attention", BLOCK_P=block, BLOCK_C=triton.next_power_of_2(c),
            num_warps=warps,
        )  # fmt: skip
    return out
