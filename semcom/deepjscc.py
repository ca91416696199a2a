"""DeepJSCC: a convolutional joint source–channel codec for BEV feature maps.

One model covers a range of bandwidth ratios and SNRs:

* **Bandwidth ratio** ``ρ = channel uses / real values of the raw feature map``
  (``ρ = k / n`` with ``k`` complex channel symbols for a map of ``n = C·H·W`` real values — the
  JSCC papers' convention; ``Cost.bandwidth_ratio`` computes the same quantity). ``ρ = 1/2``
  would send every real value as half a complex symbol, i.e. uncoded analog at full rate.
* **Channel masking** (Kurka & Gündüz's successive refinement / "slimmable" by channels): the
  encoder emits ``K_max`` complex latent channels of ``H' × W'`` symbols (``H' = ceil(H / s)``,
  ``s = 2**downsample``), flattened channel-major. A ratio keeps a prefix of that sequence:
  ``granularity="channel"`` keeps whole channels, ``k = max(1, round(ρ n / (H'W'))) ≤ K_max``,
  ``uses = k·H'·W'``; ``granularity="symbol"`` (default) keeps ``uses = max(1, round(ρ n))``
  symbols, the last channel partially, so a codec can match any channel-use budget exactly.
  Training samples ρ at random, so the encoder learns to put what matters first. The decoder
  sees zeros in the masked slots and gets the realised ratio as conditioning.
* **SNR conditioning** as in ADJSCC (Xu et al., "Wireless image transmission using deep
  source channel coding with attention modules", IEEE TCSVT 2021): after each conv stage an
  attention-feature (AF) module computes ``sigmoid(MLP([global_avg_pool(x) ‖ snr ‖ ratio]))``
  channel gains. The encoder uses ``link.snr_db`` (the transmitter's feedback estimate), the
  decoder too (the receiver's estimate).
* **Power**: every transmission has mean symbol energy exactly 1 over the symbols it sends
  (``v2x.semcom.power.normalize_power``).

Accounting (``Cost``): an analog codec has no bits; ``source_bits = coded_bits = 0`` and the
bandwidth axis is ``channel_uses`` (complex symbols sent). Packets are counted as if each complex
symbol took ``onair_bits_per_symbol = 32`` bits (two float16 values, the usual way analog
samples are carried in a packet-based MAC), i.e. ``packets = packets_for_bits(32 · uses, mtu)``:
365 symbols per 1500-byte packet with a 40-byte header.

Input features are standardised per channel with running statistics gathered during training
(no side information is sent); the decoder undoes it. ``output_activation="relu"`` clamps the
reconstruction at 0 for non-negative sources (e.g. probability maps) at inference; the shipped
detector's features are signed (its last layer is a 1x1 conv), so its codec uses ``"none"``.

**SNR gate** (the receiver's outage rule, the analog counterpart of a failed CRC): a table of
``gate_snr_db`` per ratio of ``gate_ratios``, calibrated on validation frames
(``v2x.codec_calibration.calibrate_snr_gate``) as the lowest SNR from which fusing the decoded
map never lowers AP below ego-only. ``decode`` marks a transmission whose decoder SNR lies below
the threshold at its ratio (the larger threshold of the two neighbouring table ratios) as not
delivered (``meta["delivered"]`` all False), so the ego fuses nothing rather than noise. An
uncalibrated codec (``gate_snr_db = -inf``) or ``snr_gate=False`` delivers everything.
``decode_blocks`` (a sweep's condition blocks coded together) reads its gate before it queues
the decoder, so that on a GPU the host goes on while the decoder runs, and records no
``meta["delivered"]`` when the gate kept every map of every block (``CellReport``'s convention:
every cell arrived), so that the caller need not read it either.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from v2x.channels.base import Channel, ChannelState, equalize
from v2x.channels.effective_sinr import analog_effective_snr_db, receiver_sinr
from v2x.channels.link import LinkState
from v2x.channels.packets import HEADER_BYTES, MTU_BYTES
from v2x.common import TensorMemo, takes_tensors, triton_available
from v2x.semcom.base import (
    CODECS,
    Codec,
    Cost,
    Transmission,
    check_features,
    decode_target,
    packets_for_bits,
    raw_feature_bits,
    symbols_per_packet,
)
from v2x.semcom.power import complex_to_real, normalize_power, prefix_mask, real_to_complex

#: Default sweep range of the bandwidth-ratio knob (channel uses per real source value).
MIN_RATIO = 1.0 / 512.0
MAX_RATIO = 1.0 / 4.0
_RATIO_TOL = 1e-9


class AFModule(nn.Module):
    """ADJSCC attention-feature module: channel gains from pooled features and the context.

    ``forward(x [B, F, H, W], context [B, D]) -> [B, F, H, W]``,
    gains = sigmoid(FC(ReLU(FC([mean_hw(x) ‖ context])))).
    """

    def __init__(self, channels: int, context_dim: int = 2) -> None:
        super().__init__()
        hidden = max(channels // 4, 8)
        self.mlp = nn.Sequential(
            nn.Linear(channels + context_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x · gains`` (``residual + x · gains`` with a residual of ``x``'s shape)."""
        pooled = x.mean(dim=(2, 3))
        gains = self.mlp(torch.cat([pooled, context], dim=1))
        if _fused_layers(x) and (residual is None or residual.stride() == x.stride()):
            from v2x.semcom.deepjscc_triton import scale_add

            return scale_add(x, gains, residual)  # one pass, the same bits
        out = x * gains[:, :, None, None]
        return out if residual is None else residual + out


def _fused_layers(x: torch.Tensor) -> bool:
    """The layers' pointwise passes as Triton kernels (``deepjscc_triton.bias_prelu_``,
    ``scale_add``; the same bits as torch's): CUDA inference on dense float32 maps, outside
    ``torch.autocast`` (under it the convolutions and the AF modules' MLPs return the autocast
    dtype, which torch's passes take as they are)."""
    if not (x.is_cuda and x.dtype == torch.float32 and x.dim() == 4) or torch.is_grad_enabled():
        return False
    if torch.is_autocast_enabled(x.device.type):
        return False
    dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
    return dense and triton_available()


