"""``v2x-link``: one link's budget and QPSK error rate (thin Hydra wrapper over
``v2x.channels.simulate_link``), composing the ``channel`` and ``link`` config groups::

    v2x-link channel=rayleigh link=v2v_urban link.distance_m=150
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from v2x.cli import checks_override_keys, user_errors
from v2x.common import to_plain


@checks_override_keys("link", "single_link")
@hydra.main(config_path="pkg://v2x.conf", config_name="single_link", version_base=None)
@user_errors
def main(cfg: DictConfig) -> None:
    from v2x.channels import simulate_link
    from v2x.channels.radio import carrier_note

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
        print(f"note: {note}")
    if out["channel_gains"] == 1:
        print(
            f"note: one fading gain for all {cfg.num_symbols} symbols, so qpsk_ber is that one "
            "draw's, not the average over fading; channel.block_len=1 averages over a gain per "
            "symbol"
        )


if __name__ == "__main__":
    main()
