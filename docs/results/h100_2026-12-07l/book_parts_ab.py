"""``python book_parts_ab.py <repo> <rounds> <frames> <batch>``: a diagnostic (results valid,
timing changed): which part of a batch's booking (on the scorer thread beside the device's)
slows the groups that the device's thread paces. Warm issue-16 run_sweep calls (fp16 / fp16,
1e11 Hz), alternating: the code; the ledger rows built at the group's end ("ledger-later":
``ledger_table`` and its casts, stack and copy of the per-link tensors); the detections scored
at the group's end ("score-later": their device-to-host copies and the hand-over to the
scoring processes); both. Each call's groups' spans on the device's thread."""

import sys
from pathlib import Path

repo, rounds, frames, batch = (
    Path(sys.argv[1]),
    int(sys.argv[2]),
    int(sys.argv[3]),
    int(sys.argv[4]),
)
sys.path.insert(0, str(repo / "benchmarks"))
from bench_sweep import bench_phases, cuda_sweep_args  # noqa: E402

import v2x.sweep_group as sg  # noqa: E402
from v2x.evaluation import detection_arrays  # noqa: E402
from v2x.ledger import ledger_table  # noqa: E402

original_book, original_part = sg.book_batch, sg.GroupRun.part
mode = {"later": set()}


class Deferred:
    """A batch's booking parts left for the group's end (in batch order)."""

    def __init__(self, scored, item, scoring, cells, delivery, group, later):
        scored.wait()
        self.args = (scored, item, scoring, cells, delivery, group)
        self.later = later
        self.table = None
        if "score" not in later:
            scoring.add(detection_arrays(scored.detections, scored.k, scored.shared, item.gt))
        if "ledger" not in later:
            self.table = self._ledger()

    def _ledger(self):
        scored, item, _, cells, delivery, group = self.args
        return ledger_table(cells, scored.cost, delivery, item.network, scored.agent_mask,
                            group.channel, group.codec, group.fusion, group.bandwidth_ratio,
                            values=scored.link_values)  # fmt: skip

    def finish(self):
        scored, item, scoring, *_ = self.args
        if "score" in self.later:
            scoring.add(detection_arrays(scored.detections, scored.k, scored.shared, item.gt))
        return self.table if self.table is not None else self._ledger()


def book(scored, item, scoring, cells, delivery, group):
    if not mode["later"]:
        return original_book(scored, item, scoring, cells, delivery, group)
    return Deferred(scored, item, scoring, cells, delivery, group, mode["later"])


def part(self):
    tables = [t.result() if hasattr(t, "result") else t for t in self.ledgers]
    self.ledgers = [t.finish() if isinstance(t, Deferred) else t for t in tables]
    return original_part(self)


sg.book_batch = book
sg.GroupRun.part = part
run = cuda_sweep_args(
    frames=frames, batch_size=batch, bandwidth_hz=1e11, precision="fp16", codec_precision="fp16"
)
run.profile = 0
variants = {"code": set(), "ledger-later": {"ledger"}, "score-later": {"score"},
            "both-later": {"ledger", "score"}}  # fmt: skip
for r in range(rounds):
    for name in list(variants) if r % 2 == 0 else list(variants)[::-1]:
        mode["later"] = variants[name]
        each = []
        bench_phases(run, each)
        groups = [(a, b) for n, th, a, b in each if n == "_run_group"]
        end = max(b for n, th, a, b in each)
        light = sum(b - a for a, b in groups[2:])
        print(
            f"round {r} {name}: groups "
            + " ".join(f"{b - a:.2f}" for a, b in groups)
            + f" (last three {light:.2f}); device thread {groups[0][0]:.2f}..{groups[-1][1]:.2f}"
            f" s; last step {end:.2f} s",
            flush=True,
        )
