"""Link state and link models: what geometry and radio settings say about tx → rx links.

``LinkState`` is the contract the network and pipeline use; ``LinkModel`` (registry ``LINKS``) is
the base of every path-loss model (free space, TR 37.885 V2V, TR 36.777 aerial, Al-Hourani,
TR 38.901 UMi, THz); ``build_link(cfg)`` builds one from a Hydra config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from v2x.channels.base import Channel
from v2x.channels.budget import shannon_capacity
from v2x.channels.fade_statistics import FadeStatistics
from v2x.channels.radio import DEFAULT_RADIO, RADIO_FIELDS, RadioParams, check_radio_value
from v2x.common import Registry, check_switch, check_whole, to_plain


@dataclass
class LinkState:
    """Per-link radio conditions for a batch of ``L`` links (one entry per transmission).

    Attributes:
        snr_db: ``[L]`` float32 average Es/N0 at the receiver in dB.
        bandwidth_hz: channel bandwidth in Hz (symbol rate = bandwidth for one complex use/s/Hz).
        distance_m: ``[L]`` float32 3D distance, or ``None`` where no geometry exists.
        path_loss_db: ``[L]`` float32 or ``None``.
        los: ``[L]`` bool line-of-sight or ``None``.
        extra: model-specific fields (shadowing, blockage loss, …).
        sinr_feedback: ``[L, N]`` float32 linear per-RE post-equalisation SINR the receiver
            reported before the transmission (``Channel.sinr_feedback``: frequency-selective
            channels with their estimation error), or ``None``: the plain ``snr_db`` is all the
            transmitter knows (flat channels). Link adaptation reads it.
        fade: the distribution of the flat fade the channel will draw on air
            (``Channel.fade_statistics``: block or fast fading), or ``None``. Link adaptation
            averages its error rates over it (``v2x.semcom.link_adaptation``).
    """

    snr_db: torch.Tensor
    bandwidth_hz: float = DEFAULT_RADIO.bandwidth_hz
    distance_m: torch.Tensor | None = None
    path_loss_db: torch.Tensor | None = None
    los: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)
    sinr_feedback: torch.Tensor | None = None
    fade: FadeStatistics | None = None

    @classmethod
    def before_sending(cls, channel: Channel, snr_db: torch.Tensor) -> LinkState:
        """What a transmitter knows of each link (``snr_db [L]`` dB) before sending over
        ``channel``: the SNR, the receiver's per-RE SINR report (``Channel.sinr_feedback``:
        frequency-selective channels; ``None`` otherwise) and the distribution of the fade it
        will draw (``Channel.fade_statistics``: block or fast fading; ``None`` otherwise)."""
        return cls(
            snr_db=snr_db,
            sinr_feedback=channel.sinr_feedback(snr_db),
            fade=channel.fade_statistics(),
        )

    @classmethod
    def from_snr(
        cls, snr_db: torch.Tensor | float, batch: int | None = None, **kwargs
    ) -> LinkState:
        snr = torch.as_tensor(snr_db, dtype=torch.float32)
        if snr.dim() == 0:
            snr = snr.expand(batch or 1).clone()
        return cls(snr_db=snr, **kwargs)

    @property
    def num_links(self) -> int:
        return int(self.snr_db.shape[0])

    def capacity_bits_per_use(self) -> torch.Tensor:
        """``[L]`` Shannon capacity log2(1 + snr) in bits per complex channel use."""
        return shannon_capacity(self.snr_db)


# ---------------------------------------------------------------------------------------------
# Link models: geometry + radio settings → LinkState.
# ---------------------------------------------------------------------------------------------

LOS, NLOS, NLOSV = 0, 1, 2
"""Link conditions (``LinkState.extra['condition']``): line of sight, blocked by a building /
terrain (NLOS), blocked by a vehicle (NLOSv, TR 37.885)."""

CONDITION_NAMES = {LOS: "LOS", NLOS: "NLOS", NLOSV: "NLOSv"}
"""Printed names of the link conditions."""

LOS_MODES = ("probabilistic", "geometric", "expected", "los", "nlos")
"""The values of a link model's ``los_mode``."""


def check_conditions(name: str, los: torch.Tensor) -> torch.Tensor:
    """``los`` (``[L]`` condition codes on the CPU, the scene's), or ``ValueError`` naming the
    codes that are none of ``CONDITION_NAMES`` (a code 3 used to be taken as LOS)."""
    valid = torch.zeros_like(los, dtype=torch.bool)
    for code in CONDITION_NAMES:
        valid |= los == code
    if not bool(valid.all()):
        bad = sorted(set(los[~valid].tolist()))
        codes = ", ".join(f"{code} ({text})" for code, text in CONDITION_NAMES.items())
        raise ValueError(
            f"{name}: field 'los' has condition code(s) {bad}; valid codes: {codes}, "
            "or bool (True: LOS)"
        )
    return los


