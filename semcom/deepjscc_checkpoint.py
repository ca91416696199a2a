"""DeepJSCC's checkpoints (``v2x.semcom.deepjscc``): the packaged codecs, the architecture a
checkpoint's ``config`` fixes, reading a ``save_checkpoint`` file (errors name the file and the
field), and the codec's own save, load and warm start.

``DeepJSCCCheckpoint`` is a part of ``DeepJSCCCodec``; shapes and units as there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from v2x.common import takes_tensors
from v2x.semcom.deepjscc_ratio import MAX_RATIO, MIN_RATIO

SHIPPED_CHECKPOINT = "deepjscc_synthetic.pt"
#: The packaged codecs by the feature channels they code: ``checkpoint: shipped`` loads the one
#: for the codec's ``in_channels`` (64: the small detector's maps; 384: the standard detector's,
#: ``conf/train_codec_pointpillars.yaml``).
SHIPPED_BY_CHANNELS = {64: SHIPPED_CHECKPOINT, 384: "deepjscc_pointpillars.pt"}
#: Other ``checkpoint`` names of packaged codecs, whatever ``in_channels`` says.
SHIPPED_CHECKPOINTS = {"shipped_pointpillars": "deepjscc_pointpillars.pt"}
#: Architecture fields a checkpoint's ``config`` fixes (``None`` arguments take them from it).
ARCHITECTURE_DEFAULTS = {
    "hidden": 128,
    "downsample": 2,
    "min_ratio": MIN_RATIO,
    "max_ratio": MAX_RATIO,
    "output_activation": "none",
}


def read_codec_checkpoint(path: str, in_channels: int = 64) -> tuple[str, dict]:
    """``(resolved path, blob)`` of a ``save_checkpoint`` file (``resolve_checkpoint``);
    ``ValueError`` naming the file (and the field) when it is missing, unreadable or lacks
    ``config`` / ``state_dict``."""
    path = resolve_checkpoint(path, in_channels)
    if not Path(path).is_file():
        raise ValueError(f"deepjscc: checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable file
        raise ValueError(
            f"deepjscc: checkpoint {path} cannot be read: expected a save_checkpoint file of "
            f"tensors and plain values ({_load_failure(exc)})"
        ) from exc
    for field, kind in (("config", dict), ("state_dict", dict)):
        if not isinstance(blob, dict) or not isinstance(blob.get(field), kind):
            raise ValueError(
                f"deepjscc: checkpoint {path} lacks field '{field}' (a save_checkpoint file "
                "holds {'config': {...}, 'state_dict': {...}})"
            )
    return path, blob


def _load_failure(exc: Exception) -> str:
    """What ``torch.load`` says went wrong, without its advice: a weights-only load's own
    reason (not the suggestion to load the file with ``weights_only=False``, which runs the
    code a file holds), else the message's first sentence (the error stays chained)."""
    after = str(exc).partition("WeightsUnpickler error:")[2]
    reason = next((line.strip() for line in after.splitlines() if line.strip()), "")
    if reason:
        return f"torch.load with weights_only: {reason.partition('. ')[0].rstrip('.')}"
    text = " ".join(str(exc).split())
    return text.partition(". ")[0].rstrip(".") or type(exc).__name__


def resolve_checkpoint(path: str, in_channels: int = 64) -> str:
    """The file a ``checkpoint`` option names: ``"shipped"`` → the packaged codec for
    ``in_channels`` (``SHIPPED_BY_CHANNELS``), a ``SHIPPED_CHECKPOINTS`` name → that packaged
    codec, else the path itself. ``ValueError`` when no packaged codec codes ``in_channels``."""
    if path == "shipped":
        if in_channels not in SHIPPED_BY_CHANNELS:
            raise ValueError(
                f"deepjscc: checkpoint 'shipped' has no packaged codec for in_channels="
                f"{in_channels}; packaged: {sorted(SHIPPED_BY_CHANNELS)} (the small and the "
                "standard detector's feature maps); give a checkpoint path (v2x-train-codec)"
            )
        name = SHIPPED_BY_CHANNELS[in_channels]
    elif path in SHIPPED_CHECKPOINTS:
        name = SHIPPED_CHECKPOINTS[path]
    else:
        return str(path)
    from importlib import resources

    return str(resources.files("v2x.semcom") / "assets" / name)


