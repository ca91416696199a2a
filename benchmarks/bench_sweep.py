"""Sweep throughput: frame-conditions per second, batched vs a per-condition loop, and joblib scaling.

    python benchmarks/bench_sweep.py                       # CPU
    python benchmarks/bench_sweep.py --device cuda         # GPU
    python benchmarks/bench_sweep.py --workers 1 2 4       # + a joblib multirun over 1, 2, 4 jobs
    python benchmarks/bench_sweep.py --device cuda --devices all   # + run_sweep on every GPU
    python benchmarks/bench_sweep.py --profile 30          # + where the warm run_sweep's time went

    # the issue-16 measurement on one H200 (docs/benchmarks.md): every payload on time, so
    # that run_sweep and the loop compute the same cells (at the default 20 MHz the identity
    # and analog maps all miss the 0.1 s deadline: the sweep gives those cells the ego's
    # detections without running them, the loop fuses them; a WARNING line says so)
    python benchmarks/bench_sweep.py --device cuda --checkpoint shipped --frames 512 \
        --batch-size 32 --codecs identity analog deepjscc --precision fp16 \
        --codec-precision fp16 --bandwidth-hz 1e11 --run-sweep-repeats 3

    # the issue-16 digital goal (1 Mbit per link) through run_sweep: 64 x 64 x 64 maps at 4 bits
    python benchmarks/bench_sweep.py --device cuda --model pillars_center --small-model \
        --frames 128 --batch-size 16 --snr-db -10 -5 0 5 10 15 20 --fusions max \
        --bandwidth-hz 1e9 --skip-loop --run-sweep-repeats 3 \
        --codecs '{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir}'

A *frame-condition* is one frame evaluated under one condition (an SNR of a fusion/codec/channel
setting). Three measurements, all in this process on the same frames and model; the first two
over the settings of ``run_sweep``'s own cells (``--loop-cells sweep``, the default: each
feature fusion of ``--fusions`` once per codec, ego-only and late fusion once, nothing coded),
or over max fusion per codec only (``--loop-cells max``, the reference of the figures before
2026-12-07, whose rate was then divided into a ``run_sweep`` rate over more cells):

1. **batched**: what ``run_sweep`` does for a feature-fusion group — encoders run once per frame
   batch, then every SNR of a setting goes through one ``CooperativePipeline.run`` call
   (``run_conditions`` with one seed per condition: each condition's codec + channel block is
   drawn from its own seed, ``v2x.condition_streams``; warp, fusion, head and NMS run once for
   all ``K`` conditions).
2. **loop (reference)**: the naive way — for every condition, run the whole detector again
   (encode + codec + channel + fusion + head) with one SNR.
3. **run_sweep**: the full app path (network, budget, ledger, AP with bootstrap intervals,
   atomic writes) end to end over ``--fusions`` × ``--codecs`` × ``--snr-db``,
   ``--run-sweep-repeats`` times (default 2) in fresh folders: the first call also pays the
   process's one-time imports (OmegaConf, pyarrow, ...), the second shows the steady state. Its
   rate is also printed as a multiple of the loop's (the issue's "x the per-condition loop").
   After each call a line per codec says what its ledger carried (links sent, source Mbit and
   channel uses per link, the shares delivered and past the deadline), and a WARNING line where
   links missed the deadline: the loop runs no budget, so the ratio is then of different work.

Both the batched path and ``run_sweep`` let conditions whose decoded maps are bitwise equal
(the ``identity`` codec at every SNR, a digital link above its cliff) share one warp + fusion +
head + NMS and one evaluation pass; the loop reference runs every condition on its own, as a
user without the batching would. ``--codecs analog`` alone gives the figure with no such
sharing (every SNR differs).

``--workers`` launches ``v2x-sweep -m hydra/launcher=joblib`` with ``--jobs`` jobs (one channel
each) and reports the wall time per worker count (each job gets ``cores // workers`` torch
threads). ``--devices`` (``all``, or a comma list such as ``cuda:0,cuda:1`` or ``cpu,cpu``; a
device named twice gets two workers: ``cuda:0,cuda:0``; several lists may follow) runs
``run_sweep`` twice more per list with ``device`` set to those devices (one worker process each,
``v2x.sweep_workers``: each on its shard of the frames) and prints each call's rate against a
warm one-device ``run_sweep``; the first call's workers start inside its measured time (spawn,
imports, CUDA context), the second's were kept from the first (their frames, model and
batches loaded again in both).
``--profile N`` runs ``run_sweep`` once more under cProfile (not one of the timed calls) and
prints the ``N`` costliest project functions (cumulative) and overall (own time); ``--trace
PATH`` once more under ``torch.profiler`` (host + CUDA), printing the costliest operators and
saving a Chrome trace (where the GPU waits on the host); ``--idle-gaps`` once more under
``torch.profiler`` with Python stacks, printing ``benchmarks/trace_idle.py``'s report: the GPU's
idle time by host function (inclusive, own code, innermost project function; use fewer frames:
the trace holds every Python call); ``--phases`` once more with ``run_sweep``'s steps (``PHASES``:
planning, frame loading, hashing, the detector, each group, each batch, scoring, the rows) timed
per thread; ``--order-ab R`` R rounds of warm calls alternating the order one device computes
the groups in (``bench_orders``); ``--known-drops-ab R`` R rounds alternating with and without
the conditions known before the air to deliver nothing left out of the runs
(``bench_known_drops``). ``benchmarks/sweep_traffic.py`` counts the bytes each call site moves per
frame-condition (device-independent); ``benchmarks/sweep_syncs.py`` counts the host syncs per
call site (CUDA). The batched pipeline and the loop run in the sweep's deterministic mode
(``configure_determinism``), set before any CUDA work.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_section(args: argparse.Namespace) -> dict:
    """The sweep's ``model`` section: the ``--model`` preset (``conf/model``), on the ±25.6 m
    grid with ``--small-model``."""
    from v2x.sweep_config import model_preset

    model = model_preset(args.model)
    if args.small_model:
        model["grid"] = {**model["grid"], "x_range_m": [-25.6, 25.6], "y_range_m": [-25.6, 25.6]}
    return model


def eval_section(args: argparse.Namespace) -> dict:
    """The sweep's ``eval`` options the benchmark sets: ``--precision`` and, with
    ``--channels-first``, ``channels_last: false`` (the detector as before the fifty-first
    session on CUDA), for the batched pipeline, the loop and ``run_sweep`` alike."""
    out = {"precision": getattr(args, "precision", "fp32")}
    if getattr(args, "channels_first", False):
        out["channels_last"] = False
    return out


def build(args: argparse.Namespace):
    from v2x.datasets.build import cached_split
    from v2x.datasets.frame import collate_frames
    from v2x.sweep_batches import sweep_detector
    from v2x.sweep_plan import plan_sweep

    frames = list(
        cached_split(
            split="test", num_frames=args.frames, frames_per_sequence=10, seed=0, quiet=True
        )
    )
    device = torch.device(args.device)
    torch.manual_seed(0)
    # the detector run_sweep runs for this checkpoint (untrained: weights seeded by its seed, 0),
    # batch norms folded as its default says (sweep_detector)
    plan = plan_sweep(
        {"checkpoint": args.checkpoint, "model": model_section(args), "device": args.device,
         "quiet": True, "eval": eval_section(args)}
    )  # fmt: skip
    model = sweep_detector(plan, device)
    batches = [
        collate_frames(frames[i : i + args.batch_size]).to(device)
        for i in range(0, len(frames), args.batch_size)
    ]
    return frames, model, batches, device


def codec_spec(text: str) -> str | dict:
    """One ``--codecs`` entry: a codec name (``analog``) or a YAML flow mapping with its options,
    as ``grid.codecs`` takes them (``{name: digital_payload, bits: 4, harq_max_rounds: 1}``)."""
    if not text.lstrip().startswith("{"):
        return text
    import yaml

    spec = yaml.safe_load(text)
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise SystemExit(f"--codecs: {text!r} is not a mapping with a 'name' (a codec name or "
                         "{name: digital_payload, bits: 4, ...})")  # fmt: skip
    return spec


class Sent(NamedTuple):
    """What the ledgers say one codec's sent links carried (``ledger_summary``)."""

    links: int  # links sent
    mbit: float  # mean source Mbit per sent link
    channel_uses: float  # mean channel uses per sent link
    delivered: float  # share of the sent links delivered
    late: float  # share of the sent links past the deadline (dropped, or fused stale)
    max_latency_s: float  # the longest latency of a sent link


