"""Run a benchmark script with the min-sum decoder's auto launch threshold overridden:
V2X_AUTO_PERSISTENT=N (blocks per call up to which the persistent kernel runs)."""
import os
import runpy
import sys

import v2x.semcom.ldpc_minsum as m

m.AUTO_PERSISTENT_MAX_BLOCKS = int(os.environ.get("V2X_AUTO_PERSISTENT", m.AUTO_PERSISTENT_MAX_BLOCKS))
print(f"AUTO_PERSISTENT_MAX_BLOCKS = {m.AUTO_PERSISTENT_MAX_BLOCKS}", flush=True)
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
