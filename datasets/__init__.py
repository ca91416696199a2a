"""Cooperative scenes: the CoopFrame contract, the synthetic world, V2X-Sim / DAIR-V2X readers."""

from v2x.datasets.frame import (
    AGENT_KINDS,
    CLASS_NAMES,
    AgentObservation,
    CoopBatch,
    CoopFrame,
    collate_frames,
)

__all__ = [
    "AGENT_KINDS",
    "CLASS_NAMES",
    "AgentObservation",
    "CoopBatch",
    "CoopFrame",
    "collate_frames",
]
