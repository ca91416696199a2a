"""Results rows averaged over seeds: one row per cell setting, with a 95 % interval of the mean
that holds the seeds' spread and the frames' sampling error (``aggregate_seeds``; what the plots
and tables draw from several seeds).
"""

from __future__ import annotations

import math

import pyarrow as pa

from v2x.results import AP_METRICS, CONDITION_COLUMNS, RESULTS_SCHEMA


def _t_quantile_975(dof: int) -> float:
    """The 97.5 % quantile of Student's t with ``dof`` degrees of freedom (two-sided 95 %)."""
    from scipy import stats

    return float(stats.t.ppf(0.975, dof))


def _frames_half_widths(members: list[dict], metric: str) -> tuple[float, float]:
    """The seeds' mean bootstrap half-widths of ``metric`` below and above the AP (NaN when a
    seed's row has no interval)."""
    below = [float(m[metric]) - float(m[f"{metric}_lo"]) for m in members]
    above = [float(m[f"{metric}_hi"]) - float(m[metric]) for m in members]
    if not all(v == v for v in below + above):
        return math.nan, math.nan
    return math.fsum(below) / len(members), math.fsum(above) / len(members)


def aggregate_seeds(table: pa.Table) -> pa.Table:
    """One row per cell setting, averaged over seeds.

    Rows are grouped by everything that defines a cell except its seed: the condition columns
    and ``setting_key`` (code, checkpoints, data, config; rows from before provenance existed
    group by ``config_hash``). Numeric columns are averaged. With one seed each AP keeps its
    bootstrap interval (``<metric>_lo`` / ``_hi``, over the row's ``bootstrap_unit``). With
    ``n > 1`` seeds the interval holds both sources of error of the mean AP:

    * the seeds' spread (channel noise, random weights): the 95 % Student-t half-width
      ``h_seed = t(0.975, n-1) · sd / √n``;
    * the frames' sampling error, which averaging over seeds does not shrink (every seed runs
      on the same frames): the seeds' mean bootstrap half-width on each side, ``h_frames``
      (``AP - lo`` below, ``hi - AP`` above).

    Assumed independent, they add in quadrature: ``mean ∓ √(h_seed² + h_frames²)``, clipped to
    ``[0, 1]``, and
    ``bootstrap_unit`` reads ``seed+frame`` (or ``seed+sequence``). A cell the seed does not
    change thus keeps its frames' interval instead of a zero-wide one. Rows without bootstrap
    intervals (``eval.bootstrap=0``) get the seeds' interval alone (``bootstrap_unit``
    ``seed``). Adds ``num_seeds`` and ``seeds`` (comma-separated).
    """
    rows = table.to_pylist()
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        setting = r.get("setting_key") or f"config:{r.get('config_hash')}"
        condition = tuple(
            (name, r[name] if not (isinstance(r[name], float) and r[name] != r[name]) else "nan")
            for name, _ in CONDITION_COLUMNS
        )
        groups.setdefault((setting, condition), []).append(r)
    out = []
    numeric = [f.name for f in RESULTS_SCHEMA if pa.types.is_floating(f.type)]
    for members in groups.values():
        members.sort(key=lambda r: r.get("seed", 0))
        first = dict(members[0])
        n = len(members)
        if n > 1:
            for name in numeric:
                values = [float(m[name]) for m in members]
                first[name] = math.fsum(values) / n if all(v == v for v in values) else math.nan
            frames = {metric: _frames_half_widths(members, metric) for metric in AP_METRICS}
            # one kind of interval per row: the frames' error wherever every AP has it
            with_frames = all(
                below == below
                for metric, (below, _) in frames.items()
                if all(m[metric] == m[metric] for m in members)
            )
            for metric in AP_METRICS:
                values = [float(m[metric]) for m in members]
                if not all(v == v for v in values):
                    first[f"{metric}_lo"] = first[f"{metric}_hi"] = math.nan
                    continue
                mean = math.fsum(values) / n
                sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
                half = _t_quantile_975(n - 1) * sd / math.sqrt(n)
                below, above = frames[metric] if with_frames else (0.0, 0.0)
                # an AP lies in [0, 1]: so does its interval (a t interval can cross 0)
                first[f"{metric}_lo"] = max(0.0, mean - math.hypot(half, below))
                first[f"{metric}_hi"] = min(1.0, mean + math.hypot(half, above))
            first["num_gt"] = round(math.fsum(m["num_gt"] for m in members) / n)
            unit = str(members[0].get("bootstrap_unit") or "frame")
            first["bootstrap_unit"] = f"seed+{unit}" if with_frames else "seed"
        first["num_seeds"] = n
        first["seeds"] = ",".join(str(m.get("seed")) for m in members)
        out.append(first)
    schema = RESULTS_SCHEMA.append(pa.field("num_seeds", pa.int64())).append(
        pa.field("seeds", pa.string())
    )
    if not out:
        return schema.empty_table()
    return pa.Table.from_pylist(out, schema=schema)
