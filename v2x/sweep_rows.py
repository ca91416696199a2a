"""A sweep group's results rows: each frame batch scored into the cells' AP accumulators with
its ledger rows (``book_batch``), and the rows of the results table from the accumulators and
the ledger (``group_rows``: APs with bootstrap intervals, costs, provenance; schema in
``v2x.results``).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from v2x import __version__
from v2x.evaluation import detection_arrays
from v2x.forked_pools import can_fork_workers, forked_pool
from v2x.ledger import ledger_rows, link_values, summarize_cells
from v2x.perception.average_precision import APAccumulator
from v2x.perception.detector import Detections
from v2x.sweep_batches import _Batch
from v2x.sweep_plan import FEATURE_STAGE, Group, SweepPlan
from v2x.sweep_scoring import GroupScoring, SealedAccumulator


@dataclass
class BatchOnHost:
    """What booking a frame batch reads, on the host (``queue_host_copies``): its detections
    (``K·B`` rows, or the ``B`` rows all ``K`` conditions share when ``shared``), every
    per-link ledger value (``v2x.ledger.link_values``, ``[F, K, B, A]`` float64) and the
    batch's agent mask ``[B, A]``; their copies are complete once ``ready`` (a CUDA event, or
    ``None`` when they were made in place) has been reached."""

    detections: Detections
    k: int
    shared: bool
    link_values: torch.Tensor
    agent_mask: torch.Tensor
    ready: torch.cuda.Event | None

    def wait(self) -> BatchOnHost:
        """Block until the copies are on the host (releases the GIL meanwhile)."""
        if self.ready is not None:
            self.ready.synchronize()
        return self


def queue_host_copies(scored: Any, item: _Batch, delivery: Any) -> BatchOnHost:
    """Queue the copies to the host that booking ``scored`` needs, on the thread that ran it.

    On CUDA, into page-locked memory without waiting for the device, with an event behind them:
    the scorer thread then only waits for that event and reads numpy, and makes no CUDA call of
    its own beside the device's thread (the sweep's rate was level with the scorer thread
    making these copies itself, on an H100 host: docs/benchmarks.md, fifty-fourth session)."""
    det = scored.detections if scored.shared is None else scored.shared
    values = link_values(scored.cost, delivery)
    tensors = (det.boxes, det.scores, det.labels, det.valid, values, item.batch.agent_mask)
    if values.device.type != "cuda":
        on_host, ready = [t.cpu() for t in tensors], None
    else:
        on_host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
        for dst, src in zip(on_host, tensors, strict=True):
            dst.copy_(src, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record()
    boxes, scores, labels, valid, values, mask = on_host
    return BatchOnHost(
        Detections(boxes, scores, labels, valid),
        scored.num_conditions,
        scored.shared is not None,
        values,
        mask,
        ready,
    )


def book_batch(
    on_host: BatchOnHost,
    item: _Batch,
    scoring: GroupScoring,
    cells: Sequence[str],
    group: Group,
) -> pa.Table:
    """Score one frame batch's detections into the cells' accumulators (in batch order; in the
    scoring process where there is one, ``v2x.sweep_scoring``) and return its ledger rows,
    from their copies on the host (``queue_host_copies``)."""
    on_host.wait()
    scoring.add(detection_arrays(on_host.detections, on_host.k, on_host.shared, item.gt))
    return ledger_rows(
        cells,
        on_host.link_values,
        item.network,
        on_host.agent_mask,
        group.channel,
        group.codec,
        group.fusion,
        group.bandwidth_ratio,
    )


def group_rows(
    plan: SweepPlan,
    group: Group,
    snrs: Sequence[float],
    accs: Sequence[APAccumulator | SealedAccumulator],
    ledger: pa.Table,
    conditions: Sequence[Mapping],
    cells: Sequence[str],
    setting: tuple[str, str],
    num_frames: int,
    eval_config: Any,
    feature_values: float,
    data_id: Mapping,
    bits_estimated: bool,
) -> list[dict]:
    """The results rows of a group's cells from their AP accumulators (or those sealed in the
    scoring process, ``GroupScoring.sealed_accumulators``) and ledger; ``setting`` is the
    group's ``(setting_key, setting_text)``."""
    cfg = plan.config
    key, setting_json = setting
    rows = []
    convention = json.dumps(eval_config.convention(), sort_keys=True)
    cell_sums = summarize_cells(ledger, cells, num_frames)
    digests = [acc.state_digest() for acc in accs]
    computed = _distinct_results(
        dict(zip(digests, accs, strict=True)), plan.bootstrap, int(cfg.seed), plan.bootstrap_unit
    )
    for ki in range(len(snrs)):
        result = computed[digests[ki]]
        ap = result["ap"]
        details = result["details"]
        ci = result.get("ci") or {}
        sub = ap.get("subset/ego_invisible")
        sums = cell_sums[ki]
        uses_per_link = sums["mean_channel_uses_per_frame"] / max(
            sums["mean_links_per_frame"], 1e-12
        )
        metrics = {
            "ap_30": ("overall", 0.3),
            "ap_50": ("overall", 0.5),
            "ap_70": ("overall", 0.7),
            "ap_70_invisible": ("subset/ego_invisible", 0.7),
            "vehicle_ap_30": ("group/vehicle", 0.3),
            "vehicle_ap_50": ("group/vehicle", 0.5),
            "vehicle_ap_70": ("group/vehicle", 0.7),
        }
        intervals = {}
        for name, (where, thr) in metrics.items():
            lo, hi = (ci.get(where) or {}).get(thr, (math.nan, math.nan))
            intervals[f"{name}_lo"], intervals[f"{name}_hi"] = float(lo), float(hi)
        per_class = {
            g.removeprefix("class/"): {f"{t:g}": float(v) for t, v in ap[g].items()}
            for g in ap
            if g.startswith("class/")
        }
        rows.append(
            {
                "cell_id": cells[ki],
                **conditions[ki],
                "dataset": data_id["source"],
                "split": data_id["split"],
                "num_frames": num_frames,
                "ap_30": float(ap["overall"].get(0.3, math.nan)),
                "ap_50": float(ap["overall"].get(0.5, math.nan)),
                "ap_70": float(ap["overall"].get(0.7, math.nan)),
                "ap_70_invisible": float(sub.get(0.7, math.nan)) if sub else math.nan,
                **{
                    name: float(ap.get("group/vehicle", {}).get(thr, math.nan))
                    for name, (group, thr) in metrics.items()
                    if group == "group/vehicle"
                },
                **intervals,
                "bootstrap_unit": result["bootstrap"]["unit"] if "bootstrap" in result else "",
                "bootstrap_units": int(result.get("bootstrap", {}).get("units", 0)),
                "num_gt": int(next(iter(details["overall"].values()))["num_gt"]),
                "num_gt_invisible": int(
                    next(iter(details["subset/ego_invisible"].values()))["num_gt"]
                )
                if sub
                else 0,
                "eval_convention": convention,
                "realised_ratio": uses_per_link / feature_values
                if group.stage == FEATURE_STAGE and sums["mean_links_per_frame"] > 0
                else math.nan,
                "bits_estimated": bits_estimated,
                **sums,
                "per_class_ap": json.dumps(per_class, sort_keys=True) if per_class else "",
                "config_hash": plan.config_hash,
                "v2x_version": __version__,
                "seed": int(cfg.seed),
                "data_path": data_id["path"],
                "data_hash": data_id["hash"],
                "detector_sha256": group.setting["detector_sha256"],
                "codec_sha256": group.codec_sha256,
                "code_hash": group.setting["code_hash"],
                "setting_key": key,
                "setting": setting_json,
            }
        )
    return rows


