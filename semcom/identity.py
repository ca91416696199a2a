"""Reference codecs: ``identity`` (raw float16 over an ideal digital link) and ``analog``
(uncoded linear transmission of the feature values, the classic JSCC baseline)."""

from __future__ import annotations

import math

import torch

from v2x.channels.base import equalize
from v2x.channels.budget import shannon_capacity
from v2x.channels.link import LinkState
from v2x.channels.packets import HEADER_BYTES, MTU_BYTES
from v2x.common import TensorMemo, triton_available
from v2x.semcom.analog_triton import (
    receive,
    receive_noisy,
    sum_of_squares,
    takes_noise,
    takes_squares,
)
from v2x.semcom.base import (
    CODECS,
    FLOAT16_BITS,
    Codec,
    Cost,
    Transmission,
    check_features,
    decode_target,
    packets_for_bits,
    raw_feature_bits_of,
    symbols_per_packet,
)

SCALE_SIDE_INFO_BITS = 32


@CODECS.register("identity")
class IdentityCodec(Codec):
    """Raw float16 features over an ideal, error-free digital link at the Shannon rate.

    The bandwidth ceiling: ``channel_uses = ceil(source_bits / log2(1 + snr))`` with ``snr`` the
    link's ``snr_db`` (Es/N0 per complex channel use, the SNR every other codec's symbols see).
    No symbols go through the channel (``Transmission.symbols`` is ``None``), so the channel
    model plays no part: over fading channels this is the AWGN capacity of the *average* SNR,
    error free — above the ergodic capacity ``E[log2(1 + |h|²·snr)]`` of block Rayleigh (2.91
    against 3.46 bits per use at 10 dB, 0.86 against 1.0 at 0 dB) and without outage. Decoding
    returns the float16 values as float32, in CUDA inference as the float16 payload itself,
    channels-last (``Codec.decode``'s reduced dtype: the fusion kernels and ``sample_maps``
    read it as float32, the same values, without a float32 copy of every map); the same
    tensor again for the same payload: do not write into it.

    Args:
        mtu_bytes, header_bytes: packetisation for the ``packets`` count.
    """

    uses_channel = False
    reads_reduced_maps = True  # (sends their float16 values: bfloat16 ones round as float32's)

    def __init__(self, mtu_bytes: int = MTU_BYTES, header_bytes: int = HEADER_BYTES) -> None:
        super().__init__()
        self.mtu_bytes, self.header_bytes = mtu_bytes, header_bytes
        self._payload = TensorMemo()  # the last float16 payload
        self._decoded = TensorMemo()  # the last payload's float32 maps
        self._float16 = TensorMemo()  # the last payload channels-last (CUDA inference)

    def encode(self, features: torch.Tensor, link: LinkState) -> Transmission:
        check_features(features)
        # the payload depends on the maps alone: kept for the next call on the same maps (a
        # sweep's K conditions, v2x.condition_streams); the same values either way
        payload = self._payload.get([features], lambda: features.to(torch.float16))
        cost = self.cost_before_air(tuple(features.shape), link.snr_db.to(features.device))
        return Transmission(symbols=None, cost=cost, meta={"payload": payload})

    def cost_before_air(self, shape: tuple[int, ...], snr_db: torch.Tensor) -> Cost:
        """The raw float16 payload of ``shape`` maps at the Shannon rate of ``snr_db``."""
        b, device = shape[0], snr_db.device
        values = math.prod(shape[1:]) if b else 0
        bits = torch.full((b,), float(values * FLOAT16_BITS), dtype=torch.float64, device=device)
        # log2(1 + snr) in float64: a float32 capacity moves ceil() by one use at some SNRs.
        capacity = shannon_capacity(snr_db.to(torch.float64))
        uses = torch.ceil(bits / capacity.clamp_min(1e-9))
        return Cost(
            source_bits=bits,
            coded_bits=bits.clone(),
            channel_uses=uses,
            packets=packets_for_bits(bits, self.mtu_bytes, self.header_bytes),
            raw_bits=raw_feature_bits_of(shape, device),
        )

    def decode(self, received: Transmission, link: LinkState) -> torch.Tensor:
        # the maps depend on the payload alone: a sweep's K conditions get the same tensor, which
        # ``send`` then shares among them instead of copying it K times (v2x.condition_streams)
        payload = received.meta["payload"]
        if payload.is_cuda and payload.dim() == 4 and not torch.is_grad_enabled():
            layout = torch.channels_last  # (the payload's own when the maps were channels-last)
            return self._float16.get([payload], lambda: payload.contiguous(memory_format=layout))
        return self._decoded.get([payload], lambda: _float_maps(payload))


