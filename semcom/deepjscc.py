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

The codec is built from one part per job; this module holds its construction and transmitter
and re-exports the parts' names:

* ``deepjscc_layers``: the encoder and decoder networks (``JSCCEncoder``, ``JSCCDecoder``,
  ``AFModule``);
* ``deepjscc_ratio``: the bandwidth-ratio rule, channel uses and the conditioning input;
* ``deepjscc_receiver``: equalisation, decoding, de-standardisation and the SNR gate;
* ``deepjscc_training``: ``forward_train`` and ``train_reconstruction``;
* ``deepjscc_checkpoint``: the packaged codecs, checkpoint files, save and load.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from v2x.channels.base import Channel
from v2x.channels.link import LinkState
from v2x.channels.packets import HEADER_BYTES, MTU_BYTES
from v2x.common import TensorMemo, check_precision, precision_dtype, triton_available
from v2x.semcom.base import (
    CODECS,
    Codec,
    Cost,
    Transmission,
    packets_for_bits,
    raw_feature_bits,
    symbols_per_packet,
)
from v2x.semcom.deepjscc_checkpoint import (  # noqa: F401 (the old import paths)
    ARCHITECTURE_DEFAULTS,
    SHIPPED_BY_CHANNELS,
    SHIPPED_CHECKPOINT,
    SHIPPED_CHECKPOINTS,
    DeepJSCCCheckpoint,
    read_codec_checkpoint,
    resolve_checkpoint,
)
from v2x.semcom.deepjscc_layers import (  # noqa: F401 (the old import paths)
    AFModule,
    JSCCDecoder,
    JSCCEncoder,
    _fused_layers,
)
from v2x.semcom.deepjscc_ratio import (  # noqa: F401 (the old import paths)
    MAX_RATIO,
    MIN_RATIO,
    DeepJSCCRatio,
    _per_batch,
)
from v2x.semcom.deepjscc_receiver import DeepJSCCReceiver
from v2x.semcom.deepjscc_training import DeepJSCCTraining, train_reconstruction
from v2x.semcom.power import normalize_power, prefix_mask, real_to_complex


@CODECS.register("deepjscc")
class DeepJSCCCodec(DeepJSCCRatio, DeepJSCCReceiver, DeepJSCCTraining, DeepJSCCCheckpoint, Codec):
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
        precision: the dtype of the encoder's and decoder's maps in inference (no autograd):
            ``"fp32"`` (default), ``"fp16"`` or ``"bf16"`` (weights cast per call, float32
            accumulation, bias / PReLU / AF gains / de-standardisation in float32, each layer's
            output rounded to that dtype; ``deepjscc_layers``). The symbols sent stay
            complex64; the decoded maps are float32, except in CUDA inference (the one-pass
            de-standardisation: ``decoded_dtype``), where that pass rounds them once to the
            dtype. Training always runs in float32. A new codec: its reconstructions move by
            the dtype's rounding (measured in ``docs/deepjscc.md``).
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
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        self._precision = check_precision(precision, "deepjscc: 'precision'")
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

    @property
    def precision(self) -> str:
        """The ``precision`` the codec was built with (read-only: the encoder's memo of its
        first stage holds maps of that dtype; build another codec for another precision)."""
        return self._precision

    def map_dtype(self) -> torch.dtype:
        """The dtype of the encoder's and decoder's maps now: ``precision``'s without autograd,
        float32 with it (training)."""
        return torch.float32 if torch.is_grad_enabled() else precision_dtype(self.precision)

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
            if layout is not None and features.is_cuda and triton_available():
                from v2x.semcom.deepjscc_triton import standardize

                # one pass, the torch path's bits (deepjscc_triton.standardize)
                x = standardize(features, self.feat_mean, self.feat_std, self.map_dtype())
            else:
                x = self._standardize(features, layout).to(self.map_dtype())
            pad = (0, wp * self.factor - w, 0, hp * self.factor - h)
            x = F.pad(x, pad) if any(pad) else x  # (a zero pad would still copy the map)
            return self.encoder.context_free(x)

        first = self.encoder.stages[0]
        reads = [features, self.feat_mean, self.feat_std, *first.conv.parameters(),
                 *first.act.parameters()]  # fmt: skip
        return self._first_memo.get(reads, compute)

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


__all__ = ["AFModule", "DeepJSCCCodec", "train_reconstruction"]
