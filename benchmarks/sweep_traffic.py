"""Bytes moved per frame-condition by each call site of one batched pipeline call
(device-independent; on a GPU these passes set the sweep's kernel time).

    python benchmarks/sweep_traffic.py                      # the standard detector, 2 frames
    python benchmarks/sweep_traffic.py --codecs analog --lines 20

Runs what ``run_sweep`` runs for a max-fusion group (``run_conditions``: every SNR of the setting
in one ``CooperativePipeline.run``, one seed per condition) on the CPU once to warm up, then once
under a ``TorchDispatchMode`` that adds up, for every tensor operator, the bytes of its tensor
inputs and outputs (an upper bound on its memory traffic; views, which move nothing, are not
counted) and charges them to the innermost project line that called it. Printed per codec: the
total per frame-condition and the ``--lines`` largest call sites. The encoder runs inside the
call (no feature cache), so its share is spread over the ``K`` conditions.
"""

from __future__ import annotations

import argparse
import collections
import sys
import traceback
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweep import build, pipeline  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1]) + "/"


def _call_site() -> str:
    """The innermost frame of the project (outside this file) on the stack."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        name = frame.filename
        if name.startswith(ROOT) and "/.venv/" not in name and not name.endswith(__file__):
            return f"{name[len(ROOT):]}:{frame.lineno} {frame.name}"
    return "(outside the project)"


def _nbytes(t: object) -> int:
    if isinstance(t, torch.Tensor) and t.layout == torch.strided:
        return t.numel() * t.element_size()
    return 0


class TrafficCounter(TorchDispatchMode):
    """Bytes of every operator's tensor inputs and outputs, by (call site, operator)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes: collections.Counter = collections.Counter()
        self.calls: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        ins = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        outs = [o for o in tree_leaves(out) if isinstance(o, torch.Tensor)]
        storages = {a.untyped_storage().data_ptr() for a in ins if a.layout == torch.strided}
        in_place = name.endswith("_") or "out" in (kwargs or {})
        if not in_place and outs and all(
            o.layout == torch.strided and o.untyped_storage().data_ptr() in storages for o in outs
        ):
            return out  # a view: nothing moves
        key = (_call_site(), name)
        self.bytes[key] += sum(map(_nbytes, ins)) + sum(map(_nbytes, outs))
        self.calls[key] += 1
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="pointpillars", help="conf/model preset")
    p.add_argument("--checkpoint", default="shipped", help="shipped, untrained or a path")
    p.add_argument("--frames", type=int, default=2, help="frames in the one batch")
    p.add_argument("--snr-db", type=float, nargs="+", default=[-10, -5, 0, 5, 10, 20, 30])
    p.add_argument("--codecs", nargs="+", default=["identity", "analog", "deepjscc"])
    p.add_argument("--lines", type=int, default=25)
    args = p.parse_args()
    args.device, args.batch_size, args.small_model = "cpu", args.frames, False
    from v2x.execution import run_conditions

    _, model, batches, device = build(args)
    batch = batches[0]
    snr = torch.tensor(args.snr_db, dtype=torch.float32)
    seeds = [1000 + i for i in range(snr.numel())]
    work = snr.numel() * batch.batch_size
    with torch.no_grad():
        for codec in args.codecs:
            pipe = pipeline(model, "max", codec, device)
            run_conditions(pipe, batch, snr, seeds)  # warm-up
            counter = TrafficCounter()
            with counter:
                run_conditions(pipe, batch, snr, seeds)
            total = sum(counter.bytes.values())
            print(
                f"== max / {codec}: {total / work / 1e6:.0f} MB per frame-condition "
                f"({work} frame-conditions, {sum(counter.calls.values())} operator calls)"
            )
            for (site, name), moved in counter.bytes.most_common(args.lines):
                calls = counter.calls[(site, name)]
                print(f"  {moved / work / 1e6:8.1f} MB  {calls:5d}x  {name:24s} {site}")


if __name__ == "__main__":
    main()
