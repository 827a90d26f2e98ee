"""LeRobot datasets (v2.1 and v3.0) read and written without the `lerobot` package.

The names below are imported on first access (PEP 562): importing this package imports neither torch nor
PyAV nor pyarrow.
"""

from __future__ import annotations

from ...lazy import lazy_exports

# name -> submodule that defines it
_LAZY_ATTRS = {
    "MIXTURES": ".dataset",
    "SUPPORTED_VERSIONS": ".dataset",
    "LeRobotDataset": ".dataset",
    "LeRobotEpisode": ".dataset",
    "LeRobotFormatError": ".dataset",
    "LeRobotMixture": ".dataset",
    "VideoFrameReader": ".dataset",
    "WeightedMixtureSampler": ".dataset",
    "aggregate_episode_stats": ".dataset",
    "compute_stats": ".dataset",
    "DEFAULT_GOP": ".dataset",
    "encode_video": ".dataset",
    "load_mixture": ".dataset",
    "load_stats": ".dataset",
    "make_synthetic_libero": ".dataset",
    "pick_video_codec": ".dataset",
    "save_stats": ".dataset",
    "write_lerobot_dataset": ".dataset",
}

__all__ = list(_LAZY_ATTRS)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
