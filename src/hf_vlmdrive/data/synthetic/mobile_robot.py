"""Synthetic mobile-robot episodes ("horizontal left" / "horizontal right", 18 frames) for RoboVLM, offline.

A robot faces a red target box placed to its left ("horizontal left") or right ("horizontal right"). Over the
episode it drives forward slowly and turns towards the box, so the box moves from the side of the image towards
the centre and grows. Actions are (linear_x m/s, angular_z rad/s): angular_z > 0 turns left. The rendered image
depends on the task (which side the box is on) and on the progress through the episode; floor texture, box size
and speeds vary per episode.

`make_mobile_robot_episode` returns one [`Episode`]; `write_mobile_robot_hdf5` writes a folder of HDF5 episode
files, `write_mobile_robot_lerobot` the same episodes as a LeRobot dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..episodes_hdf5 import Episode, write_episode_hdf5

TASKS = ("horizontal left", "horizontal right")
ACTION_NAMES = ("linear_x", "angular_z")
NUM_FRAMES = 18


def render_frame(box_x: float, box_scale: float, size: int, texture: np.ndarray, horizon: float = 0.45) -> np.ndarray:
    """One (size, size, 3) uint8 frame: sky, textured floor and the box centred at `box_x` in [-1, 1]."""
    img = np.empty((size, size, 3), dtype=np.float32)
    h = int(size * horizon)
    img[:h] = np.array([150, 180, 220], np.float32)
    img[h:] = texture[: size - h, :size]
    half = max(1, int(round(box_scale * size / 2)))
    cx = int(round((box_x + 1) / 2 * (size - 1)))
    top, bottom = max(0, h - half), min(size, h + half)
    left, right = max(0, cx - half), min(size, cx + half + 1)
    if left < right:
        img[top:bottom, left:right] = np.array([210, 40, 40], np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_mobile_robot_episode(task: str, rng: np.random.Generator, num_frames: int = NUM_FRAMES, image_size: int = 32,
                              episode_id: str = "episode") -> Episode:
    """One episode of `task` (one of `TASKS`)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    side = 1.0 if task == "horizontal left" else -1.0  # +1: the box is to the left, turn left (angular_z > 0)
    base = rng.uniform(60, 110)
    texture = base + rng.normal(0, 12, size=(image_size, image_size, 1)) + np.array([10, 5, 0])
    speed = rng.uniform(0.15, 0.35)
    turn = rng.uniform(0.5, 0.9)
    bearing0 = rng.uniform(0.55, 0.85)  # where the box starts, as a fraction of the half image width
    scale0 = rng.uniform(0.12, 0.2)
    images, actions = [], []
    for t in range(num_frames):
        p = t / max(1, num_frames - 1)
        bearing = bearing0 * (1.0 - 0.9 * p)  # the box drifts towards the image centre as the robot turns
        box_x = -side * bearing  # image x: -1 left, +1 right
        images.append(render_frame(box_x, scale0 * (1 + 0.6 * p), image_size, texture))
        angular = side * turn * (1.0 - p) + rng.normal(0, 0.02)
        linear = speed * (0.5 + 0.5 * p) + rng.normal(0, 0.01)
        actions.append([linear, angular])
    return Episode(episode_id, task, np.stack(images), np.asarray(actions, dtype=np.float32))


def make_mobile_robot_episodes(num_episodes: int, seed: int = 0, num_frames: int = NUM_FRAMES,
                               image_size: int = 32) -> list[Episode]:
    """`num_episodes` episodes alternating the two tasks, deterministic for `seed`."""
    rng = np.random.default_rng(seed)
    return [make_mobile_robot_episode(TASKS[i % 2], rng, num_frames, image_size, episode_id=f"episode_{i:04d}")
            for i in range(num_episodes)]


def write_mobile_robot_hdf5(root: str | Path, num_episodes: int = 20, seed: int = 0, num_frames: int = NUM_FRAMES,
                            image_size: int = 32, fps: int = 10) -> Path:
    """Write `num_episodes` episodes as `<root>/episode_XXXX.hdf5`. Returns `root`."""
    root = Path(root)
    for ep in make_mobile_robot_episodes(num_episodes, seed, num_frames, image_size):
        write_episode_hdf5(root / f"{ep.episode_id}.hdf5", ep.images, ep.actions, ep.task, fps=fps,
                           action_names=ACTION_NAMES)
    return root


def write_mobile_robot_lerobot(root: str | Path, num_episodes: int = 20, seed: int = 0, num_frames: int = NUM_FRAMES,
                               image_size: int = 32, fps: int = 10, version: str = "v3.0",
                               image_storage: str = "image") -> Path:
    """Write the same episodes as a LeRobot dataset (camera `observation.images.front`, state = zeros(3))."""
    from ..lerobot import LeRobotEpisode, write_lerobot_dataset

    episodes = [
        LeRobotEpisode(task=ep.task, state=np.zeros((len(ep), 3), np.float32), action=ep.actions,
                       images={"observation.images.front": ep.images})
        for ep in make_mobile_robot_episodes(num_episodes, seed, num_frames, image_size)
    ]
    return write_lerobot_dataset(root, episodes, fps=fps, version=version, image_storage=image_storage,
                                 robot_type="mobile_robot", action_names=list(ACTION_NAMES),
                                 state_names=["x", "y", "yaw"])


__all__ = [
    "ACTION_NAMES",
    "NUM_FRAMES",
    "TASKS",
    "make_mobile_robot_episode",
    "make_mobile_robot_episodes",
    "render_frame",
    "write_mobile_robot_hdf5",
    "write_mobile_robot_lerobot",
]
