"""A sweep group's scoring in the scoring process (``v2x.sweep_scoring``) gives the
accumulators that scoring in this process gives, record for record; errors and a dead worker
are handled. Oracle: ``accumulate_arrays`` on the same batches in this process, in order."""

from __future__ import annotations

import os
import sys
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from v2x.evaluation import ScoredArrays, accumulate_arrays
from v2x.perception.ap_config import EvalConfig
from v2x.perception.average_precision import APAccumulator
from v2x.sweep_scoring import GroupScoring, _one_thread
from v2x.worker_channel import forked_worker

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the worker is forked (Linux)")

K, B, D, M = 4, 3, 9, 6


def _batch(rng: np.random.Generator, start: int) -> ScoredArrays:
    """``K`` conditions of ``B`` frames: conditions 1 and 3 detect what condition 0 does (shared
    scoring), the others their own boxes; GT with padding, ignored and ego-invisible boxes."""
    gt = np.zeros((B, M, 7))
    gt[..., :2] = rng.uniform(-30, 30, (B, M, 2))
    gt[..., 3:6] = (4.0, 2.0, 1.5)
    gt[..., 6] = rng.uniform(-np.pi, np.pi, (B, M))
    present = rng.random((B, M)) < 0.8
    boxes = np.zeros((K * B, D, 7), dtype=np.float32)
    for row in range(K * B):
        picks = rng.integers(0, M, D)
        boxes[row] = gt[row % B, picks]
        boxes[row, :, :2] += rng.normal(0, 0.7, (D, 2))
    for k in (1, 3):
        boxes[k * B : (k + 1) * B] = boxes[:B]
    scores = rng.random((K * B, D)).astype(np.float32)
    scores[B : 2 * B], scores[3 * B :] = scores[:B], scores[:B]
    labels = rng.integers(0, 4, (K * B, D))
    labels[B : 2 * B], labels[3 * B :] = labels[:B], labels[:B]
    valid = rng.random((K * B, D)) < 0.85
    valid[B : 2 * B], valid[3 * B :] = valid[:B], valid[:B]
    return ScoredArrays(
        K, boxes, scores, labels, valid, gt, rng.integers(0, 4, (B, M)), present,
        rng.random((B, M)) < 0.15, rng.random((B, M)) < 0.3,
        [f"town{(start + i) % 2}" for i in range(B)],
    )  # fmt: skip


def _config() -> EvalConfig:
    return EvalConfig(
        eval_range=(-28.0, -28.0, 28.0, 28.0),
        class_names={0: "car", 1: "truck", 2: "pedestrian", 3: "cyclist"},
        class_groups={"vehicle": (0, 1)},
    )


def _batches(n: int) -> list[ScoredArrays]:
    rng = np.random.default_rng(7)
    return [_batch(rng, i * B) for i in range(n)]


def _here(batches: list[ScoredArrays]) -> list[APAccumulator]:
    accs = [APAccumulator(_config()) for _ in range(K)]
    for scored in batches:
        accumulate_arrays(scored, accs)
    return accs


def _same(accs: list[APAccumulator], oracle: list[APAccumulator]) -> None:
    assert [a.state_digest() for a in accs] == [a.state_digest() for a in oracle]
    for acc, ref in zip(accs, oracle, strict=True):
        np.testing.assert_equal(
            acc.compute(bootstrap=50, seed=3), ref.compute(bootstrap=50, seed=3)
        )


def test_the_scoring_process_gives_the_accumulators_scored_here():
    batches = _batches(5)
    pool = forked_worker(_one_thread)
    try:
        assert pool.submit(os.getpid).result() != os.getpid()
        scoring = GroupScoring(_config(), K, pool)
        other = GroupScoring(_config(), K, pool)  # a second group in flight beside it
        for scored in batches:
            scoring.add(scored)
            other.add(batches[0])
        accs = scoring.accumulators()
        assert scoring.accumulators() is accs  # asked again: the same objects
        _same(other.accumulators(), _here([batches[0]] * len(batches)))
    finally:
        pool.shutdown()
    oracle = _here(batches)
    _same(accs, oracle)
    # the shared conditions were recorded as replicas there too, and differ from the others
    digests = [a.state_digest() for a in accs]
    assert digests[0] == digests[1] == digests[3] != digests[2]
    # without a process: the same
    here = GroupScoring(_config(), K, None)
    for scored in batches:
        here.add(scored)
    _same(here.accumulators(), oracle)


