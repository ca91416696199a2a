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

Path loss, LOS probabilities, shadowing and blockage losses are the channels package's link
models (``v2x.channels.LINKS``: ``v2v_urban``, ``v2v_highway``, ``umi_street_canyon``,
``al_hourani``, ``uma_av``/``umi_av``/``rma_av``, ``free_space``, ``thz``); this module supplies
their geometry (antenna positions from the poses), the radios and the scene's LOS.

Shapes: a frame has ``A`` agents with the ego in slot 0 (the order of
``v2x.datasets.frame.collate_frames``); per-frame arrays are ``[A]`` (slot 0 is the ego itself);
``NetworkBatch`` stacks ``B`` frames into ``[B, A]`` tensors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from v2x.channels.radio import (
    DEFAULT_RADIO,
    POSITIVE_FIELDS,
    RadioParams,
    check_radio_field,
    check_radio_value,
)
from v2x.common import check_switch, check_whole, dataclass_from
from v2x.datasets.frame import AGENT_KINDS, CoopFrame

LOS_MODES = ("geometric", "probabilistic", "expected", "los", "nlos")
BLOCKERS = ("none", "vehicle", "building")


# --------------------------------------------------------------------------- radios
@dataclass
class RadioConfig:
    """One agent kind's radio (Hydra: ``network.radios.<kind>``); defaults from
    ``v2x.channels.radio.DEFAULT_RADIO``, values checked by its rules.

    Attributes:
        tx_power_dbm: transmit power.
        antenna_gain_dbi: gain of each antenna element (tx and rx).
        num_antennas: elements; ideal beamforming/combining adds ``10·log10(num_antennas)`` dB
            on each side.
        carrier_hz: carrier frequency.
        bandwidth_hz: channel bandwidth (one complex channel use per Hz per second).
        noise_figure_db: receiver noise figure.
    """

    tx_power_dbm: float = DEFAULT_RADIO.tx_power_dbm
    antenna_gain_dbi: float = DEFAULT_RADIO.tx_gain_dbi
    num_antennas: int = 1
    carrier_hz: float = DEFAULT_RADIO.carrier_hz
    bandwidth_hz: float = DEFAULT_RADIO.bandwidth_hz
    noise_figure_db: float = DEFAULT_RADIO.noise_figure_db

    def __post_init__(self) -> None:
        for name in ("tx_power_dbm", "antenna_gain_dbi", *POSITIVE_FIELDS, "noise_figure_db"):
            check_radio_field("network radio", name, getattr(self, name))
        check_whole("network radio: field 'num_antennas'", self.num_antennas, 1)

    @property
    def array_gain_db(self) -> float:
        return 10.0 * math.log10(int(self.num_antennas))

    def link_to(self, rx: RadioConfig) -> RadioParams:
        """The ``RadioParams`` of a link from this radio to ``rx``: this carrier, power and
        antenna + array gain; the receiver's bandwidth, antenna + array gain and noise figure."""
        return RadioParams(
            carrier_hz=self.carrier_hz,
            bandwidth_hz=rx.bandwidth_hz,
            tx_power_dbm=self.tx_power_dbm,
            tx_gain_dbi=self.antenna_gain_dbi + self.array_gain_db,
            rx_gain_dbi=rx.antenna_gain_dbi + rx.array_gain_db,
            noise_figure_db=rx.noise_figure_db,
        )


