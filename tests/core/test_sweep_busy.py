"""benchmarks/sweep_busy.py: the functions it times must exist in the sweep's code (a function
that moved made the script fail on the GPU host after its warm-up calls)."""

from __future__ import annotations

import importlib

from tests.benchmark_scripts import load_benchmark


def _module():
    return load_benchmark("sweep_busy")


def test_every_timed_function_exists_where_the_script_looks_for_it():
    missing = []
    for module_name, path in _module().TARGETS:
        owner = importlib.import_module(module_name)
        for part in path.split("."):
            if not hasattr(owner, part):
                missing.append(f"{module_name}.{path}")
                break
            owner = getattr(owner, part)
        else:
            assert callable(owner), f"{module_name}.{path} is not a function"
    assert not missing, f"sweep_busy.TARGETS names functions that do not exist: {missing}"


def test_the_device_thread_is_found_by_its_group_steps():
    busy = _module()
    prefix = busy.PREFIX
    events = [
        {"cat": "kernel", "ts": 0.0, "dur": 5.0, "name": "k"},
        {"cat": "kernel", "ts": 10.0, "dur": 10.0, "name": "k"},
        {"cat": "user_annotation", "ts": 0.0, "dur": 20.0, "tid": 7,
         "name": prefix + "GroupRun.step max/deepjscc"},
        {"cat": "user_annotation", "ts": 0.0, "dur": 20.0, "tid": 9,
         "name": prefix + "v2x.other"},
    ]  # fmt: skip
    table = busy.busy_table(events)
    row = next(line for line in table.splitlines() if "GroupRun.step max/deepjscc" in line)
    assert row.split()[-1] == "75.0"  # busy [0, 5) and [10, 20) of the step's [0, 20)
    assert "v2x.other" not in table  # another thread's range
