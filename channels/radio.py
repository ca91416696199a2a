"""``RadioParams``: the one type for a link's radio settings and their defaults.

Carrier, bandwidth, transmit power, the two antenna gains and the receiver's noise figure are
declared here once. The link models (``LinkModel.default_radio``, overridden per model for its
scenario), the THz link, the OFDM and fading channels' carrier, ``LinkState``'s bandwidth and the
network's per-agent radios (``v2x.network.RadioConfig``) take their defaults from this module;
configs (``conf/link/*.yaml``: flat fields of these names) map onto it, and a bad value raises one
``ValueError`` naming the field, the value and what is expected.

Link budget: ``snr_db = P_tx + G_tx + G_rx − PL − (−174 dBm/Hz + 10·log10 B + NF)``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch

from v2x.channels.budget import received_power_dbm, thermal_noise_dbm

#: Fields that must be > 0, and >= 0 (a receiver adds noise: F >= 1); the others must be finite.
POSITIVE_FIELDS = ("carrier_hz", "bandwidth_hz")
NONNEGATIVE_FIELDS = ("noise_figure_db",)
#: Fields in dB (dBm, dBi): each within ``±SNR_LIMIT_DB`` too.
DB_FIELDS = ("tx_power_dbm", "tx_gain_dbi", "rx_gain_dbi", "noise_figure_db")


def check_radio_value(
    where: str, name: str, value, positive: bool = False, least: float | None = None
) -> float:
    """``float(value)`` of radio (or channel) field ``name``; ``ValueError`` naming ``where``, the
    field, the value and what is expected when it is not a finite real number (``> 0`` if
    ``positive``, ``>= least`` if ``least`` is given): NaN and infinities fail every test."""
    expected = "a finite number" + (" > 0" if positive else "")
    expected += "" if least is None else f" >= {least:g}"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
        above = least is None or number >= least
        if math.isfinite(number) and (number > 0 or not positive) and above:
            return number
    raise ValueError(f"{where}: field '{name}' is {value!r}; expected {expected}")


#: The largest |SNR| in dB the simulator's numbers stay finite and right at (float32 symbols and
#: noise variances). Measured through the channels (``tests/channels/test_snr_range.py``): the
#: noise variance ``10^(−snr/10)`` overflows float32 below −385.3 dB (AWGN's symbols become
#: inf/NaN, and so do the analog and DeepJSCC codecs' maps at −386 dB) and turns subnormal above
#: +379.3 dB (0 above +453 dB); Sionna's OFDM (TDL/CDL) returns NaN symbols from +379 to +381 dB
#: up and, with perfect CSI, from −345 dB down; flat fading's per-symbol effective noise
#: ``no/|h|²`` overflows for 12 (−340 dB) and 3,896 (−360 dB) of 10⁶ Rayleigh gains, none at
#: −320 dB. ±300 dB keeps a 40 dB margin (fades 10⁴ deeper) below the first of these failures.
SNR_LIMIT_DB = 300.0


def snr_range_message(where: str, name: str, value) -> str:
    """The one message for an SNR (or a dB field) outside ``±SNR_LIMIT_DB``: ``where``, the
    field ``name``, the value and the range."""
    return (
        f"{where}: field '{name}' must be finite and within [-{SNR_LIMIT_DB:g}, "
        f"{SNR_LIMIT_DB:g}] dB, got {value!r} (beyond it the simulator's float32 noise "
        "variances overflow or vanish)"
    )


def check_snr_db(where: str, name: str, value) -> float:
    """``float(value)`` of an SNR (or dB) field ``name``; ``ValueError`` (``snr_range_message``)
    unless it is a real number within ``±SNR_LIMIT_DB`` (NaN and infinities are not)."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if real and abs(float(value)) <= SNR_LIMIT_DB:  # (False for NaN)
        return float(value)
    raise ValueError(snr_range_message(where, name, value))


def check_radio_field(where: str, name: str, value) -> float:
    """``check_radio_value`` with radio field ``name``'s own bounds (``POSITIVE_FIELDS``,
    ``NONNEGATIVE_FIELDS``)."""
    least = 0.0 if name in NONNEGATIVE_FIELDS else None
    number = check_radio_value(where, name, value, name in POSITIVE_FIELDS, least)
    # (a power, gain or noise figure beyond the SNR range puts the link's SNR beyond it)
    return check_snr_db(where, name, value) if name in DB_FIELDS else number


