"""LeRobot `meta/stats.json` statistics: computed from a dataset, aggregated from episodes, saved and loaded."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import UserFileNotFoundError

if TYPE_CHECKING:
    from .dataset import LeRobotDataset

STAT_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def compute_stats(dataset: LeRobotDataset, image_samples: int = 256) -> dict[str, dict[str, list]]:
    """LeRobot `meta/stats.json` statistics: min/max/mean/std/count and quantiles q01..q99 per feature.

    Vector features use every frame; camera features use up to `image_samples` evenly spaced frames and
    report per-channel statistics of [0, 1] pixel values with shape (3, 1, 1), as LeRobot does.
    """
    stats: dict[str, dict[str, list]] = {}
    for key, values in (("observation.state", dataset.states), ("action", dataset.actions)):
        stats[key] = _vector_stats(values)
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        stats[key] = _vector_stats(dataset._columns[key].reshape(-1, 1).astype(np.float64))
    if dataset.camera_keys and len(dataset):
        picks = np.unique(np.linspace(0, len(dataset) - 1, min(image_samples, len(dataset))).astype(int))
        for cam in dataset.camera_keys:
            pixels = np.stack([dataset.read_image(cam, int(i)) for i in picks]).astype(np.float64) / 255.0
            per_channel = pixels.reshape(-1, 3)
            s = _vector_stats(per_channel)
            stats[cam] = {k: (np.asarray(v).reshape(3, 1, 1).tolist() if k != "count" else v) for k, v in s.items()}
    return stats


def _vector_stats(values: np.ndarray) -> dict[str, list]:
    values = np.asarray(values, dtype=np.float64)
    out = {
        "min": values.min(0).tolist(), "max": values.max(0).tolist(),
        "mean": values.mean(0).tolist(), "std": values.std(0).tolist(), "count": [int(len(values))],
    }
    for q in STAT_QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(values, q, axis=0).tolist()
    return out


def aggregate_episode_stats(episodes_stats: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, list]]:
    """Dataset statistics from per-episode ones (v2.1 `episodes_stats.jsonl`): min/max/mean/std/count.

    Means are count-weighted and variances pooled (within + between episodes), as LeRobot aggregates them.
    Quantiles cannot be aggregated exactly and are left out.
    """
    out: dict[str, dict[str, list]] = {}
    keys = set().union(*(e.keys() for e in episodes_stats)) if episodes_stats else set()
    for key in sorted(keys):
        entries = [e[key] for e in episodes_stats if key in e]
        counts = np.array([float(np.asarray(e["count"]).reshape(-1)[0]) for e in entries])
        means = np.stack([np.asarray(e["mean"], np.float64) for e in entries])
        stds = np.stack([np.asarray(e["std"], np.float64) for e in entries])
        w = (counts / counts.sum()).reshape(-1, *([1] * (means.ndim - 1)))
        mean = (w * means).sum(0)
        var = (w * (stds**2 + (means - mean) ** 2)).sum(0)
        out[key] = {
            "min": np.min(np.stack([np.asarray(e["min"], np.float64) for e in entries]), 0).tolist(),
            "max": np.max(np.stack([np.asarray(e["max"], np.float64) for e in entries]), 0).tolist(),
            "mean": mean.tolist(), "std": np.sqrt(var).tolist(), "count": [int(counts.sum())],
        }
    return out


def save_stats(stats: Mapping[str, Any], path: str | Path) -> None:
    """Write statistics as LeRobot's `meta/stats.json` (plain JSON lists)."""
    Path(path).write_text(json.dumps(stats, indent=2), encoding="utf-8")


def load_stats(root: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read `meta/stats.json` of a dataset directory (or a stats file) into numpy arrays."""
    path = Path(root)
    if path.is_dir():
        path = path / "meta" / "stats.json"
    if not path.is_file():
        raise UserFileNotFoundError(
            f"{path} is missing; compute it with `python scripts/compute_norm_stats.py --root <dataset>`"
        )
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {k: {s: np.asarray(v, dtype=np.float64) for s, v in d.items()} for k, d in raw.items()}


__all__ = ["STAT_QUANTILES", "aggregate_episode_stats", "compute_stats", "load_stats", "save_stats"]
