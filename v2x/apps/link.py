"""``v2x-link``: one link's budget and QPSK error rate (thin Hydra wrapper over
``v2x.channels.simulate_link``), composing the ``channel`` and ``link`` config groups::

    v2x-link channel=rayleigh link=v2v_urban link.distance_m=150
"""

from __future__ import annotations

import math

import hydra
from omegaconf import DictConfig

from v2x.cli import checks_override_keys, user_errors
from v2x.common import to_plain


def carrier_note(channel_cfg: dict, link_carrier_hz: float, field: str = "channel") -> str | None:
    """A note when the channel's own ``carrier_hz`` (its Doppler: fast fading, TDL/CDL; also an
    erasure channel's ``inner``) is not the link model's (its path loss), else ``None``."""
    inner = channel_cfg.get("inner")
    fc = channel_cfg.get("carrier_hz")
    if fc is None and isinstance(inner, dict):
        return carrier_note(inner, link_carrier_hz, f"{field}.inner")
    if fc is None or math.isclose(float(fc), link_carrier_hz, rel_tol=1e-9):
        return None
    return (
        f"note: the channel's Doppler is at {field}.carrier_hz={float(fc):g} Hz, the path loss at "
        f"link.carrier_hz={link_carrier_hz:g} Hz; set {field}.carrier_hz={link_carrier_hz:g} "
        "for one carrier"
    )


@checks_override_keys("link", "single_link")
@hydra.main(config_path="pkg://v2x.conf", config_name="single_link", version_base=None)
@user_errors
def main(cfg: DictConfig) -> None:
    from v2x.channels import simulate_link

    out = simulate_link(
        to_plain(cfg.channel),
        to_plain(cfg.link),
        cfg.payload_bits, cfg.num_symbols, cfg.seed,
    )  # fmt: skip
    print(f"channel {cfg.channel.name}, link {cfg.link.name}")
    for key, value in out.items():
        print(f"  {key:<14s} {value:.6g}" if isinstance(value, float) else f"  {key:<14s} {value}")
    note = carrier_note(to_plain(cfg.channel), out["carrier_hz"])
    if note:
        print(note)
    if out["channel_gains"] == 1:
        print(
            f"note: one fading gain for all {cfg.num_symbols} symbols, so qpsk_ber is that one "
            "draw's, not the average over fading; channel.block_len=1 averages over a gain per "
            "symbol"
        )


if __name__ == "__main__":
    main()
