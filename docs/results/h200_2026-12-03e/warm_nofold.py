"""``../h200_2026-12-03d/warm_calls.py`` with ``eval.fold_batchnorm`` false: the sweep's
defaults patched first. ``WC=<path of warm_calls.py> python warm_nofold.py x <repo> 0 <calls>``
(call B4's ``nofold`` processes)."""

import os
import runpy
import sys

import v2x.sweep_config as sweep_config

_defaults = sweep_config.default_config


def _unfolded() -> dict:
    config = _defaults()
    config["eval"]["fold_batchnorm"] = False
    return config


sweep_config.default_config = _unfolded
sys.argv = [sys.argv[0], *sys.argv[2:]]
runpy.run_path(os.environ["WC"], run_name="__main__")
