"""``same_results.py run <out> [frames]``: one run_sweep of the issue-16 CUDA setting into <out>;
``same_results.py compare <a> <b>``: the two runs' results and ledgers row by row, every column
but the ids and hashes that name the code (cell_id, setting_key, code_hash, config_hash).
Ran from the ignored tmp_dev/ folder (``parents[1]`` is the repository); reformatted for ruff
after the run (the same steps)."""

import math
import sys
from pathlib import Path

HASHED = {"cell_id", "setting_key", "code_hash", "config_hash"}


def rows(table):
    out = []
    for r in table.to_pylist():
        out.append(
            tuple(
                (k, None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in sorted(r.items())
                if k not in HASHED
            )
        )
    return sorted(out, key=repr)


if sys.argv[1] == "run":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_sweep import cuda_sweep_args, model_section

    from v2x.sweep import run_sweep

    args = cuda_sweep_args(frames=int(sys.argv[3]) if len(sys.argv) > 3 else 128)
    cfg = {
        "checkpoint": args.checkpoint,
        "device": "cuda",
        "model": model_section(args),
        "data": {"num_frames": args.frames, "frames_per_sequence": 10, "seed": 0},
        "batch_size": args.batch_size,
        "grid": {"snr_db": args.snr_db, "codecs": args.codecs, "fusions": args.fusions},
        "output_dir": sys.argv[2],
        "quiet": True,
        "feature_cache_gb": "auto",
    }
    print(run_sweep(cfg))
else:
    import pyarrow.parquet as pq

    a, b = (sorted(Path(d).rglob("sweep-*.parquet")) for d in sys.argv[2:4])
    for name in ("results", "ledger"):
        pick = [p for p in a if p.name.endswith(".ledger.parquet") == (name == "ledger")]
        pick_b = [p for p in b if p.name.endswith(".ledger.parquet") == (name == "ledger")]
        ta, tb = pq.read_table(pick[0]), pq.read_table(pick_b[0])
        ra, rb = rows(ta), rows(tb)
        same = ra == rb
        print(f"{name}: {ta.num_rows} and {tb.num_rows} rows, identical: {same}")
        if not same:
            diff = [(x, y) for x, y in zip(ra, rb) if x != y][:3]
            for x, y in diff:
                print("  a", [kv for kv in x if kv not in y][:8])
                print("  b", [kv for kv in y if kv not in x][:8])
