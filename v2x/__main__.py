"""``python -m v2x``: list the command-line apps (each is a Hydra app with ``--help``)."""

from __future__ import annotations

import sys

APPS = {
    "v2x-generate": "write a synthetic train/val/test dataset (ray-cast LiDAR) with a manifest",
    "v2x-train": "train the cooperative detector; torchrun for multi-GPU",
    "v2x-train-codec": "train DeepJSCC for the detection task, calibrate its SNR gate",
    "v2x-eval": "evaluate a checkpoint: AP per fusion strategy, overall and on ego-invisible objects",
    "v2x-sweep": "sweep channel conditions x codecs x fusion; resumable Parquet results "
    "(`v2x-sweep list`: every name each axis accepts)",
    "v2x-plot": "plot results: AP vs SNR, AP vs channel uses, latency/AoI CDFs",
    "v2x-link": "one link: budget (SNR, rate, latency, AoI) from a link model and QPSK BER "
    "through a channel (channel=… link=… config groups)",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    lines = ["usage: <app> [hydra overrides] (each app: <app> --help)", "", "apps:"]
    lines += [f"  {name:<16} {text}" for name, text in APPS.items()]
    print("\n".join(lines))
    return 0 if not argv or argv[0] in ("-h", "--help") else 2


if __name__ == "__main__":
    raise SystemExit(main())
