"""Could the min-sum decoder give up early on blocks it will not decode? Syndrome-weight
stopping rules measured on the chain's codes (CPU, the decoder's torch path).

    python benchmarks/ldpc_stopping_rules.py                       # MCS 0 deep, 5/14/27 at 10 %
    python benchmarks/ldpc_stopping_rules.py --points 5:-0.4,27:0 --blocks 4000

At each ``MCS:offset`` point (dB above the shipped table's 10 % BLER SNR; MCS 0 at −4 dB is the
−10 dB condition of the issue-16 setting, where every block runs all iterations twice; as in
``bench_ldpc.py`` only the code's rate-1/5 part is sent, so MCS 0, which the chain repeats
beyond it, fails at the table's point too)
the chain's code blocks (as ``bench_ldpc.py``: Gray QAM over AWGN) are decoded with early
termination, and after every iteration each block's syndrome weight (unsatisfied checks of its
hard decision) is recorded. Two families of rules from the literature are then applied
offline to those trajectories:

* **stall** ``S``: stop a block once its syndrome weight has not reached a new minimum for
  ``S`` iterations (the "satisfied checks stop increasing" criterion);
* **threshold**: stop a block whose weight is still above a fraction of its checks at
  iteration ``t`` (the "number of unsatisfied checks" criterion).

Printed per point: the fraction of blocks that converge, and per rule the blocks it stops
that would have converged (false stops: each one is a block error the full decoder does not
make) and the mean iterations the decoder would run. For the threshold family, the largest
weight fraction a converging block shows at iteration ``t`` and the smallest a failing one
shows: a safe threshold exists only if the first is below the second at every point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from v2x.semcom import ldpc_minsum
from v2x.semcom.bler_table import load_bler_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ldpc import _llrs  # noqa: E402  (the LLR generator, beside this file)


class RecordingDecoder(ldpc_minsum.LDPC5GMinSumDecoder):
    """The torch path with every syndrome check's per-block weight kept in ``weights``
    (``[B]`` int64 per check, one check per iteration; the batch is never compacted, so
    column ``b`` is block ``b`` throughout)."""

    weights: list[np.ndarray]

    def _syndrome_ok(self, llr, tab, checks):  # noqa: ANN001, ANN202 (the decoder's hook)
        v, nb = tab.place.numel(), llr.shape[1]
        hard = torch.zeros(v + 1, nb, dtype=torch.int64)
        hard[:v] = (llr[:v] <= 0.0).to(torch.int64)
        d = tab.syn_shape[1]
        parity = hard.index_select(0, tab.syn_idx[: checks * d]).view(checks, d, nb).sum(1) % 2
        weight = parity.sum(0)
        self.weights.append(weight.numpy().copy())
        return weight == 0, None


def trajectories(mcs: int, offset_db: float, blocks: int, seed: int) -> dict:
    """Decode ``blocks`` blocks at ``mcs`` and the table's 10 % SNR + ``offset_db``: the
    weights ``[iterations, B]``, the iteration each block stopped at, whether it converged,
    and the checks covered."""
    table = load_bler_table(1024)
    snr = float(table.thresholds_db(0.1)[mcs]) + offset_db
    gen = torch.Generator().manual_seed(seed)
    enc, _, llr = _llrs(mcs, 1024, blocks, snr, torch.device("cpu"), gen, 4096)
    dec = RecordingDecoder(enc, num_iter=20, early_stop=True, backend="torch")
    dec.weights = []
    compact = ldpc_minsum._COMPACT["torch"]
    ldpc_minsum._COMPACT["torch"] = 0  # never compact: columns stay blocks
    try:
        res = dec.decode(llr)
    finally:
        ldpc_minsum._COMPACT["torch"] = compact
    return {
        "snr": snr,
        "weights": np.stack(dec.weights).astype(np.int64),
        "iterations": res.iterations.numpy(),
        "converged": res.converged.numpy(),
        "checks": dec._checks(None),
    }


def stall_stops(weights: np.ndarray, stall: int) -> np.ndarray:
    """``[B]`` the iteration the stall rule stops each block at (``T + 1``: never)."""
    steps, nb = weights.shape
    best = np.full(nb, np.iinfo(np.int64).max)
    since = np.zeros(nb, dtype=np.int64)
    stop = np.full(nb, steps + 1)
    for t in range(steps):
        better = weights[t] < best
        best = np.where(better, weights[t], best)
        since = np.where(better, 0, since + 1)
        stop[(since >= stall) & (stop > steps)] = t + 1
    return stop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", default="0:-4,0:0,5:-0.4,5:0,14:0,27:0", help="MCS:offset_dB,...")
    p.add_argument("--blocks", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for point in args.points.split(","):
        mcs, offset = point.split(":")
        r = trajectories(int(mcs), float(offset), args.blocks, args.seed)
        w, it, conv = r["weights"], r["iterations"], r["converged"]
        steps = w.shape[0]
        print(
            f"MCS {int(mcs):2d} at {r['snr']:6.2f} dB ({float(offset):+.1f} from 10 %), "
            f"{args.blocks} blocks, {r['checks']} checks: {conv.mean():.3f} converge, "
            f"{it.mean():.2f} iterations on average"
        )
        for stall in (2, 3, 4, 5):
            stop = stall_stops(w, stall)
            false = int((conv & (stop < it)).sum())
            mean_it = np.where(conv, it, np.minimum(stop, steps)).mean()
            print(f"  stall {stall}: {false:4d} false stops, {mean_it:5.2f} iterations")
        frac = w / r["checks"]
        for t in (2, 3, 4, 6):
            later = conv & (it > t)  # converging, still decoding after iteration t
            hi = frac[t - 1][later].max() if later.any() else float("nan")
            lo = frac[t - 1][~conv].min() if (~conv).any() else float("nan")
            print(
                f"  iteration {t}: weight/checks of converging blocks up to {hi:.3f}, "
                f"of failing blocks from {lo:.3f}"
            )


if __name__ == "__main__":
    main()
