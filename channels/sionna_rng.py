"""Sionna's random numbers, driven by torch's: what makes Sionna-backed channels repeatable.

Sionna 2.x draws from its own generators (``sionna.phy.config.torch_rng(device)``, one
``torch.Generator`` per device), not from torch's default generator, so ``torch.manual_seed``
alone does not make a TDL/CDL channel (or Sionna's ``AWGN``) repeat. Worse, importing
``sionna.phy`` reseeds torch's *default* generators at random (its config calls
``torch.default_generator.seed()`` and the CUDA equivalent on import), so the first Sionna import
in a process silently destroys the caller's ``torch.manual_seed``.

The project's channels take their randomness from torch's global generator (a sweep calls
``torch.manual_seed(seed)`` before each batch). ``sionna_generator`` extends that to Sionna: it
draws one 63-bit seed from torch's default CPU generator and runs the Sionna call with the
device's Sionna generator seeded from it, restoring that generator afterwards. The result depends
only on torch's generator state at the call, not on what else ran in the process.
``import_sionna`` imports ``sionna.phy`` without disturbing torch's generators.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["draw_seed", "import_sionna", "sionna_generator"]


def import_sionna() -> None:
    """Import ``sionna.phy`` keeping torch's default CPU and CUDA generator states unchanged.

    A no-op once ``sionna.phy`` is imported. Sionna's config reseeds torch's default generators
    at random when it is first imported; this saves and restores their states around that import.
    """
    if "sionna.phy" in sys.modules:
        return
    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        import sionna.phy  # noqa: F401  (the import is the point)
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def draw_seed() -> int:
    """One seed in ``[0, 2^63)`` from torch's default CPU generator (``torch.manual_seed``)."""
    return int(torch.randint(0, 2**63 - 1, (1,), dtype=torch.int64))


def _device_str(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.current_device() if device.index is None else device.index}"
    return str(device)


@contextmanager
def sionna_generator(device: torch.device | str, seed: int | None = None) -> Iterator[int]:
    """Run Sionna blocks on ``device`` with its Sionna generator seeded from torch's generator.

    Args:
        device: the device the Sionna blocks run on (their ``torch_rng`` is this device's).
        seed: the seed to use; ``None`` draws one with ``draw_seed`` (one ``torch.randint`` on
            torch's default CPU generator, so ``torch.manual_seed`` governs the outcome).

    Yields the seed used. On exit Sionna's generator gets back its previous state, so code that
    relies on ``sionna.phy.config.seed`` elsewhere sees no difference.
    """
    import_sionna()
    from sionna.phy import config

    if seed is None:
        seed = draw_seed()
    gen = config.torch_rng(_device_str(device))
    saved = gen.get_state()
    gen.manual_seed(int(seed))
    try:
        yield int(seed)
    finally:
        gen.set_state(saved)