LINKS: Registry[LinkModel] = Registry("link model")


def _f64(value, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"link: parameter '{name}' must be finite, got {value!r}")
    return t.reshape(-1)


@dataclass
class Geometry:
    """Per-link geometry, float64 ``[L]``: 3D and ground distance, tx and rx antenna heights;
    ``d2d_given``: the ground distance asked for where a model clamped ``d2d`` (else ``None``)."""

    d3d: torch.Tensor
    d2d: torch.Tensor
    h_tx: torch.Tensor
    h_rx: torch.Tensor
    d2d_given: torch.Tensor | None = None


_log = logging.getLogger(__name__)
#: Models whose out-of-range links were logged in this process (one warning per model).
_WARNED_OUTSIDE: set[str] = set()


def warn_outside_range(model: str, sentence: str) -> None:
    """Log ``sentence`` (``LinkModel.outside_range``) as a warning, once per link ``model`` in
    this process."""
    if model not in _WARNED_OUTSIDE:
        _WARNED_OUTSIDE.add(model)
        _log.warning("%s (logged once per link model)", sentence)


class LinkModel:
    """Base class: geometry + radio settings → ``LinkState`` (``[L]`` links per call).

    Subclasses implement ``path_loss_db(geo, condition)`` (median path loss, dB),
    ``los_probability(geo)`` and ``shadow_std_db(geo, condition)``; the base class does the LOS
    decision, shadowing, antenna gains and the link budget (thermal noise −174 dBm/Hz).

    Args:
        radio: ``RadioParams`` (or a mapping of its fields) of the link; ``None``: the model's
            ``default_radio`` (the scenario of its ``conf/link`` YAML).
        **radio_fields: ``RadioParams`` fields (``carrier_hz``, ``bandwidth_hz``,
            ``tx_power_dbm``, ``tx_gain_dbi``, ``rx_gain_dbi``, ``noise_figure_db``) replacing
            those of ``radio``; ``carrier_hz`` is checked against ``freq_range_hz``.
        distance_m: default ground (2D) tx–rx distance when a call gives no geometry.
        h_tx_m, h_rx_m: default antenna heights (m).
        los_mode: ``"probabilistic"`` (sample LOS from the model's P_LOS), ``"geometric"`` (the
            caller passes ``los`` from the scene, e.g. ``segments_blocked``), ``"expected"``
            (path loss averaged over P_LOS in dB, deterministic), ``"los"`` / ``"nlos"`` (forced).
            The "not LOS" of ``probabilistic``, ``expected`` and ``nlos`` is the model's
            ``nlos_condition()``: NLOSv (vehicle blockage, TR 37.885) for the V2V models, NLOS
            for the others; a V2V link is NLOS (building) only when the scene says so.
        shadowing: draw log-normal shadow fading with the model's σ (and random blockage
            losses); ``False`` gives the deterministic median values.
        seed: seed of the model's own ``torch.Generator`` (same seed, same draws).
    """

    name = "base"
    freq_range_hz: tuple[float, float] = (0.0, float("inf"))
    #: Log a warning (once per model and process) when links lie outside ``distance_range_m``;
    #: ``link_summary`` (``v2x-link``) turns it off and prints its own note.
    warn_outside_range = True
    default_radio: RadioParams = DEFAULT_RADIO
    default_h_tx_m = 1.5
    default_h_rx_m = 1.5

    def __init__(
        self,
        radio: RadioParams | dict | None = None,
        distance_m: float = 100.0,
        h_tx_m: float | None = None,
        h_rx_m: float | None = None,
        los_mode: str = "probabilistic",
        shadowing: bool = True,
        seed: int = 0,
        **radio_fields: float,
    ) -> None:
        unknown = sorted(set(radio_fields) - set(RADIO_FIELDS))
        if unknown:
            raise ValueError(
                f"{self.name}: unknown argument(s) {unknown}; valid: radio, distance_m, h_tx_m, "
                f"h_rx_m, los_mode, shadowing, seed, the model's own and {list(RADIO_FIELDS)}"
            )
        base = RadioParams.from_mapping(radio, self.default_radio, self.name)
        self.radio = RadioParams.from_mapping(radio_fields, base, self.name)
        lo, hi = self.freq_range_hz
        if not lo <= self.radio.carrier_hz <= hi:
            raise ValueError(
                f"{self.name}: 'carrier_hz'={self.radio.carrier_hz:g} is outside the model's "
                f"validity range [{lo:g}, {hi:g}] Hz"
            )
        if los_mode not in LOS_MODES:
            raise ValueError(
                f"{self.name}: 'los_mode' must be one of {LOS_MODES}, got {los_mode!r}"
            )
        # NaN, infinities and text are refused here, naming the field (not at the first call)
        self.distance_m = check_radio_value(self.name, "distance_m", distance_m, least=0)
        self.h_tx_m = check_radio_value(
            self.name, "h_tx_m", self.default_h_tx_m if h_tx_m is None else h_tx_m, least=0
        )
        self.h_rx_m = check_radio_value(
            self.name, "h_rx_m", self.default_h_rx_m if h_rx_m is None else h_rx_m, least=0
        )
        self.los_mode = los_mode
        self.shadowing = check_switch(f"{self.name}: field 'shadowing'", shadowing)
        self.generator = torch.Generator().manual_seed(
            check_whole(f"{self.name}: field 'seed'", seed, 0)
        )

    @property
    def carrier_hz(self) -> float:
        return self.radio.carrier_hz

    @property
    def fc_ghz(self) -> float:
        return self.radio.fc_ghz

    # -- geometry ------------------------------------------------------------------------------
    def geometry(
        self,
        distance_m=None,
        tx_pos=None,
        rx_pos=None,
        h_tx_m=None,
        h_rx_m=None,
    ) -> Geometry:
        """Positions ``[L, 3]`` (m, z up) or ground distance ``[L]`` + heights → ``Geometry``."""
        if (tx_pos is None) != (rx_pos is None):
            raise ValueError(f"{self.name}: give both 'tx_pos' and 'rx_pos' or neither")
        if tx_pos is not None:
            tx = torch.as_tensor(tx_pos, dtype=torch.float64).reshape(-1, 3)
            rx = torch.as_tensor(rx_pos, dtype=torch.float64).reshape(-1, 3)
            if not (bool(torch.isfinite(tx).all()) and bool(torch.isfinite(rx).all())):
                raise ValueError(f"{self.name}: 'tx_pos'/'rx_pos' must be finite")
            d2d = torch.linalg.norm(tx[:, :2] - rx[:, :2], dim=-1)
            h_tx, h_rx = tx[:, 2], rx[:, 2]
        else:
            d2d = _f64(self.distance_m if distance_m is None else distance_m, "distance_m")
            if bool((d2d < 0).any()):
                raise ValueError(f"{self.name}: 'distance_m' must be >= 0, got {d2d.tolist()}")
            h_tx = _f64(self.h_tx_m if h_tx_m is None else h_tx_m, "h_tx_m")
            h_rx = _f64(self.h_rx_m if h_rx_m is None else h_rx_m, "h_rx_m")
            d2d, h_tx, h_rx = torch.broadcast_tensors(d2d, h_tx, h_rx)
        d3d = torch.sqrt(d2d.square() + (h_tx - h_rx).square())
        if bool((d3d <= 0).any()):
            raise ValueError(f"{self.name}: tx and rx coincide (3D distance 0)")
        return Geometry(d3d=d3d, d2d=d2d, h_tx=h_tx, h_rx=h_rx)

    # -- model-specific ------------------------------------------------------------------------
    def los_probability(self, geo: Geometry) -> torch.Tensor:
        return torch.ones_like(geo.d3d)

    def path_loss_db(self, geo: Geometry, condition: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def shadow_std_db(self, geo: Geometry, condition: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(geo.d3d)

    def nlos_condition(self) -> int:
        """Condition used when LOS is not available (``NLOS``; V2V uses ``NLOSv``)."""
        return NLOS

    def distance_range_m(
        self, geo: Geometry, condition: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, str] | None:
        """The ground distances ``d2D`` the model is specified for: ``[L]`` lower and upper
        bounds (m) per link (they may depend on the condition and the heights) and the standard
        that states them; ``None``: the model states no distance range."""
        return None

    def outside_range(self, geo: Geometry, condition: torch.Tensor) -> str | None:
        """One sentence when links lie outside ``distance_range_m`` (naming how many, the first
        one's ``d2D`` and its range, and the standard), else ``None``."""
        bounds = self.distance_range_m(geo, condition)
        if bounds is None:
            return None
        lo, hi, source = bounds
        d = geo.d2d if geo.d2d_given is None else geo.d2d_given
        out = (d < lo) | (d > hi)
        if not bool(out.any()):
            return None
        i = int(out.nonzero()[0, 0])
        return (
            f"{self.name}: {int(out.sum())} of {out.numel()} link(s) outside the model's distance "
            f"range (d2D = {float(d[i]):g} m; {source} specifies {float(lo[i]):g} m <= d2D <= "
            f"{float(hi[i]):g} m): its path loss and SNR there are an extrapolation"
        )

    def extra_loss_db(self, geo: Geometry, condition: torch.Tensor) -> dict[str, torch.Tensor]:
        """Additional named losses (dB, ``[L]``), e.g. vehicle blockage or beam misalignment."""
        return {}

    # -- the call ------------------------------------------------------------------------------
    def conditions(self, geo: Geometry, los=None) -> torch.Tensor:
        """``[L]`` int condition per link (``LOS``/``NLOS``/``NLOSV``) from the LOS mode."""
        n = geo.d3d.shape[0]
        if self.los_mode == "geometric" or los is not None:
            if los is None:
                raise ValueError(f"{self.name}: los_mode='geometric' needs 'los' from the scene")
            los = torch.as_tensor(los, device="cpu").reshape(-1).expand(n)
            if los.dtype == torch.bool:
                return torch.where(los, LOS, self.nlos_condition()).long()
            return check_conditions(self.name, los).long()
        if self.los_mode == "los":
            return torch.full((n,), LOS, dtype=torch.long)
        if self.los_mode == "nlos":
            return torch.full((n,), self.nlos_condition(), dtype=torch.long)
        p = self.los_probability(geo)
        u = torch.rand(n, generator=self.generator, dtype=torch.float64)
        return torch.where(u < p, LOS, self.nlos_condition()).long()

    def __call__(
        self,
        distance_m=None,
        tx_pos=None,
        rx_pos=None,
        h_tx_m=None,
        h_rx_m=None,
        los=None,
    ) -> LinkState:
        """Evaluate ``L`` links.

        Args:
            distance_m: ``[L]`` or scalar ground distance (m); ignored when positions are given.
            tx_pos, rx_pos: ``[L, 3]`` positions (m, world frame, z up).
            h_tx_m, h_rx_m: antenna heights (m) when positions are not given.
            los: ``[L]`` bool (True: LOS) or int conditions (``LOS``/``NLOS``/``NLOSV``, other
                codes are refused) from the scene, read on the CPU; required for
                ``los_mode="geometric"`` and overriding the probabilistic draw when given.

        Returns:
            ``LinkState`` with ``snr_db``, ``path_loss_db`` (median + extra losses + shadowing),
            ``los``, ``distance_m`` (3D), and ``extra``: ``condition``, ``p_los``, ``shadow_db``,
            ``rx_power_dbm``, ``noise_dbm``, the model's named extra losses and, where links lie
            outside the model's ``distance_range_m``, ``outside_range`` (a sentence saying so;
            also logged once per model).
        """
        geo = self.geometry(distance_m, tx_pos, rx_pos, h_tx_m, h_rx_m)
        p_los = self.los_probability(geo)
        extra: dict = {"p_los": p_los.float()}
        if self.los_mode == "expected" and los is None:
            pl_los = self._total_loss(geo, torch.full_like(geo.d3d, LOS).long(), {})
            nl = torch.full_like(geo.d3d, self.nlos_condition()).long()
            pl_nlos = self._total_loss(geo, nl, {})
            pl = p_los * pl_los + (1 - p_los) * pl_nlos
            cond = torch.where(p_los >= 0.5, LOS, self.nlos_condition()).long()
        else:
            cond = self.conditions(geo, los)
            pl = self._total_loss(geo, cond, extra)
        shadow = torch.zeros_like(pl)
        if self.shadowing:
            std = self.shadow_std_db(geo, cond)
            shadow = std * torch.randn(std.shape, generator=self.generator, dtype=torch.float64)
        pl = pl + shadow
        outside = self.outside_range(geo, cond)
        if outside is not None:
            extra["outside_range"] = outside
            if self.warn_outside_range:
                warn_outside_range(self.name, outside)
        rx = self.radio.rx_power_dbm(pl)
        noise = self.radio.noise_dbm()
        extra.update(
            condition=cond,
            shadow_db=shadow.float(),
            rx_power_dbm=rx.float(),
            noise_dbm=float(noise),
            carrier_hz=self.carrier_hz,
        )
        return LinkState(
            snr_db=(rx - noise).float(),
            bandwidth_hz=self.radio.bandwidth_hz,
            distance_m=geo.d3d.float(),
            path_loss_db=pl.float(),
            los=cond == LOS,
            extra=extra,
        )

    def _total_loss(self, geo: Geometry, cond: torch.Tensor, extra: dict) -> torch.Tensor:
        pl = self.path_loss_db(geo, cond)
        for key, val in self.extra_loss_db(geo, cond).items():
            extra[key] = val.float()
            pl = pl + val
        return pl


def build_link(cfg=None, **kwargs) -> LinkModel:
    """Build a registered link model from a config mapping with ``name`` (Hydra ``cfg.link``) or
    from ``name=...`` keyword arguments."""
    cfg = to_plain(cfg)
    if isinstance(cfg, str):
        cfg = {"name": cfg}
    params = {**(dict(cfg) if cfg else {}), **kwargs}
    if "name" not in params:
        raise ValueError("build_link: link config needs a 'name' field (a registered link model)")
    return LINKS.build(params.pop("name"), **params)