def ledger_summary(out: str, deadline_s: float = 0.1) -> dict[str, Sent]:
    """Per codec of the sweeps written in ``out``, from their ledgers: what the air actually
    carried (``Sent``; ``deadline_s``: the budget's, for the share of links past it)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    columns = ["codec", "sent", "source_bits", "channel_uses", "delivered", "latency_s"]
    tables = [pq.read_table(p, columns=columns) for p in Path(out).rglob("sweep-*.ledger.parquet")]
    if not tables:
        return {}
    t = pa.concat_tables(tables)
    t = t.filter(pc.field("sent"))
    summary = {}
    for codec in pc.unique(t["codec"]).to_pylist():
        rows = t.filter(pc.equal(t["codec"], codec))
        n = rows.num_rows
        summary[codec] = Sent(
            n,
            _total(rows["source_bits"]) / n / 1e6,
            _total(rows["channel_uses"]) / n,
            _total(rows["delivered"]) / n,
            _total(pc.greater(rows["latency_s"], deadline_s)) / n,
            pc.max(rows["latency_s"]).as_py() or 0.0,
        )
    return summary


def _total(values) -> float:
    """The sum of a pyarrow column (numbers or booleans) as a float; 0.0 when empty."""
    import pyarrow.compute as pc

    return pc.sum(pc.cast(values, "float64")).as_py() or 0.0


def unlike_loop(sent: dict[str, Sent], bandwidth_hz: float, deadline_s: float) -> str:
    """A warning where a codec's links missed the deadline in ``run_sweep`` (``""`` where none
    did): the loop runs no budget and fuses every map, while the sweep fuses no late payload
    and runs no condition whose payloads all miss the deadline (``v2x.known_drops``: the ego's
    detections), so the two rates are of different work. It names a bandwidth at which the
    slowest link seen would have been on time (its latency taken as airtime, which scales as
    1 / bandwidth: an estimate)."""
    late = {c: v for c, v in sent.items() if v.late > 0}
    if not late:
        return ""
    shares = ", ".join(f"{c} {v.late:.0%}" for c, v in sorted(late.items()))
    slowest = max(v.max_latency_s for v in late.values())
    exponent = math.ceil(math.log10(bandwidth_hz * 2.0 * slowest / deadline_s))
    return (
        f"  WARNING: sent links past the {deadline_s:g} s deadline ({shares}): run_sweep drops "
        "them (or fuses them stale) and the loop (no budget) fuses them on time, so the two "
        "rates are of different work; "
        f"--bandwidth-hz 1e{exponent} would put every such payload on time"
    )


def pipeline(model, fusion: str, codec: str | dict, device, codec_precision: str = "fp32"):
    from v2x.channels import build_channel
    from v2x.perception.fusion import build_fusion
    from v2x.pipeline import CooperativePipeline
    from v2x.semcom import build_codec
    from v2x.semcom.deepjscc_checkpoint import SHIPPED_BY_CHANNELS
    from v2x.sweep_plan import sweep_arguments

    kwargs = dict(codec) if isinstance(codec, dict) else {"name": codec}
    codec = kwargs.pop("name")
    if "in_channels" in sweep_arguments(codec):  # deepjscc: the detector's feature channels
        kwargs["in_channels"] = int(model.config.feature_channels)
    if "checkpoint" in sweep_arguments(codec) and kwargs.get("in_channels") in SHIPPED_BY_CHANNELS:
        kwargs["checkpoint"] = "shipped"  # the architecture run_sweep runs
    if codec == "deepjscc" and codec_precision != "fp32":
        kwargs["precision"] = codec_precision  # (the other codecs have no such option)
    torch.manual_seed(0)
    return CooperativePipeline(
        model, build_fusion(fusion), build_codec(codec, **kwargs).to(device), build_channel("awgn")
    ).eval()


def loop_settings(
    fusions: list[str], codecs: list[str | dict], cells: str = "sweep"
) -> list[tuple[str, str | dict]]:
    """The (fusion, codec) settings the batched pipeline and the loop run, ``K`` conditions
    each. ``cells="sweep"``: the settings of ``run_sweep``'s cells for ``grid.fusions`` ×
    ``grid.codecs`` — a feature fusion once per codec, any other (ego only, late, early: nothing
    coded) once, with the identity codec that ``run_sweep`` builds for it — so that both time the
    same cells. ``"max"``: max fusion per codec only (the reference before 2026-12-07)."""
    from v2x.perception.fusion import fusion_class
    from v2x.sweep_plan import FEATURE_STAGE

    if cells == "max":
        return [("max", c) for c in codecs]
    out: list[tuple[str, str | dict]] = []
    for fusion in fusions:
        if fusion_class(fusion).stage == FEATURE_STAGE:
            out += [(fusion, c) for c in codecs]
        else:
            out.append((fusion, "identity"))
    return out


def _batched_run(pipe, batch, snr: torch.Tensor, seeds: list[int]):
    """The ``K`` conditions of ``snr`` on ``batch`` as ``run_sweep``'s group step runs them: a
    feature fusion each condition from its seed in one call, late / early fusion all in one
    call (their detections do not depend on the SNR), ego only one condition tiled."""
    from v2x.execution import run_conditions

    if pipe.runs_seeded_conditions():
        return run_conditions(pipe, batch, snr, seeds)
    return run_conditions(pipe, batch, snr, same_for_all=pipe.fusion.stage == "ego")


def bench_batched_vs_loop(args, model, batches, device) -> dict:
    from v2x.sweep_reuse import EncodeCache

    snr = torch.tensor(args.snr_db, dtype=torch.float32)
    k = snr.numel()
    frames = sum(b.batch_size for b in batches)
    settings = loop_settings(args.fusions, args.codecs, getattr(args, "loop_cells", "sweep"))
    seeds = [1000 + i for i in range(k)]  # one per condition, as run_sweep's cells
    results = {}
    with torch.no_grad():
        # warm-up: every setting once (lazy imports, kernels, autotuning)
        codec_precision = getattr(args, "codec_precision", "fp32")
        for fusion, codec in settings:
            pipe = pipeline(model, fusion, codec, device, codec_precision)
            _batched_run(pipe, batches[0], snr, seeds)
        _sync(device)
        cache = EncodeCache(model, 8e9)
        t0, c0 = time.perf_counter(), time.process_time()
        for fusion, codec in settings:
            pipe = pipeline(cache, fusion, codec, device, codec_precision)
            for bi, batch in enumerate(batches):
                cache.batch_index = bi
                out = _batched_run(pipe, batch, snr, seeds)
                out.detections.valid.any().item()
        _sync(device)
        batched = time.perf_counter() - t0
        batched_cpu = time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        for fusion, codec in settings:
            pipe = pipeline(model, fusion, codec, device, codec_precision)
            for batch in batches:
                for i in range(k):
                    out = pipe.run(batch, snr[i : i + 1])
                    out.detections.valid.any().item()
        _sync(device)
        loop = time.perf_counter() - t0
        loop_cpu = time.process_time() - c0
    work = frames * k * len(settings)
    results["frame_conditions"] = work
    results["settings"] = [(f, c if isinstance(c, str) else c["name"]) for f, c in settings]
    results["batched_fc_per_s"] = work / batched
    results["loop_fc_per_s"] = work / loop
    results["speedup"] = loop / batched
    results["batched_cpu_s"], results["loop_cpu_s"] = batched_cpu, loop_cpu
    return results


def bench_group_kernels(args, model, batches, device, top: int) -> None:
    """Per codec with max fusion, one warm pass of the batched pipeline over every batch under
    ``torch.profiler``: the device's kernel time per frame-condition and the ``top`` kernels by
    time (name, launches, µs per frame-condition). Every frame's encoded features are cached
    in the warm-up pass, so the encoder is not counted. On a CPU: the operators' own CPU time
    instead. With ``--autocast bf16|fp16`` both passes run under ``torch.autocast`` of that
    dtype (the codec and the detector's head in reduced precision; an experiment, not a sweep
    setting)."""
    import contextlib

    from torch.profiler import ProfilerActivity, profile

    from v2x.execution import run_conditions
    from v2x.sweep_reuse import EncodeCache

    snr = torch.tensor(args.snr_db, dtype=torch.float32)
    seeds = [1000 + i for i in range(snr.numel())]
    frames = sum(b.batch_size for b in batches)
    fc = frames * snr.numel()
    on_device = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])

    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    autocast = args.autocast or "fp32"

    def one_pass(pipe, cache) -> None:
        reduced = autocast in dtypes
        with (torch.autocast(device.type, dtype=dtypes[autocast]) if reduced
              else contextlib.nullcontext()):  # fmt: skip
            for bi, batch in enumerate(batches):
                cache.batch_index = bi
                run_conditions(pipe, batch, snr, seeds).detections.valid.any().item()

    with torch.no_grad():
        cache = EncodeCache(model, 64e9)  # every frame's features kept (126 MB each, standard)
        for codec in args.codecs:
            pipe = pipeline(cache, "max", codec, device, args.codec_precision)
            precision = getattr(pipe.codec, "precision", "fp32")  # what the codec runs in
            one_pass(pipe, cache)  # warm: kernels compiled, features cached
            _sync(device)
            with profile(activities=activities, with_stack=bool(args.kernel_stacks)) as prof:
                one_pass(pipe, cache)
                _sync(device)
            kernels = {}  # on a CPU: the operators' own time
            for e in prof.events():
                if on_device and e.device_type == torch.autograd.DeviceType.CUDA:
                    name, t = e.name, e.device_time  # µs
                elif not on_device and e.name.startswith("aten::"):
                    name, t = e.name, e.self_cpu_time_total
                else:
                    continue
                count, total = kernels.get(name, (0, 0.0))
                kernels[name] = (count + 1, total + t)
            total = sum(t for _, t in kernels.values())
            what = "device kernel" if on_device else "operators' own CPU"
            # the detector's own precision (--precision), and an enclosing autocast (--autocast)
            label = getattr(model, "precision", "fp32")
            label += f", autocast {autocast}" if autocast != "fp32" else ""
            print(f"== max/{codec} (detector {label}, codec {precision}): {what} time "
                  f"{total / 1e3:.1f} ms = {total / fc:.1f} us per frame-condition "
                  f"({fc} frame-conditions)")  # fmt: skip
            ranked = sorted(kernels.items(), key=lambda kv: -kv[1][1])[:top]
            for name, (count, t) in ranked:
                print(f"  {t / fc:8.1f} us/fc {count:6d}x  {name[:110]}")
            if args.kernel_stacks:
                _print_operator_stacks(prof, fc, on_device, args.kernel_stacks)


def _print_operator_stacks(prof, fc: int, on_device: bool, top: int) -> None:
    """The ``top`` operators by their own device time (on a CPU: their own CPU time) per
    frame-condition, each with the operators that called it (e.g. ``aten::copy_ <
    aten::clone < aten::contiguous``) and the innermost Python frames outside torch that called
    it, where the profiler links them (on the CPU; an H200 with torch 2.11 linked none): where
    a kernel of the list above comes from."""
    ops: dict[tuple, list] = {}
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CPU or not e.name.startswith("aten::"):
            continue
        t = e.self_device_time_total if on_device else e.self_cpu_time_total
        if t <= 0:
            continue
        where, parent, op = [], e.cpu_parent, e.name
        while parent is not None and len(where) < 6:  # (with_stack: Python calls are events)
            name = parent.name
            if name.startswith("aten::") and not where:
                op += f" < {name}"  # the operators that called it (e.g. aten::contiguous)
            elif ".py(" in name and not name.startswith("torch/") and "site-packages" not in name:
                where.append(name)
            parent = parent.cpu_parent
        where = tuple(where)
        entry = ops.setdefault((op, where), [0, 0.0])
        entry[0] += 1
        entry[1] += t
    for (name, where), (count, t) in sorted(ops.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {t / fc:8.1f} us/fc {count:6d}x  {name}")
        for frame in where or ["(no Python frame linked to it by the profiler)"]:
            print(f"        {frame}")


def _torch_profiler(path: str, stacks: bool = False):
    """``torch.profiler.profile`` of the host and, when there is one, the CUDA device (with
    ``stacks``: every Python call too)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    return profile(activities=activities, with_stack=stacks)