class _Stage(nn.Module):
    """conv → PReLU → AF."""

    def __init__(self, conv: nn.Module, channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.act = nn.PReLU(channels)
        self.af = AFModule(channels)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.af(self.activated(x), context, residual)

    def activated(self, x: torch.Tensor) -> torch.Tensor:
        """``PReLU(conv(x))``. ``x`` may hold only the first ``c`` of a ``Conv2d``'s input
        channels (the others zero: DeepJSCC's unsent latent channels): the convolution then
        reads those ``c``, the same sum without its zero terms. In CUDA inference the bias and
        the PReLU are one pass (``deepjscc_triton.bias_prelu_``)."""
        conv = self.conv
        if not isinstance(conv, nn.Conv2d):
            return self.act(conv(x))
        sliced = x.shape[1] < conv.in_channels
        fuse = _fused_layers(x) and conv.bias is not None
        if not (sliced or fuse):
            return self.act(conv(x))
        weight = conv.weight[:, : x.shape[1]] if sliced else conv.weight
        pre = F.conv2d(x, weight, None if fuse else conv.bias, conv.stride, conv.padding,
                       conv.dilation, conv.groups)  # fmt: skip
        if not fuse:
            return self.act(pre)
        from v2x.semcom.deepjscc_triton import bias_prelu_

        return bias_prelu_(pre, conv.bias, self.act.weight)


class _Residual(nn.Module):
    """x + AF(PReLU(conv3x3(x)))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.stage = _Stage(nn.Conv2d(channels, channels, 3, padding=1), channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.stage(x, context, residual=x)


class JSCCEncoder(nn.Module):
    """``[B, C, H, W]`` (standardised, H and W multiples of 2**downsample) → ``[B, 2K, H', W']``."""

    def __init__(
        self, in_channels: int, hidden: int, latent_channels: int, downsample: int
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        channels = in_channels
        for _ in range(downsample):
            stages.append(_Stage(nn.Conv2d(channels, hidden, 5, stride=2, padding=2), hidden))
            channels = hidden
        if downsample == 0:
            stages.append(_Stage(nn.Conv2d(channels, hidden, 3, padding=1), hidden))
        self.stages = nn.ModuleList(stages)
        self.residual = _Residual(hidden)
        self.head = nn.Conv2d(hidden, 2 * latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.from_first(self.context_free(x), context)

    def context_free(self, x: torch.Tensor) -> torch.Tensor:
        """The first stage's convolution and activation ``[B, hidden, H/2, W/2]`` (``H, W``
        without downsampling): the part of the encoder that does not depend on the context."""
        return self.stages[0].activated(x)

    def from_first(
        self, first: torch.Tensor, context: torch.Tensor, channels: int | None = None
    ) -> torch.Tensor:
        """The rest of ``forward`` from ``context_free``'s output.

        ``channels``: compute only the head's first ``channels`` output channels (the latent
        channels a transmission sends: ``[B, channels, H', W']``); ``None``: all ``2K``."""
        x = self.stages[0].af(first, context)
        for stage in self.stages[1:]:
            x = stage(x, context)
        x = self.residual(x, context)
        head = self.head
        if channels is None or channels >= head.out_channels:
            return head(x)
        return F.conv2d(x, head.weight[:channels], head.bias[:channels], head.stride,
                        head.padding, head.dilation, head.groups)  # fmt: skip


class JSCCDecoder(nn.Module):
    """``[B, 2K, H', W']`` (zeros where masked) → ``[B, C, H'·s, W'·s]`` standardised features."""

    def __init__(
        self, out_channels: int, hidden: int, latent_channels: int, downsample: int
    ) -> None:
        super().__init__()
        self.stem = _Stage(nn.Conv2d(2 * latent_channels, hidden, 3, padding=1), hidden)
        self.residual = _Residual(hidden)
        self.ups = nn.ModuleList(
            _Stage(nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1), hidden)
            for _ in range(max(downsample - 1, 0))
        )
        if downsample >= 1:
            self.out = nn.ConvTranspose2d(hidden, out_channels, 4, stride=2, padding=1)
        else:
            self.out = nn.Conv2d(hidden, out_channels, 3, padding=1)

    def forward(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(y, context))

    def body(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Every layer but the output layer: ``[B, hidden, H'·s/2, W'·s/2]`` (``s`` the
        downsampling factor; ``[B, hidden, H', W']`` without downsampling).

        ``y`` may hold only the first ``c < 2K`` latent channels (those a transmission sent;
        the others are zeros): the stem's convolution then reads those ``c`` input channels,
        the same sum without its zero terms (``_Stage.activated``)."""
        x = self.residual(self.stem(y, context), context)
        for up in self.ups:
            x = up(x, context)
        return x


def _transposed_size(layer: nn.ConvTranspose2d, size: Iterable[int]) -> tuple[int, ...]:
    """The output height and width of ``layer`` (no ``output_size``) on an input of ``size``."""
    return tuple(
        (n - 1) * layer.stride[i] - 2 * layer.padding[i] + layer.dilation[i]
        * (layer.kernel_size[i] - 1) + layer.output_padding[i] + 1
        for i, n in enumerate(size)
    )  # fmt: skip


