"""``bench_sweep.py`` with the block code's ends compiled (``numba``, the default on a CPU) or on
their torch path (``torch``): ``python ab.py numba|torch <bench_sweep.py arguments>`` from the
repository root (the fifty-seventh session's A/B, docs/benchmarks.md)."""

import importlib
import sys

import v2x.semcom.fec as fec

if sys.argv[1] == "torch":
    fec._compiled_on_host = lambda t: False
sys.path.insert(0, "benchmarks")
sys.argv = ["bench_sweep.py"] + sys.argv[2:]
importlib.import_module("bench_sweep").main()