def _float_maps(payload: torch.Tensor) -> torch.Tensor:
    """The float16 payload ``[B, C, H, W]`` as float32 maps: on CUDA (with autograd)
    channels-last (the layout the ego's warp + fusion kernel reads a bilinear corner's channels
    in one row, as it does DeepJSCC's and the analog receiver's maps; the same values),
    elsewhere in its own layout."""
    if payload.is_cuda and payload.dim() == 4:
        return payload.to(torch.float32, memory_format=torch.channels_last)
    return payload.float()


@CODECS.register("analog")
class AnalogCodec(Codec):
    """Uncoded linear transmission: pairs of feature values become one complex symbol.

    Encode: ``[B, C, H, W]`` → ``[B, C·H·W/2]`` complex64, scaled to unit average energy (the
    scale is 32 bits of error-free side information). Decode: one-tap equalisation and the
    LMMSE estimate ``x̂ = y · snr_eff / (1 + snr_eff)`` (exact for a unit-power Gaussian source),
    rescaled. Bandwidth ratio 1/2 complex use per real value.
    """

    decodes_into = True  # the one-pass receiver writes into DECODE_INTO (CUDA, AWGN)
    # the scale's squares summed in float64, the division in float32: from any float maps'
    # values as from their float32 copies
    reads_reduced_maps = True
    # every value is received with the condition's own noise: the pipeline does not read the
    # decoded maps for conditions to share (a host sync per send that held the device's queue)
    maps_differ_per_condition = True
    # the AWGN channel's noise added in the receiver's pass (analog_triton.receive_noisy): the
    # received symbols are never written (CUDA, maps of whole channel-kernel blocks; the same
    # normals, the values to float32 rounding of the channel kernel then the receiver)
    adds_pending_noise = True

    def __init__(self, mtu_bytes: int = MTU_BYTES, header_bytes: int = HEADER_BYTES) -> None:
        super().__init__()
        self.mtu_bytes, self.header_bytes = mtu_bytes, header_bytes
        self._symbols = TensorMemo()  # _scaled_pairs's last value

    def encode(self, features: torch.Tensor, link: LinkState) -> Transmission:
        check_features(features)
        b = features.shape[0]
        # the symbols depend on the maps alone: kept for the next call on the same maps (a
        # sweep's K conditions, v2x.condition_streams); the same values either way
        scale, symbols = self._symbols.get([features], lambda: self._scaled_pairs(features))
        cost = self.cost_before_air(tuple(features.shape), link.snr_db.to(features.device))
        spp = symbols_per_packet(
            2 * FLOAT16_BITS, b, features.device, self.mtu_bytes, self.header_bytes
        )
        return Transmission(
            symbols=symbols,
            cost=cost,
            meta={"scale": scale, "shape": features.shape},
            symbols_per_packet=spp,
        )

    def cost_before_air(self, shape: tuple[int, ...], snr_db: torch.Tensor) -> Cost:
        """``⌈C·H·W / 2⌉`` uses per map of ``shape`` (whatever the SNR), 32 bits of side
        information, packets of 16-bit halves of each use."""
        b, device = shape[0], snr_db.device
        n = (math.prod(shape[1:]) + 1) // 2 if b else 0
        uses = torch.full((b,), float(n), dtype=torch.float64, device=device)
        side = torch.full_like(uses, float(SCALE_SIDE_INFO_BITS))
        return Cost(
            source_bits=side,
            coded_bits=side.clone(),
            channel_uses=uses,
            packets=packets_for_bits(uses * 2 * FLOAT16_BITS, self.mtu_bytes, self.header_bytes),
            raw_bits=raw_feature_bits_of(shape, device),
        )

    @staticmethod
    def _scaled_pairs(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale [B, 1] float32, symbols [B, ⌈C·H·W/2⌉] complex64 of unit average energy)``:
        each map's values in ``[C, H, W]`` order, in pairs (a zero after an odd count), divided
        by ``scale = sqrt(2 · mean(x²))``, its sum of squares accumulated in float64. Without an
        autograd graph two passes over the maps, in whatever memory format they come: one read
        for the scale (in CUDA inference ``analog_triton.sum_of_squares``), one that divides and
        lays the values out."""
        b = features.shape[0]
        numel = features[0].numel() if b else 0
        dims = tuple(range(1, features.dim()))
        if AnalogCodec._sums_in_one_pass(features):
            squares = sum_of_squares(features)
        else:
            squares = torch.linalg.vector_norm(features, dim=dims, dtype=torch.float64).square()
        scale = (squares * (2.0 / max(numel, 1))).sqrt().float().clamp_min(1e-12).reshape(b, 1)
        padded = numel + numel % 2
        if torch.is_grad_enabled() and features.requires_grad:
            flat = features.reshape(b, numel).float()
            pairs = torch.nn.functional.pad(flat, (0, padded - numel)) / scale
        else:
            pairs = torch.empty(b, padded, dtype=torch.float32, device=features.device)
            per_map = scale.view(b, *([1] * len(dims)))
            torch.div(features, per_map, out=pairs[:, :numel].view(features.shape))
            pairs[:, numel:] = 0.0
        return scale, torch.view_as_complex(pairs.reshape(b, padded // 2, 2))

    def decode(self, received: Transmission, link: LinkState) -> torch.Tensor:
        shape = received.meta["shape"]
        y = received.symbols
        state = received.state
        if state is not None:
            noise = state.pending_noise  # the channel's noise, when it left it to us
            awgn = state.csi is None and not state.equalized and state.erased is None
            if noise is not None and not awgn:
                y, noise = noise.added_to(y), None
            # ZF followed by the scalar LMMSE shrink is the per-symbol MMSE estimate.
            if awgn:
                # AWGN: one noise level per link, so the shrink is one factor per row (the
                # same values equalize's per-symbol no_eff gives, without [B, n] passes)
                x_hat, no_eff = y, state.no.to(y.device, torch.float32).reshape(-1, 1)
            else:
                x_hat, no_eff = equalize(y, state, method="zf")
            snr_eff = 1.0 / no_eff.clamp_min(1e-12)
            shrink = snr_eff / (1.0 + snr_eff)
            one_pass = self._receives_in_one_pass(x_hat, shrink, shape)
            if noise is not None and not (one_pass and takes_noise(shape)):
                x_hat, noise = noise.added_to(x_hat), None  # (x_hat is y on AWGN)
            if one_pass:
                out = decode_target(received, tuple(shape), y.device, torch.channels_last)
                scale = received.meta["scale"]
                if noise is not None:
                    return receive_noisy(x_hat, noise, shrink, scale, shape, out=out)
                return receive(x_hat, shrink, scale, shape, out=out)
            x_hat = x_hat * shrink
        else:
            x_hat = y
        real = torch.view_as_real(x_hat).reshape(shape[0], 2 * y.shape[1])
        real = real * received.meta["scale"]
        numel = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 0
        return real[:, :numel].reshape(shape)

    def decoded_layout(self, rows: torch.Tensor) -> tuple[torch.dtype, torch.memory_format] | None:
        """float32 channels-last where the one-pass receiver may run (CUDA inference of
        ``[B, C, H, W]`` maps; a reception it does not take is decoded apart and copied in)."""
        one_pass = rows.is_cuda and rows.dim() == 4 and not torch.is_grad_enabled()
        return (torch.float32, torch.channels_last) if one_pass and triton_available() else None

    @staticmethod
    def _sums_in_one_pass(features: torch.Tensor) -> bool:
        """Each map's sum of squares in one Triton read (``analog_triton.sum_of_squares``):
        CUDA maps it reads, no autograd graph through them."""
        if not (features.is_cuda and takes_squares(features)) or features.shape[0] > 65535:
            return False  # (one launch row per map: CUDA's grid holds at most 65,535)
        if torch.is_grad_enabled() and features.requires_grad:
            return False
        return triton_available()

    @staticmethod
    def _receives_in_one_pass(y: torch.Tensor, shrink: torch.Tensor, shape: torch.Size) -> bool:
        """The shrink and the rescale as one Triton pass (``analog_triton.receive``, the same
        values, maps channels-last): CUDA inference on ``[B, C, H, W]`` maps with one shrink
        factor per map."""
        if not (y.is_cuda and y.dtype == torch.complex64 and len(shape) == 4):
            return False
        if torch.is_grad_enabled() or shrink.shape != (y.shape[0], 1) or y.shape[0] > 65535:
            return False
        return triton_available()
