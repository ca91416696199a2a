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
* ``toy_left_half`` (fusion): declares ``selects_cells`` (what it needs of the pipeline is
  declared on the class, not probed) and ranks only the left half of each collaborator's map as
  confident: the pipeline sends exactly those cells (the ledger's ``cells_sent`` is half the
  map) and, for a collaborator at the ego's pose, the fusion gets exactly the left half valid.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from v2x.channels import CHANNELS, build_channel
from v2x.channels.base import Channel, ChannelState
from v2x.datasets.frame import collate_frames
from v2x.perception.detector import CoopDetector, DetectorConfig
from v2x.perception.fusion import FUSIONS, build_fusion
from v2x.perception.fusion_base import FeatureFusion
from v2x.perception.fusion_basic import MaxFusion
from v2x.pipeline import CooperativePipeline
from v2x.results import read_results
from v2x.semcom import build_codec
from v2x.semcom.base import CODECS, Codec, Cost, Transmission, packets_for_bits, raw_feature_bits

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline import GRID, HW, _frame  # noqa: E402
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


class ToyLeftHalf(FeatureFusion):
    """Collaborators send the left half of their map (columns ``< w/2``); max fusion of what
    arrives. ``forward(features [B, A, C, h, w], valid [B, A, 1, h, w]) -> [B, C, h, w]``."""

    selects_cells = True  # the pipeline sends the max_fraction most confident cells
    max_fraction = 0.5

    @staticmethod
    def confidence(heat_logits: torch.Tensor) -> torch.Tensor:
        s, _, h, w = heat_logits.shape
        conf = torch.zeros(s, 1, h, w, device=heat_logits.device)
        conf[..., : w // 2] = 1.0
        return conf

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        self.valid = valid.clone()
        return MaxFusion()(features, valid)


@pytest.fixture(scope="module")
def toy_parts():
    parts = [(CHANNELS, "toy_noiseless", ToyNoiseless), (CODECS, "toy_fixed_bits", ToyFixedBits),
             (FUSIONS, "toy_ego_only", ToyEgoOnly), (FUSIONS, "toy_left_half", ToyLeftHalf)]  # fmt: skip
    for registry, name, cls in parts:
        registry.register(name)(cls)
    yield
    for registry, name, _ in parts:
        registry._factories.pop(name, None)
        registry._classes.pop(name, None)


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


def test_a_fusion_declaring_cell_selection_runs_through_the_pipeline(toy_parts):
    torch.manual_seed(0)
    model = CoopDetector(DetectorConfig(grid=GRID, pillar_channels=8, backbone_channels=(8, 16),
                                        backbone_layers=1, feature_channels=8)).eval()  # fmt: skip
    batch = collate_frames([_frame(3, [(0.0, 0.0, 0.0), (0.0, 0.0, 0.0)])])  # co-located
    fusion = build_fusion("toy_left_half")
    pipe = CooperativePipeline(model, fusion, build_codec("identity"), build_channel("awgn"))
    cost = pipe.eval().run(batch, torch.tensor([10.0])).cost
    assert float(cost.cells_sent[0, 0, 1]) == HW * HW / 2 == float(cost.cells_used[0, 0, 1])
    left = torch.zeros(HW, HW, dtype=torch.bool)
    left[:, : HW // 2] = True
    assert torch.equal(fusion.valid[0, 1, 0], left)  # the collaborator: its left half only
    assert bool(fusion.valid[0, 0].all())  # the ego's own map is whole
    # Without the declaration the same fusion sends its whole map.
    whole = CooperativePipeline(model, MaxFusion(), build_codec("identity"), build_channel("awgn"))
    assert float(whole.eval().run(batch, torch.tensor([10.0])).cost.cells_sent[0, 0, 1]) == HW * HW


def test_a_fusion_must_declare_what_it_needs_of_the_pipeline():
    with pytest.raises(TypeError, match="defines confidence but does not declare selects_cells"):

        class Undeclared(FeatureFusion):  # would silently send every cell
            @staticmethod
            def confidence(heat_logits):
                return heat_logits[:, :1]

    with pytest.raises(TypeError, match="compensates_latency = True but lacks extrapolate"):

        class NoMotion(FeatureFusion):
            stage = "boxes"
            compensates_latency = True

    with pytest.raises(TypeError, match="'stage' must be one of"):

        class Pixels(FeatureFusion):
            stage = "pixels"

    model = CoopDetector(DetectorConfig(grid=GRID, feature_channels=8, pillar_channels=8,
                                        backbone_channels=(8, 16), backbone_layers=1))  # fmt: skip
    with pytest.raises(ValueError, match="'fusion' must be a fusion strategy"):
        CooperativePipeline(model, torch.nn.Identity(), build_codec("identity"), ToyNoiseless())


#: A newcomer's one Python file: a channel, a codec and a fusion, each a subclass of its part's
#: base class with the registry's decorator (README: "Adding a channel, a codec or a fusion").
NEWCOMER_FILE = '''
import torch

from v2x.channels import CHANNELS
from v2x.channels.base import Channel, ChannelState
from v2x.perception.fusion import FUSIONS, FeatureFusion
from v2x.semcom.base import CODECS, Codec, Cost, Transmission, packets_for_bits, raw_feature_bits


@CHANNELS.register("newcomer_gain")
class GainChannel(Channel):
    """y = gain * x, noiseless."""

    def __init__(self, gain: float = 1.0) -> None:
        super().__init__()
        self.gain = float(gain)

    def forward(self, x, snr_db):
        snr = torch.as_tensor(snr_db, dtype=torch.float32, device=x.device).expand(x.shape[0])
        return self.gain * x, ChannelState(no=10.0 ** (-snr / 10.0))


@CODECS.register("newcomer_bits")
class FixedBitsCodec(Codec):
    """Each map error-free as float16, charged bits_per_map source bits."""

    uses_channel = False

    def __init__(self, bits_per_map: int = 1) -> None:
        super().__init__()
        self.bits_per_map = int(bits_per_map)

    def encode(self, features, link):
        bits = torch.full((features.shape[0],), float(self.bits_per_map), dtype=torch.float64)
        cost = Cost(bits, bits.clone(), bits.clone(), packets_for_bits(bits),
                    raw_feature_bits(features))
        return Transmission(None, cost, meta={"payload": features.to(torch.float16)})

    def decode(self, received, link):
        return received.meta["payload"].float()


@FUSIONS.register("newcomer_ego")
class EgoFusion(FeatureFusion):
    """The ego's own map: features [B, A, C, h, w] -> [B, C, h, w]."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)

    def forward(self, features, valid):
        return self.weight * torch.nan_to_num(features[:, 0])
'''

#: And one YAML per part, as under ``conf/channel/`` and ``conf/codec/`` (``name`` + constructor
#: arguments); a fusion's options are ``fusion_options.<name>`` of the sweep's YAML.
NEWCOMER_YAML = {
    "channel/newcomer_gain.yaml": "name: newcomer_gain\ngain: 1.0\n",
    "codec/newcomer_bits.yaml": "name: newcomer_bits\nbits_per_map: 1234\n",
    "sweep_newcomer.yaml": "grid:\n  fusions: [none, newcomer_ego]\n"
    "fusion_options:\n  newcomer_ego: {weight: 1.0}\n",
}


def test_a_newcomer_adds_a_channel_a_codec_and_a_fusion_with_one_file_and_yaml(
    tmp_path, monkeypatch
):
    """The path README.md documents, end to end: one module named in ``plugins`` and the parts'
    YAML; the sweep runs them by name. Oracles: the codec charges exactly ``bits_per_map`` (from
    its YAML) per link; analog maps over the noiseless unit-gain channel give identical
    detections at 0 and 10 dB; the ego-only fusion equals ``none``."""
    from omegaconf import OmegaConf

    from v2x.channels import build_channel
    from v2x.sweep import run_sweep

    (tmp_path / "newcomer_parts.py").write_text(NEWCOMER_FILE)
    conf = tmp_path / "conf"
    for rel, text in NEWCOMER_YAML.items():
        (conf / rel).parent.mkdir(parents=True, exist_ok=True)
        (conf / rel).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    names = [(CHANNELS, "newcomer_gain"), (CODECS, "newcomer_bits"), (FUSIONS, "newcomer_ego")]
    try:
        channel_yaml = OmegaConf.load(conf / "channel/newcomer_gain.yaml")
        codec_yaml = OmegaConf.to_container(OmegaConf.load(conf / "codec/newcomer_bits.yaml"))
        sweep_yaml = OmegaConf.to_container(OmegaConf.load(conf / "sweep_newcomer.yaml"))
        cfg = tiny_config(tmp_path / "cache", tmp_path / "out", channels=["newcomer_gain"],
                          codecs=["newcomer_bits", "analog"])  # fmt: skip
        cfg["grid"]["fusions"] = ["max", *sweep_yaml["grid"]["fusions"]]
        cfg["fusion_options"] = sweep_yaml["fusion_options"]
        cfg["codec_options"] = {"newcomer_bits": {k: v for k, v in codec_yaml.items()
                                                  if k != "name"}}  # fmt: skip
        cfg["channel_options"] = {"newcomer_gain": {"gain": float(channel_yaml.gain)}}
        cfg["plugins"] = ["newcomer_parts"]
        cfg["eval"] = {"bootstrap": 0}
        rows = _rows(run_sweep(cfg))
        # the channel YAML builds the channel as the apps do (``channel=newcomer_gain``)
        assert type(build_channel(channel_yaml)).__name__ == "GainChannel"
    finally:
        for registry, name in names:
            registry._factories.pop(name, None)
            registry._classes.pop(name, None)
        sys.modules.pop("newcomer_parts", None)
    by = {(r["fusion"], r["codec"], r["snr_db"]): r for r in rows}
    metrics = ("ap_30", "ap_50", "ap_70")
    for snr in (0.0, 10.0):
        sent = by[("max", "newcomer_bits", snr)]
        assert sent["channel"] == "newcomer_gain" and sent["mean_links_per_frame"] > 0
        assert sent["mean_source_bits_per_frame"] == pytest.approx(
            1234.0 * sent["mean_links_per_frame"]
        )
        for codec in ("newcomer_bits", "analog"):
            ego = by[("newcomer_ego", codec, snr)]
            assert [ego[m] for m in metrics] == [by[("none", "n/a", snr)][m] for m in metrics]
    analog = [by[("max", "analog", s)] for s in (0.0, 10.0)]
    assert [analog[0][m] for m in metrics] == [analog[1][m] for m in metrics]
    assert not any(math.isnan(analog[0][m]) for m in metrics)
