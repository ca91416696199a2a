"""Agents' radios and the per-frame network: who can reach the ego, over which link model, at
which SNR.

For every frame the ego is the receiver and each collaborator a transmitter. A link exists when
the collaborator is within ``comm_range_m`` of the ego (3D distance between the antennas, which
sit at the LiDAR positions of the poses). Its link model is chosen by the unordered pair of the
two agents' kinds (``vehicle-vehicle`` → V2V sidelink, ``vehicle-rsu`` → 38.901 UMi,
``*-uav`` → air-to-ground, optionally THz), and its SNR comes from a link budget::

    snr_db = P_tx + G_tx + G_rx + 10·log10(N_tx·N_rx) − PL(d, f_c, LOS) − (−174 + 10·log10 B + NF)

with ``B`` the receiver's bandwidth and ``NF`` its noise figure (thermal noise −174 dBm/Hz at
290 K). Line of sight is decided from the scene's own boxes (``los_mode="geometric"``: the
segment between the antennas crosses a building → NLOS, only a vehicle → NLOSv), from the
model's LOS probability (``"probabilistic"``, seeded), or assumed (``"los"``).

Path-loss models are looked up first in the channels package's link-model registry
(``v2x.channels.LINKS``, when it exists and knows the name) and otherwise taken from the small
built-in set below (``BUILTIN_PATH_LOSS``; formulas from ``reference/channel_formulas.md``).

Shapes: a frame has ``A`` agents with the ego in slot 0 (the order of
``v2x.datasets.collate_frames``); per-frame arrays are ``[A]`` (slot 0 is the ego itself);
``NetworkBatch`` stacks ``B`` frames into ``[B, A]`` tensors.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from v2x.datasets.frame import AGENT_KINDS, CoopFrame

SPEED_OF_LIGHT_MPS = 299_792_458.0
THERMAL_NOISE_DBM_PER_HZ = -174.0
LOS_MODES = ("geometric", "probabilistic", "los")
BLOCKERS = ("none", "vehicle", "building")


# --------------------------------------------------------------------------- radios
@dataclass
class RadioConfig:
    """One agent kind's radio (Hydra: ``network.radios.<kind>``).

    Attributes:
        tx_power_dbm: transmit power.
        antenna_gain_dbi: gain of each antenna element (tx and rx).
        num_antennas: elements; ideal beamforming/combining adds ``10·log10(num_antennas)`` dB
            on each side.
        carrier_hz: carrier frequency.
        bandwidth_hz: channel bandwidth (one complex channel use per Hz per second).
        noise_figure_db: receiver noise figure.
    """

    tx_power_dbm: float = 23.0
    antenna_gain_dbi: float = 3.0
    num_antennas: int = 1
    carrier_hz: float = 5.9e9
    bandwidth_hz: float = 20e6
    noise_figure_db: float = 9.0

    def __post_init__(self) -> None:
        for name in ("carrier_hz", "bandwidth_hz"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"network radio: field '{name}' must be > 0, got {getattr(self, name)}"
                )
        if int(self.num_antennas) < 1:
            raise ValueError(
                f"network radio: field 'num_antennas' must be >= 1, got {self.num_antennas}"
            )

    @property
    def array_gain_db(self) -> float:
        return 10.0 * math.log10(int(self.num_antennas))

    def noise_dbm(self) -> float:
        """Thermal noise plus noise figure over the bandwidth, in dBm."""
        return (
            THERMAL_NOISE_DBM_PER_HZ + 10.0 * math.log10(self.bandwidth_hz) + self.noise_figure_db
        )


def default_radios() -> dict[str, RadioConfig]:
    """C-V2X-like defaults at 5.9 GHz / 20 MHz: RSUs transmit louder with higher-gain antennas."""
    return {
        "vehicle": RadioConfig(),
        "rsu": RadioConfig(
            tx_power_dbm=30.0, antenna_gain_dbi=8.0, num_antennas=2, noise_figure_db=5.0
        ),
        "uav": RadioConfig(tx_power_dbm=23.0, antenna_gain_dbi=2.0),
    }


def default_link_models() -> dict[str, str]:
    """Link model per kind pair (keys ``kindA-kindB`` in ``AGENT_KINDS`` order)."""
    return {
        "vehicle-vehicle": "v2v_urban",
        "vehicle-rsu": "umi_street_canyon",
        "rsu-rsu": "umi_street_canyon",
        "vehicle-uav": "al_hourani",
        "rsu-uav": "al_hourani",
        "uav-uav": "free_space",
    }


def kind_pair(kind_a: str, kind_b: str) -> str:
    """Canonical unordered key ``"vehicle-rsu"`` (kinds sorted by ``AGENT_KINDS`` order)."""
    for kind in (kind_a, kind_b):
        if kind not in AGENT_KINDS:
            raise ValueError(
                f"network: unknown agent kind {kind!r}; valid: {', '.join(AGENT_KINDS)}"
            )
    first, second = sorted((kind_a, kind_b), key=AGENT_KINDS.index)
    return f"{first}-{second}"


@dataclass
class NetworkConfig:
    """The per-frame network (Hydra group ``network``).

    Attributes:
        comm_range_m: collaborators farther than this from the ego (3D) are not connected.
        los_mode: ``"geometric"`` (scene boxes block the segment), ``"probabilistic"`` (the
            model's P_LOS, seeded) or ``"los"`` (always line of sight).
        link_models: link-model name per kind pair (``"vehicle-rsu": "umi_street_canyon"``, …).
        radios: ``RadioConfig`` per agent kind.
        nlos_vehicle_loss_db: extra loss when only vehicles block (NLOSv) and the model has no
            own rule (37.885's mean blockage loss is used for ``v2v_*``).
        thz_absorption_per_m: molecular absorption coefficient κ (1/m) of the ``thz`` model.
        seed: seeds probabilistic LOS draws (with the frame id).
    """

    comm_range_m: float = 300.0
    los_mode: str = "geometric"
    link_models: dict[str, str] = field(default_factory=default_link_models)
    radios: dict[str, RadioConfig] = field(default_factory=default_radios)
    nlos_vehicle_loss_db: float = 5.0
    thz_absorption_per_m: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.los_mode not in LOS_MODES:
            raise ValueError(
                f"network: field 'los_mode' is {self.los_mode!r}; valid choices: {', '.join(LOS_MODES)}"
            )
        if not self.comm_range_m > 0:
            raise ValueError(f"network: field 'comm_range_m' must be > 0, got {self.comm_range_m}")
        links = default_link_models()
        for key, name in dict(self.link_models).items():
            a, _, b = str(key).partition("-")
            canonical = kind_pair(a, b)
            if name not in BUILTIN_PATH_LOSS:
                raise ValueError(
                    f"network: field 'link_models.{key}' is {name!r}; valid choices: "
                    f"{', '.join(BUILTIN_PATH_LOSS)}"
                )
            links[canonical] = str(name)
        self.link_models = links
        radios = default_radios()
        for kind, radio in dict(self.radios).items():
            if kind not in AGENT_KINDS:
                raise ValueError(
                    f"network: field 'radios.{kind}' is not an agent kind; valid: {AGENT_KINDS}"
                )
            radios[kind] = radio if isinstance(radio, RadioConfig) else _radio_from(radio, kind)
        self.radios = radios

    @classmethod
    def from_dict(cls, data: Mapping | NetworkConfig | None) -> NetworkConfig:
        if data is None:
            return cls()
        if isinstance(data, NetworkConfig):
            return data
        data = dict(data)
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"network: unknown field(s) {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**data)


def _radio_from(data: Mapping, kind: str) -> RadioConfig:
    base = default_radios()[kind].__dict__.copy()
    names = {f.name for f in fields(RadioConfig)}
    unknown = set(dict(data)) - names
    if unknown:
        raise ValueError(
            f"network: unknown field(s) {sorted(unknown)} in 'radios.{kind}'; valid: {sorted(names)}"
        )
    base.update({k: v for k, v in dict(data).items()})
    return RadioConfig(**base)


# --------------------------------------------------------------------------- path loss
@dataclass
class PathLossInput:
    """Geometry of ``L`` links (float64 numpy arrays ``[L]``).

    distance_m (3D), distance_2d_m, h_tx_m, h_rx_m (antenna heights above ground), carrier_hz,
    los (bool), blocker (``"none" | "vehicle" | "building"`` per link).
    """

    distance_m: np.ndarray
    distance_2d_m: np.ndarray
    h_tx_m: np.ndarray
    h_rx_m: np.ndarray
    carrier_hz: np.ndarray
    los: np.ndarray
    blocker: np.ndarray


def fspl_db(distance_m: np.ndarray, carrier_hz: np.ndarray) -> np.ndarray:
    """Free-space path loss 20·log10(4π d f / c) in dB."""
    d = np.maximum(distance_m, 1.0)
    return 20.0 * np.log10(4.0 * math.pi * d * carrier_hz / SPEED_OF_LIGHT_MPS)


def _v2v_urban(x: PathLossInput, cfg: NetworkConfig) -> np.ndarray:
    """3GPP TR 37.885 urban V2V: LOS / NLOSv (LOS + mean blockage loss) / NLOS (building)."""
    d = np.maximum(x.distance_m, 1.0)
    fc = x.carrier_hz / 1e9
    los = 38.77 + 16.7 * np.log10(d) + 18.2 * np.log10(fc)
    nlos = 36.85 + 30.0 * np.log10(d) + 18.9 * np.log10(fc)
    blockage = 5.0 + np.maximum(0.0, 15.0 * np.log10(d) - 41.0)  # mean of A_blk (mixed heights)
    return np.where(
        x.blocker == "building", nlos, np.where(x.blocker == "vehicle", los + blockage, los)
    )


def _umi(x: PathLossInput, cfg: NetworkConfig) -> np.ndarray:
    """3GPP TR 38.901 UMi street canyon (breakpoint LOS; NLOS = max(LOS, PL'_NLOS))."""
    d3 = np.maximum(x.distance_m, 1.0)
    d2 = np.maximum(x.distance_2d_m, 1.0)
    fc = x.carrier_hz / 1e9
    h_bs = np.maximum(x.h_tx_m, x.h_rx_m)
    h_ut = np.minimum(x.h_tx_m, x.h_rx_m)
    d_bp = (
        4.0
        * np.maximum(h_bs - 1.0, 0.1)
        * np.maximum(h_ut - 1.0, 0.1)
        * x.carrier_hz
        / SPEED_OF_LIGHT_MPS
    )
    pl1 = 32.4 + 21.0 * np.log10(d3) + 20.0 * np.log10(fc)
    pl2 = (
        32.4
        + 40.0 * np.log10(d3)
        + 20.0 * np.log10(fc)
        - 9.5 * np.log10(d_bp**2 + (h_bs - h_ut) ** 2)
    )
    los = np.where(d2 < d_bp, pl1, pl2)
    nlos = np.maximum(los, 35.3 * np.log10(d3) + 22.4 + 21.3 * np.log10(fc) - 0.3 * (h_ut - 1.5))
    vehicle = los + cfg.nlos_vehicle_loss_db
    return np.where(x.blocker == "building", nlos, np.where(x.blocker == "vehicle", vehicle, los))


def _a2g(x: PathLossInput, cfg: NetworkConfig) -> np.ndarray:
    """Al-Hourani air-to-ground (urban): FSPL + η, η_LOS = 1 dB, η_NLOS = 20 dB."""
    return fspl_db(x.distance_m, x.carrier_hz) + np.where(x.los, 1.0, 20.0)


def _free_space(x: PathLossInput, cfg: NetworkConfig) -> np.ndarray:
    """Free space, plus ``nlos_vehicle_loss_db`` / 20 dB when blocked by a vehicle / building."""
    extra = np.where(
        x.blocker == "building",
        20.0,
        np.where(x.blocker == "vehicle", cfg.nlos_vehicle_loss_db, 0.0),
    )
    return fspl_db(x.distance_m, x.carrier_hz) + extra


def _thz(x: PathLossInput, cfg: NetworkConfig) -> np.ndarray:
    """Sub-THz: FSPL + molecular absorption 10·log10(e)·κ·d (Beer–Lambert); blocked = lost."""
    pl = (
        fspl_db(x.distance_m, x.carrier_hz)
        + 10.0 * math.log10(math.e) * cfg.thz_absorption_per_m * x.distance_m
    )
    return np.where(x.los, pl, np.inf)


BUILTIN_PATH_LOSS: dict[str, Callable[[PathLossInput, NetworkConfig], np.ndarray]] = {
    "v2v_urban": _v2v_urban,
    "umi_street_canyon": _umi,
    "al_hourani": _a2g,
    "free_space": _free_space,
    "thz": _thz,
}


def _los_probability(name: str, x: PathLossInput) -> np.ndarray:
    """The model's LOS probability (37.885 urban, 38.901 UMi, Al-Hourani urban; 1 otherwise)."""
    d2 = np.maximum(x.distance_2d_m, 1e-3)
    if name == "v2v_urban":
        return np.minimum(1.0, 1.05 * np.exp(-0.0114 * x.distance_m))
    if name == "umi_street_canyon":
        return np.where(d2 <= 18.0, 1.0, 18.0 / d2 + np.exp(-d2 / 36.0) * (1.0 - 18.0 / d2))
    if name == "al_hourani":
        theta = np.degrees(np.arctan2(np.abs(x.h_tx_m - x.h_rx_m), d2))
        a, b = 9.61, 0.16
        return 1.0 / (1.0 + a * np.exp(-b * (theta - a)))
    return np.ones_like(x.distance_m)


def _registry_links():
    """The channels package's link-model registry, or ``None`` while it does not exist."""
    try:
        from v2x.channels import LINKS  # type: ignore[attr-defined]
    except ImportError:
        return None
    return LINKS


def path_loss_names() -> list[str]:
    names = set(BUILTIN_PATH_LOSS)
    links = _registry_links()
    if links is not None:
        names |= set(links.names())
    return sorted(names)


def path_loss_db(name: str, x: PathLossInput, cfg: NetworkConfig) -> np.ndarray:
    """``[L]`` path loss of the links in ``x`` with model ``name`` (built-in set)."""
    if name not in BUILTIN_PATH_LOSS:
        raise ValueError(
            f"network: link model {name!r} has no path-loss rule here; valid: {', '.join(BUILTIN_PATH_LOSS)}"
        )
    return BUILTIN_PATH_LOSS[name](x, cfg)


# --------------------------------------------------------------------------- geometry
def segment_hits_boxes(p0: np.ndarray, p1: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which oriented boxes each segment crosses (slab test in each box's frame).

    Args:
        p0, p1: ``[L, 3]`` float64 segment end points (world frame).
        boxes: ``[M, 7]`` float64 (x, y, z, l, w, h, yaw), z at the centre.
    Returns:
        ``[L, M]`` bool — True where the open segment passes through the box interior. Boxes
        that contain either end point (the agents' own vehicles) never count.
    """
    p0 = np.asarray(p0, dtype=np.float64).reshape(-1, 3)
    p1 = np.asarray(p1, dtype=np.float64).reshape(-1, 3)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    if boxes.shape[0] == 0 or p0.shape[0] == 0:
        return np.zeros((p0.shape[0], boxes.shape[0]), dtype=bool)
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])

    def to_local(p: np.ndarray) -> np.ndarray:  # [L, M, 3]
        d = p[:, None, :] - boxes[None, :, :3]
        x = c * d[..., 0] + s * d[..., 1]
        y = -s * d[..., 0] + c * d[..., 1]
        return np.stack([x, y, d[..., 2]], axis=-1)

    a, b = to_local(p0), to_local(p1)
    half = boxes[None, :, 3:6] / 2.0
    inside = lambda p: np.all(np.abs(p) < half, axis=-1)  # noqa: E731
    direction = b - a
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - a) / direction
        t2 = (half - a) / direction
    parallel = np.abs(direction) < 1e-12
    outside_slab = parallel & (np.abs(a) >= half)
    lo = np.where(parallel, -np.inf, np.minimum(t1, t2))
    hi = np.where(parallel, np.inf, np.maximum(t1, t2))
    t_enter = np.max(lo, axis=-1)
    t_exit = np.min(hi, axis=-1)
    crosses = (t_enter < t_exit) & (t_exit > 0.0) & (t_enter < 1.0) & ~np.any(outside_slab, axis=-1)
    return crosses & ~inside(a) & ~inside(b)


# --------------------------------------------------------------------------- network
@dataclass
class FrameNetwork:
    """The network of one frame, one entry per agent slot (slot 0: the ego, the receiver).

    Attributes:
        frame_id: the frame's id.
        agent_ids, kinds: ``[A]`` strings.
        kind_pairs, link_models: ``[A]`` strings (``""`` for the ego).
        position_m: ``[A, 3]`` float64 antenna positions (world).
        distance_m: ``[A]`` float64 3D distance to the ego (0 for the ego).
        los: ``[A]`` bool; blocker: ``[A]`` ``"none" | "vehicle" | "building"``.
        path_loss_db, snr_db: ``[A]`` float64 (NaN for the ego).
        in_range: ``[A]`` bool, True for the ego and for collaborators within ``comm_range_m``.
    """

    frame_id: str
    agent_ids: list[str]
    kinds: list[str]
    kind_pairs: list[str]
    link_models: list[str]
    position_m: np.ndarray
    distance_m: np.ndarray
    los: np.ndarray
    blocker: np.ndarray
    path_loss_db: np.ndarray
    snr_db: np.ndarray
    in_range: np.ndarray

    @property
    def num_agents(self) -> int:
        return len(self.agent_ids)


def _ordered_agents(frame: CoopFrame, max_agents: int | None) -> list[int]:
    order = [frame.ego_index] + [i for i in range(frame.num_agents) if i != frame.ego_index]
    return order[:max_agents] if max_agents else order


def _scene_blockers(frame: CoopFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(buildings [Mb, 7], objects [Mo, 7])`` world-frame boxes of the frame's scene."""
    buildings = np.asarray(frame.meta.get("buildings", np.zeros((0, 7))), dtype=np.float64).reshape(
        -1, 7
    )
    return buildings, np.asarray(frame.boxes, dtype=np.float64).reshape(-1, 7)


def _frame_rng(seed: int, frame_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{frame_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def build_frame_network(
    frame: CoopFrame,
    cfg: NetworkConfig | Mapping | None = None,
    max_agents: int | None = None,
    ground_z_m: float = 0.0,
) -> FrameNetwork:
    """The network of ``frame`` (agents in ``collate_frames`` order: ego first)."""
    cfg = NetworkConfig.from_dict(cfg)
    order = _ordered_agents(frame, max_agents)
    agents = [frame.agents[i] for i in order]
    a = len(agents)
    pos = np.stack([ag.pose[:3, 3] for ag in agents]).astype(np.float64)
    ego = pos[0]
    delta = pos - ego
    dist = np.linalg.norm(delta, axis=1)
    dist2 = np.linalg.norm(delta[:, :2], axis=1)
    kinds = [ag.kind for ag in agents]
    pairs = [""] + [kind_pair(k, kinds[0]) for k in kinds[1:]]
    models = [""] + [cfg.link_models[p] for p in pairs[1:]]
    blocker = np.array(["none"] * a, dtype=object)
    los = np.ones(a, dtype=bool)
    if a > 1 and cfg.los_mode == "geometric":
        buildings, objects = _scene_blockers(frame)
        starts = np.repeat(ego[None], a - 1, axis=0)
        by_building = segment_hits_boxes(starts, pos[1:], buildings).any(axis=1)
        by_vehicle = segment_hits_boxes(starts, pos[1:], objects).any(axis=1)
        blocker[1:] = np.where(by_building, "building", np.where(by_vehicle, "vehicle", "none"))
        los[1:] = blocker[1:] == "none"
    heights = pos[:, 2] - ground_z_m
    carrier = np.array([cfg.radios[k].carrier_hz for k in kinds], dtype=np.float64)
    path_loss = np.full(a, np.nan)
    snr = np.full(a, np.nan)
    rx = cfg.radios[kinds[0]]
    for model in sorted(set(models[1:])):
        idx = np.array([i for i in range(1, a) if models[i] == model])
        x = PathLossInput(
            distance_m=dist[idx],
            distance_2d_m=dist2[idx],
            h_tx_m=heights[idx],
            h_rx_m=np.full(len(idx), heights[0]),
            carrier_hz=carrier[idx],
            los=los[idx],
            blocker=blocker[idx],
        )
        if cfg.los_mode == "probabilistic":
            draw = _frame_rng(cfg.seed, frame.frame_id).random(a)[idx]
            x.los = draw < _los_probability(model, x)
            x.blocker = np.where(x.los, "none", "building").astype(object)
            los[idx], blocker[idx] = x.los, x.blocker
        path_loss[idx] = path_loss_db(model, x, cfg)
    for i in range(1, a):
        tx = cfg.radios[kinds[i]]
        gains = tx.antenna_gain_dbi + rx.antenna_gain_dbi + tx.array_gain_db + rx.array_gain_db
        snr[i] = tx.tx_power_dbm + gains - path_loss[i] - rx.noise_dbm()
    in_range = dist <= cfg.comm_range_m
    in_range[0] = True
    return FrameNetwork(
        frame_id=frame.frame_id,
        agent_ids=[ag.agent_id for ag in agents],
        kinds=kinds,
        kind_pairs=pairs,
        link_models=models,
        position_m=pos,
        distance_m=dist,
        los=los,
        blocker=blocker,
        path_loss_db=path_loss,
        snr_db=snr,
        in_range=in_range,
    )


@dataclass
class NetworkBatch:
    """``B`` frame networks padded to ``A`` slots (the ``CoopBatch`` layout).

    Attributes:
        frames: the ``FrameNetwork`` of each frame.
        distance_m, snr_db: ``[B, A]`` float64 (NaN where padded / for the ego's snr).
        in_range: ``[B, A]`` bool (False where padded).
        los: ``[B, A]`` bool.
    """

    frames: list[FrameNetwork]
    distance_m: torch.Tensor
    snr_db: torch.Tensor
    in_range: torch.Tensor
    los: torch.Tensor

    def slot(self, b: int, a: int, name: str, default=""):
        net = self.frames[b]
        value = getattr(net, name)
        return value[a] if a < net.num_agents else default


def build_network_batch(
    frames: Sequence[CoopFrame],
    cfg: NetworkConfig | Mapping | None = None,
    max_agents: int | None = None,
    ground_z_m: float = 0.0,
) -> NetworkBatch:
    """Networks of ``frames`` stacked in the ``collate_frames(frames, max_agents)`` layout."""
    cfg = NetworkConfig.from_dict(cfg)
    nets = [build_frame_network(f, cfg, max_agents, ground_z_m) for f in frames]
    b, a = len(nets), max(n.num_agents for n in nets)
    dist = torch.full((b, a), float("nan"), dtype=torch.float64)
    snr = torch.full((b, a), float("nan"), dtype=torch.float64)
    in_range = torch.zeros(b, a, dtype=torch.bool)
    los = torch.zeros(b, a, dtype=torch.bool)
    for i, n in enumerate(nets):
        k = n.num_agents
        dist[i, :k] = torch.from_numpy(n.distance_m)
        snr[i, :k] = torch.from_numpy(n.snr_db)
        in_range[i, :k] = torch.from_numpy(n.in_range)
        los[i, :k] = torch.from_numpy(n.los)
    return NetworkBatch(nets, dist, snr, in_range, los)