#: The evaluator groups whose APs are results columns, with the IoU thresholds that get
#: bootstrap intervals (``None``: every threshold).
RESULT_GROUPS: dict[str, tuple[float, ...] | None] = {
    "overall": None,
    "subset/ego_invisible": (0.7,),
    "group/vehicle": (0.3, 0.5, 0.7),
}


#: Threads that compute one group's distinct cells when there are no worker processes
#: (numpy releases the GIL in the bootstrap's large array operations); the sweep runs up to
#: 4 groups' rows at once (``ROW_THREADS``).
CELL_THREADS = max(1, (os.cpu_count() or 1) // 4)

#: Worker processes that compute the distinct cells' APs and intervals on a Linux host with at
#: least 4 cores: the bootstrap's many small numpy calls then share no GIL with the device's
#: thread (threads of this process do; measured on an H200 host, the device's thread waited
#: for them). 0: ``CELL_THREADS`` threads of this process (elsewhere: fork is Linux's). Same
#: numbers either way.
CELL_PROCESSES = min(8, (os.cpu_count() or 1) - 2) if can_fork_workers() else 0

_POOL: list[ProcessPoolExecutor] = []


def cell_pool() -> ProcessPoolExecutor | None:
    """The worker processes of ``CELL_PROCESSES``, or ``None`` for threads.

    They are forked (``v2x.forked_pools``), all at once, on first use (``warm_cell_pool``: at
    the start of a sweep, before its frames load and its device work starts) and live as long as
    this process. The workers run numpy only (the sweep's frames read first, ``FrameStream``;
    then ``APAccumulator.compute``), never torch or CUDA."""
    if CELL_PROCESSES <= 0 or multiprocessing.current_process().daemon:  # (no children)
        return None
    if not _POOL:
        _POOL.append(forked_pool(CELL_PROCESSES))
    return _POOL[0]


def warm_cell_pool() -> None:
    """Start the worker processes (and their imports) now, e.g. while frames load."""
    pool = cell_pool()
    if pool is not None:
        for _ in range(CELL_PROCESSES):
            pool.submit(os.getpid)


#: ``compute_ap`` results of the sweep's earlier cells, by (state digest, resamples, seed,
#: unit), as futures (a group may ask for a cell another group is computing): a sweep's groups
#: often hold equal cells (e.g. every cell none of whose links arrive equals ego-only; in the
#: issue-16 benchmark the ego-only, analog and identity groups at 512 frames, each ≈ 1 s of
#: an AP worker's time), computed once. Equal digests give equal results (``state_digest``
#: covers everything ``compute`` reads); the results are shared, never mutated. ``run_sweep``
#: starts each sweep with it empty (``forget_results``): a later call of the same sweep in this
#: process computes its cells again, as a new process would (reuse across calls is the results
#: store's, by cell id).
_MEMO: OrderedDict[tuple, Future] = OrderedDict()
_MEMO_LOCK = threading.Lock()
#: Most results kept (the oldest finished ones go first).
MEMO_CELLS = 4096


def forget_results() -> None:
    """Empty ``_MEMO`` (a new sweep starts)."""
    with _MEMO_LOCK:
        _MEMO.clear()


def _distinct_results(
    accs: Mapping[str, APAccumulator | SealedAccumulator], bootstrap: int, seed: int, unit: str
) -> dict[str, dict]:
    """``compute_ap`` of each accumulator, keyed like ``accs`` (by state digest: cells whose
    accumulators hold identical records get one computation, in this group or any earlier one
    of the sweep, ``_MEMO``), the new ones by ``_computed_results``."""
    keys = {d: (d, int(bootstrap), int(seed), unit) for d in accs}
    known, mine = {}, {}
    with _MEMO_LOCK:
        for d, key in keys.items():
            if key in _MEMO:
                _MEMO.move_to_end(key)
                known[d] = _MEMO[key]
            else:
                known[d] = mine[d] = _MEMO[key] = Future()
        done = [k for k, f in _MEMO.items() if f.done()]
        for key in done[: max(0, len(_MEMO) - MEMO_CELLS)]:
            del _MEMO[key]
    try:
        fresh = _computed_results({d: accs[d] for d in mine}, bootstrap, seed, unit) if mine else {}
    except BaseException as err:
        with _MEMO_LOCK:  # not kept: a later call computes them again
            for d in mine:
                if _MEMO.get(keys[d]) is mine[d]:
                    del _MEMO[keys[d]]
        for future in mine.values():
            future.set_exception(err)
        raise
    for d, future in mine.items():
        future.set_result(fresh[d])
    return {d: future.result() for d, future in known.items()}


def _computed_results(
    accs: Mapping[str, APAccumulator | SealedAccumulator], bootstrap: int, seed: int, unit: str
) -> dict[str, dict]:
    """``compute_ap`` of each accumulator, keyed like ``accs``, in the worker processes
    (``cell_pool``, even for one cell) or on ``CELL_THREADS`` threads. With fewer distinct
    cells than worker processes each cell's intervals are split over several of them
    (``interval_parts``; e.g. ego-only's one distinct cell, the last group a sweep computes,
    whose rows the sweep's end waits for)."""

    def computed_on(executor: Executor, parts: int = 1) -> dict[str, dict]:
        futures = {
            d: [
                executor.submit(compute_ap, acc, bootstrap, seed, unit, groups)
                for groups in interval_parts(acc, parts if bootstrap else 1)
            ]
            for d, acc in accs.items()
        }
        return {d: joined_parts([f.result() for f in fs]) for d, fs in futures.items()}

    # a single distinct cell goes to the workers too: computed on a thread of this process, its
    # bootstrap's small numpy calls would hold the GIL the device's thread needs
    pool = cell_pool()
    if pool is not None:
        try:
            return computed_on(pool, max(1, CELL_PROCESSES // max(len(accs), 1)))
        except BrokenProcessPool as err:  # a worker died (e.g. out of memory): compute here
            _POOL.clear()
            warnings.warn(
                f"sweep: the AP worker processes stopped ({err}); computing the cells' APs in "
                "this process",
                RuntimeWarning,
                stacklevel=2,
            )
    if CELL_THREADS == 1 or len(accs) == 1:
        return {d: compute_ap(acc, bootstrap, seed, unit) for d, acc in accs.items()}
    with ThreadPoolExecutor(min(CELL_THREADS, len(accs)), "v2x-cells") as threads:
        return computed_on(threads)


def interval_parts(acc: APAccumulator, parts: int) -> list[Mapping[str, Any]]:
    """``RESULT_GROUPS`` split into up to ``parts`` ``bootstrap_groups`` arguments of
    ``compute_ap``, one per worker: consecutive (group, threshold) intervals of ``acc`` in
    ``compute``'s order (a group without a threshold of ``acc``'s in the first part). Each
    interval has its own percentiles over the group's draws, the same draws in any part (drawn
    from the group's records and the seed), so the parts' intervals are those of one call
    (``joined_parts``). ``parts <= 1``: ``[RESULT_GROUPS]``."""
    if parts <= 1:
        return [RESULT_GROUPS]
    pairs, without = [], []
    for name, wanted in RESULT_GROUPS.items():
        own = [
            t for t in acc.thresholds.tolist()
            if wanted is None or any(math.isclose(t, w) for w in wanted)
        ]  # fmt: skip
        pairs += [(name, t) for t in own]
        if not own:
            without.append(name)
    n = max(1, min(parts, len(pairs)))
    bounds = [len(pairs) * i // n for i in range(n + 1)]
    split: list[dict[str, list[float]]] = [{name: [] for name in without}] + [
        {} for _ in range(n - 1)
    ]
    for i in range(n):
        for name, t in pairs[bounds[i] : bounds[i + 1]]:
            split[i].setdefault(name, []).append(t)
    return split


def joined_parts(parts: Sequence[dict]) -> dict:
    """One ``compute_ap`` result from the results of its ``interval_parts``: the first part's
    APs and details (every part has them) with every part's intervals, in ``compute``'s order."""
    if len(parts) == 1:
        return parts[0]
    found: dict[str, dict] = {}
    for part in parts:
        for name, intervals in part["ci"].items():
            found.setdefault(name, {}).update(intervals)
    return {**parts[0], "ci": {name: found[name] for name in RESULT_GROUPS if name in found}}


def compute_ap(
    acc: Any, bootstrap: int, seed: int, unit: str = "auto", groups: Mapping | None = None
) -> dict:
    """``acc.compute()``, with ``bootstrap`` resamples of the sequences or frames (``unit``;
    seeded by the sweep's seed) for the 95 % intervals of the APs that are results columns
    (``groups``: those of one of ``interval_parts``; default ``RESULT_GROUPS``). ``acc``: an
    ``APAccumulator`` or a ``SealedAccumulator`` (opened here, e.g. in an AP worker).

    The details keep their counts, not their precision and recall curves: the rows read none,
    and with them a cell's result came back from a worker as about 1 MB of arrays, read on
    the device process's pool thread with its GIL held."""
    if isinstance(acc, SealedAccumulator):
        acc = acc.opened()
    result = acc.compute(bootstrap=bootstrap, seed=seed,
                         bootstrap_groups=RESULT_GROUPS if groups is None else groups,
                         bootstrap_unit=unit)  # fmt: skip
    result["details"] = {
        name: {
            t: {k: v for k, v in detail.items() if not isinstance(v, np.ndarray)}
            for t, detail in by_threshold.items()
        }
        for name, by_threshold in result["details"].items()
    }
    return result
