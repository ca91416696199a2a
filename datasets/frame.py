"""The data contract every source produces: ``CoopFrame`` and its batched torch form.

Conventions (see DESIGN.md): right-handed frames, x forward, z up; poses are 4×4 float64
agent→world transforms; LiDAR points are ``[N, 4]`` (x, y, z, intensity) float32 in the agent's
own sensor frame; boxes are ``[M, 7]`` (x, y, z, l, w, h, yaw) float64 in the world frame with z
at the box centre and yaw in radians about +z from +x, ``l`` along the heading.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

AGENT_KINDS: tuple[str, ...] = ("vehicle", "rsu", "uav")
CLASS_NAMES: tuple[str, ...] = ("car", "truck", "pedestrian", "cyclist")

_RIGID_TOL = 1e-4


def _fail(where: str, field_name: str, message: str) -> None:
    raise ValueError(f"{where}: field '{field_name}' {message}")


def check_rigid_pose(pose: np.ndarray, where: str, field_name: str = "pose") -> np.ndarray:
    """Validate a 4×4 rigid transform (orthonormal rotation, det +1, last row 0 0 0 1).

    Returns the pose as a contiguous float64 array; raises ``ValueError`` naming ``field_name``.
    """
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4):
        _fail(where, field_name, f"must be a 4x4 matrix, got shape {pose.shape}")
    if not np.all(np.isfinite(pose)):
        _fail(where, field_name, "contains non-finite values")
    rot = pose[:3, :3]
    if not _close(rot @ rot.T, _EYE3) or not _close(np.linalg.det(rot), 1.0):
        _fail(where, field_name, "is not rigid: its rotation block must be orthonormal with det +1")
    if not _close(pose[3], _LAST_ROW):
        _fail(where, field_name, "must have last row [0, 0, 0, 1]")
    return np.ascontiguousarray(pose)


def check_rigid_matrix(value: object, where: str, field_name: str) -> np.ndarray:
    """``check_rigid_pose`` of a user-given matrix (e.g. a writer's sensor mount), whose message
    also shows the value: ``ValueError`` naming ``where``, the field and the value when it is
    not a 4×4 matrix of numbers or not rigid."""
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: field '{field_name}' must be a 4x4 matrix of numbers, got {value!r:.300}"
        ) from None
    try:
        return check_rigid_pose(matrix, where, field_name)
    except ValueError as exc:
        raise ValueError(f"{exc}; got {matrix.tolist()!r:.300}") from None


_EYE3 = np.eye(3)
_LAST_ROW = np.array([0.0, 0.0, 0.0, 1.0])


def _close(a: np.ndarray | float, b: np.ndarray | float) -> bool:
    """``np.allclose(a, b, atol=_RIGID_TOL)`` for finite values (``|a - b| <= atol + rtol·|b|``,
    numpy's default ``rtol``) without its per-call overhead: every frame read checks each
    agent's pose, on the loader's threads, under the GIL."""
    return bool(np.all(np.abs(np.subtract(a, b)) <= _RIGID_TOL + 1e-5 * np.abs(b)))


@dataclass
class AgentObservation:
    """One agent's view of the scene.

    Attributes:
        agent_id: unique id within the frame (e.g. ``"veh_3"``, ``"rsu_0"``).
        kind: one of ``AGENT_KINDS``.
        pose: ``[4, 4]`` float64, sensor frame → world.
        points: ``[N, 4]`` float32 (x, y, z, intensity) in the sensor frame; N may be 0.
        timestamp: seconds.
    """

    agent_id: str
    kind: str
    pose: np.ndarray
    points: np.ndarray
    timestamp: float = 0.0

    def __post_init__(self) -> None:
        where = f"agent {self.agent_id!r}"
        if not isinstance(self.agent_id, str) or not self.agent_id:
            _fail("agent", "agent_id", f"must be a non-empty string, got {self.agent_id!r}")
        if self.kind not in AGENT_KINDS:
            _fail(where, "kind", f"must be one of {AGENT_KINDS}, got {self.kind!r}")
        self.pose = check_rigid_pose(self.pose, where)
        points = np.asarray(self.points, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != 4:
            _fail(where, "points", f"must have shape [N, 4] (x, y, z, intensity), got {points.shape}")
        if not np.all(np.isfinite(points)):
            _fail(where, "points", "contains non-finite values")
        self.points = np.ascontiguousarray(points)
        if not np.isfinite(self.timestamp):
            _fail(where, "timestamp", "must be finite")
        self.timestamp = float(self.timestamp)


@dataclass
class CoopFrame:
    """A cooperative frame: every agent's observation plus the world-frame ground truth.

    Attributes:
        frame_id: unique id (e.g. ``"town3/000042"``).
        agents: observations; ``agents[ego_index]`` is the ego.
        boxes: ``[M, 7]`` float64 world-frame boxes (x, y, z, l, w, h, yaw).
        classes: ``[M]`` int64 indices into ``CLASS_NAMES``.
        track_ids: ``[M]`` int64, stable across a sequence.
        visibility: optional ``[A, M]`` int32 — number of LiDAR points agent ``a`` has in box ``m``.
        ego_index: index of the ego agent.
        meta: source-specific extras; ``meta["sequence"]`` (a string), when a reader sets it,
            names the recorded sequence the frame belongs to (see :attr:`sequence`).
    """

    frame_id: str
    agents: list[AgentObservation]
    boxes: np.ndarray
    classes: np.ndarray
    track_ids: np.ndarray
    visibility: np.ndarray | None = None
    ego_index: int = 0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"frame {self.frame_id!r}"
        if not self.agents:
            _fail(where, "agents", "must hold at least one agent (the ego)")
        ids = [a.agent_id for a in self.agents]
        if len(set(ids)) != len(ids):
            _fail(where, "agents", f"has duplicate agent ids {ids}")
        if not 0 <= self.ego_index < len(self.agents):
            _fail(where, "ego_index", f"must be in [0, {len(self.agents)}), got {self.ego_index}")
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 7) if np.size(
            self.boxes
        ) == 0 else np.asarray(self.boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 7:
            _fail(where, "boxes", f"must have shape [M, 7] (x, y, z, l, w, h, yaw), got {boxes.shape}")
        if not np.all(np.isfinite(boxes)):
            _fail(where, "boxes", "contains non-finite values")
        if np.any(boxes[:, 3:6] <= 0):
            _fail(where, "boxes", "sizes (l, w, h) must be positive")
        m = boxes.shape[0]
        classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        if classes.shape != (m,):
            _fail(where, "classes", f"must have shape [{m}], got {classes.shape}")
        if m and (classes.min() < 0 or classes.max() >= len(CLASS_NAMES)):
            _fail(where, "classes", f"must index CLASS_NAMES {CLASS_NAMES}")
        track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
        if track_ids.shape != (m,):
            _fail(where, "track_ids", f"must have shape [{m}], got {track_ids.shape}")
        if self.visibility is not None:
            vis = np.asarray(self.visibility, dtype=np.int32)
            if vis.shape != (len(self.agents), m):
                _fail(where, "visibility", f"must have shape [{len(self.agents)}, {m}], got {vis.shape}")
            self.visibility = vis
        self.boxes, self.classes, self.track_ids = boxes, classes, track_ids

    @property
    def ego(self) -> AgentObservation:
        return self.agents[self.ego_index]

    @property
    def sequence(self) -> str:
        """The recorded sequence (town, scene, drive) of the frame: ``meta["sequence"]`` when
        the reader sets it, else the ``frame_id`` before its last ``/`` (``"town3/000042"`` →
        ``"town3"``), else the ``frame_id`` itself (a sequence of its own). Frames of one sequence
        are correlated: it is the unit of the sequence bootstrap of the evaluation."""
        named = (self.meta or {}).get("sequence")
        if named is not None:
            return str(named)
        return self.frame_id.rsplit("/", 1)[0] if "/" in self.frame_id else self.frame_id

    @property
    def num_agents(self) -> int:
        return len(self.agents)


@dataclass
class CoopBatch:
    """Padded torch form of ``B`` frames with up to ``A`` agents, ``N`` points, ``M`` boxes.

    Attributes:
        points: ``[B, A, N, 4]`` float32, sensor frame of each agent, zero-padded.
        point_mask: ``[B, A, N]`` bool.
        poses: ``[B, A, 4, 4]`` float64 sensor → world (identity where padded).
        agent_mask: ``[B, A]`` bool, True where the agent exists.
        agent_kinds: ``[B, A]`` int64 index into ``AGENT_KINDS`` (−1 where padded).
        boxes: ``[B, M, 7]`` float64 world frame.
        box_mask: ``[B, M]`` bool — real boxes, minus the ego's own vehicle when the frame names
            it (``meta["agent_box_index"]``): the ego does not detect itself (OpenCOOD/OPV2V).
        classes: ``[B, M]`` int64 (−1 where padded).
        visibility: ``[B, A, M]`` int32 points per (agent, box); −1 where unknown.
        ego_index: ``[B]`` int64.
        frame_ids: list of ``B`` strings.
        sequences: list of ``B`` strings, each frame's ``CoopFrame.sequence`` (``None``: not
            known, e.g. a batch built by hand).
    """

    points: torch.Tensor
    point_mask: torch.Tensor
    poses: torch.Tensor
    agent_mask: torch.Tensor
    agent_kinds: torch.Tensor
    boxes: torch.Tensor
    box_mask: torch.Tensor
    classes: torch.Tensor
    visibility: torch.Tensor
    ego_index: torch.Tensor
    frame_ids: list[str]
    sequences: list[str] | None = None

    def to(self, device: torch.device | str) -> CoopBatch:
        non_blocking = torch.device(device).type == "cuda"
        moved = {
            name: value.to(device, non_blocking=non_blocking and value.is_pinned())
            if isinstance(value, torch.Tensor) else value
            for name, value in self.__dict__.items()
        }  # fmt: skip
        return CoopBatch(**moved)

    def pin_memory(self) -> CoopBatch:
        """The batch in page-locked host memory (for asynchronous copies to a GPU)."""
        pinned = {
            name: value.pin_memory() if isinstance(value, torch.Tensor) else value
            for name, value in self.__dict__.items()
        }
        return CoopBatch(**pinned)

    @property
    def batch_size(self) -> int:
        return int(self.points.shape[0])

    @property
    def max_agents(self) -> int:
        return int(self.points.shape[1])


def slot_order(frame: CoopFrame, max_agents: int | None = None) -> list[int]:
    """Indices into ``frame.agents`` of the batch slots ``collate_frames`` fills: the ego first,
    then the others in order, at most ``max_agents`` of them (the ego always kept)."""
    order = [frame.ego_index] + [i for i in range(frame.num_agents) if i != frame.ego_index]
    return order[:max_agents] if max_agents else order


def collate_frames(
    frames: list[CoopFrame], max_agents: int | None = None, pin_memory: bool = False
) -> CoopBatch:
    """Pad a list of frames into a ``CoopBatch``; the ego is moved to agent slot 0.

    ``max_agents`` truncates collaborators beyond that count (the ego is always kept).
    ``pin_memory``: the batch's point tensors are written straight into page-locked host
    memory, so that ``CoopBatch.to`` a CUDA device is a non-blocking copy (one from ordinary
    host memory waits until the device has run everything queued before it).
    """
    if not frames:
        raise ValueError("collate_frames: field 'frames' must hold at least one CoopFrame")
    ordered = [slot_order(frame, max_agents) for frame in frames]
    b = len(frames)
    a = max(len(o) for o in ordered)
    n = max(1, max(frame.agents[i].points.shape[0] for frame, o in zip(frames, ordered) for i in o))
    m = max(1, max(frame.boxes.shape[0] for frame in frames))
    # Filled through numpy views, one copy per agent into zeroed points: collation runs on a
    # thread beside the sweep's device thread, where each torch call is a GIL handover to wait
    # for (the torch form, 8 calls per agent, took 1.3-1.7x as long beside a busy torch thread
    # on the 2-core VM: docs/benchmarks.md).
    points = torch.zeros(b, a, n, 4, dtype=torch.float32, pin_memory=pin_memory)
    point_mask = torch.empty(b, a, n, dtype=torch.bool, pin_memory=pin_memory)
    counts = np.zeros((b, a, 1), dtype=np.int64)
    poses = np.broadcast_to(np.eye(4), (b, a, 4, 4)).copy()
    kinds = np.full((b, a), -1, dtype=np.int64)
    boxes = np.zeros((b, m, 7), dtype=np.float64)
    box_mask = np.zeros((b, m), dtype=bool)
    classes = np.full((b, m), -1, dtype=np.int64)
    visibility = np.full((b, a, m), -1, dtype=np.int32)
    flat = points.numpy()
    for bi, (frame, order) in enumerate(zip(frames, ordered)):
        count = frame.boxes.shape[0]
        for slot, agent_index in enumerate(order):
            agent = frame.agents[agent_index]
            counts[bi, slot] = agent.points.shape[0]
            flat[bi, slot, : agent.points.shape[0]] = agent.points
            poses[bi, slot] = agent.pose
            kinds[bi, slot] = AGENT_KINDS.index(agent.kind)
            if frame.visibility is not None:
                visibility[bi, slot, :count] = frame.visibility[agent_index]
        boxes[bi, :count] = frame.boxes
        box_mask[bi, :count] = True
        own = frame.meta.get("agent_box_index")
        if own is not None and 0 <= int(own[frame.ego_index]) < count:
            box_mask[bi, int(own[frame.ego_index])] = False
        classes[bi, :count] = frame.classes
    np.less(np.arange(n), counts, out=point_mask.numpy())
    agent_mask = torch.from_numpy(kinds >= 0)
    poses, kinds, boxes = torch.from_numpy(poses), torch.from_numpy(kinds), torch.from_numpy(boxes)
    box_mask, classes = torch.from_numpy(box_mask), torch.from_numpy(classes)
    visibility = torch.from_numpy(visibility)
    return CoopBatch(
        points=points,
        point_mask=point_mask,
        poses=poses,
        agent_mask=agent_mask,
        agent_kinds=kinds,
        boxes=boxes,
        box_mask=box_mask,
        classes=classes,
        visibility=visibility,
        ego_index=torch.zeros(b, dtype=torch.int64),
        frame_ids=[frame.frame_id for frame in frames],
        sequences=[frame.sequence for frame in frames],
    )
