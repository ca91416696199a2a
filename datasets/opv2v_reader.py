"""The OPV2V reader (V2XSet too: the same layout, roadside units with negative ids):
``OPV2VDataset``, a sequence of ``CoopFrame`` as OpenCOOD's intermediate-fusion datasets see
them, with each agent's earlier frames of its recording (asynchrony).

Per frame, as OpenCOOD builds it (``BaseDataset`` and ``IntermediateFusionDataset``):

* the agents of the scenario in OpenCOOD's order (``opv2v_format.scenario_agents``: the first is
  the ego, at most ``max_cavs``), less those farther than ``comm_range_m`` from the ego (their
  LiDAR positions in x–y; OpenCOOD's ``COM_RANGE``);
* the ground truth is every vehicle that a kept agent's YAML lists, each once (the first agent
  listing it, ego first); the ego's own vehicle is among them where another agent lists it, as
  in OpenCOOD's ground truth (``ego_box="drop"`` leaves it out, as the synthetic world does);
  every box is a car (OPV2V labels vehicles only);
* poses, points and boxes mirrored into ``CoopFrame``'s right-handed frames (see
  ``v2x.datasets.opv2v_format``); an agent's timestamp is its frame number × ``tick_s``.

OpenCOOD's evaluation keeps ground-truth boxes whose eight corners lie in ``[-140, -40, -3, 140,
40, 1]`` m of the ego's LiDAR frame (``GT_RANGE``) and detections whose corners lie in its x–y
bounds; in a sweep that is ``eval.range_mode=opencood`` with a 3D ``eval.eval_range`` whose z
bounds are shifted by the LiDAR's height above ``model.grid.ground_z_m`` (the sweep's boxes are
in the levelled frame), or ``eval.eval_range=[-140,-40,140,40]`` (``corners``, no z) — by default
the evaluation keeps the detector's BEV grid (``conf/dataset/opv2v.yaml``, docs/real_data.md).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from v2x.datasets.frame import AgentObservation, CoopFrame
from v2x.datasets.history import latest_at_or_before
from v2x.datasets.opv2v_format import (
    COMM_RANGE_M,
    EGO_BOX_CHOICES,
    MAX_CAVS,
    frame_names,
    load_yaml,
    mirrored,
    mirrored_boxes,
    pose_matrix,
    read_points,
    scenario_agents,
    vehicle_box,
)


class OPV2VDataset:
    """OPV2V (or V2XSet) as a sequence of ``CoopFrame``.

    Args:
        root: the dataset folder: it holds the split folders (``train``, ``validate``,
            ``test``, ...) or, with ``split=None``, is itself one (its folders are scenarios).
        split: the split folder under ``root`` to read; ``None``: ``root`` is the split.
        scenarios: only these scenario folders (names), in this order; ``None``: all, sorted.
        comm_range_m: agents farther than this from the ego (m, LiDAR positions in x–y) are
            left out with the vehicles they list (OpenCOOD: 70); ``None``: every agent.
        max_cavs: agents read per scenario, in OpenCOOD's order (OpenCOOD: 7); ``None``: all.
        ego_box: ``"keep"`` (OpenCOOD's ground truth) or ``"drop"`` the ego's own vehicle.
        tick_s: seconds per CARLA frame number (OpenCDA steps 0.05 s and saves every second
            step: 10 Hz).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        scenarios: list[str] | None = None,
        comm_range_m: float | None = COMM_RANGE_M,
        max_cavs: int | None = MAX_CAVS,
        ego_box: str = "keep",
        tick_s: float = 0.05,
    ) -> None:
        self.root = Path(root)
        if ego_box not in EGO_BOX_CHOICES:
            raise ValueError(
                f"OPV2VDataset: field 'ego_box' must be one of {EGO_BOX_CHOICES}, got {ego_box!r}"
            )
        for name, value in (("comm_range_m", comm_range_m), ("tick_s", tick_s)):
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"OPV2VDataset: field '{name}' must be a number > 0, got {value!r}")
        if max_cavs is not None and not (isinstance(max_cavs, int) and max_cavs >= 1):
            raise ValueError(f"OPV2VDataset: field 'max_cavs' must be a whole number >= 1, got {max_cavs!r}")
        self.comm_range_m = None if comm_range_m is None else float(comm_range_m)
        self.max_cavs, self.ego_box, self.tick_s = max_cavs, ego_box, float(tick_s)
        self.folder = self.root if split is None else self.root / str(split)
        if not self.root.is_dir():
            raise ValueError(f"OPV2V: {self.root} is not a folder; expected the dataset's root")
        if not self.folder.is_dir():
            present = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
            raise ValueError(
                f"OPV2V: {self.folder} is not a folder; field 'split' is {split!r}, expected "
                f"one of the split folders under {self.root}: {present}"
            )
        names = sorted(e.name for e in os.scandir(self.folder) if e.is_dir())
        if scenarios is not None:
            missing = [s for s in scenarios if s not in names]
            if missing:
                raise ValueError(
                    f"OPV2V: field 'scenarios' names {missing}, not scenario folders of "
                    f"{self.folder} (e.g. {names[:3]})"
                )
            names = [str(s) for s in scenarios]
        self._scenarios: list[tuple[str, list[str]]] = []  # (name, agent folders)
        self._frames: list[tuple[int, str]] = []  # (scenario, frame number)
        for name in names:
            agents = self._agents(self.folder / name, split)
            stems = frame_names(self.folder / name / agents[0])
            self._frames += [(len(self._scenarios), s) for s in stems]
            self._scenarios.append((name, agents))
        if not self._frames:
            raise ValueError(
                f"OPV2V: {self.folder} holds no frame (no <frame>.yaml in its scenarios' "
                "agent folders); expected OPV2V's layout (docs/real_data.md)"
            )
        self._index = {self._frame_id(i): i for i in range(len(self._frames))}
        self._kept: dict[int, list[str]] = {}

    def _agents(self, folder: Path, split: str | None) -> list[str]:
        try:
            return scenario_agents(folder, self.max_cavs)
        except ValueError:
            if split is None and any(e.is_dir() for e in os.scandir(folder)):
                raise ValueError(
                    f"OPV2V: {folder} is not a scenario (its folders are not agent ids): "
                    f"{self.root} looks like the dataset's root; choose a split folder with "
                    "'+data.reader.split=test' (train | validate | test; dataset=opv2v: "
                    "dataset.split=...; OPV2VDataset(root, split=...))"
                ) from None
            raise

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def _frame_id(self, index: int) -> str:
        scenario, stem = self._frames[index]
        return f"opv2v/{self._scenarios[scenario][0]}/{stem}"

    def _path(self, index: int, agent: str, stem: str, suffix: str) -> Path:
        return self.folder / self._scenarios[self._frames[index][0]][0] / agent / f"{stem}{suffix}"

    def __getitem__(self, index: int) -> CoopFrame:
        if not -len(self) <= index < len(self):
            raise IndexError(f"OPV2VDataset index {index} out of range [0, {len(self)})")
        index %= len(self)
        scenario, stem = self._frames[index]
        name, agents = self._scenarios[scenario]
        params = self._frame_params(index)
        kept = self._in_range(index, agents, params)
        observations, dropped = [], 0
        for agent in kept:
            obs, bad = self._observation(index, agent, stem, params[agent][0])
            observations.append(obs)
            dropped += bad
        boxes, tracks = [], []
        for agent in kept:  # each vehicle once, from the first agent listing it (ego first)
            where_yaml = self._path(index, agent, stem, ".yaml")
            for actor, entry in params[agent][1].items():
                if actor not in tracks:
                    tracks.append(actor)
                    boxes.append(vehicle_box(entry, f"{where_yaml}: vehicles[{actor}]"))
        meta = {
            "source": "opv2v",
            "scenario": name,
            "frame": stem,
            "sequence": f"opv2v/{name}",  # (the evaluation's bootstrap unit)
            "agents_out_of_range": [a for a in agents if a not in kept],
            "nonfinite_points_dropped": dropped,
            "ego_box": self.ego_box,
        }
        if self.ego_box == "drop":  # (collate_frames leaves the ego's own box out)
            meta["agent_box_index"] = [tracks.index(int(a)) if int(a) in tracks else -1 for a in kept]
        m = len(tracks)
        return CoopFrame(
            self._frame_id(index),
            observations,
            mirrored_boxes(np.array(boxes).reshape(m, 7)),
            np.zeros(m, dtype=np.int64),  # car
            np.array(tracks, dtype=np.int64),
            None,
            0,
            meta,
        )

    def _frame_params(self, index: int) -> dict[str, tuple[np.ndarray, dict[int, object]]]:
        """``{agent: _params}`` of frame ``index``'s agents in their order: its YAML files
        only, no points."""
        scenario, stem = self._frames[index]
        return {a: self._params(index, a, stem) for a in self._scenarios[scenario][1]}

    def _params(self, index: int, agent: str, stem: str) -> tuple[np.ndarray, dict[int, object]]:
        """``(CARLA-frame pose, {actor id: vehicles entry})`` of one agent's YAML at ``stem``."""
        path = self._path(index, agent, stem, ".yaml")
        if not path.exists():
            raise ValueError(
                f"{path}: file not found; OPV2V's agents share their frame numbers and the ego "
                f"({self._scenarios[self._frames[index][0]][1][0]}) has frame {stem}"
            )
        data = load_yaml(path)
        if "lidar_pose" not in data:
            raise ValueError(f"{path}: field 'lidar_pose' is missing ([x, y, z, roll, yaw, pitch])")
        pose = pose_matrix(data["lidar_pose"], str(path))
        vehicles = data.get("vehicles") or {}
        if not isinstance(vehicles, dict):
            raise ValueError(f"{path}: field 'vehicles' must map actor ids to boxes, got {vehicles!r:.80}")
        out = {}
        for actor, entry in vehicles.items():
            try:
                out[int(actor)] = entry
            except (TypeError, ValueError):
                raise ValueError(f"{path}: field 'vehicles' has key {actor!r}; expected actor ids") from None
        return pose, out

    def _in_range(self, index: int, agents: list[str], params: dict) -> list[str]:
        """The agents within ``comm_range_m`` of the ego (the ego first); kept per frame."""
        ego = params[agents[0]][0][:2, 3]
        kept = [
            a for a in agents
            if self.comm_range_m is None
            or math.dist(params[a][0][:2, 3], ego) <= self.comm_range_m
        ]  # fmt: skip
        self._kept[index] = kept
        return kept

    def _observation(
        self, index: int, agent: str, stem: str, pose: np.ndarray
    ) -> tuple[AgentObservation, int]:
        """One agent's scan ``stem`` (points mirrored) with its (mirrored) pose and timestamp,
        and the number of non-finite points left out."""
        points, bad = read_points(self._path(index, agent, stem, ".pcd"))
        points[:, 1] *= -1.0
        kind = "rsu" if int(agent) < 0 else "vehicle"
        return AgentObservation(agent, kind, mirrored(pose), points, int(stem) * self.tick_s), bad

    # ------------------------------------------------------------ asynchrony (earlier scans)

    def index_of(self, frame: CoopFrame) -> int:
        """Index of ``frame`` (read from this dataset) in it, by its ``frame_id``."""
        if frame.frame_id not in self._index:
            raise ValueError(
                f"OPV2VDataset: frame {frame.frame_id!r} is not a frame of {self.folder}"
            )
        return self._index[frame.frame_id]

    def _agent_folder(self, index: int, agent: int) -> str:
        if index not in self._kept:  # (which agents the frame keeps: from its poses alone)
            params = self._frame_params(index)
            self._in_range(index, list(params), params)
        kept = self._kept[index]
        if not 0 <= agent < len(kept):
            raise ValueError(
                f"OPV2VDataset: field 'agent' must index the frame's {len(kept)} agents, got {agent}"
            )
        return kept[agent]

    def sensing_times(self, index: int, agent: int) -> list[float]:
        """Ascending sensing times (s: frame number × ``tick_s``) of every frame that agent
        ``agent`` (an index into frame ``index``'s agents) recorded in the scenario."""
        folder = self._agent_folder(index, agent)
        scenario = self._scenarios[self._frames[index][0]][0]
        return [int(s) * self.tick_s for s in frame_names(self.folder / scenario / folder)]

    def observation_before(self, index: int, agent: int, until_s: float) -> AgentObservation | None:
        """Agent ``agent`` of frame ``index`` as it sensed in its latest frame at or before
        ``until_s`` (s, within ``TIME_TOL_S``): that scan with that frame's pose; ``None``
        when its recording starts later."""
        folder = self._agent_folder(index, agent)
        scenario = self._scenarios[self._frames[index][0]][0]
        stems = frame_names(self.folder / scenario / folder)
        i = latest_at_or_before([int(s) * self.tick_s for s in stems], until_s)
        if i is None:
            return None
        pose, _ = self._params(index, folder, stems[i])
        return self._observation(index, folder, stems[i], pose)[0]

