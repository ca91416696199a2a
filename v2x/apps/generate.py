"""``v2x-generate``: write a synthetic dataset (thin Hydra wrapper over ``generate_dataset``).

Example::

    v2x-generate out_dir=data/town splits.train=200 dataset.num_uavs=2 quiet=true
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from v2x.cli import checks_override_keys, user_errors
from v2x.datasets.build import generate_dataset

__all__ = ["generate_dataset", "main"]


@checks_override_keys("generate", "generate")
@hydra.main(config_path="pkg://v2x.conf", config_name="generate", version_base=None)
@user_errors
def main(cfg: DictConfig) -> None:
    summary = generate_dataset(cfg)
    print(
        f"v2x-generate: {summary['root']}: {summary['counts']} frames "
        f"({summary['generated']} generated, {summary['reused']} reused)"
    )


if __name__ == "__main__":
    main()
