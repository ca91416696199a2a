"""benchmarks/trace_idle.py: the device's idle time in a Chrome trace, attributed to the host's
Python functions; checked on a hand-made trace whose answers are worked out by hand, and on a
real torch.profiler trace of a CPU run (its events' format)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.benchmark_scripts import BENCHMARKS, load_benchmark

SCRIPT = BENCHMARKS / "trace_idle.py"


def _module():
    return load_benchmark("trace_idle")


def _trace(scale: float = 1.0) -> list[dict]:
    """Device busy [0, 10), [12, 20) (two overlapping kernels), [30, 40); idle [10, 12) and
    [20, 30). Main thread (tid 1): ``outer`` [0, 40) calls ``a`` [5, 25) (which calls ``b``
    [8, 11)) and ``a`` again [26, 28); another thread's function never counts. ``outer`` and
    ``b`` are project functions (``v2x/``, ``bench_``), ``a`` is not."""
    dev = [(0, 10, "kernel"), (12, 6, "kernel"), (15, 5, "gpu_memcpy"), (30, 10, "gpu_memset")]
    outer, b = "v2x/m.py(1): outer", "bench_x.py(5): b"  # project functions
    py = [(outer, 0, 40), ("a at 0x7f00", 5, 20), (b, 8, 3), ("a at 0x7f08", 26, 2)]
    py.append(("other", 0, 40))
    return [{"cat": c, "ts": t * scale, "dur": d * scale, "name": "k"} for t, d, c in dev] + [
        {"cat": "python_function", "ts": t * scale, "dur": d * scale, "name": n,
         "tid": 2 if n == "other" else 1}
        for n, t, d in py
    ]  # fmt: skip


def test_idle_time_goes_to_the_functions_on_the_main_threads_stack():
    mod = _module()
    events = _trace()
    idle, busy, span = mod.idle_intervals(events)
    assert idle == [(10, 12), (20, 30)] and busy == 28 and span == 40
    got = mod.attribute(events, mod.IdleClock(idle))
    outer, b = "v2x/m.py(1): outer", "bench_x.py(5): b"
    # inclusive: outer all 12 µs; a: [10,12) + [20,25) + [26,28) = 9; b: [10,11) = 1
    assert dict(got["inclusive"]) == {outer: 12, "a": 9, b: 1}
    # self: outer [25,26) + [28,30) = 3; a [11,12) + [20,25) + [26,28) = 8; b 1
    assert dict(got["self"]) == {outer: 3, "a": 8, b: 1}
    # innermost project function: a's own time goes to its caller outer, b keeps its own
    assert dict(got["project"]) == {outer: 11, b: 1}
    assert dict(got["calls"]) == {outer: 1, "a": 2, b: 1}
    assert got["children"][(outer, "a")] == 9 and got["children"][("a", b)] == 1


def test_the_script_reads_a_real_profiler_trace(tmp_path):
    """A torch.profiler trace of a CPU run has no device events: one clear message."""
    torch = pytest.importorskip("torch")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_stack=True) as prof:
        torch.ones(8).sum()
    path = tmp_path / "cpu.json"
    prof.export_chrome_trace(str(path))
    run = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True)
    assert run.returncode != 0 and "no device events" in run.stderr
    fake = tmp_path / "fake.json"
    fake.write_text(json.dumps({"traceEvents": _trace(scale=1000.0)}))  # µs: 12 ms idle
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(fake), "--children", "outer"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "device busy 28.0 ms, idle 12.0 ms" in run.stdout
    assert (
        "    12.0      1  v2x/m.py(1): outer" in run.stdout and "     9.0      2  a" in run.stdout
    )
    assert "innermost project function" in run.stdout and "    11.0      1  v2x/m.py" in run.stdout
    assert "callees of *outer*" in run.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"events": []}')
    run = subprocess.run([sys.executable, str(SCRIPT), str(bad)], capture_output=True, text=True)
    assert run.returncode != 0 and f"{bad} is not a Chrome trace" in run.stderr
    assert "traceEvents" in run.stderr


def test_device_time_goes_to_the_function_that_queued_it():
    """Each device event is charged, through its correlation, to the innermost project function
    on the launching thread's stack at the launch: worked out by hand."""
    mod = _module()
    outer, b = "v2x/m.py(1): outer", "bench_x.py(5): b"
    py = [(outer, 0, 40, 1), ("torch op at 0x7f00", 5, 5, 1), (b, 20, 10, 1)]
    launches = [(6, 1, 1), (22, 2, 1), (35, 3, 1), (1, 4, 2)]  # (ts, correlation, tid)
    device = [
        ("kernel", "k", 50, 4, 1),
        ("gpu_memcpy", "Memcpy DtoH (Device -> Pageable)", 60, 7, 2),
        ("kernel", "k", 70, 2, 3),
        ("gpu_memset", "Memset (Device)", 80, 1, 4),
        ("kernel", "k", 90, 5, 5),  # no host event has its correlation
    ]
    events = [
        {"cat": "python_function", "name": n, "ts": t, "dur": d, "tid": tid} for n, t, d, tid in py
    ]
    events += [
        {"cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": t, "dur": 0.5, "tid": tid,
         "args": {"correlation": c}}
        for t, c, tid in launches
    ]  # fmt: skip
    events += [
        {"cat": cat, "name": n, "ts": t, "dur": d, "args": {"correlation": c}}
        for cat, n, t, d, c in device
    ]
    got = mod.launched_by(events)
    assert dict(got) == {
        (outer, "kernels"): 6,  # launched inside a torch op that outer called, and after b
        (b, "Memcpy DtoH (Device -> Pageable)"): 7,
        (mod.OUTSIDE, "memsets"): 1,  # a thread with no Python stack
        ("(launch not in the trace)", "kernels"): 5,
    }
