"""OFDM through Sionna 2.x: resource grid, 3GPP TDL / CDL, LS estimation, LMMSE equalisation.

The channel hides Sionna's shapes: ``[B, n]`` complex symbols are cut into ``G = ⌈n / N_d⌉``
resource grids of ``N_d`` data resource elements each (pilots fill the rest), sent through
``sionna.phy.channel.OFDMChannel`` with a TR 38.901 §7.7.2 TDL (A–E) or §7.7.1 CDL (A–E, single
omni antennas) model with the configured delay spread and Doppler (UT speed), estimated with
``LSChannelEstimator`` (LS on pilots + interpolation) or perfectly, and either equalised with
Sionna's ``LMMSEEqualizer`` (``equalizer="lmmse"``: ``y`` is the unbiased estimate of ``x`` and
``state.no_eff`` its per-symbol effective noise ``(no + σe²)/|ĥ|²``) or returned raw
(``equalizer="none"``: ``y`` are the received data REs and ``state.h``/``h_hat``/``err_var`` are
per-RE, for ``equalize``).

Each grid gets an independent channel realisation. The SNR is Es/N0 per resource element; the
TDL/CDL power-delay profiles have unit total power, so ``E|h|² = 1`` per RE as for the flat
channels (``normalize_channel=True`` instead forces unit energy per grid). Sionna is imported
lazily on the first call; the blocks are rebuilt if the input moves to another device.

Randomness: every call draws one seed from torch's default CPU generator and runs Sionna's
channel (taps, Doppler, noise) with Sionna's generator seeded from it (``sionna_rng``), so the
output is a function of the input and torch's generator state only, like the other channels.
"""

from __future__ import annotations

import math

import torch

from v2x.channels.base import (
    CHANNELS,
    Channel,
    ChannelState,
    check_symbols,
    snr_db_to_noise_variance,
)
from v2x.channels.effective_sinr import post_equalization_sinr
from v2x.channels.radio import DEFAULT_RADIO, check_radio_value
from v2x.channels.sionna_rng import import_sionna, sionna_generator
from v2x.common import check_whole

INTERPOLATIONS = ("lin", "nn", "lin_time_avg")
"""``LSChannelEstimator``'s interpolation types."""


def check_delay_spread(delay_spread_s: float, subcarrier_spacing_hz: float) -> None:
    """``ValueError`` unless the RMS delay spread (s) is shorter than one OFDM symbol,
    ``1 / subcarrier_spacing_hz``. Sionna's frequency-domain ``OFDMChannel`` models no
    inter-symbol interference (the taps are assumed to fit in the cyclic prefix), so a longer
    spread gives no meaningful channel; it is most often a value in ns or µs given as seconds
    (``delay_spread_s: 100`` for 100 ns). TR 38.901 Table 7.7.3-1 spans 10 ns to 1 µs."""
    symbol_s = 1.0 / subcarrier_spacing_hz
    if delay_spread_s >= symbol_s:
        raise ValueError(
            f"ofdm: 'delay_spread_s' is {delay_spread_s!r} s, not shorter than one OFDM symbol "
            f"(1 / subcarrier_spacing_hz = {symbol_s:.3g} s); it is in seconds (100 ns is "
            "100e-9; TR 38.901 Table 7.7.3-1 spans 10e-9 to 1000e-9)"
        )


def _device_str(device: torch.device) -> str:
    return f"cuda:{device.index or 0}" if device.type == "cuda" else str(device)