def test_a_batch_that_cannot_be_scored_is_reported_when_the_group_ends():
    batches = _batches(3)
    bad = batches[1]
    bad.boxes[0, 0, 3] = np.nan
    bad.valid[0, 0] = True
    pool = forked_worker(_one_thread)
    try:
        scoring = GroupScoring(_config(), K, pool)
        for scored in batches:
            scoring.add(scored)
        with pytest.raises(ValueError, match="det_boxes/det_scores: contain non-finite values"):
            scoring.accumulators()
        # the worker goes on with other groups
        good = GroupScoring(_config(), K, pool)
        good.add(batches[0])
        _same(good.accumulators(), _here(batches[:1]))
    finally:
        pool.shutdown()


def _kill(worker) -> None:
    """End ``worker``'s process and return once it has ended (its pool's future then breaks:
    the channel's calls run beside the pool's thread, so one might otherwise still be answered
    while the process exits)."""
    with pytest.raises(BrokenProcessPool):
        worker.submit(os._exit, 1).result()


def test_a_dead_scoring_process_costs_a_warning_not_the_group():
    batches = _batches(4)
    pool = forked_worker(_one_thread)
    try:
        scoring = GroupScoring(_config(), K, pool)
        for scored in batches[:2]:
            scoring.add(scored)
        _kill(pool)  # the worker dies (as if killed for memory)
        with pytest.warns(RuntimeWarning, match="scoring process stopped"):
            for scored in batches[2:]:
                scoring.add(scored)
            accs = scoring.accumulators()
    finally:
        pool.shutdown()
    _same(accs, _here(batches))


def test_intervals_split_over_the_ap_workers_are_those_of_one_computation(monkeypatch):
    """One distinct cell's intervals computed in parts on several AP workers
    (``interval_parts``, ``joined_parts``) equal ``compute_ap`` in one piece: every AP,
    detail and interval, in the same order."""
    import v2x.sweep_rows as sweep_rows

    accs = _here(_batches(6))
    whole = sweep_rows.compute_ap(accs[0], 200, 5, "auto")
    # every split, down to one (group, threshold) interval per part
    intervals = 7  # overall at 0.3/0.5/0.7, ego-invisible at 0.7, vehicle at 0.3/0.5/0.7
    for parts in (2, 3, 6, intervals, 50):
        split = sweep_rows.interval_parts(accs[0], parts)
        assert len(split) == min(parts, intervals)
        joined = sweep_rows.joined_parts(
            [sweep_rows.compute_ap(accs[0], 200, 5, "auto", g) for g in split]
        )
        np.testing.assert_equal(joined, whole)
        assert [(n, list(v)) for n, v in joined["ci"].items()] == [
            (n, list(v)) for n, v in whole["ci"].items()
        ]
    # in the sweep's worker processes: one cell split over them, two cells one part each
    monkeypatch.setattr(sweep_rows, "CELL_PROCESSES", 4)
    monkeypatch.setattr(sweep_rows, "_POOL", [])
    parts = []
    split = sweep_rows.interval_parts
    monkeypatch.setattr(
        sweep_rows, "interval_parts", lambda acc, n: parts.append(n) or split(acc, n)
    )
    try:  # (_computed_results: _distinct_results would take "a" from its memo the second time)
        one = sweep_rows._computed_results({"a": accs[0]}, 200, 5, "auto")
        two = sweep_rows._computed_results({"a": accs[0], "c": accs[2]}, 200, 5, "auto")
    finally:
        for pool in sweep_rows._POOL:
            pool.shutdown()
    assert parts == [4, 2, 2]
    np.testing.assert_equal(one["a"], whole)
    np.testing.assert_equal(two["a"], whole)
    np.testing.assert_equal(two["c"], sweep_rows.compute_ap(accs[2], 200, 5, "auto"))


