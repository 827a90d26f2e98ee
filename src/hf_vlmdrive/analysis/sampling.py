"""Stratified sampling of episodes and frames: N episodes per task, frames at progress fractions, deterministic."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.episodes_hdf5 import EpisodeSource, open_episodes
from ..errors import UserError

DEFAULT_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def frame_at(progress: float, length: int) -> int:
    """The frame at a progress fraction: round(progress * (length - 1)) (0 = first frame, 1 = last)."""
    return int(round(float(progress) * (length - 1)))


def stratified_sample(source: str | Path | EpisodeSource, episodes_per_task: int = 10,
                      fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0,
                      tasks: Sequence[str] | None = None, strict: bool = False) -> list[dict]:
    """Pick `episodes_per_task` episodes of every task (without replacement, with `numpy.random.default_rng(seed)`
    over each task's episodes in dataset order) and, in each, the frames at `fractions` of its length.

    Returns one record per (episode, fraction): `episode_index`, `episode_id`, `task`, `frame`, `progress`,
    `length`, sorted by task, then episode, then progress. A task with fewer episodes gives all of them (or an
    error with `strict`). The same source, arguments and seed always give the same list.
    """
    src = source if isinstance(source, EpisodeSource) else open_episodes(source)
    if episodes_per_task < 1:
        raise UserError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    bad = [f for f in fractions if not 0.0 <= float(f) <= 1.0]
    if bad or not fractions:
        raise UserError(f"fractions must be numbers in [0, 1], got {list(fractions)}")
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, info in enumerate(src.infos):
        by_task[info.task].append(i)
    wanted = sorted(by_task) if tasks is None else list(tasks)
    missing = [t for t in wanted if t not in by_task]
    if missing:
        raise UserError(f"tasks {missing} are not in {src.root}; its tasks are {sorted(by_task)}")
    records = []
    for t_i, task in enumerate(wanted):
        pool = by_task[task]
        if len(pool) < episodes_per_task and strict:
            raise UserError(f"task {task!r} has {len(pool)} episodes, fewer than episodes_per_task={episodes_per_task}")
        rng = np.random.default_rng([seed, t_i])
        chosen = sorted(rng.choice(pool, size=min(episodes_per_task, len(pool)), replace=False).tolist())
        for ep in chosen:
            info = src.infos[ep]
            for p in sorted(float(f) for f in fractions):
                records.append({"episode_index": int(ep), "episode_id": info.episode_id, "task": task,
                                "frame": frame_at(p, info.length), "progress": p, "length": info.length})
    return records


def save_sample(records: list[dict], path: str | Path, source: str | None = None, seed: int | None = None) -> Path:
    """Write the sample list as JSON ({"source", "seed", "samples": [...]})."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"source": source, "seed": seed, "num_samples": len(records), "samples": records},
                               indent=1), encoding="utf-8")
    return path


def load_sample(path: str | Path) -> list[dict]:
    """The records of a sample file written by `save_sample`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sample file {path} does not exist (write one with `hf-vlmdrive analyze sample`)")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "samples" not in data:
        raise UserError(f"{path}: not a sample file (no 'samples' list)")
    return data["samples"]


__all__ = ["DEFAULT_FRACTIONS", "frame_at", "load_sample", "save_sample", "stratified_sample"]
