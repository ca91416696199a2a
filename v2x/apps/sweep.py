"""``v2x-sweep``: evaluate a grid of channel conditions (thin Hydra wrapper over ``run_sweep``)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from v2x.cli import user_errors


@hydra.main(config_path="pkg://v2x.conf", config_name="sweep", version_base=None)
@user_errors
def main(cfg: DictConfig) -> None:
    from v2x.results import read_results
    from v2x.sweep import SweepConfig, results_table_text, run_sweep

    logging.getLogger("v2x").setLevel(logging.INFO)
    path = run_sweep(cfg)
    options = SweepConfig.from_any(cfg)
    if options.plots:
        from v2x.plots import make_plots

        stem = path.name.removesuffix(".parquet")
        out = options.plots_dir or str(path.parent / f"plots-{stem.removeprefix('sweep-')}")
        for f in make_plots([path], out, table=options.table):
            print(f"figure: {f}")
    elif options.table:
        print(results_table_text(read_results([path])))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
