"""Shared fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch


def _torch_switches() -> tuple:
    """Torch's process-wide numerics switches that a test (or a benchmark's ``main`` run in
    one) may set."""
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.get_float32_matmul_precision(),
    )


@pytest.fixture(autouse=True)
def torch_switches_restored():
    """Every test leaves torch's numerics switches as it found them: e.g. the detector
    benchmark's ``main`` (run by a GPU test) turns cuDNN's timing-based algorithm choice on,
    and the CUDA tests after it in the same process then compared batched and per-condition
    boxes computed by other convolution algorithms (a failure seen on an H200, 2026-12-03)."""
    state = _torch_switches()
    yield
    if _torch_switches() != state:
        torch.use_deterministic_algorithms(state[0], warn_only=state[1])
        torch.utils.deterministic.fill_uninitialized_memory = state[2]
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = state[3:5]
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = state[5:7]
        torch.set_float32_matmul_precision(state[7])


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny convolutions: one torch thread beats two contended ones on a shared 2-core CPU.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def unwritten_memory_is_nan():
    """Torch's deterministic mode with its fill on for the test: every new tensor holds NaN
    (integers their maximum) until written, so a computation that reads an element nothing
    wrote changes its result. ``configure_determinism`` turns that fill off (a pass per
    tensor); tests with this fixture check that nothing depends on it. Both switches are set
    back after the test by ``torch_switches_restored`` (autouse, so torn down after this)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    assert torch.empty(2).isnan().all()
    yield


@pytest.fixture
def triton_interpreted() -> Callable[[str], dict]:
    """``run(script)``: ``script`` in a subprocess with Triton's CPU interpreter on (it must be
    on before triton is first imported); its last line of output, as JSON. Skips the test
    where Triton is not installed."""
    pytest.importorskip("triton")

    def run(script: str) -> dict:
        env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run
