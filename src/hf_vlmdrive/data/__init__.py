"""Readers and writers for the real data formats the library trains on (one module per format)."""

from .lerobot import (
    LeRobotDataset,
    LeRobotMixture,
    load_mixture,
    make_synthetic_libero,
    write_lerobot_dataset,
)

__all__ = ["LeRobotDataset", "LeRobotMixture", "load_mixture", "make_synthetic_libero", "write_lerobot_dataset"]