def _print_trace(traced, path: str) -> None:
    """The costliest operators (device time first where there is a device) and the trace."""
    key = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    print(traced.key_averages().table(sort_by=key, row_limit=25))
    traced.export_chrome_trace(path)
    print(f"Chrome trace (chrome://tracing, ui.perfetto.dev): {path}")


def _print_idle_report(path: str) -> None:
    """``trace_idle.report`` of the trace at ``path``: the GPU's idle time by host function."""
    if not torch.cuda.is_available():
        print("--idle-gaps: no GPU in this run, so no device idle time to attribute")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from trace_idle import report

    report(path, top=25)


def _print_profile(profiler, lines: int) -> None:
    """The ``lines`` costliest functions of the project (cumulative time), then overall (own
    time): where the time of a ``run_sweep`` call went."""
    import io
    import pstats

    for order, where in (("cumulative", r"v2x|perception|semcom|channels"), ("tottime", "")):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(where, lines)
        body = text.getvalue()
        print(body[body.find("   ncalls") :])


#: ``--loop-cells``: what the loop's rate is of (printed beside each ratio to it).
LOOP_CELLS = {
    "sweep": "the loop runs run_sweep's cells",
    "max": "the loop's cells are max fusion only",
}


def cuda_sweep_args(
    frames: int = 128,
    batch_size: int = 16,
    codecs: list[str] | None = None,
    bandwidth_hz: float | None = None,
    precision: str = "fp32",
    codec_precision: str = "fp32",
) -> argparse.Namespace:
    """``bench_run_sweep``'s arguments for the issue-16 setting on CUDA (the profiling scripts'
    sweep): ``frames`` five-agent frames, 7 SNRs, none / late / max fusion over ``codecs``
    (default identity, analog, DeepJSCC), the shipped standard detector; ``bandwidth_hz``
    (default: the sweep's 20 MHz) and the detector's and DeepJSCC's precisions as
    ``--bandwidth-hz``, ``--precision`` and ``--codec-precision``."""
    return argparse.Namespace(
        device="cuda", frames=frames, batch_size=batch_size,
        snr_db=[-10.0, -5.0, 0.0, 5.0, 10.0, 20.0, 30.0],
        codecs=list(codecs or ["identity", "analog", "deepjscc"]),
        fusions=["none", "late", "max"], feature_cache_gb="auto", model="pointpillars",
        small_model=False, checkpoint="shipped", bandwidth_hz=bandwidth_hz,
        precision=precision, codec_precision=codec_precision,
    )  # fmt: skip


