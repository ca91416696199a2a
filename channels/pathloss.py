"""Terrestrial and air-to-ground path-loss models (registry ``LINKS``), one module per family:

* ``pathloss_free``: Friis free space (``fspl_db``, ``free_space``);
* ``pathloss_v2v``: 3GPP TR 37.885 V2V sidelink (``v2v_highway``, ``v2v_urban``);
* ``pathloss_tr38901``: 3GPP TR 38.901 UMa / UMi street canyon / RMa (``umi_street_canyon``);
* ``pathloss_aerial``: 3GPP TR 36.777 aerial UEs (``uma_av``, ``umi_av``, ``rma_av``) and
  Al-Hourani et al. 2014 (``al_hourani``).

This module imports them all (registering every model) and keeps the import path
``v2x.channels.pathloss`` of each public name. All distances in m, ``fc`` in GHz inside the
formulas (``carrier_hz`` in the configs), losses in dB, ``log`` is log10. Sources per class;
constants in ``/shared/reference/channel_formulas.md``.
"""

from __future__ import annotations

from v2x.channels.link import NLOS, NLOSV
from v2x.channels.pathloss_aerial import AL_HOURANI_ENVIRONMENTS, AlHourani, RMaAV, UMaAV, UMiAV
from v2x.channels.pathloss_free import FreeSpace, fspl_db
from v2x.channels.pathloss_tr38901 import (
    TR38901_D2D_RANGE_M,
    UMiStreetCanyon,
    rma_breakpoint_m,
    rma_p_los,
    rma_pl,
    uma_p_los,
    uma_pl,
    umi_sc_p_los,
    umi_sc_pl,
)
from v2x.channels.pathloss_v2v import V2VHighway, V2VUrban

__all__ = [
    "AL_HOURANI_ENVIRONMENTS",
    "AlHourani",
    "FreeSpace",
    "NLOS",
    "NLOSV",
    "RMaAV",
    "TR38901_D2D_RANGE_M",
    "UMaAV",
    "UMiAV",
    "UMiStreetCanyon",
    "V2VHighway",
    "V2VUrban",
    "fspl_db",
    "rma_breakpoint_m",
    "rma_p_los",
    "rma_pl",
    "uma_p_los",
    "uma_pl",
    "umi_sc_p_los",
    "umi_sc_pl",
]
