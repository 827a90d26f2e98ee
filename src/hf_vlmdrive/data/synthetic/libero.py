"""Synthetic LIBERO-like pick-and-place episodes whose action chunks are a function of (state, task).

An end effector (position 3, axis-angle 3, gripper 2 = the LIBERO state layout) is driven by a saturated
proportional controller: first to the task's *pick* pose with the gripper open, then - once within
`switch_tol` of it on every position axis - the gripper closes and it goes to the task's *place* pose.
Each of the 4 tasks has its own pick / place poses; episodes differ in their random start pose.

Every action (6 arm deltas in [-1, 1] + gripper -1 open / +1 close) is determined by the current state (the
gripper's opening says which phase it is in) and the task, so the whole future chunk is too: a model that
reads state and instruction can predict it, while the two trivial baselines cannot (the *mean chunk* ignores
the observation; *repeating the last action* misses the slow-down near a target and the gripper switch).

The cameras show the end effector as a square (agentview: x / y position; wrist view: its height and the
gripper state) on a background coloured by task.

    make_reaching_libero(root, num_episodes=48, seed=0)   # a LeRobot v3.0 dataset at root
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

TASKS = ("put the bowl on the plate", "open the top drawer", "pick up the black bowl", "turn on the stove")
ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
STATE_NAMES = ("x", "y", "z", "ax", "ay", "az", "gripper_left", "gripper_right")
GRIPPER_OPEN = 0.04


def task_poses(task_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(pick, place) 6-d poses of task `task_id` (fixed; position in [-0.6, 0.6], rotation in [-0.3, 0.3])."""
    rng = np.random.default_rng(1000 + task_id)
    scale = np.array([0.6, 0.6, 0.6, 0.3, 0.3, 0.3])
    return rng.uniform(-1, 1, 6) * scale, rng.uniform(-1, 1, 6) * scale


def reaching_episode(task_id: int, start: np.ndarray, length: int, gain: float = 2.5, step: float = 0.1,
                     switch_tol: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(state (N, 8), action (N, 7)) of one episode from the 6-d `start` pose; see the module docstring."""
    pick, place = task_poses(task_id)
    pose = np.asarray(start, dtype=np.float64).copy()
    closed = False
    states, actions = [], []
    for _ in range(length):
        if not closed and np.abs(pick[:3] - pose[:3]).max() < switch_tol:
            closed = True
        goal = place if closed else pick
        arm = np.clip(gain * (goal - pose), -1.0, 1.0)
        grip = GRIPPER_OPEN * (0.0 if closed else 1.0)
        states.append(np.concatenate([pose, [grip, -grip]]))
        actions.append(np.concatenate([arm, [1.0 if closed else -1.0]]))
        pose = pose + step * arm
    return np.asarray(states, np.float32), np.asarray(actions, np.float32)


def render_views(state: np.ndarray, task_id: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(agentview, wrist) uint8 frames of one state."""
    bg = np.array([40 + 50 * task_id, 70, 110], np.uint8)
    half = max(2, image_size // 8)

    def square(img, u, v, colour):
        cx = int(round((np.clip(u, -1, 1) + 1) / 2 * (image_size - 1)))
        cy = int(round((1 - (np.clip(v, -1, 1) + 1) / 2) * (image_size - 1)))
        img[max(0, cy - half):cy + half, max(0, cx - half):cx + half] = colour

    agent = np.empty((image_size, image_size, 3), np.uint8)
    agent[...] = bg
    square(agent, state[0], state[1], (250, 220, 40))
    wrist = np.empty_like(agent)
    wrist[...] = bg[::-1]
    square(wrist, 0.0, state[2], (230, 230, 230) if state[6] > 0 else (230, 40, 40))
    return agent, wrist


def make_reaching_episodes(num_episodes: int = 48, episode_length: int = 32, image_size: int = 32, seed: int = 0,
                           cameras: Sequence[str] = ("observation.images.image", "observation.images.wrist_image")):
    """`num_episodes` [`LeRobotEpisode`]s (task `e % 4`, start pose from `seed`)."""
    from ..lerobot import LeRobotEpisode

    if len(cameras) != 2:
        raise ValueError(f"make_reaching_episodes renders 2 cameras (agentview, wrist), got {list(cameras)}")
    rng = np.random.default_rng(seed)
    episodes = []
    for e in range(num_episodes):
        task_id = e % len(TASKS)
        start = rng.uniform(-1, 1, 6) * np.array([1.0, 1.0, 1.0, 0.5, 0.5, 0.5])
        state, action = reaching_episode(task_id, start, episode_length)
        views = [render_views(s, task_id, image_size) for s in state]
        images = {cameras[0]: np.stack([v[0] for v in views]), cameras[1]: np.stack([v[1] for v in views])}
        episodes.append(LeRobotEpisode(task=TASKS[task_id], state=state, action=action, images=images))
    return episodes


def make_reaching_libero(root: str | Path, num_episodes: int = 48, episode_length: int = 32, image_size: int = 32,
                         seed: int = 0, **writer_kwargs) -> Path:
    """Write `make_reaching_episodes(...)` as a LeRobot dataset at `root` (writer keywords pass through)."""
    from ..lerobot import write_lerobot_dataset

    writer_kwargs.setdefault("state_names", STATE_NAMES)
    writer_kwargs.setdefault("action_names", ACTION_NAMES)
    return write_lerobot_dataset(root, make_reaching_episodes(num_episodes, episode_length, image_size, seed),
                                 **writer_kwargs)


__all__ = ["ACTION_NAMES", "STATE_NAMES", "TASKS", "make_reaching_episodes", "make_reaching_libero",
           "reaching_episode", "render_views", "task_poses"]
