"""``v2x-plot``: figures and a console table from sweep results (thin wrapper over ``make_plots``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from v2x.cli import checks_override_keys, user_errors
from v2x.common import to_plain


@checks_override_keys("plot", "plot")
@hydra.main(config_path="pkg://v2x.conf", config_name="plot", version_base=None)
@user_errors
def main(cfg: DictConfig) -> None:
    from v2x.plots import make_plots

    c = to_plain(cfg)
    c.pop("hydra", None)
    files = make_plots(
        c["results"],
        c["out_dir"],
        formats=c["formats"],
        metric=c["metric"],
        allow_corrupt=c["allow_corrupt"],
        table=c["table"],
    )
    for f in files:
        print(f"wrote {f}")


if __name__ == "__main__":
    main()
