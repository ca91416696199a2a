"""Triton kernels launch on the current CUDA device and its current stream, not on their
arguments' device. Every Triton wrapper enters ``v2x.common.on_device_of`` first; these tests
call each with tensors on ``cuda:1`` while ``cuda:0`` is current (a sweep worker of
``device=all``) and compare with the same call on ``cuda:0``: bit for bit, since each kernel is
deterministic. Without the guard the kernels would run on ``cuda:0``, unordered with the work
that made their inputs."""

from __future__ import annotations

import pytest
import torch

from v2x.common import on_device_of


def test_on_device_of_leaves_a_host_tensor_alone():
    before = torch.cuda.current_device() if torch.cuda.is_available() else None
    with on_device_of(torch.zeros(2)):
        pass
    assert (torch.cuda.current_device() if torch.cuda.is_available() else None) == before


def _two_gpus():
    from v2x.common import triton_available

    if torch.cuda.device_count() < 2 or not triton_available():
        pytest.skip("needs two CUDA devices and triton")


def _each_device(fn):
    """``fn(device)`` on cuda:0 and on cuda:1, cuda:0 current both times; results on the host."""
    torch.cuda.set_device(0)
    out = []
    for device in ("cuda:0", "cuda:1"):
        with torch.no_grad():
            res = fn(torch.device(device))
        torch.cuda.synchronize(device)
        out.append([r.cpu() for r in (res if isinstance(res, (tuple, list)) else (res,))])
        assert torch.cuda.current_device() == 0
    return out


@pytest.mark.gpu
def test_block_code_kernels_run_on_their_tensors_device():
    _two_gpus()
    from v2x.semcom.fec import BlockCode

    g = torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2, (300, 1000), generator=g).float()
    noise = torch.complex(torch.randn(300, 4370, generator=g), torch.randn(300, 4370, generator=g))

    def chain(device):
        code = BlockCode(0, 1024, device=f"cuda:{device.index}", ldpc_decoder="minsum")
        x = code.encode(bits[:, : code.payload_bits].to(device))
        y = x + 0.7 * noise[:, : x.shape[1]].to(device)
        llr = code.llr(y, torch.full((300, 1), 1.0, device=device))
        decoded, ok = code.decode_llr(llr)
        return x, llr, decoded, ok

    on0, on1 = _each_device(chain)
    assert all(torch.equal(a, b) for a, b in zip(on0, on1))


@pytest.mark.gpu
def test_channel_and_receiver_kernels_run_on_their_tensors_device():
    _two_gpus()
    from v2x.channels.awgn_triton import awgn_fused
    from v2x.perception.warp_fusion_triton import warp_fuse
    from v2x.semcom.analog_triton import receive
    from v2x.semcom.deepjscc_triton import destandardize

    g = torch.Generator().manual_seed(1)
    sym = torch.complex(torch.randn(4, 3000, generator=g), torch.randn(4, 3000, generator=g))
    maps = torch.randn(2, 3, 8, 16, 16, generator=g)
    grid = torch.rand(6, 16, 16, 2, generator=g) * 2 - 1
    x = torch.randn(2, 8, 16, 16, generator=g)

    def kernels(device):
        s = sym.to(device)
        return (
            awgn_fused(s, torch.full((4,), 0.5, device=device), seed=7),
            receive(s, torch.full((4, 1), 0.9, device=device), torch.full((4, 1), 2.0, device=device),
                    torch.Size((4, 8, 15, 25))),
            warp_fuse(maps.to(device), grid.to(device), "max"),
            destandardize(x.to(device), torch.ones(8, device=device) * 2, torch.zeros(8, device=device)),
        )  # fmt: skip

    on0, on1 = _each_device(kernels)
    assert all(torch.equal(a, b) for a, b in zip(on0, on1))


@pytest.mark.gpu
def test_a_cuda_graph_is_captured_on_its_inputs_device():
    """``capture_graph`` with inputs on ``cuda:1`` while ``cuda:0`` is current captures and
    replays there (torch.cuda.graph captures on the current device's stream)."""
    _two_gpus()
    from v2x.perception.inference import capture_graph

    torch.cuda.set_device(0)
    x = torch.arange(12.0, device="cuda:1").reshape(3, 4)
    run = capture_graph(lambda t: (t * 2 + 1).relu(), [x])
    out = run(x + 1)
    assert out.device == torch.device("cuda:1") and torch.equal(out.cpu(), (x.cpu() + 1) * 2 + 1)
    assert torch.cuda.current_device() == 0