class DeepJSCCCheckpoint:
    """The persistence of ``DeepJSCCCodec`` (its ``config``, ``save_checkpoint``,
    ``load_checkpoint``, ``warm_start``)."""

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "hidden": self.hidden,
            "downsample": self.downsample,
            "min_ratio": self.min_ratio,
            "max_ratio": self.max_ratio,
            "output_activation": self.output_activation,
        }

    def warm_start(self, path: str) -> None:
        """Load the tensors of a ``save_checkpoint`` file (weights, feature statistics, gate)
        without checking its config, e.g. to fine-tune with another output activation;
        recalibrate the gate after training. ``"shipped"`` names the packaged checkpoint. Raises
        ``ValueError`` naming the file when it is missing or its tensors do not fit."""
        path, blob = read_codec_checkpoint(path, self.in_channels)
        try:
            self.load_state_dict(blob["state_dict"], strict=False)
        except RuntimeError as exc:
            raise ValueError(
                f"deepjscc: warm-start checkpoint {path} (config {blob.get('config')}) does not "
                f"fit this codec ({self.config()}): {exc}"
            ) from exc

    def save_checkpoint(self, path: str) -> None:
        """Write architecture config + weights + feature statistics + gate, and
        ``trained_with`` when set (atomically, on CPU)."""
        from v2x.common import atomic_torch_save

        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        blob = {"config": self.config(), "state_dict": state}
        if self.trained_with:  # the detector the codec was trained under (v2x-train-codec)
            blob["trained_with"] = dict(self.trained_with)
        atomic_torch_save(blob, path)

    def load_checkpoint(self, path: str) -> None:
        """Load a ``save_checkpoint`` file; the architecture must match. ``"shipped"`` loads the
        task-trained model that ships with v2x for ``in_channels`` (``SHIPPED_BY_CHANNELS``)."""
        self._load_stored(*read_codec_checkpoint(path, self.in_channels))

    def _load_stored(self, path: str, blob: dict) -> None:
        """``load_checkpoint`` of a file already read (``read_codec_checkpoint``)."""
        self.trained_with = {str(k): str(v) for k, v in (blob.get("trained_with") or {}).items()}
        saved = {"output_activation": "none", **blob["config"]}
        if saved != self.config():
            hint = ""
            if saved.get("in_channels") != self.in_channels:  # a codec of another detector
                hint = (
                    f"; it codes {saved.get('in_channels')}-channel feature maps and this "
                    f"detector's have {self.in_channels}: run it with the detector it was "
                    "trained on (model=pillars_center: 64, model=pointpillars: 384), or train "
                    "one for this detector (v2x-train-codec with the same model)"
                )
            raise ValueError(
                f"deepjscc: checkpoint {path!r} was saved with config {blob.get('config')}, "
                f"this codec has {self.config()}{hint}"
            )
        state = dict(blob["state_dict"])
        for name in ("gate_ratios", "gate_snr_db"):  # checkpoints from before the gate
            state.setdefault(name, getattr(self, name))
        # A codec still on the CPU (or built uninitialised) takes the file's tensors themselves
        # (no copy: the file's dict is this call's own); anywhere else they are copied onto its
        # device. Uninitialised layers that cannot take them (another architecture) are built
        # first, so that the load below fails as it would have, naming the keys.
        own = self.state_dict()
        assign = takes_tensors(own, state)
        if not assign and any(t.is_meta for t in own.values()):
            self._build_layers()
        self.load_state_dict(state, assign=assign)
