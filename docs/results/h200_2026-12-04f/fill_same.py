"""``FILL=0|1 python fill_same.py run <out> [frames]``: same_results.py's run with the flag set."""

import os
import runpy
from pathlib import Path

import v2x.sweep as sweep

sweep.FILL_DEVICE_WAITS = os.environ.get("FILL", "1") == "1"
runpy.run_path(str(Path(__file__).with_name("same_results.py")), run_name="__main__")
