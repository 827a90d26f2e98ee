"""LeRobot datasets (v2.1 and v3.0) read and written without the `lerobot` package.

One module per concern:

- `layout`: the on-disk layouts (v2.1 / v3.0 paths, `SUPPORTED_VERSIONS`), `LeRobotFormatError`;
- `video`: mp4 encoding (`encode_video`) and frame decoding at timestamps (`VideoFrameReader`);
- `depth`: depth cameras (`is_depth_map`): lerobot's 12-bit depth video de-quantised (`dequantize_depth`);
- `stats`: `meta/stats.json` statistics (`compute_stats`, `aggregate_episode_stats`, `save_stats`, `load_stats`);
- `dataset`: the reader, [`LeRobotDataset`], one sample per frame with an action chunk;
- `mixture`: [`LeRobotMixture`], [`WeightedMixtureSampler`], `load_mixture` and the named `MIXTURES`;
- `writer`: [`write_lerobot_dataset`] writes valid v3.0 (or v2.1) datasets from in-memory [`LeRobotEpisode`]s;
- `synthetic`: `make_synthetic_libero`, a small LIBERO-like dataset, so tests and demos run offline.

The names below are imported on first access (PEP 562): importing this package imports none of its modules,
so neither PyAV nor pyarrow.
"""

from __future__ import annotations

from ...lazy import lazy_exports

# name -> submodule that defines it
_LAZY_ATTRS = {
    "MIXTURES": ".mixture",
    "SUPPORTED_VERSIONS": ".layout",
    "LeRobotDataset": ".dataset",
    "LeRobotEpisode": ".writer",
    "LeRobotFormatError": ".layout",
    "LeRobotMixture": ".mixture",
    "VideoFrameReader": ".video",
    "WeightedMixtureSampler": ".mixture",
    "aggregate_episode_stats": ".stats",
    "compute_stats": ".stats",
    "DEFAULT_GOP": ".video",
    "encode_video": ".video",
    "load_mixture": ".mixture",
    "load_stats": ".stats",
    "make_synthetic_libero": ".synthetic",
    "pick_video_codec": ".video",
    "save_stats": ".stats",
    "write_lerobot_dataset": ".writer",
    "DepthQuantization": ".depth",
    "dequantize_depth": ".depth",
    "is_depth_feature": ".depth",
}

__all__ = list(_LAZY_ATTRS)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