@dataclass(frozen=True)
class RadioParams:
    """Radio settings of one tx → rx link (the link budget's inputs), all floats.

    Attributes:
        carrier_hz: carrier frequency (Hz, > 0).
        bandwidth_hz: occupied bandwidth (Hz, > 0) = complex symbol rate (one use per s per Hz).
        tx_power_dbm: transmit power (dBm).
        tx_gain_dbi, rx_gain_dbi: antenna (and array) gain of the transmitter and receiver (dBi).
        noise_figure_db: receiver noise figure (dB).

    The defaults are a C-V2X-like sidelink at 5.9 GHz / 20 MHz.
    """

    carrier_hz: float = 5.9e9
    bandwidth_hz: float = 20e6
    tx_power_dbm: float = 23.0
    tx_gain_dbi: float = 3.0
    rx_gain_dbi: float = 3.0
    noise_figure_db: float = 9.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = check_radio_field("radio", f.name, getattr(self, f.name))
            object.__setattr__(self, f.name, value)

    @classmethod
    def from_mapping(
        cls,
        data: RadioParams | Mapping | None,
        base: RadioParams | None = None,
        where: str = "radio",
    ) -> RadioParams:
        """``base`` (default ``RadioParams()``) with the fields of ``data`` replaced; unknown keys
        raise ``ValueError`` naming ``where`` and the valid fields. An instance is returned as is."""
        if isinstance(data, RadioParams):
            return data
        data = dict(data or {})
        unknown = sorted(set(data) - set(RADIO_FIELDS))
        if unknown:
            raise ValueError(
                f"{where}: unknown radio field(s) {unknown}; valid: {list(RADIO_FIELDS)}"
            )
        try:
            return dataclasses.replace(base or cls(), **data)
        except ValueError as err:
            raise ValueError(str(err).replace("radio:", f"{where}:", 1)) from None

    @property
    def fc_ghz(self) -> float:
        """Carrier in GHz (the unit of the path-loss formulas)."""
        return self.carrier_hz / 1e9

    def noise_dbm(self) -> float:
        """Thermal noise (−174 dBm/Hz) over ``bandwidth_hz`` plus the noise figure, in dBm."""
        return thermal_noise_dbm(self.bandwidth_hz, self.noise_figure_db)

    def rx_power_dbm(self, path_loss_db) -> torch.Tensor:
        """``P_tx + G_tx + G_rx − PL`` (dBm), float64 in the shape of ``path_loss_db``."""
        return received_power_dbm(
            self.tx_power_dbm, self.tx_gain_dbi, self.rx_gain_dbi, path_loss_db
        )


RADIO_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RadioParams))
#: The defaults every module that declares a radio setting takes its default from.
DEFAULT_RADIO = RadioParams()


def carrier_note(
    channel_cfg: Mapping,
    link_carrier_hz: float,
    field: str = "channel",
    link_field: str = "link.carrier_hz",
) -> str | None:
    """A note when the channel's own ``carrier_hz`` (its Doppler: fast fading, TDL/CDL; also a
    wrapper's ``inner`` channel's) is not the link's (its path loss), else ``None``.

    ``channel_cfg`` is the channel's config (``v2x-link``'s ``channel`` group; a sweep's
    channel as built, ``base.doppler_config``); ``field`` names it and ``link_field`` the
    field(s) that set the link's carrier, in the note."""
    inner = channel_cfg.get("inner")
    fc = channel_cfg.get("carrier_hz")
    if fc is None and isinstance(inner, Mapping):
        return carrier_note(inner, link_carrier_hz, f"{field}.inner", link_field)
    if fc is None or math.isclose(float(fc), link_carrier_hz, rel_tol=1e-9):
        return None
    return (
        f"the channel's Doppler is at {field}.carrier_hz={float(fc):g} Hz, the path loss at "
        f"{link_field}={link_carrier_hz:g} Hz; set {field}.carrier_hz={link_carrier_hz:g} "
        "for one carrier"
    )
