"""The V2X-Sim 2.0 reader: ``V2XSimDataset``, a sequence of ``CoopFrame`` (one per nuScenes
``sample``), and the earlier scans of its agents (asynchrony).

The layout, the coordinate conventions and the category mapping are described in
``v2x.datasets.v2xsim``; the format's pieces are in ``v2x.datasets.v2xsim_format``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from v2x.datasets.frame import AgentObservation, CoopFrame
from v2x.datasets.history import latest_at_or_before
from v2x.datasets.v2xsim_format import (
    EXTENSION_FILE,
    LIDAR_CHANNEL,
    TABLES_OPTIONAL,
    TABLES_REQUIRED,
    WITHOUT_RIDER,
    _check_extension,
    _field,
    _load_table,
    _no_version,
    _seconds,
    _transform,
    category_to_class,
    quaternion_to_matrix,
    read_pcd_bin,
    track_id_from_token,
)


def _skipped_channels(skip_channels: Iterable[int], ego_channel: int) -> frozenset[int]:
    """``skip_channels`` as a set of agent ids ``k``; ``ValueError`` naming the field for a
    value that is not a whole number >= 0 or for the ego's own channel."""
    skipped = []
    for k in skip_channels:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(
                f"V2XSimDataset: field 'skip_channels' must list agent ids k >= 0 of "
                f"LIDAR_TOP_id_k, got {k!r}"
            )
        skipped.append(k)
    if ego_channel in skipped:
        raise ValueError(
            f"V2XSimDataset: field 'skip_channels' {sorted(skipped)} holds the ego's channel "
            f"(field 'ego_channel' = {ego_channel}); expected other agent ids"
        )
    return frozenset(skipped)


