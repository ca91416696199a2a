"""A newcomer's parts, registered from this file (as a plugin module would), run through a sweep.

README.md ("Adding a channel, a codec or a fusion") says how: one class with the registry's
decorator, and a YAML under ``conf/<group>/`` for the apps. Each toy part here has an oracle:

* ``toy_noiseless`` (channel): y = x, so an analog codec decodes the same maps at every SNR and
  every detection metric is the same at 0 and 10 dB.
* ``toy_fixed_bits`` (codec): charges exactly ``bits_per_map`` source bits per map, sends the
  map error-free: the results' ``mean_source_bits_per_frame`` is ``bits_per_map`` times the
  mean links per frame, and the detections are those of ``identity``'s float16 maps.
* ``toy_ego_only`` (fusion): a feature-stage fusion that keeps the ego's own map, so its APs
  equal those of ``none`` whatever is sent.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from v2x.channels import CHANNELS
from v2x.channels.base import Channel, ChannelState
from v2x.perception.fusion import FUSIONS, FeatureFusion
from v2x.results import read_results
from v2x.semcom.base import CODECS, Codec, Cost, Transmission, packets_for_bits, raw_feature_bits

sys.path.insert(0, str(Path(__file__).parent))
from test_sweep import tiny_config  # noqa: E402


class ToyNoiseless(Channel):
    """y = x: ``forward(x [B, n] complex64, snr_db [B]) -> (x, state)``."""

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor) -> tuple[torch.Tensor, ChannelState]:
        snr = torch.as_tensor(snr_db, dtype=torch.float32, device=x.device).expand(x.shape[0])
        return x, ChannelState(no=10.0 ** (-snr / 10.0))


class ToyFixedBits(Codec):
    """Sends each map error-free as float16 and charges ``bits_per_map`` source bits for it."""

    uses_channel = False

    def __init__(self, bits_per_map: int = 1000) -> None:
        super().__init__()
        self.bits_per_map = int(bits_per_map)

    def encode(self, features: torch.Tensor, link) -> Transmission:
        bits = torch.full((features.shape[0],), float(self.bits_per_map), dtype=torch.float64)
        cost = Cost(bits, bits.clone(), bits.clone(), packets_for_bits(bits),
                    raw_feature_bits(features))  # fmt: skip
        return Transmission(None, cost, meta={"payload": features.to(torch.float16)})

    def decode(self, received: Transmission, link) -> torch.Tensor:
        return received.meta["payload"].float()


class ToyEgoOnly(FeatureFusion):
    """Keeps the ego's map: ``features [B, A, C, h, w] -> [B, C, h, w]``."""

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(features[:, 0])


@pytest.fixture(scope="module")
def toy_parts():
    parts = [(CHANNELS, "toy_noiseless", ToyNoiseless), (CODECS, "toy_fixed_bits", ToyFixedBits),
             (FUSIONS, "toy_ego_only", ToyEgoOnly)]  # fmt: skip
    for registry, name, cls in parts:
        registry.register(name)(cls)
    yield
    for registry, name, _ in parts:
        registry._factories.pop(name, None)


def _rows(path: Path) -> list[dict]:
    return read_results([path]).to_pylist()


def test_parts_registered_outside_the_package_run_through_a_sweep(toy_parts, tmp_path):
    from v2x.sweep import run_sweep

    cfg = tiny_config(tmp_path / "cache", tmp_path / "out", channels=["toy_noiseless"],
                      codecs=["toy_fixed_bits", "identity", "analog"],
                      fusions=["none", "max", "toy_ego_only"])  # fmt: skip
    cfg["eval"] = {"bootstrap": 0}
    rows = _rows(run_sweep(cfg))
    by = {(r["fusion"], r["codec"], r["channel"], r["snr_db"]): r for r in rows}
    metrics = ("ap_30", "ap_50", "ap_70")
    for snr in (0.0, 10.0):
        toy = by[("max", "toy_fixed_bits", "toy_noiseless", snr)]
        links = toy["mean_links_per_frame"]
        assert links > 0
        assert toy["mean_source_bits_per_frame"] == pytest.approx(1000.0 * links)
        ident = by[("max", "identity", "toy_noiseless", snr)]
        assert [toy[m] for m in metrics] == [ident[m] for m in metrics]
        none = by[("none", "n/a", "n/a", snr)]
        for codec in ("toy_fixed_bits", "analog"):
            ego = by[("toy_ego_only", codec, "toy_noiseless", snr)]
            assert [ego[m] for m in metrics] == [none[m] for m in metrics]
    quiet = [by[("max", "analog", "toy_noiseless", s)] for s in (0.0, 10.0)]
    assert [quiet[0][m] for m in metrics] == [quiet[1][m] for m in metrics]
    assert not any(math.isnan(by[("max", "analog", "toy_noiseless", 0.0)][m]) for m in metrics)