def test_sealed_accumulators_are_the_process_s_accumulators_unopened(monkeypatch):
    """From a scoring process a group's rows get its accumulators sealed there
    (``SealedAccumulator``: pickled with their digests, never rebuilt in this process): the
    oracle's digests and thresholds, and ``compute_ap`` of one (in this process or split over
    the AP workers) equals the oracle's. Without a process: the accumulators themselves."""
    import v2x.sweep_rows as sweep_rows
    from v2x.sweep_scoring import SealedAccumulator

    batches = _batches(4)
    oracle = _here(batches)
    pool = forked_worker(_one_thread)
    try:
        scoring = GroupScoring(_config(), K, pool)
        for scored in batches:
            scoring.add(scored)
        sealed = scoring.sealed_accumulators()
        assert scoring.sealed_accumulators() is sealed
        opened = scoring.accumulators()  # asked after: the sealed ones opened, once
        assert scoring.accumulators() is opened
        _same(opened, oracle)
    finally:
        pool.shutdown()
    assert all(isinstance(s, SealedAccumulator) for s in sealed)
    assert sealed[0] is sealed[1] is sealed[3] is not sealed[2]  # identical cells: sealed once
    assert [s.state_digest() for s in sealed] == [a.state_digest() for a in oracle]
    np.testing.assert_array_equal(sealed[0].thresholds, oracle[0].thresholds)
    _same([s.opened() for s in sealed], oracle)
    want = sweep_rows.compute_ap(oracle[2], 100, 5, "auto")
    np.testing.assert_equal(sweep_rows.compute_ap(sealed[2], 100, 5, "auto"), want)
    monkeypatch.setattr(sweep_rows, "CELL_PROCESSES", 4)
    monkeypatch.setattr(sweep_rows, "_POOL", [])
    try:
        got = sweep_rows._distinct_results({"c": sealed[2]}, 100, 5, "auto")
    finally:
        for worker_pool in sweep_rows._POOL:
            worker_pool.shutdown()
    np.testing.assert_equal(got["c"], want)
    here = GroupScoring(_config(), K, None)
    for scored in batches:
        here.add(scored)
    assert here.sealed_accumulators() is here.accumulators()
    _same(here.sealed_accumulators(), oracle)


def test_a_cells_result_is_the_accumulators_without_its_curves():
    """``compute_ap`` (what comes back from an AP worker): ``compute``'s APs, intervals and
    detail counts, without the precision and recall arrays (the rows read none)."""
    import v2x.sweep_rows as sweep_rows

    acc = _here(_batches(3))[2]
    got = sweep_rows.compute_ap(acc, 100, 5, "auto")
    want = acc.compute(bootstrap=100, seed=5, bootstrap_groups=sweep_rows.RESULT_GROUPS)
    curves = {"recall", "precision"}
    assert {k: v for k, v in got.items() if k != "details"} == {
        k: v for k, v in want.items() if k != "details"
    }
    assert got["details"] == {
        name: {t: {k: v for k, v in d.items() if k not in curves} for t, d in by_t.items()}
        for name, by_t in want["details"].items()
    }
    assert any(curves <= set(d) for by_t in want["details"].values() for d in by_t.values())


def _pools(n: int) -> list:
    return [forked_worker(_one_thread) for _ in range(n)]


def test_a_group_spread_over_several_processes_gets_the_records_scored_here():
    """Three scoring processes take a group's batches in turn, each into accumulators of its
    own, joined in batch order by the first: the oracle's digests and results, sealed or not
    (identical cells sealed once), with a second group in flight on the same processes; fewer
    batches than processes too."""
    from v2x.sweep_scoring import SealedAccumulator

    batches = _batches(5)
    pools = _pools(3)
    try:
        scoring = GroupScoring(_config(), K, pools)
        other = GroupScoring(_config(), K, pools[::-1])
        short = GroupScoring(_config(), K, pools)
        for i, scored in enumerate(batches):
            scoring.add(scored)
            other.add(batches[-1 - i])
        short.add(batches[0])
        sealed = scoring.sealed_accumulators()
        _same(other.accumulators(), _here(batches[::-1]))
        _same(short.accumulators(), _here(batches[:1]))
    finally:
        for pool in pools:
            pool.shutdown()
    oracle = _here(batches)
    assert all(isinstance(s, SealedAccumulator) for s in sealed)
    assert sealed[0] is sealed[1] is sealed[3] is not sealed[2]
    assert [s.state_digest() for s in sealed] == [a.state_digest() for a in oracle]
    _same([s.opened() for s in sealed], oracle)


