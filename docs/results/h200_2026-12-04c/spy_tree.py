"""Inclusive sample counts for the MainThread of warm calls: python spy_tree.py raw.gz [anchor] [depth] [min%]."""

import collections
import gzip
import re
import sys

path = sys.argv[1]
anchor = sys.argv[2] if len(sys.argv) > 2 else "evaluate_batch"
depth = int(sys.argv[3]) if len(sys.argv) > 3 else 3
minp = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
tree = collections.Counter()
total = 0
main_warm = 0
for line in gzip.open(path, "rt"):  # noqa: SIM115
    stack, _, n = line.rstrip("\n").rpartition(" ")
    n = int(n)
    frames = stack.split(";")
    if not frames[0].endswith("MainThread"):
        continue
    if not any(re.match(r"<module> \(spy_calls.py:17\)", f) for f in frames[1:3]):
        continue
    main_warm += n
    idx = [i for i, f in enumerate(frames) if f.startswith(anchor + " ")]
    if not idx:
        continue
    total += n
    rest = [re.sub(r" \((?:.*/)?([^/]+\.py):(\d+)\)", r" (\1:\2)", f) for f in frames[idx[0] + 1 :]]
    for d in range(1, depth + 1):
        tree[tuple(rest[:d])] += n
print(f"MainThread warm samples {main_warm}, under {anchor}: {total}")


def show(prefix, lvl):
    kids = sorted(
        ((k, v) for k, v in tree.items() if len(k) == lvl + 1 and k[:lvl] == prefix),
        key=lambda kv: -kv[1],
    )
    for k, v in kids:
        if 100 * v / total < minp:
            continue
        print(f"{'  ' * lvl}{100 * v / total:5.1f}% {v:6d} {k[-1]}")
        if lvl + 1 < depth:
            show(k, lvl + 1)


show((), 0)
