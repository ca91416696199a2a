"""Reading PCD point clouds (``v2x.datasets.pcd.read_pcd``): an OPV2V-sized ascii file (OpenCDA
writes ascii) through numpy's C parser, against the line-by-line parse it replaced (the reference,
same process, same file), and the binary encodings beside them.

    python benchmarks/bench_pcd.py [--points 60000] [--repeat 5]

Prints the best of ``--repeat`` reads per case and the ascii speed-up; the values read are
checked equal across the two ascii parses.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from v2x.datasets import pcd
from v2x.datasets.pcd import read_pcd, write_pcd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweep_host import _best  # noqa: E402 - the best of repeated wall times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=60000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    points = np.c_[rng.normal(0, 20, (args.points, 3)), rng.uniform(0, 1, args.points)]
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for kind in pcd.PCD_DATA_KINDS:
            paths[kind] = Path(folder) / f"{kind}.pcd"
            write_pcd(paths[kind], points, kind, intensity_as_rgb=True)
        fast = read_pcd(paths["ascii"])
        out["ascii"] = _best(lambda: read_pcd(paths["ascii"]), args.repeat)
        table = pcd._ascii_table
        pcd._ascii_table = lambda body, width: None  # the reference: line by line
        try:
            slow = read_pcd(paths["ascii"])
            out["ascii_line_by_line"] = _best(lambda: read_pcd(paths["ascii"]), args.repeat)
        finally:
            pcd._ascii_table = table
        for name in fast.fields:
            np.testing.assert_array_equal(fast.fields[name], slow.fields[name])
        for kind in ("binary", "binary_compressed"):
            out[kind] = _best(lambda k=kind: read_pcd(paths[k]), args.repeat)
    for name, seconds in out.items():
        print(f"{name:20s} {seconds * 1e3:8.1f} ms  ({args.points} points)")
    out["ascii_speedup"] = out["ascii_line_by_line"] / out["ascii"]
    print(f"ascii: {out['ascii_speedup']:.2f}x the line-by-line parse")
    return out


if __name__ == "__main__":
    main()
