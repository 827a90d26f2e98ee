"""The policy interface of the evaluation (openpi's `BasePolicy` shape) and two scripted baselines.

`ZeroPolicy` and `RandomPolicy` test the harness; they solve nothing.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .config import ACTION_DIM


class Policy(Protocol):
    """What `evaluate_libero` runs: `infer(obs) -> {"actions": (T, 7)}` and `reset()` before every episode."""

    def infer(self, obs: dict) -> dict: ...

    def reset(self) -> None: ...


class ZeroPolicy:
    """Always the chunk `[0]*6 + [gripper]`: the arm holds still, the gripper stays open (gripper=-1)."""

    def __init__(self, action_horizon: int = 8, gripper: float = -1.0):
        self.action_horizon = int(action_horizon)
        self.gripper = float(gripper)

    def infer(self, obs: dict) -> dict:
        action = np.zeros(ACTION_DIM, dtype=np.float32)
        action[-1] = self.gripper
        return {"actions": np.tile(action, (self.action_horizon, 1))}

    def reset(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"ZeroPolicy(action_horizon={self.action_horizon}, gripper={self.gripper})"


class RandomPolicy:
    """Uniform arm deltas in [-scale, scale] and a random gripper sign (+1 close, -1 open).

    `reset()` (called before every episode) re-seeds the generator with `seed`: every episode sees the same
    action sequence, so an episode's outcome does not depend on the episodes before it (resume-safe).
    """

    def __init__(self, seed: int = 0, action_horizon: int = 8, scale: float = 1.0):
        self.seed = int(seed)
        self.action_horizon = int(action_horizon)
        self.scale = float(scale)
        self.reset()

    def infer(self, obs: dict) -> dict:
        arm = self._rng.uniform(-self.scale, self.scale, size=(self.action_horizon, ACTION_DIM - 1))
        gripper = self._rng.choice([-1.0, 1.0], size=(self.action_horizon, 1))
        return {"actions": np.concatenate([arm, gripper], axis=1).astype(np.float32)}

    def reset(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def __repr__(self) -> str:
        return f"RandomPolicy(seed={self.seed}, action_horizon={self.action_horizon}, scale={self.scale})"


__all__ = ["Policy", "RandomPolicy", "ZeroPolicy"]
