"""DeepJSCC's SNR gate and output clamp (v2x.semcom.deepjscc) and the gate calibration rule."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from v2x.channels.link import LinkState
from v2x.codec_calibration import gate_threshold
from v2x.semcom.deepjscc import DeepJSCCCodec

C, H, W = 8, 16, 16


def _codec(**kwargs) -> DeepJSCCCodec:
    torch.manual_seed(0)
    args = dict(in_channels=C, hidden=16, downsample=2, min_ratio=1 / 64, max_ratio=1 / 4)
    args.update(kwargs)
    return DeepJSCCCodec(**args).eval()


def _roundtrip(codec: DeepJSCCCodec, snr_db: list[float], ratio: float):
    x = torch.rand(len(snr_db), C, H, W)
    link = LinkState(snr_db=torch.tensor(snr_db))
    tx = codec.encode(x, link, bandwidth_ratio=ratio)
    out = codec.decode(tx.received(tx.symbols, None), link)
    return tx, out


def test_uncalibrated_gate_delivers_everything():
    codec = _codec()
    assert torch.isinf(codec.gate_snr_db).all() and (codec.gate_snr_db < 0).all()
    tx, out = _roundtrip(codec, [-30.0, 0.0, 30.0], 1 / 16)
    assert tx.meta["delivered"].shape == (3, 1, H, W)
    assert tx.meta["delivered"].all()
    assert out.abs().sum(dim=(1, 2, 3)).gt(0).all()


def test_gate_drops_exactly_the_links_below_the_threshold_of_their_ratio():
    codec = _codec()
    assert [float(r) for r in codec.gate_ratios] == [1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4]
    codec.set_gate({1 / 64: 12.0, 1 / 32: 6.0, 1 / 16: 3.0, 1 / 8: -2.0, 1 / 4: math.inf})
    tx, out = _roundtrip(codec, [2.9, 3.0, 20.0], 1 / 16)
    keep = tx.meta["delivered"].flatten(1).all(dim=1).tolist()
    assert keep == [False, True, True]
    assert out[0].abs().max() == 0  # a dropped map is nothing, not noise
    # Between two table ratios the larger threshold applies (1/16 < 0.09 < 1/8: max(3, -2) = 3).
    assert codec.gate_threshold_db(torch.tensor([0.09])).item() == 3.0
    assert codec.gate_threshold_db(torch.tensor([1 / 64])).item() == 12.0
    # +inf: never delivered, at any SNR.
    tx, _ = _roundtrip(codec, [100.0], 1 / 4)
    assert not tx.meta["delivered"].any()
    codec.snr_gate = False
    tx, _ = _roundtrip(codec, [-50.0], 1 / 64)
    assert tx.meta["delivered"].all()


def test_set_gate_needs_every_ratio():
    codec = _codec()
    with pytest.raises(ValueError, match="no threshold for ratio 0.0625"):
        codec.set_gate({1 / 64: 0.0, 1 / 32: 0.0, 1 / 8: 0.0, 1 / 4: 0.0})


def test_gate_and_activation_survive_a_checkpoint_and_old_checkpoints_still_load(tmp_path):
    codec = _codec(output_activation="relu")
    codec.set_gate({1 / 64: 9.0, 1 / 32: 5.0, 1 / 16: 1.0, 1 / 8: 0.0, 1 / 4: -3.0})
    path = tmp_path / "gated.pt"
    codec.save_checkpoint(str(path))
    again = _codec(output_activation="relu", checkpoint=str(path))
    assert again.gate_snr_db.tolist() == [9.0, 5.0, 1.0, 0.0, -3.0]
    with pytest.raises(ValueError, match="output_activation"):
        _codec(output_activation="none", checkpoint=str(path))
    # A checkpoint from before the gate: no gate buffers, no 'output_activation' in its config.
    blob = torch.load(path, weights_only=True)
    blob["config"].pop("output_activation")
    for name in ("gate_ratios", "gate_snr_db"):
        blob["state_dict"].pop(name)
    old = tmp_path / "old.pt"
    torch.save(blob, old)
    loaded = _codec(checkpoint=str(old))
    assert torch.isinf(loaded.gate_snr_db).all()


def test_relu_output_clamps_at_inference_only():
    codec = _codec(output_activation="relu")
    hp, wp = codec.latent_hw(H, W)
    z = 10 * torch.randn(4, codec.latent_channels * hp * wp, dtype=torch.complex64)
    snr, ratio = torch.zeros(4), torch.full((4,), 1 / 16)
    clamped = codec._decode_symbols(z, snr, ratio, (C, H, W))
    codec.train()  # training sees the unclamped output (its gradient is not cut below 0)
    raw = codec._decode_symbols(z, snr, ratio, (C, H, W))
    assert clamped.min() == 0 and raw.min() < 0
    torch.testing.assert_close(clamped, raw.clamp_min(0))


def test_gate_threshold_rule_by_hand():
    snr = [-10, 0, 10, 20]
    # One curve crossing its floor once: the gate is the first SNR from which it stays above.
    assert gate_threshold(snr, [[0.1, 0.3, 0.5, 0.6]], [0.2]) == 0
    # A dip above the first crossing moves the gate above the dip.
    assert gate_threshold(snr, [[0.1, 0.3, 0.1, 0.6]], [0.2]) == 20
    # Several curves: the strictest one decides; equality counts as "not below".
    assert gate_threshold(snr, [[0.3, 0.3, 0.3, 0.3], [0.0, 0.1, 0.2, 0.2]], [0.2, 0.2]) == 10
    # Never good enough: +inf. Always good: the lowest validated SNR, never -inf.
    assert gate_threshold(snr, [[0.1, 0.1, 0.1, 0.1]], [0.2]) == math.inf
    assert gate_threshold(snr, [[0.9] * 4], [0.2]) == -10
    # The margin tolerates evaluation noise.
    assert gate_threshold(snr, [[0.19, 0.3, 0.3, 0.3]], [0.2], margin=0.02) == -10
    with pytest.raises(ValueError, match="increase"):
        gate_threshold([0, 0], [[1, 1]], [0])
    with pytest.raises(ValueError, match="floors"):
        gate_threshold(snr, [[1] * 4], [0, 0])


def test_calibration_refuses_a_codec_without_a_gate():
    from v2x.codec_calibration import calibrate_snr_gate
    from v2x.semcom import build_codec

    with pytest.raises(ValueError, match="has no SNR gate"):
        calibrate_snr_gate(None, build_codec("identity"), [object()])


def test_unusable_checkpoint_files_are_named_with_the_field(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        _codec(checkpoint=str(tmp_path / "none.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"garbage\.pt cannot be read") as caught:
        _codec(checkpoint=str(garbage))
    # torch's own reason, one line, without its advice to load untrusted code
    assert "weights_only: Unsupported operand" in str(caught.value)
    assert "weights_only` set to `False`" not in str(caught.value) and "\n" not in str(caught.value)
    assert len(str(caught.value)) < 200 + len(str(garbage))
    saved = tmp_path / "saved.pt"
    torch.save({"config": {}, "state_dict": {}}, saved)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(saved.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"truncated\.pt cannot be read: expected .*zip archive"):
        _codec(checkpoint=str(truncated))
    foreign = tmp_path / "foreign.pt"  # e.g. objects a detector's training state may hold
    torch.save({"config": {}, "state_dict": {}, "args": argparse.Namespace(lr=1.0)}, foreign)
    with pytest.raises(
        ValueError, match=r"weights_only: Unsupported global: .*Namespace"
    ) as caught:
        _codec(checkpoint=str(foreign))
    assert "add_safe_globals" not in str(caught.value)
    partial = tmp_path / "partial.pt"
    torch.save({"config": {}}, partial)
    with pytest.raises(ValueError, match=r"partial\.pt lacks field 'state_dict'"):
        _codec(checkpoint=str(partial))
    with pytest.raises(ValueError, match=r"partial\.pt lacks field 'state_dict'"):
        _codec().warm_start(str(partial))
