"""benchmarks/gpu_run.sh: it names only benchmarks and tests that exist, and refuses an unknown
set before installing anything."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "benchmarks" / "gpu_run.sh"


def test_every_step_of_the_runner_exists():
    text = RUNNER.read_text()
    benches = re.findall(r"^\s*bench (\w+)", text, flags=re.M)
    scripts = re.findall(r"\$R/benchmarks/(\w+\.py)", text)
    tests = re.findall(r"\b(tests/[\w/]+\.py)", text)
    assert benches and scripts and tests
    for name in benches:
        assert (ROOT / "benchmarks" / f"{name}.py").is_file(), name
    for name in scripts:
        assert (ROOT / "benchmarks" / name).is_file(), name
    for path in tests:
        assert (ROOT / path).is_file(), path
    assert (ROOT / "scripts" / "gpu_env.sh").is_file()  # the offline install it sources
    configs = re.findall(r"--config-name (\w+)", text)
    assert configs
    for name in configs:
        assert (ROOT / "conf" / f"{name}.yaml").is_file(), name


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_an_unknown_set_is_refused_before_anything_runs(tmp_path):
    done = subprocess.run(["bash", str(RUNNER), "everything"], cwd=tmp_path, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)})  # fmt: skip
    assert done.returncode == 2
    assert (
        "SET must be all, quick, ldpc, time, verify, codec, frontier, semantic_train, semantic_eval, main, payload, digital, workers or overlap, got 'everything'"
        in done.stderr
    )
    assert list(tmp_path.iterdir()) == []