def test_over_several_processes_a_failed_batch_is_reported_and_a_dead_one_costs_a_warning():
    batches = _batches(4)
    bad = batches[2]
    bad.boxes[0, 0, 3] = np.nan
    bad.valid[0, 0] = True
    pools = _pools(2)
    try:
        scoring = GroupScoring(_config(), K, pools)
        for scored in batches:
            scoring.add(scored)
        with pytest.raises(ValueError, match="det_boxes/det_scores: contain non-finite values"):
            scoring.accumulators()
        good = GroupScoring(_config(), K, pools)  # both processes go on with other groups
        for scored in batches[:2]:
            good.add(scored)
        _same(good.accumulators(), _here(batches[:2]))
        batches = _batches(4)
        scoring = GroupScoring(_config(), K, pools)
        for scored in batches[:3]:
            scoring.add(scored)
        _kill(pools[1])  # the second process dies (as if killed for memory)
        with pytest.warns(RuntimeWarning, match="scoring process stopped"):
            scoring.add(batches[3])
            accs = scoring.accumulators()
    finally:
        for pool in pools:
            pool.shutdown()
    _same(accs, _here(batches))


def _counted(monkeypatch, sweep_rows, gate=None):
    """``_computed_results`` wrapped: records the digests each call computes; the first call
    waits for ``gate`` (a ``threading.Event``) when one is given."""
    calls, original = [], sweep_rows._computed_results

    def computed(accs, *args):
        calls.append(sorted(accs))
        if gate is not None and len(calls) == 1:
            assert gate.wait(60), "the test's second request did not start"
        return original(accs, *args)

    monkeypatch.setattr(sweep_rows, "_computed_results", computed)
    return calls


def test_a_cell_equal_to_an_earlier_groups_is_computed_once(monkeypatch):
    """``_distinct_results`` of a later group takes an equal cell's result (equal state
    digest, resamples, seed and unit) from the sweep's memo: computed once, equal to
    ``compute_ap``'s; other resamples or seeds are computed anew; ``forget_results`` (a new
    sweep) empties the memo."""
    import v2x.sweep_rows as sweep_rows

    accs = _here(_batches(4))  # cells 0, 1, 3 identical (replicas), 2 its own
    a, c = accs[0].state_digest(), accs[2].state_digest()
    assert accs[1].state_digest() == a != c
    sweep_rows.forget_results()
    calls = _counted(monkeypatch, sweep_rows)
    first = sweep_rows._distinct_results({a: accs[0]}, 100, 5, "auto")
    later = sweep_rows._distinct_results({a: accs[1], c: accs[2]}, 100, 5, "auto")
    assert calls == [[a], [c]]
    np.testing.assert_equal(later[a], sweep_rows.compute_ap(accs[0], 100, 5, "auto"))
    np.testing.assert_equal(later[c], sweep_rows.compute_ap(accs[2], 100, 5, "auto"))
    assert later[a] is first[a]
    sweep_rows._distinct_results({a: accs[3]}, 100, 6, "auto")  # another seed
    sweep_rows._distinct_results({a: accs[3]}, 50, 5, "auto")  # other resamples
    assert calls[2:] == [[a], [a]]
    sweep_rows.forget_results()
    sweep_rows._distinct_results({a: accs[0]}, 100, 5, "auto")
    assert calls[4:] == [[a]]


def test_a_cell_asked_for_while_another_group_computes_it_waits_for_that(monkeypatch):
    """Two groups' row threads ask for the same cell at once: the second waits for the
    first's computation (one call), and both get its result."""
    import threading

    import v2x.sweep_rows as sweep_rows

    accs = _here(_batches(2))
    a = accs[0].state_digest()
    sweep_rows.forget_results()
    gate = threading.Event()
    calls = _counted(monkeypatch, sweep_rows, gate)
    got = {}
    first = threading.Thread(
        target=lambda: got.update(one=sweep_rows._distinct_results({a: accs[0]}, 100, 5, "auto"))
    )
    first.start()
    while not calls:  # the first thread is computing (held at the gate)
        first.join(0.01)
    second = threading.Thread(
        target=lambda: got.update(two=sweep_rows._distinct_results({a: accs[1]}, 100, 5, "auto"))
    )
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the first's result, not computing its own
    gate.set()
    first.join(60)
    second.join(60)
    assert calls == [[a]] and got["one"][a] is got["two"][a]
    np.testing.assert_equal(got["one"][a], sweep_rows.compute_ap(accs[0], 100, 5, "auto"))