class V2XSimDataset:
    """V2X-Sim 2.0 as a sequence of ``CoopFrame`` (one per ``sample``), in scene order.

    Args:
        root: dataset folder (holds ``<version>/`` and the ``sweeps/`` files).
        version: table folder name.
        scenes: scene names or indices (into ``scene.json``) to keep; ``None`` keeps all.
        split: a key of ``split_scenes`` (``"train"``, ``"val"``, ``"test"``) selecting the scenes;
            exclusive with ``scenes``.
        split_scenes: split name → scene names or indices (see ``conf/dataset/v2xsim.yaml``).
        ego_channel: agent id ``k`` of the ego (``LIDAR_TOP_id_k``); if a sample lacks it, the
            lowest-numbered vehicle is the ego. Our writer's ``v2x_frames.json`` overrides this.
        rsu_channels: agent ids that are RSUs (V2X-Sim: only ``0``).
        rigid_tol: largest accepted deviation of a quaternion's norm from 1.
        skip_channels: agent ids ``k`` left out of every frame (``[0]``: no RSU, the agents
            HEAL/CoAlign's V2X-Sim 2.0 loader reads, ``lidar_path_1`` … ``lidar_path_<agent_num>``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        version: str = "v2.0",
        scenes: Iterable[str | int] | None = None,
        split: str | None = None,
        split_scenes: dict[str, Iterable[str | int]] | None = None,
        ego_channel: int = 1,
        rsu_channels: Iterable[int] = (0,),
        rigid_tol: float = 1e-3,
        skip_channels: Iterable[int] = (),
    ) -> None:
        self.root = Path(root)
        self.table_dir = self.root / version
        if not self.table_dir.is_dir():
            raise ValueError(_no_version(self.root, version))
        self.ego_channel = int(ego_channel)
        self.rsu_channels = {int(k) for k in rsu_channels}
        self.skip_channels = _skipped_channels(skip_channels, self.ego_channel)
        self.rigid_tol = float(rigid_tol)
        if split is not None:
            if scenes is not None:
                raise ValueError("V2XSimDataset: set field 'scenes' or field 'split', not both")
            if not split_scenes or split not in split_scenes:
                raise ValueError(
                    f"V2XSimDataset: field 'split' is {split!r}; expected a key of "
                    f"'split_scenes' ({', '.join(sorted(split_scenes or {})) or 'none given'}), "
                    "or null for every scene"
                )
            scenes = list(split_scenes[split])
        tables = {name: _load_table(self.table_dir, name) for name in TABLES_REQUIRED}
        for name in TABLES_OPTIONAL:
            if (self.table_dir / f"{name}.json").exists():
                tables[name] = _load_table(self.table_dir, name)
        self._index(tables, scenes, split)
        ext_path = self.table_dir / EXTENSION_FILE
        self.extension: dict[str, dict] = {}
        if ext_path.exists():
            for row in _load_table(ext_path.parent, ext_path.stem):
                self.extension[row["token"]] = _check_extension(row, ext_path, self._samples)

    def _file(self, name: str) -> str:
        return str(self.table_dir / f"{name}.json")

    def _no_scene(self, key: str | int, names: list[str | None], split: str | None) -> str:
        """The message for a scene ``key`` that ``scene.json`` (scenes ``names``) lacks; it names
        ``split`` (a key of ``split_scenes``) when the split chose the scene, not ``scenes``."""
        held = f"it holds {len(names)} scene(s): indices 0-{len(names) - 1}, names {names[:5]}"
        if split is None:
            return (
                f"{self._file('scene')}: has no scene {key!r} (field 'scenes'); {held}; "
                "expected scene names or indices of this file"
            )
        return (
            f"{self._file('scene')}: has no scene {key!r} (chosen by field 'split' = {split!r} "
            f"from 'split_scenes'); {held}; 'split_scenes' defaults to V2X-Sim 2.0's 100-scene "
            "split: for other data (e.g. written by v2x.datasets.export) expected split: null "
            "(every scene), 'scenes', or a 'split_scenes' of its own"
        )

    def _index(
        self,
        tables: dict[str, list[dict]],
        scenes: Iterable[str | int] | None,
        split: str | None = None,
    ) -> None:
        by_token = {name: {row["token"]: row for row in rows} for name, rows in tables.items()}
        self._ego_pose = by_token["ego_pose"]
        self._calib = by_token["calibrated_sensor"]
        self._category = by_token["category"]
        self._instance = by_token["instance"]
        self._attribute = by_token.get("attribute", {})
        sensors = by_token["sensor"]
        calib_channel: dict[str, str] = {}
        for token, calib in self._calib.items():
            sensor_token = _field(
                calib, "sensor_token", f"{self._file('calibrated_sensor')} [{token}]"
            )
            if sensor_token not in sensors:
                raise ValueError(
                    f"{self._file('calibrated_sensor')} [{token}]: field 'sensor_token' "
                    f"{sensor_token!r} is not in sensor.json"
                )
            calib_channel[token] = _field(
                sensors[sensor_token], "channel", f"{self._file('sensor')} [{sensor_token}]"
            )
        lidar_by_sample: dict[str, dict[int, dict]] = defaultdict(dict)
        for sd in tables["sample_data"]:
            where = f"{self._file('sample_data')} [{sd['token']}]"
            calib_token = _field(sd, "calibrated_sensor_token", where)
            channel = calib_channel.get(calib_token)
            if channel is None:
                raise ValueError(
                    f"{where}: field 'calibrated_sensor_token' {calib_token!r} is unknown"
                )
            match = LIDAR_CHANNEL.match(channel)
            if match is None or not _field(sd, "is_key_frame", where):
                continue
            sample_token = _field(sd, "sample_token", where)
            if sample_token not in by_token["sample"]:
                raise ValueError(
                    f"{where}: field 'sample_token' {sample_token!r} is not in sample.json"
                )
            k = int(match.group(1))
            if k in self.skip_channels:
                continue
            if k in lidar_by_sample[sample_token]:
                raise ValueError(
                    f"{where}: sample {sample_token!r} already has key-frame {channel} record "
                    f"{lidar_by_sample[sample_token][k]['token']!r}; expected one per agent"
                )
            lidar_by_sample[sample_token][k] = sd
        anns_by_sample: dict[str, list[dict]] = defaultdict(list)
        for ann in tables["sample_annotation"]:
            where = f"{self._file('sample_annotation')} [{ann['token']}]"
            sample_token = _field(ann, "sample_token", where)
            if sample_token not in by_token["sample"]:
                raise ValueError(
                    f"{where}: field 'sample_token' {sample_token!r} is not in sample.json"
                )
            anns_by_sample[sample_token].append(ann)
        samples = by_token["sample"]
        if not tables["scene"]:
            raise ValueError(
                f"{self._file('scene')}: holds no scenes (an empty list); expected one record "
                "per scene with 'first_sample_token'"
            )
        all_scenes = tables["scene"]
        if scenes is None:
            chosen = list(range(len(all_scenes)))
        else:
            names = {s.get("name"): i for i, s in enumerate(all_scenes)}
            chosen = []
            for key in scenes:
                if isinstance(key, int) and 0 <= key < len(all_scenes):
                    chosen.append(key)
                elif key in names:
                    chosen.append(names[key])
                else:
                    raise ValueError(self._no_scene(key, list(names), split))
        self._frames: list[tuple[str, str, int]] = []  # (sample token, scene name, index in scene)
        self._lidar_by_sample = lidar_by_sample
        self._anns_by_sample = anns_by_sample
        # per (scene name, channel k): [(sensing time s, sample token)] ascending (asynchrony)
        self._history: dict[tuple[str, int], list[tuple[float, str]]] = defaultdict(list)
        for scene_index in chosen:
            scene = all_scenes[scene_index]
            where = f"{self._file('scene')} [{scene['token']}]"
            name = str(scene.get("name", f"scene_{scene_index}"))
            token = _field(scene, "first_sample_token", where)
            position = 0
            seen = set()
            while token:
                if token not in samples:
                    raise ValueError(
                        f"{self._file('sample')}: sample {token!r} (linked from {where} or a 'next' field) is missing"
                    )
                if token in seen:
                    raise ValueError(
                        f"{self._file('sample')} [{token}]: field 'next' makes a cycle"
                    )
                seen.add(token)
                self._frames.append((token, name, position))
                for k, sd in lidar_by_sample.get(token, {}).items():
                    stamp = _seconds(sd, f"{self._file('sample_data')} [{sd['token']}]")
                    self._history[(name, k)].append((stamp, token))
                position += 1
                token = _field(samples[token], "next", f"{self._file('sample')} [{token}]")
        self._samples = samples
        for rows in self._history.values():
            rows.sort(key=lambda row: row[0])
        self._index_of = {token: i for i, (token, _, _) in enumerate(self._frames)}

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def sample_token(self, index: int) -> str:
        return self._frames[index][0]

    def _pose(self, sd: dict) -> np.ndarray:
        """``T_world_sensor = T_world_ego ∘ T_ego_sensor`` (both from quaternion + translation)."""
        ego_token = _field(sd, "ego_pose_token", f"{self._file('sample_data')} [{sd['token']}]")
        calib_token = sd["calibrated_sensor_token"]
        if ego_token not in self._ego_pose:
            raise ValueError(
                f"{self._file('sample_data')} [{sd['token']}]: field 'ego_pose_token' {ego_token!r} is not in ego_pose.json"
            )
        ego = self._ego_pose[ego_token]
        calib = self._calib[calib_token]
        mats = []
        for name, record, token in (
            ("ego_pose", ego, ego_token),
            ("calibrated_sensor", calib, calib_token),
        ):
            where = f"{self._file(name)} [{token}]"
            rot = quaternion_to_matrix(
                _field(record, "rotation", where), where, "rotation", self.rigid_tol
            )
            mats.append(_transform(rot, _field(record, "translation", where), where, "translation"))
        return mats[0] @ mats[1]

    def __getitem__(self, index: int) -> CoopFrame:
        if not -len(self) <= index < len(self):
            raise IndexError(f"V2XSimDataset index {index} out of range [0, {len(self)})")
        token, scene_name, position = self._frames[index]
        ext = self.extension.get(token, {})
        lidar = self._lidar_by_sample.get(token, {})
        if not lidar:
            raise ValueError(
                f"{self._file('sample_data')}: sample {token!r} has no key-frame LIDAR_TOP_id_k record"
            )
        channels = self._channel_order(token)
        agents = [self._observation(lidar[k], k, ext) for k in channels]
        ego_channel = ext.get("ego_channel", self.ego_channel)
        if ego_channel in lidar:
            ego_index = channels.index(ego_channel)
        else:
            vehicles = [i for i, a in enumerate(agents) if a.kind == "vehicle"]
            ego_index = vehicles[0] if vehicles else 0
        boxes, classes, track_ids, dropped, order = self._boxes(token, ext.get("annotations"))
        visibility = None
        if "visibility" in ext and ext.get("annotations") is not None:
            vis_by_channel = ext["visibility"]
            visibility = np.zeros((len(agents), len(order)), dtype=np.int32)
            for a, k in enumerate(channels):
                row = vis_by_channel.get(f"LIDAR_TOP_id_{k}")
                if row is None:
                    continue
                if not isinstance(row, list) or len(row) != len(ext["annotations"]):
                    raise ValueError(
                        f"{self.table_dir / EXTENSION_FILE} [{token}]: field "
                        f"'visibility.LIDAR_TOP_id_{k}' must be a list of "
                        f"{len(ext['annotations'])} counts (one per 'annotations' entry), got "
                        f"{len(row) if isinstance(row, list) else row!r}"
                    )
                visibility[a] = [row[i] for i in order]
        frame_id = ext.get("frame_id", f"{scene_name}/{position:04d}")
        meta = {
            "source": "v2xsim",
            "sample_token": token,
            "scene": scene_name,
            "dropped_categories": dropped,
        }
        meta.update(ext.get("meta", {}))
        return CoopFrame(frame_id, agents, boxes, classes, track_ids, visibility, ego_index, meta)

    def _channel_order(self, token: str) -> list[int]:
        """The agents' channels ``k`` of sample ``token`` in frame order (our writer's saved
        order first, then ascending ``k``)."""
        ext = self.extension.get(token, {})
        channels = sorted(self._lidar_by_sample.get(token, {}))
        saved_order = [LIDAR_CHANNEL.match(c) for c in ext.get("agent_order", [])]
        saved_rank = {int(m.group(1)): i for i, m in enumerate(saved_order) if m}
        channels.sort(key=lambda k: (saved_rank.get(k, len(saved_rank)), k))
        return channels

    def _observation(self, sd: dict, k: int, ext: dict) -> AgentObservation:
        """Channel ``k``'s scan ``sd``: its points, its pose at its own sensing time
        (``ego_pose`` of that ``sample_data`` ∘ mount), its timestamp (s); agent id and kind
        from our writer's ``ext`` entry of the frame, else the V2X-Sim conventions."""
        where = f"{self._file('sample_data')} [{sd['token']}]"
        channel = f"LIDAR_TOP_id_{k}"
        info = ext.get("agents", {}).get(channel, {})
        kind = info.get("kind", "rsu" if k in self.rsu_channels else "vehicle")
        agent_id = info.get("agent_id", f"{'rsu' if kind == 'rsu' else 'veh'}_{k}")
        filename = _field(sd, "filename", where)
        if not isinstance(filename, str) or not filename.strip():
            raise ValueError(
                f"{where}: field 'filename' must be a non-empty path string, got {filename!r}"
            )
        points = read_pcd_bin(self.root / filename)
        timestamp = _seconds(sd, where)
        try:
            return AgentObservation(agent_id, kind, self._pose(sd), points, timestamp)
        except ValueError as exc:
            message = str(exc)
            if message.startswith(f"{where}: "):  # already names this record: add the channel
                message = message[len(where) + 2 :]
            raise ValueError(f"{where} ({channel}): {message}") from None

    # ------------------------------------------------------------ asynchrony (earlier scans)

    def index_of(self, frame: CoopFrame) -> int:
        """Index of ``frame`` (read from this dataset) in it, by its ``meta["sample_token"]``."""
        token = (frame.meta or {}).get("sample_token")
        if token not in self._index_of:
            raise ValueError(
                f"V2XSimDataset: frame {frame.frame_id!r} is not a frame of {self.table_dir} "
                f"(its meta 'sample_token' {token!r} is not among this dataset's samples)"
            )
        return self._index_of[token]

    def _agent_key(self, index: int, agent: int) -> tuple[str, int]:
        token, scene_name, _ = self._frames[index]
        channels = self._channel_order(token)
        if not 0 <= agent < len(channels):
            raise ValueError(
                f"V2XSimDataset: field 'agent' must be an agent index below {len(channels)} of "
                f"frame {index}, got {agent}"
            )
        return scene_name, channels[agent]

    def sensing_times(self, index: int, agent: int) -> list[float]:
        """Ascending sensing times (s, ``sample_data.timestamp``) of every key-frame scan of
        agent ``agent`` of frame ``index`` (its channel ``LIDAR_TOP_id_k``) in the frame's
        scene."""
        return [t for t, _ in self._history[self._agent_key(index, agent)]]

    def observation_before(self, index: int, agent: int, until_s: float) -> AgentObservation | None:
        """Agent ``agent`` of frame ``index`` as it sensed in its latest key-frame scan of the
        scene sensed at or before ``until_s`` (s, within ``TIME_TOL_S``), with its pose at that
        scan (its ``ego_pose`` ∘ mount) and that scan's timestamp; ``None`` when the scene has
        no scan of it that early (``v2x.datasets.history``)."""
        key = self._agent_key(index, agent)
        rows = self._history[key]
        i = latest_at_or_before([t for t, _ in rows], until_s)
        if i is None:
            return None
        token = rows[i][1]
        return self._observation(
            self._lidar_by_sample[token][key[1]],
            key[1],
            self.extension.get(self._frames[index][0], {}),
        )

    def _boxes(self, sample_token: str, ext_order: list[str] | None):
        anns = self._anns_by_sample.get(sample_token, [])
        rank: dict[str, int] = {}
        if ext_order is not None:
            rank = {t: i for i, t in enumerate(ext_order)}
            have = {a["token"] for a in anns}
            if len(rank) != len(ext_order) or set(rank) != have:
                missing, unknown = sorted(have - set(rank)), sorted(set(rank) - have)
                raise ValueError(
                    f"{self.table_dir / EXTENSION_FILE} [{sample_token}]: field 'annotations' "
                    f"must list each of the sample's {len(have)} sample_annotation tokens once; "
                    f"got {len(ext_order)} ({len(missing)} missing, e.g. "
                    f"{missing[:1]}; {len(unknown)} not the sample's, e.g. {unknown[:1]})"
                )
            anns = sorted(anns, key=lambda a: rank.get(a["token"], len(rank)))
        boxes, classes, track_ids, order = [], [], [], []
        dropped: dict[str, int] = {}
        for ann in anns:
            where = f"{self._file('sample_annotation')} [{ann['token']}]"
            instance_token = _field(ann, "instance_token", where)
            if instance_token not in self._instance:
                raise ValueError(
                    f"{where}: field 'instance_token' {instance_token!r} is not in instance.json"
                )
            category_token = _field(
                self._instance[instance_token],
                "category_token",
                f"{self._file('instance')} [{instance_token}]",
            )
            if category_token not in self._category:
                raise ValueError(
                    f"{self._file('instance')} [{instance_token}]: field 'category_token' {category_token!r} is not in category.json"
                )
            name = _field(
                self._category[category_token],
                "name",
                f"{self._file('category')} [{category_token}]",
            )
            if not isinstance(name, str):
                raise ValueError(
                    f"{self._file('category')} [{category_token}]: field 'name' must be a "
                    f"category name string (e.g. 'vehicle.car'), got {name!r}"
                )
            attr_tokens = ann.get("attribute_tokens", [])
            if not isinstance(attr_tokens, list):
                raise ValueError(
                    f"{where}: field 'attribute_tokens' must be a list of tokens, got "
                    f"{attr_tokens!r}"
                )
            if self._attribute:
                for t in attr_tokens:
                    if t not in self._attribute:
                        raise ValueError(
                            f"{where}: field 'attribute_tokens' holds {t!r}, which is not in "
                            "attribute.json"
                        )
            attrs = [self._attribute.get(t, {}).get("name", "") for t in attr_tokens]
            cls = category_to_class(name, attrs)
            if cls is None:
                label = name + (f" ({WITHOUT_RIDER})" if WITHOUT_RIDER in attrs else "")
                dropped[label] = dropped.get(label, 0) + 1
                continue
            rot = quaternion_to_matrix(
                _field(ann, "rotation", where), where, "rotation", self.rigid_tol
            )
            centre = _transform(rot, _field(ann, "translation", where), where, "translation")[:3, 3]
            size = _field(ann, "size", where)
            try:
                w, length, h = (float(v) for v in size)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{where}: field 'size' must be 3 numbers [w, l, h], got {size!r}"
                ) from None
            if not np.all(np.isfinite([w, length, h])):
                raise ValueError(f"{where}: field 'size' must be finite [w, l, h], got {size!r}")
            if min(w, length, h) <= 0:
                raise ValueError(
                    f"{where}: field 'size' must be positive [w, l, h], got {ann['size']}"
                )
            yaw = float(np.arctan2(rot[1, 0], rot[0, 0]))
            boxes.append([*centre, length, w, h, yaw])
            classes.append(cls)
            track_ids.append(track_id_from_token(instance_token))
            order.append(rank.get(ann["token"], -1) if ext_order is not None else len(order))
        return (
            np.asarray(boxes, dtype=np.float64).reshape(-1, 7),
            np.asarray(classes, dtype=np.int64),
            np.asarray(track_ids, dtype=np.int64),
            dropped,
            order,
        )
