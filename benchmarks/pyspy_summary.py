"""Where a process's threads spent their time, from a py-spy recording (sampled, not traced).

    py-spy record --threads --idle --nonblocking --rate 100 --format raw -o run.txt -- \\
        python benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 128 \\
        --batch-size 16 --codecs identity analog deepjscc
    python benchmarks/pyspy_summary.py run.txt --thread MainThread --under run_sweep

py-spy samples every thread's Python stack at a fixed rate without stopping the process
(``--nonblocking``; ``--native`` stops it per sample and slowed this sweep 15×), so samples
are proportional to wall time, waits included (``--idle``). For the samples of threads whose
name matches ``--thread`` and whose stack holds ``--under``, it prints each function's
inclusive share (the samples with it on the stack) and the costliest (last project frame →
leaf) pairs. Thread names are py-spy's at sampling time: a pool's threads in later calls may
reuse another pool's name, so ``--under`` (a function only that work runs) is the safer key.
"""

from __future__ import annotations

import argparse
import collections
import re


def summary(path: str, thread: str, under: str, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path, encoding="utf-8") as lines:
        recorded = lines.readlines()
    for line in recorded:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        frames = stack.split(";")
        if not re.search(thread, frames[0]):
            continue
        names = [re.sub(r" \(.*?:\d+\)", "", f) for f in frames[1:]]
        if under not in names:
            continue
        below = frames[1 + names.index(under) + 1 :]
        n = int(count)
        total += n
        for key in {re.sub(r":\d+\)", ")", f) for f in below}:
            inclusive[key] += n
        own = [f for f in below if "v2x/" in f or "benchmarks/" in f]
        leaves[f"{own[-1] if own else '-'}  ->  {below[-1] if below else '-'}"] += n
    out = [f"{total} samples of threads /{thread}/ under {under}", "--- inclusive"]
    out += [f"{n:6d} {100 * n / total:5.1f}%  {k}" for k, n in inclusive.most_common(top)]
    out.append("--- last project frame -> leaf")
    out += [f"{n:6d} {100 * n / total:5.1f}%  {k}" for k, n in leaves.most_common(top)]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("path", help="py-spy record --format raw output")
    p.add_argument("--thread", default="MainThread", help="regex on py-spy's thread label")
    p.add_argument("--under", default="run_sweep", help="a function on the counted stacks")
    p.add_argument("--top", type=int, default=40)
    args = p.parse_args()
    if args.top <= 0:
        p.error("--top must be positive")
    print(summary(args.path, args.thread, args.under, args.top))


if __name__ == "__main__":
    main()
