"""``v2x-eval``: AP of a checkpoint per fusion strategy (thin Hydra wrapper over ``run_sweep``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from v2x.cli import checks_override_keys, errors_named, user_errors

EVAL_COLUMNS = (
    "fusion", "codec", "ap_30", "ap_50", "ap_70", "ap_70_invisible",
    "vehicle_ap_30", "vehicle_ap_50", "vehicle_ap_70",  # OpenCOOD's AP@0.3/0.5/0.7 (vehicles)
    "mean_source_bits_per_frame", "mean_channel_uses_per_frame",
)  # fmt: skip


@checks_override_keys("eval", "eval")
@hydra.main(config_path="pkg://v2x.conf", config_name="eval", version_base=None)
@user_errors
def main(cfg: DictConfig) -> None:
    from v2x.results import read_results
    from v2x.results_table import table_with_convention
    from v2x.sweep import run_sweep

    with errors_named("eval"):  # (its messages would read "sweep: ...")
        path = run_sweep(cfg)
    print(table_with_convention(read_results([path]), columns=list(EVAL_COLUMNS)))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
