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
h_row = torch.complex(torch.randn(3, 1, generator=g), torch.randn(3, 1, generator=g))
h_sym = torch.complex(torch.randn(3, 2501, generator=g), torch.randn(3, 2501, generator=g))
variance = torch.tensor([0.5, 1.0, 2.0])
std = torch.sqrt(variance * 0.5)[:, None, None]
out = {"normals": {}}
for seed in (12345, 12346, 2**31 - 2):
    y = awgn_fused(x, variance, seed)
    noise = (torch.view_as_real(y) - torch.view_as_real(x)) / std
    out["normals"][str(seed)] = noise.tolist()
gain_noise = {}
for name, h in (("row", h_row), ("symbol", h_sym)):
    y = awgn_fused(x, variance, 12345, gain=h)
    gain_noise[name] = ((torch.view_as_real(y) - torch.view_as_real(h * x)) / std).tolist()
out["gain"] = gain_noise
out["block"] = BLOCK
print(json.dumps(out))
"""


def test_the_fused_kernel_draws_philox_box_muller_normals(triton_interpreted):
    """Symbol ``s`` of row ``r`` gets the first (``j = 0``) or second (``j = 1``) pair of
    normals of counter ``(q, r, 0, 0)`` under the call's seed, ``s = b · BLOCK + j · BLOCK / 2 +
    i`` and ``q = b · BLOCK / 2 + i``: the oracle's numbers to float32 rounding, for 3 rows of
    2,501 symbols (a partial last block). So no two symbols of a call, and no two calls, share
    a draw: calls seeded ``s`` and ``s + 1`` are uncorrelated (the kernel before 2026-12-02
    keyed rows by ``seed + row``: row ``r + 1`` of one call was row ``r`` of the other). With a
    gain, one per row or per symbol, ``y − h·x`` is the same noise."""
    out = triton_interpreted(_KERNEL_NORMALS)
    block = out["block"]
    half = block // 2
    sym = np.arange(2501)
    b, j, i = sym // block, (sym % block) // half, sym % half
    q = (b * half + i).astype(np.uint32)
    for seed, rows in out["normals"].items():
        got = np.asarray(rows)  # [3, 2501, 2]
        for r in range(3):
            n = box_muller_normals(
                philox4x32_10((q, np.full_like(q, r), q * 0, q * 0), (int(seed), 0))
            )
            want = np.stack([np.where(j == 0, n[0], n[2]), np.where(j == 0, n[1], n[3])], -1)
            np.testing.assert_allclose(got[r], want, rtol=0, atol=2e-4)
    first = np.asarray(out["normals"]["12345"])
    a, b_next = first[1].ravel(), np.asarray(out["normals"]["12346"])[0].ravel()
    assert abs(np.corrcoef(a, b_next)[0, 1]) < 0.06  # 5,002 pairs: σ = 0.014
    for name, noise in out["gain"].items():
        np.testing.assert_allclose(np.asarray(noise), first, rtol=0, atol=1e-3, err_msg=name)


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


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name, kwargs", [("rayleigh", {}), ("rayleigh", {"block_len": 1000}),
                                          ("rician", {"k_factor_db": 6.0})])  # fmt: skip
def test_fused_fading_applies_the_states_gain_and_the_snrs_noise(name, kwargs, monkeypatch):
    """On CUDA, fading's ``h·x + n`` in the fused kernel: ``y − h·x`` (``h`` from the state) has
    the SNR's variance, independent real and imaginary parts; the gains keep ``E|h|² = 1``;
    the kernel ran (it is counted); same seed, same output."""
    import v2x.channels.fading as fading
    from v2x.common import triton_available

    if not triton_available():
        pytest.skip("triton not installed")
    calls = []
    real_fused = fading.awgn_fused
    monkeypatch.setattr(
        fading, "awgn_fused", lambda *a, **k: calls.append(1) or real_fused(*a, **k)
    )
    torch.manual_seed(0)
    g = torch.Generator(device="cuda").manual_seed(1)
    qpsk = (torch.randint(0, 2, (3, 200_000, 2), device="cuda", generator=g) * 2 - 1) / 2**0.5
    x = torch.view_as_complex(qpsk.float().contiguous())
    snr_db = torch.tensor([0.0, 10.0, 20.0], device="cuda")
    channel = build_channel(name, validate=False, **kwargs)
    with torch.no_grad():
        y, state = channel(x, snr_db)
        noise = torch.view_as_real(y - state.h * x)
    assert calls == [1]
    expected = torch.pow(10.0, -snr_db / 10.0)
    torch.testing.assert_close(noise.square().sum(-1).mean(-1), expected, rtol=0.01, atol=0)
    corr = (noise[..., 0] * noise[..., 1]).mean(-1) / (expected / 2)
    assert corr.abs().max() < 0.012  # σ = 1/√200 000 = 0.0022: 5.4 σ
    if kwargs.get("block_len"):
        assert state.h.shape == x.shape
        assert abs(float(state.h.abs().square().mean()) - 1.0) < 0.15  # 3 × 200 blocks
    torch.manual_seed(0)
    with torch.no_grad():
        y2, _ = channel(x, snr_db)
    assert torch.equal(y, y2)
