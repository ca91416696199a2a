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

``--by-thread`` prints instead the samples of every thread (names without their numbers) and
each thread's costliest project frames, leaving out stacks that hold ``--skip`` (default: the
import machinery, a process's one-time imports). With a recording of ``py-spy record --gil``
(only samples of the thread holding the GIL) that says which threads take the GIL the device's
thread needs:

    py-spy record --threads --gil --nonblocking --rate 200 --format raw -o gil.txt -- ...
    python benchmarks/pyspy_summary.py gil.txt --by-thread
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


def by_thread(path: str, skip: str, top: int) -> str:
    """Samples per thread (its name without a pool's thread number) and each thread's ``top`` last project
    frames, over the stacks that do not hold the function ``skip``."""
    threads: collections.Counter[str] = collections.Counter()
    frames: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            head, *rest = stack.split(";")
            if any(re.sub(r" \(.*", "", f) == skip for f in rest):
                continue
            name = re.sub(r"\(.*?\)|^thread|:", "", head).strip()
            name = re.sub(r"[_-]?[0-9]+$", "", name) or "(unnamed)"  # a pool's thread number
            threads[name] += int(count)
            own = [f for f in rest if "v2x/" in f or "benchmarks/" in f]
            frames[name][own[-1] if own else (rest[-1] if rest else "-")] += int(count)
    total = sum(threads.values())
    out = [f"{total} samples (stacks under {skip} left out)"]
    for name, n in threads.most_common():
        out.append(f"{n:6d} {100 * n / max(total, 1):5.1f}%  {name}")
        out += [f"          {m:6d}  {f}" for f, m in frames[name].most_common(top)]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("path", help="py-spy record --format raw output")
    p.add_argument("--thread", default="MainThread", help="regex on py-spy's thread label")
    p.add_argument("--under", default="run_sweep", help="a function on the counted stacks")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--by-thread", action="store_true", help="samples per thread (see above)")
    p.add_argument("--skip", default="_find_and_load", help="with --by-thread: stacks left out")
    args = p.parse_args()
    if args.top <= 0:
        p.error("--top must be positive")
    if args.by_thread:
        print(by_thread(args.path, args.skip, args.top))
    else:
        print(summary(args.path, args.thread, args.under, args.top))


if __name__ == "__main__":
    main()
