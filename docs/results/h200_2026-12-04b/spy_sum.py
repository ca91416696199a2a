"""Summarise a py-spy raw (collapsed) recording: per thread (identified by a marker frame), the
share of samples by the innermost frame matching a project path, and by chosen callers.
``python spy_sum.py raw.txt``"""

import re
import sys
from collections import Counter, defaultdict

with open(sys.argv[1]) as raw:
    lines = raw.read().splitlines()
threads = defaultdict(Counter)
total = Counter()
for line in lines:
    stack, _, n = line.rpartition(" ")
    n = int(n)
    frames = stack.split(";")
    tid = frames[0]
    key = "other"
    if any("_run_groups" in f for f in frames):
        key = "device"
    elif any("v2x-score" in f or "book_batch" in f or "_book" in f for f in frames):
        key = "score"
    elif any("group_rows" in f or "_distinct_results" in f for f in frames):
        key = "rows"
    elif any("_prepare_frames" in f or "collate" in f for f in frames):
        key = "batches"
    total[key] += n
    # innermost project frame + the innermost frame
    proj = [f for f in frames if re.search(r"/(v2x|perception|semcom|channels)/", f)]
    inner = proj[-1] if proj else frames[-1]
    leaf = frames[-1]
    threads[key][(re.sub(r"\s*\(/.*?/", " (", inner), re.sub(r"\s*\(/.*?/", " (", leaf))] += n
for key, c in sorted(total.items(), key=lambda kv: -kv[1]):
    print(f"== {key}: {c} samples")
    for (inner, leaf), n in threads[key].most_common(30):
        print(f"  {100 * n / c:5.1f} %  {inner[:90]:90s} <- {leaf[:70]}")
# the device thread by group function
print("== device thread by callers")
c = Counter()
for line in lines:
    stack, _, n = line.rpartition(" ")
    frames = stack.split(";")
    if not any("_run_groups" in f for f in frames):
        continue
    names = [
        re.match(r"\s*([^\s(]+)", f).group(1) if re.match(r"\s*([^\s(]+)", f) else f for f in frames
    ]
    sel = [
        x
        for x in names
        if x
        in (
            "step",
            "evaluate_batch",
            "run_with_known_drops",
            "run_conditions",
            "remove_late_payloads",
            "__call__",
            "schedule",
            "ego_detections",
            "repeat_detections",
            "cost_before_air",
            "_run_late",
            "_send_block",
            "encode",
            "batched_rotated_nms",
            "postprocess",
            "head",
            "forward",
            "_run_features",
            "finish",
            "synchronize",
            "_resolved",
            "prepare_device",
            "GroupRun.__init__",
            "__init__",
        )
    ]
    c[" > ".join(dict.fromkeys(sel))[:200]] += int(n)
tot = sum(c.values())
for k, n in c.most_common(40):
    print(f"  {100 * n / tot:5.1f} %  {k}")
