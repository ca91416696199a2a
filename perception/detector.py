"""The cooperative detector: per-agent encoder (pillars + backbone), fusion, centre head.

Shapes: ``B`` frames, ``A`` agent slots (ego at 0), ``C`` feature channels, ``h × w`` the
stride-2 feature grid.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from v2x.common import check_whole
from v2x.perception.backbone import BEVBackbone, PointPillarsBackbone
from v2x.perception.bev import BEVGrid, points_to_level_frame
from v2x.perception.head import CenterHead, decode_detections
from v2x.perception.inference import PRECISIONS, GraphCache, autocast, check_precision
from v2x.perception.nms import batched_rotated_nms
from v2x.perception.pillars import PillarEncoder
from v2x.perception.semantic import payload_adapters

BACKBONES = ("small", "pointpillars")
#: the fields that act when boxes are decoded, not on the weights: an app's ``model`` section
#: sets them on any detector, a loaded checkpoint's included (``v2x.detector_loading.detector_from``)
DECODE_FIELDS = ("score_threshold", "nms_iou_threshold", "max_detections")
#: with CUDA graphs (``configure_inference``), each agent's points are padded to a multiple of
#: this many slots, so that batches with other point counts replay the same graph
GRAPH_POINT_BUCKET = 8192


@dataclass
class DetectorConfig:
    """Model hyper-parameters (Hydra group ``model``).

    ``backbone="small"``: the two-scale CPU-sized backbone (``backbone_channels``,
    ``backbone_layers``, a 1×1 convolution to ``feature_channels``). ``"pointpillars"``: the
    field's standard three-stage backbone (``layer_nums``, ``layer_filters``,
    ``upsample_filters``; ``feature_channels`` must equal ``sum(upsample_filters)``, 384 by
    default). ``yaw_axis``: the head also regresses the heading axis (``[sin 2·yaw, cos 2·yaw]``,
    ``v2x.perception.head``); off in checkpoints written before it existed.
    """

    grid: BEVGrid = field(default_factory=BEVGrid)
    pillar_channels: int = 64
    backbone_channels: tuple[int, int] = (64, 128)
    backbone_layers: int = 2
    feature_channels: int = 64
    num_classes: int = 4
    score_threshold: float = 0.2
    nms_iou_threshold: float = 0.1
    max_detections: int = 100
    backbone: str = "small"
    layer_nums: tuple[int, ...] = (3, 5, 8)
    layer_filters: tuple[int, ...] = (64, 128, 256)
    upsample_filters: tuple[int, ...] = (128, 128, 128)
    head_channels: int = 64
    yaw_axis: bool = False

    def __post_init__(self) -> None:
        for name in ("pillar_channels", "feature_channels", "num_classes", "max_detections",
                     "head_channels", "backbone_layers"):  # fmt: skip
            least = 0 if name == "backbone_layers" else 1
            check_whole(f"model: field '{name}'", getattr(self, name), least)
        for name in ("score_threshold", "nms_iou_threshold"):  # (NaN would keep no box, or all)
            value = getattr(self, name)
            real = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not (real and 0 <= value <= 1):
                raise ValueError(f"model: field '{name}' must be a number in [0, 1], got {value!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"model: field 'backbone' must be one of {', '.join(BACKBONES)}, got {self.backbone!r}"
            )
        if self.backbone == "pointpillars" and self.feature_channels != sum(self.upsample_filters):
            raise ValueError(
                "model: field 'feature_channels' must equal sum(upsample_filters) = "
                f"{sum(self.upsample_filters)} with backbone=pointpillars, got {self.feature_channels}"
            )


@dataclass
class Detections:
    """Boxes in the ego's levelled frame (z above ground).

    Attributes: boxes ``[B, K, 7]`` float32, scores ``[B, K]``, labels ``[B, K]`` int64,
    valid ``[B, K]`` bool.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor

    def frame(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keep = self.valid[index]
        return self.boxes[index][keep], self.scores[index][keep], self.labels[index][keep]


class CoopDetector(nn.Module):
    """Encoder shared by every agent kind, a centre head on the fused map."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DetectorConfig()
        self.grid = config.grid
        self.pillars = PillarEncoder(config.grid, config.pillar_channels)
        if config.backbone == "pointpillars":
            self.backbone = PointPillarsBackbone(
                config.pillar_channels,
                tuple(config.layer_nums),
                tuple(config.layer_filters),
                tuple(config.upsample_filters),
            )
        else:
            self.backbone = BEVBackbone(
                config.pillar_channels,
                tuple(config.backbone_channels),
                config.feature_channels,
                config.backbone_layers,
            )
        self.head = CenterHead(
            config.feature_channels, config.num_classes, config.head_channels, config.yaw_axis
        )
        # Learned rescoring of the semantic-payload fusions (v2x.perception.semantic); starts at
        # zero, so checkpoints without these weights fuse payloads by confidence alone.
        self.payload_adapters = payload_adapters(config.feature_channels, config.num_classes)
        self.stride = BEVBackbone.stride
        self.precision = "fp32"  # inference autocast of encode and head (configure_inference)
        # encode replayed from CUDA graphs (configure_inference); keyed by float_output
        self.encode_graphs: dict[bool, GraphCache] | None = None

    def configure_inference(
        self,
        precision: str = "fp32",
        channels_last: bool | None = None,
        cuda_graph: bool | None = None,
    ) -> CoopDetector:
        """Inference options that leave the fp32 computation as it is (module
        ``v2x.perception.inference``); returns ``self``.

        Args:
            precision: ``"fp32"`` (no autocast), ``"fp16"`` or ``"bf16"``: ``encode`` and the
                head run under ``torch.autocast`` of that dtype; their outputs stay float32.
            channels_last: convolution weights and the pillar pseudo-image in channels-last
                (NHWC) memory layout, the fast layout of cuDNN's tensor-core convolutions
                (``None``: leave the layout as it is).
            cuda_graph: ``encode`` in eval mode without autograd on CUDA inputs replays a CUDA
                graph per input shape (``GraphCache``: captured on first use, at most 4 shapes,
                the same kernels as eager, no launch overhead; point counts padded to a multiple
                of ``GRAPH_POINT_BUCKET``); ``None``: leave it as it is.
                Any call of this method drops the graphs captured so far (they hold the old
                settings), as does moving the model.
        """
        if cuda_graph is not None:
            self.encode_graphs = {} if cuda_graph else None
        elif self.encode_graphs is not None:
            self.encode_graphs.clear()
        self.precision = check_precision(precision, "model.precision")
        self.head.precision = self.precision
        if channels_last is not None:
            self.pillars.channels_last = bool(channels_last)
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                    module.weight.data = module.weight.data.contiguous(memory_format=fmt)
        return self

    def encode_points(
        self, level_points: torch.Tensor, mask: torch.Tensor, float_output: bool = True
    ) -> torch.Tensor:
        """``[S, N, 4]`` levelled points + ``[S, N]`` mask → ``[S, C, h, w]`` features (with a
        reduced ``self.precision``: computed under its autocast, returned as float32, or in the
        autocast dtype with ``float_output=False``: the warp's resampling casts to float32
        itself, so a compiled warp can fuse the cast instead of a pass over the map here)."""
        if self.precision == "fp32":  # as it always was (an enclosing autocast stays in force)
            return self.backbone(self.pillars(level_points, mask))
        with autocast(level_points.device, self.precision, cache_enabled=False):
            features = self.backbone(self.pillars(level_points, mask))
        return features.float() if float_output else features

    @property
    def encoded_dtype(self) -> torch.dtype:
        """The dtype of ``encode(..., float_output=False)``'s maps: the autocast dtype of a
        reduced ``precision`` (its backbone ends in convolutions, which autocast computes in
        that dtype), else float32 (the default dtype)."""
        return PRECISIONS.get(self.precision) or torch.get_default_dtype()

    @property
    def feature_map_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one agent's map from ``encode``: the grid at the backbone's stride."""
        grid = self.grid
        return (self.config.feature_channels, grid.height // self.stride, grid.width // self.stride)

    def encode(
        self,
        points: torch.Tensor,
        point_mask: torch.Tensor,
        poses: torch.Tensor,
        float_output: bool = True,
    ) -> torch.Tensor:
        """Every agent encodes in its own levelled frame.

        Args: points ``[B, A, N, 4]`` sensor frame, point_mask ``[B, A, N]``, poses
        ``[B, A, 4, 4]`` float64, ``float_output`` as in ``encode_points``. Returns
        ``[B, A, C, h, w]``.
        """
        if self.encode_graphs is not None and not self.training:
            graphs = self.encode_graphs.get(float_output)
            if graphs is None:
                graphs = self.encode_graphs[float_output] = GraphCache(
                    functools.partial(self._encode, float_output=float_output)
                )
            # batches of frames differ in their point counts: padded to a whole number of
            # GRAPH_POINT_BUCKET slots (masked: the eval path drops them, the features stay
            # the same) they share graphs
            n = points.shape[2]
            pad = -n % GRAPH_POINT_BUCKET
            if pad:
                points = F.pad(points, (0, 0, 0, pad))
                point_mask = F.pad(point_mask, (0, pad), value=False)
            return graphs(points, point_mask, poses)
        return self._encode(points, point_mask, poses, float_output)

    def _encode(
        self,
        points: torch.Tensor,
        point_mask: torch.Tensor,
        poses: torch.Tensor,
        float_output: bool,
    ) -> torch.Tensor:
        b, a, n, _ = points.shape
        level = points_to_level_frame(points, poses, self.grid.ground_z_m)
        feats = self.encode_points(
            level.reshape(b * a, n, 4), point_mask.reshape(b * a, n), float_output
        )
        return feats.view(b, a, *feats.shape[1:])

    def _apply(self, fn, *args, **kwargs):  # noqa: ANN001, ANN202 - nn.Module's signature
        """Moving or casting the weights drops the captured graphs (they read the old ones)."""
        if self.encode_graphs is not None:
            self.encode_graphs.clear()
        return super()._apply(fn, *args, **kwargs)

    def forward(
        self, batch, mode: str = "max", min_points_in_box: int = 1
    ) -> dict[str, torch.Tensor]:
        """Training forward: the loss dict of ``mode`` (see ``v2x.perception.losses``) on a
        ``CoopBatch``. Inference goes through ``encode`` / ``head`` / ``postprocess``."""
        from v2x.perception.losses import detection_loss

        return detection_loss(self, batch, mode, min_points_in_box)

    def postprocess(self, heat_logits: torch.Tensor, reg: torch.Tensor) -> Detections:
        """Heatmap peaks → boxes → class-aware rotated NMS."""
        cfg = self.config
        boxes, scores, labels, valid = decode_detections(
            heat_logits, reg, self.grid, self.stride, cfg.max_detections, cfg.score_threshold
        )
        return nms_detections(boxes, scores, labels, valid, cfg.nms_iou_threshold)


OPTIONAL_WEIGHTS = ("payload_adapters.",)  # may be missing from a checkpoint (zero-initialised)
GROWABLE_WEIGHTS = ("head.reg.",)  # output channels a model may add (the heading-axis channels)


def load_detector_weights(
    model: CoopDetector, state: dict[str, torch.Tensor], grow: bool = False
) -> None:
    """Load a detector state dict strictly, except that weights under ``OPTIONAL_WEIGHTS``
    (added after a checkpoint was written) may be missing and keep their initial values.

    ``grow`` (initialising a model from another's weights, e.g. fine-tuning with the heading-axis
    channels from a checkpoint without them): a weight under ``GROWABLE_WEIGHTS`` with fewer
    output channels (dim 0) than the model's, its other dims equal, fills the model's first
    channels; the model's extra channels keep their initial values.

    Raises ``RuntimeError`` naming missing or unexpected keys otherwise."""
    if grow:
        state = _grown_state(model, state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(OPTIONAL_WEIGHTS)]
    if missing or unexpected:
        raise RuntimeError(
            f"Error(s) in loading state_dict for CoopDetector: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )


def _grown_state(model: CoopDetector, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with each ``GROWABLE_WEIGHTS`` entry that has fewer output channels than the
    model's padded by the model's own initial values (``load_detector_weights``)."""
    own = model.state_dict()
    out = dict(state)
    for key, value in state.items():
        mine = own.get(key)
        if (
            key.startswith(GROWABLE_WEIGHTS)
            and mine is not None
            and value.dim() == mine.dim() >= 1
            and value.shape[1:] == mine.shape[1:]
            and value.shape[0] < mine.shape[0]
        ):
            grown = mine.detach().clone()
            grown[: value.shape[0]] = value.to(grown.dtype)
            out[key] = grown
    return out


def nms_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    iou: float,
    class_aware: bool = True,
) -> Detections:
    """Rotated NMS of ``[B, K, 7]`` candidates; suppressed ones get ``valid=False``."""
    result = batched_rotated_nms(boxes, scores, labels if class_aware else None, valid, iou)
    # the kept candidates' flags by a scatter into a spare last column for the unused slots
    # (boolean indexing would read the kept count on the host: a device sync)
    k = valid.shape[1]
    slots = torch.where(result.mask, result.indices, k)
    keep = torch.zeros(valid.shape[0], k + 1, dtype=torch.bool, device=valid.device)
    keep.scatter_(1, slots, True)
    return Detections(boxes, scores, labels, valid & keep[:, :k])
