"""Leaf (innermost project frame) sample counts for MainThread warm calls, split by evaluate_batch line."""

import collections
import gzip
import re
import sys

c = collections.Counter()
tot = collections.Counter()
for line in gzip.open(sys.argv[1], "rt"):  # noqa: SIM115
    stack, _, n = line.rstrip("\n").rpartition(" ")
    n = int(n)
    fr = stack.split(";")
    if not fr[0].endswith("MainThread") or not any("spy_calls.py:17" in f for f in fr[1:3]):
        continue
    grp = next((f for f in fr if f.startswith("evaluate_batch ")), None)
    grp = (
        grp.split(":")[-1] if grp else ("prefetch" if any("prefetch" in f for f in fr) else "other")
    )
    proj = [f for f in fr if "/v2x/" in f or re.search(r"\((?:semcom|perception|channels|v2x)/", f)]
    leaf = re.sub(r" \((?:.*/)?([^/]+\.py):(\d+)\)", r" (\1:\2)", proj[-1]) if proj else fr[-1]
    c[(grp, leaf)] += n
    tot[grp] += n
for g, t in tot.most_common():
    print(f"== {g}: {t} samples ({t / 200 / 3:.2f} s per call)")
    for (gg, leaf), n in c.most_common():
        if gg == g and n >= 8:
            print(f"   {n:5d} {n / 200 / 3:.3f}s {leaf}")
