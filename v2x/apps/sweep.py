"""``v2x-sweep``: evaluate a grid of channel conditions (thin Hydra wrapper over ``run_sweep``).

``v2x-sweep list`` prints every name each grid axis (and the other named settings) accepts,
one line per axis; anything else is Hydra's command line (``v2x-sweep --help``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from v2x.cli import check_bare_words, check_launcher, checks_override_keys, user_errors


@checks_override_keys("sweep", "sweep")
@hydra.main(config_path="pkg://v2x.conf", config_name="sweep", version_base=None)
@user_errors
def run(cfg: DictConfig) -> None:
    """Run the sweep of ``cfg``, then print its table and draw its figures."""
    sweep_and_report(cfg)


def sweep_and_report(cfg: DictConfig | dict) -> Path:
    """``run_sweep(cfg)``, its table printed and its figures drawn as ``cfg`` says (the output
    settings checked first); returns the results file."""
    from v2x.output_folders import writable_folder
    from v2x.results import read_results
    from v2x.results_table import table_with_convention
    from v2x.sweep import SweepConfig, run_sweep

    logging.getLogger("v2x").setLevel(logging.INFO)
    options = SweepConfig.from_any(cfg)
    if options.plots and options.plots_dir:  # refused before the sweep, not after it
        writable_folder(options.plots_dir, "sweep: field 'plots_dir'")
    if options.plot_metric is not None:
        from v2x.plots import METRICS

        if options.plot_metric not in METRICS:
            raise ValueError(
                f"sweep: field 'plot_metric' is {options.plot_metric!r}; valid choices: "
                f"null (vehicle_ap_70), {', '.join(METRICS)}"
            )
    path = run_sweep(cfg)
    if options.plots:
        from v2x.plots import make_plots

        stem = path.name.removesuffix(".parquet").removeprefix("sweep-")
        # another metric's figures go beside the default's, not over them (same file names)
        folder = f"plots-{stem}" + (f"-{options.plot_metric}" if options.plot_metric else "")
        out = options.plots_dir or str(path.parent / folder)
        for f in make_plots([path], out, metric=options.plot_metric, table=options.table):
            print(f"figure: {f}")
    elif options.table:
        print(table_with_convention(read_results([path])))
    print(f"results: {path}")
    return path


def main() -> None:
    """``v2x-sweep list``: the vocabulary of every axis; otherwise ``run`` through Hydra."""
    if sys.argv[1:] == ["list"]:
        from v2x.results_table import vocabulary_text

        print(vocabulary_text())
        return
    check_bare_words("v2x-sweep", sys.argv[1:], ("list",))
    check_launcher(sys.argv[1:])
    run()


if __name__ == "__main__":
    main()
