"""``python dworkers.py <repo> <bench_sweep.py arguments...>``: ``bench_sweep.py`` as given, with
the sweep's device workers' log at DEBUG: each group's step seconds on every worker
(``v2x.sweep_workers``), to tell whether two workers on one GPU each take half the frames in
half the time (then the 1.00x is outside the workers) or in the whole time (they contend)."""

import logging
import runpy
import sys
from pathlib import Path

repo = Path(sys.argv[1])
logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.WARNING)
logging.getLogger("v2x.sweep_workers").setLevel(logging.DEBUG)
sys.argv = [str(repo / "benchmarks" / "bench_sweep.py"), *sys.argv[2:]]
sys.path.insert(0, str(repo / "benchmarks"))
runpy.run_path(sys.argv[0], run_name="__main__")
