"""Every registered channel on a CUDA device: outputs stay on the device, the same seed gives
the same output twice (Sionna's generator included), and the OFDM SINR feedback runs there."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

_spec = importlib.util.spec_from_file_location("repro_worker", Path(__file__).with_name("repro_worker.py"))
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)


def _same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        for key in a:
            _same(a[key], b[key])


@pytest.mark.parametrize("case", sorted(worker.cases()))
def test_channel_on_cuda_repeats_with_its_seed(case: str) -> None:
    from v2x.channels import build_channel

    name, kw = worker.cases()[case]
    device = torch.device("cuda")
    g = torch.Generator().manual_seed(1234)
    x = torch.view_as_complex(torch.randn(3, 100, 2, generator=g) * math.sqrt(0.5)).to(device)
    snr_db = torch.tensor([0.0, 10.0, 20.0], device=device)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        channel = build_channel(name, **kw).to(device)
        y, state = channel(x.clone(), snr_db)
        outs.append((y, worker._plain(state.__dict__)))
    assert outs[0][0].device.type == "cuda" and torch.isfinite(outs[0][0]).all()
    assert torch.equal(outs[0][0], outs[1][0])
    _same(outs[0][1], outs[1][1])


def test_ofdm_sinr_feedback_on_cuda() -> None:
    from v2x.channels import build_channel

    channel = build_channel("tdl", **worker.SMALL_OFDM).to("cuda")
    fb = channel.sinr_feedback(torch.tensor([10.0, 30.0], device="cuda"))
    assert fb is not None and torch.isfinite(fb).all() and (fb > 0).all()
