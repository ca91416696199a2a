"""Run every registered channel once on a fixed input and save what came out (a subprocess).

Usage: ``python repro_worker.py OUT.pt SEED ORDER`` with ``ORDER`` ``forward`` or ``reverse`` (the
order in which the channels run, so that a channel's output cannot lean on what ran before it).

Before each channel the worker calls ``torch.manual_seed(SEED)``, the way a sweep seeds a batch;
the input symbols come from their own generator (seed 1234), so they are the same in every run.
It saves, per case, the received symbols and every field of the channel state, and the torch
generator state right after ``import sionna.phy`` compared with before it (``import_sionna`` must
leave it untouched).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch

# Small but complete configurations; a registered channel missing here runs with its defaults.
SMALL_OFDM = {"fft_size": 24, "num_ofdm_symbols": 4, "pilot_ofdm_symbol_indices": [1]}
OVERRIDES: dict[str, dict[str, Any]] = {
    "tdl": {**SMALL_OFDM, "speed_mps": 30.0},
    "cdl": {**SMALL_OFDM, "model": "D", "speed_mps": 10.0},
    "erasure": {"loss_prob": 0.3, "symbols_per_packet": 16},
    "erasure_iid": {"loss_prob": 0.3, "symbols_per_packet": 16},
    "erasure_ge": {"p_gb": 0.3, "p_bg": 0.3, "symbols_per_packet": 16},
    "erasure_bler": {"symbols_per_packet": 16},
}
# Extra variants: other backends and random paths of the same registered names.
EXTRA: dict[str, tuple[str, dict[str, Any]]] = {
    "awgn[sionna]": ("awgn", {"backend": "sionna"}),
    "rayleigh[csi_error]": ("rayleigh", {"block_len": 8, "csi_error_var": 0.1}),
    "rayleigh_fast[ar1]": ("rayleigh_fast", {"fast_model": "ar1"}),
    "tdl[ls,none]": ("tdl", {**SMALL_OFDM, "model": "C", "equalizer": "none"}),
    "erasure_ge[tdl]": ("erasure_ge", {"inner": {"name": "tdl", **SMALL_OFDM}}),
}
BATCH, N = 3, 100


def cases() -> dict[str, tuple[str, dict[str, Any]]]:
    """``{case: (registered name, kwargs)}``: every registered channel, then the variants."""
    from v2x.channels import CHANNELS

    out = {name: (name, OVERRIDES.get(name, {})) for name in CHANNELS.names()}
    out.update(EXTRA)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def run(seed: int, order: str) -> dict[str, Any]:
    """``{"import_kept_rng": bool, "cases": {case: {"y": ..., "state": {...}}}}``."""
    before = torch.get_rng_state()
    from v2x.channels.sionna_rng import import_sionna

    import_sionna()
    kept = bool(torch.equal(before, torch.get_rng_state()))

    from v2x.channels import build_channel

    g = torch.Generator().manual_seed(1234)
    x = torch.view_as_complex(torch.randn(BATCH, N, 2, generator=g) * math.sqrt(0.5))
    snr_db = torch.tensor([0.0, 10.0, 20.0])
    todo = list(cases().items())
    if order == "reverse":
        todo.reverse()
    results: dict[str, Any] = {}
    for case, (name, kw) in todo:
        torch.manual_seed(seed)
        y, state = build_channel(name, **kw)(x.clone(), snr_db)
        fields = {k: getattr(state, k) for k in state.__dataclass_fields__}
        results[case] = {"y": _plain(y), "state": _plain(fields)}
    return {"import_kept_rng": kept, "cases": results}


if __name__ == "__main__":
    out_path, seed, order = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.save(run(seed, order), out_path)
