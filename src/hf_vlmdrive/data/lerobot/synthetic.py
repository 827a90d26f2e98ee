"""A small synthetic LIBERO-like LeRobot dataset with a learnable signal."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .writer import LeRobotEpisode, write_lerobot_dataset


def make_synthetic_libero(
    root: str | Path,
    num_episodes: int = 6,
    episode_length: int = 20,
    image_size: int = 32,
    cameras: Sequence[str] = ("observation.images.image", "observation.images.wrist_image"),
    state_dim: int = 8,
    action_dim: int = 7,
    seed: int = 0,
    **writer_kwargs,
) -> Path:
    """A small LIBERO-like dataset: two cameras, 8-d state, 7-d actions that depend on the task and image.

    The actions are a smooth, learnable function of the episode's task and of the scene (a coloured
    square whose position drifts along the episode), so a short training run has signal to fit.
    """
    rng = np.random.default_rng(seed)
    tasks = ["put the bowl on the plate", "open the top drawer", "pick up the black bowl", "turn on the stove"]
    episodes = []
    for e in range(num_episodes):
        task_id = e % len(tasks)
        t = np.linspace(0, 1, episode_length, dtype=np.float32)
        phase = rng.uniform(0, 2 * np.pi)
        action = np.stack(
            [0.5 * np.sin(2 * np.pi * t + phase + k) * (1 + 0.3 * task_id) for k in range(action_dim - 1)]
            + [np.where(t > 0.5, 1.0, -1.0).astype(np.float32)], axis=1
        ).astype(np.float32)
        state = np.concatenate([np.cumsum(action[:, :6], axis=0) * 0.05, np.zeros((episode_length, state_dim - 6))], 1)
        state = state.astype(np.float32)
        images = {}
        for c, cam in enumerate(cameras):
            frames = np.zeros((episode_length, image_size, image_size, 3), dtype=np.uint8)
            frames[...] = np.array([40 + 50 * task_id, 60, 90 + 30 * c], dtype=np.uint8)
            for i in range(episode_length):
                x = int((image_size - 8) * (0.5 + 0.5 * np.sin(2 * np.pi * t[i] + phase)))
                frames[i, 4:12, x : x + 8] = (255, 220 - 40 * task_id, 30)
            images[cam] = frames
        episodes.append(LeRobotEpisode(task=tasks[task_id], state=state, action=action, images=images))
    return write_lerobot_dataset(root, episodes, **writer_kwargs)


__all__ = ["make_synthetic_libero"]