def test_a_failed_cell_is_raised_to_every_group_and_computed_again_later(monkeypatch):
    import v2x.sweep_rows as sweep_rows

    accs = _here(_batches(2))
    a = accs[0].state_digest()
    sweep_rows.forget_results()
    original = sweep_rows._computed_results

    def broken(accs, *args):
        raise MemoryError("the AP worker ran out of memory")

    monkeypatch.setattr(sweep_rows, "_computed_results", broken)
    with pytest.raises(MemoryError, match="ran out of memory"):
        sweep_rows._distinct_results({a: accs[0]}, 100, 5, "auto")
    monkeypatch.setattr(sweep_rows, "_computed_results", original)
    got = sweep_rows._distinct_results({a: accs[0]}, 100, 5, "auto")
    np.testing.assert_equal(got[a], sweep_rows.compute_ap(accs[0], 100, 5, "auto"))


def test_a_batchs_replica_cells_leave_the_scoring_process_once():
    """``accumulate_arrays`` says which cells got their records as replicas (conditions 1 and
    3 of these batches detect what condition 0 does); a batch's partial accumulators
    (``_Part``) pickle only the cells scored on their own and come back with every cell's
    records, the replicas sharing their cell's accumulator."""
    import pickle

    from v2x.sweep_scoring import _Part

    accs = [APAccumulator(_config()) for _ in range(K)]
    replica_of = accumulate_arrays(_batches(1)[0], accs)
    assert replica_of == [0, 0, 2, 0]
    part = _Part(accs, replica_of)
    blob = pickle.dumps(part, pickle.HIGHEST_PROTOCOL)
    two = len(pickle.dumps([accs[0], accs[2]], pickle.HIGHEST_PROTOCOL))
    assert len(blob) < two + 200  # two accumulators' records, not four
    back = pickle.loads(blob)
    assert back.replica_of == replica_of
    assert back.accs[0] is back.accs[1] is back.accs[3] is not back.accs[2]
    assert [a.state_digest() for a in back.accs] == [a.state_digest() for a in accs]


def test_shared_detections_score_as_their_tiling():
    """A batch whose conditions all have the same detections (``RunOutput.shared``) is
    copied with its ``B`` rows only and scores, cell for cell, what its ``K·B`` tiling scores
    (oracle: ``accumulate_arrays`` of the tiled arrays, which finds the conditions equal), in
    this process and in the scoring process; ``scored_arrays`` takes the shared rows."""
    import dataclasses

    import torch

    from v2x.conditions import LinkCost, tiled_run
    from v2x.evaluation import EgoGroundTruth, scored_arrays
    from v2x.perception.detector import Detections

    one = _batches(1)[0]
    rows = dataclasses.replace(
        one, boxes=one.boxes[:B], scores=one.scores[:B], labels=one.labels[:B],
        valid=one.valid[:B], shared=True,
    )  # fmt: skip
    tiled = dataclasses.replace(
        one, **{n: np.tile(getattr(rows, n), (K,) + (1,) * (getattr(rows, n).ndim - 1))
                for n in ("boxes", "scores", "labels", "valid")},
    )  # fmt: skip
    oracle = _here([tiled])
    _same(_here([rows]), oracle)
    pool = forked_worker(_one_thread)
    try:
        scoring = GroupScoring(_config(), K, pool)
        scoring.add(rows)
        _same(scoring.accumulators(), oracle)
    finally:
        pool.shutdown()
    with pytest.raises(ValueError, match="shared detections need 3 rows, got 12"):
        _here([dataclasses.replace(tiled, shared=True)])

    det = Detections(
        *(torch.from_numpy(getattr(rows, n)) for n in ("boxes", "scores", "labels", "valid"))
    )
    run = tiled_run(det, LinkCost.zeros(K, B, 2, torch.zeros(K), torch.device("cpu")), K)
    assert run.shared is det and run.detections.boxes.shape[0] == K * B
    gt = EgoGroundTruth(*(torch.from_numpy(getattr(one, n)) for n in (
        "gt_boxes", "gt_labels", "present", "ignored", "invisible")), one.sequences)  # fmt: skip
    got = scored_arrays(run, gt)
    assert got.shared and got.boxes.shape[0] == B
    np.testing.assert_array_equal(got.boxes, rows.boxes)
