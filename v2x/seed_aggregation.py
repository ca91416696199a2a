"""Results rows averaged over seeds: one row per cell setting, with the 95 % Student-t interval
of the mean over seeds (``aggregate_seeds``; what the plots and tables draw from several seeds).
"""

from __future__ import annotations

import math

import pyarrow as pa

from v2x.results import AP_METRICS, CONDITION_COLUMNS, RESULTS_SCHEMA


def _t_quantile_975(dof: int) -> float:
    """The 97.5 % quantile of Student's t with ``dof`` degrees of freedom (two-sided 95 %)."""
    from scipy import stats

    return float(stats.t.ppf(0.975, dof))


def aggregate_seeds(table: pa.Table) -> pa.Table:
    """One row per cell setting, averaged over seeds.

    Rows are grouped by everything that defines a cell except its seed: the condition columns
    and ``setting_key`` (code, checkpoints, data, config; rows from before provenance existed
    group by ``config_hash``). Numeric columns are averaged. With one seed each AP keeps its
    bootstrap interval (``<metric>_lo`` / ``_hi``, over the row's ``bootstrap_unit``); with
    ``n > 1`` seeds the interval is the 95 % Student-t interval of the mean over seeds
    (``mean ± t(0.975, n-1) · sd / √n``; ``bootstrap_unit`` ``"seed"``). It measures the spread
    the seeds cause (channel noise, random weights) on the same frames, not the frames'
    sampling error. Adds ``num_seeds`` and ``seeds`` (comma-separated).
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
            for metric in AP_METRICS:
                values = [float(m[metric]) for m in members]
                if all(v == v for v in values):
                    mean = math.fsum(values) / n
                    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
                    half = _t_quantile_975(n - 1) * sd / math.sqrt(n)
                    first[f"{metric}_lo"], first[f"{metric}_hi"] = mean - half, mean + half
                else:
                    first[f"{metric}_lo"] = first[f"{metric}_hi"] = math.nan
            first["num_gt"] = round(math.fsum(m["num_gt"] for m in members) / n)
            first["bootstrap_unit"] = "seed"
        first["num_seeds"] = n
        first["seeds"] = ",".join(str(m.get("seed")) for m in members)
        out.append(first)
    schema = RESULTS_SCHEMA.append(pa.field("num_seeds", pa.int64())).append(
        pa.field("seeds", pa.string())
    )
    if not out:
        return schema.empty_table()
    return pa.Table.from_pylist(out, schema=schema)
