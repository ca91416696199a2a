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
    outside = out.pop("outside_range")
    print(f"channel {cfg.channel.name}, link {cfg.link.name}")
    for key, value in out.items():
        if key == "qpsk_ber":
            print(f"  {key:<14s} {ber_text(value, out['num_bits'])}")
            continue
        print(f"  {key:<14s} {value:.6g}" if isinstance(value, float) else f"  {key:<14s} {value}")
    for note in (outside, carrier_note(to_plain(cfg.channel), out["carrier_hz"])):
        if note:
            print(f"note: {note}")
    if out["channel_gains"] == 1:
        print(
            f"note: one fading gain for all {cfg.num_symbols} symbols, so qpsk_ber is that one "
            "draw's, not the average over fading; channel.block_len=1 averages over a gain per "
            "symbol"
        )


def ber_text(ber: float, num_bits: int) -> str:
    """A measured bit error rate as printed: with no error in ``num_bits`` bits, ``0`` says
    nothing of how small it is, so the text gives the exact one-sided 95 % upper confidence
    bound (Clopper–Pearson for 0 errors: ``1 − 0.05^(1/n)``, about ``3/n``)."""
    if ber > 0:
        return f"{ber:.6g}"
    bound = -math.expm1(math.log(0.05) / num_bits)
    return f"0 (no error in {num_bits} bits: < {bound:.2g} at 95 % confidence)"


if __name__ == "__main__":
    main()
