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
their geometry (antenna positions from the poses) and the scene's LOS; the radios and the choice
of link model are ``v2x.network_config``'s (``NetworkConfig``; its names import from here too).

Shapes: a frame has ``A`` agents with the ego in slot 0 (the order of
``v2x.datasets.frame.collate_frames``); per-frame arrays are ``[A]`` (slot 0 is the ego itself);
``NetworkBatch`` stacks ``B`` frames into ``[B, A]`` tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from v2x.channels.link import warn_outside_range
from v2x.datasets.frame import CoopFrame
from v2x.network_config import (  # noqa: F401 - the configuration, also reachable from here
    LOS_MODES,
    NetworkConfig,
    RadioConfig,
    _link_model,
    _radio_from,
    default_link_models,
    default_radios,
    kind_pair,
    link_carriers,
    link_model_names,
)

BLOCKERS = ("none", "vehicle", "building")


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
    link.warn_outside_range = False  # (stack_networks logs it: FrameNetwork.outside_range)
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
        outside_range: ``(link model, sentence)`` for each model some of whose links lie
            outside its distance range (``LinkModel.outside_range``); logged once per model
            by ``stack_networks`` in the process that stacks them (worker processes that build
            frames' networks log nothing: one warning per sweep, not one per process).
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
    outside_range: tuple[tuple[str, str], ...] = ()

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
    outside: dict[str, str] = {}
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
        if state.extra.get("outside_range"):
            outside.setdefault(key[0], state.extra["outside_range"])
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
        outside_range=tuple(outside.items()),
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
    """``B`` frame networks padded to the batch's ``A`` agent slots (``NetworkBatch``); links
    outside their model's distance range are logged, once per model in this process."""
    nets = list(nets)
    for net in nets:
        for model, sentence in net.outside_range:
            warn_outside_range(model, sentence)
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
