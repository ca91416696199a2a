"""Shared fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch


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
    tensor); tests with this fixture check that nothing depends on it."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    assert torch.empty(2).isnan().all()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.utils.deterministic.fill_uninitialized_memory = fill


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
