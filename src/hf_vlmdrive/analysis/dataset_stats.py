"""Statistics of an episode dataset (HDF5 folder or LeRobot directory), read from metadata only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..data.episodes_hdf5 import EpisodeSource, open_episodes


def _dist(values: list[int | float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    if not len(a):
        return {}
    return {"min": float(a.min()), "max": float(a.max()), "mean": float(a.mean()), "std": float(a.std()),
            "median": float(np.median(a)), "p5": float(np.percentile(a, 5)), "p95": float(np.percentile(a, 95))}


def dataset_stats(path: str | Path | EpisodeSource, camera_key: str | None = None) -> dict:
    """Episodes, frames, size on disk, episode-length distribution (and histogram), task distribution and the
    per-episode file sizes of the episodes at `path`."""
    src = path if isinstance(path, EpisodeSource) else open_episodes(path, camera_key=camera_key)
    lengths = [i.length for i in src.infos]
    sizes = [i.size_bytes for i in src.infos]
    root = Path(src.root)
    disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    tasks = Counter(i.task for i in src.infos)
    frames_per_task = Counter()
    for i in src.infos:
        frames_per_task[i.task] += i.length
    return {
        "path": str(root),
        "format": src.format,
        "episodes": len(src),
        "frames": int(sum(lengths)),
        "size_on_disk_bytes": int(disk),
        "size_on_disk_mib": round(disk / 2**20, 3),
        "episode_length": {**_dist(lengths), "histogram": dict(sorted(Counter(lengths).items()))},
        "tasks": {t: {"episodes": n, "frames": int(frames_per_task[t]), "fraction": n / max(1, len(src))}
                  for t, n in sorted(tasks.items())},
        "episode_file_bytes": {**_dist(sizes), "per_episode": {i.episode_id: i.size_bytes for i in src.infos}},
        "size_note": ("LeRobot v3.0 files hold many episodes: per-episode bytes are the dataset's bytes shared "
                      "out by frames") if src.format == "lerobot" else "bytes of each episode's HDF5 file",
    }


__all__ = ["dataset_stats"]