def _per_batch(
    value: torch.Tensor | float, batch: int, name: str, device: torch.device
) -> torch.Tensor:
    """``[B]`` float32 from a scalar, ``[1]`` or ``[B]`` tensor."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device).reshape(-1)
    if t.numel() == 1:
        return t.expand(batch).clone()
    if t.numel() != batch:
        raise ValueError(
            f"deepjscc: '{name}' must be a scalar or have {batch} entries, got {t.numel()}"
        )
    return t


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


@CODECS.register("deepjscc")
class DeepJSCCCodec(Codec):
    """Learned analog JSCC codec with SNR conditioning and channel masking.

    Args:
        in_channels: C of the feature maps it codes (64 for backbone features, 4–8 for semantic
            BEV maps).
        hidden: width of the conv stages.
        downsample: number of stride-2 stages (spatial factor ``s = 2**downsample``).
        min_ratio, max_ratio: the bandwidth-ratio range the model is trained for; ``K_max =
            ceil(max_ratio · C · s²)`` complex latent channels.
            ``hidden``, ``downsample``, ``min_ratio``, ``max_ratio`` and ``output_activation``
            left ``None`` are the ``checkpoint``'s (else ``ARCHITECTURE_DEFAULTS``); given ones
            must match it.
        bandwidth_ratio: the ratio ``encode`` uses (channel uses per real source value), within
            ``[min_ratio, max_ratio]``.
        granularity: ``"symbol"`` (prefix of symbols, exact budgets) or ``"channel"``.
        snr_range_db: the SNR range used to scale the conditioning input (and the default
            training range).
        equalizer: ``"mmse"`` or ``"zf"`` one-tap equalisation when the channel state has ``h``.
        decoder_snr: what conditions the decoder: ``"link"`` (``link.snr_db``, the receiver's
            average-SNR estimate) or ``"effective"`` (the post-equalisation SNR of this
            transmission from its CSI, mean of ``|ĥ|²/(no + σe²)`` over the symbols that
            arrived; it tracks block fading and equals ``link`` on AWGN). Either way the
            equalised symbols are MMSE estimates (biased towards 0) when ``equalizer="mmse"``.
        onair_bits_per_symbol, mtu_bytes, header_bytes: packet accounting (see module doc).
        output_activation: ``"none"`` or ``"relu"`` (non-negative reconstructions).
        snr_gate: apply the calibrated SNR gate in ``decode`` (see module doc).
        checkpoint: path of a ``save_checkpoint`` file to load, or ``None``.
    """

    uses_channel = True
    sweep_arguments = frozenset({"in_channels", "bandwidth_ratio", "checkpoint"})
    trainable = True  # forward_train, save_checkpoint, warm_start (v2x-train-codec)
    snr_gated = True  # gate_ratios, set_gate, snr_gate (v2x.codec_calibration)
    decodes_into = True  # the one-pass de-standardisation writes into DECODE_INTO (CUDA)
    codes_blocks_jointly = True  # encode_blocks / decode_blocks (v2x.condition_streams)
    maps_differ_per_condition = True  # its decoder reads each condition's noisy symbols
    shape_only_cost = True  # channel_uses_for (selective's budget)

    def __init__(
        self,
        in_channels: int = 64,
        hidden: int | None = None,
        downsample: int | None = None,
        min_ratio: float | None = None,
        max_ratio: float | None = None,
        bandwidth_ratio: float = 1.0 / 64.0,
        granularity: str = "symbol",
        snr_range_db: tuple[float, float] | list[float] = (-10.0, 30.0),
        equalizer: str = "mmse",
        decoder_snr: str = "link",
        onair_bits_per_symbol: int = 32,
        mtu_bytes: int = MTU_BYTES,
        header_bytes: int = HEADER_BYTES,
        output_activation: str | None = None,
        snr_gate: bool = True,
        checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        stored = read_codec_checkpoint(checkpoint, in_channels) if checkpoint else None
        saved = stored[1]["config"] if stored else {}
        given = {"hidden": hidden, "downsample": downsample, "min_ratio": min_ratio,
                 "max_ratio": max_ratio, "output_activation": output_activation}  # fmt: skip
        arch = {k: v if v is not None else saved.get(k, ARCHITECTURE_DEFAULTS[k])
                for k, v in given.items()}  # fmt: skip
        hidden, downsample = arch["hidden"], arch["downsample"]
        min_ratio, max_ratio = arch["min_ratio"], arch["max_ratio"]
        output_activation = arch["output_activation"]
        if output_activation not in ("none", "relu"):
            raise ValueError(
                f"deepjscc: unknown output_activation {output_activation!r}; valid: none, relu"
            )
        if in_channels < 1 or hidden < 1 or downsample < 0:
            raise ValueError(
                "deepjscc: 'in_channels' and 'hidden' must be ≥ 1 and 'downsample' ≥ 0, got "
                f"{in_channels}, {hidden}, {downsample}"
            )
        if not (0.0 < min_ratio <= max_ratio <= 1.0):
            raise ValueError(
                f"deepjscc: need 0 < 'min_ratio' ≤ 'max_ratio' ≤ 1, got {min_ratio}, {max_ratio}"
            )
        if granularity not in ("symbol", "channel"):
            raise ValueError(
                f"deepjscc: unknown granularity {granularity!r}; valid: symbol, channel"
            )
        if equalizer not in ("mmse", "zf"):
            raise ValueError(f"deepjscc: unknown equalizer {equalizer!r}; valid: mmse, zf")
        snr_lo, snr_hi = (float(v) for v in snr_range_db)
        if not snr_hi > snr_lo:
            raise ValueError(f"deepjscc: 'snr_range_db' must be (low, high), got {snr_range_db}")
        self.in_channels = int(in_channels)
        #: what the weights were trained with (``{"detector_sha256": ...}``, set by
        #: ``v2x-train-codec``; empty for codecs that do not record it)
        self.trained_with: dict[str, str] = {}
        self.hidden = int(hidden)
        self.downsample = int(downsample)
        self.factor = 2**self.downsample
        self.min_ratio = float(min_ratio)
        self.max_ratio = float(max_ratio)
        self.latent_channels = math.ceil(self.max_ratio * self.in_channels * self.factor**2 - 1e-9)
        self.granularity = granularity
        self.snr_range_db = (snr_lo, snr_hi)
        self.equalizer = equalizer
        if decoder_snr not in ("link", "effective"):
            raise ValueError(
                f"deepjscc: unknown decoder_snr {decoder_snr!r}; valid: link, effective"
            )
        self.decoder_snr = decoder_snr
        self.onair_bits_per_symbol = int(onair_bits_per_symbol)
        self.mtu_bytes = int(mtu_bytes)
        self.header_bytes = int(header_bytes)
        self.bandwidth_ratio = self.check_ratio(bandwidth_ratio)
        self.output_activation = output_activation
        self.snr_gate = bool(snr_gate)
        self._first_memo = TensorMemo()  # _encoder_first's last value
        # With a checkpoint the layers are built uninitialised (on the meta device) and take
        # its tensors (_load_stored): their initialisation would only be overwritten.
        self._build_layers(meta=stored is not None)
        self.register_buffer("feat_mean", torch.zeros(in_channels))
        self.register_buffer("feat_std", torch.ones(in_channels))
        self.register_buffer("stats_ready", torch.zeros((), dtype=torch.bool))
        grid = self.ratio_grid()
        self.register_buffer("gate_ratios", torch.tensor(grid, dtype=torch.float64))
        self.register_buffer("gate_snr_db", torch.full((len(grid),), float("-inf")))
        self._default_channel: Channel | None = None
        if stored:
            self._load_stored(*stored)

    def _build_layers(self, meta: bool = False) -> None:
        """The encoder and decoder, initialised from torch's global RNG, or with ``meta`` on the
        meta device (no values: a checkpoint's tensors replace them, ``_load_stored``)."""
        args = (self.in_channels, self.hidden, self.latent_channels, self.downsample)
        with torch.device("meta") if meta else contextlib.nullcontext():
            self.encoder = JSCCEncoder(*args)
            self.decoder = JSCCDecoder(*args)

    # ----------------------------------------------------------------- ratio and sizes
    def check_ratio(self, ratio: float) -> float:
        """Return ``ratio`` as float or raise ``ValueError`` naming the valid range."""
        r = float(ratio)
        lo, hi = self.min_ratio, self.max_ratio
        if (
            not math.isfinite(r)
            or r <= 0.0
            or r > 1.0
            or not (lo * (1 - 1e-6) <= r <= hi * (1 + 1e-6))
        ):
            raise ValueError(
                f"deepjscc: 'bandwidth_ratio' = {ratio} is outside the valid range "
                f"[{lo:g}, {hi:g}] (1/{1 / lo:g} … 1/{1 / hi:g}) channel uses per real feature value"
            )
        return r

    def latent_hw(self, height: int, width: int) -> tuple[int, int]:
        """Latent spatial size ``(H', W') = (ceil(H/s), ceil(W/s))``."""
        return math.ceil(height / self.factor), math.ceil(width / self.factor)

    def channel_uses_for(self, shape: tuple[int, int, int], ratio: float) -> int:
        """Complex channel uses for one ``[C, H, W]`` map at ``ratio`` (the hand-computable rule).

        ``symbol``: ``max(1, round(ρ·C·H·W))``; ``channel``: ``k·H'·W'`` with
        ``k = max(1, round(ρ·C·H·W / (H'·W')))`` (round half up). Raises ``ValueError`` if the
        latent (``K_max·H'·W'`` symbols) cannot hold that many.
        """
        ratio = self.check_ratio(ratio)
        c, h, w = shape
        n = c * h * w
        hp, wp = self.latent_hw(h, w)
        capacity = self.latent_channels * hp * wp
        if self.granularity == "symbol":
            uses = max(1, math.floor(ratio * n + 0.5))
        else:
            k = max(1, math.floor(ratio * n / (hp * wp) + 0.5))
            uses = k * hp * wp
        if uses > capacity:
            raise ValueError(
                f"deepjscc: 'bandwidth_ratio' = {ratio:g} needs {uses} channel uses but the latent "
                f"of a {c}x{h}x{w} map holds {capacity} (max ratio {capacity / n:g})"
            )
        return uses

    def _context(self, snr_db: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
        lo, hi = self.snr_range_db
        c_snr = (snr_db - 0.5 * (lo + hi)) / (0.5 * (hi - lo))
        l_lo, l_hi = math.log2(self.min_ratio), math.log2(self.max_ratio)
        span = max(l_hi - l_lo, 1.0)
        c_ratio = (torch.log2(ratio.clamp_min(1e-12)) - 0.5 * (l_lo + l_hi)) / (0.5 * span)
        return torch.stack([c_snr, c_ratio], dim=1).to(torch.float32)

    # ----------------------------------------------------------------- normalisation
    def _standardize(
        self, x: torch.Tensor, memory_format: torch.memory_format | None = None
    ) -> torch.Tensor:
        """``(x − mean) / std`` per channel; with ``memory_format`` (inference only: the division
        is in place) written in that layout by the subtraction itself, the same values."""
        mean, std = self.feat_mean[None, :, None, None], self.feat_std[None, :, None, None]
        if memory_format is None:
            return (x - mean) / std
        out = torch.empty_like(x, memory_format=memory_format)
        return torch.sub(x, mean, out=out).div_(std)

    def _output_maps(
        self, hidden: torch.Tensor, h: int, w: int, into: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The decoder's output layer over ``hidden`` (``JSCCDecoder.body``), cropped to
        ``h × w`` and de-standardised: ``[B, C, h, w]``.

        In CUDA inference, when nothing is cropped, the transposed output convolution runs
        without its bias and one pass (``deepjscc_triton.destandardize``) adds the bias and
        de-standardises: torch itself adds a cuDNN convolution's bias in a pass of its own
        (``add_``), so these are the same operations in the same order (the same bits in the
        deterministic mode; tested on CUDA), one pass over the maps fewer. That pass writes into
        ``into`` when it has the convolution output's layout (``DECODE_INTO``)."""
        layer = self.decoder.out
        if (
            isinstance(layer, nn.ConvTranspose2d)
            and layer.bias is not None
            and _transposed_size(layer, hidden.shape[-2:]) == (h, w)
            and self._in_one_pass(hidden)
        ):
            from v2x.semcom.deepjscc_triton import destandardize

            pre = F.conv_transpose2d(
                hidden, layer.weight, None, layer.stride, layer.padding, layer.output_padding,
                layer.groups, layer.dilation,
            )  # fmt: skip
            fits = into is not None and into.shape == pre.shape and into.stride() == pre.stride()
            out = into if fits else None
            return destandardize(pre, self.feat_std, self.feat_mean, layer.bias, out=out)
        return self._destandardize(layer(hidden)[:, :, :h, :w])

    def _in_one_pass(self, x: torch.Tensor) -> bool:
        """De-standardisation as one Triton pass: CUDA inference in float32, outside
        ``torch.autocast`` (its output convolution would return the autocast dtype)."""
        plain = x.dtype == self.feat_std.dtype == torch.float32 and not torch.is_grad_enabled()
        if not (x.is_cuda and plain) or torch.is_autocast_enabled(x.device.type):
            return False
        return triton_available()

    def _destandardize(self, x: torch.Tensor) -> torch.Tensor:
        """``x · std + mean`` per channel; in CUDA inference as one pass
        (``deepjscc_triton.destandardize``: the same bits as these two operations)."""
        dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        if dense and self._in_one_pass(x):
            from v2x.semcom.deepjscc_triton import destandardize

            return destandardize(x, self.feat_std, self.feat_mean)
        return x * self.feat_std[None, :, None, None] + self.feat_mean[None, :, None, None]

    @torch.no_grad()
    def update_feature_stats(self, features: torch.Tensor, momentum: float = 0.05) -> None:
        """EMA of the per-channel mean/std of ``features [B, C, H, W]`` (first call: set)."""
        if features.shape[0] == 0:
            return
        mean = features.mean(dim=(0, 2, 3))
        std = features.std(dim=(0, 2, 3), unbiased=False).clamp_min(1e-6)
        if not bool(self.stats_ready):
            self.feat_mean.copy_(mean)
            self.feat_std.copy_(std)
            self.stats_ready.fill_(True)
        else:
            self.feat_mean.lerp_(mean, momentum)
            self.feat_std.lerp_(std, momentum)

    # ----------------------------------------------------------------- core maps
    def _check_input(self, features: torch.Tensor) -> None:
        check_features(features)
        if features.shape[1] != self.in_channels:
            raise ValueError(
                f"deepjscc: 'features' must have {self.in_channels} channels ([B, "
                f"{self.in_channels}, H, W]), got {tuple(features.shape)}"
            )

    def _uses_per_item(
        self, shape: tuple[int, int, int], ratio: torch.Tensor | float, batch: int, device
    ) -> torch.Tensor:
        r = torch.as_tensor(ratio, dtype=torch.float64).reshape(-1)
        if r.numel() == 1:
            uses = self.channel_uses_for(shape, float(r))
            return torch.full((batch,), uses, dtype=torch.long, device=device)
        if r.numel() != batch:
            raise ValueError(
                f"deepjscc: 'ratio' must be a scalar or have {batch} entries, got {r.numel()}"
            )
        return torch.tensor(
            [self.channel_uses_for(shape, float(v)) for v in r], dtype=torch.long, device=device
        )

    def _sent_channels(self, symbols: int, hp: int, wp: int) -> int:
        """Complex latent channels that hold the first ``symbols`` of the channel-major
        sequence (at least 1, at most ``K``)."""
        return min(max(-(-symbols // (hp * wp)), 1), self.latent_channels)

    def _encode_symbols(
        self,
        features: torch.Tensor,
        snr_db: torch.Tensor,
        uses: torch.Tensor,
        sent: int | None = None,
        blocks: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """→ ``(z [B, n] complex64 unit power over the kept prefix, mask [B, n], ratio [B])``.

        ``n = K·H'·W'`` (``N_max``); with ``sent`` (≥ every row's ``uses``), only the latent
        channels that hold the first ``sent`` symbols are computed: ``n = k·H'·W'``, ``k`` those
        channels (the others are never sent). With ``blocks`` > 1, ``B = blocks · m`` rows are
        the ``m`` maps of ``features`` repeated ``blocks`` times (``snr_db`` and ``uses`` hold
        ``B`` entries): their SNR-independent first stage is computed once."""
        b, c, h, w = features.shape
        hp, wp = self.latent_hw(h, w)
        ratio = uses.to(torch.float32) / float(c * h * w)
        first = self._encoder_first(features)
        if blocks > 1:  # (torch.cat keeps the channels-last layout of its inputs)
            first, b = torch.cat([first] * blocks), b * blocks
        k = self.latent_channels if sent is None else self._sent_channels(sent, hp, wp)
        context = self._context(snr_db, ratio)
        latent = self.encoder.from_first(first, context, 2 * k)  # [B, 2k, H', W']
        flat = latent.reshape(b, k, 2, hp, wp).permute(0, 1, 3, 4, 2).reshape(b, 2 * k * hp * wp)
        z = real_to_complex(flat)  # [B, k·H'·W'] channel-major
        mask = prefix_mask(uses, z.shape[1])
        return normalize_power(z, mask), mask, ratio

    def _encoder_first(self, features: torch.Tensor) -> torch.Tensor:
        """The encoder's SNR-independent start (``JSCCEncoder.context_free``) of the standardised,
        padded maps. Without autograd it is kept for the next call with the same maps, weights
        and statistics (``v2x.common.TensorMemo``): a sweep encodes each frame batch's maps at ``K`` SNRs,
        one call per condition on views of one tensor, and the first convolution over the
        ``C``-channel maps is most of the encoder's work. The same values either way."""

        def compute() -> torch.Tensor:
            h, w = features.shape[-2:]
            hp, wp = self.latent_hw(h, w)
            # in inference channels-last (NHWC): cuDNN and oneDNN run their convolutions in it,
            # so the encoder's layers then take and give NHWC maps, where from NCHW maps cuDNN
            # transposed every layer's input and output (H200: 4 transposes of
            # [B, 128, H/2, W/2] per call)
            layout = None if torch.is_grad_enabled() else torch.channels_last
            x = self._standardize(features, layout)
            pad = (0, wp * self.factor - w, 0, hp * self.factor - h)
            x = F.pad(x, pad) if any(pad) else x  # (a zero pad would still copy the map)
            return self.encoder.context_free(x)

        first = self.encoder.stages[0]
        reads = [features, self.feat_mean, self.feat_std, *first.conv.parameters(),
                 *first.act.parameters()]  # fmt: skip
        return self._first_memo.get(reads, compute)

    def _decode_symbols(
        self,
        z: torch.Tensor,
        snr_db: torch.Tensor,
        ratio: torch.Tensor,
        shape: tuple[int, int, int],
        into: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``z [B, k·H'·W']`` (zeros where masked/erased; ``k ≤ K`` leading latent channels,
        the others zero) → features ``[B, C, H, W]`` (``into`` when the last pass could write
        there: ``_output_maps``)."""
        hidden = self._decoder_hidden(z, snr_db, ratio, shape)
        return self._clamped(self._output_maps(hidden, shape[1], shape[2], into), into)

    def _decoder_hidden(
        self, z: torch.Tensor, snr_db: torch.Tensor, ratio: torch.Tensor, shape: tuple[int, ...]
    ) -> torch.Tensor:
        """The decoder's body (all but its output layer) over ``z [B, k·H'·W']``: ``[B, hidden,
        h', w']``, channels-last."""
        _, h, w = shape
        b = z.shape[0]
        hp, wp = self.latent_hw(h, w)
        k = z.shape[1] // (hp * wp)
        latent = complex_to_real(z).reshape(b, k, hp, wp, 2).permute(0, 1, 4, 2, 3)
        latent = latent.reshape(b, 2 * k, hp, wp)
        # Channels-last (NHWC): cuDNN runs its convolutions so (an NHWC input saves the layout
        # transposes around each layer) and so does oneDNN on the CPU (the output layer 1.7×
        # faster, the same bits); the maps come out NHWC, the layout in which the warp reads a
        # cell's channels at once (the fusion kernel on CUDA, grid_sample 1.8× on the CPU)
        latent = latent.contiguous(memory_format=torch.channels_last)
        return self.decoder.body(latent, self._context(snr_db, ratio))

    def _clamped(self, out: torch.Tensor, into: torch.Tensor | None) -> torch.Tensor:
        """The output activation. The clamp is applied at inference only: in training it would
        stop the gradient of every cell predicted below 0 (it can only lower the error of a
        non-negative target)."""
        if self.output_activation == "relu" and not self.training:
            return out.relu_() if out is into else F.relu(out)
        return out

    # ----------------------------------------------------------------- SNR gate
    def gate_threshold_db(self, ratio: torch.Tensor) -> torch.Tensor:
        """``[B]`` gate SNR (dB) at ``ratio [B]``: the larger threshold of the two table ratios
        around it (the table's end value outside its range)."""
        grid = self.gate_ratios.to(ratio.device)
        table = self.gate_snr_db.to(ratio.device)
        r = ratio.to(torch.float64).clamp(grid[0], grid[-1])  # (tensor bounds: no host read)
        hi = torch.searchsorted(grid, r * (1 - 1e-9)).clamp(max=grid.numel() - 1)
        lo = torch.where(grid[hi] > r * (1 + 1e-9), (hi - 1).clamp_min(0), hi)
        return torch.maximum(table[lo], table[hi]).to(torch.float32)

    def set_gate(self, snr_db_per_ratio: dict[float, float]) -> None:
        """Set the gate table: ``{ratio: threshold_db}`` for every ratio of ``gate_ratios``
        (``-inf``: always deliver, ``+inf``: never)."""
        grid = [float(r) for r in self.gate_ratios]
        values = []
        for r in grid:
            match = [v for k, v in snr_db_per_ratio.items() if abs(float(k) - r) <= 1e-9 * r]
            if not match:
                raise ValueError(
                    f"deepjscc.set_gate: no threshold for ratio {r:g}; need one per gate ratio "
                    f"{[f'{g:g}' for g in grid]}"
                )
            values.append(float(match[0]))
        self.gate_snr_db.copy_(torch.tensor(values, dtype=torch.float32))

    def gate_open(self, snr_db: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
        """``[B]`` bool: the receiver keeps the transmission (``snr_db ≥`` threshold)."""
        if not self.snr_gate:
            return torch.ones_like(snr_db, dtype=torch.bool)
        return snr_db.to(torch.float32) >= self.gate_threshold_db(ratio.to(snr_db.device))

    def _cost(self, features: torch.Tensor, uses: torch.Tensor) -> Cost:
        uses64 = uses.to(torch.float64)
        zeros = torch.zeros_like(uses64)
        return Cost(
            source_bits=zeros,
            coded_bits=zeros.clone(),
            channel_uses=uses64,
            packets=packets_for_bits(
                uses64 * self.onair_bits_per_symbol, self.mtu_bytes, self.header_bytes
            ),
            raw_bits=raw_feature_bits(features),
        )

    def _decoder_snr_db(
        self,
        link_snr_db: torch.Tensor,
        y: torch.Tensor,
        state: ChannelState,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B]`` SNR in dB fed to the decoder (see ``decoder_snr``).

        ``"effective"``: mean over the arrived (non-erased, sent) symbols of the unbiased
        post-equalisation SNR ``|ĥ|² / (no + σe²)`` (the ZF ``1/no_eff`` of ``equalize``).
        """
        if self.decoder_snr == "link":
            return link_snr_db
        _, no_eff = equalize(y, state, "zf")
        arrived = torch.isfinite(no_eff)
        if mask is not None:
            arrived = arrived & mask
        snr = torch.where(arrived, 1.0 / no_eff.clamp_min(1e-12), torch.zeros_like(no_eff))
        mean = snr.sum(dim=1) / arrived.sum(dim=1).clamp_min(1)
        return 10.0 * torch.log10(mean.clamp_min(1e-3)).to(torch.float32)

    def gate_snr_db_of(self, state: ChannelState, uses: torch.Tensor) -> torch.Tensor | None:
        """``[B]`` SNR (dB) the gate compares over a frequency-selective channel, else ``None``.

        When the channel reports a per-symbol SINR (``state.sinr``: OFDM, estimation error
        included), the gate uses the AWGN-equivalent SNR of the equalised symbols the decoder
        sees, ``1 / mean(1 / SINR)`` over the sent, non-erased symbols
        (``v2x.channels.effective_sinr.analog_effective_snr_db``); the gate table was calibrated
        on channels where that equals the SNR. ``None`` (flat channels): the gate keeps using the
        decoder's SNR, exactly as before.

        Args:
            state: the channel state of the received ``[B, n]`` symbols.
            uses: ``[B]`` symbols each transmission sent (a prefix of its row).
        """
        sinr = receiver_sinr(state)
        if sinr is None:
            return None
        return analog_effective_snr_db(sinr, prefix_mask(uses, sinr.shape[1]))

    # ----------------------------------------------------------------- codec interface
    def encode(
        self, features: torch.Tensor, link: LinkState, bandwidth_ratio: float | None = None
    ) -> Transmission:
        """``features [B, C, H, W]`` → ``Transmission`` with ``symbols [B, uses]`` complex64.

        Args:
            features: float feature maps.
            link: ``link.snr_db`` (``[B]`` or ``[1]``) conditions the encoder.
            bandwidth_ratio: overrides the configured ratio for this call.
        """
        self._check_input(features)
        b, c, h, w = features.shape
        ratio = self.bandwidth_ratio if bandwidth_ratio is None else bandwidth_ratio
        uses = self._uses_per_item((c, h, w), ratio, b, features.device)
        snr_db = _per_batch(link.snr_db, b, "link.snr_db", features.device)
        if b and isinstance(ratio, torch.Tensor):
            n_sent = int(uses.max())
        else:  # one ratio: every item's uses, known on the host
            n_sent = int(self.channel_uses_for((c, h, w), float(ratio)))
        z, _, realised = self._encode_symbols(features.to(torch.float32), snr_db, uses, n_sent)
        return self._transmission(features, z[:, :n_sent], uses, realised)

    def encode_blocks(self, rows: torch.Tensor, links: Sequence[LinkState]) -> list[Transmission]:
        """``[encode(rows[k], links[k]) for k]`` (``Codec.codes_blocks_jointly``) with the
        encoder run once over the ``K·m`` rows, its SNR-independent first stage once over the
        ``m`` maps: ``rows [K, m, C, H, W]`` holds the same maps in every block. Each row's
        symbols are those of its own block's call (its layers see that row and its SNR only;
        on the CPU bit for bit, tested)."""
        k, m = rows.shape[:2]
        features = rows[0]
        self._check_input(features)
        _, c, h, w = features.shape
        ratio = float(self.bandwidth_ratio)
        uses = self._uses_per_item((c, h, w), ratio, m, features.device)
        snr_db = torch.cat([_per_batch(link.snr_db, m, "link.snr_db", features.device)
                            for link in links])  # fmt: skip
        n_sent = int(self.channel_uses_for((c, h, w), ratio))
        z, _, realised = self._encode_symbols(
            features.to(torch.float32), snr_db, uses.repeat(k), n_sent, blocks=k
        )
        return [
            self._transmission(
                features,
                z[i * m : (i + 1) * m, :n_sent],
                uses.clone(),
                realised[i * m : (i + 1) * m],
            )  # fmt: skip
            for i in range(k)
        ]

    def _transmission(
        self, features: torch.Tensor, symbols: torch.Tensor, uses: torch.Tensor,
        realised: torch.Tensor,
    ) -> Transmission:  # fmt: skip
        """``encode``'s ``Transmission`` of ``symbols [B, n]`` (``uses [B]`` sent each)."""
        b, c, h, w = features.shape
        return Transmission(
            symbols=symbols,
            cost=self._cost(features, uses),
            mask=None,
            meta={"shape": (c, h, w), "ratio": realised, "uses": uses},
            symbols_per_packet=symbols_per_packet(
                self.onair_bits_per_symbol, b, features.device, self.mtu_bytes, self.header_bytes
            ),
        )

    def decode(self, received: Transmission, link: LinkState) -> torch.Tensor:
        """Equalise (MMSE by default) with the channel state, zero erasures, run the decoder.

        Returns ``[B, C, H, W]`` float32 features.
        """
        z, snr_db, gate_snr_db, ratio = self._received_latent(received, link)
        shape = received.meta["shape"]
        b = z.shape[0]
        into = decode_target(received, (b, *shape), z.device, torch.channels_last)
        out = self._decode_symbols(z, snr_db, ratio, shape, into)
        keep = self._delivered(snr_db, gate_snr_db, ratio)
        received.meta["delivered"] = self._delivered_cells(keep, shape)
        return self._gated(out, keep, into)

    def decode_blocks(
        self, received: Sequence[Transmission], links: Sequence[LinkState]
    ) -> torch.Tensor:
        """The ``decode`` of each of ``K`` condition blocks (``Codec.codes_blocks_jointly``),
        joined: ``[K·m, C, H, W]`` float32, channels-last. The decoder's body runs once over
        the ``K·m`` rows; its output layer (the full-size maps) and the de-standardisation one
        block at a time, into the joined maps (a block's worth of temporaries, not ``K``). Each
        block's ``meta["delivered"]`` is set as ``decode`` sets it, unless the gate kept every
        map of every block: then none is set (every cell arrived)."""
        parts = [self._received_latent(rx, link) for rx, link in zip(received, links)]
        z, snr_db, ratio = (torch.cat([p[i] for p in parts]) for i in (0, 1, 3))
        shape = received[0].meta["shape"]
        keeps = [self._delivered(*p[1:]) for p in parts]
        keep = torch.cat(keeps)
        every = bool(keep.all())  # (read before the decoder is queued: see the module doc)
        if not every:
            for rx, kept in zip(received, keeps):
                rx.meta["delivered"] = self._delivered_cells(kept, shape)
        hidden = self._decoder_hidden(z, snr_db, ratio, shape)
        out = torch.empty((z.shape[0], *shape), dtype=torch.float32, device=z.device,
                          memory_format=torch.channels_last)  # fmt: skip
        start = 0
        for zb in (p[0] for p in parts):
            rows = slice(start, start + zb.shape[0])
            start = rows.stop
            into = out[rows]
            block = self._clamped(self._output_maps(hidden[rows], shape[1], shape[2], into), into)
            if block is not into:
                into.copy_(block)
        return self._gated(out, keep, out, every)

    def _received_latent(
        self, received: Transmission, link: LinkState
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``decode``'s receiver up to the decoder: ``(z [B, k·H'·W'] complex64 (zeros where
        masked, erased or not sent), decoder SNR [B] dB, gate SNR [B] dB or None, ratio [B])``."""
        if received.symbols is None:
            raise ValueError("deepjscc: 'received.symbols' is None; an analog codec needs symbols")
        shape = received.meta["shape"]
        y = received.symbols
        b = y.shape[0]
        snr_db = _per_batch(link.snr_db, b, "link.snr_db", y.device)
        uses = received.meta["uses"].to(y.device)
        gate_snr_db = None
        if received.state is not None:
            snr_db = self._decoder_snr_db(snr_db, y, received.state)
            gate_snr_db = self.gate_snr_db_of(received.state, uses)
            y, _ = equalize(y, received.state, self.equalizer)
        if received.mask is not None:
            y = torch.where(received.mask, y, 0.0)
        hp, wp = self.latent_hw(shape[1], shape[2])
        # only the latent channels that hold the received symbols (the rest were not sent)
        n = self._sent_channels(y.shape[1], hp, wp) * hp * wp
        z = torch.zeros(b, n, dtype=torch.complex64, device=y.device)
        z[:, : y.shape[1]] = y.to(torch.complex64)
        z = torch.where(prefix_mask(uses, n), z, 0.0)
        return z, snr_db, gate_snr_db, received.meta["ratio"].to(y.device)

    def _delivered(
        self, snr_db: torch.Tensor, gate_snr_db: torch.Tensor | None, ratio: torch.Tensor
    ) -> torch.Tensor:
        """``[B]`` bool: the gate keeps the map (known before decoding)."""
        return self.gate_open(snr_db if gate_snr_db is None else gate_snr_db, ratio)

    @staticmethod
    def _delivered_cells(keep: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """The gate's ``keep [B]`` per cell of ``shape = (C, H, W)`` maps: ``[B, 1, H, W]``
        bool (``meta["delivered"]``)."""
        b = keep.shape[0]
        return keep.view(b, 1, 1, 1).expand(b, 1, *shape[1:]).contiguous()

    @staticmethod
    def _gated(
        out: torch.Tensor, keep: torch.Tensor, into: torch.Tensor | None, every: bool | None = None
    ) -> torch.Tensor:
        """``out`` with the maps the gate closed (``keep`` False) set to 0 (``every``: whether
        it kept them all, read here when ``None``)."""
        b = out.shape[0]
        if bool(keep.all()) if every is None else every:  # (one flag read saves a pass)
            return out
        if out is into:  # (the same values as the torch.where below)
            return out.masked_fill_(~keep.view(b, 1, 1, 1), 0.0)
        return torch.where(keep.view(b, 1, 1, 1), out, 0.0)

    # ----------------------------------------------------------------- training
    @property
    def symbols_per_packet(self) -> int:
        """Complex symbols per packet: ``floor((mtu − header)·8 / onair_bits_per_symbol)``."""
        return max(1, (self.mtu_bytes - self.header_bytes) * 8 // self.onair_bits_per_symbol)

    def default_channel(self) -> Channel:
        """A differentiable AWGN channel (``v2x.channels.awgn``, torch backend)."""
        if self._default_channel is None:
            from v2x.channels.awgn import AWGNChannel

            self._default_channel = AWGNChannel(backend="torch", validate=False)
        return self._default_channel

    def forward_train(
        self,
        features: torch.Tensor,
        snr_db: torch.Tensor | float,
        ratio: torch.Tensor | float,
        channel: Channel | None = None,
        erasure_prob: float = 0.0,
        erasure_block: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable encode → channel → equalise → decode.

        In training mode the running feature statistics are updated first.

        Args:
            features: ``[B, C, H, W]`` float32.
            snr_db: scalar or ``[B]`` Es/N0 in dB (fed to the channel and to both AF stacks).
            ratio: scalar or ``[B]`` bandwidth ratios (channel uses per real value).
            channel: any ``v2x.channels`` channel (default: AWGN, torch backend).
            erasure_prob: probability that each block of sent symbols is erased (robustness
                training against lost packets).
            erasure_block: symbols per erased block: ``None`` → ``symbols_per_packet`` (whole
                packets are lost, as with ``v2x.channels`` erasure channels), 1 → i.i.d. symbols.

        Returns:
            reconstruction ``[B, C, H, W]`` float32 and channel_uses ``[B]`` float64.
        """
        self._check_input(features)
        b, c, h, w = features.shape
        if self.training:
            self.update_feature_stats(features)
        uses = self._uses_per_item((c, h, w), ratio, b, features.device)
        snr = _per_batch(snr_db, b, "snr_db", features.device)
        z, mask, realised = self._encode_symbols(features.to(torch.float32), snr, uses)
        channel = channel if channel is not None else self.default_channel()
        y, state = channel(z, snr)
        if erasure_prob > 0.0:
            block = self.symbols_per_packet if erasure_block is None else int(erasure_block)
            blocks = -(-z.shape[1] // max(block, 1))
            lost = torch.rand(b, blocks, device=z.device) < erasure_prob
            erased = lost.repeat_interleave(max(block, 1), dim=1)[:, : z.shape[1]]
            state = state.with_erasures(erased)
        x_hat, _ = equalize(y, state, self.equalizer)
        x_hat = torch.where(mask, x_hat, torch.zeros_like(x_hat))
        dec_snr = self._decoder_snr_db(snr, y, state, mask)
        out = self._decode_symbols(x_hat, dec_snr, realised, (c, h, w))
        return out, uses.to(torch.float64)

    def standardized_mse(
        self, reconstruction: torch.Tensor, features: torch.Tensor
    ) -> torch.Tensor:
        """Scalar MSE in standardised units (each channel weighted by 1/std²)."""
        return (self._standardize(reconstruction) - self._standardize(features)).square().mean()

    def ratio_grid(self) -> list[float]:
        """Powers of two from ``min_ratio`` to ``max_ratio`` (both ends included)."""
        lo, hi = math.log2(self.min_ratio), math.log2(self.max_ratio)
        grid = [2.0**e for e in range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1)]
        return sorted({self.min_ratio, *grid, self.max_ratio})

    # ----------------------------------------------------------------- persistence
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


def train_reconstruction(
    codec: DeepJSCCCodec,
    feature_iter: Iterable[torch.Tensor],
    channel: Channel | None = None,
    snr_range_db: tuple[float, float] = (-10.0, 30.0),
    ratio_choices: list[float] | None = None,
    steps: int = 1000,
    lr: float = 1e-3,
    device: str | torch.device = "cpu",
    erasure_prob_max: float = 0.1,
    erasure_block: int | None = None,
) -> list[float]:
    """Train ``codec`` end to end through ``channel`` with feature-reconstruction MSE.

    Each step draws a batch from ``feature_iter`` (restarted when exhausted), an SNR per map
    uniformly in ``snr_range_db``, a ratio per map from ``ratio_choices`` (default:
    ``codec.ratio_grid()``) and a packet-erasure probability uniform in ``[0, erasure_prob_max]``
    (blocks of ``erasure_block`` symbols, default one packet; see ``forward_train``), so that the
    decoder learns to live with lost packets.
    The loss is ``codec.standardized_mse``. Seed torch's global RNG beforehand for repeatable
    runs. The codec is left in eval mode on ``device``.

    Returns:
        the loss of every step.
    """
    if steps < 0 or lr <= 0:
        raise ValueError(f"train_reconstruction: need steps ≥ 0 and lr > 0, got {steps}, {lr}")
    choices = torch.tensor(ratio_choices or codec.ratio_grid(), dtype=torch.float64)
    for r in choices.tolist():
        codec.check_ratio(r)
    lo, hi = (float(v) for v in snr_range_db)
    codec.to(device).train()
    if channel is not None:
        channel.to(device)
    optimizer = torch.optim.Adam(codec.parameters(), lr=lr)
    iterator = iter(feature_iter)
    losses: list[float] = []
    for _ in range(steps):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(feature_iter)
            try:
                batch = next(iterator)
            except StopIteration:
                raise ValueError("train_reconstruction: 'feature_iter' yields no batches") from None
        x = batch.to(device=device, dtype=torch.float32)
        b = x.shape[0]
        snr = lo + (hi - lo) * torch.rand(b, device=x.device)
        ratio = choices[torch.randint(len(choices), (b,))]
        p_erase = erasure_prob_max * float(torch.rand(()))
        recon, _ = codec.forward_train(
            x, snr, ratio, channel=channel, erasure_prob=p_erase, erasure_block=erasure_block
        )
        loss = codec.standardized_mse(recon, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    codec.eval()
    return losses


__all__ = ["AFModule", "DeepJSCCCodec", "train_reconstruction"]
