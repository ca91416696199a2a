"""Bootstrap intervals of an ``APAccumulator``'s APs (``v2x.perception.average_precision``):
which unit is resampled (frames or whole sequences), the seeded draws, the resampled APs of one
group and threshold, and their percentile interval. ``BootstrapIntervals`` is the accumulator's
base that computes them (``ap_resample``, ``ap_quantiles``: the same bits as ``ap_from_flags``
on each resample).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from v2x.perception.ap_config import BOOTSTRAP_UNITS, _check_sort
from v2x.perception.ap_quantiles import resampled_ap_quantiles
from v2x.perception.ap_records import _GroupStore
from v2x.perception.ap_resample import flat_rows, resampled_aps

__all__ = ["BootstrapIntervals"]


class BootstrapIntervals:
    """The bootstrap of ``APAccumulator`` (a base of it; module docstring of
    ``v2x.perception.average_precision``). Reads the accumulator's ``config``, ``thresholds``,
    ``_groups`` (through ``GroupRecords._store``) and ``_sequences``."""

    def bootstrap_unit(self, requested: str = "auto") -> str:
        """The unit ``compute(bootstrap_unit=requested)`` resamples: ``"frame"`` or
        ``"sequence"`` (``"auto"``: ``"sequence"`` when every frame has a sequence, there are at
        least two sequences and some sequence holds more than one frame; with a single sequence
        every resample would be the whole set, a zero-width interval, so ``"sequence"`` is then
        refused and ``"auto"`` falls back to frames)."""
        if requested not in BOOTSTRAP_UNITS:
            raise ValueError(
                f"bootstrap_unit: expected one of {', '.join(BOOTSTRAP_UNITS)}, got {requested!r}"
            )
        complete = all(q is not None for q in self._sequences)
        if requested == "sequence" and not complete:
            missing = sum(q is None for q in self._sequences)
            raise ValueError(
                f"bootstrap_unit: 'sequence' needs a sequence for every frame, {missing} of "
                f"{len(self._sequences)} frames have none (add_frame(..., sequence=...))"
            )
        count = len(set(self._sequences))
        if requested == "sequence" and count == 1:
            raise ValueError(
                f"bootstrap_unit: 'sequence' needs at least two sequences to resample, all "
                f"{len(self._sequences)} frames are of {self._sequences[0]!r} (use 'frame')"
            )
        if requested == "auto":
            grouped = complete and 2 <= count < len(self._sequences)
            return "sequence" if grouped else "frame"
        return requested

    def _draws(self, name: str, resamples: int, seed: int, unit: str) -> list[np.ndarray]:
        """Per resample, the indices of the group's records (one per frame) it holds, in
        dataset order. ``"frame"``: ``n`` records drawn with replacement; ``"sequence"``: as many
        sequences drawn with replacement (numbered in order of first appearance), each bringing
        all its records — with one frame per sequence, the very same draws."""
        store = self._store(name)
        if unit == "sequence":
            members: dict[Any, list[int]] = {}
            for record, fi in enumerate(store.frame_index):
                members.setdefault(self._sequences[fi], []).append(record)
            units = tuple(tuple(v) for v in members.values())
        else:
            units = tuple((r,) for r in range(len(store.frame_gt)))
        return list(_drawn_units(units, resamples, seed))

    def bootstrap_distribution(
        self,
        name: str,
        threshold: float,
        resamples: int,
        seed: int = 0,
        bootstrap_unit: str = "auto",
        sort: str | None = None,
    ) -> np.ndarray:
        """The resampled APs behind ``compute``'s interval for one group and threshold.

        Args:
            name: group (``"overall"``, ``"class/car"``, ...).
            threshold: one of the configured IoU thresholds.
            resamples, seed, bootstrap_unit, sort: as for :meth:`compute`.

        Returns:
            ``[R]`` float64 AP of each resample that holds GT (``R <= resamples``), in draw
            order; ``compute``'s interval is its percentile interval.
        """
        sort = self.config.sort if sort is None else sort
        _check_sort(sort, self.config.procedure, "sort")
        matches = [i for i, t in enumerate(self.thresholds.tolist()) if math.isclose(t, threshold)]
        if not matches:
            raise ValueError(
                f"threshold: expected one of {self.thresholds.tolist()}, got {threshold}"
            )
        if name not in self._groups:
            raise ValueError(f"name: expected one of {list(self._groups)}, got {name!r}")
        draws = self._draws(name, resamples, seed, self.bootstrap_unit(bootstrap_unit))
        return self._resampled_ap(name, matches[0], draws, sort)

    def _resampled_ap(
        self, name: str, ti: int, draws: Sequence[np.ndarray], sort: str
    ) -> np.ndarray:
        """AP of group ``name`` at threshold index ``ti`` on each resample (record indices)
        that holds GT."""
        store = self._store(name)
        frame_gt = np.asarray(store.frame_gt, dtype=np.int64)
        all_tp, all_sc, lengths = self._records(store, ti)
        # every resample at once, bit for bit what ap_from_flags gives on each
        return resampled_aps(all_tp, all_sc, lengths, frame_gt, draws, sort, self.config.procedure)

    @staticmethod
    def _records(store: _GroupStore, ti: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``[D]`` TP flags and ``[D]`` scores of the group's records at threshold index ``ti``,
        record after record, and ``[F]`` int64 detections of each record."""
        tps, scs = store.tp[ti], store.scores[ti]
        all_tp = np.concatenate(tps) if tps else np.zeros(0, np.int8)
        all_sc = np.concatenate(scs) if scs else np.zeros(0)
        return all_tp, all_sc, np.array([len(x) for x in tps], dtype=np.int64)

    def _bootstrap(
        self,
        name: str,
        sort: str,
        resamples: int,
        seed: int,
        confidence: float,
        thresholds: Sequence[float] | None = None,
        unit: str = "frame",
    ) -> dict[float, tuple[float, float]]:
        """Percentile interval of one group's AP over ``resamples`` resamplings of the frames
        or of the sequences (``_draws``; the same draws at every threshold)."""
        draws = flat_rows(self._draws(name, resamples, seed, unit))  # joined once: thresholds
        percentiles = [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0]
        store = self._store(name)
        frame_gt = np.asarray(store.frame_gt, dtype=np.int64)
        out: dict[float, tuple[float, float]] = {}
        for ti, thr in enumerate(self.thresholds.tolist()):
            if thresholds is not None and not any(math.isclose(thr, t) for t in thresholds):
                continue
            # np.quantile of _resampled_ap's values, bit for bit (NaN without a resample with
            # GT), from the exact APs of only the resamples that can hold those percentiles
            lo, hi = resampled_ap_quantiles(
                *self._records(store, ti), frame_gt, draws, percentiles, sort,
                self.config.procedure,
            )  # fmt: skip
            out[thr] = (float(lo), float(hi))
        return out


@functools.lru_cache(maxsize=16)
def _drawn_units(
    units: tuple[tuple[int, ...], ...], resamples: int, seed: int
) -> tuple[np.ndarray, ...]:
    """``APAccumulator._draws``: per resample, the records of ``resamples`` draws (seeded by
    ``seed``) of ``len(units)`` units with replacement, in dataset order, each unit bringing
    its records. Cached (read-only arrays): every group, threshold and sweep cell with the
    same units draws the very same resamples."""
    rng = np.random.default_rng(seed)
    if not units:
        rows = [np.zeros(0, dtype=np.int64) for _ in range(resamples)]
    else:
        picks = rng.integers(0, len(units), size=(resamples, len(units)))
        # A resample keeps the frames in dataset order: per-frame AP depends on the order of
        # the frames, and a shuffled order would add its own spread and bias to the interval.
        picks.sort(axis=1)
        if all(len(u) == 1 for u in units):
            rows = list(np.asarray(units, dtype=np.int64)[:, 0][picks])
        else:
            arrays = [np.asarray(u, dtype=np.int64) for u in units]
            rows = [np.concatenate([arrays[u] for u in row]) for row in picks]
    for row in rows:
        row.flags.writeable = False
    return tuple(rows)
