"""Sweeps on real distributed engines: a Hydra multirun of ``v2x-sweep`` split into two jobs by
the joblib, submitit (local executor: the Slurm launcher's code path without a cluster) and Ray
(a local cluster started by ``ray.init``) launchers; each job writes its own results file, and
``v2x-plot`` merges them into the same table as one process over the same grid.

The oracle is the single-process run: every results column is equal cell by cell (NaN = NaN)
except ``config_hash``, which names the job that wrote a row (each job's slice of the grid has
its own config); results rows hold no wall-clock times, so no other column may differ. Slow:
each engine starts its own Python processes (about 5 s for joblib and submitit, 10-20 s for
Ray on a 2-core machine). The submitit and Ray launchers are optional extras (``[slurm]``,
``[ray]``): their tests skip when the packages are absent.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from v2x.results import read_results

#: A tiny model and frame set (the same as tests/core/test_sweep.py's joblib test).
TINY = [
    "model=pillars_center",  # the small detector: the overrides below are its fields
    "checkpoint=untrained",
    "model.grid.x_range_m=[-25.6,25.6]",
    "model.grid.y_range_m=[-25.6,25.6]",
    "model.pillar_channels=8",
    "model.backbone_channels=[8,16]",
    "model.backbone_layers=1",
    "model.feature_channels=8",
    "data.num_frames=2",
    "data.frames_per_sequence=2",
    "data.synthetic.vehicle_lidar.columns=128",
    "data.synthetic.rsu_lidar.columns=128",
    "data.synthetic.uav_lidar.columns=128",
    "grid.codecs=[analog]",
    "grid.fusions=[none,max]",
    "grid.snr_db=[0,10]",
    "quiet=true",
    "table=false",
    "plots=false",
]

#: Columns that legitimately differ between the single-process rows and the jobs' rows.
JOB_COLUMNS = ("config_hash",)
LEDGER_JOB_COLUMNS: tuple[str, ...] = ()

#: Per launcher: the extra that installs it, the modules it needs and the overrides that give
#: two concurrent local jobs.
LAUNCHERS = {
    "joblib": ("", (), ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]),
    "submitit_local": (
        "slurm",
        ("submitit", "hydra_plugins.hydra_submitit_launcher"),
        ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
    ),
    "ray": (  # ray.init starts a local cluster for the run
        "ray",
        ("ray", "hydra_plugins.hydra_ray_launcher"),
        [
            "hydra/launcher=ray",
            "hydra.launcher.ray.init.address=local",  # a new one even if another is running
            "+hydra.launcher.ray.init.num_cpus=2",  # a local cluster of 2 CPUs ...
            "+hydra.launcher.ray.init.include_dashboard=false",
            "hydra.launcher.ray.remote.num_cpus=1",  # ... running both 1-CPU jobs at once
        ],
    ),
    "ray_cluster": (  # attached to a cluster started by `ray start --head` (fixture ray_head)
        "ray",
        ("ray", "hydra_plugins.hydra_ray_launcher"),
        ["hydra/launcher=ray", "hydra.launcher.ray.remote.num_cpus=1"],
    ),
}


def _ray_env() -> dict[str, str]:
    """Token authentication with a token of this test's own (nothing read from or written to
    ~/.ray), for the Ray head, the driver and (inherited) every worker."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_tmp() -> Iterator[str]:
    """Ray's session folder for one test (a short path: Ray's Unix sockets live there), so that
    nothing lands in the machine's /tmp/ray, whose ray_current_cluster every ray.init() reads."""
    path = tempfile.mkdtemp(prefix="v2x-ray-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ray_head(tmp_path, ray_tmp) -> Iterator[tuple[str, dict[str, str]]]:
    """A one-node Ray cluster: ``ray start --head --block`` in a process group of its own, ended
    by SIGTERM to that group. Yields (its address, the environment a driver needs)."""
    pytest.importorskip("ray", reason="hydra/launcher=ray needs pip install 'v2x[ray]'")
    port, env = _free_port(), _ray_env()
    args = ["start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2"]
    args += [f"--temp-dir={ray_tmp}"]
    args += ["--include-dashboard=false", f"--ray-client-server-port={_free_port()}", "--block"]
    log = tmp_path / "ray_head.log"
    with open(log, "w") as f:
        head = subprocess.Popen(
            [sys.executable, "-c", "from ray.scripts.scripts import main; main()", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    try:
        for _ in range(1200):  # until the head is up (or has died), at most 10 min
            if "will now block" in log.read_text():
                break
            assert head.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail(f"ray start --head did not come up: {log.read_text()[-3000:]}")
        yield f"127.0.0.1:{port}", env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def _run(
    module: str, args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m module args`` with one torch thread per process (and ``env`` added); fails
    with its stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, cwd=cwd
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _plot_table(results: Path, tmp: Path) -> str:
    """The table ``v2x-plot`` prints for the results under ``results`` (its figures aside)."""
    tmp.mkdir(parents=True, exist_ok=True)
    proc = _run(
        "v2x.apps.plot",
        [f"results=[{results}]", f"out_dir={tmp / 'plots'}", "formats=[png]"],
        tmp,
    )
    lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith("wrote ")]
    assert any(ln.startswith("AP convention:") for ln in lines), proc.stdout
    return "\n".join(lines)


def _same(x: object, y: object) -> bool:
    return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x + y))


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[Path, Path]:
    """One process over the whole grid (both channels); also fills the frame cache the jobs
    share. Returns (frame cache, results folder)."""
    root = tmp_path_factory.mktemp("single")
    cache, out = root / "frames", root / "out"
    _run(
        "v2x.apps.sweep",
        [*TINY, f"data.cache_dir={cache}", "grid.channels=[awgn,rayleigh]", f"output_dir={out}"],
        root,
    )
    return cache, out


def test_the_tiny_overrides_compose_with_the_sweep_config():
    """The slow tests' overrides still name the sweep config's fields (they run only with
    ``-m slow``: a renamed field would otherwise go unseen until then)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="v2x.conf", version_base=None):
        cfg = compose(config_name="sweep", overrides=TINY)
    assert cfg.model.backbone == "small" and list(cfg.model.backbone_channels) == [8, 16]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_two_jobs_merge_into_the_single_process_table(launcher, single, tmp_path, request):
    extra, modules, overrides = LAUNCHERS[launcher]
    for m in modules:
        pytest.importorskip(m, reason=f"hydra/launcher={launcher} needs pip install 'v2x[{extra}]'")
    env = None
    if launcher == "ray":
        env = _ray_env()
        overrides = [
            *overrides,
            f"+hydra.launcher.ray.init._temp_dir={request.getfixturevalue('ray_tmp')}",
        ]
    if launcher == "ray_cluster":
        address, env = request.getfixturevalue("ray_head")
        overrides = [*overrides, f"hydra.launcher.ray.init.address={address}"]
    cache, single_out = single
    out, sweep_dir = tmp_path / "out", tmp_path / "multirun"
    proc = _run(
        "v2x.apps.sweep",
        [
            "-m",
            *overrides,
            *TINY,
            f"data.cache_dir={cache}",
            "grid.channels=[awgn],[rayleigh]",  # two jobs: one per channel
            f"output_dir={out}",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        tmp_path,
        env,
    )
    log = proc.stdout + proc.stderr
    if launcher == "submitit_local":  # two submitit jobs, each with its pickled result
        assert len(list(sweep_dir.glob(".submitit/*/*_result.pkl"))) == 2, log[-3000:]
    if launcher.startswith("ray"):
        assert "Ray Launcher is launching 2 jobs" in log, log[-3000:]
        started = "Started a local Ray instance" in log
        assert started == (launcher == "ray"), log[-3000:]

    # each job wrote its own results (and ledger) file, holding its own channel only (and the
    # ego-only cells, channel "n/a", which do not depend on the channel)
    files = sorted(out.glob("sweep-*.parquet"))
    results = [f for f in files if not f.name.endswith(".ledger.parquet")]
    assert len(results) == 2 and len(files) == 4, files
    channels = sorted(
        sorted(set(read_results([f])["channel"].to_pylist()) - {"n/a"}) for f in results
    )
    assert channels == [["awgn"], ["rayleigh"]]

    # the merged rows equal the single process's, column by column, cell by cell
    merged = read_results([out]).sort_by("cell_id").to_pylist()
    reference = read_results([single_out]).sort_by("cell_id").to_pylist()
    assert len(reference) == 6  # max: 2 channels x 2 SNRs; none (ego only): channel "n/a"
    assert [r["cell_id"] for r in merged] == [r["cell_id"] for r in reference]
    for a, b in zip(merged, reference):
        differ = [c for c in b if c not in JOB_COLUMNS and not _same(a[c], b[c])]
        assert not differ, (a["cell_id"], {c: (a[c], b[c]) for c in differ})
    assert len({r["config_hash"] for r in merged}) == 2
    # so do their ledger rows (one per link and frame of each cell)
    order = [(c, "ascending") for c in ("cell_id", "frame_id", "tx_agent", "rx_agent")]
    ledger = read_results([out], ledger=True).sort_by(order).to_pylist()
    ledger_ref = read_results([single_out], ledger=True).sort_by(order).to_pylist()
    assert len(ledger) == len(ledger_ref) > 0
    for a, b in zip(ledger, ledger_ref):
        differ = [c for c in b if c not in LEDGER_JOB_COLUMNS and not _same(a[c], b[c])]
        assert not differ, (a["cell_id"], {c: (a[c], b[c]) for c in differ})

    # and v2x-plot prints the same table for both
    assert _plot_table(out, tmp_path) == _plot_table(single_out, tmp_path / "ref")


@pytest.mark.parametrize(
    ("name", "plugin"),
    [
        ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher"),
        ("submitit_local", "hydra_plugins.hydra_submitit_launcher"),
        ("ray", "hydra_plugins.hydra_ray_launcher"),
    ],
)
def test_launcher_configs_build_their_launcher(name, plugin):
    """Every shipped launcher config validates against the installed plugin's schema and builds
    the plugin's launcher (a key the released plugin lacks fails here, not on the cluster)."""
    pytest.importorskip(plugin, reason=f"hydra/launcher={name} needs {plugin}")
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module(config_module="v2x.conf", version_base=None):
        cfg = compose("sweep", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__module__.startswith(plugin)
