"""Free-space path loss (Friis) and the ``free_space`` link model (registry ``LINKS``).

All distances in m, ``fc`` in GHz inside the formulas, losses in dB, ``log`` is log10; the
other families of models (``v2x.channels.pathloss``) build on ``fspl_db`` and ``_log``.
"""

from __future__ import annotations

import math

import torch

from v2x.channels.budget import SPEED_OF_LIGHT as C
from v2x.channels.link import LINKS, Geometry, LinkModel


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log10(x)


def fspl_db(d3d: torch.Tensor, fc_ghz: float) -> torch.Tensor:
    """Free-space path loss ``20·log10(4π d f / c)`` = 32.45 + 20 log f_GHz + 20 log d_m."""
    return 20 * _log(4 * math.pi * d3d * fc_ghz * 1e9 / C)


@LINKS.register("free_space")
class FreeSpace(LinkModel):
    """Friis free-space path loss (always LOS, no shadowing)."""

    name = "free_space"
    default_h_tx_m = 0.0
    default_h_rx_m = 0.0

    def __init__(self, **kw) -> None:
        kw.setdefault("shadowing", False)
        kw.setdefault("los_mode", "los")
        super().__init__(**kw)

    def path_loss_db(self, geo: Geometry, condition: torch.Tensor) -> torch.Tensor:
        return fspl_db(geo.d3d, self.fc_ghz)