class OFDMChannel(Channel):
    """SISO OFDM link over a 3GPP TDL or CDL model (via Sionna).

    Args:
        family: ``"tdl"`` or ``"cdl"``.
        model: ``"A"``–``"E"`` (TDL-D/E and CDL-D/E are LOS profiles).
        delay_spread_s: RMS delay spread (s), e.g. 30e-9 short, 100e-9 nominal, 300e-9 long.
        carrier_hz: carrier frequency (Hz).
        speed_mps: UT speed for the Doppler (m/s; relative speed of the two agents).
        subcarrier_spacing_hz, fft_size, num_ofdm_symbols, cyclic_prefix_length: the grid.
        pilot_ofdm_symbol_indices: OFDM symbols carrying (Kronecker) pilots.
        estimator: ``"ls"`` (LS + interpolation) or ``"perfect"``.
        interpolation: ``"lin"``, ``"nn"`` or ``"lin_time_avg"`` (LS interpolation).
        equalizer: ``"lmmse"`` (Sionna) or ``"none"`` (raw REs and per-RE CSI).
        normalize_channel: unit average energy per grid (Sionna's option).
        direction: ``"uplink"``/``"downlink"`` (CDL only).
        return_csi: with ``equalizer="lmmse"``, also return the per-RE ``h``/``h_hat``/``err_var``
            (three extra gathers; off in hot loops that only need ``y`` and ``no_eff``).
        validate: NaN/Inf check on the input.
        pilot_seed: seed of the random QPSK pilot sequence, which Sionna's Kronecker pattern draws
            once when the blocks are built: a fixed property of the channel, not of the call.

    ``state.extra``: ``num_grids``, ``data_per_grid``, ``resource_elements`` (pilots included),
    ``time_samples`` (cyclic prefixes included) and ``duration_s`` of the transmission, and
    ``sionna_seed``, the seed Sionna's generator ran with (drawn from torch's default CPU
    generator, so ``torch.manual_seed`` makes the channel repeat; see ``sionna_rng``).

    ``state.sinr`` (``[B, n]``): the per-RE post-equalisation SINR with the estimation error,
    ``|a|²|ĥ|² / (no + σε²)`` from the regression ``h = a ĥ + ε`` over each grid's data REs
    (``effective_sinr.post_equalization_sinr``). Sionna's ``err_var`` (and hence ``no_eff``)
    counts only the noise on the pilots, not the interpolation error between them (Doppler,
    delay spread), and overstates the SINR at high SNR (TDL-A, LS, 30 m/s, nominal 30 dB: the
    equalised symbols' error is 4.3× the ``no_eff`` reported, 1.06× ``1 / sinr``).
    ``sinr_feedback`` sounds ``FEEDBACK_GRIDS`` grids per nominal SNR (rounded to 0.1 dB, cached
    up to ``FEEDBACK_CACHE`` SNRs, 55 kB each, drawn from their own seed so the transmissions'
    random stream is untouched) for link adaptation.
    """

    erases = False  # fading and noise only: every channel use arrives

    #: Grids sounded per nominal SNR by ``sinr_feedback`` and the seed of their draws.
    FEEDBACK_GRIDS = 16
    FEEDBACK_SEED = 20261130
    FEEDBACK_CACHE = 1024

    def __init__(
        self,
        family: str = "tdl",
        model: str = "A",
        delay_spread_s: float = 100e-9,
        carrier_hz: float = DEFAULT_RADIO.carrier_hz,
        speed_mps: float = 30.0,
        subcarrier_spacing_hz: float = 30e3,
        fft_size: int = 72,
        num_ofdm_symbols: int = 14,
        cyclic_prefix_length: int = 6,
        pilot_ofdm_symbol_indices: tuple[int, ...] | list[int] = (2, 11),
        estimator: str = "ls",
        interpolation: str = "lin",
        equalizer: str = "lmmse",
        normalize_channel: bool = False,
        direction: str = "uplink",
        return_csi: bool = True,
        validate: bool = True,
        pilot_seed: int = 0,
    ) -> None:
        super().__init__()
        if family not in ("tdl", "cdl"):
            raise ValueError(f"ofdm: 'family' must be 'tdl' or 'cdl', got {family!r}")
        if model not in ("A", "B", "C", "D", "E"):
            raise ValueError(f"ofdm: 'model' must be one of A–E, got {model!r}")
        if estimator not in ("ls", "perfect"):
            raise ValueError(f"ofdm: 'estimator' must be 'ls' or 'perfect', got {estimator!r}")
        if equalizer not in ("lmmse", "none"):
            raise ValueError(f"ofdm: 'equalizer' must be 'lmmse' or 'none', got {equalizer!r}")
        if interpolation not in INTERPOLATIONS:  # Sionna checks it only at the first call
            raise ValueError(
                f"ofdm: 'interpolation' must be one of {INTERPOLATIONS}, got {interpolation!r}"
            )
        if direction not in ("uplink", "downlink"):
            raise ValueError(f"ofdm: 'direction' must be 'uplink' or 'downlink', got {direction!r}")
        for name, value in (("delay_spread_s", delay_spread_s), ("carrier_hz", carrier_hz),
                            ("subcarrier_spacing_hz", subcarrier_spacing_hz)):  # fmt: skip
            check_radio_value("ofdm", name, value, positive=True)
        check_radio_value("ofdm", "speed_mps", speed_mps, least=0.0)
        check_delay_spread(delay_spread_s, subcarrier_spacing_hz)
        for name, value, least in (("fft_size", fft_size, 1), ("pilot_seed", pilot_seed, 0),
                                   ("num_ofdm_symbols", num_ofdm_symbols, 1),
                                   ("cyclic_prefix_length", cyclic_prefix_length, 0)):  # fmt: skip
            check_whole(f"ofdm: field '{name}'", value, least)
        pilots = list(pilot_ofdm_symbol_indices)
        if any(not 0 <= i < num_ofdm_symbols for i in pilots):
            raise ValueError(
                f"ofdm: 'pilot_ofdm_symbol_indices' {pilots} must lie in [0, {num_ofdm_symbols})"
            )
        self.family, self.model = family, model
        self.delay_spread_s = float(delay_spread_s)
        self.carrier_hz = self.doppler_carrier_hz = float(carrier_hz)
        self.speed_mps = float(speed_mps)
        self.subcarrier_spacing_hz = float(subcarrier_spacing_hz)
        self.fft_size = int(fft_size)
        self.num_ofdm_symbols = int(num_ofdm_symbols)
        self.cyclic_prefix_length = int(cyclic_prefix_length)
        self.pilots = pilots
        self.estimator = estimator
        self.interpolation = interpolation
        self.equalizer = equalizer
        self.normalize_channel = bool(normalize_channel)
        self.direction = direction
        self.return_csi = bool(return_csi)
        self.validate = validate
        self.pilot_seed = int(pilot_seed)
        self._blocks: dict | None = None
        self._blocks_device: str | None = None
        self._feedback: dict[tuple[str, int], torch.Tensor] = {}

    def _build(self, device: str) -> dict:
        import numpy as np

        import_sionna()  # keeps torch's generators as they were (Sionna reseeds them on import)
        from sionna.phy.channel import OFDMChannel as SionnaOFDMChannel
        from sionna.phy.mimo import StreamManagement
        from sionna.phy.ofdm import (
            LMMSEEqualizer,
            LSChannelEstimator,
            ResourceGrid,
            ResourceGridDemapper,
            ResourceGridMapper,
        )

        rg = ResourceGrid(
            num_ofdm_symbols=self.num_ofdm_symbols,
            fft_size=self.fft_size,
            subcarrier_spacing=self.subcarrier_spacing_hz,
            num_tx=1,
            num_streams_per_tx=1,
            cyclic_prefix_length=self.cyclic_prefix_length,
            pilot_pattern="kronecker",
            pilot_ofdm_symbol_indices=self.pilots,
            device=device,
        )
        sm = StreamManagement(np.ones([1, 1]), 1)
        if self.family == "tdl":
            from sionna.phy.channel.tr38901 import TDL

            cm = TDL(
                self.model,
                delay_spread=self.delay_spread_s,
                carrier_frequency=self.carrier_hz,
                min_speed=self.speed_mps,
                max_speed=self.speed_mps,
                device=device,
            )
        else:
            from sionna.phy.channel.tr38901 import CDL, Antenna

            ant = Antenna("single", "V", "omni", self.carrier_hz, device=device)
            cm = CDL(
                self.model,
                self.delay_spread_s,
                self.carrier_hz,
                ut_array=ant,
                bs_array=ant,
                direction=self.direction,
                min_speed=self.speed_mps,
                max_speed=self.speed_mps,
                device=device,
            )
        return {
            "rg": rg,
            "mapper": ResourceGridMapper(rg, device=device),
            "demapper": ResourceGridDemapper(rg, sm, device=device),
            "channel": SionnaOFDMChannel(
                cm, rg, normalize_channel=self.normalize_channel, return_channel=True, device=device
            ),
            "estimator": LSChannelEstimator(
                rg, interpolation_type=self.interpolation, device=device
            ),
            "equalizer": LMMSEEqualizer(rg, sm, device=device),
        }

    def blocks(self, device: torch.device) -> dict:
        dev = _device_str(device)
        if self._blocks is None or self._blocks_device != dev:
            # The pilot pattern draws its QPSK symbols from Sionna's generator: fix them.
            with sionna_generator(dev, seed=self.pilot_seed):
                self._blocks, self._blocks_device = self._build(dev), dev
        return self._blocks

    def data_per_grid(self) -> int:
        """Data resource elements per grid (pilot REs excluded)."""
        return int(self.blocks(torch.device("cpu"))["rg"].num_data_symbols)

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor) -> tuple[torch.Tensor, ChannelState]:
        if self.validate:
            check_symbols(x)
        b = self.blocks(x.device)
        rg = b["rg"]
        batch, n = x.shape
        nd = int(rg.num_data_symbols)
        grids = max(1, math.ceil(n / nd))
        no = snr_db_to_noise_variance(snr_db, batch, x.device)
        xs = torch.nn.functional.pad(x, (0, grids * nd - n)).reshape(batch * grids, 1, 1, nd)
        no_g = no.repeat_interleave(grids)
        # Sionna draws the TDL/CDL taps, Doppler and noise from its own generator: seed it from
        # torch's (one draw), so that torch.manual_seed alone fixes the outcome.
        with sionna_generator(x.device) as seed:
            y_grid, h = b["channel"](b["mapper"](xs), no_g)
        h = h.reshape(batch * grids, 1, 1, self.num_ofdm_symbols, -1)
        if self.estimator == "perfect":
            h_hat, err = h, torch.zeros(h.shape, device=x.device)
        else:
            h_hat, err = b["estimator"](y_grid, no_g)
            h_hat = h_hat.reshape(h.shape)
            err = err.reshape(h.shape).to(torch.float32)

        def data(t: torch.Tensor) -> torch.Tensor:
            return b["demapper"](t).reshape(batch, grids * nd)[:, :n]

        sinr = self._data_sinr(b, h, h_hat, no_g, batch, grids)[:, :n]
        csi = self.return_csi or self.equalizer == "none"
        h_d = data(h) if csi else None
        h_hat_d = data(h_hat) if csi else None
        err_d = data(err.to(torch.complex64)).real if csi else None
        extra = {
            "num_grids": grids,
            "data_per_grid": nd,
            "resource_elements": grids * self.num_ofdm_symbols * self.fft_size,
            "time_samples": grids
            * self.num_ofdm_symbols
            * (self.fft_size + self.cyclic_prefix_length),
            "duration_s": grids * self.num_ofdm_symbols * float(rg.ofdm_symbol_duration),
            "sionna_seed": seed,
        }
        if self.equalizer == "lmmse":
            h7 = h_hat.reshape(batch * grids, 1, 1, 1, 1, self.num_ofdm_symbols, -1)
            x_hat, _ = b["equalizer"](y_grid, h7, err.reshape(h7.shape), no_g)
            y = x_hat.reshape(batch, grids * nd)[:, :n]
            # Sionna's no_eff is 1/d − 1 with d = |ĥ|²/(|ĥ|² + s), s = no + σe²: at high SNR d
            # rounds to 1 and the difference is float32 noise (negative from about 80 dB, 59 %
            # off at 60 dB). For one stream on one antenna it is s/|ĥ|² exactly: take that.
            hh = h_hat_d if csi else data(h_hat)
            ev = err_d if csi else data(err.to(torch.complex64)).real
            power = hh.real.square() + hh.imag.square()
            no_eff = ((no.reshape(-1, 1) + ev) / power).to(torch.float32)
            state = ChannelState(
                no=no,
                h=h_d,
                h_hat=h_hat_d,
                err_var=err_d,
                no_eff=no_eff,
                equalized=True,
                sinr=sinr,
            )
        else:
            y = data(y_grid.reshape(batch * grids, 1, 1, self.num_ofdm_symbols, -1))
            perfect = self.estimator == "perfect"
            state = ChannelState(
                no=no,
                h=h_d,
                h_hat=None if perfect else h_hat_d,
                err_var=None if perfect else err_d,
                sinr=sinr,
            )
        state.extra = extra
        return y.to(x.dtype), state

    def _data_sinr(
        self,
        b: dict,
        h: torch.Tensor,
        h_hat: torch.Tensor,
        no_g: torch.Tensor,
        batch: int,
        grids: int,
    ) -> torch.Tensor:
        """``[batch, grids · N_d]`` float32 per-data-RE SINR from the grids' ``h``/``ĥ``
        (``[batch · grids, 1, 1, T, F]``) and noise ``no_g [batch · grids]``."""
        with torch.no_grad():  # a measurement of the receiver, not part of the signal path
            h_d = b["demapper"](h).reshape(batch * grids, -1)
            h_hat_d = b["demapper"](h_hat).reshape(batch * grids, -1)
            sinr = post_equalization_sinr(h_d, h_hat_d, no_g.reshape(-1, 1), mse_dims=(1,))
        return sinr.reshape(batch, -1)

    def _sound(self, b: dict, key: int, device: torch.device) -> torch.Tensor:
        """``[FEEDBACK_GRIDS · N_d]`` per-RE SINR of grids sounded at ``key / 10`` dB."""
        from sionna.phy import config

        g = self.FEEDBACK_GRIDS
        nd = int(b["rg"].num_data_symbols)
        gen = config.torch_rng(_device_str(device))
        saved = gen.get_state()
        cuda = [device.index or 0] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=cuda):
                no_g = torch.full((g,), 10.0 ** (-key / 100.0), device=device)
                x = b["mapper"](torch.zeros(g, 1, 1, nd, dtype=torch.complex64, device=device))
                gen.manual_seed(self.FEEDBACK_SEED + key)
                torch.manual_seed(self.FEEDBACK_SEED + key)  # Sionna also draws from it
                y_grid, h = b["channel"](x, no_g)
                h = h.reshape(g, 1, 1, self.num_ofdm_symbols, -1)
                if self.estimator == "perfect":
                    h_hat = h
                else:
                    h_hat = b["estimator"](y_grid, no_g)[0].reshape(h.shape)
                return self._data_sinr(b, h, h_hat, no_g, 1, g)[0]
        finally:
            gen.set_state(saved)

    def sinr_feedback(self, snr_db: torch.Tensor) -> torch.Tensor:
        """``[L, FEEDBACK_GRIDS · N_d]`` float32 per-RE SINR the receiver would report.

        Sounds ``FEEDBACK_GRIDS`` independent grids (the channel's own model, estimator and
        mobility) at each link's nominal SNR rounded to 0.1 dB (a quantised CQI), and returns the
        per-data-RE SINR of ``state.sinr`` in mapping order. Each rounded SNR is sounded once per
        device and cached; its draws come from ``FEEDBACK_SEED`` and the SNR, with Sionna's and
        torch's generators restored afterwards, so feedback is the same whatever the call order
        and never changes the random numbers of the transmissions.
        """
        snr = torch.as_tensor(snr_db, dtype=torch.float32).reshape(-1)
        device = snr.device
        b = self.blocks(device)
        dev = _device_str(device)
        keys = torch.round(snr.double() * 10).to(torch.int64).cpu()
        unique, inverse = torch.unique(keys, return_inverse=True)
        rows = []
        for key in unique.tolist():
            cached = self._feedback.get((dev, key))
            if cached is None:
                cached = self._sound(b, key, device)
                if len(self._feedback) >= self.FEEDBACK_CACHE:
                    self._feedback.clear()
                self._feedback[(dev, key)] = cached
            rows.append(cached)
        table = torch.stack(rows)
        return table[inverse.to(device)]


@CHANNELS.register("tdl", builds=OFDMChannel)
def tdl(model: str = "A", delay_spread_s: float = 100e-9, **kw) -> OFDMChannel:
    """OFDM over a 3GPP TR 38.901 TDL model (Sionna)."""
    return OFDMChannel(family="tdl", model=model, delay_spread_s=delay_spread_s, **kw)


@CHANNELS.register("cdl", builds=OFDMChannel)
def cdl(model: str = "A", delay_spread_s: float = 100e-9, **kw) -> OFDMChannel:
    """OFDM over a 3GPP TR 38.901 CDL model with single omni antennas (Sionna)."""
    return OFDMChannel(family="cdl", model=model, delay_spread_s=delay_spread_s, **kw)
