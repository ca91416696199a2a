"""``python cold2.py <repo> [frames]``: the first run_sweep call of a fresh process (the
issue-16 CUDA setting) under cProfile: who calls ``builtins.compile``, ``ast.parse`` and
``torch.cuda``'s device count, two levels up."""

import cProfile
import io
import pstats
import sys
from pathlib import Path

repo = Path(sys.argv[1])
frames = int(sys.argv[2]) if len(sys.argv) > 2 else 512
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_run_sweep, cuda_sweep_args  # noqa: E402

profiler = cProfile.Profile()
profiler.enable()
s = bench_run_sweep(cuda_sweep_args(frames=frames))
profiler.disable()
print(f"cold call: {s['fc_per_s']:.1f} fc/s {s['wall_s']:.2f} s")
stats = pstats.Stats(profiler)
for name in ("builtins.compile", "ast.py:.*parse", "_cuda_getDeviceCount", "namedtuple",
             "_create_fn", "exec"):  # fmt: skip
    text = io.StringIO()
    stats.stream = text
    stats.print_callers(name)
    print(text.getvalue()[-3500:])
callers = {}
for func, (*_, who) in stats.stats.items():
    if func[2] == "<built-in method builtins.compile>":
        for caller, (c1, _, _, t2) in who.items():
            up = stats.stats.get(caller)
            grand = sorted(up[4].items(), key=lambda kv: -kv[1][3])[:4] if up else []
            callers[caller] = (c1, t2, [(g, v[0], round(v[3], 3)) for g, v in grand])
for caller, (n, t, grand) in sorted(callers.items(), key=lambda kv: -kv[1][1]):
    print(f"compile <- {caller} {n}x {t:.3f} s")
    for g in grand:
        print(f"      <- {g}")