def default_radios() -> dict[str, RadioConfig]:
    """C-V2X-like defaults at 5.9 GHz / 20 MHz: RSUs transmit louder with higher-gain antennas."""
    return {
        "vehicle": RadioConfig(),
        "rsu": RadioConfig(
            tx_power_dbm=30.0, antenna_gain_dbi=8.0, num_antennas=2, noise_figure_db=5.0
        ),
        "uav": RadioConfig(antenna_gain_dbi=2.0),
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
            model's P_LOS, seeded), ``"expected"`` (path loss averaged over P_LOS), ``"los"`` or
            ``"nlos"`` (forced).
        link_models: link-model name per kind pair (``"vehicle-rsu": "umi_street_canyon"``, …).
        radios: ``RadioConfig`` per agent kind.
        link_options: extra constructor kwargs per link model (e.g.
            ``{"al_hourani": {"environment": "dense_urban"}, "thz": {"beamwidth_deg": 3}}``).
        shadowing: draw log-normal shadowing / random blockage (seeded per frame); ``False``
            uses the models' median losses.
        seed: seeds probabilistic LOS and shadowing draws (with the frame id).
    """

    comm_range_m: float = 300.0
    los_mode: str = "geometric"
    link_models: dict[str, str] = field(default_factory=default_link_models)
    radios: dict[str, RadioConfig] = field(default_factory=default_radios)
    link_options: dict[str, dict] = field(default_factory=dict)
    shadowing: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.los_mode not in LOS_MODES:
            raise ValueError(
                f"network: field 'los_mode' is {self.los_mode!r}; valid choices: {', '.join(LOS_MODES)}"
            )
        check_radio_value("network", "comm_range_m", self.comm_range_m, positive=True)
        check_switch("network: field 'shadowing'", self.shadowing)
        check_whole("network: field 'seed'", self.seed, 0)
        links = default_link_models()
        for key, name in dict(self.link_models).items():
            a, _, b = str(key).partition("-")
            canonical = kind_pair(a, b)
            if name not in link_model_names():
                raise ValueError(
                    f"network: field 'link_models.{key}' is {name!r}; valid choices: "
                    f"{', '.join(link_model_names())}"
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
        self._check_link_options()

    def _check_link_options(self) -> None:
        """Build each link model with its ``link_options`` once, so a bad option (NaN, an
        unknown field) is refused at planning, not at the first frame."""
        from v2x.channels import LINKS

        for model, options in dict(self.link_options).items():
            if model not in link_model_names():
                raise ValueError(
                    f"network: field 'link_options.{model}' names no link model; valid "
                    f"choices: {', '.join(link_model_names())}"
                )
            if not isinstance(options, Mapping):
                raise ValueError(
                    f"network: field 'link_options.{model}' must be a mapping of the model's "
                    f"options, got {options!r}"
                )
            try:
                _link_model(self, model, LINKS.get(model).default_radio, self.seed)
            except (TypeError, ValueError) as exc:  # (TypeError: an option it does not take)
                raise ValueError(f"network: field 'link_options.{model}': {exc}") from None

    @classmethod
    def from_dict(cls, data: Mapping | NetworkConfig | None) -> NetworkConfig:
        return dataclass_from(cls, data, "network")


def _radio_from(data: Mapping, kind: str) -> RadioConfig:
    return dataclass_from(
        RadioConfig, dict(data), f"network: 'radios.{kind}'", **default_radios()[kind].__dict__
    )


# --------------------------------------------------------------------------- link models
def link_model_names() -> list[str]:
    """Names of the channels package's link models (``v2x.channels.LINKS``)."""
    from v2x.channels import LINKS

    return LINKS.names()


def _link_model(cfg: NetworkConfig, model: str, radio: RadioParams, seed: int):
    """The ``v2x.channels`` link model ``model`` between radios ``radio`` (``RadioConfig.link_to``)
    with the network's LOS mode and shadowing and its ``link_options`` for ``model``."""
    from v2x.channels import LINKS, build_link

    options = dict(cfg.link_options.get(model, {}) or {})
    if model == "thz":  # THz radios are their own (300 GHz, 10 GHz, high-gain antennas)
        radio = dataclasses.replace(
            LINKS.get(model).default_radio,
            tx_power_dbm=radio.tx_power_dbm,
            noise_figure_db=radio.noise_figure_db,
        )
    if "radio" in options:  # a mapping of RadioParams fields replacing those of the radios
        radio = RadioParams.from_mapping(
            options.pop("radio"), radio, f"network: 'link_options.{model}.radio'"
        )
    params = {
        "name": model,
        "radio": radio,
        "los_mode": cfg.los_mode,
        "shadowing": cfg.shadowing,
        "seed": seed,
    }
    params.update(options)
    return build_link(params)


def link_carriers(cfg: NetworkConfig) -> dict[float, list[str]]:
    """The carriers (Hz) of the links of every kind pair, either side sending (a frame's kinds
    are not known before it is read), each with the fields that set it: the sender's radio or
    the model's ``link_options`` (THz: its own radio). Pairs the model refuses are left out."""
    out: dict[float, list[str]] = {}
    for pair, model in cfg.link_models.items():
        a, _, b = pair.partition("-")
        own = cfg.link_options.get(model) or {}
        for tx, rx in sorted({(a, b), (b, a)}):
            try:
                hz = _link_model(cfg, model, cfg.radios[tx].link_to(cfg.radios[rx]), 0).carrier_hz
            except ValueError:  # (the frame that has this pair raises)
                continue
            where = "" if "carrier_hz" in own else ".radio"
            if "carrier_hz" in own or model == "thz" or "carrier_hz" in (own.get("radio") or {}):
                field = f"network.link_options.{model}{where}.carrier_hz"
            else:
                field = f"network.radios.{tx}.carrier_hz"
            out.setdefault(float(hz), []).append(field)
    return {hz: list(dict.fromkeys(fields)) for hz, fields in out.items()}


# UE-height validity of TR 38.901 UMi (the ego's antenna is clamped into it, documented).
_UMI_UE_HEIGHT_M = (1.5, 22.5)


def _evaluate_links(
    model: str,
    cfg: NetworkConfig,
    tx: RadioConfig,
    rx: RadioConfig,
    tx_pos: np.ndarray,
    rx_pos: np.ndarray,
    condition: np.ndarray,
    seed: int,
):
    """``LinkState`` of ``L`` links of one model and transmitter kind (``v2x.channels``).

    Path loss is reciprocal: the higher antenna is passed as the model's transmitter (the base
    station / UAV side of the 38.901 and air-to-ground models).
    """
    link = _link_model(cfg, model, tx.link_to(rx), seed)
    swap = tx_pos[:, 2] < rx_pos[:, 2]
    hi = np.where(swap[:, None], rx_pos, tx_pos)
    lo = np.where(swap[:, None], tx_pos, rx_pos)
    if model == "umi_street_canyon":
        lo = lo.copy()
        lo[:, 2] = np.clip(lo[:, 2], *_UMI_UE_HEIGHT_M)
    los = torch.as_tensor(condition) if cfg.los_mode == "geometric" else None
    return link(tx_pos=torch.as_tensor(hi), rx_pos=torch.as_tensor(lo), los=los)


# --------------------------------------------------------------------------- geometry
def segment_hits_boxes(p0: np.ndarray, p1: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``[L, M]`` bool: segment ``p0[l] → p1[l]`` passes through box ``m`` (boxes that contain
    an end point, the agents' own bodies, never count). See ``v2x.channels.geometry.segments_blocked``."""
    from v2x.channels import segments_blocked

    p0 = np.asarray(p0, dtype=np.float64).reshape(-1, 3)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    if boxes.shape[0] == 0 or p0.shape[0] == 0:
        return np.zeros((p0.shape[0], boxes.shape[0]), dtype=bool)
    _, matrix = segments_blocked(
        p0, np.asarray(p1, dtype=np.float64).reshape(-1, 3), boxes, return_matrix=True
    )
    return np.asarray(matrix, dtype=bool)


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


def _frame_seed(seed: int, frame_id: str) -> int:
    digest = hashlib.sha256(f"{seed}/{frame_id}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def build_frame_network(
    frame: CoopFrame,
    cfg: NetworkConfig | Mapping | None = None,
    max_agents: int | None = None,
    ground_z_m: float = 0.0,
) -> FrameNetwork:
    """The network of ``frame`` (agents in ``collate_frames`` order: ego first)."""
    from v2x.channels.link import LOS, NLOS, NLOSV

    cfg = NetworkConfig.from_dict(cfg)
    order = _ordered_agents(frame, max_agents)
    agents = [frame.agents[i] for i in order]
    a = len(agents)
    pos = np.stack([ag.pose[:3, 3] for ag in agents]).astype(np.float64)
    delta = pos - pos[0]
    dist = np.linalg.norm(delta, axis=1)
    kinds = [ag.kind for ag in agents]
    pairs = [""] + [kind_pair(k, kinds[0]) for k in kinds[1:]]
    models = [""] + [cfg.link_models[p] for p in pairs[1:]]
    blocker = np.array(["none"] * a, dtype=object)
    if a > 1 and cfg.los_mode == "geometric":
        buildings, objects = _scene_blockers(frame)
        starts = np.repeat(pos[:1], a - 1, axis=0)
        by_building = segment_hits_boxes(starts, pos[1:], buildings).any(axis=1)
        by_vehicle = segment_hits_boxes(starts, pos[1:], objects).any(axis=1)
        blocker[1:] = np.where(by_building, "building", np.where(by_vehicle, "vehicle", "none"))
    condition = np.where(blocker == "building", NLOS, np.where(blocker == "vehicle", NLOSV, LOS))
    ground = np.array([0.0, 0.0, ground_z_m])
    los = np.ones(a, dtype=bool)
    path_loss = np.full(a, np.nan)
    snr = np.full(a, np.nan)
    rx = cfg.radios[kinds[0]]
    seed = _frame_seed(cfg.seed, frame.frame_id)
    for key in sorted({(models[i], kinds[i]) for i in range(1, a)}):
        idx = np.array([i for i in range(1, a) if (models[i], kinds[i]) == key])
        state = _evaluate_links(
            key[0],
            cfg,
            cfg.radios[key[1]],
            rx,
            pos[idx] - ground,
            np.repeat(pos[:1] - ground, len(idx), axis=0),
            condition[idx],
            seed,
        )
        snr[idx] = state.snr_db.double().numpy()
        path_loss[idx] = state.path_loss_db.double().numpy()
        los[idx] = state.los.numpy()
    if cfg.los_mode != "geometric":
        blocker[1:] = np.where(los[1:], "none", "unknown")
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
    return stack_networks(frame_networks(frames, cfg, max_agents, ground_z_m))


def frame_networks(
    frames: Sequence[CoopFrame],
    cfg: NetworkConfig | Mapping | None = None,
    max_agents: int | None = None,
    ground_z_m: float = 0.0,
) -> list[FrameNetwork]:
    """``build_frame_network`` of each frame (numpy only: what a worker process can return).
    It reads the agents' poses and kinds and the scene's boxes, never the point clouds."""
    cfg = NetworkConfig.from_dict(cfg)
    return [build_frame_network(f, cfg, max_agents, ground_z_m) for f in frames]


def stack_networks(nets: Sequence[FrameNetwork]) -> NetworkBatch:
    """``B`` frame networks padded to the batch's ``A`` agent slots (``NetworkBatch``)."""
    nets = list(nets)
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
