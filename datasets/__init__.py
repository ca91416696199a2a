"""Cooperative scenes: the CoopFrame contract, the synthetic world, V2X-Sim / DAIR-V2X readers."""

from v2x.datasets.build import cached_split, generate_dataset
from v2x.datasets.frame import (
    AGENT_KINDS,
    CLASS_NAMES,
    AgentObservation,
    CoopBatch,
    CoopFrame,
    collate_frames,
)
from v2x.datasets.store import SplitDataset, load_split
from v2x.datasets.synthetic import generate_frame, generate_sequence
from v2x.datasets.synthetic_config import SyntheticConfig

__all__ = [
    "AGENT_KINDS",
    "CLASS_NAMES",
    "AgentObservation",
    "CoopBatch",
    "CoopFrame",
    "collate_frames",
    "SyntheticConfig",
    "generate_frame",
    "generate_sequence",
    "SplitDataset",
    "load_split",
    "cached_split",
    "generate_dataset",
]
