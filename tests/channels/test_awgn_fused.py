"""The fused Triton AWGN kernel follows the same law as the torch path (CUDA), and draws the
normals its module docstring names: Philox4x32-10 (checked here against an independent numpy
implementation and Random123's known answers) through Box–Muller (interpreter, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from v2x.channels import build_channel


def philox4x32_10(counter: tuple, key: tuple) -> list[np.ndarray]:
    """Philox4x32-10 (Salmon et al., SC 2011) on uint32 arrays: four words per counter."""
    mask = np.uint64(0xFFFFFFFF)
    c0, c1, c2, c3 = (np.asarray(v, dtype=np.uint64) for v in counter)
    k0, k1 = (np.asarray(v, dtype=np.uint64) for v in key)
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * c0, np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = (((p1 >> np.uint64(32)) ^ c1 ^ k0) & mask, p1 & mask,
                          ((p0 >> np.uint64(32)) ^ c3 ^ k1) & mask, p0 & mask)  # fmt: skip
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & mask, (k1 + np.uint64(0xBB67AE85)) & mask
    return [v.astype(np.uint32) for v in (c0, c1, c2, c3)]


def box_muller_normals(words: list[np.ndarray]) -> list[np.ndarray]:
    """Four N(0, 1) from four uint32 words: each word to a uniform in [0, 1) as Triton maps it
    (the int32 folded to non-negative, times 2**-31 rounded down), then two Box–Muller pairs."""
    u = []
    for w in words:
        i = w.view(np.int32).astype(np.int64)
        u.append(np.where(i < 0, -i - 1, i) * 4.6566127342e-10)
    out = []
    for a, b in ((u[0], u[1]), (u[2], u[3])):
        r = np.sqrt(-2.0 * np.log(np.maximum(a, 1e-7)))
        out += [r * np.cos(2 * np.pi * b), r * np.sin(2 * np.pi * b)]
    return out


def test_the_philox_oracle_gives_random123s_known_answers():
    """The oracle against Random123's ``kat_vectors`` for philox4x32-10."""
    cases = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]  # fmt: skip
    for counter, key, words in cases:
        assert [int(w) for w in philox4x32_10(counter, key)] == list(words)


_KERNEL_NORMALS = """
import json, torch
from v2x.channels.awgn_triton import BLOCK, awgn_fused
g = torch.Generator().manual_seed(3)
x = torch.complex(torch.randn(3, 2501, generator=g), torch.randn(3, 2501, generator=g))
variance = torch.tensor([0.5, 1.0, 2.0])
out = {}
for seed in (12345, 12346, 2**31 - 2):
    y = awgn_fused(x, variance, seed)
    noise = (torch.view_as_real(y) - torch.view_as_real(x)).reshape(3, -1)
    out[str(seed)] = (noise / torch.sqrt(variance * 0.5)[:, None]).tolist()
out["block"] = BLOCK
print(json.dumps(out))
"""


def test_the_fused_kernel_draws_philox_box_muller_normals(triton_interpreted):
    """Float ``f`` of row ``r`` gets normal ``j`` of counter ``(q, r, 0, 0)`` under the call's
    seed, ``f = b · BLOCK + j · BLOCK / 4 + i`` and ``q = b · BLOCK / 4 + i``: the oracle's
    numbers to float32 rounding, for 3 rows of 5,002 floats (a partial last block). So no two
    floats of a call, and no two calls, share a draw: calls seeded ``s`` and ``s + 1`` are
    uncorrelated (the kernel before 2026-12-02 keyed rows by ``seed + row``: row ``r + 1`` of
    one call was row ``r`` of the other)."""
    out = triton_interpreted(_KERNEL_NORMALS)
    block = out.pop("block")
    quarter = block // 4
    f = np.arange(5002)
    b, j, i = f // block, (f % block) // quarter, f % quarter
    q = (b * quarter + i).astype(np.uint32)
    for seed, rows in out.items():
        got = np.asarray(rows)
        for r in range(3):
            normals = box_muller_normals(
                philox4x32_10((q, np.full_like(q, r), q * 0, q * 0), (int(seed), 0))
            )
            want = np.choose(j, normals)
            np.testing.assert_allclose(got[r], want, rtol=0, atol=2e-4)
    a, b_next = np.asarray(out["12345"])[1], np.asarray(out["12346"])[0]
    assert abs(np.corrcoef(a, b_next)[0, 1]) < 0.06  # 5,002 pairs: σ = 0.014


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_awgn_noise_statistics_match_the_snr():
    from v2x.common import triton_available

    if not triton_available():
        pytest.skip("triton not installed")
    torch.manual_seed(0)
    x = torch.zeros(3, 400_000, dtype=torch.complex64, device="cuda")
    snr_db = torch.tensor([0.0, 10.0, 20.0], device="cuda")
    channel = build_channel("awgn", validate=False)
    y, state = channel(x, snr_db)
    noise = torch.view_as_real(y - x)
    expected = torch.pow(10.0, -snr_db / 10.0)
    measured = noise.square().sum(-1).mean(-1)  # per complex symbol
    torch.testing.assert_close(measured, expected, rtol=0.01, atol=0)
    # Real and imaginary parts independent, each with variance no/2, zero mean.
    # Mean of 800 000 N(0, no/2) reals: σ = √(no/2/800 000) (7.9e-4 at 0 dB); allow 5 σ per SNR
    # (a flat 3e-3 was 3.8 σ at 0 dB). Power: σ/no = 1/√400 000 = 0.16 %, rtol 1 % = 6.3 σ.
    five_sigma = 5 * torch.sqrt(expected / 2 / noise[0].numel())
    assert bool((noise.mean(dim=(1, 2)).abs() < five_sigma).all())
    corr = (noise[..., 0] * noise[..., 1]).mean(-1) / (expected / 2)
    assert corr.abs().max() < 0.01  # σ = 1/√400 000 = 0.0016: 6.3 σ
    # Seeded: same torch seed, same noise.
    torch.manual_seed(0)
    y2, _ = channel(x, snr_db)
    assert torch.equal(y, y2)
