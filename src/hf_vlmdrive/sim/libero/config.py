"""The evaluation protocol's constants and settings: `LiberoEvalConfig`, openpi's per-suite step limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Longest training demonstration per suite plus a margin, as openpi's LIBERO example.
LIBERO_MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520,
                    "libero_90": 400}
LIBERO_DUMMY_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)
ACTION_DIM = 7


@dataclass
class LiberoEvalConfig:
    """What `evaluate_libero` runs. Every field that changes the numbers is part of the results' protocol string.

    suite: one suite name or several (`"libero_spatial"`, `["libero_spatial", "libero_object"]`, or the
        comma-separated string `"libero_spatial,libero_object"`); each is evaluated, then averaged.
    task_ids: task indices of each suite (default: all); `max_tasks` keeps the first n of them.
    episodes_per_task: episodes per task, on initial states 0..n-1 (the LIBERO protocol: 50).
    init_state_ids: explicit initial state ids (overrides `episodes_per_task`, which becomes their count).
    seed: `env.seed(seed)` before every episode (LIBERO's seed is numpy's global one).
    max_steps: policy steps per episode after the wait; None: openpi's per-suite value (`LIBERO_MAX_STEPS`).
    num_steps_wait: dummy steps `[0]*6 + [-1]` at the start of each episode (objects settle).
    replan_steps: execute the first k actions of each predicted chunk, then ask again.
    camera_size: rendered camera resolution (openpi / the training data: 256).
    image_size: resolution of the images sent to the policy (224).
    video_dir: write one mp4 per episode there (agentview | wrist, as sent to the policy), None: no videos.
    results_path: the results JSON (written after every episode); None: nothing written, no resume.
    resume: skip the episodes the results file already holds (False: start over, overwriting it).
    retry_errors: on resume, run again the episodes that ended with an error (a dead server, ...).
    """

    suite: str | Sequence[str] = "libero_spatial"
    task_ids: Sequence[int] | None = None
    max_tasks: int | None = None
    episodes_per_task: int = 50
    init_state_ids: Sequence[int] | None = None
    seed: int = 7
    max_steps: int | None = None
    num_steps_wait: int = 10
    replan_steps: int = 5
    camera_size: int = 256
    image_size: int = 224
    video_dir: str | None = None
    video_fps: int = 10
    results_path: str | None = None
    resume: bool = True
    retry_errors: bool = False

    def __post_init__(self):
        suites = [self.suite] if isinstance(self.suite, str) else list(self.suite)
        self.suite = [s.strip() for part in suites for s in str(part).split(",") if s.strip()]
        if not self.suite:
            raise ValueError("no LIBERO suite given")
        if self.init_state_ids is not None:
            self.init_state_ids = [int(i) for i in self.init_state_ids]
            if not self.init_state_ids or min(self.init_state_ids) < 0:
                raise ValueError(f"init_state_ids must be non-negative and non-empty, got {self.init_state_ids}")
            self.episodes_per_task = len(self.init_state_ids)
        if self.task_ids is not None:
            self.task_ids = [int(i) for i in self.task_ids]
        for name in ("episodes_per_task", "replan_steps", "camera_size", "image_size", "video_fps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_steps_wait < 0:
            raise ValueError(f"num_steps_wait must be >= 0, got {self.num_steps_wait}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.max_tasks is not None and self.max_tasks < 1:
            raise ValueError(f"max_tasks must be >= 1, got {self.max_tasks}")
        for suite in self.suite:
            self.steps_for(suite)  # unknown suite without max_steps: fail now, not after the first suite

    @property
    def suites(self) -> list[str]:
        """The suite names, in order."""
        return list(self.suite)

    def steps_for(self, suite: str) -> int:
        """Policy steps per episode of `suite` (`max_steps`, else openpi's per-suite value)."""
        if self.max_steps is not None:
            return int(self.max_steps)
        if suite not in LIBERO_MAX_STEPS:
            raise ValueError(f"no default max_steps for suite {suite!r} (known: {sorted(LIBERO_MAX_STEPS)}): "
                             "set max_steps")
        return LIBERO_MAX_STEPS[suite]

    def tasks_for(self, n_tasks: int) -> list[int]:
        """The task ids to run of a suite with `n_tasks` tasks (`task_ids`, then `max_tasks`), checked."""
        ids = list(range(n_tasks)) if self.task_ids is None else list(self.task_ids)
        bad = [i for i in ids if not 0 <= i < n_tasks]
        if bad:
            raise ValueError(f"task ids {bad} out of range: the suite has {n_tasks} tasks")
        return ids[: self.max_tasks] if self.max_tasks is not None else ids

    def init_states_for(self) -> list[int]:
        """The initial state ids to run per task (`init_state_ids`, else 0..episodes_per_task-1)."""
        return list(self.init_state_ids) if self.init_state_ids is not None else list(range(self.episodes_per_task))

    def settings(self) -> dict[str, Any]:
        """The fields that change an episode's outcome: a resumed results file must agree on them."""
        return {"seed": self.seed, "max_steps": {s: self.steps_for(s) for s in self.suite},
                "num_steps_wait": self.num_steps_wait, "replan_steps": self.replan_steps,
                "camera_size": self.camera_size, "image_size": self.image_size}


__all__ = ["ACTION_DIM", "LIBERO_DUMMY_ACTION", "LIBERO_MAX_STEPS", "LiberoEvalConfig"]