def add_setting_options(p: argparse.ArgumentParser, frames: int, batch_size: int) -> None:
    """The profiling scripts' options for ``cuda_sweep_args``: ``--frames``, ``--batch-size``,
    ``--codecs``, ``--bandwidth-hz`` (1e11 puts every payload of the issue-16 sweep on time:
    like for like with the loop), ``--precision``, ``--codec-precision``."""
    p.add_argument("--frames", type=int, default=frames)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument(
        "--codecs", nargs="+", type=codec_spec, default=["identity", "analog", "deepjscc"]
    )
    p.add_argument(
        "--bandwidth-hz",
        type=float,
        default=None,
        help="run_sweep's budget.bandwidth_hz (default 20 MHz; 1e11 puts every payload on time)",
    )
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="the detector's eval.precision")  # fmt: skip
    p.add_argument("--codec-precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="DeepJSCC's precision option")  # fmt: skip
    p.add_argument("--small-model", action="store_true",
                   help="the small PointPillars-CenterPoint detector instead of the standard one")  # fmt: skip
    p.add_argument("--snr-db", type=float, nargs="+", default=None,
                   help="the grid's SNRs (default the issue-16 sweep's seven)")  # fmt: skip
    p.add_argument("--fusions", nargs="+", default=None,
                   help="the grid's fusions (default none, late, max)")  # fmt: skip


def setting_of(args: argparse.Namespace) -> argparse.Namespace:
    """``cuda_sweep_args`` of the options ``add_setting_options`` added."""
    run = cuda_sweep_args(
        args.frames, args.batch_size, args.codecs, args.bandwidth_hz, args.precision,
        args.codec_precision,
    )  # fmt: skip
    if args.small_model:
        run.model, run.small_model, run.checkpoint = "pillars_center", True, "untrained"
    run.snr_db = args.snr_db or run.snr_db
    run.fusions = args.fusions or run.fusions
    return run


def bench_run_sweep(
    args,
    device: str | list[str] | None = None,
    profile: int = 0,
    trace: str | None = None,
    gaps: bool = False,
) -> dict:
    """One ``run_sweep`` call in a fresh output folder (nothing to resume), on ``device``
    (default ``--device``); with ``profile`` > 0 under cProfile, printing that many lines; with
    ``trace`` under ``torch.profiler`` (host and CUDA), saving a Chrome trace there (with
    ``gaps``: Python stacks too, and the GPU-idle time by host function is printed)."""
    from v2x.sweep import run_sweep

    with tempfile.TemporaryDirectory() as out:
        cfg = {
            "checkpoint": args.checkpoint,
            "device": args.device if device is None else device,
            "model": model_section(args),
            "data": {"num_frames": args.frames, "frames_per_sequence": 10, "seed": 0},
            "batch_size": args.batch_size,
            "grid": {
                "snr_db": args.snr_db,
                "codecs": args.codecs,
                "fusions": args.fusions,
            },
            "output_dir": out,
            "quiet": True,
            "feature_cache_gb": args.feature_cache_gb,
            "eval": eval_section(args),
            "cuda_graph": bool(getattr(args, "cuda_graph", False)),
        }
        if getattr(args, "bandwidth_hz", None):
            cfg["budget"] = {"bandwidth_hz": args.bandwidth_hz}
        codec_precision = getattr(args, "codec_precision", "fp32")
        if codec_precision != "fp32":
            cfg["codec_options"] = {"deepjscc": {"precision": codec_precision}}
        from v2x.sweep import plan_sweep

        plan = plan_sweep(cfg)
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        traced = _torch_profiler(trace, stacks=gaps) if trace else None
        if traced is not None:
            traced.__enter__()
        passes = _EncoderPasses()
        logging.getLogger("v2x.sweep").addHandler(passes)
        level = logging.getLogger("v2x.sweep").level
        logging.getLogger("v2x.sweep").setLevel(logging.INFO)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            run_sweep(cfg)
        finally:
            wall = time.perf_counter() - t0
            cpu = time.process_time() - c0
            logging.getLogger("v2x.sweep").removeHandler(passes)
            logging.getLogger("v2x.sweep").setLevel(level)
        if traced is not None:
            traced.__exit__(None, None, None)
            _print_trace(traced, trace)
            if gaps:
                _print_idle_report(trace)
        if profiler is not None:
            profiler.disable()
            _print_profile(profiler, profile)
        sent = ledger_summary(out, plan.budget.deadline_s)
    work = plan.num_cells * args.frames
    return {"cells": plan.num_cells, "wall_s": wall, "cpu_s": cpu, "fc_per_s": work / wall,
            "encoder_passes": passes.count, "groups": passes.groups, "sent": sent,
            "unlike_loop": unlike_loop(sent, plan.budget.bandwidth_hz, plan.budget.deadline_s)}  # fmt: skip


class _EncoderPasses(logging.Handler):
    """The encoder passes ``run_sweep`` logs when it ends (``None`` until it has): more passes
    than frame batches means the feature cache did not hold every batch; and how its groups
    ran (``v2x.sweep.log_waves``: one after another or in lockstep; ``None``: one group)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count: int | None = None
        self.groups: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        found = re.search(r"\((\d+) encoder passes\)", message)
        if found:
            self.count = int(found.group(1))
        waves = re.search(r"features: groups (.+)$", message)
        if waves:
            self.groups = waves.group(1)


def _release_device_memory(device: str) -> None:
    """Hand this process's cached CUDA memory back to the device before a sweep starts on it
    (the sweep's own worker processes, or the first in-process call): it sizes its feature
    cache from the memory free then, and the caching allocator of this process's earlier runs
    (the batched pipeline, the loop, the in-process sweeps) would otherwise hold tens of GB it
    needs, in pieces."""
    import gc

    import torch

    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return
    gc.collect()
    torch.cuda.empty_cache()
    held = torch.cuda.memory_reserved(device) / 1e9
    free, total = torch.cuda.mem_get_info(device)
    print(f"  (this process holds {held:.1f} GB; {free / 1e9:.1f} of {total / 1e9:.1f} GB free)")


def bench_orders(args, rounds: int) -> None:
    """``rounds`` rounds of warm ``run_sweep`` calls alternating the order one device computes
    the groups in: the plan's, ``v2x.sweep_order.device_order`` (the default: the groups with one
    result per SNR last), every feature group first (the default until 2026-12-03), and feature
    groups heaviest codec first (DeepJSCC, analog, then the others): frame-conditions per second
    and each group's device seconds (from the sweep's log), in computing order. The first group
    runs while the frame batches are prepared, and the last groups' rows (APs and intervals)
    after the device is done; which order hides those best is what this measures."""

    import v2x.sweep as sweep

    device_order = sweep.device_order
    rank = {"deepjscc": 0, "analog": 1}

    def heaviest_first(todo, silent=None):  # noqa: ANN001, ANN202
        return sorted(features_first(todo),
                      key=lambda g: (g[0].stage != sweep.FEATURE_STAGE, rank.get(g[0].codec, 2)))  # fmt: skip

    def features_first(todo, silent=None):  # noqa: ANN001, ANN202
        return sorted(todo, key=lambda g: g[0].stage != sweep.FEATURE_STAGE)

    def plan(todo, silent=None):  # noqa: ANN001, ANN202
        return list(todo)

    # (``silent``: the groups whose maps never arrive, which only device_order reads)
    orders = {"plan": plan, "device_order": device_order, "features_first": features_first,
              "heaviest": heaviest_first}  # fmt: skip
    lines: list[str] = []

    class Groups(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("group "):
                lines.append(record.getMessage())

    handler, logger = Groups(), logging.getLogger("v2x")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        for _ in range(rounds):
            for name, order in orders.items():
                sweep.device_order = order
                lines.clear()
                s = bench_run_sweep(args)
                groups = "; ".join(
                    f"{m.split()[2].replace('/n/a/n/a', '')} {m.rsplit(' in ', 1)[1].split()[0]} s"
                    for m in lines
                )  # "group 1/5 max/analog/awgn ratio=nan: 896 frame-conditions in 0.7 s (...)"
                print(f"  {name:12s} {s['fc_per_s']:7.1f} frame-conditions/s ({s['wall_s']:.2f} s): "
                      f"{groups}", flush=True)  # fmt: skip
    finally:
        sweep.device_order = device_order
        logger.removeHandler(handler)
        logger.setLevel(level)


def bench_known_drops(args, rounds: int) -> None:
    """``rounds`` rounds of warm ``run_sweep`` calls alternating with and without the conditions
    known before the air to deliver nothing left out of the runs (``v2x.known_drops``; without:
    every map is sent and dropped at the deadline, the code before 2026-12-04): frame-conditions
    per second of each, in this process (the same results either way)."""
    import v2x.known_drops as known_drops

    planned = known_drops.cost_before_air
    rates: dict[str, list[float]] = {"known": [], "sent": []}
    try:
        for _ in range(rounds):
            for name in rates:
                known_drops.cost_before_air = planned if name == "known" else lambda *a: None
                s = bench_run_sweep(args)
                rates[name].append(s["fc_per_s"])
                print(f"  {name:5s} {s['fc_per_s']:8.1f} frame-conditions/s ({s['wall_s']:.2f} s)",
                      flush=True)  # fmt: skip
    finally:
        known_drops.cost_before_air = planned
    known, sent = (sum(v) / len(v) for v in rates.values())
    print(f"known drops left out: {known:.1f} against {sent:.1f} frame-conditions/s "
          f"({known / sent:.2f}x, means of {rounds} rounds)")  # fmt: skip


#: ``run_sweep``'s steps that ``--phases`` times (module, function or Class.method), in the
#: order they run. In a fresh output folder the frames are read on their own thread while the
#: device starts (``FrameStream._read``: the whole read; ``_prepare_frames``: each batch's
#: preparation, waiting for its frames; ``_open_store``: once all are read and hashed).
PHASES = (
    ("v2x.sweep", "plan_sweep"),
    ("v2x.loading", "FrameStream._read"),
    ("v2x.sweep", "load_frames"),
    ("v2x.sweep", "data_identity"),
    ("v2x.sweep", "prepare_device"),
    ("v2x.sweep_batches", "sweep_detector"),
    ("v2x.sweep_batches", "load_model"),
    ("v2x.sweep_batches", "fold_batchnorm"),
    ("v2x.sweep_batches", "feature_cache_bytes"),
    ("v2x.sweep_batches", "_prepare_frames"),
    ("v2x.sweep_batches", "collate_frames"),
    ("v2x.sweep_batches", "stack_networks"),
    ("v2x.sweep_batches", "ego_ground_truth"),
    ("v2x.datasets.frame", "CoopBatch.to"),
    ("v2x.sweep", "_run_group"),
    ("v2x.sweep", "_run_lockstep"),
    ("v2x.sweep_group", "evaluate_batch"),
    ("v2x.sweep_group", "book_batch"),
    ("v2x.sweep", "_open_store"),
    ("v2x.sweep_group", "group_rows"),
    ("v2x.sweep_scoring", "GroupScoring.sealed_accumulators"),
    ("v2x.sweep_rows", "_distinct_results"),
    ("v2x.sweep_rows", "_computed_results"),
    ("v2x.results", "ResultsStore.add"),
)

#: Steps whose every call ``--phases`` lists too (thread, start and end after the call began).
EACH_CALL = ("_run_group", "_run_lockstep", "group_rows", "sealed_accumulators",
             "_distinct_results", "_computed_results", "add")  # fmt: skip


def bench_phases(
    args, each: list[tuple[str, str, float, float]] | None = None
) -> list[tuple[str, str, int, float, float, float]]:
    """One more ``run_sweep`` with ``PHASES`` wrapped in timers: per (step, thread) the calls,
    the summed seconds and the first start / last end after the call began (s); ``each``
    receives ``(step, thread, start, end)`` of every call of the ``EACH_CALL`` steps."""
    import functools
    import importlib
    import threading

    spans: list[tuple[str, str, float, float]] = []
    saved = []
    for module_name, path in PHASES:
        module = importlib.import_module(module_name)
        *owners, name = path.split(".")
        for owner in owners:  # Class.method
            module = getattr(module, owner)
        original = getattr(module, name, None)
        if original is None:  # a step the measured code does not have (e.g. an older copy)
            continue

        def timed(*a, _f=original, _name=name, **k):
            t = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                thread = threading.current_thread().name.split("_")[0]
                spans.append((_name, thread, t, time.perf_counter()))

        saved.append((module, name, original))
        setattr(module, name, functools.wraps(original)(timed))
    try:
        t0 = time.perf_counter()
        bench_run_sweep(args)
    finally:
        for module, name, original in saved:
            setattr(module, name, original)
    rows: dict[tuple[str, str], list[float]] = {}
    if each is not None:
        each += [(n, th, a - t0, b - t0) for n, th, a, b in sorted(spans, key=lambda s: s[2])
                 if n in EACH_CALL]  # fmt: skip
    for name, thread, a, b in spans:
        r = rows.setdefault((name, thread), [0, 0.0, a, b])
        r[0] += 1
        r[1] += b - a
        r[2], r[3] = min(r[2], a), max(r[3], b)
    return [
        (name, thread, int(n), total, first - t0, last - t0)
        for (name, thread), (n, total, first, last) in sorted(rows.items(), key=lambda kv: kv[1][2])
    ]


def bench_joblib(args) -> dict:
    cores = os.cpu_count() or 1
    channels = ["awgn", "rayleigh", "rician", "rayleigh_fast"][: args.jobs]
    out = {}
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            overrides = [
                "-m",
                "hydra/launcher=joblib",
                f"hydra.launcher.n_jobs={workers}",
                "checkpoint=untrained",
                f"device={args.device}",
                f"data.num_frames={args.frames}",
                "data.frames_per_sequence=10",
                f"batch_size={args.batch_size}",
                "grid.fusions=[max]",
                "grid.codecs=[analog]",
                "grid.snr_db=[" + ",".join(str(s) for s in args.snr_db) + "]",
                "grid.channels=" + ",".join(f"[{c}]" for c in channels),
                f"output_dir={tmp}/out",
                f"hydra.sweep.dir={tmp}/multirun",
                "quiet=true",
                "table=false",
                "plots=false",
            ]
            overrides.append(f"model={args.model}")
            if args.small_model:
                overrides += [
                    "model.grid.x_range_m=[-25.6,25.6]",
                    "model.grid.y_range_m=[-25.6,25.6]",
                ]
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // workers))}
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "v2x.apps.sweep", *overrides],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp,
            )
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"joblib multirun with {workers} workers failed")
            files = list(Path(tmp, "out").glob("sweep-*.ledger.parquet"))
            assert len(files) == len(channels), files
            out[workers] = wall
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--snr-db", type=float, nargs="+", default=[-10, -5, 0, 5, 10, 20, 30])
    p.add_argument(
        "--codecs",
        nargs="+",
        type=codec_spec,
        default=["analog", "identity"],
        help="codec names, or YAML flow mappings with options: "
        "'{name: digital_payload, bits: 4, harq_max_rounds: 1, harq_combining: ir}'",
    )
    p.add_argument(
        "--fusions", nargs="+", default=["none", "late", "max"], help="run_sweep's grid.fusions"
    )
    p.add_argument(
        "--feature-cache-gb",
        default="auto",
        help="run_sweep's feature_cache_gb: GB, or auto (the sweep's default: half the GPU's free "
        "memory; the standard detector needs 126 MB per frame; beyond it, groups run in lockstep "
        "over the frame batches)",
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="run_sweep once more under cProfile; print its N costliest functions",
    )
    p.add_argument(
        "--trace",
        default=None,
        metavar="PATH",
        help="run_sweep once more under torch.profiler; print its costliest operators and "
        "save a Chrome trace at PATH (GPU idle gaps between kernels show host overhead)",
    )
    p.add_argument(
        "--model",
        default="pointpillars",
        help="conf/model preset: pointpillars (the sweeps' default) or pillars_center (the small "
        "detector, the figures in docs/benchmarks.md before 2026-12-01)",
    )
    p.add_argument("--small-model", action="store_true", help="±25.6 m grid instead of ±51.2 m")
    p.add_argument(
        "--channels-first",
        action="store_true",
        help="eval.channels_last false: the detector channels-first on CUDA (default: NHWC)",
    )
    p.add_argument(
        "--checkpoint",
        default="untrained",
        help="detector: untrained (random weights, many detections) or shipped (or a path)",
    )
    p.add_argument("--workers", type=int, nargs="*", default=[], help="joblib worker counts")
    p.add_argument("--jobs", type=int, default=4, help="multirun jobs (one channel each, <= 4)")
    p.add_argument(
        "--bandwidth-hz",
        type=float,
        default=None,
        help="run_sweep's budget.bandwidth_hz (default: conf/sweep.yaml's 20 MHz; the "
        "realistic-payload digital sweep, conf/sweep_digital_payload.yaml, has 1 GHz)",
    )
    p.add_argument(
        "--loop-cells",
        choices=sorted(LOOP_CELLS),
        default="sweep",
        help="the cells the batched pipeline and the loop time: sweep (run_sweep's own: each "
        "feature fusion per codec, ego-only and late once) or max (max fusion per codec only, "
        "the reference before 2026-12-07)",
    )
    p.add_argument("--skip-run-sweep", action="store_true")
    p.add_argument(
        "--skip-loop",
        action="store_true",
        help="time run_sweep only: no batched pipeline and per-condition loop references",
    )
    p.add_argument(
        "--phases",
        action="store_true",
        help="run_sweep once more with its steps (PHASES) timed: where a call's wall time goes",
    )
    p.add_argument(
        "--order-ab",
        type=int,
        default=0,
        help="rounds of warm run_sweep calls alternating the groups' computing order",
    )
    p.add_argument(
        "--known-drops-ab",
        type=int,
        default=0,
        metavar="R",
        help="R rounds of warm run_sweep calls alternating with and without the conditions "
        "known before the air to deliver nothing left out (v2x.known_drops)",
    )
    p.add_argument(
        "--idle-gaps",
        action="store_true",
        help="where the GPU waits on the host: idle time by host function (module docstring)",
    )
    p.add_argument(
        "--group-kernels",
        type=int,
        default=0,
        metavar="N",
        help="per codec (max fusion), the device's kernel time per frame-condition of one warm "
        "batched pass and its N costliest kernels",
    )
    p.add_argument(
        "--kernel-stacks",
        type=int,
        default=0,
        metavar="N",
        help="with --group-kernels: the N operators with the most device time, each with the "
        "operators and (where the profiler links them) the Python frames that called it",
    )
    for flag, what in (
        ("--autocast", "with --group-kernels: the profiled passes under torch.autocast of this "
         "dtype"),
        ("--precision", "the detector's eval.precision (autocast of its encoder and head) in the "
         "batched pipeline, the loop and run_sweep"),
        ("--codec-precision", "DeepJSCC's precision option (its maps in inference) in the "
         "batched pipeline, the loop, --group-kernels and run_sweep "
         "(codec_options.deepjscc.precision)"),
    ):  # fmt: skip
        p.add_argument(flag, choices=["fp32", "bf16", "fp16"], default="fp32", help=what)
    p.add_argument(
        "--devices",
        nargs="*",
        default=[],
        help="run_sweep also on these devices, each against --device: all (every GPU) or a "
        "comma list (cpu,cpu; cuda:0,cuda:0 is two workers on one GPU); several may follow",
    )
    p.add_argument(
        "--run-sweep-repeats",
        type=int,
        default=2,
        help="run_sweep calls, each in a fresh folder (the first pays one-time imports)",
    )
    args = p.parse_args()
    # the mode run_sweep sets (deterministic: true, the default) before any CUDA work, so that
    # the batched pipeline and the loop are timed with the same kernels as the sweep
    from v2x.common import configure_determinism

    configure_determinism(True)
    if args.small_model and args.checkpoint != "untrained":
        p.error("--small-model builds an untrained detector; leave out --checkpoint")
    from v2x.common import code_hash

    if args.device == "cpu":
        print(f"CPU threads: {torch.get_num_threads()}  cores: {os.cpu_count()}")
    else:
        print(f"device: {torch.cuda.get_device_name(0)}")
    print(f"torch {torch.__version__}, v2x code {code_hash()} (the sweep's results key)")
    frames, model, batches, device = build(args)
    agents = sum(f.num_agents for f in frames) / len(frames)
    print(
        f"frames: {len(frames)} ({agents:.1f} agents each), SNRs per setting: {len(args.snr_db)}, "
        f"codecs: {args.codecs}, grid: {model.grid.width}x{model.grid.height}, detector "
        f"{args.precision}, DeepJSCC {args.codec_precision}"
    )
    r = None if args.skip_loop else bench_batched_vs_loop(args, model, batches, device)
    if r is not None:
        print(
            f"batched pipeline : {r['batched_fc_per_s']:9.2f} frame-conditions/s\n"
            f"per-condition loop: {r['loop_fc_per_s']:9.2f} frame-conditions/s (reference, "
            f"{len(r['settings'])} settings: {', '.join(f'{f}/{c}' for f, c in r['settings'])})\n"
            f"speed-up batched / loop: {r['speedup']:.1f}x  ({r['frame_conditions']} "
            f"frame-conditions)\nprocess CPU time (all threads): batched "
            f"{r['batched_cpu_s']:.1f} s, loop {r['loop_cpu_s']:.1f} s"
        )
    if args.group_kernels:
        bench_group_kernels(args, model, batches, device, args.group_kernels)
    if not args.skip_run_sweep:
        if r is not None or args.group_kernels:
            # the loop's cached blocks, fragmented, are not the room a fresh process's sweep has
            # (at 512 frames on an 80 GB GPU its joined maps then found no 21 GB in one piece)
            _release_device_memory(args.device)
        for i in range(max(1, args.run_sweep_repeats)):
            s = bench_run_sweep(args)
            when = "first call, one-time imports included" if i == 0 else "again, warm"
            ratio = (
                ""
                if r is None
                else f"{s['fc_per_s'] / r['loop_fc_per_s']:.1f}x the loop's rate "
                f"({LOOP_CELLS[args.loop_cells]}); "
            )
            print(
                f"run_sweep end to end: {s['fc_per_s']:.1f} frame-conditions/s "
                f"({s['cells']} cells x {args.frames} frames in {s['wall_s']:.1f} s, "
                f"CPU time {s['cpu_s']:.1f} s; {when}; {ratio}{s['encoder_passes']} encoder "
                f"passes for {-(-args.frames // args.batch_size)} frame batches"
                + (f"; groups {s['groups']}" if s["groups"] else "")
                + ")"
            )
            for codec, v in sorted(s["sent"].items()):
                print(
                    f"  ledger, {codec}: {v.links} links sent; per sent link {v.mbit:.3f} Mbit "
                    f"of source bits, {v.channel_uses:,.0f} channel uses; {v.delivered:.1%} of "
                    f"them delivered, {v.late:.1%} past the deadline"
                )
            if r is not None and s["unlike_loop"]:
                print(s["unlike_loop"])
    if args.profile and not args.skip_run_sweep:
        print("run_sweep once more under cProfile (slower; not a figure):")
        bench_run_sweep(args, profile=args.profile)
    if args.trace and not args.skip_run_sweep:
        print("run_sweep once more under torch.profiler (slower; not a figure):")
        bench_run_sweep(args, trace=args.trace)
    if args.phases and not args.skip_run_sweep:
        print("run_sweep once more with its steps timed (step, thread, calls, summed s, span s):")
        each: list[tuple[str, str, float, float]] = []
        for name, thread, n, total, first, last in bench_phases(args, each):
            line = f"{name:16s} {thread:10s} {n:4d}x {total:7.2f} s  {first:6.2f} .. {last:6.2f} s"
            print("  " + line)
        print("  every call of " + ", ".join(EACH_CALL) + " (thread, start .. end s):")
        for name, thread, a, b in each:
            print(f"    {name:20s} {thread:10s} {a:6.3f} .. {b:6.3f} s")
    if args.order_ab and not args.skip_run_sweep:
        print("run_sweep with the groups computed in other orders (alternating, warm):")
        bench_orders(args, args.order_ab)
    if args.known_drops_ab and not args.skip_run_sweep:
        print("run_sweep with and without the known drops left out (alternating, warm):")
        bench_known_drops(args, args.known_drops_ab)
    if args.idle_gaps and not args.skip_run_sweep:
        print("run_sweep once more under torch.profiler with Python stacks (not a figure):")
        bench_run_sweep(args, trace=args.trace or "/tmp/v2x_sweep_stacks.json", gaps=True)
    for spec in args.devices:
        devices = "all" if spec == "all" else spec.split(",")
        one = bench_run_sweep(args)
        _release_device_memory(args.device)
        for call in ("first call (the workers start)", "next call (workers kept)"):
            many = bench_run_sweep(args, devices)
            print(
                f"run_sweep on devices {spec}, {call}: {many['fc_per_s']:.1f} "
                f"frame-conditions/s in {many['wall_s']:.1f} s vs {one['fc_per_s']:.1f} on "
                f"{args.device} warm ({one['wall_s']:.1f} s): "
                f"{many['fc_per_s'] / one['fc_per_s']:.2f}x"
            )
    if args.workers:
        walls = bench_joblib(args)
        base = walls[args.workers[0]]
        for w, wall in walls.items():
            print(
                f"joblib multirun, {args.jobs} jobs, {w} workers: {wall:6.1f} s  "
                f"(speed-up vs {args.workers[0]} worker(s): {base / wall:.2f}x)"
            )


if __name__ == "__main__":
    main()
